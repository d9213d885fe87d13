"""Where a run came from: the code, the libraries, the processor and the task's full settings.

A run folder keeps ``provenance.json``: one entry per session that trained it (a resumed run may span commits or
machines), each with the epoch it started from, the time, the code's commit and whether its tree had changes,
the versions of stablebptt, Python and the numerical libraries, the processor and the CPUs the process may use,
JAX's devices, and every field of the task (`Task.config`: the network's sizes, dt, grid sizes and loss mode
included, where `config.json` holds only what was given). Records (`experiments.campaign.write_record`) carry it.
What cannot be found is ``"unknown"``, never a guess.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__

PROVENANCE = "provenance.json"
UNKNOWN = "unknown"
LIBRARIES = ("jax", "jaxlib", "optax", "equinox", "numpy")
SOURCE = Path(__file__).resolve().parents[1]  # the package's folder: in a git checkout with `pip install -e`


def code_version(source: Path = SOURCE) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding `source` (tracked files changed count as
    dirty; untracked ones, such as run folders, do not), or ``"unknown"`` for each where `source` is not in one
    or git is missing."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": UNKNOWN if changes is None else bool(changes.strip())}


def library_versions() -> dict[str, str]:
    """The installed versions of stablebptt, Python and `LIBRARIES` (``"unknown"`` where one is not found)."""
    versions = {"stablebptt": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = UNKNOWN
    return versions


def processor() -> dict[str, Any]:
    """The processor's model (``/proc/cpuinfo``, else `platform.processor`), the machine type, and the CPUs this
    process may use."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model or platform.processor() or UNKNOWN, "machine": platform.machine() or UNKNOWN, "cpus": cpus}


def jsonable(value: Any) -> Any:
    """`value` with arrays, NumPy scalars and tuples as JSON values (lists, numbers), other objects as text."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic) or hasattr(value, "__array__"):
        return jsonable(np.asarray(value).tolist())
    return repr(value)


def provenance(task_settings: Mapping[str, Any], epoch: int, devices: list[str]) -> dict[str, Any]:
    """One session's provenance entry: it trains from `epoch`, with the task of all fields `task_settings`
    (`Task.config`) on JAX's `devices` (e.g. ``["cpu"]``)."""
    return {
        "from_epoch": epoch,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **code_version(),
        "versions": library_versions(),
        "processor": processor(),
        "devices": devices,
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else UNKNOWN,
        "task": jsonable(dict(task_settings)),
    }


def unknown_provenance() -> list[dict[str, Any]]:
    """What a record made before provenance was kept carries: one entry of ``"unknown"``."""
    return [dict.fromkeys(("from_epoch", "time", "commit", "dirty", "versions", "processor", "task"), UNKNOWN)]
