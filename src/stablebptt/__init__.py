"""stablebptt: stabilised backpropagation through time for controllers of differentiable simulators.

Implements Schnell & Thuerey, "Stabilizing Backpropagation Through Time to Learn Complex Physics" (ICLR 2024).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import tasks
    from .core import METHODS, BadInput, BadType, canonical_method, combine, rollout, sign_agreement, value_and_grad

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: ``import stablebptt`` (and the command line's ``--version``,
    ``--help`` and argument errors) does not import JAX."""
    if name == "tasks":
        return importlib.import_module(".tasks", __name__)
    if name in __all__:
        return getattr(importlib.import_module(".core", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


__all__ = [
    "METHODS",
    "BadInput",
    "BadType",
    "canonical_method",
    "combine",
    "rollout",
    "sign_agreement",
    "tasks",
    "value_and_grad",
]
