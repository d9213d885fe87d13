"""The parts of an epoch every training protocol shares, and the dataset protocol (the paper's).

- `UpdateStep`: one optimizer step of a gradient rule: its gradient function, the Optax transformation, the rule
  (`core.Method`: its update, its policy on non-finite statistics, its metric columns) and what happens to an
  update that is not finite.
- `Protocol`: how updates see the simulator (which initial states each update unrolls, what the training state
  carries from one update to the next); one epoch is its updates, then `epoch_metrics`, the same for every
  protocol. `Dataset` (here) is the paper's: updates on mini-batches of fixed initial states in a fixed order;
  `stream.Stream` runs environments on from one update to the next.
- `make_epoch`: the one epoch builder, for a run or (with a rule and an optimizer of traced values) for a member
  of a batched group (`group`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from ..core import rollout, trees, value_and_grad
from ..core.checks import BadInput, BadType
from ..core.gradients import ValueAndGrad
from ..core.methods import RULES, Column, Method, aggregate
from ..tasks import Task

if TYPE_CHECKING:
    from .settings import TrainSettings

PyTree = Any
# One epoch: (state, data) -> (state, metrics), the metrics scalars
Epoch = Callable[["TrainState", "Data"], tuple["TrainState", dict[str, jax.Array]]]


class Data(NamedTuple):
    """Initial states, pytrees as `Task.sample` returns them: every leaf of `train` has leading axis
    ``n_train``, every leaf of `test` ``n_test``."""

    train: PyTree
    test: PyTree


class TrainState(NamedTuple):
    """What changes from epoch to epoch: the differentiable parameters and the optimizer state."""

    params: PyTree
    opt_state: optax.OptState


def make_data(task: Task, key: jax.Array, n_train: int = 256, n_test: int = 256) -> Data:
    """``n_train`` and ``n_test`` initial states from `task.sample`; an error it raises, or a result that is not
    a pytree of arrays, is a one-line `BadInput` naming it."""
    key_train, key_test = jax.random.split(key)
    return Data(sample_states(task, key_train, n_train), sample_states(task, key_test, n_test))


def sample_states(task: Task, key: jax.Array, n: int) -> PyTree:
    """``task.sample(key, n)``, checked to be a pytree of arrays (`SimulatorFault` if it raises, `BadType` for a
    leaf that is not an array, e.g. a list of numbers)."""
    what = f"{type(task).__name__}.sample(key, {n})"
    states = trees.guard("sampler", task.sample, lambda key, n: f"called as {what}")(key, n)
    leaves = jax.tree_util.tree_flatten_with_path(states)[0]
    if not leaves:
        raise BadInput(
            f"{what} returned no arrays (got {states!r:.100}); allowed: a pytree of arrays with leading axis {n}"
        )
    for path, leaf in leaves:
        if not isinstance(leaf, jax.Array | np.ndarray):
            where = jax.tree_util.keystr(path) or "the root"
            raise BadType(
                f"{what} returned a leaf at {where} that is not an array ({type(leaf).__name__}); "
                f"allowed: a pytree of arrays with leading axis {n} (e.g. jnp.asarray(...))"
            )
    return states


def user_loss(task: Task) -> Callable[[PyTree, PyTree], jax.Array]:
    """`task.loss` wrapped so that an error it raises is a one-line `SimulatorFault` naming it (trace time
    only)."""
    return trees.guard("loss", task.loss, trees.loss_inputs)


def check_data(task: Task, data: Data, n_train: int, n_test: int) -> None:
    """Every leaf of the sampled states must have the requested number of states on its leading axis."""
    for part, n in (("train", n_train), ("test", n_test)):
        what = f"{type(task).__name__}.sample(key, {n})"
        size = trees.leading_size(getattr(data, part), what)
        if size != n:
            raise BadInput(
                f"{what} returned {size} states on the leading axis instead of {n}; "
                f"got {trees.describe(getattr(data, part))}"
            )


def minibatches(states: PyTree, batch_size: int) -> PyTree:
    """The first ``n // batch_size * batch_size`` states as ``(n // batch_size, batch_size, ...)`` per leaf."""
    n_batches = trees.leading_size(states, "the training states") // batch_size
    return jax.tree.map(lambda a: a[: n_batches * batch_size].reshape(n_batches, batch_size, *a.shape[1:]), states)


def evaluate(task: Task, params: PyTree, x0: PyTree) -> jax.Array:
    """The task's loss of `params` on the initial states `x0`, all at once."""
    states, controls = rollout(task.step, task.controller, params, x0, task.horizon)
    return user_loss(task)(states, controls)


def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` where `mask` (NaN when nothing is masked in)."""
    return jnp.sum(jnp.where(mask, values, 0)) / jnp.sum(mask)


class Record(NamedTuple):
    """What an epoch keeps of its updates (each with the updates on the leading axis once scanned): the loss
    values, the rules' infos (``grad_norm`` and the rule's statistics) and whether each update was finite."""

    values: jax.Array
    infos: dict[str, jax.Array]
    ok: jax.Array


@dataclasses.dataclass(frozen=True)
class UpdateStep:
    """One optimizer step of a gradient rule, on any initial states.

    Attributes:
        gradient: ``(params, x0) -> (value, update, info)``, `core.value_and_grad` of `rule`.
        tx: the Optax transformation (clipping, the optimizer, its learning rate).
        rule: the gradient rule; its `accepts` decides, with the finiteness of the loss, the update and the new
            parameters, whether the step was finite.
        static: the non-array part of the parameters.
        skip_nonfinite: a step that is not finite leaves parameters and optimizer state unchanged (like
            `optax.apply_if_finite`) and is left out of the epoch's means; else it is recorded (the run stops).
        observe: the task's non-gradient update of the parameters after each step (`Task.observe`), or None.
    """

    gradient: ValueAndGrad
    tx: optax.GradientTransformation
    rule: Method
    static: PyTree
    skip_nonfinite: bool = False
    observe: Callable[[PyTree, PyTree], PyTree] | None = None

    def params(self, state: Any) -> PyTree:
        """The full parameters (arrays and the rest) of a training state."""
        return eqx.combine(state.params, self.static)

    def __call__(self, state: TrainState, x0: PyTree) -> tuple[TrainState, Record, PyTree]:
        """``(new state, record, last state)`` of one step from the initial states `x0` (the last state of the
        rollout where `gradient` returns ``info["final_state"]``, else None)."""
        value, grads, info = self.gradient(self.params(state), x0)
        last = info.pop("final_state", None)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if self.observe is not None:
            params = eqx.partition(self.observe(eqx.combine(params, self.static), x0), eqx.is_inexact_array)[0]
        ok = _all_finite((value, grads, params, info["grad_norm"])) & self.rule.accepts(info)
        new = TrainState(params, opt_state)
        if self.skip_nonfinite:
            new = otu.tree_where(ok, new, state)
        return new, Record(value, info, ok), last


# The metric columns of the built-in rules: every run's metrics.csv has them (NaN where its rule has none), so
# that the files of every method read alike; a rule of one's own adds its own columns after them.
BUILTIN_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(c.name for r in RULES.values() for c in r.columns))
BASE_METRICS = ("epoch", "loss", "train_loss", "test_loss", "grad_norm", "grad_size")
END_METRICS = ("skipped", "epoch_time")


def metric_names(rule: Method | None = None, protocol: Protocol | None = None) -> tuple[str, ...]:
    """The columns of an epoch's row (a run's ``metrics.csv``): the losses and the update's norms, the built-in
    rules' columns, `rule`'s own columns, the `protocol`'s (SHAC's critic loss), then ``skipped`` and
    ``epoch_time``."""
    own = tuple(c.name for c in rule.columns if c.name not in BUILTIN_COLUMNS) if rule is not None else ()
    extra = tuple(c.name for c in protocol.columns) if protocol is not None else ()
    return (*BASE_METRICS, *BUILTIN_COLUMNS, *own, *extra, *END_METRICS)


def epoch_metrics(
    task: Task, step: UpdateStep, params: PyTree, data: Data, record: Record, extra: tuple[Column, ...] = ()
) -> dict[str, jax.Array]:
    """An epoch's metrics (`metric_names`, without epoch and epoch_time, plus ``nonfinite``) from its updates'
    `record` and the losses of `params` on the training and test states. The rule's columns come from
    `core.Method.aggregate`; the built-in rules' columns it does not have are NaN; `extra`: the protocol's."""
    used = record.ok if step.skip_nonfinite else jnp.ones_like(record.ok)
    nan = jnp.full((), jnp.nan, record.values.dtype)
    columns = {
        **dict.fromkeys(BUILTIN_COLUMNS, nan),
        **step.rule.aggregate(record.infos, used),
        **aggregate(extra, record.infos, used),
    }
    return {
        "loss": _masked_mean(record.values, used),
        "train_loss": evaluate(task, params, data.train),
        "test_loss": evaluate(task, params, data.test),
        "grad_norm": _masked_mean(record.infos["grad_norm"], used),
        "grad_size": _masked_mean(record.infos["grad_norm"] ** 2, used),
        **{k: v.astype(record.values.dtype) for k, v in columns.items()},
        "nonfinite": jnp.sum(~record.ok),
        "skipped": jnp.sum(~used),
    }


class Protocol:
    """How the updates of an epoch see the simulator. A protocol says how many steps each update unrolls
    (`window`), whether its gradient returns the rollout's last state (`carries`), and how an epoch's updates
    run (`updates`); `epoch` (the same for every protocol) runs them and computes `epoch_metrics`."""

    name: ClassVar[str]
    carries: ClassVar[bool] = False
    columns: ClassVar[tuple[Column, ...]] = ()  # metric columns of the protocol's own (its updates' infos)

    def window(self, task: Task, settings: TrainSettings) -> int:
        """Steps unrolled per update."""
        return task.horizon

    def start(self, task: Task, settings: TrainSettings, keys: Any, state: TrainState) -> Any:
        """The run's first state from the parameters and optimizer state of `state` and the seed's keys
        (`train.SeedKeys`): `state` itself for the dataset protocol."""
        del task, settings, keys
        return state

    def updates(
        self, task: Task, settings: TrainSettings, step: UpdateStep, state: Any, data: Data
    ) -> tuple[Any, Record]:
        """Run one epoch's updates from `state`: the new state and their `Record`."""
        raise NotImplementedError

    def epoch(self, task: Task, settings: TrainSettings, step: UpdateStep) -> Epoch:
        """A pure function for one epoch: ``(state, data) -> (state, metrics)`` (no host round trips)."""

        def epoch(state: Any, data: Data) -> tuple[Any, dict[str, jax.Array]]:
            state, record = self.updates(task, settings, step, state, data)
            return state, epoch_metrics(task, step, step.params(state), data, record, self.columns)

        return epoch

    def __str__(self) -> str:
        return self.name


class Dataset(Protocol):
    """The paper's protocol: each update unrolls the task's horizon from a mini-batch of the fixed training
    states, in a fixed order (a `lax.scan`); states that do not fill a mini-batch are not used for updates."""

    name: ClassVar[str] = "dataset"

    def updates(
        self, task: Task, settings: TrainSettings, step: UpdateStep, state: Any, data: Data
    ) -> tuple[Any, Record]:
        def update(state: TrainState, batch: PyTree) -> tuple[TrainState, Record]:
            new, record, _ = step(state, batch)
            return new, record

        return jax.lax.scan(update, state, minibatches(data.train, settings.batch_size))


def make_epoch(
    task: Task,
    settings: TrainSettings,
    static: PyTree,
    *,
    protocol: Protocol,
    rule: Method | None = None,
    tx: optax.GradientTransformation | None = None,
) -> Epoch:
    """One epoch of `protocol` for a run of `settings`: ``(state, data) -> (state, metrics)``, a pure function.

    `rule` (default: ``settings.rule``) and `tx` (default: ``settings.transform()``) replace the settings' own:
    a batched group passes a member's rule and an optimizer of its traced values (`group`). The metrics include
    ``nonfinite``, the number of updates that were not finite (`UpdateStep`), ``grad_size``, the squared L2
    norm of the update averaged over the epoch's updates (the published ``grad_size``), and the rule's columns.
    """
    rule = settings.rule if rule is None else rule
    gradient = value_and_grad(
        user_loss(task),
        task.step,
        task.controller,
        protocol.window(task, settings),
        rule,
        final_state=protocol.carries,
        **settings.gradient_options,
    )
    observe = task.observe if type(task).observe is not Task.observe else None
    step = UpdateStep(
        gradient, settings.transform() if tx is None else tx, rule, static, settings.skip_nonfinite, observe
    )
    return protocol.epoch(task, settings, step)
