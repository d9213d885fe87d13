"""The commands of `stablebptt` (train, compare, resume, sweep, plot, status, reproduce, toy, animate,
diagnose, cache): the full parser (`build_parser`) and what each command does (`run`); `stablebptt.cli.main` is
the entry point. The commands that compile (`COMPILING`) take ``--cache DIR|off`` and compile through the
persistent compilation cache (`runs.cache`).

Errors are one line, ``stablebptt COMMAND: error: ...``: bad input (`BadInput`: a bad flag or setting, a
missing or corrupt file, a misbehaving simulator) exits with code 2, and so does a path the system refuses (an
`OSError` such as a name too long or a folder that cannot be written, reported with the option it came from);
any other exception (a failure inside JAX or a bug, a full disk) exits with code 1 and a one-line summary, the
traceback with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.checks import BadInput, plural
from ..tasks import task_label
from . import options as opt
from .guard import UsageError, guarded, parse, shown
from .light import add_cache, add_cache_parser, add_debug, add_status_parser, cmd_cache, cmd_status
from .top import COMMAND_HELP, EPILOG, Parser, top_parser

if TYPE_CHECKING:  # imported where used, for a fast start
    from ..experiments.grid import Run
    from ..runs import RunConfig
    from ..training import TrainResult

TASK_EPILOG = (
    "TASK: a built-in task, brax:NAME for a Brax environment (pip install 'stablebptt[brax]'; "
    "e.g. brax:hopper --set backend=generalized), or module.path:Name for a Task of your own (a subclass of "
    "stablebptt.tasks.Task or a zero-argument function returning one, imported with the current folder "
    "first on the Python path). --set NAME=VALUE (repeatable) sets any field of the task, after the "
    "task's own options; VALUE is JSON where it parses, else a string. " + EPILOG
)
COMPARE_EPOCHS = 250
COMPARE_SEEDS = (42, 43, 44)
DIVERGED_EXIT = 3
# The commands that compile, and so take --cache and use the persistent compilation cache.
COMPILING = ("train", "compare", "resume", "sweep", "reproduce", "toy", "animate", "diagnose")


def _task_parsers(
    command: argparse.ArgumentParser, epilog: str = EPILOG, *, run_dir: str | None = None
) -> list[tuple[str, argparse.ArgumentParser]]:
    """One parser per built-in task and one for every ``module.path:Name``; with `run_dir` (its help) also one
    for a run folder in TASK's place (`opt.RUN_DIR`)."""
    tasks = command.add_subparsers(
        dest="task", required=True, metavar="TASK", parser_class=Parser, action=opt.TaskSubparsers
    )
    parsers: list[tuple[str, argparse.ArgumentParser]] = [
        (name, tasks.add_parser(name, help=opt.task_help(name), epilog=epilog)) for name in [*opt.TASKS, opt.USER_TASK]
    ]
    if run_dir is not None:
        parsers.append((opt.RUN_DIR, tasks.add_parser(opt.RUN_DIR, help=run_dir)))
    return parsers


def build_parser() -> Parser:
    parser, commands = top_parser()

    train = commands.add_parser("train", help=COMMAND_HELP["train"], epilog=TASK_EPILOG)
    for name, p in _task_parsers(train):
        opt.add_task_options(p, name)
        opt.add_training_options(p)
        p.add_argument(
            "--out",
            type=Path,
            default=None,
            help="run folder (default: runs/TASK-METHOD-seedN, with Name for module.path:Name)",
        )
        p.add_argument("--force", action="store_true", help="replace a run already in the output folder")
        add_debug(p)

    compare = commands.add_parser("compare", help=COMMAND_HELP["compare"], epilog=TASK_EPILOG)
    for name, p in _task_parsers(compare):
        opt.add_task_options(p, name)
        opt.add_training_options(p, epochs=COMPARE_EPOCHS, method=False, seeds=COMPARE_SEEDS)
        p.add_argument(
            "--batch-runs",
            default="auto",
            type=opt.choice(("auto", "on", "off")),
            metavar="auto|on|off",
            help="train the runs that can share one program together, as sweep does: on, off, or auto "
            "(default: on a CPU the seeds of each method, on a GPU or TPU everything); results equal separate "
            "runs up to float rounding",
        )
        p.add_argument(
            "--methods",
            type=opt.method_list,
            default=["R", "M", "C", "S"],
            help="comma-separated methods (default: R,M,C,S)",
        )
        p.add_argument(
            "--out",
            type=Path,
            default=None,
            help="output folder (default: runs/compare-TASK[-N], the first that is new or holds this comparison "
            "unfinished); a comparison already there carries on: finished runs are kept, interrupted ones resume",
        )
        p.add_argument("--force", action="store_true", help="train every run again, replacing runs already there")
        add_debug(p)

    resume = commands.add_parser("resume", help=COMMAND_HELP["resume"])
    resume.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder given to train --out")
    resume.add_argument(
        "--epochs",
        type=opt.positive_int,
        default=None,
        help="train up to this many epochs in all (default: as configured; more extends a run)",
    )
    resume.add_argument(
        "--from-scratch",
        action="store_true",
        help="train a run whose checkpoint.eqx is lost again from epoch 0 (its metrics are replaced)",
    )
    add_debug(resume)

    _add_sweep_parser(commands)

    plot = commands.add_parser(
        "plot",
        help=COMMAND_HELP["plot"],
        description="Paper-style figure (sweep.png) and summary.csv / summary.md of a sweep.",
    )
    plot.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="folder written by `stablebptt sweep`")
    plot.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR)")
    plot.add_argument(
        "--smooth",
        type=opt.nonnegative_int,
        default=None,
        help="trailing mean over this many epochs, padded with the first value as in the published plots "
        "(default: 30, or a tenth of the longest run when shorter; 0 or 1: none)",
    )
    plot.add_argument(
        "--allow-partial",
        action="store_true",
        help="write the summary and figures even if some runs cannot be read (corrupt files); they are "
        "listed as unreadable and left out of the statistics (default: refuse, writing nothing)",
    )
    add_debug(plot)

    add_status_parser(commands)

    reproduce = commands.add_parser(
        "reproduce",
        help=COMMAND_HELP["reproduce"],
        description="The reproduction campaign (docs/reproduction.md): its runs in priority order (stages a: "
        "quantum, b: cart pole, c: repulsion, d: learning rate, e: clipping), kept as one compact record per "
        "finished run under RECORDS. `status` lists what is recorded and missing; `run` trains the next missing "
        "runs in WORK and records each run (each group of seeds, when batched) as it finishes (rerun it after any "
        "stop: nothing recorded is trained again); `record` records the finished runs of WORK and rebuilds the "
        "report; `report` rebuilds every figure and table of the report from the records alone.",
    )
    reproduce.add_argument(
        "action",
        choices=("status", "run", "record", "report", "ppo"),
        help="what to do (ppo, of --study shac: Brax's own PPO as the Brax part's reference, at the training time "
        "of a SHAC run, one record per seed under RECORDS/ppo; needs stablebptt[brax])",
    )
    reproduce.add_argument(
        "--study",
        choices=tuple(STUDIES),
        default="paper",
        help="paper: the reproduction campaign; shac: the remedies compared, SHAC's study (experiments.study; "
        "status, run and record only) (default: paper)",
    )
    reproduce.add_argument(
        "--records", type=Path, default=None, help="records folder (default: results/paper, or results/shac)"
    )
    reproduce.add_argument(
        "--work", type=Path, default=None, help="run folders of run (default: runs/campaign, or runs/shac)"
    )
    reproduce.add_argument(
        "--stages",
        type=opt.comma_list,
        default=None,
        help="run: only these stages, e.g. a or b,c or e1, in the campaign's order, not the order given (default: all)",
    )
    reproduce.add_argument(
        "--workers", type=opt.positive_int, default=1, help="run: parallel runs (default: 1; one per core at most)"
    )
    reproduce.add_argument(
        "--batch-runs",
        choices=("auto", "on", "off"),
        default="auto",
        help="run: train the seeds of a group as one program (default: auto, as sweep)",
    )
    reproduce.add_argument(
        "--max-groups",
        type=opt.positive_int,
        default=None,
        help="run: stop after this many groups (runs, or groups of seeds when batched)",
    )
    reproduce.add_argument(
        "--figures",
        type=Path,
        default=Path("docs/figures"),
        help="record, report: figures folder (default: docs/figures)",
    )
    reproduce.add_argument(
        "--tables",
        type=Path,
        default=None,
        help="record, report: the tables' Markdown file (default: docs/reproduction-records.md, or "
        "docs/recipes-records.md for --study shac)",
    )
    reproduce.add_argument(
        "--paper-records",
        type=Path,
        default=Path("results/paper"),
        help="record, report of --study shac: the campaign's records, for the paper's loop at the same levels "
        "(default: results/paper)",
    )
    add_debug(reproduce)

    toy = commands.add_parser("toy", help=COMMAND_HELP["toy"])
    toy.add_argument("--out", type=Path, default=Path("runs/toy"), help="output folder (default: runs/toy)")
    add_debug(toy)

    animate = commands.add_parser("animate", help=COMMAND_HELP["animate"])
    animate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder written by train")
    animate.add_argument("--out", type=Path, default=None, help="GIF file (default: RUN_DIR/animation.gif)")
    animate.add_argument(
        "--samples", type=opt.positive_int, default=3, help="test states shown, in a grid (default: 3, at most 16)"
    )
    animate.add_argument("--fps", type=opt.positive_int, default=8, help="frames per second (default: 8)")
    animate.add_argument(
        "--frames",
        type=opt.positive_int,
        default=40,
        help="at most this many frames; time steps are subsampled (default: 40)",
    )
    add_debug(animate)

    diagnose = commands.add_parser("diagnose", help=COMMAND_HELP["diagnose"], epilog=TASK_EPILOG)
    run_help = "a run folder written by train: the measures at its initial and at its trained controller"
    for name, p in _task_parsers(diagnose, TASK_EPILOG, run_dir=run_help):
        if name == opt.RUN_DIR:
            p.set_defaults(run_dir=True)
        else:
            opt.add_task_options(p, name)
        g = p.add_argument_group("diagnosis")
        g.add_argument("--batch", type=opt.positive_int, default=16, help="initial states (default: 16)")
        g.add_argument("--seed", type=opt.nonnegative_int, default=0, help="draws states and controller (default: 0)")
        g.add_argument(
            "--horizons",
            type=opt.list_of(opt.positive_int),
            default=None,
            help="comma-separated horizons (default: about 8, geometric from 1 to the task's horizon)",
        )
        g.add_argument(
            "--directions", type=opt.positive_int, default=4, help="random perturbation directions (default: 4)"
        )
        g.add_argument(
            "--precision",
            type=opt.choice(("32", "64", "both")),
            default="32",
            metavar="32|64|both",
            help="float32, float64 (the same states and controller, cast up) or both (default: 32)",
        )
        g.add_argument(
            "--out", type=Path, default=None, help="output folder (default: runs/diagnose-TASK, RUN_DIR/diagnosis)"
        )
        add_debug(p)
    add_cache_parser(commands)
    for name in COMPILING:
        for p in _leaves(commands.choices[name]):
            add_cache(p)
    return parser


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that read a command's options: `parser`, or each of its TASK parsers."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [leaf for s in subparsers for p in dict.fromkeys(dict.values(s.choices)) for leaf in _leaves(p)] or [parser]


def _add_sweep_parser(commands: argparse._SubParsersAction) -> None:
    from ..experiments.backends import BACKENDS

    sweep = commands.add_parser(
        "sweep",
        help=COMMAND_HELP["sweep"],
        epilog=EPILOG,
        description="Every option takes a comma-separated list; the grid is their product. Rerunning the same "
        "command continues the sweep: complete runs are skipped, interrupted ones resumed. TASK: a "
        "built-in task, brax:NAME (a Brax environment) or module.path:Name (a Task of your own); "
        "--set NAME=V1,V2 gives the values "
        "of any field of the task.",
    )
    for name, p in _task_parsers(sweep):
        opt.add_task_options(p, name, lists=True)
        opt.add_training_options(p, lists=True)
        g = p.add_argument_group("sweep")
        g.add_argument(
            "--grid",
            choices=("paper",),
            default=None,
            help="start from the published grid of the task (options given override its lists)",
        )
        g.add_argument(
            "--out",
            type=Path,
            default=None,
            help=f"sweep folder (default: runs/sweep-{name if name in opt.TASKS else 'Name'})",
        )
        g.add_argument(
            "--workers",
            type=opt.positive_int,
            default=None,
            help="parallel runs (default: number of cores); 1 runs them in this process",
        )
        g.add_argument(
            "--backend", choices=BACKENDS, default="local", help="local processes or Ray tasks (default: local)"
        )
        g.add_argument(
            "--address",
            default=None,
            help="Ray cluster address (default: start a local Ray instance); run folders must be on "
            "a file system all nodes share",
        )
        g.add_argument(
            "--batch-runs",
            nargs="?",
            const="on",
            default="auto",
            type=opt.choice(("auto", "on", "off")),
            metavar="auto|on|off",
            help="train runs that share array shapes (any methods, clipping, learning rates, seeds, rc, "
            "target) as one program per group (jax.vmap, sharded over several devices): on, off, or "
            "auto (default: on with a GPU or TPU; on a CPU groups of one method, up to 8 runs)",
        )
        g.add_argument("--dry-run", action="store_true", help="list the runs and exit")
        add_debug(p)


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command (`stablebptt.cli.main.main` comes here for every command that computes); returns the exit
    code."""
    args = parse(build_parser(), sys.argv[1:] if argv is None else argv)
    if args.command in COMPILING:
        _use_cache(args)
    return guarded(COMMANDS[args.command], args)


def _use_cache(args: argparse.Namespace) -> None:
    """The persistent compilation cache of ``--cache`` (`runs.cache.cache_folder`), for this process and its
    workers; a folder that cannot be written is one warning on stderr, and the command goes on without it."""
    from ..runs.cache import cache_folder, enable_cache

    warning = enable_cache(cache_folder(args.cache))
    if warning is not None:
        print(f"{_prefix(args)}: warning: {warning}", file=sys.stderr)


def _config(args: argparse.Namespace, settings: dict[str, Any] | None = None, **train: object) -> RunConfig:
    """The run configuration of the command line (checked completely: task, settings, gradient options);
    `settings`: `opt.train_settings(args)` when already read. A run whose epoch cannot fit in memory is refused
    (`training.budget.check_memory`, from shapes: nothing compiled or created); a gradient option without effect
    at the horizon gets a note on stderr."""
    from ..runs import RunConfig
    from ..training.budget import check_memory, notes

    settings = {**(opt.train_settings(args) if settings is None else settings), **train}
    config = RunConfig.create(
        args.task,
        opt.task_settings(args),
        x64=args.x64,
        checkpoint_every=args.checkpoint_every,
        snapshot_every=args.snapshot_every,
        **settings,
    )
    task = config.make_task()
    check_memory(task, config.train, x64=config.x64)
    for note in notes(task, config.train):
        print(f"stablebptt {args.command}: note: {note}", file=sys.stderr)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from ..runs import RunFolder
    from .progress import EpochProgress

    config = _config(args)
    t = config.train
    out = args.out
    if out is None:
        base = Path("runs") / f"{task_label(args.task)}-{t.method}-seed{t.seed}"
        out = _folder_for(base, config)
        if out != base:
            print(f"stablebptt train: {base} holds another run; this one goes to {out}", file=sys.stderr)
    with RunFolder(out).start(config, force=args.force) as session, EpochProgress() as progress:
        result = session.run(progress.run(str(t.method), t.epochs))
    return _report(args.command, str(t.method), out, result)


def cmd_resume(args: argparse.Namespace) -> int:
    from ..runs import RunFolder
    from ..training.budget import check_memory
    from .progress import EpochProgress

    folder = RunFolder(args.run_dir)
    config = folder.read_config()
    check_memory(config.make_task(), config.train, x64=config.x64)
    session = folder.resume(epochs=args.epochs, from_scratch=args.from_scratch)
    if session is None:
        epochs = folder.read_config().train.epochs if args.epochs is None else args.epochs
        print(f"{args.run_dir}: already complete ({plural(epochs, 'epoch')}); nothing to do")
        return 0
    method = str(session.config.train.method)
    with session, EpochProgress() as progress:
        result = session.run(progress.run(method, session.epochs))
    return _report(args.command, method, args.run_dir, result)


def _report(command: str, method: str, out: Path, result: TrainResult) -> int:
    """One line for the finished run; exit 0, or DIVERGED_EXIT with one line on stderr if it diverged."""
    from ..runs.folder import diverged_message

    good = [r for r in result.metrics if not r.get("diverged")]
    updates = len(good) * result.updates_per_epoch
    skipped = f" ({result.skipped} of {updates} updates non-finite and skipped)" if result.skipped else ""
    if result.status == "diverged":
        last = result.metrics[-1]
        if not last.get("diverged"):  # it ran to the end, but skipped most of its updates
            print(
                f"stablebptt {command}: not a success: {result.skipped} of {updates} updates were non-finite and "
                f"skipped (--skip-nonfinite); final test loss {last['test_loss']:.4g} of what was left; files and "
                f"status.json in {out}; try a smaller --lr or --clip norm",
                file=sys.stderr,
            )
            return DIVERGED_EXIT
        if good:
            where = (
                f"last finite loss {good[-1]['loss']:.4g} (epoch {len(good)}); last good checkpoint and "
                f"status.json in {out}"
            )
        else:
            where = f"no epoch before it finished (the initial parameters are in {out}, with status.json)"
        reason = diverged_message(last, result.updates_per_epoch)
        helps = not last.get("initial_nonfinite") and "skipped" not in reason
        hint = "; try a smaller --lr, --clip norm or --skip-nonfinite" if helps else ""
        print(f"stablebptt {command}: diverged: {reason}; {where}{hint}", file=sys.stderr)
        return DIVERGED_EXIT
    last = result.metrics[-1]
    print(
        f"{method}: final test loss {last['test_loss']:.4g}, train loss {last['train_loss']:.4g}{skipped}; "
        f"files in {out}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import compare, described, run_folder_name
    from .progress import EpochProgress, print_table

    settings = opt.train_settings(args, epochs=COMPARE_EPOCHS)
    seeds = settings.pop("seed", None)
    seeds = seeds if isinstance(seeds, list) else None if seeds is None else [seeds]
    seeds = seeds or list(COMPARE_SEEDS)
    config = _config(args, settings, method=args.methods[0], seed=seeds[0])
    runs = {run_folder_name(m, s, seeds): config.replace(method=m, seed=s) for m in args.methods for s in seeds}
    out = args.out or _comparison_for(Path("runs") / f"compare-{task_label(args.task)}", runs)
    if not args.force and (there := _held(out, runs)):
        done = sum(status in ("complete", "diverged") for status in there.values())
        begun = sum(status not in ("complete", "diverged", "pending") for status in there.values())
        print(
            f"{_prefix(args)}: carrying on the comparison in {out}: {done} of {plural(len(runs), 'run')} finished, "
            f"{begun} to continue, {len(runs) - done - begun} to start (--force starts again)",
            file=sys.stderr,
        )
    epochs = config.train.epochs
    with EpochProgress() as progress:
        table = compare(
            out,
            config,
            args.methods,
            seeds=seeds,
            force=args.force,
            batch_runs=args.batch_runs,
            on_run=lambda label: progress.run(label, epochs),
        )
    over = f", {plural(len(seeds), 'seed')}" if len(seeds) > 1 else ""
    print_table(table, title=f"{described(args.task, config.task_settings)}: after {plural(epochs, 'epoch')}{over}")
    print(f"figure: {out / 'compare.png'}; tables: {out / 'compare.csv'}, {out / 'compare.md'}")
    return 0


def _folder_for(base: Path, config: RunConfig) -> Path:
    """The default folder of `train`: `base`, or ``base-2``, ``base-3``, ... the first that is empty or holds
    this same run (which `train` then continues or refuses as usual), so that no other run is replaced."""
    from ..runs import RunFolder, same_run
    from ..runs.lock import LOCK

    candidate, i = base, 2
    while candidate.is_dir() and any(p.name != LOCK for p in candidate.iterdir()):
        try:
            if same_run(RunFolder(candidate).read_record(), config):
                return candidate
        except BadInput:
            pass
        candidate, i = Path(f"{base}-{i}"), i + 1
    return candidate


def _held(out: Path, runs: Mapping[str, RunConfig]) -> dict[str, str]:
    """The runs of a comparison (folder name -> config) that `out` already holds as the same runs, by folder name
    with their status (``complete``, ``interrupted``, ...)."""
    from ..runs import CONFIG, RunFolder, same_run

    held = {}
    for name, config in runs.items():
        folder = RunFolder(out / name)
        try:
            if (out / name / CONFIG).is_file() and same_run(folder.read_record(), config):
                held[name] = (folder.status() or {}).get("status", "pending")
        except BadInput:
            pass
    return held


def _comparison_for(base: Path, runs: Mapping[str, RunConfig]) -> Path:
    """The default folder of `compare`: `base`, or ``base-2``, ``base-3``, ... the first that does not exist or
    holds this same comparison unfinished (which `compare` then carries on), so that no other run is replaced."""
    candidate, i = base, 2
    while candidate.exists():
        held = _held(candidate, runs)
        if held and any(s not in ("complete", "diverged") for s in held.values()):
            return candidate
        candidate, i = Path(f"{base}-{i}"), i + 1
    return candidate


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.backends import default_workers
    from ..experiments.grid import expand, paper_grid, unnamed_defaults
    from ..experiments.sweep import prepare_folder, sweep
    from ..runs.batch import default_batching
    from ..training.settings import FIELDS

    if args.address is not None and args.backend != "ray":
        raise UsageError("--address needs --backend ray")
    grid = paper_grid(args.task) if args.grid == "paper" else {}
    grid.update(opt.train_settings(args))
    given = opt.task_settings(args)
    clash = sorted(set(given) & set(FIELDS))
    if clash:  # a sweep's grid is one set of names: the run would take the value as both
        raise BadInput(
            f"--set {clash[0]}=...: {clash[0]} is both a field of task {args.task} and a training setting, "
            "which a sweep cannot tell apart; sweep it with the training option, or rename the task's field"
        )
    grid.update(given)
    runs = expand(  # checks every run
        args.task, grid, x64=args.x64, checkpoint_every=args.checkpoint_every, snapshot_every=args.snapshot_every
    )
    _check_budget(args, runs)
    if unnamed := unnamed_defaults(args.task, given):
        print(
            f"stablebptt sweep: note: {', '.join(unnamed)} is the task's default, which run names leave out "
            "(method, clip and seed are always named)",
            file=sys.stderr,
        )
    out = args.out or Path("runs") / f"sweep-{task_label(args.task)}"
    if args.dry_run:
        for run in runs:
            print(out / run.name)
        print(plural(len(runs), "run"))
        return 0
    prepare_folder(out)
    workers = args.workers or default_workers()
    if workers > len(runs):
        if args.workers is not None:
            print(
                f"{_prefix(args)}: note: --workers {args.workers} capped at {len(runs)}, the number of runs",
                file=sys.stderr,
            )
        workers = len(runs)
    if args.workers is not None and workers > default_workers() and args.backend == "local":
        print(
            f"{_prefix(args)}: note: {plural(workers, 'worker')} on {plural(default_workers(), 'core')}: the "
            "runs share the cores and each is slower",
            file=sys.stderr,
        )
    batching = default_batching(args.batch_runs) is not None
    print(
        f"sweep of {plural(len(runs), f'{args.task} run')} in {out} ({args.backend} backend, "
        f"{plural(workers, 'worker')}{', batched' if batching else ''})",
        flush=True,
    )
    results = sweep(
        out,
        runs,
        backend=args.backend,
        workers=workers,
        address=args.address,
        batch_runs=args.batch_runs,
        log=lambda line: print(line, flush=True),
    )
    from ..runs.state import FINISHED

    return 0 if all(r["status"] in FINISHED for r in results) else 1


def _prefix(args: argparse.Namespace) -> str:
    return f"stablebptt {args.command}"


def _check_budget(args: argparse.Namespace, runs: Sequence[Run]) -> None:
    """`training.budget.check_memory` and its notes for every distinct shape of the sweep's runs."""
    from ..training.budget import check_memory, notes

    seen: set[str] = set()
    for run in runs:
        c, t = run.config, run.config.train
        key = repr(
            (c.task, c.task_settings, t.batch_size, t.n_train, t.n_test, t.remat, t.truncation, t.optimizer, c.x64)
        )
        if key in seen:
            continue
        seen.add(key)
        task = c.make_task()
        try:
            check_memory(task, t, x64=c.x64)
        except BadInput as e:
            raise UsageError(f"run {run.name}: {shown(e)}") from None
        for note in notes(task, t):
            print(f"{_prefix(args)}: note: {note}", file=sys.stderr)


def cmd_plot(args: argparse.Namespace) -> int:
    from ..experiments.report import count_line, load_runs, write_report

    figures = write_report(args.sweep_dir, args.out, window=args.smooth, allow_partial=args.allow_partial)
    out = args.out or args.sweep_dir
    print(
        f"{count_line(load_runs(args.sweep_dir))}; figures: {', '.join(str(f) for f in figures)}; "
        f"tables: {out / 'summary.csv'}, {out / 'summary.md'}"
    )
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..experiments import campaign
    from ..experiments.study import STUDY_STAGES, write_study_pages
    from .progress import console

    every, records, work, tables = {
        "paper": (campaign.STAGES, "results/paper", "runs/campaign", "docs/reproduction-records.md"),
        "shac": (STUDY_STAGES, "results/shac", "runs/shac", "docs/recipes-records.md"),
    }[args.study]
    args.records = Path(records) if args.records is None else args.records
    args.work = Path(work) if args.work is None else args.work
    args.tables = Path(tables) if args.tables is None else args.tables
    stages = list(every) if args.stages is None else campaign.stage_named(args.stages, every)
    folders = [("--records", args.records)]
    if args.study == "shac" and args.action in ("report", "record", "ppo"):
        folders.append(("--paper-records", Path(args.paper_records)))
    for flag, folder in folders:
        if folder.exists() and not folder.is_dir():
            raise BadInput(f"{flag} {folder} is a file, not a folder of records; give the folder")
        if args.action == "report" and not folder.is_dir():  # a page of nothing would replace the last one
            raise BadInput(f"{flag} {folder}: no such folder; give the folder of the records to report")

    def pages() -> None:
        if args.study == "paper":
            campaign.write_pages(args.records, args.figures, args.tables)
        else:
            write_study_pages(args.records, args.paper_records, args.figures, args.tables)

    if args.action == "report":
        pages()
        return 0
    if args.action == "ppo":
        if args.study != "shac":
            raise BadInput("reproduce ppo is the reference of SHAC's study: give --study shac")
        from ..experiments.ppo import run_references

        done = run_references(args.records)
        print(f"recorded {plural(done, 'PPO reference')} in {args.records}")
        pages()
        return 0
    if args.action == "record":
        new = campaign.record_finished(args.records, args.work, [r for s in stages for r in s.runs()])
        print(f"recorded {plural(len(new), 'finished run')} of {args.work} in {args.records}")
        pages()
    elif args.action == "run":
        done = campaign.train_missing(
            args.records,
            args.work,
            stages,
            workers=args.workers,
            batch_runs=args.batch_runs,
            max_groups=args.max_groups,
        )
        print(f"recorded {plural(done, 'run')} in {args.records}")
    found = campaign.load_records(args.records)
    progress, unreadable, _ = campaign.progress(found, stages)
    _, _, unmatched = campaign.progress(found, every)  # a record of a stage not selected is planned all the same
    planned = sum(len(p.planned) for p in progress)
    recorded = sum(len(p.recorded) for p in progress)
    table = Table(
        title=f"{args.records}: {recorded} of {planned} planned runs recorded "
        f"({campaign.records_size(args.records) / 1e6:.1f} MB)"
    )
    rows = campaign.describe(progress)
    following = next((f"{row['stage']} {row.pop('next')}" for row in rows if row["next"]), None)
    for row in rows:
        row.pop("next", None)
    for column in rows[0]:
        table.add_column(column, justify="right" if column in ("planned", "recorded", "missing") else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console().print(table)
    print(f"next: {following}" if following else "every planned run is recorded")
    for record in unreadable:
        print(f"not counted, unreadable: {record.problem}")
    for record in unmatched:
        print(f"not counted, no planned run has its configuration: {record.config.get('task')}/{record.name}")
    return 0


def cmd_toy(args: argparse.Namespace) -> int:
    from ..experiments.toy import run_toy, summary

    results = run_toy(args.out)
    for line in summary(results):
        print(line)
    print(f"figures: {args.out / 'toy_recurrent.png'}, {args.out / 'toy_rotation.png'}")
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from ..experiments.animate import animate_run

    path = animate_run(
        args.run_dir,
        args.out,
        samples=args.samples,
        fps=args.fps,
        max_frames=args.frames,
        log=lambda line: print(f"stablebptt {line}", file=sys.stderr),
    )
    print(f"animation: {path}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from ..experiments.diagnose import HEADER, diagnose_stages, draw, reading, run_stages, table_rows, write_diagnosis
    from ..tasks import load_task

    if getattr(args, "run_dir", False):
        stages, task, title = run_stages(args.task, log=lambda line: print(f"stablebptt {line}", file=sys.stderr))
        out = args.out or Path(args.task) / "diagnosis"
    else:
        task = load_task(args.task, opt.task_settings(args))
        given = ", ".join(f"{k}={v}" for k, v in opt.task_settings(args).items()) or "defaults"
        stages, title = [("", draw(task, args.batch, args.seed)[0])], f"{task_label(args.task)} ({given})"
        out = args.out or Path("runs") / f"diagnose-{task_label(args.task)}"

    def show(result: dict[str, Any]) -> None:
        print(
            f"{title}, {result['label']}: {result['batch']} states, compiled in {result['compile_s']:.1f} s, "
            f"measured in {result['run_s']:.2f} s"
        )
        print("  " + "  ".join(HEADER))
        for row in table_rows(result):
            print("  " + "  ".join(row))
        for line in reading(result):
            print(f"- {line}")

    precisions = ("32", "64") if args.precision == "both" else (args.precision,)
    results = diagnose_stages(
        task,
        stages,
        batch=args.batch,
        seed=args.seed,
        horizons=args.horizons,
        directions=args.directions,
        precisions=precisions,
        on_result=show,
    )
    paths = write_diagnosis(results, out, title)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


STUDIES = ("paper", "shac")  # `reproduce --study`: the campaign, and the remedies compared (experiments.study)

COMMANDS = {
    "train": cmd_train,
    "compare": cmd_compare,
    "resume": cmd_resume,
    "sweep": cmd_sweep,
    "plot": cmd_plot,
    "status": cmd_status,
    "reproduce": cmd_reproduce,
    "toy": cmd_toy,
    "animate": cmd_animate,
    "diagnose": cmd_diagnose,
    "cache": cmd_cache,
}


if __name__ == "__main__":
    sys.exit(run())
