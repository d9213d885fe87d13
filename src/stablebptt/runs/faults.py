"""Fault injection for tests: pause the process at a named point so that a test can kill it there.

Set ``STABLEBPTT_FAULT=POINT:EPOCH`` (points: ``epoch``, computed but not yet recorded; ``checkpoint``,
halfway through writing the checkpoint file; ``between``, after the epoch's files are written) and
``STABLEBPTT_FAULT_MARK=FILE``. On reaching the point the process creates FILE and sleeps
(``STABLEBPTT_FAULT_SLEEP`` seconds, default 120). Without the variables this does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = ("epoch", "checkpoint", "between")


def fault_point(point: str, epoch: int) -> None:
    if os.environ.get("STABLEBPTT_FAULT") != f"{point}:{epoch}":
        return
    mark = os.environ.get("STABLEBPTT_FAULT_MARK")
    if mark:
        Path(mark).write_text(f"{point}:{epoch}\n")
    time.sleep(float(os.environ.get("STABLEBPTT_FAULT_SLEEP", "120")))
