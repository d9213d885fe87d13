"""Command-line option types and the per-task options."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..core.methods import canonical_method
from ..tasks import task_fields


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a non-negative finite number, got {text!r}")
    return value


def method(text: str) -> str:
    try:
        return canonical_method(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def method_list(text: str) -> list[str]:
    methods = [method(t.strip()) for t in text.split(",") if t.strip()]
    if not methods:
        raise argparse.ArgumentTypeError("expected a comma-separated list of methods such as R,M,C,S")
    return methods


@dataclass(frozen=True)
class TaskOption:
    """A task setting on the command line: ``--flag`` sets ``settings[name]``."""

    flag: str
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


TASK_OPTIONS: dict[str, tuple[TaskOption, ...]] = {
    "cartpole": (
        TaskOption("--poles", "n_poles", positive_int, 2, "number of poles on the cart (1-4 in the paper)"),
        TaskOption("--loss", "loss_mode", str, "final", "loss on the final state or every state",
                   ("final", "continuous")),
        TaskOption("--horizon", "horizon", positive_int, 100, "unrolled steps Nt (dt = 1.0 / Nt)"),
    ),
    "repulsion": (
        TaskOption("--drivers", "n_drivers", positive_int, 2, "number of controlled drivers"),
        TaskOption("--evaders", "n_evaders", positive_int, 4, "number of evaders to guide to the target"),
        TaskOption("--rc", "rc", nonnegative_float, 0.1, "weight of the control regularisation rc*mean(c^2)"),
        TaskOption("--horizon", "horizon", positive_int, 60, "unrolled steps Nt (dt = 4.0 / Nt)"),
        TaskOption("--centre", "centre", str, "sum", "driver control axis relative to the sum (published quirk) "
                   "or the mean of the evader positions", ("sum", "mean")),
    ),
    "quantum": (
        TaskOption("--target", "target", positive_int, 3, "target eigenstate, 1..32 (3, 4, 5 in the paper)"),
        TaskOption("--horizon", "horizon", positive_int, 128, "unrolled Crank-Nicolson steps Nt (dt = 0.0625)"),
    ),
}


def _mjx_cartpole_options() -> tuple[TaskOption, ...] | None:
    """The options of ``mjx-cartpole``, with the defaults of `MJXCartPole` (None while its module is absent)."""
    try:
        defaults = task_fields("mjx-cartpole")
    except ValueError:
        return None
    return (
        TaskOption("--poles", "n_poles", positive_int, defaults["n_poles"], "number of poles on the cart (1-3)"),
        TaskOption("--horizon", "horizon", positive_int, defaults["horizon"], "unrolled simulator steps"),
        TaskOption("--dt", "dt", positive_float, defaults["dt"], "time step in seconds"),
    )


if (_mjx := _mjx_cartpole_options()) is not None:
    TASK_OPTIONS["mjx-cartpole"] = _mjx

TASK_HELP = {
    "cartpole": "swing-up of 1-4 poles on a cart (method.md §2)",
    "repulsion": "drivers guide evaders to a target by repulsion (method.md §3)",
    "quantum": "drive a particle in a box into an eigenstate (method.md §4)",
    "mjx-cartpole": "cart pole with 1-3 poles simulated by MuJoCo MJX (needs pip install 'stablebptt[mjx]')",
}

# The TASK choice that stands for every ``module.path:Name`` (a task of your own).
USER_TASK = "module.path:Name"
USER_TASK_HELP = ("a Task of your own: Name in module.path is a Task subclass or a zero-argument function "
                  "returning a Task, imported with the current folder first on the Python path; its fields are set "
                  "with --set")
SET_HELP = ("set the task's field NAME to VALUE (JSON where it parses, e.g. 2.5, true, [64,64], else a "
            "string); repeatable; applied after the task's own options")
SET_LIST_HELP = ("values of the task's field NAME for the grid: a JSON list ([1,2]) or comma-separated "
                 "values, each JSON or a string (1,2 or a,b); repeatable; applied after the task's own options")


class TaskChoices(dict):
    """Parsers by TASK name; any name with a ``:`` (``module.path:Name``) gets the parser of `USER_TASK`."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and ":" in key and super().__contains__(USER_TASK))

    def __missing__(self, key: object) -> argparse.ArgumentParser:
        if isinstance(key, str) and ":" in key and super().__contains__(USER_TASK):
            return self[USER_TASK]
        raise KeyError(key)


class TaskSubparsers(argparse._SubParsersAction):
    """The TASK of ``train``, ``compare`` and ``sweep``: a built-in name (its own parser) or any
    ``module.path:Name`` (the parser added as `USER_TASK`); `args.task` is the name as given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = TaskChoices()


def add_task_options(parser: argparse.ArgumentParser, task: str) -> argparse._ArgumentGroup:
    """The options of a task's settings (none for `USER_TASK`), in a group that is returned."""
    group = parser.add_argument_group(f"{task} settings" if task in TASK_OPTIONS else "task settings")
    for opt in TASK_OPTIONS.get(task, ()):
        group.add_argument(opt.flag, dest=f"task_{opt.name}", type=opt.type, default=opt.default,
                           choices=opt.choices, metavar=None if opt.choices else opt.flag[2:].upper(),
                           help=f"{opt.help} (default: {opt.default})")
    return group


def task_settings(args: argparse.Namespace, task: str) -> dict[str, Any]:
    return {opt.name: getattr(args, f"task_{opt.name}") for opt in TASK_OPTIONS[task]}


def json_or_text(text: str) -> Any:
    """`text` parsed as JSON where it parses (``2.5``, ``true``, ``[64, 64]``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME a field of the task (e.g. horizon=50), "
                                         f"got {text!r}")
    return name, value


def setting(text: str) -> tuple[str, Any]:
    """``--set NAME=VALUE``: ``(NAME, VALUE)`` with VALUE parsed by `json_or_text`."""
    name, value = _name_value(text)
    return name, json_or_text(value)


def setting_list(text: str) -> tuple[str, list]:
    """``--set NAME=V1,V2`` of `sweep`: a JSON list gives its items; other JSON is one value; else the text
    split on commas, each item parsed by `json_or_text`."""
    name, value = _name_value(text)
    try:
        parsed = json.loads(value)
    except ValueError:
        items = [json_or_text(t.strip()) for t in value.split(",") if t.strip()]
    else:
        items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... with at least one value, got {text!r}")
    return name, items


def add_set_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, task: str, *, lists: bool = False
                   ) -> None:
    """``--set NAME=VALUE`` (repeatable; in a sweep each VALUE is a list), listing the fields of a built-in task."""
    fields = f" (fields: {', '.join(task_fields(task))})" if task in TASK_OPTIONS else ""
    parser.add_argument("--set", dest="set", action="append", default=[],
                        metavar="NAME=V1,V2" if lists else "NAME=VALUE",
                        type=setting_list if lists else setting, help=(SET_LIST_HELP if lists else SET_HELP) + fields)


def set_settings(task: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``--set`` pairs as task settings (a later one wins), refusing a NAME that is not a field of `task`."""
    settings = dict(pairs)
    if settings:
        fields = task_fields(task)
        unknown = [k for k in settings if k not in fields]
        if unknown:
            raise ValueError(f"--set {unknown[0]}=...: task {task} has no field {unknown[0]!r}; "
                             f"allowed: {', '.join(fields)}")
    return settings
