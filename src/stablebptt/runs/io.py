"""Files of run folders: JSON, CSV and parameters, each written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..core.checks import BadArgument, BadInput

CONFIG = "config.json"
METRICS_CSV = "metrics.csv"
PARAMS = "params.eqx"
SNAPSHOTS = "snapshots"  # the parameters every `RunConfig.snapshot_every` epochs: epoch-NNNNNN.eqx


def snapshot_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    """Where a run keeps its parameters of `epoch` (`RunConfig.snapshot_every`)."""
    return Path(run_dir) / SNAPSHOTS / f"epoch-{epoch:06d}.eqx"


def snapshots(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every parameter snapshot a run folder holds, by epoch; files of other names in
    ``snapshots/`` are left out."""
    found = []
    for path in (Path(run_dir) / SNAPSHOTS).glob("epoch-*.eqx"):
        digits = path.stem.removeprefix("epoch-")
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, halfway: Callable[[], None] | None = None) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one (temporary file
    in the same folder, fsync, rename, fsync of the folder). `halfway` is called with half the data written
    (a hook for fault-injection tests)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # named by the file asked for, not by a hidden temporary name
        raise type(e)(e.errno, e.strerror, os.fspath(path)) from None
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give results the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            if halfway is not None:
                f.write(data[: len(data) // 2])
                f.flush()
                halfway()
                data = data[len(data) // 2 :]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not valid JSON ({e}); it may be corrupt") from None


def write_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write all rows at once (atomically); missing or NaN values are written as empty cells."""
    CsvTable(columns, rows).write(path)


class CsvTable:
    """The lines of a CSV file kept formatted, so that a file rewritten after every new row (a run's
    ``metrics.csv``) costs the formatting of one row, not of all of them."""

    def __init__(self, columns: Sequence[str], rows: Iterable[dict[str, Any]] = ()):
        self.columns = list(columns)
        self.lines = [self._line(dict(zip(self.columns, self.columns)))]
        self.written = 0  # lines the file is known to hold as they are here (0: rewrite it whole)
        for row in rows:
            self.append(row)

    def _line(self, row: dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(k)) for k in self.columns])
        return buffer.getvalue()

    def append(self, row: dict[str, Any]) -> None:
        self.lines.append(self._line(row))

    def write(self, path: str | os.PathLike[str], extra: Iterable[dict[str, Any]] = ()) -> None:
        """Write the rows (and `extra` rows after them, not kept) atomically."""
        after = [self._line(r) for r in extra]
        atomic_write_bytes(path, "".join([*self.lines, *after]).encode())
        self.written = 0 if after else len(self.lines)

    def flush(self, path: str | os.PathLike[str]) -> None:
        """Bring the file at `path` up to date: append the rows it lacks, one write of whole lines (a reader
        may see the last line half written: `read_csv` leaves it out); the whole file, atomically, the first
        time and after `write` with extra rows."""
        if self.written == 0:
            self.write(path)
            return
        with open(path, "a", newline="") as f:
            f.write("".join(self.lines[self.written :]))
        self.written = len(self.lines)


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of a CSV file of numbers (an empty cell is NaN); a last line without its newline, which a
    writer is appending (`CsvTable.flush`), is left out."""
    with open(path, newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return [
        {k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(text, newline=""))
    ]


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return value


def save_params(path: str | os.PathLike[str], params: Any) -> None:
    """`params` (a pytree of arrays) written atomically with Equinox's serialisation."""
    import equinox as eqx  # here: reading a run folder's JSON and CSV files does not need JAX

    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, params)
    atomic_write_bytes(path, buffer.getvalue())


def load_params(path: str | os.PathLike[str], like: Any) -> Any:
    """Parameters saved by `save_params`, into the structure of `like`."""
    import equinox as eqx

    path = Path(path)
    try:
        with open(path, "rb") as f:
            return eqx.tree_deserialise_leaves(f, like)
    except FileNotFoundError:
        raise BadInput(f"{path} does not exist") from None
    except Exception as e:  # noqa: BLE001 -- numpy/equinox raise several types on bad bytes
        raise BadInput(f"{path} cannot be read as parameters of this controller ({type(e).__name__})") from None


def probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in `folder`; raises the `OSError` if it cannot be written."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".stablebptt-probe-")
    os.close(fd)
    os.unlink(probe)


def check_names(out: Path, ancestor: Path | None = None, argument: str = "out") -> None:
    """Refuse (a `BadArgument` naming `argument`, the caller's name for `out`) a path `out` whose names below its
    existing `ancestor` (default: the nearest existing one) are longer than the file system allows, before any
    folder is created."""
    if ancestor is None:
        ancestor = out
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
    try:
        name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in out.relative_to(ancestor).parts if out != ancestor else ():
        if len(os.fsencode(part)) > name_max:
            shown = part if len(part) <= 40 else part[:37] + "..."
            raise BadArgument(
                f"${argument}: the folder name {shown!r} is {len(os.fsencode(part))} bytes long, more than the "
                f"{name_max} this file system allows; choose a shorter ${argument}",
                **{argument: None},
            )
