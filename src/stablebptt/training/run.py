"""One training run in a folder, safe to kill at any moment and to resume bit-identically.

A run folder holds ``config.json`` (everything needed to rerun), ``status.json`` (running, complete, diverged
or failed, with the epoch and a message), ``metrics.csv`` (rewritten atomically each epoch),
``checkpoint.eqx`` (state, PRNG key and metrics, every `checkpoint_every` epochs and at the end),
``params.eqx`` and ``loss.png`` at the end, and ``.lock`` (held by the process writing the folder).
Every file is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax

from .. import __version__
from ..tasks import Task, is_builtin, load_task, module_root
from ..tasks.validate import check_positive_int
from .checkpoint import Checkpoint, config_hash, load_checkpoint, read_header, save_checkpoint
from .faults import fault_point
from .io import CONFIG, METRICS_CSV, PARAMS, read_json, save_params, write_csv, write_json
from .lock import LOCK, RunLock, RunLocked
from .train import METRICS, STATUSES, ProgressFn, Trainer, TrainResult, check_train_settings

TRAIN_KEYS = ("method", "epochs", "batch_size", "lr", "optimizer", "clip", "clip_value", "seed", "n_train", "n_test",
              "skip_nonfinite")
GRADIENT_KEYS = ("backward", "truncation", "checkpoint")  # passed on to `value_and_grad`
TRAIN_DEFAULTS = {"method": "C", "epochs": 1000, "batch_size": 8, "lr": 1e-3, "optimizer": "adam", "clip": "none",
                  "clip_value": 1.0, "seed": 42, "n_train": 256, "n_test": 256, "skip_nonfinite": False}
STATUS = "status.json"
CHECKPOINT = "checkpoint.eqx"

__all__ = ["CHECKPOINT", "STATUS", "RunLocked", "check_config", "check_out_path", "config_task", "execute",
           "load_config", "new_run", "opening_new_run", "opening_resume", "prepare_run_dir", "read_status", "resume",
           "run_config", "train_to_dir"]


def run_config(task_name: str, task_settings: dict[str, Any], x64: bool = False, checkpoint_every: int = 1,
               **train_settings: Any) -> dict:
    """Everything needed to rerun: the task and its settings, the training settings, precision, how often to
    checkpoint, version. For a task of your own (``module.path:Name``, imported here) also ``task_path``, the
    folder its module was imported from, so that the run can be resumed from any current directory."""
    unknown = set(train_settings) - set(TRAIN_KEYS) - set(GRADIENT_KEYS)
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(TRAIN_KEYS + GRADIENT_KEYS)}")
    config = {"task": task_name, "task_settings": dict(task_settings)}
    path = None if is_builtin(task_name) or ":" not in task_name else module_root(task_name)
    if path is not None:
        config["task_path"] = path
    return {**config, "train": dict(train_settings), "x64": x64, "checkpoint_every": checkpoint_every,
            "version": __version__}


def config_task(config: dict) -> Task:
    """The task of a run configuration (its module found through ``task_path`` when not on the Python path)."""
    path = config.get("task_path")
    if path is not None and not isinstance(path, str):
        raise TypeError(f"task_path must be a folder name, got {path!r}")
    return load_task(config["task"], config["task_settings"], path=path)


def check_config(config: Any) -> None:
    """Check a run configuration completely (task, training settings, gradient options) without doing any
    work; raises one `ValueError`/`TypeError` naming the first bad setting."""
    if not isinstance(config, dict) or not {"task", "task_settings", "train"} <= set(config):
        raise ValueError("not a stablebptt run configuration (needs task, task_settings, train)")
    if not isinstance(config["task_settings"], dict) or not isinstance(config["train"], dict):
        raise TypeError("task_settings and train must be dicts")
    task = config_task(config)
    train = {**TRAIN_DEFAULTS, **config["train"]}
    unknown = set(train) - set(TRAIN_KEYS) - set(GRADIENT_KEYS)
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
    check_train_settings(**{k: train[k] for k in TRAIN_KEYS})
    if not isinstance(config.get("x64", False), bool):
        raise TypeError(f"x64 must be True or False, got {config['x64']!r}")
    check_positive_int("checkpoint_every", config.get("checkpoint_every", 1))
    from ..core import value_and_grad  # builds nothing but checks the gradient options

    value_and_grad(task.loss, task.step, task.controller, task.horizon, train["method"],
                   **{k: train[k] for k in GRADIENT_KEYS if k in train})


def check_out_path(out: str | Path) -> Path:
    """`out` if a run folder can be created or written there; a one-line `ValueError` otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder; allowed: a new folder or a run folder")
    ancestor = out
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is a file, not a folder; allowed: a path in a writable folder")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".stablebptt-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {ancestor} ({e.strerror}); "
                         "allowed: a path in a writable folder") from None
    return out


def load_config(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} does not exist")
    config = read_json(run_dir / CONFIG)
    if not isinstance(config, dict) or not {"task", "task_settings", "train"} <= set(config):
        raise ValueError(f"{run_dir / CONFIG} is not a stablebptt run config")
    return config


def read_status(run_dir: str | Path) -> dict | None:
    """The run's status record (None if it has none). A ``running`` run whose writer is gone (its lock is
    free) is reported with ``"stale": True``."""
    path = Path(run_dir) / STATUS
    if not path.exists():
        return None
    status = read_json(path)
    if not isinstance(status, dict) or status.get("status") not in STATUSES:
        raise ValueError(f"{path} is not a stablebptt status file")
    if status["status"] == "running":
        status["stale"] = not _locked(Path(run_dir))
    return status


def prepare_run_dir(out: str | Path, config: dict, *, force: bool = False) -> Path:
    """Create `out` for a new run and write its config. A folder that holds another run, or this run
    unfinished or complete, is refused unless `force` (which replaces it); see `new_run`."""
    with opening_new_run(out, config, force=force):
        pass  # the checks, the claim and config.json; training comes later (`train_to_dir`)
    return check_out_path(out)


def new_run(out: str | Path, config: dict, *, force: bool = False, progress_fn: ProgressFn | None = None
            ) -> TrainResult:
    """Validate everything, then create run folder `out`, hold its lock and train.

    Refuses (`ValueError`, nothing created or changed) a bad setting, an unwritable path, a folder that is
    not empty and holds no run, and a folder holding a run (another one, or this one unfinished: continue it
    with `resume`), unless `force`; `RunLocked` if another process writes the folder.
    """
    with opening_new_run(out, config, force=force) as run:
        return run(progress_fn)


@contextlib.contextmanager
def opening_new_run(out: str | Path, config: dict, *, force: bool = False
                    ) -> Iterator[Callable[[ProgressFn | None], TrainResult]]:
    """`new_run` in two steps: all checks and the claim of the folder on entry (so that a caller can show
    progress only once they passed), then ``run(progress_fn)`` trains while the lock is held."""
    check_config(config)
    out = check_out_path(out)
    _refuse_foreign(out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        _claim(out, config, force)
        write_json(out / CONFIG, config)
        yield lambda progress_fn=None: _train_locked(out, config, progress_fn)


def train_to_dir(out: str | Path, config: dict, progress_fn: ProgressFn | None = None) -> TrainResult:
    """Train the run described by `config` in folder `out` (prepared by `prepare_run_dir`), continuing from
    its checkpoint if it has one. A run that diverges returns with ``result.status == "diverged"``."""
    out = Path(out)
    with RunLock(out):
        if not (out / CONFIG).exists():
            write_json(out / CONFIG, config)
        return _train_locked(out, config, progress_fn)


def resume(run_dir: str | Path, *, epochs: int | None = None, progress_fn: ProgressFn | None = None
           ) -> TrainResult | None:
    """Continue the run in `run_dir` from its checkpoint (from the start if it has none), up to `epochs`
    (default: the configured number; more extends a complete run). Returns None if there is nothing to do.

    Raises:
        ValueError: no run there, a corrupt config or checkpoint (left untouched), a diverged run, fewer
            epochs than already done; `RunLocked` if another process writes the folder.
    """
    with opening_resume(run_dir, epochs=epochs) as run:
        return None if run is None else run(progress_fn)


@contextlib.contextmanager
def opening_resume(run_dir: str | Path, *, epochs: int | None = None
                   ) -> Iterator[Callable[[ProgressFn | None], TrainResult] | None]:
    """`resume` in two steps: the checks on entry, then ``run(progress_fn)`` (None if nothing to do)."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    check_config(config)
    if epochs is not None:
        check_positive_int("epochs", epochs)
    with RunLock(run_dir):
        status = read_status(run_dir) or {}
        done = read_header(run_dir / CHECKPOINT)[0]["epoch"] if (run_dir / CHECKPOINT).exists() else 0
        if status.get("status") == "diverged":
            raise ValueError(f"{run_dir} diverged at epoch {status.get('diverged_epoch')}; resuming would diverge "
                             "again; start a new run with a smaller --lr or with --skip-nonfinite")
        target = config["train"].get("epochs", TRAIN_DEFAULTS["epochs"]) if epochs is None else epochs
        if target < done:
            raise ValueError(f"--epochs {target}: the run already has {done} epochs; allowed: {done} or more")
        if status.get("status") == "complete" and target == done:
            yield None
            return
        if target != config["train"].get("epochs"):
            config = {**config, "train": {**config["train"], "epochs": target}}
            write_json(run_dir / CONFIG, config)
        yield lambda progress_fn=None: _train_locked(run_dir, config, progress_fn)


def execute(run_dir: str | Path, config: dict, progress_fn: ProgressFn | None = None) -> str:
    """Bring the run of `config` in `run_dir` to an end, for sweeps: start it if new, resume it if
    unfinished (or failed before), skip it if complete or diverged. Returns the final status: ``complete``,
    ``diverged``, ``failed`` (the error is in ``status.json``; a bad config is recorded the same way) or
    ``locked`` (another process is writing the folder; nothing was touched).

    Raises:
        ValueError: only if `run_dir` cannot be written or holds something else than this run (a different
            configuration, an unreadable config, files of no run); it is left untouched.
    """
    run_dir = check_out_path(run_dir)
    _refuse_foreign(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(run_dir):
            if (run_dir / CONFIG).exists():
                existing = load_config(run_dir)
                if config_hash(existing) != config_hash(config):
                    raise ValueError(f"{run_dir} holds a different run; choose another folder")
            else:
                write_json(run_dir / CONFIG, config)
                existing = config
            try:
                check_config(config)
            except (ValueError, TypeError) as e:
                _write_status(run_dir, "failed", message=f"invalid configuration: {e}")
                return "failed"
            status = read_status(run_dir) or {}
            epochs = config["train"].get("epochs", TRAIN_DEFAULTS["epochs"])
            if status.get("status") == "complete" and status.get("epoch", 0) >= epochs:
                return "complete"
            if status.get("status") == "diverged":
                return "diverged"
            if existing.get("train", {}).get("epochs") != epochs:
                write_json(run_dir / CONFIG, config)
            try:
                return _train_locked(run_dir, config, progress_fn).status
            except Exception:  # noqa: BLE001 - recorded in status.json by _train_locked; the sweep goes on
                return "failed"
    except RunLocked:
        return "locked"


def _train_locked(out: Path, config: dict, progress_fn: ProgressFn | None) -> TrainResult:
    """Train (or continue) the run in `out`, whose lock the caller holds; failures are recorded in
    status.json and re-raised."""
    try:
        return _train_body(out, config, progress_fn)
    except BaseException as e:
        message = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        try:
            _write_status(out, "failed", message=message.splitlines()[0] if message else type(e).__name__)
        except OSError:
            pass
        raise


def _train_body(out: Path, config: dict, progress_fn: ProgressFn | None) -> TrainResult:
    for tmp in out.glob(".*.tmp"):  # left by a writer killed mid-write; we hold the lock
        tmp.unlink(missing_ok=True)
    if bool(config.get("x64", False)) != bool(jax.config.jax_enable_x64):
        jax.config.update("jax_enable_x64", bool(config.get("x64", False)))
    train = {**TRAIN_DEFAULTS, **config["train"]}
    epochs = train.pop("epochs")
    every = config.get("checkpoint_every", 1)
    task = config_task(config)
    trainer = Trainer(task, **train)
    state, start, rows = trainer.initial, 0, []
    if (out / CHECKPOINT).exists():
        checkpoint = load_checkpoint(out / CHECKPOINT, config, (trainer.key, trainer.initial))
        state, start, rows = checkpoint.state, checkpoint.epoch, list(checkpoint.metrics)
        if start > epochs:
            raise ValueError(f"the checkpoint has {start} epochs, more than the {epochs} configured")
    saved = start
    _write_status(out, "running", epoch=start, epochs=epochs, checkpoint_epoch=saved or None)

    def on_epoch(epoch: int, state, row: dict[str, float]) -> None:
        nonlocal saved
        fault_point("epoch", epoch)
        rows.append(row)
        if epoch % every == 0 or epoch == epochs:
            save_checkpoint(out / CHECKPOINT, config, Checkpoint(epoch, state, trainer.key, rows))
            saved = epoch
        write_csv(out / METRICS_CSV, METRICS, rows)
        fault_point("between", epoch)
        if progress_fn is not None:
            progress_fn(epoch, row)

    outcome = trainer.run(state, start=start, epochs=epochs, on_epoch=on_epoch)
    params = trainer.params(outcome.state)
    if outcome.diverged_row is not None:
        bad = outcome.diverged_row
        if saved != outcome.epoch and outcome.epoch > 0:  # keep the last good state
            save_checkpoint(out / CHECKPOINT, config, Checkpoint(outcome.epoch, outcome.state, trainer.key, rows))
            saved = outcome.epoch
        rows.append(bad)
        if progress_fn is not None:
            progress_fn(bad["epoch"], bad)
    write_csv(out / METRICS_CSV, METRICS, rows)
    save_params(out / PARAMS, params)
    _plot(out, config, rows)
    if outcome.diverged_row is not None:
        good = rows[:-1]
        _write_status(out, "diverged", epoch=outcome.epoch, epochs=epochs, diverged_epoch=bad["epoch"],
                      last_finite_loss=good[-1]["loss"] if good else None, checkpoint_epoch=saved or None,
                      message=f"non-finite loss or update in epoch {bad['epoch']} "
                              f"({int(bad['nonfinite'])} non-finite updates)")
    else:
        _write_status(out, "complete", epoch=epochs, epochs=epochs, checkpoint_epoch=saved)
    return TrainResult(params, rows)


def _write_status(out: Path, status: str, **fields: Any) -> None:
    record = {"status": status, "pid": os.getpid(),
              "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    record.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()})
    write_json(out / STATUS, record)


def _plot(out: Path, config: dict, rows: list[dict]) -> None:
    from ..experiments.plotting import plot_curves

    curves = {config["train"].get("method", "C"): {k: [r[k] for r in rows] for k in ("test_loss", "train_loss")}}
    plot_curves(curves, out / "loss.png", title=_title(config), keys=("test_loss", "train_loss"))


def _refuse_foreign(out: Path) -> None:
    """Refuse a folder with files but no run in it (even with force: it may be the user's own folder)."""
    if out.is_dir() and not (out / CONFIG).exists() and any(p.name != LOCK for p in out.iterdir()):
        raise ValueError(f"--out {out}: the folder is not empty and holds no stablebptt run; choose another folder")


def _claim(out: Path, config: dict, force: bool) -> None:
    """With the lock held: make sure `out` may receive a new run of `config` (replacing its run if `force`)."""
    entries = [p for p in out.iterdir() if p.name != LOCK]
    if not entries:
        return
    if force:
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return
    try:
        existing = load_config(out)
    except ValueError as e:
        raise ValueError(f"--out {out}: holds a run whose config cannot be read ({e}); "
                         "choose another folder or pass --force to replace it") from None
    if config_hash(existing) != config_hash(config):
        raise ValueError(f"--out {out}: already holds a different run; choose another folder or pass --force "
                         "to replace it")
    status = (read_status(out) or {}).get("status", "running")
    epochs, had = config["train"].get("epochs"), existing["train"].get("epochs")
    if status == "complete" and epochs == had:
        raise ValueError(f"--out {out}: already holds this run, complete; pass --force to train it again")
    if status == "diverged":
        raise ValueError(f"--out {out}: holds this run, diverged; pass --force to train it again")
    raise ValueError(f"--out {out}: holds this run ({status}, {had} epochs configured); continue it with "
                     f"`stablebptt resume {out} --epochs {epochs}` or pass --force to start again")


def _locked(run_dir: Path) -> bool:
    """Whether a live process holds the lock of `run_dir`."""
    path = run_dir / LOCK
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _title(config: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in config["task_settings"].items())
    return f"{config['task']} ({settings}), method {config['train'].get('method', 'C')}"
