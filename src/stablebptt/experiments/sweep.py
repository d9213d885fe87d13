"""Sweeps: every run of a grid in its own folder, in parallel, resumable after any crash or kill.

``stablebptt sweep TASK --out DIR`` takes comma-separated lists for every option of ``train`` and trains the
product, one folder per run (named by `grid.run_name`) with the same files as ``train``. Each run goes through
`training.run.execute`: a complete (or diverged) run is skipped, an interrupted one resumes from its last
checkpoint, and a run that fails or diverges is recorded in its ``status.json`` while the sweep goes on.
``DIR/sweep.json`` lists every run ever planned in DIR; ``DIR/summary.csv``/``summary.md`` and ``DIR/sweep.png``
are written at the end (and by ``stablebptt plot`` at any time).

With `batch_runs`, runs that differ only in seed and learning rate are trained together as one compiled
program (`jax.vmap` of the epoch of `training.make_epoch`), writing the same folders (with checkpoints).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..training.io import CONFIG, METRICS_CSV, PARAMS, read_json, write_csv, write_json
from .backends import BACKENDS, default_workers, run_jobs
from .grid import TRAIN_DEFAULTS as GRID_TRAIN_DEFAULTS
from .grid import Run, expand, paper_grid

MANIFEST = "sweep.json"
Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------------- jobs


def _set_x64(config: dict) -> None:
    import jax

    if bool(config.get("x64", False)) != bool(jax.config.jax_enable_x64):
        jax.config.update("jax_enable_x64", bool(config.get("x64", False)))


def run_job(run_dir: str, config: dict) -> list[dict]:
    """Bring one run to an end with `training.run.execute` (in a worker). Never raises."""
    from ..training.run import execute

    begin = time.perf_counter()
    try:
        _set_x64(config)
        status, message = execute(run_dir, config), ""
    except Exception as e:  # noqa: BLE001 - a folder that holds something else: reported, the sweep goes on
        status, message = "failed", f"{type(e).__name__}: {e}"
    return [{"run_dir": run_dir, "status": status, "seconds": time.perf_counter() - begin, "message": message}]


def run_batch_job(run_dirs: Sequence[str], configs: Sequence[dict]) -> list[dict]:
    """Train runs that differ only in seed and learning rate together (in a worker). Never raises."""
    begin = time.perf_counter()
    try:
        _set_x64(configs[0])
        statuses = train_batch(run_dirs, configs)
        message = ""
    except Exception as e:  # noqa: BLE001 - recorded in the folders; the sweep goes on
        message = f"{type(e).__name__}: {e}".splitlines()[0]
        statuses = {}
        for d in run_dirs:
            with contextlib.suppress(Exception):
                _write_status(Path(d), "failed", message=message)
    seconds = (time.perf_counter() - begin) / max(len(run_dirs), 1)
    return [{"run_dir": d, "status": statuses.get(d, "failed"), "seconds": seconds, "message": message}
            for d in run_dirs]


# ------------------------------------------------------------------------------------- batched runs


def _optimizer(name: str, lr: Any, clip: str, clip_value: float):
    """`training.optim.make_optimizer` for a traced learning rate (same transforms, same state structure)."""
    import optax

    from ..training.optim import OPTIMIZERS

    clipping = {"none": optax.identity, "value": lambda: optax.clip(clip_value),
                "norm": lambda: optax.clip_by_global_norm(clip_value)}[clip]()
    return optax.chain(clipping, OPTIMIZERS[name](lr))


def _write_status(out: Path, status: str, **fields: Any) -> None:
    """The status record of `training.run` (same fields)."""
    record = {"status": status, "pid": os.getpid(),
              "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    record.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()})
    write_json(out / "status.json", record)


class _Member(NamedTuple):
    """A run of a batch: its folder and config, its `Trainer` (data, initial state, key), where it starts."""

    run_dir: str
    out: Path
    config: dict
    trainer: Any
    start: int
    state: Any
    rows: list

    @property
    def epochs(self) -> int:
        from ..training.run import TRAIN_DEFAULTS

        return self.config["train"].get("epochs", TRAIN_DEFAULTS["epochs"])


def _members(run_dirs: Sequence[str], configs: Sequence[dict], stack: contextlib.ExitStack,
             statuses: dict[str, str]) -> list[_Member]:
    """Lock each folder and read where its run stands; runs with nothing to do only get a status."""
    from ..training.checkpoint import load_checkpoint
    from ..training.lock import RunLock, RunLocked
    from ..training.run import CHECKPOINT, TRAIN_DEFAULTS, check_config, config_task, read_status
    from ..training.train import Trainer

    members, task = [], None
    for run_dir, config in zip(run_dirs, configs):
        out = Path(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        try:
            stack.enter_context(RunLock(out))
        except RunLocked:
            statuses[run_dir] = "locked"
            continue
        if not (out / CONFIG).exists():
            write_json(out / CONFIG, config)
        status = read_status(out) or {}
        epochs = config["train"].get("epochs", TRAIN_DEFAULTS["epochs"])
        if status.get("status") == "diverged" or (status.get("status") == "complete"
                                                   and status.get("epoch", 0) >= epochs):
            statuses[run_dir] = status["status"]
            continue
        try:
            check_config(config)
        except (ValueError, TypeError) as e:
            _write_status(out, "failed", message=f"invalid configuration: {e}")
            statuses[run_dir] = "failed"
            continue
        settings = {k: v for k, v in {**TRAIN_DEFAULTS, **config["train"]}.items() if k != "epochs"}
        task = task or config_task(config)
        trainer = Trainer(task, **settings)
        state, start, rows = trainer.initial, 0, []
        if (out / CHECKPOINT).exists():
            checkpoint = load_checkpoint(out / CHECKPOINT, config, (trainer.key, trainer.initial))
            state, start, rows = checkpoint.state, checkpoint.epoch, list(checkpoint.metrics)
        members.append(_Member(run_dir, out, config, trainer, start, state, rows))
    return members


def train_batch(run_dirs: Sequence[str], configs: Sequence[dict]) -> dict[str, str]:
    """Train the runs of `configs` (differing only in seed and lr) into `run_dirs` with one `jax.vmap`ped
    epoch program; returns each folder's final status.

    Complete and diverged runs are skipped, unfinished ones continue from their checkpoints (runs at different
    epochs are batched separately), a folder locked by another process is left alone (``locked``). A member
    that diverges stops alone (its state is kept from the epoch before). Metrics equal those of separate runs
    up to float rounding; ``epoch_time`` is the batched epoch's time divided by the number of runs in it.
    """
    import jax
    import jax.numpy as jnp

    from ..training.checkpoint import Checkpoint, save_checkpoint
    from ..training.run import CHECKPOINT, GRADIENT_KEYS, TRAIN_DEFAULTS
    from ..training.train import METRICS, make_epoch

    statuses: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        members = _members(run_dirs, configs, stack, statuses)
        if not members:
            return statuses
        first = {**TRAIN_DEFAULTS, **members[0].config["train"]}
        gradient_options = {k: first[k] for k in GRADIENT_KEYS if k in first}
        task, static = members[0].trainer.task, members[0].trainer.static

        def one_epoch(lr, state, data):
            tx = _optimizer(first["optimizer"], lr, first["clip"], first["clip_value"])
            epoch = make_epoch(task, first["method"], tx, static, first["batch_size"],
                               skip_nonfinite=first["skip_nonfinite"], **gradient_options)
            return epoch(state, data)

        batched = jax.jit(jax.vmap(one_epoch))

        for start in sorted({m.start for m in members}):
            group = [m for m in members if m.start == start]
            lrs = jnp.asarray([m.config["train"].get("lr", TRAIN_DEFAULTS["lr"]) for m in group],
                              dtype=jnp.result_type(float))
            states = _stack([m.state for m in group])
            data = _stack([m.trainer.data for m in group])
            active = [start < m.epochs for m in group]
            diverged: dict[int, dict] = {}
            for m in group:
                _write_status(m.out, "running", epoch=start, epochs=m.epochs, checkpoint_epoch=start or None)
            compiled = batched.lower(lrs, states, data).compile()
            epoch = start
            while any(active):
                epoch += 1
                begin = time.perf_counter()
                new_states, values = compiled(lrs, states, data)
                values = jax.device_get(values)
                seconds = (time.perf_counter() - begin) / len(group)
                keep = [False] * len(group)
                for i, m in enumerate(group):
                    if not active[i]:
                        continue
                    row = {"epoch": epoch, **{k: float(v[i]) for k, v in values.items()}, "epoch_time": seconds}
                    if m.trainer.diverged(row):
                        diverged[i] = {**row, "diverged": True}
                        active[i] = False
                        continue
                    keep[i] = True
                    m.rows.append(row)
                    active[i] = epoch < m.epochs
                mask = jnp.asarray(keep)
                states = jax.tree.map(
                    lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new_states, states)
                for i, m in enumerate(group):
                    if keep[i]:
                        if epoch % m.config.get("checkpoint_every", 1) == 0 or epoch == m.epochs:
                            save_checkpoint(m.out / CHECKPOINT, m.config,
                                            Checkpoint(epoch, _index(states, i), m.trainer.key, m.rows))
                        write_csv(m.out / METRICS_CSV, METRICS, m.rows)
            for i, m in enumerate(group):
                _finish(m, _index(states, i), diverged.get(i))
                statuses[m.run_dir] = "diverged" if i in diverged else "complete"
    return statuses


def _stack(trees):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _index(tree, i):
    import jax

    return jax.tree.map(lambda x: x[i], tree)


def _finish(m: _Member, state: Any, bad: dict | None) -> None:
    """The files a run of `training.run` ends with: metrics, parameters, figure, checkpoint, status."""
    from ..training.checkpoint import Checkpoint, save_checkpoint
    from ..training.io import save_params
    from ..training.run import CHECKPOINT
    from ..training.train import METRICS
    from .plotting import plot_curves

    rows, good = m.rows, len(m.rows)
    if bad is not None:
        if good > 0:
            save_checkpoint(m.out / CHECKPOINT, m.config, Checkpoint(good, state, m.trainer.key, rows))
        rows = [*rows, bad]
    write_csv(m.out / METRICS_CSV, METRICS, rows)
    save_params(m.out / PARAMS, m.trainer.params(state))
    method = m.config["train"].get("method", "C")
    curves = {method: {k: [r[k] for r in rows] for k in ("test_loss", "train_loss")}}
    settings = ", ".join(f"{k}={v}" for k, v in m.config["task_settings"].items())
    plot_curves(curves, m.out / "loss.png", title=f"{m.config['task']} ({settings}), method {method}",
                keys=("test_loss", "train_loss"))
    if bad is not None:
        _write_status(m.out, "diverged", epoch=good, epochs=m.epochs, diverged_epoch=bad["epoch"],
                      last_finite_loss=rows[-2]["loss"] if good else None, checkpoint_epoch=good or None,
                      message=f"non-finite loss or update in epoch {bad['epoch']} "
                              f"({int(bad.get('nonfinite', 0))} non-finite updates)")
    else:
        _write_status(m.out, "complete", epoch=m.epochs, epochs=m.epochs, checkpoint_epoch=m.epochs)


# -------------------------------------------------------------------------------------------- sweep


def _settings_hash(config: dict) -> str:
    from ..training.checkpoint import config_hash

    return config_hash(config)


def check_folders(out: Path, runs: Sequence[Run]) -> None:
    """Refuse (before any work) run folders that hold a run with other settings than the grid's."""
    for run in runs:
        path = out / run.name / CONFIG
        if path.exists():
            existing = read_json(path)
            if not isinstance(existing, dict) or _settings_hash(existing) != _settings_hash(run.config):
                raise ValueError(f"{out / run.name} holds a run with other settings than this sweep's; "
                                 "choose another --out or remove that folder")


def write_manifest(out: Path, task: str, runs: Sequence[Run]) -> None:
    """Record the runs of this sweep in ``out/sweep.json`` (adding to those of earlier sweeps in `out`)."""
    path = out / MANIFEST
    manifest = read_json(path) if path.exists() else {"task": task, "runs": {}}
    if manifest.get("task") != task:
        raise ValueError(f"{out} holds a sweep of task {manifest.get('task')!r}, not {task!r}; choose another --out")
    manifest["runs"].update({run.name: run.config for run in runs})
    write_json(path, manifest)


def sweep(
    out: str | Path,
    runs: Sequence[Run],
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    batch_runs: bool = False,
    log: Log | None = print,
    report: bool = True,
) -> list[dict]:
    """Bring every run of `runs` to an end in ``out/<run name>/`` and write the sweep's summary.

    Args:
        out: the sweep folder (created; rerunning on the same folder continues the sweep).
        runs: from `grid.expand`.
        backend, workers, address: see `backends.run_jobs`.
        batch_runs: train runs that differ only in seed and learning rate together (`train_batch`).
        log: called with one line per finished run.
        report: write ``summary.csv``, ``summary.md`` and ``sweep.png`` at the end.

    Returns:
        One dict per run: ``run_dir``, ``status`` (complete, diverged, failed, locked), ``seconds``, ``message``.
    """
    if not runs:
        raise ValueError("the grid is empty")
    out = Path(out).resolve()
    task = runs[0].config["task"]
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    check_folders(out, runs)
    write_manifest(out, task, runs)
    if batch_runs:
        groups: dict[str, list[Run]] = {}
        for run in runs:
            groups.setdefault(run.batch_key, []).append(run)
        jobs = [(run_batch_job, ([str(out / r.name) for r in g], [r.config for r in g])) for g in groups.values()]
    else:
        jobs = [(run_job, (str(out / r.name), r.config)) for r in runs]
    results: list[dict] = []
    begin = time.perf_counter()
    for _, job_results in run_jobs(jobs, backend=backend, workers=workers, address=address):
        for r in job_results:
            results.append(r)
            if log is not None:
                message = f" ({r['message']})" if r["message"] else ""
                log(f"[{len(results)}/{len(runs)}] {Path(r['run_dir']).name}: {r['status']}, "
                    f"{r['seconds']:.1f} s{message}")
    if report:
        from .report import write_report

        write_report(out)
    if log is not None:
        counts = {s: sum(r["status"] == s for r in results) for s in ("complete", "diverged", "failed", "locked")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        log(f"{len(runs)} runs in {time.perf_counter() - begin:.1f} s: {summary}; summary in {out / 'summary.md'}")
    return results


# ------------------------------------------------------------------------------------- command line


def _list_of(item_type: Callable[[str], Any], choices: Sequence[str] | None = None) -> Callable[[str], list]:
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        values = []
        for t in items:
            if choices is not None and t not in choices:
                raise argparse.ArgumentTypeError(f"invalid choice {t!r} (choose from {', '.join(choices)})")
            values.append(item_type(t))
        return values

    parse.__name__ = getattr(item_type, "__name__", "list")
    return parse


def _list_option(group, flags: list[str], key: str, parse: Callable[[str], list], help: str) -> None:
    group.add_argument(*flags, dest=f"grid_{key}", type=parse, default=None, metavar="LIST", help=help)


def add_sweep_parser(commands: argparse._SubParsersAction, parser_class: type, epilog: str = "", *,
                     add_common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Register ``stablebptt sweep TASK`` (one subcommand per task of `cli.options.TASK_OPTIONS`, and one for
    every ``module.path:Name``)."""
    from ..cli import options as opt
    from ..training.optim import CLIP_MODES, OPTIMIZERS

    sweep_parser = commands.add_parser(
        "sweep", help="train a grid of runs (comma-separated values), resumable and parallel", epilog=epilog,
        description="Every option takes a comma-separated list; the grid is their product. Rerunning the same "
                    "command continues the sweep: complete runs are skipped, interrupted ones resumed. TASK: a "
                    "built-in task or module.path:Name (a Task of your own); --set NAME=V1,V2 gives the values "
                    "of any field of the task.")
    tasks = sweep_parser.add_subparsers(dest="task", required=True, metavar="TASK", parser_class=parser_class,
                                        action=opt.TaskSubparsers)
    for name in [*opt.TASK_OPTIONS, opt.USER_TASK]:
        p = tasks.add_parser(name, help=opt.TASK_HELP.get(name, opt.USER_TASK_HELP), epilog=epilog)
        g = p.add_argument_group(f"{name if name in opt.TASK_OPTIONS else 'task'} settings (comma-separated lists)")
        for o in opt.TASK_OPTIONS.get(name, ()):
            _list_option(g, [o.flag], o.name, _list_of(o.type, o.choices), f"{o.help} (default: {o.default})")
        opt.add_set_option(g, name, lists=True)
        g = p.add_argument_group("training (comma-separated lists)")
        _list_option(g, ["--methods", "--method"], "method", opt.method_list, "methods, e.g. R,M,C,S (default: C)")
        _list_option(g, ["--epochs"], "epochs", _list_of(opt.positive_int),
                     f"epochs (default: {GRID_TRAIN_DEFAULTS['epochs']})")
        _list_option(g, ["--batch-size"], "batch_size", _list_of(opt.positive_int), "mini-batch size (default: 8)")
        _list_option(g, ["--lr"], "lr", _list_of(opt.positive_float), "learning rate (default: 0.001)")
        _list_option(g, ["--optimizer"], "optimizer", _list_of(str, tuple(OPTIMIZERS)),
                     f"{', '.join(OPTIMIZERS)} (default: adam)")
        _list_option(g, ["--clip"], "clip", _list_of(str, CLIP_MODES), "clipping: none, value, norm (default: none)")
        _list_option(g, ["--clip-value"], "clip_value", _list_of(opt.positive_float),
                     "clipping threshold (default: 1.0)")
        _list_option(g, ["--seeds", "--seed"], "seed", _list_of(opt.nonnegative_int),
                     "data and initialisation seeds (default: 42)")
        _list_option(g, ["--n-train"], "n_train", _list_of(opt.positive_int), "training initial states (default: 256)")
        _list_option(g, ["--n-test"], "n_test", _list_of(opt.positive_int), "test initial states (default: 256)")
        g.add_argument("--skip-nonfinite", dest="grid_skip_nonfinite", action="store_const", const=[True],
                       default=None, help="skip updates with a NaN/inf loss or gradient instead of stopping the run")
        g.add_argument("--checkpoint-every", type=opt.positive_int, default=1,
                       help="write each run's checkpoint every K epochs (default: 1)")
        g.add_argument("--x64", action="store_true", help="compute in float64")
        g = p.add_argument_group("sweep")
        g.add_argument("--grid", choices=("paper",), default=None,
                       help="start from the published grid of the task (options given override its lists)")
        g.add_argument("--out", type=Path, default=None,
                       help=f"sweep folder (default: runs/sweep-{name if name in opt.TASK_OPTIONS else 'Name'})")
        g.add_argument("--workers", type=opt.positive_int, default=None,
                       help="parallel runs (default: number of cores); 1 runs them in this process")
        g.add_argument("--backend", choices=BACKENDS, default="local",
                       help="local processes or Ray tasks (default: local)")
        g.add_argument("--address", default=None,
                       help="Ray cluster address (default: start a local Ray instance); run folders must be on "
                            "a file system all nodes share")
        g.add_argument("--batch-runs", action="store_true",
                       help="train runs that differ only in seed and learning rate together (jax.vmap)")
        g.add_argument("--dry-run", action="store_true", help="list the runs and exit")
        if add_common is not None:
            add_common(p)


def grid_from_args(args: argparse.Namespace) -> dict[str, list]:
    """The grid of the command line: the published grid (``--grid paper``), the lists of the options, then
    the ``--set NAME=V1,V2`` lists (fields of the task)."""
    from ..cli.options import set_settings

    grid: dict[str, list] = paper_grid(args.task) if args.grid == "paper" else {}
    for key, value in vars(args).items():
        if key.startswith("grid_") and value is not None:
            grid[key.removeprefix("grid_")] = value
    return {**grid, **set_settings(args.task, args.set)}


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..tasks import task_label

    if args.address is not None and args.backend != "ray":
        raise ValueError("--address needs --backend ray")
    runs = expand(args.task, grid_from_args(args), x64=args.x64, checkpoint_every=args.checkpoint_every)
    from ..training.run import check_config

    for run in runs:  # bad settings fail before any work
        check_config(run.config)
    out = args.out or Path("runs") / f"sweep-{task_label(args.task)}"
    if args.dry_run:
        for run in runs:
            print(out / run.name)
        print(f"{len(runs)} runs")
        return 0
    workers = args.workers or default_workers()
    print(f"sweep of {len(runs)} {args.task} runs in {out} ({args.backend} backend, {workers} workers"
          f"{', batched' if args.batch_runs else ''})", flush=True)
    results = sweep(out, runs, backend=args.backend, workers=workers, address=args.address,
                    batch_runs=args.batch_runs, log=lambda line: print(line, flush=True))
    return 0 if all(r["status"] in ("complete", "diverged") for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `stablebptt sweep`")
