"""One writer per run folder: an exclusive `fcntl.flock` on ``RUN/.lock``.

The kernel drops the lock when its process dies (even by SIGKILL), so a lock left by a dead process is taken
over without any clean-up. A clean release removes the file (while still holding the lock), so a finished run
leaves no ``.lock`` behind; a process that takes the lock checks that the file it locked is still the one at
the path (not one removed by a releasing holder in between), and tries again otherwise.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..core.checks import BadInput

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

LOCK = ".lock"
_ATTEMPTS = 10  # times to retry when a releasing holder removed the file we locked (a race of microseconds)


class RunLocked(BadInput):
    """Another live process holds the run folder."""


class RunLock:
    """Context manager holding the lock of run folder `run_dir` (which must exist)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._file: IO[str] | None = None

    def __enter__(self) -> Self:
        for _ in range(_ATTEMPTS):
            f = open(self.path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise RunLocked(
                    f"{self.path.parent} is being written by another process (pid {holder}); "
                    "wait for it to finish or stop it"
                ) from None
            if _same_file(f, self.path):
                break
            f.close()  # the holder removed this file while we waited for it: lock the new one
        else:
            raise RunLocked(f"{self.path.parent}: could not take its lock ({self.path} keeps being replaced)")
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)  # still held: nobody can have locked the file we remove
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _same_file(f: IO[str], path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def locked(run_dir: str | Path) -> bool:
    """Whether a live process holds the lock of `run_dir`."""
    path = Path(run_dir) / LOCK
    try:
        f = open(path)  # noqa: SIM115 - closed below; a missing file means nobody holds the lock
    except FileNotFoundError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False
