"""Tasks by name: the built-in ones, families such as ``brax:NAME``, and ``module.path:Name`` for a task of your own.

A task spec is a built-in name (``cartpole``), ``prefix:NAME`` of a family in `FAMILIES` (``brax:hopper``: the
Brax environment hopper as a task), or ``module.path:Name``, where ``Name`` is a `Task`
subclass (built as ``Name(**settings)``), a zero-argument callable returning a Task, or a Task (settings are
applied to what it gives with `dataclasses.replace`, which re-runs the task's own checks). The module is
imported with the current directory first on the Python path, then, if it is not found there, from `path`
(the folder it was imported from when the run was made, see `module_root`). Every problem is one line of
`BadInput` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.checks import Action, BadArgument, BadInput, BadType, described, first_line
from ..core.imports import import_module
from .base import Task
from .burgers import Burgers  # PhiFlow itself is imported when a step is traced
from .cartpole import CartPole
from .mjx_cartpole import MJXCartPole  # MuJoCo itself is imported when the task is built
from .quantum import Quantum
from .repulsion import Repulsion
from .smoke import Smoke  # PhiFlow too

# Built-in tasks by name. Each describes itself (`Task.summary`, `options`, `complexity`, `draw`): a new built-in
# task is its module and one line here. What the paper published of a task (its grid, its figures' y-range) is
# the experiments' (`experiments.grid.PAPER`).
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (CartPole, Repulsion, Quantum, MJXCartPole, Burgers, Smoke)}
# Families of tasks named ``prefix:NAME``: the class (``"module:Name"``, imported on first use) and its field that
# NAME sets (``brax:hopper`` is ``BraxTask(env="hopper")``); that field is not a setting of its own.
FAMILIES: dict[str, tuple[str, str]] = {
    "brax": ("stablebptt.integrations.brax:BraxTask", "env"),
}
ALLOWED = (
    "a built-in task ({names}), {families} or module.path:Name (a Task subclass or a zero-argument "
    "callable returning a Task)"
)
MISSING = dataclasses.MISSING
_IDENTIFIERS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

Factory = Callable[..., Task]


class UnknownField(BadInput):
    """A setting that is not a field of the task."""


def is_builtin(spec: str) -> bool:
    """Whether `spec` is the name of a built-in task (``cartpole``, ...)."""
    return spec in TASKS


def _allowed() -> str:
    return ALLOWED.format(names=", ".join(TASKS), families=", ".join(f"{p}:NAME" for p in FAMILIES))


def family(spec: Any) -> tuple[str, str] | None:
    """``(prefix, NAME)`` for a spec ``prefix:NAME`` of a family in `FAMILIES` (``brax:hopper``), else None."""
    if not isinstance(spec, str):
        return None
    prefix, sep, name = spec.partition(":")
    return (prefix, name) if sep and prefix in FAMILIES else None


def _import_builtin(spec: str, target: str) -> type[Task]:
    module, attribute = split_spec(target)
    try:
        return getattr(importlib.import_module(module), attribute)
    except Exception as e:  # noqa: BLE001 - an optional task whose module is missing or broken
        raise BadInput(f"task {spec} is not available ({target}): {described(e)}") from None


def split_spec(spec: str) -> tuple[str, str]:
    """``"module.path:Name"`` -> ``("module.path", "Name")``; a one-line `BadInput` for a malformed spec."""
    module, sep, attribute = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not _IDENTIFIERS.fullmatch(module) or not _IDENTIFIERS.fullmatch(attribute):
        raise BadInput(
            f"task {spec!r} is not a task spec; allowed: {_allowed()}, e.g. mytasks:Pendulum "
            "for class Pendulum in mytasks.py"
        )
    return module, attribute


def task_label(spec: str) -> str:
    """A short name for folders and titles: the built-in name, ``prefix-NAME`` for ``prefix:NAME`` of a family,
    or the ``Name`` of ``module.path:Name``."""
    if parts := family(spec):
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-.") or "task"
    name = spec.rpartition(":")[2].rpartition(".")[2] if ":" in spec else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "task"


def resolve(spec: str, path: str | None = None) -> type[Task] | Factory | Task:
    """What `spec` names: a `Task` subclass, a zero-argument callable returning a Task, or a Task.

    Raises:
        BadInput: an unknown built-in name, a malformed spec, a module that is missing or does not import,
            a missing name, or an object that is none of these.
    """
    if isinstance(spec, str) and spec in TASKS:
        return TASKS[spec]
    if parts := family(spec):
        prefix, name = parts
        if not name:
            raise BadInput(
                f"task {spec!r} names no {prefix} environment; write {prefix}:NAME, e.g. "
                f"{prefix}:inverted_double_pendulum"
            )
        return _import_builtin(spec, FAMILIES[prefix][0])
    if not isinstance(spec, str) or ":" not in spec:
        raise BadInput(f"unknown task {spec!r}; allowed: {_allowed()}")
    module_name, attribute = split_spec(spec)
    obj: Any = import_module(module_name, path)
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(obj, part):
            where = f"module {module_name!r}" if i == 0 else f"{module_name}:{'.'.join(attribute.split('.')[:i])}"
            found = (
                [
                    n
                    for n, v in vars(obj).items()
                    if isinstance(v, type) and issubclass(v, Task) and v.__module__ == module_name
                ]
                if i == 0
                else []
            )
            hint = f"; Task subclasses there: {', '.join(found)}" if found else ""
            raise BadInput(f"{where} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if isinstance(obj, type) and issubclass(obj, Task):
        return _concrete(obj, spec)
    if isinstance(obj, Task):
        return obj
    if isinstance(obj, type) or not callable(obj):
        raise BadType(
            f"{spec} is {_kind(obj)}, not a Task; allowed: a subclass of stablebptt.tasks.Task or a "
            "zero-argument callable returning a Task"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise BadInput(
            f"{spec} needs arguments; allowed: a Task subclass or a callable that takes none "
            "(settings are applied to the Task it returns)"
        ) from None
    except ValueError:  # no signature (a builtin): calling it will tell
        pass
    return obj


def _concrete(cls: type[Task], spec: str) -> type[Task]:
    """`cls` if it can be built: it defines every method of `Task` and its class variable `name`."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise BadInput(f"{spec} is abstract: it does not define {', '.join(missing)}; define them on the class")
    if not isinstance(cls.__dict__.get("name", getattr(cls, "name", None)), str):
        raise BadInput(
            f"{spec} does not set its name; add a class variable such as "
            f"name: ClassVar[str] = {task_label(spec).lower()!r}"
        )
    return cls


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _class_fields(cls: type) -> dict[str, Any]:
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not MISSING:
            fields[f.name] = f.default
        elif f.default_factory is not MISSING:
            fields[f.name] = f.default_factory()
        else:
            fields[f.name] = MISSING
    return fields


def _call(factory: Factory, spec: str) -> Task:
    try:
        task = factory()
    except Exception as e:  # noqa: BLE001 - the user's code: its one-line reason
        raise BadInput(f"{spec}() raised {described(e)}") from None
    if not isinstance(task, Task):
        raise BadType(
            f"{spec}() returned {_kind(task)}, not a Task; allowed: a callable returning an instance "
            "of a stablebptt.tasks.Task subclass"
        )
    return task


def _fields(target: type[Task] | Factory | Task, spec: str) -> tuple[dict[str, Any], type[Task] | Task]:
    """The settable fields of what `spec` resolved to, with their defaults (`MISSING` where a field has none),
    in declaration order; and the Task a callable gave (the class itself for a class, which is not built)."""
    if isinstance(target, type):
        fields = _class_fields(target)
        if parts := family(spec):
            fields.pop(FAMILIES[parts[0]][1], None)  # set by the spec's NAME
        return fields, target
    task = target if isinstance(target, Task) else _call(target, spec)
    return {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.init}, task


def task_fields(spec: str, path: str | None = None) -> dict[str, Any]:
    """The settable fields of the task `spec` and their defaults (`MISSING` where a field has none), in
    declaration order. A class is not built; a callable is called (its Task's values are the defaults)."""
    return _fields(resolve(spec, path), spec)[0]


def load_task(spec: str, settings: Mapping[str, Any] | None = None, *, path: str | None = None) -> Task:
    """Build the task `spec` with `settings` (see the module docstring); `path` is where to look for the
    module of ``module.path:Name`` if it is not on the Python path.

    Raises:
        BadInput: one line: everything `resolve` refuses, an unknown field, a field without a default left
            unset, or a value the task's own checks refuse.
    """
    settings = dict(settings or {})
    fields, task = _fields(resolve(spec, path), spec)
    unknown = [k for k in settings if k not in fields]
    if unknown:
        raise UnknownField(
            f"task {spec} has no field {', '.join(map(repr, unknown))}; its fields: {', '.join(fields) or 'none'}"
        )
    unset = [k for k, v in fields.items() if v is MISSING and k not in settings]
    if unset:
        raise BadInput(f"task {spec} needs a value for {', '.join(unset)} (no default); give it as a setting")
    cls = task if isinstance(task, type) else type(task)
    given = dict(settings)
    if parts := family(spec):
        prefix, name = parts
        settings = {FAMILIES[prefix][1]: name, **settings}
    try:
        built = task(**settings) if isinstance(task, type) else dataclasses.replace(task, **settings)
    except Exception as e:  # noqa: BLE001 - the user's code: its one-line reason
        if (is_builtin(spec) or family(spec)) and isinstance(e, BadInput):
            # the built-in tasks' own messages name the setting and what is allowed
            raise _with_sweep_hint(first_line(e), cls, given, spec) from None
        text = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        raise _with_sweep_hint(
            f"task {spec} cannot be built{f' with {text}' if text else ''}: {described(e)}", cls, given, spec
        ) from None
    check_types(cls, given, spec)  # what the task's own checks let through
    return built


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}


def _expected(annotation: Any, value: Any) -> str | None:
    """What `annotation` takes, in words, if `value` is not of it; None if it is (or the annotation is not one
    of the plain kinds checked: bool, int, float, str, tuples and lists of them, unions, literals)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _KINDS:
        if annotation is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif annotation is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, annotation)
        return None if ok else _KINDS[annotation]
    if origin in (typing.Union, types.UnionType):
        arms = [_expected(a, value) for a in args]
        return None if any(w is None for w in arms) else " or ".join(w for w in arms if w)
    if origin is typing.Literal:
        return None if value in args else "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list) and args and (len(args) == 1 or args[-1] is Ellipsis):
        if not isinstance(value, list | tuple):
            return f"a list ({_KINDS.get(args[0], 'items')} each)"
        item = next((w for w in (_expected(args[0], v) for v in value) if w), None)
        return None if item is None else f"a list of which every item is {item}"
    return None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - annotations that do not resolve are not checked
        return {}


def check_types(cls: type, settings: Mapping[str, Any], spec: str) -> None:
    """Refuse a setting whose value is not of the type its field declares (`_expected`), when the task's own
    checks let it through: e.g. the text ``"0.5,1.0"`` for a float field (sweep syntax outside a sweep) is said
    to be so when the task is built, not blamed later on the loss that receives it.

    Raises:
        BadInput: naming the field, what it takes and what it got.
    """
    hints = _hints(cls)
    for name, value in settings.items():
        wrong = _expected(hints[name], value) if name in hints else None
        if wrong is not None:
            raise _with_sweep_hint(f"task {spec}: {name} takes {wrong}, got {value!r}", cls, {name: value}, spec)


def _parsed(text: str) -> Any:
    """`text` as JSON where it parses (``0.5`` is a number), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _with_sweep_hint(message: str, cls: type, settings: Mapping[str, Any], spec: str) -> BadInput:
    """`message` as a `BadInput`, with ``; several values are for a sweep: ...`` when a setting is
    comma-separated text for a field that takes no text (sweep syntax given outside a sweep)."""
    hints = _hints(cls)
    for name, value in settings.items():
        if isinstance(value, str) and "," in value and name in hints and _expected(hints[name], value) is not None:
            values = [_parsed(v.strip()) for v in value.split(",")]
            sweep = Action(
                "sweep",
                f"stablebptt.experiments.grid.expand({spec!r}, {{{name!r}: {values!r}}})",
                (spec,),
                {"set": f"{name}={value}"},
            )
            return BadArgument(message.replace("$", "$$") + "; several values are for a sweep: $sweep", sweep=sweep)
    return BadInput(message)


def module_root(spec: str) -> str | None:
    """The folder on the Python path that holds the module of ``module.path:Name`` (None for a built-in task
    or a module without a file), as an absolute path."""
    if is_builtin(spec) or family(spec):
        return None
    module_name, _ = split_spec(spec)
    module = sys.modules.get(module_name) or import_module(module_name)
    origin = getattr(module, "__file__", None)
    if not origin:
        return None
    root = Path(origin).resolve().parent
    if Path(origin).name == "__init__.py":
        root = root.parent
    for _ in range(module_name.count(".")):
        root = root.parent
    return str(root)


def make_task(name: str, **settings: Any) -> Task:
    """Build the task `name` (a built-in name or ``module.path:Name``) with the given settings (published
    defaults otherwise)."""
    return load_task(name, settings)
