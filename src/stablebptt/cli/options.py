"""Command-line options: value types, the options of each task (from `tasks.TASK_OPTIONS`, defaults from the
task's fields), and the training options (from `TrainSettings`, declared once for train, compare and sweep)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import string
from collections.abc import Callable, Sequence
from typing import Any

from ..core import canonical_method, check_remat
from ..core.checks import BadInput
from ..tasks import TASK_HELP, task_fields, task_options
from ..tasks import TASKS as BUILTIN_TASKS
from ..training.settings import DEFAULTS, FIELDS, SHAC_FIELDS, TrainSettings

# ------------------------------------------------------------------------------------------ value types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def comma_list(text: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (empty items refused)."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list without empty items, got {text!r}")
    return items


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
    """A method letter in either case (r, R) or name (regular, Combined), as its paper letter; or
    ``module.path:Name``, a rule of one's own (imported now, so that a wrong one fails before any work)."""
    try:
        return canonical_method(text.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _distinct(values: list[Any], text: str) -> list[Any]:
    """`values` if no value comes twice (a repeated seed or method would train, or draw, the same run twice)."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise argparse.ArgumentTypeError(f"{value} is given twice in {text!r}; give each value once")
        seen.append(value)
    return values


def method_list(text: str) -> list[str]:
    methods = [method(t) for t in text.split(",") if t.strip()]
    if not methods:
        raise argparse.ArgumentTypeError("expected a comma-separated list of methods such as R,M,C,S")
    return _distinct(methods, text)


def optional_positive_int(text: str) -> int | None:
    """``none`` or a positive integer."""
    return None if text.strip().lower() == "none" else positive_int(text)


def remat(text: str) -> int | str | None:
    """``none``, ``sqrt``, ``states`` or a positive segment length K."""
    try:
        return check_remat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def choice(allowed: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(allowed)})")
        return text

    parse.__name__ = "choice"
    return parse


def list_of(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A comma-separated list of values of type `item`."""

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list without empty items, got {text!r}")
        return _distinct([item(t) for t in items], text)

    parse.__name__ = getattr(item, "__name__", "list")
    return parse


KINDS: dict[str, Callable[[str], Any]] = {
    "positive_int": positive_int,
    "positive_float": positive_float,
    "nonnegative_float": nonnegative_float,
}

# ------------------------------------------------------------------------------------------ task options

# The TASK choice that stands for every ``module.path:Name`` (a task of your own).
USER_TASK = "module.path:Name"
USER_TASK_HELP = (
    "a Task of your own: Name in module.path is a Task subclass or a zero-argument function "
    "returning a Task, imported with the current folder first on the Python path; its fields are set "
    "with --set"
)
SET_HELP = (
    "set the task's field NAME to VALUE (JSON where it parses, e.g. 2.5, true, [64,64], else a "
    "string); repeatable; applied after the task's own options"
)
SET_LIST_HELP = (
    "values of the task's field NAME for the grid: a JSON list ([1,2]) or comma-separated "
    "values, each JSON or a string (1,2 or a,b); repeatable; applied after the task's own options"
)
TASKS = tuple(BUILTIN_TASKS)  # the built-in tasks, each with its own parser


RUN_DIR = "RUN_DIR"  # the parser of a run folder given where a TASK may stand (``diagnose RUN_DIR``)


class TaskChoices(dict):
    """Parsers by TASK name; any name with a ``:`` (``module.path:Name``) gets the parser of `USER_TASK`, and
    where a command takes a run folder instead (`RUN_DIR`, as ``diagnose`` does) a path gets its parser."""

    def _route(self, key: object) -> str | None:
        if not isinstance(key, str) or super().__contains__(key):
            return None
        if ":" in key and super().__contains__(USER_TASK):
            return USER_TASK
        if super().__contains__(RUN_DIR):  # a path, or a name that is no task: the run folder's parser says which
            return RUN_DIR
        return None

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or self._route(key) is not None

    def __missing__(self, key: object) -> argparse.ArgumentParser:
        route = self._route(key)
        if route is not None:
            return self[route]
        raise KeyError(key)


class TaskSubparsers(argparse._SubParsersAction):
    """The TASK of ``train``, ``compare`` and ``sweep``: a built-in name (its own parser) or any
    ``module.path:Name`` (the parser added as `USER_TASK`); `args.task` is the name as given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = TaskChoices()


def task_help(task: str) -> str:
    return TASK_HELP.get(task, USER_TASK_HELP)


def add_task_options(parser: argparse.ArgumentParser, task: str, *, lists: bool = False) -> None:
    """The options of a task's main settings (none for `USER_TASK`), defaults from the task's fields, and
    ``--set``; in a sweep (`lists`) each takes a comma-separated list."""
    builtin = task != USER_TASK
    group = parser.add_argument_group(f"{task} settings" if builtin else "task settings")
    defaults = task_fields(task) if builtin else {}
    for o in task_options(task) if builtin else ():
        parse = choice(o.choices) if o.kind == "choice" else KINDS[o.kind]
        allowed = f" ({', '.join(o.choices)})" if o.choices else ""
        group.add_argument(
            f"--{o.short}",
            dest=f"task_{o.name}",
            type=list_of(parse) if lists else parse,
            default=None,
            metavar="LIST" if lists else o.short.upper(),
            help=f"{o.help}{allowed} (default: {defaults[o.name]})",
        )
    fields = f" (fields: {', '.join(defaults)})" if builtin else ""
    group.add_argument(
        "--set",
        dest="set",
        action="append",
        default=[],
        metavar="NAME=V1,V2" if lists else "NAME=VALUE",
        type=setting_list if lists else setting,
        help=(SET_LIST_HELP if lists else SET_HELP) + fields,
    )


def task_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The task's settings given: its own options (a built-in task; lists in a sweep), then ``--set``. A name
    that is not a field of the task is refused."""
    given = {o.name: getattr(args, f"task_{o.name}") for o in task_options(args.task)}
    settings = {k: v for k, v in given.items() if v is not None}
    pairs = dict(args.set)
    if pairs:
        fields = task_fields(args.task)
        unknown = [k for k in pairs if k not in fields]
        if unknown:
            raise BadInput(
                f"--set {unknown[0]}=...: task {args.task} has no field {unknown[0]!r}; allowed: {', '.join(fields)}"
            )
    return {**settings, **pairs}


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
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME a field of the task (e.g. horizon=50), got {text!r}"
        )
    return name, value


def setting(text: str) -> tuple[str, Any]:
    """``--set NAME=VALUE``: ``(NAME, VALUE)`` with VALUE parsed by `json_or_text`."""
    name, value = _name_value(text)
    return name, json_or_text(value)


def setting_list(text: str) -> tuple[str, list[Any]]:
    """``--set NAME=V1,V2`` of `sweep`: a JSON list gives its items; other JSON is one value; else the text
    split on commas, each item parsed by `json_or_text`."""
    name, value = _name_value(text)
    try:
        parsed = json.loads(value)
    except ValueError:
        parts = [t.strip() for t in value.split(",")]
        if len(parts) > 1 and not all(parts):
            raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... without empty values, got {text!r}") from None
        items = [json_or_text(t) for t in parts if t]
    else:
        items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... with at least one value, got {text!r}")
    return name, items


# -------------------------------------------------------------------------------------- training options


@dataclasses.dataclass(frozen=True)
class TrainOption:
    """Training setting `name` (a field of `TrainSettings`) on the command line; the default is the field's."""

    name: str
    flags: tuple[str, ...]
    type: Callable[[str], Any] | None
    help: str
    metavar: str | None = None


# A parser for each kind of training setting (`training.settings.KINDS`; a tuple of allowed values is a choice).
KIND_PARSERS: dict[str, Callable[[str], Any] | None] = {
    "method": method,
    "positive_int": positive_int,
    "nonnegative_int": nonnegative_int,
    "positive_float": positive_float,
    "nonnegative_float": nonnegative_float,
    "optional_positive_int": optional_positive_int,
    "remat": remat,
    "switch": None,
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _train_option(field: dataclasses.Field[Any]) -> TrainOption:
    """The option of a `TrainSettings` field, from what the field declares (`training.settings._setting`): its
    kind's parser (a tuple of values: a choice), its help with ``$name`` shown as that setting's flag, and its
    placeholder. Its default is the field's."""
    kind, text = field.metadata["kind"], field.metadata["help"]
    parser = choice(kind) if isinstance(kind, tuple) else KIND_PARSERS[kind]
    shown = string.Template(text).safe_substitute({f.name: _flag(f.name) for f in dataclasses.fields(TrainSettings)})
    return TrainOption(field.name, (_flag(field.name),), parser, shown, field.metadata["metavar"])


TRAIN_OPTIONS = tuple(_train_option(f) for f in dataclasses.fields(TrainSettings))
assert {o.name for o in TRAIN_OPTIONS} == set(FIELDS), "every training setting has a command-line option"
LIST_FLAGS = {"method": ("--methods", "--method"), "seed": ("--seeds", "--seed")}


def add_training_options(
    parser: argparse.ArgumentParser,
    *,
    lists: bool = False,
    epochs: int | None = None,
    method: bool = True,
    seeds: Sequence[int] | None = None,
) -> None:
    """The training options (every field of `TrainSettings`), then ``--checkpoint-every``, ``--snapshot-every``,
    ``--x64``; in a sweep (`lists`) each training option takes a comma-separated list. `epochs`: another default for
    ``--epochs``; `method=False` leaves ``--method`` out and adds ``--seeds`` (compare has ``--methods``), whose
    default is `seeds`."""
    g = parser.add_argument_group("training (comma-separated lists)" if lists else "training")
    for o in TRAIN_OPTIONS:
        if o.name == "method" and not method:
            continue
        default = epochs if o.name == "epochs" and epochs is not None else getattr(DEFAULTS, o.name)
        flags = LIST_FLAGS.get(o.name, o.flags) if lists else o.flags
        if o.type is None:  # a switch
            g.add_argument(
                *flags, dest=o.name, action="store_const", const=[True] if lists else True, default=None, help=o.help
            )
            continue
        shown = f"default: {_shown(default)}"
        if o.name == "seed" and not lists and not method:
            shown = "train with this one seed only; default: --seeds"
        g.add_argument(
            *flags,
            dest=o.name,
            type=list_of(o.type) if lists else o.type,
            default=None,
            metavar="LIST" if lists else o.metavar,
            help=f"{o.help} ({shown})",
        )
    # removed in 0.4 (deprecated since 0.2); kept as a name so that it is not read as --checkpoint-every
    g.add_argument("--checkpoint", dest="removed_checkpoint", default=None, help=argparse.SUPPRESS)
    if not lists and not method:  # compare: several seeds
        g.add_argument(
            "--seeds",
            type=list_of(nonnegative_int),
            default=None,
            metavar="LIST",
            help="train every method with each of these seeds: medians and min-max bands "
            f"(default: {','.join(map(str, seeds)) if seeds else _shown(DEFAULTS.seed)})",
        )
    g.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=1,
        help="write the run's checkpoint every K epochs (default: 1)",
    )
    g.add_argument(
        "--snapshot-every",
        type=positive_int,
        default=None,
        metavar="K",
        help="also keep the controller's parameters every K epochs, in RUN/snapshots/ "
        "(`stablebptt diagnose RUN` measures each; default: none)",
    )
    g.add_argument("--x64", action="store_true", help="compute in float64")


def _shown(default: Any) -> str:
    return "none" if default is None else str(default)


def train_settings(args: argparse.Namespace, epochs: int | None = None) -> dict[str, Any]:
    """The training settings given on the command line (lists in a sweep), by `TrainSettings` field name."""
    settings = {o.name: getattr(args, o.name, None) for o in TRAIN_OPTIONS}
    settings = {k: v for k, v in settings.items() if v is not None}
    if epochs is not None:
        settings.setdefault("epochs", epochs)
    if getattr(args, "removed_checkpoint", None) is not None:
        raise BadInput("--checkpoint was removed (deprecated since 0.2); use --remat, which takes the same values")
    protocols = settings.get("protocol", DEFAULTS.protocol)
    given = [name for name in SHAC_FIELDS if name in settings]
    if given and "shac" not in (protocols if isinstance(protocols, list) else [protocols]):
        # TrainSettings refuses them only where they differ from their defaults: it cannot tell a value given
        whose = "SHAC protocol" if given[0] == "episode_restart" else "SHAC protocol's critic"
        raise BadInput(f"{_flag(given[0])} is a setting of the {whose}; give --protocol shac or leave it out")
    seeds = getattr(args, "seeds", None) if not isinstance(getattr(args, "seed", None), list) else None
    if seeds is not None:  # compare --seeds LIST
        if "seed" in settings:
            raise BadInput("give either --seed S or --seeds S1,S2,..., not both")
        settings["seed"] = seeds
    return settings
