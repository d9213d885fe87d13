"""Control tasks. Each implements `Task`; `make_task(spec, **settings)` builds a built-in task by name or
your own as ``module.path:Name`` (see `registry`)."""

from __future__ import annotations

from .base import Task
from .cartpole import CartPole
from .quantum import Quantum
from .registry import TASKS, is_builtin, load_task, make_task, module_root, task_fields, task_label
from .repulsion import Repulsion

__all__ = ["CartPole", "Quantum", "Repulsion", "TASKS", "Task", "is_builtin", "load_task", "make_task", "module_root",
           "task_fields", "task_label"]
