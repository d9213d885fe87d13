"""The task interface every control problem implements, and how a task describes itself (`Option`, the class
variables of `Task`): the command line, the paper grids, the report and ``animate`` read a task's description
from its class, so a built-in task is one module plus one line in `registry.TASKS`."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

PyTree = Any
OPTION_KINDS = ("positive_int", "positive_float", "nonnegative_float", "choice")


@dataclasses.dataclass(frozen=True)
class Option:
    """Field `name` of a task, set on the command line by ``--short`` (`short` also names it in run folders and
    figure labels).

    `kind` is the form of its values: ``positive_int``, ``positive_float``, ``nonnegative_float`` or
    ``choice`` (one of `choices`)."""

    name: str
    short: str
    kind: str
    help: str
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"Option {self.name}: kind must be one of {', '.join(OPTION_KINDS)}, got {self.kind!r}")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError(f"Option {self.name}: choices are given exactly when kind is 'choice'")


class Task(eqx.Module):
    """A differentiable control problem: simulator, loss, data and a default controller.

    Subclasses are immutable (Equinox modules whose fields are static settings). States and controls are any
    pytrees of arrays (an array, a dict of fields, `mjx.Data`); their floating-point leaves carry gradients,
    other leaves (counters, flags) are carried through. Shapes are batched: the task decides the batch axis
    inside `step`, `loss` and `controller`; training splits the states of `sample` into mini-batches along the
    leading axis of every leaf.
    """

    name: eqx.AbstractClassVar[str]
    horizon: eqx.AbstractVar[int]

    # How the task describes itself (defaults: nothing to say). A built-in task sets what applies to it.
    summary: ClassVar[str] = ""
    """One line: what the task is (the help of TASK on the command line)."""
    options: ClassVar[tuple[Option, ...]] = ()
    """Its main settings: command-line options, recorded in every run's configuration (built-in tasks)."""
    complexity: ClassVar[str | None] = None
    """The setting that makes the task harder (the panels of the paper's figure; the reproduction's levels)."""
    harder_when_smaller: ClassVar[bool] = False
    """Whether smaller values of `complexity` are harder (figures go from easy to hard)."""

    @abc.abstractmethod
    def step(self, x: PyTree, c: PyTree) -> PyTree:
        """One simulator step ``x_{n+1} = S(x_n, c_n)`` on a batch of states and controls.

        Args:
            x: the states x_n, each leaf ``(batch, ...)``.
            c: the controls c_n from `controller`, each leaf ``(batch, ...)``.

        Returns:
            The states x_{n+1}: `x`'s structure, shapes and dtypes.
        """

    @abc.abstractmethod
    def loss(self, states: PyTree, controls: PyTree) -> jax.Array:
        """Loss of a batch of time-major trajectories, as returned by `stablebptt.rollout`.

        Args:
            states: each leaf ``(horizon + 1, batch, ...)``; ``states[0]`` holds the initial states.
            controls: each leaf ``(horizon, batch, ...)``.

        Returns:
            A scalar (shape ``()``), averaged over the batch.
        """

    @abc.abstractmethod
    def sample(self, key: jax.Array, n: int) -> PyTree:
        """Draw initial states.

        Args:
            key: a JAX PRNG key.
            n: how many states.

        Returns:
            A state pytree whose every leaf has leading axis `n`: ``(n, ...)``.
        """

    @abc.abstractmethod
    def init_controller(self, key: jax.Array) -> PyTree:
        """Parameters of the default controller (an Equinox module or any pytree), initialised from `key`."""

    @abc.abstractmethod
    def controller(self, params: PyTree, x: PyTree) -> PyTree:
        """Controls for a batch of states.

        Args:
            params: the controller's parameters, as from `init_controller`.
            x: the states, each leaf ``(batch, ...)``.

        Returns:
            The controls, any pytree with a floating-point leaf, each leaf ``(batch, ...)``.
        """

    def observe(self, params: PyTree, x0: PyTree) -> PyTree:
        """Parameters after a non-gradient change that training makes after each optimizer step, from the
        mini-batch's initial states `x0` (each leaf ``(batch, ...)``; e.g. running statistics of observations).
        Returns `params`' structure. The default changes nothing and costs nothing (training skips it)."""
        del x0
        return params

    @property
    def explores(self) -> bool:
        """Whether `explore` adds noise (a stochastic policy in training): such a task trains with the stream
        protocol only, which calls `explore`. The default is False."""
        return False

    def explore(self, x: PyTree, key: jax.Array, steps: int) -> PyTree:
        """States that act stochastically for the next `steps` steps, drawn with `key` (the stream protocol calls
        it at the start of every window, on the carried states and on fresh ones): a task with a stochastic
        policy puts the noise of those steps into the state, and its `controller` samples where it finds noise
        and acts deterministically (the evaluation's states) where it does not. Returns `x`'s structure plus
        what it adds. The default adds nothing: the controller is deterministic."""
        del key, steps
        return x

    @property
    def resets(self) -> bool:
        """Whether `step` itself starts a new episode where one ends (as Brax's training wrapper does: an
        episode clock in the state, auto-reset at its end or on termination): the stream protocol then never
        resets the environments it carries, and starts them with `start_stream`. The default is False."""
        return False

    def start_stream(self, x: PyTree, key: jax.Array) -> PyTree:
        """The stream protocol's first environments from the fresh states `x` of `sample` (each leaf
        ``(batch, ...)``), drawn with `key`: a task that `resets` itself spreads its episodes' clocks here, so
        that the batch does not reset all at once. Returns `x`'s structure. The default returns `x`."""
        del key
        return x

    def reward(self, x: PyTree, c: PyTree, x_next: PyTree) -> jax.Array:
        """The reward of one step, ``(batch,)``, from the states `x`, the controls `c` and the next states
        `x_next` (each leaf ``(batch, ...)``): what a learned critic's protocol (``protocol="shac"``) sums with
        discounts. A task defines it so that the rewards of an episode of the task's horizon sum to minus its
        `loss` (up to a constant that no parameter changes; docs/tasks.md, rewards). The default: none (such a
        task refuses the SHAC protocol, `rewarded`)."""
        raise NotImplementedError(f"task {self.name} does not define reward(x, c, x_next)")

    @classmethod
    def rewarded(cls) -> bool:
        """Whether the task defines its own `reward`."""
        return cls.reward is not Task.reward

    def with_episode_ends(self) -> Task:
        """The task as a learned critic's protocol steps it when it `resets` itself: one whose states carry what
        `episode_ends` reads (e.g. the observation before an auto-reset). Kept apart so that the states of other
        protocols, and their checkpoints, do not change. The default: the task itself."""
        return self

    def episode_ends(self, x_next: PyTree) -> EpisodeEnds:
        """For a task that `resets` itself, where the step into the states `x_next` (each leaf ``(batch, ...)``,
        stepped by `with_episode_ends`'s task) ended an episode, for SHAC's critic (DiffRL's ``done`` and
        ``obs_before_reset``). The default: none such task (the SHAC protocol refuses a resetting task without
        it)."""
        raise NotImplementedError(f"task {self.name} does not define episode_ends(x_next)")

    @classmethod
    def ends_episodes(cls) -> bool:
        """Whether the task defines its own `episode_ends`."""
        return cls.episode_ends is not Task.episode_ends

    def critic_input(self, x: PyTree) -> jax.Array:
        """What a learned critic sees of the states `x` (each leaf ``(batch, ...)``): ``(batch, features)``. The
        default: every floating-point leaf, flattened per state and concatenated."""
        leaves = [leaf for leaf in jax.tree.leaves(x) if jnp.issubdtype(leaf.dtype, jnp.floating)]
        return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """Draw trajectories for ``stablebptt animate`` (optional: a task that does not override it cannot be
        animated). `axes`: one matplotlib Axes per sample; `states` and `controls`: NumPy arrays (or pytrees of
        them) of one rollout, time-major, ``(horizon + 1, samples, ...)`` and ``(horizon, samples, ...)``.
        Returns ``update(n)``, which draws time index `n` (and may return the artists it changed)."""
        raise NotImplementedError(f"task {self.name} does not define draw(axes, states, controls)")

    @classmethod
    def can_draw(cls) -> bool:
        """Whether the task defines its own `draw`."""
        return cls.draw is not Task.draw

    def config(self) -> dict[str, Any]:
        """The task's settings as JSON-ready values (to rebuild it with ``type(task)(**config)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class EpisodeEnds(NamedTuple):
    """Where a step of a task that resets itself ended episodes (`Task.episode_ends`): `done` ``(batch,)`` bool, an
    episode ended at this step (the state after it is already the next episode's first); `truncated` ``(batch,)``
    bool, it ended at its time limit rather than by termination (a critic bootstraps there, and gives 0 at a
    termination); `last` ``(batch, features)``, the task's `critic_input` of the state before the reset."""

    done: jax.Array
    truncated: jax.Array
    last: jax.Array
