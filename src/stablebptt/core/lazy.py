"""Names of a package imported on first use (PEP 562), so that importing the package costs nothing until a name
is used: `stablebptt.core` and `stablebptt.runs` use it, and the light commands (`stablebptt status`) never
import JAX."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_names(
    package: str, namespace: dict[str, Any], home: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for `package`: each name of ``home[module]`` comes from ``package.module`` on
    first use and is then kept in the package's `namespace` (its ``globals()``)."""
    where = {name: module for module, names in home.items() for name in names}

    def getattr_(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(f".{where[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(where)

    return getattr_, dir_
