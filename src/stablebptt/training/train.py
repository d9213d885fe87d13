"""Training a task's controller with any gradient-flow mode: one compiled program per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np

from ..core import trees
from ..core.checks import BadArgument, BadType
from ..core.methods import Method
from ..tasks import Task
from .epoch import Data, TrainState, check_data, evaluate, make_data, make_epoch, metric_names
from .protocols import as_protocol
from .settings import DEFAULTS, TrainSettings, from_mapping
from .shac import check_shac
from .stream import StreamKeys, StreamState, apg_keys, check_window, stream_keys

PyTree = Any
METRICS = metric_names()  # the columns of a run of a built-in rule (a rule of one's own adds its own columns)
# A run with `skip_nonfinite` that skipped more than this share of its updates is not a success: its status is
# "diverged" (and so is an epoch in which every update was skipped: nothing changed, every later epoch repeats it).
SKIPPED_LIMIT = 0.5
RunState = TrainState | StreamState  # what a run's epochs carry: the dataset protocol's or the stream's
STREAM_KEY = 0x5743  # folded into the seed's key for the stream protocol's environments (`training.stream`)
CRITIC_KEY = 0x5744  # ... and for the SHAC protocol's critic (`training.shac`)
ProgressFn = Callable[[int, dict[str, float]], None]
EpochFn = Callable[[int, "RunState", dict[str, float]], None]

__all__ = [
    "METRICS",
    "SKIPPED_LIMIT",
    "EpochFn",
    "Outcome",
    "ProgressFn",
    "RunState",
    "SeedKeys",
    "TrainResult",
    "Trainer",
    "check_task",
    "finite",
    "initial_params",
    "run_metrics",
    "seed_keys",
    "skipped_updates",
    "too_many_skipped",
    "train",
]


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


def run_metrics(settings: TrainSettings) -> tuple[str, ...]:
    """The columns of a run's rows (``metrics.csv``): `epoch.metric_names` of its rule and protocol."""
    return metric_names(settings.rule, as_protocol(settings.protocol))


class SeedKeys(NamedTuple):
    """The keys a run draws from its seed, derived in one place (`seed_keys`) for training, `diagnose` and
    `animate`: `data` the training and test states, `init` the controller's initialisation, `stream` the stream
    protocol's (None under the dataset protocol)."""

    data: jax.Array
    init: jax.Array
    stream: StreamKeys | None
    critic: jax.Array | None = None


def seed_keys(settings: TrainSettings) -> SeedKeys:
    """The keys of a run of `settings`: data and initialisation split from the seed's key; under the stream
    protocol its keys (`stream.stream_keys` of the seed's key with `STREAM_KEY` folded in), or with
    ``key_scheme="apg"`` Brax APG's keys (`stream.apg_keys`), whose `init` then draws the controller."""
    key = jax.random.PRNGKey(settings.seed)
    key_data, key_init = jax.random.split(key)
    if settings.protocol == "dataset":
        return SeedKeys(key_data, key_init, None)
    critic = jax.random.fold_in(key, CRITIC_KEY) if settings.protocol == "shac" else None
    if settings.key_scheme == "apg":
        keys = apg_keys(settings.seed)
        assert keys.init is not None
        return SeedKeys(key_data, keys.init, keys, critic)
    return SeedKeys(key_data, key_init, stream_keys(jax.random.fold_in(key, STREAM_KEY)), critic)


def initial_params(task: Task, settings: TrainSettings) -> PyTree:
    """The controller a run of `settings` starts from (its epoch-0 parameters), drawn as `Trainer` draws it."""
    keys = seed_keys(settings)
    if settings.key_scheme == "apg" and settings.protocol != "dataset":
        return eqx.filter_jit(trees.guard("controller initialiser", task.init_controller))(keys.init)
    return _draw(task, keys.data, keys.init, settings.n_train, settings.n_test)[1]


def run_data(task: Task, settings: TrainSettings) -> Data:
    """The training and test states of a run of `settings` on `task`, drawn as `Trainer` draws them (e.g. to score
    another learner on the same test states)."""
    keys = seed_keys(settings)
    return _draw(task, keys.data, None, settings.n_train, settings.n_test)[0]


class Outcome(NamedTuple):
    """What `Trainer.run` ends with: the last good state, its epoch, and the row of a diverged epoch."""

    state: RunState
    epoch: int
    diverged_row: dict[str, float] | None


@eqx.filter_jit
def _draw(
    task: Task, key_data: jax.Array, key_init: jax.Array | None, n_train: int, n_test: int
) -> tuple[Data, PyTree]:
    """Data and (with `key_init`) initial parameters, in one compiled program (eager, the many small operations
    of sampling and initialisation take seconds to dispatch)."""
    init_controller = trees.guard("controller initialiser", task.init_controller)
    return make_data(task, key_data, n_train, n_test), init_controller(key_init) if key_init is not None else None


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
        if task.explores and settings.protocol == "dataset":
            raise BadArgument(
                f"{type(task).__name__} samples its actions in training, which only the stream protocol does "
                "(`Task.explore`); give $protocol or make the task's actions deterministic",
                protocol="stream",
            )
        self.task = task
        self.settings = settings
        self.skip_nonfinite = settings.skip_nonfinite
        self.updates_per_epoch = settings.n_train // settings.batch_size
        if settings.protocol == "shac":
            check_shac(task, settings)
        elif settings.protocol == "stream" and not task.resets:
            check_window(task, settings)
        if settings.protocol == "stream" and task.resets and settings.episode_length is not None:
            raise BadArgument(
                f"{type(task).__name__} resets its own episodes (`Task.resets`); leave $episode_length out and set "
                "the task's own episode length instead (BraxTask: auto_reset)",
                episode_length=settings.episode_length,
            )
        self.key = jax.random.PRNGKey(settings.seed)
        keys = seed_keys(settings)
        apg = settings.key_scheme == "apg"
        together = params is None and not apg  # the data and the controller drawn in one program
        self.data, init = _draw(task, keys.data, keys.init if together else None, settings.n_train, settings.n_test)
        check_data(task, self.data, settings.n_train, settings.n_test)
        if params is None:
            params = initial_params(task, settings) if apg else init
        diff, self.static = eqx.partition(params, eqx.is_inexact_array)
        tx = settings.transform()
        self.initial: RunState = TrainState(diff, tx.init(diff))
        protocol = as_protocol(settings.protocol)
        if keys.stream is not None:  # the stream's environments and key (and SHAC's critic) come from the seed too
            self.initial = eqx.filter_jit(protocol.start)(task, settings, keys, self.initial)
        self._epoch = make_epoch(task, settings, self.static, protocol=protocol, tx=tx)
        self.metrics = run_metrics(settings)  # the columns of this run's rows
        self._compiled: jax.stages.Compiled | None = None

    def params(self, state: RunState) -> PyTree:
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

    def run(self, state: RunState, *, start: int = 0, epochs: int, on_epoch: EpochFn | None = None) -> Outcome:
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
    method: str | Method | None = None,
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
        method: the gradient rule: R, M, S, N or C, a `core.Method` (a rule of your own too) or
            ``module.path:Name`` (default: `TrainSettings.method`).
        params: start from these parameters instead of the task's default controller.
        progress_fn: called after each epoch as ``progress_fn(epoch, metrics)``.
        **settings: any field of `TrainSettings` (epochs, batch_size, lr, optimizer, clip, clip_value, seed,
            n_train, n_test, skip_nonfinite, backward, truncation, remat, adam_eps, regular_nonfinite), with
            its defaults.

    Returns:
        ``TrainResult(params, metrics)``; `metrics` has one dict per epoch with the keys of `METRICS`, the
        rule's own columns, and ``nonfinite`` (updates that were not finite); the built-in rules' columns that
        the rule does not have (C's cosine, kept_fraction and regular_nonfinite for R) are NaN; epoch_time in
        seconds, without compilation.

    Raises:
        BadInput: for a bad setting, before any work.
    """
    config = from_mapping({**settings, **({} if method is None else {"method": method})})
    trainer = Trainer(task, config, params=params)
    metrics: list[dict[str, float]] = []

    def on_epoch(epoch: int, state: RunState, row: dict[str, float]) -> None:
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
