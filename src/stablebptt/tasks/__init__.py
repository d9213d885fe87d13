"""Control tasks. Each implements `Task`; `make_task(name, **settings)` builds one by name."""

from __future__ import annotations

from typing import Any

from .base import Task
from .cartpole import CartPole
from .quantum import Quantum
from .repulsion import Repulsion

TASKS: dict[str, type[Task]] = {"cartpole": CartPole, "repulsion": Repulsion, "quantum": Quantum}


def make_task(name: str, **settings: Any) -> Task:
    """Build the task registered as `name` with the given settings (published defaults otherwise)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name](**settings)


__all__ = ["CartPole", "Quantum", "Repulsion", "TASKS", "Task", "make_task"]
