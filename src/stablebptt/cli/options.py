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
}

TASK_HELP = {"cartpole": "swing-up of 1-4 poles on a cart (method.md §2)"}


def add_task_options(parser: argparse.ArgumentParser, task: str) -> None:
    group = parser.add_argument_group(f"{task} settings")
    for opt in TASK_OPTIONS[task]:
        group.add_argument(opt.flag, dest=f"task_{opt.name}", type=opt.type, default=opt.default,
                           choices=opt.choices, help=f"{opt.help} (default: {opt.default})")


def task_settings(args: argparse.Namespace, task: str) -> dict[str, Any]:
    return {opt.name: getattr(args, f"task_{opt.name}") for opt in TASK_OPTIONS[task]}
