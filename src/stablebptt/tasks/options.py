"""The main settings of each built-in task: the fields a run's configuration always records, with their
short names (command-line flags, run-folder names) and what they do. Their defaults are the task's own field
defaults (`registry.task_fields`); the command line builds its options from this table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .registry import task_fields


@dataclass(frozen=True)
class Option:
    """Field `name` of a task, set on the command line by ``--short``.

    `kind` is the form of its values: ``positive_int``, ``positive_float``, ``nonnegative_float`` or
    ``choice`` (one of `choices`)."""

    name: str
    short: str
    kind: str
    help: str
    choices: tuple[str, ...] = ()


TASK_OPTIONS: dict[str, tuple[Option, ...]] = {
    "cartpole": (
        Option("n_poles", "poles", "positive_int", "number of poles on the cart: 1 or more (1-4 in the paper)"),
        Option("loss_mode", "loss", "choice", "loss on the final state or every state", ("final", "continuous")),
        Option("horizon", "horizon", "positive_int", "unrolled steps Nt (dt = 1.0 / Nt)"),
    ),
    "repulsion": (
        Option("n_drivers", "drivers", "positive_int", "number of controlled drivers"),
        Option("n_evaders", "evaders", "positive_int", "number of evaders to guide to the target"),
        Option("rc", "rc", "nonnegative_float", "weight of the control regularisation rc*mean(c^2)"),
        Option("horizon", "horizon", "positive_int", "unrolled steps Nt (dt = 4.0 / Nt)"),
        Option(
            "centre",
            "centre",
            "choice",
            "driver control axis relative to the sum (published quirk) or the mean of the evader positions",
            ("sum", "mean"),
        ),
    ),
    "quantum": (
        Option("target", "target", "positive_int", "target eigenstate, 1..32 (3, 4, 5 in the paper)"),
        Option("horizon", "horizon", "positive_int", "unrolled Crank-Nicolson steps Nt (dt = 0.0625)"),
    ),
    "mjx-cartpole": (
        Option("n_poles", "poles", "positive_int", "number of poles on the cart (1-3)"),
        Option("horizon", "horizon", "positive_int", "unrolled simulator steps"),
        Option("dt", "dt", "positive_float", "time step in seconds"),
    ),
}

TASK_HELP = {
    "cartpole": "swing-up of 1-4 poles on a cart (docs/tasks.md, cartpole)",
    "repulsion": "drivers guide evaders to a target by repulsion (docs/tasks.md, repulsion)",
    "quantum": "drive a particle in a box into an eigenstate (docs/tasks.md, quantum)",
    "mjx-cartpole": "cart pole with 1-3 poles simulated by MuJoCo MJX (needs pip install 'stablebptt[mjx]')",
}


def task_options(task: str) -> tuple[Option, ...]:
    """The main settings of `task` (none for a task of your own, ``module.path:Name``)."""
    return TASK_OPTIONS.get(task, ())


def recorded_settings(task: str) -> dict[str, Any]:
    """The settings every run's configuration records for `task`, with their defaults (the task's field
    defaults): its main settings for a built-in task, none for a task of your own."""
    fields = task_fields(task)  # one line for an unknown task or a spec that does not resolve
    return {o.name: fields[o.name] for o in task_options(task)}
