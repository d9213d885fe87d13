"""Importing a user's module by name (``module.path:Name`` specs of tasks and gradient rules), with the current
directory first on the Python path. Every failure is one line of `BadInput`."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from .checks import BadInput, described


@contextlib.contextmanager
def _first_on_path(entries: list[str]) -> Iterator[None]:
    """`entries` at the front of `sys.path` for the duration of an import."""
    added = [e for e in entries if e not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for e in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(e)


def _missing(error: ModuleNotFoundError, module: str) -> bool:
    """Whether `error` says `module` itself (or a package above it) is missing, not something it imports."""
    parts = module.split(".")
    return error.name in {".".join(parts[: i + 1]) for i in range(len(parts))}


def import_module(module: str, path: str | None = None) -> Any:
    """Import `module` with the current directory first on the Python path, else from folder `path`."""
    tries = [[os.getcwd()]] + ([[path]] if path else [])
    for i, entries in enumerate(tries):
        try:
            with _first_on_path(entries):
                importlib.invalidate_caches()
                return importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not _missing(e, module):
                raise BadInput(f"module {module!r} does not import: {described(e)}") from None
            if i == len(tries) - 1:
                where = f"the current directory {os.getcwd()}" + (f", {path}" if path else "") + " or the Python path"
                raise BadInput(
                    f"module {module!r} not found in {where}; check the spelling, or run from the "
                    f"folder that holds {module.split('.')[0]}.py"
                ) from None
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- the module's own code failed: its one-line reason
            raise BadInput(f"module {module!r} does not import: {described(e)}") from None
    raise AssertionError("unreachable")
