"""The stream protocol: environments that run on from one update to the next (Brax's APG trains this way).

The training state carries, besides the parameters and the optimizer state, a batch of `batch_size` environment
states, each one's step in its episode, and a PRNG key. Each update unrolls `window` steps from the carried states
with the run's gradient rule (R: APG's gradient; C combines g_M and g_R of the window), takes an optimizer step on
the task's loss of the window, and carries the window's last states on. An environment whose episode has reached
`episode_length` steps at the end of a window starts a new episode from a fresh `Task.sample` (drawn with the
carried key) at the next window, and a stochastic policy draws its actions' noise with it (`Task.explore`); at the
start the episodes' clocks are spread uniformly over ``[0, episode_length)`` (as APG scrambles its environments'
step counters), so that the batch does not reset all at once. A task that `resets` its episodes itself inside `step`
(`BraxTask` with `auto_reset`: Brax's training wrapper, which APG trains with) keeps its own clocks and
starts them with `Task.start_stream`; the protocol then resets nothing. The losses at an epoch's end are those of
the dataset protocol: the task's loss over its horizon from the fixed training and test states, so that the two
protocols are evaluated alike.

Everything is a pure function of the state: a run resumed from a checkpoint (the carried states and key are part of
it) continues bit for bit.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..core.checks import BadArgument
from ..tasks import Task
from .epoch import Data, Protocol, Record, TrainState, UpdateStep, sample_states
from .settings import TrainSettings

PyTree = Any
RESET_FOLD = 1  # folded into an update's key for the environments that start a new episode


class StreamState(NamedTuple):
    """What changes from update to update under the stream protocol.

    Attributes:
        params, opt_state: as in `TrainState`.
        env: the environments' states, a pytree as `Task.sample` returns it (leading axis `batch_size`).
        steps: ``(batch_size,)`` int32, each environment's step in its current episode (zeros for a task that
            `resets` itself and keeps its own clock).
        key: the PRNG key that draws new episodes and a stochastic policy's noise (`Task.explore`).
    """

    params: PyTree
    opt_state: optax.OptState
    env: PyTree
    steps: jax.Array
    key: jax.Array


def window_length(task: Task, settings: TrainSettings) -> tuple[int, int]:
    """``(window, episode_length)`` of `settings`, the task's horizon where they are None."""
    return settings.window or task.horizon, settings.episode_length or task.horizon


class StreamKeys(NamedTuple):
    """The keys a stream run draws from its seed: `init` the network's initialisation, `env` the first
    environments (`Task.sample`), `clock` their episodes' clocks (`Task.start_stream`), `noise` the first
    window's action noise (`Task.explore`; every update draws its own), `carry` the key the stream carries on."""

    init: jax.Array | None
    env: jax.Array
    clock: jax.Array
    noise: jax.Array
    carry: jax.Array


def stream_keys(seed_key: jax.Array) -> StreamKeys:
    """stablebptt's keys of a stream run, split from `seed_key` (the seed's key with `train.STREAM_KEY` folded
    in); `init` is None: the network is drawn as under the dataset protocol."""
    env, noise, clock, carry = jax.random.split(seed_key, 4)
    return StreamKeys(None, env, clock, noise, carry)


def apg_keys(seed: int) -> StreamKeys:
    """The keys Brax's ``apg.train(seed=seed)`` (one process, one device) draws: the policy network's
    initialisation, the environments' reset keys, the scramble of their step counters and the key its training
    epochs carry (split once per update). With them, the APG network of `BraxTask` and its sampled actions
    start and run as ``apg.train``'s (settings ``key_scheme="apg"``)."""
    global_key, local_key = jax.random.split(jax.random.PRNGKey(seed))
    _, global_key = jax.random.split(global_key)  # APG's domain-randomisation key, then the network's
    local_key = jax.random.fold_in(local_key, 0)  # the process index
    local_key, _ = jax.random.split(local_key)  # the evaluator's key (`apg_eval_key`)
    env, clock, local_key = jax.random.split(local_key, 3)
    epoch_key, _ = jax.random.split(local_key)
    carry = jax.random.split(epoch_key, 1)[0]  # one per device
    return StreamKeys(global_key, env, clock, carry, carry)


def apg_eval_key(seed: int) -> jax.Array:
    """The key of the evaluator of Brax's ``apg.train(seed=seed)`` (`brax.training.acting.Evaluator`)."""
    _, local_key = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.split(jax.random.fold_in(local_key, 0))[1]


def initial_stream(task: Task, settings: TrainSettings, keys: StreamKeys, state: TrainState) -> StreamState:
    """The stream's first state around the parameters and optimizer state of `state`: `batch_size` fresh
    environments (`keys.env`). A task that `resets` itself starts them with `Task.start_stream` (`keys.clock`);
    otherwise the protocol's clocks are spread uniformly over ``[0, episode_length)``."""
    window, episode = window_length(task, settings)
    env = sample_states(task, keys.env, settings.batch_size)
    if task.resets:
        env = task.start_stream(env, keys.clock)
        steps = jnp.zeros((settings.batch_size,), jnp.int32)
    else:
        steps = jax.random.randint(keys.clock, (settings.batch_size,), 0, episode, dtype=jnp.int32)
    env = task.explore(env, keys.noise, window)
    return StreamState(state.params, state.opt_state, env, steps, keys.carry)


def _where_done(done: jax.Array, fresh: PyTree, carried: PyTree) -> PyTree:
    """Per environment: `fresh` where `done` ``(batch,)``, else `carried` (leaves with the batch axis first)."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, fresh, carried)


def check_window(task: Task, settings: TrainSettings) -> None:
    """Refuse, in one line, a window longer than the episode (the episode's length would do nothing: episodes end
    at window ends)."""
    window, episode = window_length(task, settings)
    if window > episode:
        raise BadArgument(
            f"$window is longer than the episode ({episode} steps: "
            f"{'the episode length' if settings.episode_length else 'the task horizon'}); give a shorter window "
            "or a longer $episode_length",
            window=window,
            episode_length=None,
        )


def next_episodes(
    task: Task, settings: TrainSettings, key: jax.Array, last: PyTree, steps: jax.Array
) -> tuple[PyTree, jax.Array]:
    """The environments and clocks after a window: the window's `last` states carried on, except where an
    episode reached `episode_length` steps: there a fresh `Task.sample` (drawn with `key` and `RESET_FOLD`) and a
    clock at 0. `steps` ``(batch,)``: the clocks at the window's start."""
    window, episode = window_length(task, settings)
    key_fresh = jax.random.fold_in(key, RESET_FOLD)
    steps = steps + window
    done = steps >= episode
    fresh = task.explore(sample_states(task, key_fresh, settings.batch_size), key_fresh, window)
    return _where_done(done, fresh, last), jnp.where(done, 0, steps).astype(jnp.int32)


class Stream(Protocol):
    """The stream protocol (Brax's APG's): `batch_size` environments run on; each update unrolls `window` steps
    from where the previous one stopped (the state is a `StreamState`), and an environment whose episode reached
    `episode_length` steps starts a new one at the next window. An epoch is ``n_train // batch_size`` updates."""

    name: ClassVar[str] = "stream"
    carries: ClassVar[bool] = True

    def window(self, task: Task, settings: TrainSettings) -> int:
        return window_length(task, settings)[0]

    def start(self, task: Task, settings: TrainSettings, keys: Any, state: TrainState) -> StreamState:
        return initial_stream(task, settings, keys.stream, state)

    def updates(
        self, task: Task, settings: TrainSettings, step: UpdateStep, state: StreamState, data: Data
    ) -> tuple[StreamState, Record]:
        del data  # the stream samples its own environments; the data serve the epoch's losses only
        window = self.window(task, settings)

        def update(state: StreamState, _: None) -> tuple[StreamState, Record]:
            # as Brax's APG splits its carried key once per update (``key, key_grad = split(key)``); the update's
            # key draws a stochastic policy's actions (`Task.explore`, as APG's) and the new episodes
            key, key_update = jax.random.split(state.key)
            start = task.explore(state.env, key_update, window)
            trained, record, last = step(TrainState(state.params, state.opt_state), start)
            if task.resets:  # the task started new episodes inside the window itself
                env, steps = last, state.steps
            else:
                env, steps = next_episodes(task, settings, key_update, last, state.steps)
            return StreamState(trained.params, trained.opt_state, env, steps, key), record

        return jax.lax.scan(update, state, None, length=settings.n_train // settings.batch_size)
