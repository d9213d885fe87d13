"""Names of the gradient-flow modes (docs/concepts.md, the five modes)."""

from __future__ import annotations

from typing import Literal

from .checks import BadInput

MethodName = Literal["R", "M", "S", "N", "C"]

METHODS: tuple[str, ...] = ("R", "M", "S", "N", "C")

_ALIASES = {
    "R": "R",
    "regular": "R",
    "M": "M",
    "modified": "M",
    "S": "S",
    "stopped": "S",
    "N": "N",
    "network": "N",
    "C": "C",
    "combined": "C",
}

# Which backward paths each single mode keeps: (through the network's input, through the simulator's state).
PATHS: dict[str, tuple[bool, bool]] = {
    "R": (True, True),
    "M": (False, True),
    "S": (False, False),
    "N": (True, False),
}


def canonical_method(method: str) -> str:
    """Return the paper letter for a method given as a letter or a name.

    Raises:
        BadInput: if `method` is not one of R, M, S, N, C or regular, modified, stopped, network, combined.
    """
    if isinstance(method, str) and method in _ALIASES:
        return _ALIASES[method]
    allowed = ", ".join(METHODS) + " (or regular, modified, stopped, network, combined)"
    raise BadInput(f"unknown method {method!r}; allowed: {allowed}")
