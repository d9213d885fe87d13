"""Control tasks. Each implements `Task`; `make_task(spec, **settings)` builds a built-in task by name or
your own as ``module.path:Name`` (see `registry`)."""

from __future__ import annotations

from .base import EpisodeEnds, Task
from .burgers import Burgers
from .cartpole import CartPole
from .options import SHORT_NAMES, TASK_HELP, TASK_OPTIONS, Option, recorded_settings, task_options
from .quantum import Quantum
from .registry import TASKS, is_builtin, load_task, make_task, module_root, task_fields, task_label
from .repulsion import Repulsion
from .smoke import Smoke

__all__ = [
    "SHORT_NAMES",
    "TASKS",
    "TASK_HELP",
    "TASK_OPTIONS",
    "Burgers",
    "CartPole",
    "EpisodeEnds",
    "Option",
    "Quantum",
    "Repulsion",
    "Smoke",
    "Task",
    "is_builtin",
    "load_task",
    "make_task",
    "module_root",
    "recorded_settings",
    "task_fields",
    "task_label",
    "task_options",
]
