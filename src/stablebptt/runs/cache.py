"""The persistent compilation cache: JAX's own (``jax_compilation_cache_dir``), in one folder per user shared by
every command that trains or diagnoses, so that a second start reads its compiled programs instead of compiling
them again.

Where (`cache_folder`): the given setting (the command line's), else ``STABLEBPTT_CACHE``, else JAX's own
``JAX_COMPILATION_CACHE_DIR``, else ``$XDG_CACHE_HOME/stablebptt/jax`` (``~/.cache/stablebptt/jax``); ``off``
turns it off and an empty value counts as not given.

Shared by several processes: JAX names an entry by a hash of the program, its compile options, devices and the
JAX and XLA versions (``KEY-cache``), writes it once (never over an entry that exists) and compresses it (zlib or
zstd). JAX 0.10 writes the file in place, not through a rename: a process that reads an entry while another is
still writing it gets a truncated stream, which fails to decompress, and JAX then warns and compiles the program
itself; it never runs a truncated one. Folders are created with ``mkdir(parents=True, exist_ok=True)``.

Failures: a folder that cannot be written (read-only, a full disk, a path through a file) is found before JAX
uses it (`writable`); `enable_cache` then turns the cache off and returns one line saying so. JAX itself turns a
failed read or write of an entry into a Python warning, never an error (``jax_raise_persistent_cache_errors`` is
off by default).

Light: only `enable_cache` imports JAX.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from ..core.checks import BadInput

ENV = "STABLEBPTT_CACHE"
OFF = "off"
JAX_ENV = "JAX_COMPILATION_CACHE_DIR"
# Every program is cached, however quick to compile or small: an epoch's programs compile in 0.01 s to minutes,
# and at a start the small ones add up (the test suite's setting, tests/conftest.py).
MIN_COMPILE_SECS = 0.0
MIN_ENTRY_BYTES = -1  # JAX: no size threshold, and none chosen for the file system
# What JAX writes in the folder: entries, their access times (with a size limit), its lock, and XLA's GPU caches.
ENTRY_SUFFIX = "-cache"
JAX_FILES = ("-cache", "-atime")
JAX_NAMES = (".lockfile", "xla_gpu_per_fusion_autotune_cache_dir", "xla_gpu_kernel_cache_file")


def default_folder(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CACHE_HOME/stablebptt/jax``, else ``~/.cache/stablebptt/jax``; None without a home folder."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG specification: a relative path is ignored
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            return None
    return Path(base) / "stablebptt" / "jax"


def cache_folder(setting: str | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cache folder: `setting`, else ``STABLEBPTT_CACHE``, else ``JAX_COMPILATION_CACHE_DIR``, else
    `default_folder`; None where the first given of `setting` and ``STABLEBPTT_CACHE`` is ``off`` (any case).
    An empty value counts as not given."""
    for value in (setting, environ.get(ENV)):
        if value:
            return None if value.strip().lower() == OFF else Path(value).expanduser()
    jax_own = environ.get(JAX_ENV)
    return Path(jax_own).expanduser() if jax_own else default_folder(environ)


def writable(folder: Path) -> str | None:
    """None if `folder` exists or can be created and a file in it written and removed; else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)  # a name of its own: race-free
        try:
            os.write(descriptor, b"probe")
        finally:
            os.close(descriptor)
            os.unlink(probe)
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def cache_environment(folder: Path | None) -> dict[str, str]:
    """JAX's environment variables for `folder` (None: no cache), which processes started later (a sweep's
    workers) read when they import JAX."""
    if folder is None:
        return {"JAX_ENABLE_COMPILATION_CACHE": "false"}
    return {
        "JAX_ENABLE_COMPILATION_CACHE": "true",
        JAX_ENV: str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": str(MIN_COMPILE_SECS),
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": str(MIN_ENTRY_BYTES),
    }


def enable_cache(folder: Path | None, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Compile through the cache in `folder` (None: without one), in this process and the processes it starts
    (`environ` gets `cache_environment`). Call it before the first compilation: JAX opens its cache once per
    process. Returns None, or one line saying that `folder` cannot be written, in which case the cache is off."""
    import jax

    problem = None if folder is None else writable(folder)
    used = None if problem else folder
    for name, value in cache_environment(used).items():
        environ[name] = value
    jax.config.update("jax_enable_compilation_cache", used is not None)
    if used is not None:
        jax.config.update("jax_compilation_cache_dir", str(used))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_BYTES)
    if problem is None:
        return None
    return (
        f"the compilation cache {folder} cannot be written ({problem}); compiling without it "
        f"(set {ENV}=off to silence this)"
    )


def _is_jax_file(path: Path) -> bool:
    return path.name in JAX_NAMES or (path.name.endswith(JAX_FILES) and path.is_file())


def cache_size(folder: Path) -> tuple[int, int]:
    """(entries, bytes) of the cache in `folder`: its compiled programs, and every file JAX wrote there; (0, 0)
    for a folder that does not exist."""
    if not folder.is_dir():
        return 0, 0
    files = [p for p in folder.iterdir() if _is_jax_file(p)]
    size = 0
    for path in files:
        inside = path.rglob("*") if path.is_dir() else [path]
        size += sum(p.stat().st_size for p in inside if p.is_file())
    return sum(p.name.endswith(ENTRY_SUFFIX) for p in files), size


def clear_cache(folder: Path) -> tuple[int, int]:
    """Remove what JAX wrote in `folder` (`cache_size`: entries and bytes removed), nothing else. Refused
    (`BadInput`, nothing removed) for a path that is not a folder and for a folder holding other files but no
    cache entry, which is not a compilation cache."""
    if not folder.exists():
        return 0, 0
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder; nothing removed")
    entries, size = cache_size(folder)
    others = [p for p in folder.iterdir() if not _is_jax_file(p)]
    if entries == 0 and others:
        raise BadInput(
            f"{folder} holds {len(others)} other file(s) (such as {others[0].name}) and no compilation cache "
            f"entry (*{ENTRY_SUFFIX}): not a compilation cache; nothing removed"
        )
    for path in folder.iterdir():
        if path.name in JAX_NAMES and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif _is_jax_file(path):
            path.unlink(missing_ok=True)  # another process may clear it too
    return entries, size
