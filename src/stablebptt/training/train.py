"""Training a task's controller with any gradient-flow mode: one compiled program per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from ..core import as_method, rollout, trees, value_and_grad
from ..core.checks import BadInput, BadType
from ..core.gradients import ValueAndGrad
from ..tasks import Task
from .settings import DEFAULTS, TrainSettings, from_mapping

PyTree = Any
METRICS = (
    "epoch",
    "loss",
    "train_loss",
    "test_loss",
    "grad_norm",
    "grad_size",
    "cosine",
    "kept_fraction",
    "regular_nonfinite",
    "skipped",
    "epoch_time",
)
# A run with `skip_nonfinite` that skipped more than this share of its updates is not a success: its status is
# "diverged" (and so is an epoch in which every update was skipped: nothing changed, every later epoch repeats it).
SKIPPED_LIMIT = 0.5
ProgressFn = Callable[[int, dict[str, float]], None]
EpochFn = Callable[[int, "TrainState", dict[str, float]], None]
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


class TrainResult(NamedTuple):
    """Parameters (of the last epoch with finite values) and one metrics dict per epoch run.

    A run that diverged stops at the first epoch with a non-finite loss or update; that epoch's row is the
    last one of `metrics` and `status` is ``"diverged"``.
    """

    params: PyTree
    metrics: list[dict[str, float]]
    updates_per_epoch: int = 0

    @property
    def skipped(self) -> int:
        """Updates skipped as non-finite (``skip_nonfinite``), in every epoch run."""
        return skipped_updates(self.metrics)

    @property
    def status(self) -> str:
        """``"diverged"`` or ``"complete"``: diverged also when more than `SKIPPED_LIMIT` of the updates were
        skipped."""
        if self.metrics and self.metrics[-1].get("diverged"):
            return "diverged"
        return "diverged" if too_many_skipped(self.metrics, self.updates_per_epoch) else "complete"


def skipped_updates(rows: Sequence[Mapping[str, float]]) -> int:
    """Updates skipped as non-finite in the epochs of `rows`."""
    counts = (r.get("skipped") for r in rows)
    return int(sum(c for c in counts if c is not None and np.isfinite(c)))


def too_many_skipped(rows: Sequence[Mapping[str, float]], updates_per_epoch: int) -> bool:
    """Whether more than `SKIPPED_LIMIT` of the updates of the epochs in `rows` were skipped."""
    done = len(rows) * updates_per_epoch
    return done > 0 and skipped_updates(rows) > SKIPPED_LIMIT * done


class Outcome(NamedTuple):
    """What `Trainer.run` ends with: the last good state, its epoch, and the row of a diverged epoch."""

    state: TrainState
    epoch: int
    diverged_row: dict[str, float] | None


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


def make_epoch(
    task: Task,
    method: str,
    tx: optax.GradientTransformation,
    static: PyTree,
    batch_size: int,
    *,
    skip_nonfinite: bool = False,
    regular_nonfinite: str = "zero",
    **gradient_options: Any,
) -> Epoch:
    """A pure function for one epoch: updates on mini-batches in fixed order (a `lax.scan`, no host round
    trips), then the loss on the whole training and test sets. `static` holds the non-array part of the
    parameters. Remainder states that do not fill a mini-batch are not used for updates.

    The metrics include ``nonfinite``, the number of updates whose loss, update, new parameters or (for C)
    g_M were not finite, or (for C with ``regular_nonfinite="stop"``) g_R; ``regular_nonfinite``, for C, the
    number of entries of g_R that were not finite, summed over the epoch's updates (with "zero" they count as
    disagreement and the run goes on); ``grad_size``, the squared L2 norm of the update averaged over the
    epoch's updates (the published ``grad_size``). With `skip_nonfinite` updates that are not finite leave
    parameters and optimizer state unchanged (like `optax.apply_if_finite`) and are left out of the epoch's
    means.
    """
    vg = value_and_grad(user_loss(task), task.step, task.controller, task.horizon, method, **gradient_options)
    combined = as_method(method).combines
    return epoch_program(
        task,
        vg,
        tx,
        static,
        batch_size,
        skip_nonfinite=skip_nonfinite,
        combined=combined,
        stop_regular=regular_nonfinite == "stop",
    )


def epoch_program(
    task: Task,
    vg: ValueAndGrad,
    tx: optax.GradientTransformation,
    static: PyTree,
    batch_size: int,
    *,
    skip_nonfinite: bool,
    combined: bool | jax.Array,
    stop_regular: bool | jax.Array,
) -> Epoch:
    """`make_epoch` for an update function `vg` (``(params, x0) -> (value, update, info)`` as
    `core.value_and_grad` returns it). `combined` and `stop_regular` may be traced booleans (one per run of a
    batch of runs with different methods): the C diagnostics in `info` (``cosine``, ``kept_fraction``,
    ``regular_nonfinite``, ``modified_finite``) are used only where `combined`. After each optimizer step the
    parameters go through `Task.observe` where the task defines it."""

    observes = type(task).observe is not Task.observe  # a task's own non-gradient update after each step

    def update(
        state: TrainState, batch: PyTree
    ) -> tuple[TrainState, tuple[jax.Array, dict[str, jax.Array], jax.Array]]:
        value, grads, info = vg(eqx.combine(state.params, static), batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if observes:
            params = eqx.partition(task.observe(eqx.combine(params, static), batch), eqx.is_inexact_array)[0]
        ok = _all_finite((value, grads, params, info["grad_norm"]))
        if "modified_finite" in info:
            bad_regular = stop_regular & (info["regular_nonfinite"] > 0)
            ok = ok & ~(combined & (~info["modified_finite"] | bad_regular))
        new = TrainState(params, opt_state)
        if skip_nonfinite:
            new = otu.tree_where(ok, new, state)
        return new, (value, info, ok)

    def epoch(state: TrainState, data: Data) -> tuple[TrainState, dict[str, jax.Array]]:
        state, (values, infos, ok) = jax.lax.scan(update, state, minibatches(data.train, batch_size))
        used = ok if skip_nonfinite else jnp.ones_like(ok)
        params = eqx.combine(state.params, static)
        nan = jnp.full((), jnp.nan, values.dtype)
        c_stats = dict.fromkeys(("cosine", "kept_fraction", "regular_nonfinite"), nan)
        if "cosine" in infos:  # C's diagnostics, for the runs that are C
            c_stats = {
                "cosine": _masked_mean(infos["cosine"], used),
                "kept_fraction": _masked_mean(infos["kept_fraction"], used),
                "regular_nonfinite": jnp.sum(infos["regular_nonfinite"]).astype(values.dtype),
            }
            c_stats = {k: jnp.where(combined, v, nan) for k, v in c_stats.items()}
        metrics = {
            "loss": _masked_mean(values, used),
            "train_loss": evaluate(task, params, data.train),
            "test_loss": evaluate(task, params, data.test),
            "grad_norm": _masked_mean(infos["grad_norm"], used),
            "grad_size": _masked_mean(infos["grad_norm"] ** 2, used),
            **c_stats,
            "nonfinite": jnp.sum(~ok),
            "skipped": jnp.sum(~used),
        }
        return state, metrics

    return epoch


@eqx.filter_jit
def _draw(task: Task, key: jax.Array, n_train: int, n_test: int, init: bool) -> tuple[Data, PyTree]:
    """Data and (if `init`) initial parameters from `key`, in one compiled program (eager, the many small
    operations of sampling and initialisation take seconds to dispatch)."""
    key_data, key_init = jax.random.split(key)
    init_controller = trees.guard("controller initialiser", task.init_controller)
    return make_data(task, key_data, n_train, n_test), init_controller(key_init) if init else None


def check_task(task: Any) -> None:
    """`task` must be a `Task` instance (one `BadInput` naming what it is and how to get one else)."""
    if isinstance(task, Task):
        return
    if isinstance(task, str):
        raise BadType(
            f"task must be a Task, got the name {task!r}; build it first, e.g. stablebptt.tasks.make_task({task!r}) "
            "or stablebptt.tasks.CartPole()"
        )
    if isinstance(task, type) and issubclass(task, Task):
        raise BadType(f"task must be a Task instance, got the class {task.__name__}; call it: {task.__name__}()")
    raise BadType(f"task must be a Task (e.g. stablebptt.tasks.CartPole()), got {type(task).__name__}")


class Trainer:
    """The fixed parts of one run: task, settings, data, optimizer, the non-array part of the parameters,
    the initial state and the epoch program (compiled ahead of time, so that epoch_time measures the epoch
    only).

    `run` continues from any `TrainState` with the structure of `initial` (e.g. one read from a checkpoint):
    the same state and epoch give bit-identical results, as mini-batches come in a fixed order and all
    randomness is drawn up front from the seed.
    """

    def __init__(self, task: Task, settings: TrainSettings = DEFAULTS, *, params: PyTree | None = None) -> None:
        check_task(task)
        if not isinstance(settings, TrainSettings):
            raise BadType(f"settings must be a TrainSettings, got {type(settings).__name__}")
        self.task = task
        self.settings = settings
        self.skip_nonfinite = settings.skip_nonfinite
        self.updates_per_epoch = settings.n_train // settings.batch_size
        self.key = jax.random.PRNGKey(settings.seed)
        self.data, init = _draw(task, self.key, settings.n_train, settings.n_test, params is None)
        check_data(task, self.data, settings.n_train, settings.n_test)
        if params is None:
            params = init
        diff, self.static = eqx.partition(params, eqx.is_inexact_array)
        tx = settings.transform()
        self.initial = TrainState(diff, tx.init(diff))
        self._epoch = make_epoch(
            task,
            settings.method,
            tx,
            self.static,
            settings.batch_size,
            skip_nonfinite=settings.skip_nonfinite,
            regular_nonfinite=settings.regular_nonfinite,
            **settings.gradient_options,
        )
        self._compiled: jax.stages.Compiled | None = None

    def params(self, state: TrainState) -> PyTree:
        """The full parameters (arrays and the rest) of `state`."""
        return eqx.combine(state.params, self.static)

    def compile(self) -> jax.stages.Compiled:
        """The epoch program, compiled on first use: ``(state, data) -> (state, metrics)``."""
        if self._compiled is None:
            self._compiled = jax.jit(self._epoch).lower(self.initial, self.data).compile()
        return self._compiled

    def diverged(self, row: dict[str, float]) -> bool:
        """Whether an epoch's metrics show a non-finite loss or update (skipped updates do not count, unless every
        update of the epoch was skipped: then nothing changed, and every later epoch would repeat it)."""
        keys = ("train_loss", "test_loss") if self.skip_nonfinite else ("loss", "train_loss", "test_loss", "grad_norm")
        if self.skip_nonfinite and row.get("skipped", 0) >= self.updates_per_epoch:
            return True
        return (not self.skip_nonfinite and row["nonfinite"] > 0) or not all(np.isfinite(row[k]) for k in keys)

    def initial_loss_finite(self) -> bool:
        """Whether the loss of the initial parameters on the first mini-batch is finite: if not, the simulator
        (or the loss, or the sampled states) gives non-finite values before any update."""
        params = eqx.combine(self.initial.params, self.static)
        first = jax.tree.map(lambda a: a[: self.settings.batch_size], self.data.train)
        return bool(np.isfinite(eqx.filter_jit(evaluate)(self.task, params, first)))

    def run(self, state: TrainState, *, start: int = 0, epochs: int, on_epoch: EpochFn | None = None) -> Outcome:
        """Run epochs ``start + 1 .. epochs`` from `state`, calling ``on_epoch(epoch, state, row)`` after each.

        Stops at the first epoch that diverges (see `diverged`), returning the state before it and its row
        (with ``diverged: True``); nothing is kept on the device from one epoch to the next but the state.
        """
        epoch_fn = self.compile()
        for epoch in range(start + 1, epochs + 1):
            begin = time.perf_counter()
            new_state, values = epoch_fn(state, self.data)
            row = {"epoch": epoch, **{k: float(v) for k, v in jax.device_get(values).items()}}
            row["epoch_time"] = time.perf_counter() - begin
            if self.diverged(row):
                row["diverged"] = True
                if epoch == 1 and not self.initial_loss_finite():
                    row["initial_nonfinite"] = True
                return Outcome(state, epoch - 1, row)
            state = new_state
            if on_epoch is not None:
                on_epoch(epoch, state, row)
        return Outcome(state, max(start, epochs), None)


def train(
    task: Task,
    method: str | None = None,
    *,
    params: PyTree | None = None,
    progress_fn: ProgressFn | None = None,
    **settings: Any,
) -> TrainResult:
    """Train the task's controller and return the parameters and per-epoch metrics.

    Data and initialisation come from the seed (the same for every method, so runs are comparable). Each
    epoch runs ``n_train // batch_size`` updates in a fixed order, then evaluates on the train and test sets.
    Training stops at the first epoch with a non-finite loss or update (``result.status == "diverged"``)
    unless `skip_nonfinite`, which skips such updates instead.

    Args:
        task: the control problem.
        method: R, M, S, N or C (default: `TrainSettings.method`).
        params: start from these parameters instead of the task's default controller.
        progress_fn: called after each epoch as ``progress_fn(epoch, metrics)``.
        **settings: any field of `TrainSettings` (epochs, batch_size, lr, optimizer, clip, clip_value, seed,
            n_train, n_test, skip_nonfinite, backward, truncation, remat, adam_eps, regular_nonfinite), with
            its defaults.

    Returns:
        ``TrainResult(params, metrics)``; `metrics` has one dict per epoch with the keys of `METRICS` and
        ``nonfinite`` (updates that were not finite); cosine, kept_fraction and regular_nonfinite are NaN for
        methods other than C; epoch_time in seconds, without compilation.

    Raises:
        BadInput: for a bad setting, before any work.
    """
    config = from_mapping({**settings, **({} if method is None else {"method": method})})
    trainer = Trainer(task, config, params=params)
    metrics: list[dict[str, float]] = []

    def on_epoch(epoch: int, state: TrainState, row: dict[str, float]) -> None:
        metrics.append(row)
        if progress_fn is not None:
            progress_fn(epoch, row)

    outcome = trainer.run(trainer.initial, epochs=config.epochs, on_epoch=on_epoch)
    if outcome.diverged_row is not None:
        metrics.append(outcome.diverged_row)
        if progress_fn is not None:
            progress_fn(int(outcome.diverged_row["epoch"]), outcome.diverged_row)
    return TrainResult(trainer.params(outcome.state), metrics, trainer.updates_per_epoch)


def finite(row: dict[str, float]) -> bool:
    """Whether an epoch's ``loss`` and ``grad_norm`` are finite."""
    return bool(np.isfinite(row["loss"]) and np.isfinite(row["grad_norm"]))
