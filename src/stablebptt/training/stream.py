"""The stream protocol: environments that run on from one update to the next (Brax's APG trains this way).

The training state carries, besides the parameters and the optimizer state, a batch of `batch_size`
environment states, each one's step in its episode, and a PRNG key. Each update unrolls `window` steps from the
carried states with the run's gradient rule (R: APG's gradient; C combines g_M and g_R of the window), takes an
optimizer step on the task's loss of the window, and carries the window's last states on. An environment whose
episode has reached `episode_length` steps at the end of a window starts a new episode from a fresh
`Task.sample` (drawn with the carried key) at the next window, and a stochastic policy draws its actions' noise
with it (`Task.explore`); at the start the episodes' clocks are spread
uniformly over ``[0, episode_length)`` (as APG scrambles its environments' step counters), so that the batch
does not reset all at once. The losses at an epoch's end are those of the dataset protocol: the task's loss over
its horizon from the fixed training and test states, so that the two protocols are evaluated alike.

Everything is a pure function of the state: a run resumed from a checkpoint (the carried states and key are
part of it) continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..core import as_method, value_and_grad
from ..core.gradients import ValueAndGrad
from ..tasks import Task
from .epoch import Data, TrainState, apply_update, epoch_metrics, sample_states, user_loss
from .settings import TrainSettings

PyTree = Any
RESET_FOLD = 1  # folded into an update's key for the environments that start a new episode
StreamEpoch = Callable[["StreamState", Data], tuple["StreamState", dict[str, jax.Array]]]


class StreamState(NamedTuple):
    """What changes from update to update under the stream protocol.

    Attributes:
        params, opt_state: as in `TrainState`.
        env: the environments' states, a pytree as `Task.sample` returns it (leading axis `batch_size`).
        steps: ``(batch_size,)`` int32, each environment's step in its current episode.
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


def initial_stream(task: Task, settings: TrainSettings, key: jax.Array, state: TrainState) -> StreamState:
    """The stream's first state: `batch_size` fresh environments from `key`, their episode clocks spread
    uniformly over ``[0, episode_length)``, around the parameters and optimizer state of `state`."""
    window, episode = window_length(task, settings)
    key_env, key_noise, key_clock, key_next = jax.random.split(key, 4)
    env = task.explore(sample_states(task, key_env, settings.batch_size), key_noise, window)
    steps = jax.random.randint(key_clock, (settings.batch_size,), 0, episode, dtype=jnp.int32)
    return StreamState(state.params, state.opt_state, env, steps, key_next)


def _where_done(done: jax.Array, fresh: PyTree, carried: PyTree) -> PyTree:
    """Per environment: `fresh` where `done` ``(batch,)``, else `carried` (leaves with the batch axis first)."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, fresh, carried)


def make_stream_epoch(
    task: Task,
    settings: TrainSettings,
    tx: optax.GradientTransformation,
    static: PyTree,
    updates: int,
) -> StreamEpoch:
    """One epoch of the stream protocol: ``(StreamState, Data) -> (StreamState, metrics)``, `updates` window
    updates in a `lax.scan`, then the losses on the training and test states over the task's horizon (the
    metrics of `train.make_epoch`). `static` is the non-array part of the parameters."""
    window, _ = window_length(task, settings)
    method = as_method(settings.method)
    vg = value_and_grad(
        user_loss(task), task.step, task.controller, window, method, final_state=True, **settings.gradient_options
    )
    stop = settings.regular_nonfinite == "stop"
    return stream_program(task, settings, vg, tx, static, updates, combined=method.combines, stop_regular=stop)


def stream_program(
    task: Task,
    settings: TrainSettings,
    vg: ValueAndGrad,
    tx: optax.GradientTransformation,
    static: PyTree,
    updates: int,
    *,
    combined: bool | jax.Array,
    stop_regular: bool | jax.Array,
) -> StreamEpoch:
    """`make_stream_epoch` for an update function `vg` over one window (``(params, x0) -> (value, update,
    info)`` with ``info["final_state"]``, as `core.value_and_grad(..., final_state=True)` returns it);
    `combined` and `stop_regular` may be traced (one per run of a batched group, as in `epoch.epoch_program`)."""
    window, episode = window_length(task, settings)

    def update(state: StreamState, _: None) -> tuple[StreamState, tuple[jax.Array, dict[str, jax.Array], jax.Array]]:
        # as Brax's APG splits its carried key once per update (``key, key_grad = split(key)``); the update's
        # key draws a stochastic policy's actions (`Task.explore`, as APG's) and the new episodes
        key, key_update = jax.random.split(state.key)
        start = task.explore(state.env, key_update, window)
        value, grads, info = vg(eqx.combine(state.params, static), start)
        last = info.pop("final_state")
        trained, ok = apply_update(
            task,
            tx,
            static,
            TrainState(state.params, state.opt_state),
            start,
            value,
            grads,
            info,
            settings.skip_nonfinite,
            combined=combined,
            stop=stop_regular,
        )
        key_fresh = jax.random.fold_in(key_update, RESET_FOLD)
        steps = state.steps + window
        done = steps >= episode
        fresh = task.explore(sample_states(task, key_fresh, settings.batch_size), key_fresh, window)
        env = _where_done(done, fresh, last)
        steps = jnp.where(done, 0, steps).astype(jnp.int32)
        return StreamState(trained.params, trained.opt_state, env, steps, key), (value, info, ok)

    def epoch(state: StreamState, data: Data) -> tuple[StreamState, dict[str, jax.Array]]:
        state, (values, infos, ok) = jax.lax.scan(update, state, None, length=updates)
        params = eqx.combine(state.params, static)
        return state, epoch_metrics(task, params, data, values, infos, ok, settings.skip_nonfinite, combined)

    return epoch
