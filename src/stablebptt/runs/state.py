"""Reading a run folder's state without the training stack (and without JAX): the file names, `read_record`
(config.json as written) and `read_status` (status.json, with a dead writer's "running" read as interrupted).
`RunFolder` (the only writer) reads through these; `stablebptt status` uses them alone."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..core.checks import BadInput
from .io import CONFIG, read_json
from .lock import locked


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (the command line installs the handler): handled as Ctrl-C is, so
    that a run stopped by ``kill`` or a job scheduler reads ``interrupted`` and leaves no lock behind."""


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Inside, Ctrl-C (SIGINT) and SIGTERM wait for the block to end and then act as they would have (the handler
    that was installed runs: `KeyboardInterrupt`, `Terminated`), so that what the block writes is written whole:
    a batched group's epoch for every run of the group or for none. Outside the main thread (only it may handle
    signals) it changes nothing; an ignored signal stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler != signal.SIG_IGN and handler is not None:
            previous[signum] = signal.signal(signum, lambda s, _frame: caught.append(s))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            first = previous[caught[0]]
            if callable(first):
                first(caught[0], None)
            else:  # SIG_DFL: what the signal does by default (SIGTERM ends the process)
                signal.raise_signal(caught[0])


STATUS = "status.json"
CHECKPOINT = "checkpoint.eqx"
FIGURE = "loss.png"
MANIFEST = "sweep.json"  # a sweep folder's list of every run planned in it (`experiments.sweep`)

# The run statuses, declared once. As written in status.json (`STATUSES`); "running" is read as "interrupted" when
# no live process holds the folder. A folder read for a report can also be "unreadable" or "pending" (planned in a
# sweep, not started); `STATES` is their order in tables. A run is `FINISHED` when nothing is left to train.
RunStatus = Literal["running", "complete", "diverged", "failed", "interrupted"]
STATUSES: tuple[RunStatus, ...] = ("running", "complete", "diverged", "failed", "interrupted")
STATES: tuple[str, ...] = ("complete", "running", "interrupted", "diverged", "failed", "unreadable", "pending")
FINISHED: tuple[RunStatus, ...] = ("complete", "diverged")


def not_a_run(path: Path, hint: str = "") -> BadInput:
    """The error for a `path` given as a run folder that is not one, saying what it is instead: nothing, a file,
    a folder of runs (a comparison or a sweep: one of its runs is named) or another folder; `hint` ends it."""
    if not path.exists():
        what = f"{path} does not exist"
    elif not path.is_dir():
        what = f"{path} is a file, not a run folder"
    else:
        inside = sorted(p.name for p in path.iterdir() if (p / CONFIG).is_file())
        if inside:
            what = (
                f"{path} holds {len(inside)} run{'s' if len(inside) != 1 else ''} (a comparison or a sweep), not one: "
                f"give one of its run folders, e.g. {path / inside[0]}"
            )
            hint = ""
        else:
            what = f"{path} is not a run folder (it has no {CONFIG})"
    return BadInput(what + (f"; {hint}" if hint else ""))


def read_record(path: Path) -> dict[str, Any]:
    """``config.json`` of the run folder `path` as written (the JSON form of the run's `RunConfig`, of this or
    an earlier version); `BadInput` if there is none (`not_a_run`) or it is not a run config."""
    if not (path / CONFIG).is_file():
        raise not_a_run(path)
    record = read_json(path / CONFIG)
    if not isinstance(record, dict) or not {"task", "task_settings", "train"} <= set(record):
        raise BadInput(f"{path / CONFIG} is not a stablebptt run config")
    return record


def read_status(path: Path) -> dict[str, Any] | None:
    """The status record of the run folder `path` (None if it has none). A ``running`` run whose writer is gone
    (killed: its lock is free) is reported as ``"interrupted"``, with ``"stale": True`` (``False`` while it
    runs)."""
    file = path / STATUS
    if not file.exists():
        return None
    status = read_json(file)
    if not isinstance(status, dict) or status.get("status") not in STATUSES:
        raise BadInput(f"{file} is not a stablebptt status file")
    if status["status"] == "running":
        status["stale"] = not locked(path)
        if status["stale"]:
            status["status"] = "interrupted"
            status.setdefault(
                "message",
                f"its process (pid {status.get('pid')}) ended without finishing; "
                f"continue it with `stablebptt resume {path}`",
            )
    return status
