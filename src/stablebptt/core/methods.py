"""The gradient rules (docs/concepts.md, the five modes) as small frozen objects.

A `Method` names the single gradient-flow modes it needs (R: every path; M: through the simulator only; S: none
through time; N: through the network only) and turns their gradients into one update. R, M, S and N use their
one mode's gradient; C (`SignCombined`) keeps M's entries where their sign agrees with R's. Strings are parsed
to these objects once, at the edges (`as_method`): ``value_and_grad(method="C")`` and ``method=COMBINED`` are
the same. A new rule is one instance of a `Method` subclass here, added to `RULES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import jax

from .checks import BadInput

PyTree = Any
Info = dict[str, jax.Array]
MethodName = Literal["R", "M", "S", "N", "C"]

# Which backward paths each single mode keeps: (through the network's input, through the simulator's state).
PATHS: dict[str, tuple[bool, bool]] = {
    "R": (True, True),
    "M": (False, True),
    "S": (False, False),
    "N": (True, False),
}


@dataclasses.dataclass(frozen=True)
class Method:
    """A gradient rule: its letter, its name, the single modes (keys of `PATHS`) whose gradients it needs, and
    `stats`, the statistics its `update` adds to ``info`` besides ``grad_norm``. This base class is a single
    mode: its update is that mode's gradient."""

    letter: str
    name: str
    modes: tuple[str, ...]
    stats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in PATHS]
        if not self.modes or unknown:
            raise BadInput(f"method {self.letter}: modes must be some of {', '.join(PATHS)}, got {self.modes!r}")
        if type(self) is Method and len(self.modes) != 1:
            raise BadInput(f"method {self.letter}: a single-mode rule has one mode, got {self.modes!r}")

    @property
    def combines(self) -> bool:
        """Whether the update combines several modes (then each is checked for finiteness in training)."""
        return len(self.modes) > 1

    def update(self, grads: Sequence[PyTree]) -> tuple[PyTree, Info]:
        """The update from the gradients of `modes` (in that order; same structure as the parameters) and its
        ``info``: ``grad_norm`` (L2 norm of the update) and the rule's `stats`."""
        from .combination import tree_norm

        (grad,) = grads
        return grad, {"grad_norm": tree_norm(grad)}

    def __str__(self) -> str:
        return self.letter


@dataclasses.dataclass(frozen=True)
class SignCombined(Method):
    """C: g_M where its sign agrees with g_R's, else 0 (`combination.combine`), with the statistics of
    `combination.combine_stats` (``cosine``, ``kept_fraction``, ``regular_nonfinite``, ``modified_finite``)."""

    modes: tuple[str, ...] = ("M", "R")
    stats: tuple[str, ...] = ("cosine", "kept_fraction", "regular_nonfinite", "modified_finite")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modes != ("M", "R"):
            raise BadInput(f"method {self.letter}: the sign test combines modes ('M', 'R'), got {self.modes!r}")

    def update(self, grads: Sequence[PyTree]) -> tuple[PyTree, Info]:
        from .combination import combined_update

        g_m, g_r = grads
        return combined_update(g_m, g_r)


REGULAR = Method("R", "regular", ("R",))
MODIFIED = Method("M", "modified", ("M",))
STOPPED = Method("S", "stopped", ("S",))
NETWORK = Method("N", "network", ("N",))
COMBINED = SignCombined("C", "combined")

RULES: dict[str, Method] = {m.letter: m for m in (REGULAR, MODIFIED, STOPPED, NETWORK, COMBINED)}
METHODS: tuple[str, ...] = tuple(RULES)
_ALIASES = {**{m.letter: m.letter for m in RULES.values()}, **{m.name: m.letter for m in RULES.values()}}


def canonical_method(method: str | Method) -> str:
    """Return the paper letter for a method given as a letter, a name or a `Method`.

    Raises:
        BadInput: if `method` is not one of R, M, S, N, C or regular, modified, stopped, network, combined.
    """
    if isinstance(method, Method):
        return method.letter
    if isinstance(method, str) and method in _ALIASES:
        return _ALIASES[method]
    allowed = ", ".join(METHODS) + " (or " + ", ".join(m.name for m in RULES.values()) + ")"
    raise BadInput(f"unknown method {method!r}; allowed: {allowed}")


def as_method(method: str | Method) -> Method:
    """The `Method` of a letter or name (or `method` itself, if it is one of `RULES` or a rule of your own).

    Raises:
        BadInput: as `canonical_method`.
    """
    if isinstance(method, Method):
        return method
    return RULES[canonical_method(method)]
