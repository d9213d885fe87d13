"""Commands that only read files, answered without importing JAX (`stablebptt.cli.main` runs them directly):
their parsers and what they do. ``status``: the state of the runs in a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .top import COMMAND_HELP


def add_debug(p: argparse.ArgumentParser) -> None:
    """`--debug` also after the command (it is a global option before it)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def add_status_parser(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status",
        help=COMMAND_HELP["status"],
        description="A table of the runs in DIR by state (complete, running, interrupted, "
        "diverged, failed, unreadable, pending) with epochs done and the last "
        "test loss. Exit code 0 whatever the states; 2 if DIR holds no run.",
    )
    status.add_argument("dir", type=Path, metavar="DIR", help="a run folder (train --out) or a sweep folder")
    add_debug(status)


def cmd_status(args: argparse.Namespace) -> int:
    from ..experiments.report import count_line, load_folder, status_rows
    from .progress import print_status

    runs = load_folder(args.dir)
    print_status(status_rows(runs), title=f"{args.dir}: {count_line(runs)}")
    return 0


LIGHT_COMMANDS = {"status": (add_status_parser, cmd_status)}
