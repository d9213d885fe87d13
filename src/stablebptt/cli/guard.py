"""How every command ends: its errors in one line, ``stablebptt COMMAND: error: ...``, and its exit code.

Bad input (`BadInput`: a bad flag or setting, a missing or corrupt file, a misbehaving simulator) exits with code
2, and so does a path the system refuses (an `OSError` such as a name too long or a folder that cannot be
written, reported with the option it came from); any other exception (a failure inside JAX or a bug, a full disk)
exits with code 1 and a one-line summary, the traceback with ``--debug``. Ctrl-C and SIGTERM stop a command with
one line saying how to go on (exit codes 130 and 143). Light: no JAX.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..core.checks import Action, Argument, BadArgument, BadInput, described
from ..runs.state import Terminated

# Python arguments whose command-line flag is not ``--`` + the name with dashes.
FLAGS = {"path": "--out", "n_poles": "--poles", "n_drivers": "--drivers", "n_evaders": "--evaders"}


def cli_argument(name: str, value: Any) -> str:
    """An argument of a `BadArgument` as the command line writes it: ``--out runs/x``, ``--force``, ``--lr``; an
    `Action` as its command, ```stablebptt resume runs/x --epochs 20```."""
    if isinstance(value, Action):
        words = [os.fspath(p) if isinstance(p, os.PathLike) else str(p) for p in value.positional]
        options = [cli_argument(k, v) for k, v in value.options.items() if v is not False]
        return "`" + " ".join(["stablebptt", value.name, *words, *options]) + "`"
    if isinstance(value, Argument):
        return cli_argument(value.name, value.value)
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    return (
        flag
        if value is None or value is True
        else f"{flag} {os.fspath(value) if isinstance(value, os.PathLike) else value}"
    )


def shown(error: BaseException) -> str:
    """An error's message as the command line shows it (a `BadArgument` with flags, not Python arguments)."""
    return error.render(cli_argument) if isinstance(error, BadArgument) else str(error)


class UsageError(BadInput):
    """Bad input found after parsing: reported in one line with exit code 2."""


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of a command line; an argument no option takes is an error naming the command."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.exit(2, f"stablebptt {args.command}: error: unrecognized arguments: {' '.join(unknown)}\n")
    return args


def guarded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``command(args)``, its errors reported in one line; returns the exit code."""
    prefix = f"stablebptt {args.command}"
    try:
        with interrupts_raised():
            return command(args)
    except Terminated:
        print(f"{prefix}: stopped by SIGTERM; files written so far are complete{_resume_hint(args)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BadInput as e:
        if args.debug:
            raise
        line = next((line.strip() for line in shown(e).splitlines() if line.strip()), type(e).__name__)
        print(f"{prefix}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; files written so far are complete{_resume_hint(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as Unix tools do on SIGPIPE
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing stdout at exit does not fail again
        return 128 + signal.SIGPIPE
    except OSError as e:
        if args.debug:
            raise
        code = 1 if e.errno in MACHINE_ERRNOS else 2
        print(f"{prefix}: error: {_os_error(args, e)}", file=sys.stderr)
        return code
    except Exception as e:
        if args.debug:
            raise
        print(
            f"{prefix}: error: {described(e)} (a failure, not bad input; rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


# The interrupts (SIGINT, SIGTERM) raised into the main thread while a command runs. Signals belong to the process,
# so this is process state, kept by the handler below and read by `raise_pending` only.
_PENDING: set[int] = set()


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """Inside, SIGTERM raises `Terminated` and Ctrl-C (SIGINT, where not ignored) `KeyboardInterrupt` in the main
    thread, and both are remembered for `raise_pending`; the previous handlers come back on leaving. Nested, and
    outside the main thread (only it may handle signals), it changes nothing."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is _interrupt:
        yield
        return
    _PENDING.clear()
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored (nohup, a job: &)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    unraisable = sys.unraisablehook
    sys.unraisablehook = lambda info: None if isinstance(info.exc_value, KeyboardInterrupt) else unraisable(info)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        sys.unraisablehook = unraisable
        _PENDING.clear()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Inside `interrupts_raised`, an interrupt is only remembered, and raised on leaving: for what must not be
    interrupted half-way, such as importing JAX (an exception inside its C++ extension's initialisation aborts
    the process). Elsewhere it changes nothing."""
    if signal.getsignal(signal.SIGTERM) is not _interrupt:
        yield
        return
    raised = [signum for signum in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(signum) is _interrupt]
    for signum in raised:
        signal.signal(signum, _remember)
    try:
        yield
    finally:
        for signum in raised:
            signal.signal(signum, _interrupt)
    raise_pending()


def _remember(signum: int, frame: object) -> None:
    _PENDING.add(signum)


def _interrupt(signum: int, frame: object) -> NoReturn:
    _PENDING.add(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def raise_pending() -> None:
    """Raise again an interrupt that was raised once and lost: Python drops an exception raised inside a garbage
    collector callback or a ``__del__`` ("Exception ignored in ..."; JAX has such a callback), so a Ctrl-C or
    SIGTERM landing there would otherwise leave the command running. Progress callbacks call it after every epoch;
    it does nothing when no interrupt came."""
    if signal.SIGTERM in _PENDING:
        raise Terminated()
    if signal.SIGINT in _PENDING:
        raise KeyboardInterrupt()


def _resume_hint(args: argparse.Namespace) -> str:
    """How to go on after an interrupt: the command that continues what was stopped."""
    if args.command in ("train", "resume"):
        run = getattr(args, "run_dir", None) or getattr(args, "out", None)
        if run and args.command == "train" and not (Path(run) / "config.json").is_file():
            return f" (the run had not started: nothing was written to {run}; start it again with the same command)"
        return (
            f" (continue the run with `stablebptt resume {run}`)"
            if run
            else " (continue a run with `stablebptt resume RUN_DIR`)"
        )
    if args.command in ("sweep", "compare"):
        return f" (rerun the same `stablebptt {args.command}` command to go on)"
    return ""


# OS errors that are the machine's state, not a path the user gave (exit code 1).
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM}
PATH_OPTIONS = (
    ("out", "--out"),
    ("run_dir", "RUN_DIR"),
    ("sweep_dir", "SWEEP_DIR"),
    ("dir", "DIR"),
    ("records", "--records"),
    ("work", "--work"),
    ("figures", "--figures"),
    ("tables", "--tables"),
)
WRITTEN = ("--out", "--records", "--work", "--figures", "--tables")  # options of folders or files a command writes


def _os_error(args: argparse.Namespace, error: OSError) -> str:
    """One line for an `OSError`, naming the option whose path it concerns (when one does)."""
    reason = error.strerror or type(error).__name__
    name = error.filename if error.filename is not None else ""
    target = Path(os.path.abspath(name)) if name != "" else None
    candidates = []  # (how near, option, value): the path itself, then the nearest folder holding it, then below
    for attr, option in PATH_OPTIONS:
        value = getattr(args, attr, None)
        given = Path(os.path.abspath(value)) if value is not None else None
        if given is None or target is None:
            continue
        if target == given or given in target.parents:
            candidates.append((len(target.parts) - len(given.parts), option, value, given))
        elif target in given.parents:
            candidates.append((len(given.parts) + 1000, option, value, given))
    if candidates:
        _, option, value, given = min(candidates, key=lambda c: c[0])
        at = f" (at {_short(name)})" if given != target else ""
        allowed = (
            "a path in a folder you can write, names of at most 255 bytes"
            if option in WRITTEN
            else "an existing folder written by stablebptt"
        )
        return f"{option} {_short(value)}: {reason}{at}; allowed: {allowed}"
    return f"{name + ': ' if name else ''}{reason}"


def _short(path: object, limit: int = 80) -> str:
    text = str(path)
    return text if len(text) <= limit else text[: limit - 3] + "..."
