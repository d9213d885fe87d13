"""The `stablebptt` command's entry point, light enough to answer at once.

``--version``, ``--help`` without a command, a missing or unknown command: the top level of the parser
answers these without importing JAX or the rest of the package (a fraction of a second instead of seconds), and
so do the commands that need no JAX (`stablebptt.cli.light`: ``status``, ``cache``); every other command goes on to
`stablebptt.cli.commands`. The top level (`stablebptt.cli.top`) is declared once, and
the full parser (`commands.build_parser`) is built on it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from ..runs.state import Terminated
from .guard import interrupts_deferred, interrupts_raised
from .light import LIGHT_COMMANDS
from .top import COMMAND_HELP, top_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stablebptt ARGS`` (default: the process's arguments); returns the exit code.

    Called with no arguments it is the process's entry point, and a command stopped by Ctrl-C or SIGTERM ends the
    process at once with its exit code (130, 143) once its files are closed and its message printed: the
    interpreter's teardown can crash (SIGSEGV) in XLA's runtime after a compilation was interrupted."""
    try:
        with interrupts_raised():  # from here on: before JAX is imported, a Ctrl-C must not be lost (guard)
            code = _main(argv)
    except KeyboardInterrupt as e:  # before a command's guard was in place (while importing JAX, say)
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"stablebptt: {how} before the command started; nothing was written", file=sys.stderr)
        code = 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    if argv is None and code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
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
    with interrupts_deferred():  # a Ctrl-C while JAX's C++ extension initialises would abort the process
        import jax  # noqa: F401

        from .commands import run

    return run(args)
