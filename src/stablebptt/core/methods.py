"""The gradient rules (docs/concepts.md, the five modes) as small frozen objects.

A single gradient-flow `Mode` is a typed pair: whether gradients flow back through the network's input and
whether they flow back through the simulator's state (R: both; M: the simulator only; S: neither; N: the network
only). The rollout, the rematerialised rollout and the adjoint sweep read these two flags and nothing else.

A `Method` (a gradient rule) owns everything that depends on it:

- the modes whose gradients it needs and its `update`, which turns them into one update;
- its policy for non-finite entries (`Method.accepts`: C with ``regular_nonfinite="stop"`` refuses a g_R with a
  non-finite entry, C always refuses a non-finite g_M);
- its metric columns (`Column`) and their per-epoch aggregation (`Method.aggregate`);
- its `label` and `colour`, and its `spelling` in a run's configuration (the letter of a built-in rule,
  ``module.path:Name`` for a rule of one's own, so that `resume` finds it again).

Strings are parsed to these objects once, at the edges (`as_method`): ``value_and_grad(method="C")``,
``method="c"``, ``method="combined"`` and ``method=COMBINED`` are the same. A rule of one's own is one instance
of a `Method` subclass, in a module of its own; nothing needs to be registered.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .checks import BadInput

if TYPE_CHECKING:
    import jax

PyTree = Any
Info = dict[str, "jax.Array"]
MethodName = Literal["R", "M", "S", "N", "C"]
REGULAR_NONFINITE = ("zero", "stop")  # what C does with a non-finite entry of g_R


@dataclasses.dataclass(frozen=True)
class Mode:
    """A single gradient-flow mode: its letter and which backward paths it keeps, through the network's input
    (`network`) and through the simulator's state (`simulator`)."""

    letter: str
    network: bool
    simulator: bool

    def __str__(self) -> str:
        return self.letter


MODE_R, MODE_M, MODE_S, MODE_N = (
    Mode("R", True, True),
    Mode("M", False, True),
    Mode("S", False, False),
    Mode("N", True, False),
)
MODES: dict[str, Mode] = {m.letter: m for m in (MODE_R, MODE_M, MODE_S, MODE_N)}


def as_mode(mode: str | Mode) -> Mode:
    """The `Mode` of a letter R, M, S or N (either case), or `mode` itself.

    Raises:
        BadInput: for anything else (C is a rule of two modes, not a mode).
    """
    if isinstance(mode, Mode):
        return mode
    letter = mode.upper() if isinstance(mode, str) else mode
    if isinstance(letter, str) and letter in MODES:
        return MODES[letter]
    raise BadInput(f"unknown gradient-flow mode {mode!r}; allowed: {', '.join(MODES)}")


@dataclasses.dataclass(frozen=True)
class Column:
    """A metric column a rule adds to every epoch's row: the statistic `name` of its `update`'s info, averaged
    over the epoch's updates that were used (``"mean"``) or summed over all of them (``"sum"``)."""

    name: str
    reduce: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if self.reduce not in ("mean", "sum"):
            raise BadInput(f"column {self.name}: reduce must be 'mean' or 'sum', got {self.reduce!r}")


@dataclasses.dataclass(frozen=True)
class Method:
    """A gradient rule: its letter, its name, the single modes whose gradients it needs (`Mode`s, or their
    letters), the metric `columns` its `update` adds to ``info`` besides ``grad_norm``, and the `colour` of its
    curves. This base class is a single mode: its update is that mode's gradient.

    A rule of one's own subclasses `Method` (a frozen dataclass), overrides `update` (and `accepts` for a
    policy on non-finite statistics), and lives at module level of an importable module, so that a run can
    record it (`spelling`) and resume it.
    """

    letter: str
    name: str
    modes: tuple[Mode, ...]
    columns: tuple[Column, ...] = ()
    colour: str | None = None

    def __post_init__(self) -> None:
        modes = self.modes if isinstance(self.modes, tuple | list) else ()
        try:
            parsed = tuple(as_mode(m) for m in modes)
        except BadInput:
            parsed = ()
        if not parsed or len(parsed) != len(self.modes):
            raise BadInput(f"method {self.letter}: modes must be some of {', '.join(MODES)}, got {self.modes!r}")
        if type(self) is Method and len(parsed) != 1:
            raise BadInput(f"method {self.letter}: a single-mode rule has one mode, got {self.modes!r}")
        columns = tuple(Column(c) if isinstance(c, str) else c for c in self.columns)
        if not all(isinstance(c, Column) for c in columns):
            raise BadInput(f"method {self.letter}: columns must be Column objects or names, got {self.columns!r}")
        object.__setattr__(self, "modes", parsed)
        object.__setattr__(self, "columns", columns)

    @property
    def combines(self) -> bool:
        """Whether the update combines several modes."""
        return len(self.modes) > 1

    @property
    def label(self) -> str:
        """How figures and tables name the rule: its letter and name, e.g. ``C combined``."""
        return f"{self.letter} {self.name}"

    def update(self, grads: Sequence[PyTree]) -> tuple[PyTree, Info]:
        """The update from the gradients of `modes` (in that order; same structure as the parameters) and its
        ``info``: ``grad_norm`` (L2 norm of the update) and the statistics its `columns` name."""
        from .combination import tree_norm

        (grad,) = grads
        return grad, {"grad_norm": tree_norm(grad)}

    def accepts(self, info: Info) -> jax.Array:
        """The rule's policy on its own statistics: a bool scalar, False where an update must count as not
        finite (the run stops, or with ``skip_nonfinite`` skips it). The loss, the update and the new parameters
        are checked by training for every rule; this is for what only the rule knows (C: a non-finite g_M)."""
        import jax.numpy as jnp

        del info
        return jnp.array(True)

    def aggregate(self, infos: Mapping[str, jax.Array], used: jax.Array) -> dict[str, jax.Array]:
        """One epoch's value of each of `columns` from its updates' infos (each with the updates on the leading
        axis) and `used` (bool, the updates that were used): `aggregate`."""
        return aggregate(self.columns, infos, used)

    def check_update(self, update: PyTree, params: PyTree) -> None:
        """Refuse (one-line `BadInput` naming the rule and the first wrong leaf) an update whose tree structure,
        shapes or dtypes are not those of the differentiable `params`; run when the update is traced."""
        from .trees import first_difference

        difference = first_difference(update, params, ("update", "parameter"))
        if difference is not None:
            must = "one leaf per parameter" if difference.startswith("has") else "the parameters' shapes and dtypes"
            raise BadInput(f"method {self}: its update {difference}; {type(self).__name__}.update must return {must}")

    @property
    def spelling(self) -> str:
        """The rule in a run's configuration: the letter of a built-in rule, else ``module.path:Name`` where
        ``Name`` is a module-level instance equal to it, or its class when the class called with no arguments
        gives an equal rule.

        Raises:
            BadInput: for a rule that cannot be found again that way (defined in ``__main__``, in a function, or
                an instance with arguments that the module does not hold).
        """
        if RULES.get(self.letter) == _builtin_form(self):
            return self.letter
        cls = type(self)
        module = sys.modules.get(cls.__module__)
        if module is not None and cls.__module__ != "__main__":
            for attribute, value in vars(module).items():
                if isinstance(value, Method) and value == self:
                    return f"{cls.__module__}:{attribute}"
            if getattr(module, cls.__name__, None) is cls and _default(cls) == self:
                return f"{cls.__module__}:{cls.__name__}"
        raise BadInput(
            f"method {self} ({cls.__name__}) cannot be recorded: define it at module level of an importable module "
            "(not __main__), as an instance or as a class whose defaults give it, so that a run can name it as "
            "module.path:Name"
        )

    def __str__(self) -> str:
        return self.letter


def aggregate(columns: Sequence[Column], infos: Mapping[str, jax.Array], used: jax.Array) -> dict[str, jax.Array]:
    """One epoch's value of each column from its updates' infos (each ``(updates, ...)``): the mean over the
    updates that were `used` (bool ``(updates,)``), or the sum over all of them."""
    import jax.numpy as jnp

    out = {}
    for column in columns:
        values = infos[column.name]
        if column.reduce == "sum":
            out[column.name] = jnp.sum(values).astype(jnp.result_type(float))
        else:
            out[column.name] = jnp.sum(jnp.where(used, values, 0)) / jnp.sum(used)
    return out


def _default(cls: type[Method]) -> Method | None:
    try:
        return cls()  # type: ignore[call-arg]
    except Exception:  # noqa: BLE001 -- a class without defaults names no single rule
        return None


def _builtin_form(rule: Method) -> Method:
    """`rule` with C's non-finite policy at its default (the policy is recorded as its own setting)."""
    return dataclasses.replace(rule, regular_nonfinite="zero") if isinstance(rule, SignCombined) else rule


@dataclasses.dataclass(frozen=True)
class SignCombined(Method):
    """C: g_M where its sign agrees with g_R's, else 0 (`combination.combine`), with the statistics of
    `combination.combine_stats`. Its columns are ``cosine`` and ``kept_fraction`` (means over the epoch) and
    ``regular_nonfinite`` (entries of g_R that were not finite, summed over the epoch).

    `regular_nonfinite` is its policy on a non-finite entry of g_R: ``"zero"`` (it counts as disagreement, the
    update is 0 there and the run goes on, as the published code) or ``"stop"`` (the update counts as not
    finite). A non-finite g_M always does."""

    modes: tuple[Mode, ...] = (MODE_M, MODE_R)
    columns: tuple[Column, ...] = (Column("cosine"), Column("kept_fraction"), Column("regular_nonfinite", "sum"))
    colour: str | None = "tab:green"
    regular_nonfinite: str = "zero"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modes != (MODE_M, MODE_R):
            raise BadInput(
                f"method {self.letter}: the sign test combines modes ('M', 'R'), got {tuple(map(str, self.modes))!r}"
            )
        if self.regular_nonfinite not in REGULAR_NONFINITE:
            raise BadInput(
                f"method {self.letter}: regular_nonfinite must be one of {', '.join(REGULAR_NONFINITE)}, "
                f"got {self.regular_nonfinite!r}"
            )

    def update(self, grads: Sequence[PyTree]) -> tuple[PyTree, Info]:
        from .combination import combined_update

        g_m, g_r = grads
        return combined_update(g_m, g_r)

    def accepts(self, info: Info) -> jax.Array:
        ok = info["modified_finite"]
        return ok & (info["regular_nonfinite"] == 0) if self.regular_nonfinite == "stop" else ok


REGULAR = Method("R", "regular", (MODE_R,), colour="tab:blue")
MODIFIED = Method("M", "modified", (MODE_M,), colour="tab:orange")
STOPPED = Method("S", "stopped", (MODE_S,), colour="tab:red")
NETWORK = Method("N", "network", (MODE_N,), colour="tab:purple")
COMBINED = SignCombined("C", "combined")

RULES: dict[str, Method] = {m.letter: m for m in (REGULAR, MODIFIED, STOPPED, NETWORK, COMBINED)}
METHODS: tuple[str, ...] = tuple(RULES)
_ALIASES = {**{m.letter: m.letter for m in RULES.values()}, **{m.name: m.letter for m in RULES.values()}}
# One colour per rule, fixed across every figure of the project (a rule of one's own: its `colour`, else grey).
METHOD_COLORS: dict[str, str] = {m.letter: m.colour for m in RULES.values() if m.colour is not None}


def _allowed() -> str:
    names = ", ".join(m.name for m in RULES.values())
    return f"{', '.join(METHODS)} (or {names}, in either case), or module.path:Name for a rule of your own"


def canonical_method(method: str | Method) -> str:
    """The spelling of a method given as a letter (either case), a name, ``module.path:Name`` or a `Method`:
    the paper letter of a built-in rule, ``module.path:Name`` for a rule of one's own (`Method.spelling`).

    Raises:
        BadInput: for anything else, or a rule of one's own that cannot be imported.
    """
    return as_method(method).spelling


def as_method(method: str | Method) -> Method:
    """The `Method` of a letter (either case) or name, of ``module.path:Name`` (a `Method` instance, or a
    `Method` subclass whose defaults make the rule, imported with the current directory first on the Python
    path), or `method` itself.

    Raises:
        BadInput: for anything else, naming what is allowed; never a default for an unknown name.
    """
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        text = method.strip()
        key = text.upper() if len(text) == 1 else text.lower()
        if key in _ALIASES:
            return RULES[_ALIASES[key]]
        if ":" in text:
            return _import_rule(text)
    raise BadInput(f"unknown method {method!r}; allowed: {_allowed()}")


def _import_rule(spec: str) -> Method:
    from .imports import import_module

    module, _, attribute = spec.partition(":")
    if not module or not attribute.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        raise BadInput(f"method {spec!r} is not module.path:Name; allowed: {_allowed()}")
    found = getattr(import_module(module), attribute, None)
    if isinstance(found, type) and issubclass(found, Method):
        rule = _default(found)
        if rule is None:
            raise BadInput(f"method {spec}: {attribute}() cannot be built without arguments; name an instance instead")
        return rule
    if not isinstance(found, Method):
        what = "nothing" if found is None else f"a {type(found).__name__}"
        raise BadInput(f"method {spec}: {module} holds {what} as {attribute}; allowed: a Method instance or subclass")
    return found
