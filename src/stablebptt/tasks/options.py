"""The main settings of the built-in tasks, read from their classes (`Task.options`, `Task.summary`): the
fields a run's configuration always records, with their short names (command-line flags, run-folder names).
Their defaults are the task's own field defaults (`registry.task_fields`)."""

from __future__ import annotations

from typing import Any

from .base import Option
from .registry import TASKS, task_fields

__all__ = ["SHORT_NAMES", "TASK_HELP", "TASK_OPTIONS", "Option", "recorded_settings", "task_options"]

TASK_OPTIONS: dict[str, tuple[Option, ...]] = {name: cls.options for name, cls in TASKS.items()}
TASK_HELP: dict[str, str] = {name: cls.summary for name, cls in TASKS.items()}
# The short name of every main setting (``n_poles`` -> ``poles``): flags, run-folder names, figure labels.
SHORT_NAMES: dict[str, str] = {o.name: o.short for options in TASK_OPTIONS.values() for o in options}


def task_options(task: str) -> tuple[Option, ...]:
    """The main settings of `task` (none for a task of your own, ``module.path:Name``)."""
    return TASK_OPTIONS.get(task, ())


def recorded_settings(task: str) -> dict[str, Any]:
    """The settings every run's configuration records for `task`, with their defaults (the task's field
    defaults): its main settings for a built-in task, none for a task of your own."""
    fields = task_fields(task)  # one line for an unknown task or a spec that does not resolve
    return {o.name: fields[o.name] for o in task_options(task)}
