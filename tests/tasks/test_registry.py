"""Task specs: built-in names and ``module.path:Name``; every way a spec can be wrong gives one line."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from stablebptt.tasks import TASKS, CartPole, load_task, make_task, module_root, task_fields, task_label
from stablebptt.tasks.registry import MISSING

MODULE = """
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from stablebptt.tasks import Task


class Line(Task):
    name: ClassVar[str] = "line"
    horizon: int = eqx.field(static=True, default=5)
    gain: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if not self.gain > 0:
            raise ValueError(f"gain must be positive, got {self.gain!r}")

    def step(self, x, c):
        return x + self.gain * c

    def loss(self, states, controls):
        return jnp.mean(states[-1] ** 2)

    def sample(self, key, n):
        return jnp.ones((n, 1))

    def init_controller(self, key):
        return jnp.zeros(())

    def controller(self, params, x):
        return params * x


class Needs(Line):
    width: int = eqx.field(static=True, kw_only=True)


class Unfinished(Task):
    name: ClassVar[str] = "unfinished"
    horizon: int = 3


def strong():
    return Line(gain=2.0)


def crashes():
    raise RuntimeError("no luck\\nsecond line")


def takes(x):
    return Line()


def gives_number():
    return 1.5


VALUE = "text"
"""


@pytest.fixture
def module(tmp_path, monkeypatch):
    """A task module (fresh name) in a package folder ``pkg_x/`` and beside it, in the current directory."""
    name = f"regmod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    (tmp_path / f"pkg_{name}").mkdir()
    (tmp_path / f"pkg_{name}" / "__init__.py").write_text("")
    (tmp_path / f"pkg_{name}" / "tasks.py").write_text(MODULE)
    (tmp_path / f"raises_{name}.py").write_text("raise ImportError('needs a GPU\\nmore')\n")
    (tmp_path / f"dep_{name}.py").write_text("import not_installed_anywhere_xyz\n")
    (tmp_path / f"syntax_{name}.py").write_text("def f(:\n")
    monkeypatch.chdir(tmp_path)
    yield name
    for key in [k for k in sys.modules if name in k]:
        sys.modules.pop(key)


def test_a_class_is_built_with_its_settings_and_checks(module, tmp_path):
    task = make_task(f"{module}:Line", gain=0.25)
    assert type(task).__name__ == "Line" and task.gain == 0.25 and task.name == "line"
    assert task_fields(f"{module}:Line") == {"horizon": 5, "gain": 0.5}
    assert task_fields(f"{module}:Needs")["width"] is MISSING
    assert make_task(f"pkg_{module}.tasks:Line").horizon == 5
    assert module_root(f"pkg_{module}.tasks:Line") == module_root(f"{module}:Line") == str(tmp_path)
    assert module_root("cartpole") is None
    assert task_label(f"pkg_{module}.tasks:Line") == "Line" and task_label("cartpole") == "cartpole"


def test_a_factory_is_called_and_settings_replace_its_fields(module):
    assert task_fields(f"{module}:strong") == {"horizon": 5, "gain": 2.0}
    task = make_task(f"{module}:strong", horizon=7)
    assert (task.horizon, task.gain) == (7, 2.0)
    with pytest.raises(ValueError, match="gain must be positive, got -1"):  # replace re-runs __check_init__
        make_task(f"{module}:strong", gain=-1)


def test_builtin_tasks_keep_their_messages():
    assert make_task("cartpole", n_poles=1) == CartPole(n_poles=1)
    with pytest.raises(ValueError, match="^n_poles must be a positive integer, got 0$"):
        make_task("cartpole", n_poles=0)
    with pytest.raises(ValueError, match="task cartpole has no field 'mass'; its fields: horizon, n_poles"):
        make_task("cartpole", mass=1.0)
    with pytest.raises(ValueError, match="unknown task 'pendulum'; allowed: a built-in task .*cartpole"):
        make_task("pendulum")


def test_the_module_is_found_through_its_recorded_folder(module, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ValueError, match=f"module '{module}' not found"):
        make_task(f"{module}:Line")
    assert load_task(f"{module}:Line", {"gain": 1.0}, path=str(tmp_path)).gain == 1.0
    assert str(tmp_path) not in sys.path  # the folder was on the path for the import only


@pytest.mark.parametrize(
    "spec, settings, message",
    [
        ("{m}:", {}, "task '{m}:' is not a task spec; allowed: a built-in task"),
        (":Line", {}, "task ':Line' is not a task spec"),
        ("{m}:Line:x", {}, "is not a task spec"),
        ("my module:Line", {}, "is not a task spec"),
        ("nowhere_{m}:Line", {}, "module 'nowhere_{m}' not found in the current directory"),
        ("raises_{m}:Line", {}, "module 'raises_{m}' does not import: ImportError: needs a GPU$"),
        ("dep_{m}:Line", {}, "does not import: ModuleNotFoundError: No module named 'not_installed_anywhere_xyz'"),
        ("syntax_{m}:Line", {}, "module 'syntax_{m}' does not import: SyntaxError"),
        ("{m}:Lime", {}, "module '{m}' has no attribute 'Lime'; Task subclasses there: Line, Needs, Unfinished"),
        ("{m}:Line.missing", {}, "{m}:Line has no attribute 'missing'"),
        ("{m}:VALUE", {}, "{m}:VALUE is a str, not a Task"),
        ("{m}:eqx", {}, "{m}:eqx is a module, not a Task"),
        ("{m}:Unfinished", {}, "{m}:Unfinished is abstract: it does not define controller, init_controller, loss"),
        ("{m}:takes", {}, "{m}:takes needs arguments"),
        ("{m}:crashes", {}, r"{m}:crashes\(\) raised RuntimeError: no luck$"),
        ("{m}:gives_number", {}, r"{m}:gives_number\(\) returned a float, not a Task"),
        ("{m}:Line", {"mass": 1}, "task {m}:Line has no field 'mass'; its fields: horizon, gain"),
        ("{m}:strong", {"mass": 1}, "task {m}:strong has no field 'mass'; its fields: horizon, gain"),
        ("{m}:Needs", {}, "task {m}:Needs needs a value for width"),
        (
            "{m}:Line",
            {"gain": 0},
            "task {m}:Line cannot be built with gain=0: ValueError: gain must be positive, got 0",
        ),
    ],
)
def test_every_bad_spec_is_one_line(module, spec, settings, message):
    with pytest.raises(ValueError, match=message.format(m=module)) as e:
        load_task(spec.format(m=module), settings)
    assert "\n" not in str(e.value)


def test_optional_builtin_is_lazy():
    """`mjx-cartpole` imports MuJoCo only when the task is built: importing the tasks imports no MuJoCo."""
    assert TASKS["mjx-cartpole"].options and TASKS["mjx-cartpole"].can_draw()
    code = "import sys, stablebptt.tasks; assert 'mujoco' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_builtin_task_describes_itself_and_the_tables_follow(name):
    """A built-in task's description lives on its class; the command line, the grids and the report read it."""
    from stablebptt.cli.commands import build_parser
    from stablebptt.cli.options import task_settings
    from stablebptt.experiments.grid import COMPLEXITY, PAPER, PAPER_GRIDS
    from stablebptt.tasks import SHORT_NAMES, TASK_HELP, TASK_OPTIONS, task_fields

    cls = TASKS[name]
    fields = task_fields(name)
    assert cls.name == name and cls.summary and TASK_HELP[name] == cls.summary
    assert TASK_OPTIONS[name] == cls.options and all(o.name in fields for o in cls.options)
    assert all(SHORT_NAMES[o.name] == o.short for o in cls.options)
    assert cls.complexity in fields and COMPLEXITY[name] == cls.complexity
    if name in PAPER:  # what the paper published of it: its complexity's levels, settings of the task
        assert set(PAPER[name].grid) == {cls.complexity} <= set(fields)
        assert PAPER_GRIDS[name][cls.complexity] == list(PAPER[name].grid[cls.complexity])
    assert cls.can_draw()
    args = build_parser().parse_args(
        ["train", name, *(a for o in cls.options if o.kind != "choice" for a in (f"--{o.short}", "2"))]
    )
    settings = task_settings(args)  # each option reaches its field
    assert all(settings[o.name] == 2 for o in cls.options if o.kind != "choice")


def test_an_option_of_an_unknown_kind_fails_when_it_is_declared():
    from stablebptt.tasks import Option

    with pytest.raises(ValueError, match="Option x: kind must be one of positive_int"):
        Option("x", "x", "int", "help")
    with pytest.raises(ValueError, match="Option y: choices are given exactly when kind is 'choice'"):
        Option("y", "y", "choice", "help")
