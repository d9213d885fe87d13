"""How `value_and_grad` differentiates a rollout, as small frozen objects (options in the Diffrax manner).

Three independent choices, each a strategy object; strings are still accepted and parsed once, at the edge
(`as_backward`, `as_remat`, `as_param_vjp`), and a combination that cannot work is refused when the gradient
function is built (`Backward.check`), not when it is called:

- the backward pass (`Backward`): `Autodiff` (`jax.value_and_grad` of the rollout, single modes only), `Joint`
  (one reverse sweep carrying one adjoint per mode), `TwoPass` (one reverse sweep per mode) or `AutoBackward`;
- rematerialisation (`Remat`): `NoRemat`, `SqrtRemat`, `StatesRemat` or `Segments(length)`;
- how the adjoint backwards form parameter gradients (`ParamVJP`): `BatchedVJP`, `PerStepVJP` or `AutoVJP`.

Each has `spelling`, the form a run's config records (a string, an int or None), so that configs and their
hashes are the same whichever way an option was given. This module does not import JAX.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .checks import BadInput

if TYPE_CHECKING:
    from .methods import Method, Mode

PyTree = Any
Groups = tuple[tuple["Mode", ...], ...]
Strategy = TypeVar("Strategy")


def _named(option: str, value: Any, kind: type[Strategy], table: dict[str, Strategy]) -> Strategy:
    """`value` if it is a `kind`, else the strategy `table` names by it; `BadInput` naming `option` otherwise."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value in table:
        return table[value]
    raise BadInput(f"unknown {option} {value!r}; allowed: {', '.join(table)} (or a core.strategies.{kind.__name__})")


# ---------------------------------------------------------------------------------------------- backward pass


@dataclasses.dataclass(frozen=True)
class Backward:
    """A backward pass of `value_and_grad`. `spelling` is its name in configs and on the command line."""

    spelling: ClassVar[str]

    def check(self, method: Method, truncation: int | None) -> None:
        """Refuse, at build time, a method or truncation this backward cannot differentiate (`BadInput`)."""

    def sweeps(self, modes: tuple[Mode, ...]) -> Groups | None:
        """The modes of each reverse sweep (`adjoint.adjoint_gradients`'s groups), or None for autodiff."""
        raise NotImplementedError(f"{type(self).__name__} is resolved by value_and_grad, it has no sweeps")

    def __str__(self) -> str:
        return self.spelling


@dataclasses.dataclass(frozen=True)
class AutoBackward(Backward):
    """`Joint` for combined rules, with truncation, and for single modes whose parameter VJP is batched
    (small controllers on small batches); `Autodiff` otherwise."""

    spelling: ClassVar[str] = "auto"

    def resolve(self, method: Method, truncation: int | None, param_vjp: ParamVJP) -> Backward:
        """The concrete backward for this method, truncation and (resolved) parameter VJP."""
        single = not method.combines and truncation is None
        return AUTODIFF if single and isinstance(param_vjp, PerStepVJP) else JOINT


@dataclasses.dataclass(frozen=True)
class Autodiff(Backward):
    """`jax.value_and_grad` of the rollout with the mode's `stop_gradient`s: one mode, no truncation."""

    spelling: ClassVar[str] = "autodiff"

    def check(self, method: Method, truncation: int | None) -> None:
        if method.combines:
            raise BadInput(
                f"method {method} needs backward='joint' or 'two_pass' (it combines {len(method.modes)} modes)"
            )
        if truncation is not None:
            raise BadInput("truncation needs backward='joint' or 'two_pass'")

    def sweeps(self, modes: tuple[Mode, ...]) -> Groups | None:
        return None


@dataclasses.dataclass(frozen=True)
class Joint(Backward):
    """One forward scan, then ONE reverse sweep carrying one adjoint per mode side by side."""

    spelling: ClassVar[str] = "joint"

    def sweeps(self, modes: tuple[Mode, ...]) -> Groups | None:
        return (tuple(modes),)


@dataclasses.dataclass(frozen=True)
class TwoPass(Backward):
    """One forward scan, then one reverse sweep per mode (the published cost model of C)."""

    spelling: ClassVar[str] = "two_pass"

    def sweeps(self, modes: tuple[Mode, ...]) -> Groups | None:
        return tuple((m,) for m in modes)


AUTO_BACKWARD, AUTODIFF, JOINT, TWO_PASS = AutoBackward(), Autodiff(), Joint(), TwoPass()
BACKWARD_STRATEGIES: dict[str, Backward] = {b.spelling: b for b in (AUTO_BACKWARD, AUTODIFF, JOINT, TWO_PASS)}
BACKWARDS: tuple[str, ...] = tuple(BACKWARD_STRATEGIES)


def as_backward(value: str | Backward) -> Backward:
    """The `Backward` of a name ("auto", "autodiff", "joint", "two_pass") or `value` itself.

    Raises:
        BadInput: for anything else.
    """
    return _named("backward", value, Backward, BACKWARD_STRATEGIES)


# -------------------------------------------------------------------------------------------- rematerialisation


@dataclasses.dataclass(frozen=True)
class Remat:
    """Rematerialisation: which steps' residuals the backward pass keeps. `spelling` is the config form."""

    def segment(self, horizon: int) -> int | None:
        """Length of the segments recomputed one at a time (at most `horizon`), or None to keep every step."""
        raise NotImplementedError

    @property
    def spelling(self) -> int | str | None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class NoRemat(Remat):
    """Store every step's residuals: fastest, memory linear in the horizon."""

    def segment(self, horizon: int) -> int | None:
        return None

    @property
    def spelling(self) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class SqrtRemat(Remat):
    """Store only states; recompute segments of ``ceil(sqrt(horizon))`` steps."""

    def segment(self, horizon: int) -> int:
        return math.isqrt(horizon - 1) + 1 if horizon > 1 else 1

    @property
    def spelling(self) -> str:
        return "sqrt"


@dataclasses.dataclass(frozen=True)
class StatesRemat(Remat):
    """Store only states; re-linearise each step alone (least memory)."""

    def segment(self, horizon: int) -> int:
        return 1

    @property
    def spelling(self) -> str:
        return "states"


@dataclasses.dataclass(frozen=True)
class Segments(Remat):
    """Store only states; recompute segments of `length` steps (capped at the horizon)."""

    length: int

    def __post_init__(self) -> None:
        ok = isinstance(self.length, numbers.Integral) and not isinstance(self.length, bool) and self.length >= 1
        if not ok:
            raise BadInput(f"Segments(length) needs a positive integer, got {self.length!r}")

    def segment(self, horizon: int) -> int:
        return min(int(self.length), horizon)

    @property
    def spelling(self) -> int:
        return int(self.length)


def as_remat(value: Any) -> Remat:
    """The `Remat` of an option: None, False or "none" (`NoRemat`); "sqrt"; "states"; a positive int or a
    string of digits (`Segments`); or a `Remat` itself.

    Raises:
        BadInput: for any other value.
    """
    if isinstance(value, Remat):
        return value
    named = {"none": NoRemat(), "sqrt": SqrtRemat(), "states": StatesRemat()}
    if value is None or value is False:
        return NoRemat()
    if isinstance(value, str) and value in named:
        return named[value]
    length = int(value) if isinstance(value, str) and value.strip().isdecimal() else value
    if isinstance(length, numbers.Integral) and not isinstance(length, bool) and int(length) >= 1:
        return Segments(int(length))
    raise BadInput(f"remat must be None, 'none', 'sqrt', 'states' or a positive segment length, got {value!r}")


# ------------------------------------------------------------------------------------------ parameter VJP


@dataclasses.dataclass(frozen=True)
class ParamVJP:
    """How the adjoint backwards form parameter gradients; only speed differs. `spelling` is the config form."""

    spelling: ClassVar[str]

    def __str__(self) -> str:
        return self.spelling


@dataclasses.dataclass(frozen=True)
class BatchedVJP(ParamVJP):
    """One VJP of the network over all steps (of a segment), after the reverse sweep."""

    spelling: ClassVar[str] = "batched"


@dataclasses.dataclass(frozen=True)
class PerStepVJP(ParamVJP):
    """Each step's full network VJP inside the reverse sweep, accumulated in its carry."""

    spelling: ClassVar[str] = "per_step"


@dataclasses.dataclass(frozen=True)
class AutoVJP(ParamVJP):
    """`PerStepVJP` when one network call does many operations per parameter (above `threshold`; None: the
    measured crossover), else `BatchedVJP`; resolved when the gradient is traced (`adjoint.resolve_param_vjp`)."""

    spelling: ClassVar[str] = "auto"
    threshold: float | None = None


PARAM_VJP_STRATEGIES: dict[str, ParamVJP] = {p.spelling: p for p in (AutoVJP(), BatchedVJP(), PerStepVJP())}


def as_param_vjp(value: str | ParamVJP) -> ParamVJP:
    """The `ParamVJP` of a name ("auto", "batched", "per_step") or `value` itself.

    Raises:
        BadInput: for anything else.
    """
    return _named("param_vjp", value, ParamVJP, PARAM_VJP_STRATEGIES)


# ------------------------------------------------------------------------- config forms (checked, not built)


def check_backward(value: str | Backward) -> str:
    """The config form of a `backward` option (`as_backward`'s spelling); `BadInput` if it is not one."""
    return as_backward(value).spelling


def check_remat(value: Any) -> int | str | None:
    """The config form of a `remat` option: None, "sqrt", "states" or a segment length (`as_remat`)."""
    return as_remat(value).spelling


def check_param_vjp(value: str | ParamVJP) -> str:
    """The config form of a `param_vjp` option (`as_param_vjp`'s spelling); `BadInput` if it is not one."""
    return as_param_vjp(value).spelling
