"""Checks of user input: one exception class for a bad value, and shared argument checks
(the forms of `value_and_grad`'s gradient options are in `strategies`).

`BadInput` means "a value given by the user (a setting, a file, a simulator) is wrong": its message names the
value and says what is allowed. The command line maps exactly this class to exit code 2; any other exception is
a failure of the program. `BadType` is the same for a value of the wrong type, and also a `TypeError`.
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
import os
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class BadInput(ValueError):
    """A value given by the user (setting, file, simulator) is wrong; the message names it and says what is
    allowed."""


@dataclasses.dataclass(frozen=True)
class Argument:
    """An argument shown under another placeholder than its name: ``current=Argument("remat", "sqrt")`` shows
    ``remat='sqrt'`` to Python and the same option as the command line writes it."""

    name: str
    value: Any


@dataclasses.dataclass(frozen=True)
class Action:
    """A next step that a message suggests, named by what it does. `python` is the library call that does it;
    the command line writes it as its command `name` with `positional` arguments and `options` (Python names,
    shown as the command line's flags). One object, no command-line text in the library.

        Action("resume", "RunFolder('runs/x').resume(epochs=20)", ("runs/x",), {"epochs": 20})
    """

    name: str
    python: str
    positional: tuple[Any, ...] = ()
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def python_argument(name: str, value: Any) -> str:
    """An argument as Python writes it: ``out='runs/x'``, ``force=True``; just ``lr`` for a value of None; an
    `Action` as its call."""
    if isinstance(value, Action):
        return value.python
    if isinstance(value, Argument):
        return python_argument(value.name, value.value)
    if value is None:
        return name
    return f"{name}={os.fspath(value)!r}" if isinstance(value, os.PathLike) else f"{name}={value!r}"


class BadArgument(BadInput):
    """Bad input about arguments of a library call. Its message is a `string.Template` whose fields (``$path``)
    are arguments by their Python names, shown as Python writes them (``path='runs/x'``, ``force=True``;
    `python_argument`); the command line shows its own flags instead (``--out runs/x``, ``--force``) with
    `render`. Other ``$`` signs are left as they are.

        raise BadArgument(f"$path: holds another run; pass $force to replace it", path=out, force=True)
    """

    def __init__(self, template: str, **arguments: Any) -> None:
        self.template, self.arguments = template, arguments
        super().__init__(self.render(python_argument))

    def render(self, show: Callable[[str, Any], str]) -> str:
        """The message with each argument shown by ``show(name, value)``."""
        shown = {name: show(name, value) for name, value in self.arguments.items()}
        return string.Template(self.template).safe_substitute(shown)

    def __reduce__(self) -> tuple[Any, ...]:  # across processes (sweep workers, Ray) as a plain BadInput
        return (BadInput, (str(self),))


class BadType(BadInput, TypeError):
    """A value given by the user has the wrong type (a `BadInput` that is also a `TypeError`)."""


class SimulatorFault(BadInput):
    """A function of the user's task (simulator step, controller, loss, sample, init_controller) raised while it
    was called or traced: the message names the function and gives the first line of its error, which is
    chained as ``__cause__`` (``--debug`` shows its traceback)."""


def check_positive_int(name: str, value: Any) -> int:
    """`value` as an int if it is an integer >= 1 (not a bool); `BadInput` naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise BadInput(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_number(name: str, value: Any) -> float:
    """`value` as a float if it is a real number > 0 (not a bool, not NaN); `BadInput` naming `name` otherwise."""
    # typeshed's numbers.Real declares __lt__ and __le__ but no __gt__, so mypy rejects `value > 0`:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or value != value:  # type: ignore[operator]
        raise BadInput(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`; `BadInput` naming `name` and listing `allowed` otherwise."""
    if value not in allowed:
        raise BadInput(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_positive_index(name: str, value: Any, allowed: str = "a positive integer") -> int:
    """`value` as an int if it is an integer >= 1 (any `__index__` type, not a bool); `BadInput` naming `name`
    and saying what is `allowed` otherwise."""
    try:
        length = operator.index(value)
    except TypeError:
        length = None
    if length is None or isinstance(value, bool) or length < 1:
        raise BadInput(f"{name} must be {allowed}, got {value!r}")
    return length


def check_truncation(value: Any) -> int | None:
    """`value` as an int if it is a positive integer (not a bool), None for None; `BadInput` otherwise."""
    return None if value is None else check_positive_index("truncation", value, "None or a positive integer")


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``: `n` and `word`, with an ``s`` unless `n` is 1."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def first_line(error: BaseException) -> str:
    """The first non-empty line of `error`'s message (its type's name if it has none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def described(error: BaseException) -> str:
    """``Type: first line`` of `error` (just ``Type`` when its message is empty or is the type's name): how an
    error that is not bad input is told in one line everywhere (status.json, sweep logs, the command line)."""
    line = first_line(error)
    return type(error).__name__ if line == type(error).__name__ else f"{type(error).__name__}: {line}"


def layer_widths(value: Any) -> Any:
    """Converter of a ``hidden`` field: a list or tuple becomes a tuple; anything else is kept as it is, for
    `check_layer_widths` to refuse (``tuple("wide")`` would be four letters)."""
    return tuple(value) if isinstance(value, list | tuple) else value


def check_layer_widths(name: str, value: Any) -> None:
    """`value` must be a tuple of positive integers (the widths of hidden layers)."""
    if not isinstance(value, tuple) or not all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool) and int(w) > 0 for w in value
    ):
        raise BadInput(f"{name} must be a list of positive layer widths, e.g. [100, 100], got {value!r}")
