"""The `stablebptt` command: train, compare, resume."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from ..tasks import task_label
from ..training.optim import CLIP_MODES, OPTIMIZERS
from . import options as opt

EPILOG = "Methods: R regular BPTT, M modified (physics only), S stopped, N network only, C combined."
TASK_EPILOG = ("TASK: a built-in task, or module.path:Name for a Task of your own (a subclass of "
               "stablebptt.tasks.Task or a zero-argument function returning one, imported with the current folder "
               "first on the Python path). --set NAME=VALUE (repeatable) sets any field of the task, after the "
               "task's own options; VALUE is JSON where it parses, else a string. " + EPILOG)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Bad input found after parsing: reported in one line with exit code 2."""


def add_training_options(p: argparse.ArgumentParser, *, epochs: int, method: bool = True) -> None:
    g = p.add_argument_group("training")
    if method:
        g.add_argument("--method", type=opt.method, default="C", help="R, M, S, N or C (default: C)")
    g.add_argument("--epochs", type=opt.positive_int, default=epochs, help=f"epochs (default: {epochs})")
    g.add_argument("--batch-size", type=opt.positive_int, default=8, help="mini-batch size (default: 8)")
    g.add_argument("--lr", type=opt.positive_float, default=1e-3, help="learning rate (default: 0.001)")
    g.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam", help="(default: adam, Keras eps)")
    g.add_argument("--clip", choices=CLIP_MODES, default="none", help="clipping of the update (default: none)")
    g.add_argument("--clip-value", type=opt.positive_float, default=1.0, help="clipping threshold (default: 1.0)")
    g.add_argument("--seed", type=opt.nonnegative_int, default=42, help="data and initialisation seed (default: 42)")
    g.add_argument("--n-train", type=opt.positive_int, default=256, help="training initial states (default: 256)")
    g.add_argument("--n-test", type=opt.positive_int, default=256, help="test initial states (default: 256)")
    g.add_argument("--skip-nonfinite", action="store_true",
                   help="skip updates with a NaN/inf loss or gradient instead of stopping the run as diverged")
    g.add_argument("--checkpoint-every", type=opt.positive_int, default=1,
                   help="write the checkpoint every K epochs (default: 1)")
    g.add_argument("--checkpoint", default=None, metavar="none|sqrt|states|K",
                   help="memory for long horizons: recompute the forward pass in segments of sqrt(horizon) "
                        "steps, 1 step (states), or K steps during the backward pass (default: store everything)")
    g.add_argument("--truncation", type=opt.positive_int, default=None, metavar="K",
                   help="cut all gradient flow along time every K steps (truncated BPTT; default: none)")
    g.add_argument("--x64", action="store_true", help="compute in float64")
    g.add_argument("--force", action="store_true", help="replace a run already in the output folder")
    _add_debug(p)


def _add_debug(p: argparse.ArgumentParser) -> None:
    """`--debug` also after the command (it is a global option before it)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def build_parser() -> Parser:
    parser = Parser(prog="stablebptt", description="Stabilised backpropagation through time.", epilog=EPILOG)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    train = commands.add_parser("train", help="train one controller", epilog=TASK_EPILOG)
    for name, p in _task_parsers(train):
        add_training_options(p, epochs=1000)
        p.add_argument("--out", type=Path, default=None,
                       help="run folder (default: runs/TASK-METHOD-seedN, with Name for module.path:Name)")

    compare = commands.add_parser("compare", help="train R, M, C and S side by side", epilog=TASK_EPILOG)
    for name, p in _task_parsers(compare):
        add_training_options(p, epochs=COMPARE_EPOCHS, method=False)
        p.add_argument("--methods", type=opt.method_list, default=["R", "M", "C", "S"],
                       help="comma-separated methods (default: R,M,C,S)")
        p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/compare-TASK[-N])")

    resume = commands.add_parser("resume", help="continue a run from its checkpoint (after a kill or crash)")
    resume.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder given to train --out")
    resume.add_argument("--epochs", type=opt.positive_int, default=None,
                        help="train up to this many epochs in all (default: as configured; more extends a run)")
    _add_debug(resume)

    from ..experiments import report, sweep  # `sweep` and `plot` (their logic lives in experiments/)

    sweep.add_sweep_parser(commands, Parser, EPILOG, add_common=_add_debug)
    report.add_plot_parser(commands, Parser, add_common=_add_debug)

    toy = commands.add_parser("toy", help="draw the toy examples (recurrent toy problem, rotation) as PNGs")
    toy.add_argument("--out", type=Path, default=Path("runs/toy"), help="output folder (default: runs/toy)")
    _add_debug(toy)

    animate = commands.add_parser("animate", help="write a GIF of a trained controller on a few test states")
    animate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder written by train")
    animate.add_argument("--out", type=Path, default=None, help="GIF file (default: RUN_DIR/animation.gif)")
    animate.add_argument("--samples", type=opt.positive_int, default=3, help="test states shown (default: 3)")
    animate.add_argument("--fps", type=opt.positive_int, default=8, help="frames per second (default: 8)")
    animate.add_argument("--frames", type=opt.positive_int, default=40,
                         help="at most this many frames; time steps are subsampled (default: 40)")
    _add_debug(animate)
    return parser


def _task_parsers(command: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """One parser per built-in task (with its options) and one for every ``module.path:Name``, each with
    ``--set``."""
    tasks = command.add_subparsers(dest="task", required=True, metavar="TASK", parser_class=Parser,
                                   action=opt.TaskSubparsers)
    parsers = []
    for name in [*opt.TASK_OPTIONS, opt.USER_TASK]:
        p = tasks.add_parser(name, help=opt.TASK_HELP.get(name, opt.USER_TASK_HELP), epilog=EPILOG)
        opt.add_set_option(opt.add_task_options(p, name), name)
        parsers.append((name, p))
    return parsers


COMPARE_EPOCHS = 250


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ValueError, TypeError) as e:
        if args.debug:
            raise
        print(f"stablebptt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stablebptt {args.command}: interrupted; files written so far are complete (continue a run with "
              "`stablebptt resume RUN_DIR`)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the command line reports, --debug shows the traceback
        if args.debug:
            raise
        print(f"stablebptt {args.command}: error: {type(e).__name__}: {e} (rerun with --debug for details)",
              file=sys.stderr)
        return 1


def _setup(args: argparse.Namespace) -> None:
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)


TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "optimizer", "clip", "clip_value", "seed", "n_train", "n_test",
                 "skip_nonfinite", "checkpoint_every")
DIVERGED_EXIT = 3


def _task_settings(args: argparse.Namespace) -> dict:
    """The task's settings: its own options (a built-in task), then ``--set NAME=VALUE``."""
    settings = opt.task_settings(args, args.task) if args.task in opt.TASK_OPTIONS else {}
    return {**settings, **opt.set_settings(args.task, args.set)}


def _train_settings(args: argparse.Namespace) -> dict:
    settings = {k: getattr(args, k) for k in TRAIN_OPTIONS}
    # Gradient options are recorded only when given, so default runs keep the same configuration.
    settings.update({k: getattr(args, k) for k in ("checkpoint", "truncation") if getattr(args, k, None) is not None})
    return settings


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.run import check_config, check_out_path, opening_new_run, run_config
    from .progress import EpochProgress

    _setup(args)
    settings = _task_settings(args)
    config = run_config(args.task, settings, x64=args.x64, method=args.method, **_train_settings(args))
    check_config(config)
    out = check_out_path(args.out or Path("runs") / f"{task_label(args.task)}-{args.method}-seed{args.seed}")
    with opening_new_run(out, config, force=args.force) as run, EpochProgress() as progress:
        result = run(progress.run(f"{args.method}", args.epochs))
    return _report(args.command, config, out, result)


def cmd_resume(args: argparse.Namespace) -> int:
    from ..training.run import check_config, load_config, opening_resume
    from .progress import EpochProgress

    config = load_config(args.run_dir)
    check_config(config)
    args.x64 = bool(config.get("x64", False))
    _setup(args)
    method = config["train"].get("method", "C")
    epochs = args.epochs or config["train"].get("epochs", 1000)
    with opening_resume(args.run_dir, epochs=args.epochs) as run:
        if run is None:
            print(f"{args.run_dir}: already complete ({epochs} epochs); nothing to do")
            return 0
        with EpochProgress() as progress:
            result = run(progress.run(method, epochs))
    return _report(args.command, config, args.run_dir, result)


def _report(command: str, config: dict, out: Path, result) -> int:
    """One line for the finished run; exit 0, or DIVERGED_EXIT with one line on stderr if it diverged."""
    method = config["train"].get("method", "C")
    if result.status == "diverged":
        good = [r for r in result.metrics if not r.get("diverged")]
        last = f"{good[-1]['loss']:.4g} (epoch {len(good)})" if good else "none"
        print(f"stablebptt {command}: diverged: non-finite loss or update in epoch {result.metrics[-1]['epoch']}; "
              f"last finite loss {last}; last good checkpoint and status.json in {out}; try a smaller --lr, "
              "--clip norm or --skip-nonfinite", file=sys.stderr)
        return DIVERGED_EXIT
    last = result.metrics[-1]
    print(f"{method}: final test loss {last['test_loss']:.4g}, train loss {last['train_loss']:.4g}; files in {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import compare
    from ..training.run import run_config
    from .progress import EpochProgress, print_table

    _setup(args)
    settings = _task_settings(args)
    _check_config(run_config(args.task, settings, x64=args.x64, method="C", **_train_settings(args)))
    out = args.out
    if out is None:
        out = _fresh_dir(Path("runs") / f"compare-{task_label(args.task)}")
    elif any((out / m / "config.json").exists() for m in args.methods) and not args.force:
        raise UsageError(f"--out {out} already holds a comparison; choose another folder or pass --force")
    with EpochProgress() as progress:
        table = compare(out, args.task, settings, args.methods, force=args.force, x64=args.x64,
                        on_run=lambda m: progress.run(m, args.epochs), **_train_settings(args))
    print_table(table, title=f"{args.task} ({_describe(settings)}): after {args.epochs} epochs")
    print(f"figure: {out / 'compare.png'}; table: {out / 'compare.csv'}")
    return 0


def _check_config(config: dict) -> None:
    """Check every setting so that bad ones fail before any work or any folder."""
    from ..training.run import check_config

    check_config(config)


def _describe(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _fresh_dir(base: Path) -> Path:
    if not base.exists():
        return base
    i = 2
    while Path(f"{base}-{i}").exists():
        i += 1
    return Path(f"{base}-{i}")


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.sweep import cmd_sweep as run

    return run(args)


def cmd_plot(args: argparse.Namespace) -> int:
    from ..experiments.report import cmd_plot as run

    return run(args)


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "resume": cmd_resume}
COMMANDS.update(sweep=cmd_sweep, plot=cmd_plot)


def cmd_toy(args: argparse.Namespace) -> int:
    from ..experiments.toy import run_toy, summary

    results = run_toy(args.out)
    for line in summary(results):
        print(line)
    print(f"figures: {args.out / 'toy_recurrent.png'}, {args.out / 'toy_rotation.png'}")
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from ..experiments.animate import animate_run

    path = animate_run(args.run_dir, args.out, samples=args.samples, fps=args.fps, max_frames=args.frames)
    print(f"animation: {path}")
    return 0


COMMANDS.update(toy=cmd_toy, animate=cmd_animate)


if __name__ == "__main__":
    sys.exit(main())
