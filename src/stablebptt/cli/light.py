"""Commands that only read files, answered without importing JAX (`stablebptt.cli.main` runs them directly):
their parsers and what they do. ``status``: the state of the runs in a folder; ``cache``: the compilation cache's
folder and size, and clearing it (`runs.cache`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .top import COMMAND_HELP


def add_debug(p: argparse.ArgumentParser) -> None:
    """`--debug` also after the command (it is a global option before it)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def cache_setting(text: str) -> str:
    """The value of ``--cache``: a folder or ``off``."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder or off, got an empty value")
    return text


def add_cache(p: argparse.ArgumentParser) -> None:
    """`--cache DIR|off`, on the commands that compile (`commands.COMPILING`)."""
    p.add_argument(
        "--cache",
        type=cache_setting,
        default=None,
        metavar="DIR|off",
        help="persistent compilation cache folder, or off (default: $STABLEBPTT_CACHE, else "
        "~/.cache/stablebptt/jax; see `stablebptt cache`)",
    )


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


def add_cache_parser(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "cache",
        help=COMMAND_HELP["cache"],
        description="The persistent compilation cache that train, compare, resume, sweep, diagnose, reproduce, "
        "toy and animate share: its folder, entries and size. The folder: --cache DIR|off of those commands, else "
        "$STABLEBPTT_CACHE (off: no cache), else $JAX_COMPILATION_CACHE_DIR, else "
        "$XDG_CACHE_HOME/stablebptt/jax (~/.cache/stablebptt/jax).",
    )
    cache.add_argument(
        "dir", type=Path, nargs="?", default=None, metavar="DIR", help="the cache folder (default: as the commands)"
    )
    cache.add_argument(
        "--clear",
        action="store_true",
        help="remove the cache's entries (only what JAX wrote there; a folder holding other files and no entry is "
        "refused)",
    )
    add_debug(cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from ..runs.cache import ENV, cache_folder, cache_size, clear_cache
    from .guard import UsageError

    folder = args.dir or cache_folder(None)
    if folder is None:
        if args.clear:
            raise UsageError(f"the compilation cache is off ({ENV}=off); name its folder: stablebptt cache DIR --clear")
        print(f"the compilation cache is off ({ENV}=off)")
        return 0
    if args.clear:
        entries, size = clear_cache(folder)
        print(f"{folder}: removed {entries} entries ({size / 1e6:.1f} MB)")
        return 0
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    entries, size = cache_size(folder)
    print(f"{folder}: {entries} entries, {size / 1e6:.1f} MB{'' if folder.is_dir() else ' (not created yet)'}")
    return 0


LIGHT_COMMANDS = {"status": (add_status_parser, cmd_status), "cache": (add_cache_parser, cmd_cache)}
