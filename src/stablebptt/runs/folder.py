"""One training run in a folder, safe to kill at any moment and to resume bit-identically.

A run folder holds ``config.json`` (the `RunConfig`, everything needed to rerun), ``status.json`` (running,
complete, diverged, failed or interrupted, with the epoch and a message), ``metrics.csv`` (rewritten each
epoch), ``checkpoint.eqx`` (state, PRNG key and metrics, every `checkpoint_every` epochs and at the end),
``snapshots/epoch-NNNNNN.eqx`` (the parameters every `snapshot_every` epochs, where the config asks for them),
``params.eqx`` and ``loss.png`` at the end, ``provenance.json`` (the code, libraries, processor and full task
settings of each session that trained it: `runs.provenance`), and ``.lock`` while a process writes the folder
(removed when it ends; one left by a killed process is free, and its run reads as interrupted). Every file is written
atomically (temporary file, fsync, rename).

A refusal (a bad option, a checkpoint that does not match ``config.json``, a run that is complete or
diverged) changes no file: ``config.json`` takes a new number of epochs only once the run's checkpoint has
been read back, and a run that was complete stays so if extending it fails before its first new epoch.

`RunFolder` is the only code that writes a run folder. Its lifecycle has three entry points: `start` (a new
run), `resume` (continue or extend one) and `ensure` (bring a run to an end, whatever state it is in: for
sweeps). The first two return a `Session`, which holds the folder's lock and trains with `Session.run`;
batched sweeps (`runs.batch`) drive several sessions with one compiled program.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

from ..core.checks import (
    Action,
    BadArgument,
    BadInput,
    BadType,
    check_positive_int,
    described,
    plural,
)
from ..training.train import (
    SKIPPED_LIMIT,
    ProgressFn,
    RunState,
    Trainer,
    TrainResult,
    run_metrics,
    skipped_updates,
    too_many_skipped,
)
from .checkpoint import BadCheckpoint, Checkpoint, Metrics, check_header, load_checkpoint, read_header, save_checkpoint
from .config import RunConfig, same_run
from .faults import fault_point
from .io import (
    CONFIG,
    METRICS_CSV,
    PARAMS,
    CsvTable,
    check_names,
    probe_writable,
    read_json,
    save_params,
    snapshot_path,
    write_json,
)
from .lock import LOCK, RunLock, RunLocked
from .provenance import PROVENANCE, provenance, unknown_provenance
from .state import CHECKPOINT, FIGURE, FINISHED, STATUS, STATUSES, Terminated, read_record, read_status

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

STATUS_EVERY = 10.0  # s: status.json follows a running run's epochs at least this often (and at each checkpoint)

__all__ = ["CHECKPOINT", "FIGURE", "STATUS", "STATUSES", "RunFolder", "RunLocked", "Session", "use_precision"]


class RunFolder:
    """The run folder at `path` (which need not exist yet)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---------------------------------------------------------------------------------------- reading

    def read_record(self) -> dict[str, Any]:
        """``config.json`` as written (the JSON form of the run's `RunConfig`, of this or an earlier version)."""
        return read_record(self.path)

    def read_config(self, record: Mapping[str, Any] | None = None) -> RunConfig:
        """The run's configuration (from `record`, its config.json as read, if given), checked: its task is
        built."""
        record = self.read_record() if record is None else record
        try:
            return RunConfig.from_json(record)
        except BadInput as e:
            raise (BadType if isinstance(e, TypeError) else BadInput)(f"{self.path / CONFIG}: {e}") from None

    def status(self) -> dict[str, Any] | None:
        """The run's status record (None if it has none). A ``running`` run whose writer is gone (killed: its
        lock is free) is reported as ``"interrupted"``, with ``"stale": True`` (``False`` while it runs)."""
        return read_status(self.path)

    def finished(self, config: RunConfig) -> str | None:
        """``"complete"`` or ``"diverged"`` if the run of `config` here has nothing left to do (complete with
        its epochs, or diverged), else None."""
        status = self.status() or {}
        if status.get("status") == "complete" and status.get("epoch", 0) >= config.train.epochs:
            return "complete"
        return "diverged" if status.get("status") == "diverged" else None

    def checkpoint_epoch(self) -> int:
        """Epochs saved in the run's checkpoint (0 without one); the file is checked, not loaded."""
        path = self.path / CHECKPOINT
        return read_header(path)[0]["epoch"] if path.exists() else 0

    # ------------------------------------------------------------------------------------ entry points

    def start(self, config: RunConfig, *, force: bool = False) -> Session:
        """Create the folder for a new run of `config`, write its config and return the session that trains
        it (holding the folder's lock until `Session.run` ends or the session is closed).

        Refuses (`BadInput`, nothing created or changed) an unwritable path, a folder that is not empty and
        holds no run, and a folder holding a run (another one, or this one unfinished: continue it with
        `resume`), unless `force` replaces it; `RunLocked` if another process writes the folder.
        """
        _check_config(config)
        self._prepare()
        lock = _acquire(self.path)
        try:
            self._claim(config, force)
            record = config.to_json()
            write_json(self.path / CONFIG, record)
            return Session(self, config, record, lock)
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    def resume(self, *, epochs: int | None = None, from_scratch: bool = False) -> Session | None:
        """The session that continues the run from its checkpoint (from the start if it has none) up to
        `epochs` (default: as configured; more extends a complete run); None if there is nothing to do.

        Raises:
            BadInput: no run here, a corrupt config or checkpoint (left untouched), a diverged run, fewer
                epochs than already done, a run that recorded epochs but lost its checkpoint (unless
                `from_scratch`: then it is trained again from epoch 0); `RunLocked` if another process writes the
                folder.
        """
        record = self.read_record()
        config = self.read_config(record)
        if epochs is not None:
            check_positive_int("epochs", epochs)
            if epochs != config.train.epochs and config.train.schedule_needs_epochs:
                raise BadArgument(
                    f"{self.path}: its cosine learning-rate schedule spans its "
                    f"{plural(config.train.epochs, 'epoch')}, so the run cannot be changed to {epochs}; train a new "
                    "run (give $decay_steps for a schedule of fixed length that runs can extend)",
                    decay_steps=None,
                )
        lock = _acquire(self.path)
        try:
            status = self.status() or {}
            done = self.checkpoint_epoch()
            if status.get("status") == "diverged":
                if status.get("diverged_epoch") is None:  # ran to the end, skipping most updates
                    raise BadArgument(
                        f"{self.path} is not a success: {status.get('message', 'it diverged')}; resuming would not "
                        "change that; start a new run with a smaller $lr or $clip",
                        lr=None,
                        clip="norm",
                    )
                message = str(status.get("message", ""))
                if message.startswith(("the simulator", "every update")):  # `diverged_message`: no setting helps
                    raise BadInput(f"{self.path} diverged: {message}")
                raise BadArgument(
                    f"{self.path} diverged at epoch {status.get('diverged_epoch')}; resuming would "
                    "diverge again; start a new run with a smaller $lr or with $skip_nonfinite",
                    lr=None,
                    skip_nonfinite=True,
                )
            if done:  # a checkpoint of another run says so before anything about epochs
                check_header(self.path / CHECKPOINT, record)
            saved = status.get("checkpoint_epoch")  # what status.json says was saved last
            if not done and isinstance(saved, int) and saved > 0 and not from_scratch:
                raise BadArgument(
                    f"{self.path} has no {CHECKPOINT} though its run saved one at epoch {saved} (deleted?), so it "
                    "cannot continue; $again trains it again from epoch 0, replacing its metrics",
                    again=Action(
                        "resume",
                        f"RunFolder({str(self.path)!r}).resume(from_scratch=True)",
                        (self.path,),
                        {"from_scratch": True},
                    ),
                )
            target = config.train.epochs if epochs is None else epochs
            if target < done:
                raise BadArgument(
                    "$epochs: " + f"the run already has {plural(done, 'epoch')}; allowed: {done} or more",
                    epochs=target,
                )
            if status.get("status") == "complete" and target == done:
                lock.__exit__(None, None, None)
                return None
            record, config = self._set_epochs(record, config, target)
            return Session(self, config, record, lock, previous=status.get("status"))
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    def ensure(self, config: RunConfig, progress_fn: ProgressFn | None = None) -> str:
        """Bring the run of `config` to an end, for sweeps: start it if new, resume it if unfinished (or
        failed before), skip it if complete or diverged. Returns the final status: ``complete``,
        ``diverged``, ``failed`` (the error is in ``status.json``) or ``locked`` (another process is writing
        the folder; nothing was touched).

        Raises:
            BadInput: only if the folder cannot be written or holds something else than this run (a
                different configuration, an unreadable config, files of no run); it is left untouched.
        """
        session = self.open(config)
        if isinstance(session, str):
            return session
        try:
            return session.run(progress_fn).status
        except Exception:  # noqa: BLE001 - recorded in status.json by Session.run; the sweep goes on
            return "failed"

    def open(self, config: RunConfig) -> Session | str:
        """The first half of `ensure` (also used by `runs.batch` and `experiments.compare`): the session that
        brings the run of `config` to an end (a new run, or this one continued from its checkpoint), or the final
        status when there is nothing to do (``complete``, ``diverged``, ``locked``).

        Raises:
            BadInput: as `ensure`; "holds a different run" when the folder holds another run.
        """
        _check_config(config)
        self._prepare()
        try:
            lock = _acquire(self.path)
        except RunLocked:
            return "locked"
        try:
            if (self.path / CONFIG).exists():
                record = self.read_record()
                if not same_run(record, config):
                    raise BadInput(f"{self.path} holds a different run; choose another folder")
            else:
                record = config.to_json()
                write_json(self.path / CONFIG, record)
            finished = self.finished(config)
            if finished is not None:
                lock.__exit__(None, None, None)
                return finished
            previous = (self.status() or {}).get("status")
            record, config = self._set_epochs(record, config, config.train.epochs)
            return Session(self, config, record, lock, previous=previous)
        except BaseException:
            lock.__exit__(None, None, None)
            raise

    # -------------------------------------------------------------------------------------------- parts

    def _prepare(self) -> None:
        """Make sure a run folder can be created or written at `path`, and create it."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise BadArgument("$path: exists and is not a folder; allowed: a new folder or a run folder", path=out)
        ancestor = out
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise BadArgument(
                "$path: " + f"{ancestor} is a file, not a folder; allowed: a path in a writable folder", path=out
            )
        check_names(out, ancestor, argument="path")
        try:
            probe_writable(ancestor)
        except OSError as e:
            raise BadArgument(
                "$path: " + f"cannot write in {ancestor} ({e.strerror}); allowed: a path in a writable folder",
                path=out,
            ) from None
        # A folder with files but no run in it is refused, even with force: it may be the user's own folder.
        if out.is_dir() and not (out / CONFIG).exists() and any(p.name != LOCK for p in out.iterdir()):
            raise BadArgument(
                "$path: the folder is not empty and holds no stablebptt run; choose another folder", path=out
            )
        out.mkdir(parents=True, exist_ok=True)

    def _claim(self, config: RunConfig, force: bool) -> None:
        """With the lock held: make sure the folder may receive a new run of `config` (emptied if `force`)."""
        out = self.path
        entries = [p for p in out.iterdir() if p.name != LOCK]
        if not entries:
            return
        if force or self._never_trained():
            for p in entries:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            return
        try:
            record = self.read_record()
        except BadInput as e:
            raise BadArgument(
                "$path: " + f"holds a run whose config cannot be read ({e}); " + "choose another folder or "
                "pass $force to replace it",
                path=out,
                force=True,
            ) from None
        if not same_run(record, config):
            raise BadArgument(
                "$path: already holds a different run; choose another folder or pass $force to replace it",
                path=out,
                force=True,
            )
        status = (self.status() or {}).get("status", "running")
        if status == "running":  # we hold its lock: the process that wrote "running" is gone
            status = "interrupted"
        epochs, had = config.train.epochs, record["train"].get("epochs")
        if status == "complete" and epochs == had:
            raise BadArgument(
                "$path: already holds this run, complete; pass $force to train it again", path=out, force=True
            )
        if status == "diverged":
            raise BadArgument("$path: holds this run, diverged; pass $force to train it again", path=out, force=True)
        more = epochs != had
        raise BadArgument(
            "$path: " + f"holds this run ({status}, {plural(had, 'epoch')} configured); " + "continue it with "
            "$resume or pass $force to start again",
            path=out,
            resume=Action(
                "resume",
                f"RunFolder({str(out)!r}).resume({f'epochs={epochs}' if more else ''})",
                (out,),
                {"epochs": epochs} if more else {},
            ),
            force=True,
        )

    def _never_trained(self) -> bool:
        """Whether the folder holds a run that failed or was stopped before its first epoch ended: a readable
        config, status failed or interrupted (or running, with its writer gone: we hold the lock), no checkpoint
        and no epoch in metrics.csv. Nothing of it is worth keeping, so a new run may take the folder."""
        try:
            self.read_record()
            status = self.status() or {}
        except BadInput:
            return False
        if status.get("status") not in ("failed", "interrupted", "running") or (self.path / CHECKPOINT).exists():
            return False
        try:
            with open(self.path / METRICS_CSV) as f:
                return sum(1 for line in f if line.strip()) <= 1  # the header at most
        except FileNotFoundError:
            return True
        except OSError:
            return False

    def _set_epochs(self, record: dict[str, Any], config: RunConfig, epochs: int) -> tuple[dict[str, Any], RunConfig]:
        """The run's config.json record and configuration with `epochs` epochs (nothing else changed); the
        session writes the record when training begins."""
        if record["train"].get("epochs") != epochs:
            record = {**record, "train": {**record["train"], "epochs": epochs}}
        return record, config if config.train.epochs == epochs else config.replace(epochs=epochs)


class Session:
    """A run folder held for training: its lock is held until `run` returns or the session is closed (it is
    also a context manager). `record` is the run's config.json (written by `begin` if it changed), which its
    checkpoints refer to; `previous` the status the run had when opened."""

    def __init__(
        self,
        folder: RunFolder,
        config: RunConfig,
        record: Mapping[str, Any],
        lock: RunLock,
        *,
        previous: str | None = None,
    ):
        self.folder, self.config, self.record, self._lock = folder, config, record, lock
        self.previous = previous
        self.began = False
        self.trainer: Trainer | None = None
        self.rows: Metrics = Metrics()
        self.table = CsvTable(run_metrics(config.train))  # self.rows, formatted
        self.saved = 0
        self._status_time = -math.inf  # when status.json was last written (time.monotonic)

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def epochs(self) -> int:
        return self.config.train.epochs

    @property
    def _trainer(self) -> Trainer:
        """The trainer given to `begin`, which every step after it needs."""
        if self.trainer is None:
            raise RuntimeError("Session.begin(trainer) must come before recording or finishing epochs")
        return self.trainer

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder's lock."""
        self._lock.__exit__(None, None, None)

    def run(self, progress_fn: ProgressFn | None = None) -> TrainResult:
        """Train (or continue) the run to its number of epochs; a run that diverges returns with
        ``result.status == "diverged"``. A failure is recorded in status.json and re-raised."""
        try:
            use_precision(self.config)
            trainer = Trainer(self.config.make_task(), self.config.train)
            state, start = self.begin(trainer)
            outcome = trainer.run(
                state,
                start=start,
                epochs=self.epochs,
                on_epoch=lambda epoch, state, row: self.record_epoch(epoch, state, row, progress_fn),
            )
            return self.finish(outcome.state, outcome.epoch, outcome.diverged_row, progress_fn)
        except BaseException as e:
            self.fail(e)
            raise
        finally:
            self.close()

    def begin(self, trainer: Trainer) -> tuple[RunState, int]:
        """Where training starts: the state and epoch of the run's checkpoint (the trainer's initial state and
        0 without one); the status becomes ``running``."""
        for tmp in self.path.glob(".*.tmp"):  # left by a writer killed mid-write; we hold the lock
            tmp.unlink(missing_ok=True)
        self.trainer = trainer
        state, start, self.rows = trainer.initial, 0, Metrics()
        if (self.path / CHECKPOINT).exists():
            checkpoint = load_checkpoint(self.path / CHECKPOINT, self.record, (trainer.key, trainer.initial))
            state, start, self.rows = checkpoint.state, checkpoint.epoch, Metrics(checkpoint.metrics)
            if start > self.epochs:
                raise BadCheckpoint(
                    f"checkpoint {self.path / CHECKPOINT} has {plural(start, 'epoch')}, more than "
                    f"the {self.epochs} configured; it was left untouched"
                )
        self.table = CsvTable(run_metrics(self.config.train), self.rows)
        self.saved = start
        if read_json(self.path / CONFIG) != self.record:  # a new number of epochs, now that the checkpoint fits
            write_json(self.path / CONFIG, self.record)
        self.began = True
        self._write_provenance(trainer, start)
        self._write_status("running", epoch=start, epochs=self.epochs, checkpoint_epoch=start or None)
        return state, start

    def _write_provenance(self, trainer: Trainer, start: int) -> None:
        """Add this session's entry to provenance.json (`runs.provenance`); a run begun from epoch 0 starts the
        list afresh, a resumed one keeps the entries of the sessions before it (unreadable ones as unknown)."""
        earlier: list[Any] = []
        if start > 0:
            try:
                earlier = read_json(self.path / PROVENANCE)
                if not isinstance(earlier, list):
                    raise BadInput(f"{self.path / PROVENANCE} is not a list")
            except BadInput:
                earlier = unknown_provenance()
        devices = sorted({d.device_kind for d in jax.local_devices()})
        write_json(self.path / PROVENANCE, [*earlier, provenance(trainer.task.config(), start, devices)])

    def record_epoch(
        self, epoch: int, state: RunState, row: dict[str, float], progress_fn: ProgressFn | None = None
    ) -> None:
        """Record a finished epoch: its metrics, and the checkpoint when one is due."""
        fault_point("epoch", epoch)
        self.rows.append(row)
        self.table.append(row)
        saving = epoch % self.config.checkpoint_every == 0 or epoch == self.epochs
        if self.config.snapshot_every is not None and epoch % self.config.snapshot_every == 0:
            snapshot = snapshot_path(self.path, epoch)
            snapshot.parent.mkdir(exist_ok=True)
            save_params(snapshot, self._trainer.params(state))
        if saving:
            self._save(epoch, state)
        self.table.flush(self.path / METRICS_CSV)
        if saving or time.monotonic() - self._status_time >= STATUS_EVERY:  # an fsync'd write: not every epoch
            self._write_status("running", epoch=epoch, epochs=self.epochs, checkpoint_epoch=self.saved or None)
        fault_point("between", epoch)
        if progress_fn is not None:
            progress_fn(epoch, row)

    def finish(
        self,
        state: RunState,
        epoch: int,
        diverged_row: dict[str, float] | None,
        progress_fn: ProgressFn | None = None,
    ) -> TrainResult:
        """Write the files a run ends with (metrics, parameters, figure, status) after `epoch` good epochs in
        `state`; `diverged_row` is the row of the epoch that diverged, if one did."""
        rows = list(self.rows)
        if diverged_row is not None:
            if self.saved != epoch and epoch > 0:  # keep the last good state
                self._save(epoch, state)
            rows = [*rows, diverged_row]
            if progress_fn is not None:
                progress_fn(int(diverged_row["epoch"]), diverged_row)
        self.table.write(self.path / METRICS_CSV, [diverged_row] if diverged_row is not None else [])
        params = self._trainer.params(state)
        save_params(self.path / PARAMS, params)
        self._plot(rows)
        per_epoch = self._trainer.updates_per_epoch
        skipped: dict[str, Any] = {}
        if self.config.train.skip_nonfinite:
            skipped = {"skipped_updates": skipped_updates(rows), "updates": len(rows) * per_epoch}
        if diverged_row is not None:
            good = rows[:-1]
            self._write_status(
                "diverged",
                epoch=epoch,
                epochs=self.epochs,
                diverged_epoch=diverged_row["epoch"],
                last_finite_loss=good[-1]["loss"] if good else None,
                checkpoint_epoch=self.saved or None,
                **skipped,
                message=diverged_message(diverged_row, per_epoch),
            )
        elif too_many_skipped(rows, per_epoch):
            self._write_status(
                "diverged",
                epoch=self.epochs,
                epochs=self.epochs,
                checkpoint_epoch=self.saved,
                **skipped,
                message=f"{skipped['skipped_updates']} of {skipped['updates']} updates were non-finite and skipped "
                f"(--skip-nonfinite), more than {SKIPPED_LIMIT:.0%}: not counted as a success",
            )
        else:
            self._write_status(
                "complete", epoch=self.epochs, epochs=self.epochs, checkpoint_epoch=self.saved, **skipped
            )
        return TrainResult(params, rows, per_epoch)

    def fail(self, error: BaseException) -> None:
        """Record `error` in status.json: ``interrupted`` for Ctrl-C, else ``failed`` with its first line (best
        effort: the error is what matters). A failure before the first new epoch of a run that was complete
        changes nothing (it still is)."""
        if not self.began and self.previous in FINISHED:
            return
        if isinstance(error, Terminated):
            status, message = "interrupted", "stopped by SIGTERM"
        elif isinstance(error, KeyboardInterrupt):
            status, message = "interrupted", "stopped by Ctrl-C (KeyboardInterrupt)"
        else:
            status, message = "failed", described(error)
        try:
            where = {"epoch": self.saved, "epochs": self.epochs, "checkpoint_epoch": self.saved or None}
            self._write_status(status, **(where if self.began else {}), message=message)
        except OSError:
            pass

    def _save(self, epoch: int, state: RunState) -> None:
        save_checkpoint(self.path / CHECKPOINT, self.record, Checkpoint(epoch, state, self._trainer.key, self.rows))
        self.saved = epoch

    def _write_status(self, status: str, **fields: Any) -> None:
        self._status_time = time.monotonic()
        record = {
            "status": status,
            "pid": os.getpid(),
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        record.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()})
        write_json(self.path / STATUS, record)

    def _plot(self, rows: list[dict[str, float]]) -> None:
        from .plotting import plot_curves

        config = self.config
        settings = ", ".join(f"{k}={v}" for k, v in config.task_settings.items())
        curves = {str(config.train.method): {k: [r[k] for r in rows] for k in ("test_loss", "train_loss")}}
        task = f"{config.task} ({settings})" if settings else config.task
        plot_curves(
            curves, self.path / FIGURE, title=f"{task}, method {config.train.method}", keys=("test_loss", "train_loss")
        )


def diverged_message(row: Mapping[str, Any], updates_per_epoch: int) -> str:
    """Why the epoch of `row` ended the run, in words (status.json's message, the command line's error)."""
    epoch = int(row["epoch"])
    if row.get("initial_nonfinite"):
        return (
            "the simulator or the loss gave non-finite values from the initial parameters and the first training "
            "states, before any update: check the step, the loss and the sampled states (a smaller learning rate, "
            "clipping or skipping non-finite updates cannot help)"
        )
    if row.get("skipped", 0) >= updates_per_epoch > 0:
        return (
            f"every update of epoch {epoch} was non-finite and skipped; the parameters did not change, so every "
            "later epoch would repeat it"
        )
    return f"non-finite loss or update in epoch {epoch} ({int(row.get('nonfinite', 0))} non-finite updates)"


def use_precision(config: RunConfig) -> None:
    """Switch JAX to the run's precision (float64 with ``x64``) if it is not already."""
    if config.x64 != bool(jax.config.jax_enable_x64):  # type: ignore[attr-defined]  # set at run time
        jax.config.update("jax_enable_x64", config.x64)


def _check_config(config: Any) -> None:
    if not isinstance(config, RunConfig):
        raise BadType(f"expected a RunConfig (e.g. RunConfig.from_json(record)), got {type(config).__name__}")


def _acquire(path: Path) -> RunLock:
    lock = RunLock(path)
    lock.__enter__()
    return lock
