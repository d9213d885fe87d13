"""Command-line option types and the per-task options."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..core.methods import canonical_method


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

TASK_HELP = {
    "cartpole": "swing-up of 1-4 poles on a cart (method.md §2)",
    "repulsion": "drivers guide evaders to a target by repulsion (method.md §3)",
    "quantum": "drive a particle in a box into an eigenstate (method.md §4)",
}


def add_task_options(parser: argparse.ArgumentParser, task: str) -> None:
    group = parser.add_argument_group(f"{task} settings")
    for opt in TASK_OPTIONS[task]:
        group.add_argument(opt.flag, dest=f"task_{opt.name}", type=opt.type, default=opt.default,
                           choices=opt.choices, metavar=None if opt.choices else opt.flag[2:].upper(), help=f"{opt.help} (default: {opt.default})")


def task_settings(args: argparse.Namespace, task: str) -> dict[str, Any]:
    return {opt.name: getattr(args, f"task_{opt.name}") for opt in TASK_OPTIONS[task]}
