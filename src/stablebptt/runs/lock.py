"""One writer per run folder: an exclusive `fcntl.flock` on ``RUN/.lock``.

The kernel drops the lock when its process dies (even by SIGKILL), so a lock left by a dead process is taken
over without any clean-up; the file itself stays and only records the holder's pid for messages.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..core.checks import BadInput

LOCK = ".lock"


class RunLocked(BadInput):
    """Another live process holds the run folder."""


class RunLock:
    """Context manager holding the lock of run folder `run_dir` (which must exist)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._file = None

    def __enter__(self) -> "RunLock":
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunLocked(f"{self.path.parent} is being written by another process (pid {holder}); "
                            "wait for it to finish or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
