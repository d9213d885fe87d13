"""The `stablebptt` command: train, compare."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from ..training.optim import CLIP_MODES, OPTIMIZERS
from . import options as opt

EPILOG = "Methods: R regular BPTT, M modified (physics only), S stopped, N network only, C combined."


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
    g.add_argument("--x64", action="store_true", help="compute in float64")
    g.add_argument("--force", action="store_true", help="replace a run already in the output folder")


def build_parser() -> Parser:
    parser = Parser(prog="stablebptt", description="Stabilised backpropagation through time.", epilog=EPILOG)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    train = commands.add_parser("train", help="train one controller", epilog=EPILOG)
    train_tasks = train.add_subparsers(dest="task", required=True, metavar="TASK", parser_class=Parser)
    for name in opt.TASK_OPTIONS:
        p = train_tasks.add_parser(name, help=opt.TASK_HELP[name])
        opt.add_task_options(p, name)
        add_training_options(p, epochs=1000)
        p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/TASK-METHOD-seedN)")

    compare = commands.add_parser("compare", help="train R, M, C and S side by side", epilog=EPILOG)
    compare_tasks = compare.add_subparsers(dest="task", required=True, metavar="TASK", parser_class=Parser)
    for name in opt.TASK_OPTIONS:
        p = compare_tasks.add_parser(name, help=opt.TASK_HELP[name])
        opt.add_task_options(p, name)
        add_training_options(p, epochs=COMPARE_EPOCHS, method=False)
        p.add_argument("--methods", type=opt.method_list, default=["R", "M", "C", "S"],
                       help="comma-separated methods (default: R,M,C,S)")
        p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/compare-TASK[-N])")
    return parser


COMPARE_EPOCHS = 100


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
        print(f"stablebptt {args.command}: interrupted; files written so far are complete", file=sys.stderr)
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


def _train_settings(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "optimizer", "clip", "clip_value", "seed")}


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.run import prepare_run_dir, run_config, train_to_dir
    from .progress import EpochProgress

    _setup(args)
    settings = opt.task_settings(args, args.task)
    config = run_config(args.task, settings, x64=args.x64, method=args.method, **_train_settings(args))
    _check_config(config)
    out = args.out or Path("runs") / f"{args.task}-{args.method}-seed{args.seed}"
    out = prepare_run_dir(out, config, force=args.force)
    with EpochProgress() as progress:
        result = train_to_dir(out, config, progress.run(f"{args.method}", args.epochs))
    last = result.metrics[-1]
    print(f"{args.method}: final test loss {last['test_loss']:.4g}, train loss {last['train_loss']:.4g}; "
          f"files in {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import compare
    from ..training.run import run_config
    from .progress import EpochProgress, print_table

    _setup(args)
    settings = opt.task_settings(args, args.task)
    _check_config(run_config(args.task, settings, x64=args.x64, method="C", **_train_settings(args)))
    out = args.out
    if out is None:
        out = _fresh_dir(Path("runs") / f"compare-{args.task}")
    elif any((out / m / "config.json").exists() for m in args.methods) and not args.force:
        raise UsageError(f"--out {out} already holds a comparison; choose another folder or pass --force")
    with EpochProgress() as progress:
        table = compare(out, args.task, settings, args.methods, force=args.force, x64=args.x64,
                        on_run=lambda m: progress.run(m, args.epochs), **_train_settings(args))
    print_table(table, title=f"{args.task} {settings}: after {args.epochs} epochs")
    print(f"figure: {out / 'compare.png'}; table: {out / 'compare.csv'}")
    return 0


def _check_config(config: dict) -> None:
    """Build the task and optimizer once so that bad settings fail before any work or any folder."""
    from ..tasks import make_task
    from ..training.optim import make_optimizer

    make_task(config["task"], **config["task_settings"])
    t = config["train"]
    make_optimizer(t["optimizer"], t["lr"], t["clip"], t["clip_value"])


def _fresh_dir(base: Path) -> Path:
    if not base.exists():
        return base
    i = 2
    while Path(f"{base}-{i}").exists():
        i += 1
    return Path(f"{base}-{i}")


COMMANDS = {"train": cmd_train, "compare": cmd_compare}


if __name__ == "__main__":
    sys.exit(main())
