"""Any Brax environment as a stablebptt task: ``stablebptt train brax:inverted_double_pendulum``.

`BraxTask` wraps ``brax.envs.get_environment(env, backend=...)``. The state is Brax's `State` pytree as the
environment returns it (the physics `pipeline_state`, `obs`, `reward`, `done`, `metrics`, `info`), batched
along a leading axis; the control is the action in [-1, 1]; the loss is minus the summed reward over the
horizon, averaged over the batch. Brax is an optional extra (``pip install 'stablebptt[brax]'``), imported on
first use. Costs of the backends and the comparison with Brax's own analytic policy gradients: docs/brax.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import io
import itertools
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.checks import BadInput, check_choice, check_layer_widths, check_positive_int, layer_widths
from ..core.unroll import rollout
from ..nn import MLP, Normalizer
from ..tasks.base import EpisodeEnds, Task

BACKENDS = ("mjx", "generalized", "positional", "spring")
NETWORKS = ("mlp", "apg")
ACTIONS = ("deterministic", "sampled")  # BraxTask.actions: in training windows of the stream protocol
OBJECTIVES = ("episode", "apg")  # BraxTask.objective: minus the episode's summed reward, or APG's mean reward
APG_MIN_STD, APG_VAR_SCALE = 0.001, 0.1  # APG's NormalTanhDistribution(event_size, var_scale=0.1)
NOISE = "policy_noise"  # the key of `State.info` that holds a window's action noise (`BraxTask.explore`)
LAST_OBS = "obs_before_reset"  # the key of `State.info` that keeps a step's observation before an auto-reset


def apg_noise(key: jax.Array, steps: int, batch: int, size: int) -> jax.Array:
    """The standard normal noise of APG's sampled actions over `steps` steps, ``(batch, steps, size)``: APG's
    unroll splits its key at every step (``key, key_sample = split(key)``) and samples the whole batch's
    actions with ``key_sample``."""

    def one(k: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        k, k_sample = jax.random.split(k)
        return k, jax.random.normal(k_sample, (batch, size))

    _, noise = jax.lax.scan(one, key, None, length=steps)
    return jnp.swapaxes(noise, 0, 1)  # BraxTask.network: stablebptt's tanh MLP, or Brax APG's (`APGNetwork`)


INSTALL_HINT = "Brax environments need Brax: pip install 'stablebptt[brax]'"


def _brax_envs() -> Any:
    """The `brax.envs` module. Brax's MJX backend prints "Failed to import warp ..." to stdout without the
    optional GPU package `warp`; that output is swallowed here, as are Brax's import-time warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs
    return envs


def _quiet_import(module: str) -> Any:
    """`module` of Brax, imported with `_brax_envs`'s care (its import-time output and warnings swallowed)."""
    _brax_envs()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def environment_names() -> list[str]:
    """The names `brax.envs.get_environment` knows (Brax's own and any registered in this process)."""
    envs = _brax_envs()
    registry = getattr(envs, "_envs", None)  # Brax keeps its registry in a module dict without a public getter
    return sorted(registry) if isinstance(registry, dict) else []


def check_environment_name(name: str) -> None:
    """A one-line `BadInput` unless Brax knows the environment `name` (cheap: nothing is built)."""
    if name not in environment_names():
        raise BadInput(
            f"unknown Brax environment {name!r}; allowed: {', '.join(environment_names())} "
            "(or one registered with brax.envs.register_environment before the task is built)"
        )


@contextlib.contextmanager
def brax_training_loops() -> Any:
    """Let Brax 0.14's own training loops (``apg.train``, ``ppo.train``) run under this JAX on one device.

    They call ``jax.device_put_replicated``, which JAX 0.8 removed. On one device that call is a stack along a new
    leading (device) axis put on the device; within this context JAX has it (and loses it again after, if it did
    not have it before). On several devices it would have to shard: `BadInput`."""
    if hasattr(jax, "device_put_replicated"):
        yield
        return
    if len(jax.local_devices()) != 1:
        raise BadInput(
            f"Brax's training loops need jax.device_put_replicated, which JAX {jax.__version__} no longer has; it is "
            f"supplied on one device only, this process has {len(jax.local_devices())}: limit it to one, e.g. "
            "CUDA_VISIBLE_DEVICES=0"
        )

    def device_put_replicated(tree: Any, devices: Any) -> Any:
        return jax.tree.map(lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), devices[0]), tree)

    setattr(jax, "device_put_replicated", device_put_replicated)  # noqa: B010 -- JAX's stubs still declare it
    try:
        yield
    finally:
        delattr(jax, "device_put_replicated")


@functools.lru_cache(maxsize=32)
def environment(name: str, backend: str, solver_iterations: int) -> Any:
    """The Brax environment `name` on `backend` (cached per setting, built eagerly even inside a trace, so the
    cache holds concrete arrays, never tracers). For ``backend="mjx"`` and ``solver_iterations > 0`` the MuJoCo
    model's ``opt.iterations`` is set to it (see `BraxTask`)."""
    envs = _brax_envs()
    check_environment_name(name)
    with jax.ensure_compile_time_eval(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = envs.get_environment(name, backend=backend)
        if backend == "mjx" and solver_iterations > 0:
            env.sys = env.sys.tree_replace({"opt.iterations": solver_iterations})
    return env


@functools.lru_cache(maxsize=32)
def wrapped_environment(
    name: str, backend: str, solver_iterations: int, episode_length: int, last_obs: bool = False
) -> Any:
    """`environment` in Brax's training wrapper (`brax.envs.training.wrap`, as ``apg.train`` wraps it): batched
    by `jax.vmap`, an episode clock in ``info["steps"]``, done at `episode_length` steps or on termination, and
    reset to the episode's first state at the step after (cached per setting). With `last_obs`, every state also
    keeps its step's observation before the auto-reset in ``info[LAST_OBS]`` (DiffRL's ``obs_before_reset``, where
    SHAC's critic bootstraps a truncated episode)."""
    envs = _brax_envs()
    with jax.ensure_compile_time_eval():
        if not last_obs:
            return envs.training.wrap(environment(name, backend, solver_iterations), episode_length=episode_length)
        wrappers = envs.training
        episodes = wrappers.EpisodeWrapper(
            wrappers.VmapWrapper(environment(name, backend, solver_iterations)), episode_length, 1
        )
        return wrappers.AutoResetWrapper(_keep_last_obs(episodes))


def _keep_last_obs(env: Any) -> Any:
    """`env` wrapped to keep each step's observation in ``info[LAST_OBS]`` (before Brax's auto-reset replaces it)."""
    base = _brax_envs().Wrapper

    class KeepLastObs(base):  # type: ignore[misc,valid-type]
        def reset(self, rng: jax.Array) -> Any:
            state = self.env.reset(rng)
            return state.replace(info={**state.info, LAST_OBS: state.obs})

        def step(self, state: Any, action: jax.Array) -> Any:
            state = self.env.step(state, action)
            return state.replace(info={**state.info, LAST_OBS: state.obs})

    return KeepLastObs(env)


def _without(info: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != key}


class APGNetwork(eqx.Module):
    """Brax APG's policy network (`brax.training.agents.apg.networks.make_apg_networks`): dense layers, each
    hidden one followed by ELU and a layer norm (flax's: epsilon 1e-6, learned scale and offset), kernels drawn
    orthogonal with scale 0.01, zero biases. The output ``(2 * action_size,)`` holds the location and the
    pre-softplus scale of APG's tanh-normal action distribution; its mode (the deterministic action) is
    ``tanh(location)``."""

    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.LayerNorm, ...]

    def __init__(
        self, in_size: int, action_size: int, hidden: tuple[int, ...], *, key: jax.Array, brax_params: Any = None
    ) -> None:
        """Initialised by Brax's own initialiser from `key` (``apg.train``'s network for the same key), or with
        the weights `brax_params` of a Brax APG policy network of these sizes (``policy_network.init``'s or
        ``apg.train``'s parameters, ``{"params": {"hidden_i": ..., "LayerNorm_i": ...}}``)."""
        if brax_params is None:
            networks = _quiet_import("brax.training.agents.apg.networks")
            brax_net = networks.make_apg_networks(in_size, action_size, hidden_layer_sizes=tuple(hidden))
            brax_params = brax_net.policy_network.init(key)
        p = brax_params["params"]
        sizes = (in_size, *hidden, 2 * action_size)
        kernels = [p[f"hidden_{i}"]["kernel"] for i in range(len(sizes) - 1)]
        if [k.shape for k in kernels] != list(itertools.pairwise(sizes)):
            raise BadInput(f"brax_params hold kernels of shapes {[k.shape for k in kernels]}, not of sizes {sizes}")

        def dense(i: int) -> eqx.nn.Linear:
            layer = eqx.nn.Linear(sizes[i], sizes[i + 1], key=key)
            return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (kernels[i].T, p[f"hidden_{i}"]["bias"]))

        def norm(i: int) -> eqx.nn.LayerNorm:
            ln = eqx.nn.LayerNorm(hidden[i], eps=1e-6)
            scale, bias = p[f"LayerNorm_{i}"]["scale"], p[f"LayerNorm_{i}"]["bias"]
            return eqx.tree_at(lambda m: (m.weight, m.bias), ln, (scale, bias))

        self.layers = tuple(dense(i) for i in range(len(sizes) - 1))
        self.norms = tuple(norm(i) for i in range(len(hidden)))

    def __call__(self, obs: jax.Array) -> jax.Array:
        h = obs
        for layer, norm in zip(self.layers[:-1], self.norms, strict=True):
            h = norm(jax.nn.elu(layer(h)))
        return self.layers[-1](h)


class BraxPolicy(eqx.Module):
    """``action = tanh(net(normalizer(obs)))`` for one observation ``(obs_size,)``; the action
    ``(action_size,)`` lies in [-1, 1], Brax's convention. `net` is a `stablebptt.nn.MLP` with one output per
    action, or an `APGNetwork`, of whose output the first half (the location of APG's tanh-normal distribution)
    is used: APG's policy in its deterministic mode. `normalizer` is None without observation normalisation."""

    mlp: MLP | APGNetwork
    normalizer: Normalizer | None = None

    def __call__(self, obs: jax.Array) -> jax.Array:
        out = self.mlp(obs if self.normalizer is None else self.normalizer(obs))
        if isinstance(self.mlp, APGNetwork):
            out = out[: out.shape[-1] // 2]
        return jnp.tanh(out)

    def sample(self, obs: jax.Array, noise: jax.Array) -> jax.Array:
        """APG's sampled action for one observation and standard normal `noise` ``(action_size,)``:
        ``tanh(loc + scale * noise)`` with ``scale = (softplus(raw) + 0.001) * 0.1`` (Brax's
        `NormalTanhDistribution(var_scale=0.1)`), differentiable in the parameters (reparameterisation). Needs
        an `APGNetwork`."""
        if not isinstance(self.mlp, APGNetwork):
            raise BadInput("sampled actions need APG's network (network='apg'): its output holds their scale")
        out = self.mlp(obs if self.normalizer is None else self.normalizer(obs))
        loc, raw = jnp.split(out, 2, axis=-1)
        scale = (jax.nn.softplus(raw) + APG_MIN_STD) * APG_VAR_SCALE
        return jnp.tanh(loc + scale * noise)


class BraxTask(Task):
    """A Brax environment as a control task.

    State: Brax's `State` as ``env.reset`` and ``env.step`` return it, every leaf with a leading batch axis.
    Control: the action ``(batch, action_size)`` in [-1, 1] (the environment scales it to its actuators).

    Loss: ``-mean over the batch of sum_t w_t r_t``: the rewards ``r_1 .. r_H`` of the `horizon` steps. With
    `mask_done` (default) ``w_t`` is 1 until the step at which ``done`` first becomes 1, that step included, and
    0 after it, so the loss counts exactly what Brax's evaluation counts as an episode's reward; the weights
    carry no gradient. Without it every step counts. The rewards of these environments are differentiable
    functions of the state, with one exception to know: a constant alive bonus (all of `inverted_pendulum`'s
    reward, part of `hopper`'s) has gradient zero; only its termination carries information, and termination
    is a step function. docs/brax.md shows what that means for training.

    Data (`sample`): ``env.reset`` with keys split from the given key, one per state.

    Controller (`BraxPolicy`): `stablebptt.nn.MLP` with tanh hidden layers (`hidden`, APG's widths by default)
    on ``state.obs``, then tanh; Glorot-uniform kernels throughout (the last one too by default: with
    `zero_final_kernel` every initial action is exactly 0, and from such exact rest states MJX's one-iteration
    solver gave NaN gradients on inverted_double_pendulum, only in XLA's optimised build); with
    `normalize_observations` the observations are standardised with running statistics of every observation of
    the mini-batches' rollouts, updated after each optimizer step (`observe`), as Brax's APG does with
    ``normalize_observations=True``. With ``network="apg"`` the net is APG's own (`APGNetwork`: ELU and layer
    norm, orthogonal kernels of scale 0.01, `hidden` as its widths) and the action its deterministic mode; with
    ``actions="sampled"`` the actions of the stream protocol's training windows are sampled from its tanh-normal
    as APG's are (`explore`: the noise drawn with APG's key sequence, differentiated by reparameterisation), and
    evaluation acts by the mode.

    Episodes (`auto_reset`): 0 (default) steps the environment as is; N > 0 steps it inside Brax's training
    wrapper, as ``apg.train`` does (`wrapped_environment`): every state counts its episode's steps, is done at N
    or on termination, and the step after starts again from that environment's first state (auto-reset), so
    that the stream protocol (``--protocol stream``) carries the environments on indefinitely (`resets`), their
    clocks spread at the start as APG spreads them (`start_stream`). With ``objective="apg"`` the loss is APG's,
    ``-mean`` of every step's reward over the window and the batch (episodes that ended and restarted included,
    `mask_done` not applied). Together with ``network="apg"``, ``actions="sampled"`` and the settings
    ``key_scheme="apg"``, APG's optimizer and clipping, this trains as ``apg.train`` (docs/brax.md).

    Backends: ``"generalized"`` (default, Brax's own default) is Brax's generalized-coordinates pipeline,
    differentiable as is. ``"mjx"`` is MuJoCo MJX, 1.5-2.8x faster per step here; its constraint solver runs in
    a `lax.while_loop`, which reverse mode cannot differentiate, so with ``solver_iterations=1`` (the default)
    the model's ``opt.iterations`` is 1 and the solver is one Newton step whose line search is a `lax.scan`: it
    differentiates, contacts included, but gave NaN gradients at the first update on reacher and (under JAX
    0.7.2) inverted_pendulum, where generalized did not. ``solver_iterations=0`` keeps the environment's own
    setting (forward only). ``"positional"`` and ``"spring"`` are Brax's cheaper approximations. Costs and the
    measurements: docs/brax.md.
    """

    name: ClassVar[str] = "brax"
    env: str = eqx.field(static=True, default="inverted_double_pendulum")
    backend: str = eqx.field(static=True, default="generalized")
    horizon: int = eqx.field(static=True, default=100)
    solver_iterations: int = eqx.field(static=True, default=1)
    hidden: tuple[int, ...] = eqx.field(static=True, default=(32, 32, 32, 32), converter=layer_widths)
    zero_final_kernel: bool = eqx.field(static=True, default=False)
    normalize_observations: bool = eqx.field(static=True, default=False)
    mask_done: bool = eqx.field(static=True, default=True)
    network: str = eqx.field(static=True, default="mlp")
    actions: str = eqx.field(static=True, default="deterministic")
    auto_reset: int = eqx.field(static=True, default=0)
    objective: str = eqx.field(static=True, default="episode")
    keep_last_obs: bool = eqx.field(static=True, default=False)  # set by `with_episode_ends` (SHAC), not by hand

    def __check_init__(self) -> None:
        if importlib.util.find_spec("brax") is None:
            raise BadInput(INSTALL_HINT)
        if not isinstance(self.env, str) or not self.env:
            raise BadInput(f"env must be the name of a Brax environment, got {self.env!r}")
        check_choice("Brax backend", self.backend, BACKENDS)
        check_positive_int("horizon", self.horizon)
        if (
            isinstance(self.solver_iterations, bool)
            or not isinstance(self.solver_iterations, int)
            or self.solver_iterations < 0
        ):
            raise BadInput(
                f"solver_iterations must be an integer >= 0 (0 keeps the environment's own setting, "
                f"which reverse mode cannot differentiate on mjx), got {self.solver_iterations!r}"
            )
        check_layer_widths("hidden", self.hidden)
        check_choice("network", self.network, NETWORKS)
        check_choice("actions", self.actions, ACTIONS)
        check_choice("objective", self.objective, OBJECTIVES)
        if isinstance(self.auto_reset, bool) or not isinstance(self.auto_reset, int) or self.auto_reset < 0:
            raise BadInput(
                "auto_reset must be an integer >= 0 (0: no episode clock; N: Brax's training wrapper, "
                f"episodes of N steps restarted automatically), got {self.auto_reset!r}"
            )
        if self.actions == "sampled" and self.network != "apg":
            raise BadInput("actions='sampled' needs network='apg' (APG's network outputs the actions' scale)")
        if self.network == "apg" and self.zero_final_kernel:
            raise BadInput("zero_final_kernel applies to network='mlp'; APG's network has its own initialisation")
        for flag in ("zero_final_kernel", "normalize_observations", "mask_done"):
            if not isinstance(getattr(self, flag), bool):
                raise BadInput(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        # An unknown name fails here, in one line; the environment itself (seconds to build: MuJoCo compiles its
        # model) is built on first use, so that checking a grid of runs' configurations builds none.
        check_environment_name(self.env)

    @property
    def brax_env(self) -> Any:
        """The unwrapped, unbatched Brax environment of this setting."""
        return environment(self.env, self.backend, self.solver_iterations)

    @property
    def training_env(self) -> Any:
        """The environment `step` and `sample` use: with `auto_reset`, Brax's training wrapper around
        `brax_env` (`brax.envs.training.wrap`: batched, episode clock, auto-reset), else None (the environment
        is stepped as is, batched by `jax.vmap`)."""
        if not self.auto_reset:
            return None
        return wrapped_environment(self.env, self.backend, self.solver_iterations, self.auto_reset, self.keep_last_obs)

    @property
    def resets(self) -> bool:
        return self.auto_reset > 0

    def reward(self, x: Any, c: Any, x_next: Any) -> jax.Array:
        """The environment's reward of the step, ``(batch,)``: what SHAC's critic learns the value of."""
        del x, c
        return x_next.reward

    def critic_input(self, x: Any) -> jax.Array:
        """The observation ``(batch, observation_size)``, as DiffRL's critic sees it."""
        return x.obs

    def with_episode_ends(self) -> BraxTask:
        """With `auto_reset`: the task whose states keep the observation before an auto-reset (`episode_ends`)."""
        return dataclasses.replace(self, keep_last_obs=True) if self.auto_reset else self

    def episode_ends(self, x_next: Any) -> EpisodeEnds:
        """Where Brax's training wrapper ended episodes at the step into `x_next`: ``done``, truncated by the
        episode's length (``info["truncation"]``) rather than terminated, and the observation before the reset
        (needs `with_episode_ends`' task)."""
        if LAST_OBS not in x_next.info:
            raise BadInput("episode_ends needs the states of task.with_episode_ends() (BraxTask with auto_reset)")
        return EpisodeEnds(x_next.done > 0, x_next.info["truncation"] > 0, x_next.info[LAST_OBS])

    def start_stream(self, x: Any, key: jax.Array) -> Any:
        """With `auto_reset` N: as APG starts its environments, each episode's step counter drawn uniformly
        from ``[0, N]`` (rounded) with `key`, then one step with zero actions."""
        if not self.auto_reset:
            return x
        steps = jnp.round(jax.random.uniform(key, x.info["steps"].shape, maxval=self.auto_reset))
        x = x.replace(info={**x.info, "steps": steps.astype(x.info["steps"].dtype)})
        return self.step(x, jnp.zeros((x.obs.shape[0], self.action_size), x.obs.dtype))

    @property
    def observation_size(self) -> int:
        return int(self.brax_env.observation_size)

    @property
    def action_size(self) -> int:
        return int(self.brax_env.action_size)

    def step(self, x: Any, action: jax.Array) -> Any:
        wrapped = self.training_env
        if wrapped is not None:
            noise = x.info.get(NOISE)
            # the wrappers update `info` and its `episode_metrics` in place: a rebuilt pytree keeps the caller's
            new = wrapped.step(jax.tree.map(lambda a: a, x.replace(info=_without(x.info, NOISE))), action)
            if noise is not None:  # the next step's noise first (`explore`)
                new = new.replace(info={**new.info, NOISE: jnp.roll(noise, -1, axis=1)})
            return new
        env = self.brax_env

        def one(state: Any, a: jax.Array) -> Any:
            # Brax's environments update `metrics` in place; a copy keeps the caller's state untouched.
            new = env.step(state.replace(metrics=dict(state.metrics), info=dict(state.info)), a)
            if NOISE in state.info:  # the next step's noise first (`explore`)
                new = new.replace(info={**new.info, NOISE: jnp.roll(state.info[NOISE], -1, axis=0)})
            return new

        return jax.vmap(one)(x, action)

    def loss(self, states: Any, controls: Any) -> jax.Array:
        del controls
        rewards = states.reward[1:]  # (horizon, batch): the reward of each step
        if self.objective == "apg":
            return -jnp.mean(rewards)
        if self.mask_done:
            alive = jax.lax.stop_gradient(jnp.cumprod(1.0 - states.done[:-1], axis=0))
            rewards = rewards * alive
        return -jnp.mean(jnp.sum(rewards, axis=0))

    def sample(self, key: jax.Array, n: int) -> Any:
        keys = jax.random.split(key, n)
        wrapped = self.training_env
        return jax.vmap(self.brax_env.reset)(keys) if wrapped is None else wrapped.reset(keys)

    def init_controller(self, key: jax.Array) -> BraxPolicy:
        mlp: MLP | APGNetwork
        if self.network == "apg":
            mlp = APGNetwork(self.observation_size, self.action_size, self.hidden, key=key)
        else:
            mlp = MLP(
                self.observation_size, self.action_size, self.hidden, key=key, zero_final_kernel=self.zero_final_kernel
            )
        return BraxPolicy(mlp, Normalizer.empty(self.observation_size) if self.normalize_observations else None)

    def controller(self, params: BraxPolicy, x: Any) -> jax.Array:
        if NOISE in x.info:  # states of a training window with a sampled policy (`explore`)
            return jax.vmap(params.sample)(x.obs, x.info[NOISE][:, 0])
        return jax.vmap(params)(x.obs)

    @property
    def explores(self) -> bool:
        return self.actions == "sampled"

    def explore(self, x: Any, key: jax.Array, steps: int) -> Any:
        """With ``actions="sampled"``: the states with the noise of APG's sampled actions for the next `steps`
        steps (`apg_noise` from `key`) in ``info["policy_noise"]``, ``(batch, steps, action_size)``; each step
        moves the next step's noise to the front. Otherwise `x`."""
        if self.actions != "sampled":
            return x
        batch = x.obs.shape[0]
        return x.replace(info={**x.info, NOISE: apg_noise(key, steps, batch, self.action_size)})

    def observe(self, params: BraxPolicy, x0: Any) -> BraxPolicy:
        """With observation normalisation: the statistics updated with every observation of a rollout of the
        mini-batch `x0` under `params` (forward only, no gradient)."""
        if not isinstance(params, BraxPolicy) or params.normalizer is None:
            return params
        states, _ = rollout(self.step, self.controller, jax.lax.stop_gradient(params), x0, self.horizon)
        return eqx.tree_at(lambda p: p.normalizer, params, params.normalizer.update(states.obs))

    def policy(self, params: BraxPolicy) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, dict[str, Any]]]:
        """A Brax policy ``(obs, key) -> (action, extras)`` of `params`, for Brax's own tools (e.g.
        `brax.training.acting.Evaluator`); observations ``(batch, obs_size)``."""

        def act(obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
            del key
            return jax.vmap(params)(obs), {}

        return act
