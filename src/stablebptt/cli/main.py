"""The `stablebptt` command's entry point, light enough to answer at once.

``--version``, ``--help`` without a command, a missing or unknown command: the top level of the parser
answers these without importing JAX or the rest of the package (a fraction of a second instead of seconds), and
so do the commands that only read files (`stablebptt.cli.light`: ``status``); every other command goes on to
`stablebptt.cli.commands`. The top level (`stablebptt.cli.top`) is declared once, and
the full parser (`commands.build_parser`) is built on it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .light import LIGHT_COMMANDS
from .top import COMMAND_HELP, top_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stablebptt ARGS`` (default: the process's arguments); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in COMMAND_HELP:  # the top level alone answers (it exits: version, help or an error)
        parser, commands = top_parser()
        for name, text in COMMAND_HELP.items():
            commands.add_parser(name, help=text)
        parser.parse_args(args)
    if command in LIGHT_COMMANDS:
        from .guard import guarded, parse

        add_parser, handler = LIGHT_COMMANDS[command]
        parser, commands = top_parser()
        add_parser(commands)
        return guarded(handler, parse(parser, args))
    from .commands import run

    return run(args)
