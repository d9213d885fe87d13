"""The top level of the `stablebptt` parser, light (no JAX): its options, the commands' one-line help
(`COMMAND_HELP`) and the parser class; `stablebptt.cli.main` answers from it alone where it can, and
`stablebptt.cli.commands` builds the full parser on it."""

from __future__ import annotations

import argparse
from typing import NoReturn

from .. import __version__

EPILOG = "Methods: R regular BPTT, M modified (physics only), S stopped, N network only, C combined."
# The commands in the order of `stablebptt --help`, with their one-line help.
COMMAND_HELP = {
    "train": "train one controller",
    "compare": "train R, M, C and S side by side",
    "resume": "continue a run from its checkpoint (after a kill or crash)",
    "sweep": "train a grid of runs (comma-separated values), resumable and parallel",
    "plot": "figure and summary tables of a sweep (finished or running)",
    "status": "the state of every run in a run, sweep or comparison folder",
    "reproduce": "the paper's grids at full scale, trained across stops of work and kept as compact records",
    "toy": "draw the toy examples (recurrent toy problem, rotation) as PNGs",
    "animate": "write a GIF of a trained controller on a few test states",
    "diagnose": "measure where a task's gradients explode or vanish, before training, and whether C may help",
    "cache": "the compilation cache's folder and size; --clear empties it",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors ``stablebptt COMMAND: error: ...`` (exit code 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{' '.join(self.prog.split()[:2])}: error: {message}\n")


def top_parser() -> tuple[Parser, argparse._SubParsersAction]:
    """The top level of the parser: its options and the (still empty) action of the commands."""
    parser = Parser(prog="stablebptt", description="Stabilised backpropagation through time.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"stablebptt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    return parser, commands
