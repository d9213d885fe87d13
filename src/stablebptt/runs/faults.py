"""Fault injection for tests: pause the process at a named point so that a test can kill it there.

Set ``STABLEBPTT_FAULT=POINT:EPOCH`` (points: ``epoch``, computed but not yet recorded; ``checkpoint``,
halfway through writing the checkpoint file; ``between``, after the epoch's files are written) and
``STABLEBPTT_FAULT_MARK=FILE``. On reaching the point the process creates FILE, holding ``POINT:EPOCH PID``
(the pid to kill), and sleeps (``STABLEBPTT_FAULT_SLEEP`` seconds, default 120). A fault fires once per mark
file: a process that reaches the point when FILE exists (a resumed or retried run, another run of a sweep)
goes on. Without the variables this does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = ("epoch", "checkpoint", "between")
ENV_PREFIX = "STABLEBPTT_FAULT"


def fault_point(point: str, epoch: int) -> None:
    """Pause here if ``STABLEBPTT_FAULT`` names this point and epoch (and its mark file is not there yet)."""
    if os.environ.get("STABLEBPTT_FAULT") != f"{point}:{epoch}":
        return
    mark = os.environ.get("STABLEBPTT_FAULT_MARK")
    if mark and not _claim(Path(mark), f"{point}:{epoch} {os.getpid()}\n"):
        return
    time.sleep(float(os.environ.get("STABLEBPTT_FAULT_SLEEP", "120")))


def fault_env() -> dict[str, str]:
    """The fault-injection variables set in this process (to hand on to worker processes)."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}


def _claim(mark: Path, text: str) -> bool:
    """Create `mark` holding `text`, atomically (complete or absent); False if it already exists."""
    tmp = mark.with_name(f".{mark.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, mark)  # fails if `mark` exists: exactly one process claims it
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
