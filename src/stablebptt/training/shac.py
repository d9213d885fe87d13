"""SHAC's pieces (Xu et al., ICLR 2022, "Accelerated Policy Learning with Parallel Differentiable Simulation"), as
pure functions on time-major arrays, written to DiffRL's ``algorithms/shac.py`` (the reference implementation).

SHAC differentiates through short windows of K steps carried on from update to update, and adds a learned critic's
value at each window's end and at each episode's end, standing in for the rest of the horizon:

- `actor_loss`: the window's discounted rewards, plus ``gamma^k`` times the target critic's value where an episode
  ends inside the window or where the window ends, per environment, negated and averaged over steps and
  environments (``compute_actor_loss``). Differentiable in the rewards and the values, so that any gradient rule
  differentiates it through the rollout, the terminal value through the final state.
- `td_lambda_targets`: the critic's TD-λ targets, DiffRL's recursion (``compute_target_values``), with episode
  ends inside the window. It equals the recursive λ-return bootstrapped at the ends (rlax's ``lambda_returns``
  with a discount of 0 past an end); written here rather than taken from rlax, which would bring distrax and
  TensorFlow Probability for a recursion of ten lines (tests/training/test_shac.py holds it against both forms).
- `critic_loss`: the squared error of the critic's values against the targets (``compute_critic_loss``).
- `polyak`: the target critic's update, ``alpha · target + (1 - alpha) · critic``.

Shapes: K steps, B environments; ``rewards (K, B)``, ``next_values (K, B)`` (the target critic's value of the
state after each step: 0 where an episode terminated early, the critic of the state before the reset where it
was truncated by its time limit), ``done (K, B)`` (bool or 0/1: an episode ended at that step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..core import value_and_grad
from ..core.checks import BadArgument, BadInput, check_choice
from ..core.methods import Column
from ..nn import MLP, Normalizer, NormedMLP
from ..tasks import EpisodeEnds, Task
from .epoch import Data, Protocol, Record, TrainState, UpdateStep, sample_states
from .settings import CRITIC_NETWORKS, TrainSettings
from .stream import RESET_FOLD, check_window, initial_stream, next_episodes, window_length

PyTree = Any
Pair = tuple[jax.Array, jax.Array]
Triple = tuple[jax.Array, jax.Array, jax.Array]


def actor_loss(rewards: jax.Array, next_values: jax.Array, done: jax.Array, gamma: float) -> jax.Array:
    """SHAC's actor loss of one window (DiffRL's ``compute_actor_loss``, without its reward scaling).

    Per environment, the rewards are summed with discounts ``gamma^j`` from the start of the window or of the episode
    (``rew_acc``); where an episode ends at step i inside the window, and for every environment at the window's
    last step, ``-(rew_acc + gamma^(j+1) · next_values[i])`` is added to the loss, and the sum and discount restart.
    The loss is divided by ``K · B``.

    Args:
        rewards: ``(K, B)`` rewards of each step (differentiable).
        next_values: ``(K, B)`` values of the states after each step (differentiable: the terminal value is
            differentiated through the final state).
        done: ``(K, B)``, an episode ended at that step.
        gamma: the discount gamma in [0, 1].

    Returns:
        The scalar loss.
    """
    steps = rewards.shape[0]
    done = done.astype(bool).at[-1].set(True)  # the window's end ends every environment's sum

    def step(carry: Pair, inputs: Triple) -> tuple[Pair, jax.Array]:
        acc, discount = carry
        reward, value, ended = inputs
        acc = acc + discount * reward
        term = jnp.where(ended, -acc - gamma * discount * value, 0.0)
        discount = jnp.where(ended, 1.0, discount * gamma)
        acc = jnp.where(ended, 0.0, acc)
        return (acc, discount), term

    init = (jnp.zeros_like(rewards[0]), jnp.ones_like(rewards[0]))
    _, terms = jax.lax.scan(step, init, (rewards, next_values, done))
    return jnp.sum(terms) / (steps * rewards.shape[1])


def td_lambda_targets(
    rewards: jax.Array, next_values: jax.Array, done: jax.Array, gamma: float, lam: float
) -> jax.Array:
    """The critic's TD-λ targets of one window (DiffRL's ``compute_target_values``, ``critic_method:
    td-lambda``): a reverse recursion over the steps with

        λ_i = λ_{i+1} λ (1 - d_i) + d_i
        A_i = (1 - d_i) (λ gamma A_{i+1} + gamma v_i + (1 - λ_i) / (1 - λ) r_i)
        B_i = gamma (v_i d_i + B_{i+1} (1 - d_i)) + r_i
        target_i = (1 - λ) A_i + λ_i B_i

    where ``d`` is `done` with the window's last step counted as an end (the critic bootstraps there with
    `next_values`, as at a truncated episode's end). No gradient flows into the targets.

    Args:
        rewards, next_values, done: ``(K, B)`` as in `actor_loss`.
        gamma: gamma in [0, 1]; lam: λ in [0, 1] (1: the discounted returns, bootstrapped at the ends).

    Returns:
        ``(K, B)`` targets.
    """
    rewards, next_values = jax.lax.stop_gradient(rewards), jax.lax.stop_gradient(next_values)
    d = done.astype(rewards.dtype).at[-1].set(1.0)

    def step(carry: Triple, inputs: Triple) -> tuple[Triple, jax.Array]:
        a, b, weight = carry
        r, v, di = inputs
        weight = weight * lam * (1.0 - di) + di
        # (1 - λ_i) / (1 - λ) = 1 + λ + ... + λ^(n-1) for the n steps to the end: finite at λ = 1 too
        share = (1.0 - weight) / (1.0 - lam) if lam < 1.0 else jnp.zeros_like(weight)
        a = (1.0 - di) * (lam * gamma * a + gamma * v + share * r)
        b = gamma * (v * di + b * (1.0 - di)) + r
        return (a, b, weight), (1.0 - lam) * a + weight * b

    zeros = jnp.zeros_like(rewards[0])
    _, targets = jax.lax.scan(step, (zeros, zeros, jnp.ones_like(zeros)), (rewards, next_values, d), reverse=True)
    return targets


def critic_loss(values: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error of the critic's `values` against the TD-λ `targets` (any equal shapes)."""
    return jnp.mean((values - jax.lax.stop_gradient(targets)) ** 2)


def polyak(target: PyTree, critic: PyTree, alpha: float) -> PyTree:
    """The target critic after one update: ``alpha * target + (1 - alpha) * critic`` per leaf
    (`optax.incremental_update` with step size ``1 - alpha``; DiffRL's ``target_critic_alpha``)."""
    return optax.incremental_update(critic, target, 1.0 - alpha)


# ------------------------------------------------------------------------------------------------ the recipe

DIFFRL_FINAL_LR = 1e-5  # DiffRL's linear schedule ends at this learning rate, whatever the first one


def diffrl_recipe(lr: float = 2e-3, critic_lr: float = 2e-4, **settings: Any) -> dict[str, Any]:
    """DiffRL's SHAC hyperparameters (``examples/cfg/shac/*.yaml``) as `TrainSettings` fields: windows of 32 steps,
    gamma 0.99, lambda 0.95, 16 critic passes of 4 minibatches, target alpha 0.2, Adam with betas (0.7, 0.95) and
    PyTorch's epsilon (1e-8, optax's form), the actor's gradient clipped to norm 1, its learning rate `lr` falling
    linearly to 1e-5 over the run. `lr` and `critic_lr` are per task in DiffRL (hopper's by default; cart pole
    swing-up: 1e-2 and 1e-3); `settings` add or replace any field (e.g. ``method="C"``, ``batch_size=64`` for
    DiffRL's 64 cart-pole environments). The critic's learning rate falls as DiffRL's does (`critic_schedule`
    "linear", `critic_learning_rate`), and its inputs are standardised by running statistics (`critic_normalize`,
    DiffRL's ``obs_rms: True``; the actor's inputs are the task's own, as is its network: DiffRL's actor is a
    stochastic 64x64 ELU MLP, the paper's tasks keep their own deterministic controllers). The critic is DiffRL's
    network (`critic_network` "diffrl": LayerNorms, orthogonal kernels) fitted on minibatches in DiffRL's order
    (`critic_order` "steps": contiguous, never shuffled); benchmarks/vs_diffrl_shac.py holds these pieces against
    DiffRL's own code. DiffRL's environments end their episodes at their length, inside the window: for a task
    that does not reset itself, add ``episode_restart="step"`` (not in the recipe, which a task that resets itself
    also takes: such a task refuses the setting).

        train(CartPole(), **diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=64, epochs=500))
    """
    recipe = {
        "protocol": "shac",
        "window": 32,
        "gamma": 0.99,
        "lam": 0.95,
        "critic_iterations": 16,
        "critic_batches": 4,
        "target_alpha": 0.2,
        "lr": lr,
        "critic_lr": critic_lr,
        "critic_schedule": "linear",
        "critic_normalize": True,
        "critic_network": "diffrl",
        "critic_order": "steps",
        "adam_b1": 0.7,
        "adam_b2": 0.95,
        "adam_eps": "optax",
        "adam_epsilon": 1e-8,
        "clip": "norm",
        "clip_value": 1.0,
        "schedule": "linear",
        "final_lr_fraction": min(1.0, DIFFRL_FINAL_LR / lr),
    }
    return {**recipe, **settings}


# ------------------------------------------------------------------------------------------------ the protocol


def check_shac(task: Task, settings: TrainSettings) -> None:
    """Refuse, in one line, what the SHAC protocol cannot train: a task without rewards, a task that resets its
    own episodes without saying where (`Task.episode_ends`: the critic bootstraps there), a window longer than the
    episode, more critic minibatches than a window's samples."""
    name = type(task).__name__
    if not task.rewarded():
        raise BadArgument(
            f"{name} defines no reward(x, c, x_next), whose value the critic of $protocol learns; define it "
            "(docs/tasks.md, rewards) or train with another protocol",
            protocol="shac",
        )
    if task.resets and not task.ends_episodes():
        raise BadInput(
            f"{name} resets its own episodes but does not define episode_ends(x_next), where the SHAC protocol's "
            "critic bootstraps or stops (docs/tasks.md, rewards); define it or train with another protocol"
        )
    if task.resets and settings.episode_restart == "step":
        raise BadArgument(
            f"{name} resets its own episodes, inside the window; $episode_restart is for a task that does not: "
            "leave it out",
            episode_restart=None,
        )
    check_window(task, settings)
    window = window_length(task, settings)[0]
    if settings.critic_batches > window * settings.batch_size:
        raise BadArgument(
            f"$critic_batches is more minibatches than a window has samples ({window * settings.batch_size}: $window "
            f"steps x $batch_size environments), which would leave every minibatch empty; give at most "
            f"{window * settings.batch_size}",
            critic_batches=settings.critic_batches,
            window=window,
            batch_size=settings.batch_size,
        )


CRITIC_HIDDEN = (64, 64)  # DiffRL's critic_mlp units for its smaller tasks (cfg/shac/*.yaml), ELU activations
CRITIC_BETAS = (0.7, 0.95)  # DiffRL's Adam betas for both networks
CRITIC_CLIP = 1.0  # DiffRL's grad_norm, applied to the critic's gradient


class ShacState(NamedTuple):
    """What changes from update to update under the SHAC protocol: the stream protocol's state (`StreamState`:
    the actor's parameters and optimizer state, the carried environments, their clocks and the key) and the
    critic's parameters, its optimizer state and the target critic's parameters (arrays only); with
    ``critic_normalize``, the running statistics of the critic's inputs (None without: no leaves, so checkpoints
    of runs without it keep their layout)."""

    params: PyTree
    opt_state: optax.OptState
    env: PyTree
    steps: jax.Array
    key: jax.Array
    critic: PyTree
    critic_opt: optax.OptState
    target: PyTree
    stats: Normalizer | None = None


Critic = MLP | NormedMLP


def critic_net(features: int, key: jax.Array, network: str = "mlp") -> Critic:
    """The critic: a network from `features` inputs (the task's `critic_input` and the share of the episode left) to
    a value, two hidden ELU layers of 64 (DiffRL's widths). `network` "diffrl": DiffRL's ``CriticMLP``, a LayerNorm
    after each hidden layer and orthogonal kernels of gain sqrt(2) (`nn.NormedMLP`); "mlp": the same without the
    LayerNorms, Glorot kernels (`nn.MLP`; the `TrainSettings.critic_network` default, which the SHAC study's first
    stages trained)."""
    if check_choice("critic network", network, CRITIC_NETWORKS) == "diffrl":
        return NormedMLP(features, 1, CRITIC_HIDDEN, key=key, activation=jax.nn.elu)
    return MLP(features, 1, CRITIC_HIDDEN, key=key, zero_final_kernel=False, activation=jax.nn.elu)


def critic_features(
    task: Task, x: PyTree, steps: jax.Array | None, episode: int, stats: Normalizer | None = None
) -> jax.Array:
    """``(batch, features)``: the task's `critic_input` of the states `x` (standardised by `stats` where given)
    and the share of the episode left (``(episode - steps) / episode``, at least 0): a loss at a fixed horizon
    needs the time left to be a value. `steps` None (a task that `resets` itself keeps its own clocks): the
    inputs alone."""
    return _features(task.critic_input(x), steps, episode, stats)


def _features(inputs: jax.Array, steps: jax.Array | None, episode: int, stats: Normalizer | None) -> jax.Array:
    inputs = inputs if stats is None else stats(inputs)
    if steps is None:
        return inputs
    left = jnp.maximum(episode - steps, 0).astype(jnp.result_type(float)) / episode
    return jnp.concatenate([inputs, left[:, None]], axis=1)


def critic_learning_rate(settings: TrainSettings) -> optax.ScalarOrSchedule:
    """The critic's learning rate: ``settings.critic_lr``, or with ``critic_schedule="linear"`` DiffRL's decay,
    a function of the critic's Adam step ``count``: at the run's actor update ``u = count // (critic_iterations *
    critic_batches)`` of ``U = settings.updates``, ``critic_lr + (1e-5 - critic_lr) * u / U`` (``shac.py``'s
    ``(1e-5 - critic_lr) * epoch / max_epochs + critic_lr``, held over an update's critic passes)."""
    if settings.critic_schedule == "constant":
        return settings.critic_lr
    per_update = settings.critic_iterations * settings.critic_batches
    start, updates = settings.critic_lr, settings.updates

    def schedule(count: Any) -> Any:  # optax's Numeric -> Numeric
        return start + (DIFFRL_FINAL_LR - start) * (count // per_update) / updates

    return schedule


def critic_optimizer(settings: TrainSettings) -> optax.GradientTransformation:
    """The critic's optimizer: clipping by global norm (DiffRL's ``grad_norm``), then Adam with DiffRL's betas at
    `critic_learning_rate`."""
    adam = optax.adam(critic_learning_rate(settings), b1=CRITIC_BETAS[0], b2=CRITIC_BETAS[1])
    return optax.chain(optax.clip_by_global_norm(CRITIC_CLIP), adam)


def _values(critic: Critic, features: jax.Array) -> jax.Array:
    return jax.vmap(critic)(features)[:, 0]


class Shac(Protocol):
    """SHAC's protocol (DiffRL's ``algorithms/shac.py``): the stream protocol's windows of K steps on carried
    environments, and a learned critic. Each update takes one actor step on `actor_loss` (the window's rewards,
    `Task.reward`, and the target critic's value where the window ends, 0 where an episode ends; differentiated
    with the run's gradient rule through the rollout, the value through the final state), then trains the critic
    on the window's TD-lambda targets (`td_lambda_targets`) for ``critic_iterations`` passes over
    ``critic_batches`` minibatches (`critic_order`), then moves the target critic by `polyak`. Episodes end and
    restart at window ends, as in the stream protocol, or with ``episode_restart="step"`` at their length inside the
    window (`Restarting`); their ends are terminal (the paper's tasks end at their horizon).
    A task that `resets` itself (Brax's training wrapper) ends them inside the window (`Task.episode_ends`): the
    critic bootstraps from the state before the reset where an episode was truncated, and gives 0 where it
    terminated (DiffRL's ``obs_before_reset`` and early termination); its critic sees no episode clock.
    """

    name: ClassVar[str] = "shac"
    carries: ClassVar[bool] = True
    columns: ClassVar[tuple[Column, ...]] = (Column("critic_loss"), Column("end_value"))

    def window(self, task: Task, settings: TrainSettings) -> int:
        return window_length(task, settings)[0]

    def start(self, task: Task, settings: TrainSettings, keys: Any, state: TrainState) -> ShacState:
        task = task.with_episode_ends()
        stream = initial_stream(task, settings, keys.stream, state)
        _, episode = window_length(task, settings)
        clock = None if task.resets else stream.steps
        features = critic_features(task, stream.env, clock, episode).shape[1]
        critic = eqx.filter(critic_net(features, keys.critic, settings.critic_network), eqx.is_inexact_array)
        restarted = _restarts(task, settings)  # its critic's statistics cover the share of the episode left too
        inputs = features if restarted else task.critic_input(stream.env).shape[1]
        stats = Normalizer.empty(inputs) if settings.critic_normalize else None
        return ShacState(*stream, critic, critic_optimizer(settings).init(critic), critic, stats)

    def updates(
        self, task: Task, settings: TrainSettings, step: UpdateStep, state: ShacState, data: Data
    ) -> tuple[ShacState, Record]:
        del data  # the environments are the protocol's own; the data serve the epoch's losses only
        task = task.with_episode_ends()
        window, episode = window_length(task, settings)
        gamma, lam, alpha = settings.gamma, settings.lam, settings.target_alpha
        clock = None if task.resets else state.steps
        features = critic_features(task, state.env, clock, episode).shape[1]
        structure = critic_net(features, jax.random.PRNGKey(0), settings.critic_network)
        static = eqx.filter(structure, eqx.is_inexact_array, inverse=True)
        ctx = critic_optimizer(settings)
        restarted = _restarts(task, settings)
        stepped = Restarting(task, episode) if restarted else task  # the task the window's rollout steps
        if restarted and step.observe is not None:
            observe = step.observe
            step = dataclasses.replace(step, observe=lambda params, x0: observe(params, x0["x"]))

        def update(state: ShacState, _: None) -> tuple[ShacState, Record]:
            key, key_update = jax.random.split(state.key)
            key_critic = jax.random.fold_in(key_update, CRITIC_FOLD)
            start = task.explore(state.env, key_update, window)
            if restarted:  # the states an episode ending in this window restarts from
                key_fresh = jax.random.fold_in(key_update, RESET_FOLD)
                fresh = task.explore(sample_states(task, key_fresh, settings.batch_size), key_fresh, window)
                start = stepped.start(start, state.steps, fresh)  # type: ignore[attr-defined]
            target = eqx.combine(state.target, static)
            if stepped.resets:  # the task ends episodes itself, inside the window (`Task.episode_ends`)
                clocks, done = None, None
            else:
                clocks = state.steps[None] + jnp.arange(1, window + 1)[:, None]  # (K, B): steps done after each
                done = jnp.zeros(clocks.shape, bool).at[-1].set(clocks[-1] >= episode)

            loss = window_loss(stepped, target, clocks, done, episode, gamma, state.stats)
            gradient = value_and_grad(
                loss,  # type: ignore[arg-type]  # with has_aux, the loss returns (value, aux)
                stepped.step,
                stepped.controller,
                window,
                step.rule,
                has_aux=True,
                final_state=True,
                **settings.gradient_options,
            )
            trained, record, last = dataclasses.replace(step, gradient=gradient)(
                TrainState(state.params, state.opt_state), start
            )
            rewards, values, seen, raw, ended = record.infos.pop("aux")
            targets = td_lambda_targets(rewards, values, ended, gamma, lam)
            critic, critic_opt, fitted = _fit_critic(
                state.critic, state.critic_opt, static, ctx, seen, targets, settings, key_critic
            )
            infos = {**record.infos, "critic_loss": fitted, "end_value": jnp.mean(values[-1])}
            if restarted:  # episodes restarted inside the window, at their length
                env, steps = last["x"], last["t"]
            elif task.resets:  # the task started new episodes inside the window itself
                env, steps = last, state.steps
            else:
                env, steps = next_episodes(task, settings, key_update, last, state.steps)
            stats = state.stats  # DiffRL's obs_rms: frozen within the window, then fed every state it saw
            if stats is not None:
                stats = stats.update(jnp.concatenate([raw.reshape(-1, raw.shape[-1]), stepped.critic_input(last)]))
            new = ShacState(
                trained.params,
                trained.opt_state,
                env,
                steps,
                key,
                critic,
                critic_opt,
                polyak(state.target, critic, alpha),
                stats,
            )
            return new, Record(record.values, infos, record.ok)

        return jax.lax.scan(update, state, None, length=settings.n_train // settings.batch_size)


def _restarts(task: Task, settings: TrainSettings) -> bool:
    """Whether the SHAC protocol restarts `task`'s episodes inside the window (`Restarting`)."""
    return not task.resets and settings.episode_restart == "step"


class Restarting(Task):
    """`inner`, a task that does not reset itself, as one that does (``episode_restart="step"``): its states
    ``{"x", "t", "fresh", "last", "done"}`` carry the inner state `x`, its episode's clock `t`, the fresh state it
    restarts from (drawn at the window's start), the inner state the step reached before any restart (`last`,
    for the reward and the critic) and whether the step ended an episode (`done`). An episode ends at the step
    its clock reaches `episode`, inside the window, as DiffRL's environments reset themselves; the paper's
    episodes end with nothing after them, so an end is a termination (the critic's value 0 there). The critic
    sees the inner task's `critic_input` and the share of the episode left, as `critic_features` gives it to a
    task the protocol restarts at window ends."""

    name: ClassVar[str] = "restarting"
    inner: Task
    episode: int = eqx.field(static=True)
    horizon: int = eqx.field(static=True)

    def __init__(self, inner: Task, episode: int) -> None:
        self.inner, self.episode, self.horizon = inner, episode, inner.horizon

    @property
    def resets(self) -> bool:
        return True

    def start(self, x: PyTree, clocks: jax.Array, fresh: PyTree) -> dict[str, Any]:
        """The window's first states: the carried inner states `x` at their clocks ``(batch,)``, and the `fresh`
        states an episode that ends in the window restarts from."""
        return {"x": x, "t": clocks, "fresh": fresh, "last": x, "done": jnp.zeros(clocks.shape, bool)}

    def sample(self, key: jax.Array, n: int) -> PyTree:
        x = self.inner.sample(key, n)
        return self.start(x, jnp.zeros((n,), jnp.int32), x)

    def init_controller(self, key: jax.Array) -> PyTree:
        return self.inner.init_controller(key)

    def controller(self, params: PyTree, x: PyTree) -> PyTree:
        return self.inner.controller(params, x["x"])

    def step(self, x: PyTree, c: PyTree) -> PyTree:
        reached = self.inner.step(x["x"], c)
        t = x["t"] + 1
        done = t >= self.episode
        restarted = jax.tree.map(
            lambda fresh, y: jnp.where(done.reshape(done.shape + (1,) * (y.ndim - 1)), fresh, y), x["fresh"], reached
        )
        return {"x": restarted, "t": jnp.where(done, 0, t), "fresh": x["fresh"], "last": reached, "done": done}

    def reward(self, x: PyTree, c: PyTree, x_next: PyTree) -> jax.Array:
        return self.inner.reward(x["x"], c, x_next["last"])

    def critic_input(self, x: PyTree) -> jax.Array:
        return _features(self.inner.critic_input(x["x"]), x["t"], self.episode, None)

    def episode_ends(self, x_next: PyTree) -> EpisodeEnds:
        at_end = _features(self.inner.critic_input(x_next["last"]), jnp.full_like(x_next["t"], self.episode),
                           self.episode, None)  # fmt: skip
        return EpisodeEnds(x_next["done"], jnp.zeros_like(x_next["done"]), at_end)

    def loss(self, states: PyTree, controls: PyTree) -> jax.Array:
        return self.inner.loss(states["x"], controls)


CRITIC_FOLD = 2  # folded into an update's key for the critic's minibatches


def window_loss(
    task: Task,
    target: Critic,
    clocks: jax.Array | None,
    done: jax.Array | None,
    episode: int,
    gamma: float,
    stats: Normalizer | None = None,
) -> Callable[[PyTree, PyTree], tuple[jax.Array, tuple[jax.Array, ...]]]:
    """SHAC's objective of one window as a loss of its trajectory, ``(states, controls) -> (loss, aux)`` (time-major,
    states ``(K + 1, batch, ...)``), for `core.value_and_grad` with ``has_aux=True``: `actor_loss` of the task's
    rewards and the `target` critic's values of the states after each step (0 where `done`), the critic seeing
    `clocks` ``(K, batch)`` (each environment's steps in its episode after each step), its inputs standardised by
    `stats` where given. `clocks` and `done` None: the task `resets` itself and says where episodes end
    (`Task.episode_ends`): the value there is the critic's of the state before the reset where the episode was
    truncated, 0 where it terminated. `aux`: the rewards, the values and the critic's inputs of the states before
    each step, for `td_lambda_targets` and the critic, the task's raw `critic_input` of those states (for
    `stats`), and where episodes ended ``(K, batch)``."""

    def loss(states: PyTree, controls: PyTree) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        before = jax.tree.map(lambda a: a[:-1], states)
        after = jax.tree.map(lambda a: a[1:], states)
        rewards = jax.vmap(task.reward)(before, controls, after)

        def value(inputs: jax.Array, steps: jax.Array | None) -> jax.Array:
            return _values(target, _features(inputs, steps, episode, stats))

        inputs = jax.vmap(task.critic_input)(after)
        if clocks is None or done is None:
            ends = jax.vmap(task.episode_ends)(after)
            ended = ends.done.astype(bool)
            carried_on = jax.vmap(lambda i: value(i, None))(inputs)
            at_end = jnp.where(ends.truncated, jax.vmap(lambda i: value(i, None))(ends.last), 0.0)
            values = jnp.where(ended, at_end, carried_on)
            seen = jax.vmap(lambda x: critic_features(task, x, None, episode, stats))(before)
        else:
            ended = done
            values = jnp.where(done, 0.0, jax.vmap(value)(inputs, clocks))
            seen = jax.vmap(lambda x, s: critic_features(task, x, s, episode, stats))(before, clocks - 1)
        raw = jax.lax.stop_gradient(jax.vmap(task.critic_input)(before))
        aux = (rewards, jax.lax.stop_gradient(values), jax.lax.stop_gradient(seen), raw, ended)
        return actor_loss(rewards, values, ended, gamma), aux

    return loss


def _fit_critic(
    critic: PyTree,
    opt_state: optax.OptState,
    static: PyTree,
    tx: optax.GradientTransformation,
    features: jax.Array,
    targets: jax.Array,
    settings: TrainSettings,
    key: jax.Array,
) -> tuple[PyTree, optax.OptState, jax.Array]:
    """``critic_iterations`` passes over the window's ``(K, B)`` samples in ``critic_batches`` minibatches, one Adam
    step each; returns the critic, its optimizer state and the mean loss of the last pass. `settings.critic_order`
    "steps": the samples in step order (step-major, as DiffRL's ``obs_buf.view(-1, ...)``) cut into contiguous
    minibatches, the same in every pass (DiffRL's ``CriticDataset``, which it never shuffles); "shuffled": a
    permutation drawn anew each pass from `key`. A remainder that does not fill a minibatch is left out of each pass
    (DiffRL makes it a smaller last minibatch; its window of 32 steps leaves none for 4 minibatches)."""
    x = features.reshape(-1, features.shape[-1])
    y = targets.reshape(-1)
    size = x.shape[0] // settings.critic_batches
    in_steps = settings.critic_order == "steps"

    def one_batch(
        carry: tuple[PyTree, optax.OptState], index: jax.Array
    ) -> tuple[tuple[PyTree, optax.OptState], jax.Array]:
        params, opt = carry

        def objective(p: PyTree) -> jax.Array:
            return critic_loss(_values(eqx.combine(p, static), x[index]), y[index])

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), value

    def one_pass(
        carry: tuple[PyTree, optax.OptState], key: jax.Array
    ) -> tuple[tuple[PyTree, optax.OptState], jax.Array]:
        order = jnp.arange(x.shape[0]) if in_steps else jax.random.permutation(key, x.shape[0])
        order = order[: size * settings.critic_batches]
        carry, losses = jax.lax.scan(one_batch, carry, order.reshape(settings.critic_batches, size))
        return carry, jnp.mean(losses)

    keys = jax.random.split(key, settings.critic_iterations)
    (critic, opt_state), losses = jax.lax.scan(one_pass, (critic, opt_state), keys)
    return critic, opt_state, losses[-1]
