"""Sweeps: every run of a grid in its own folder, in parallel, resumable after any crash or kill.

``stablebptt sweep TASK --out DIR`` takes comma-separated lists for every option of ``train`` and trains the
product, one folder per run (named by `grid.run_name`) with the same files as ``train``. Each run goes through
`runs.RunFolder.ensure`: a complete (or diverged) run is skipped, an interrupted one resumes from its last
checkpoint, and a run that fails or diverges is recorded in its ``status.json`` while the sweep goes on.
``DIR/sweep.json`` lists every run ever planned in DIR; ``DIR/summary.csv``/``summary.md`` and ``DIR/sweep.png``
are written at the end (and by ``stablebptt plot`` at any time).

With `batch_runs`, runs that share array shapes are trained together as one compiled program per group
(`runs.plan_groups`, `runs.ensure_batch`: any mix of methods, clipping modes, learning rates, seeds and numeric
task settings such as rc), writing the same folders (with checkpoints). "auto" chooses per device
(`runs.default_batching`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.checks import BadArgument, BadInput, described, plural
from ..runs import CONFIG, RunConfig, RunFolder, ensure_batch, same_run
from ..runs.batch import default_batching, plan_groups
from ..runs.config import ADDED
from ..runs.io import check_names, read_json, write_json
from ..runs.lock import locked
from ..runs.state import MANIFEST, STATUSES
from .backends import Job, run_jobs
from .grid import Run

Log = Callable[[str], None]


def run_job(run_dir: str, config: RunConfig) -> list[dict[str, Any]]:
    """Bring one run to an end with `RunFolder.ensure` (in a worker). Never raises."""
    begin = time.perf_counter()
    folder = RunFolder(run_dir)
    try:
        done = _already(folder, config)
        status, message = done or folder.ensure(config), ""
    except Exception as e:  # noqa: BLE001 - a folder that holds something else: reported, the sweep goes on
        done, status, message = None, "failed", _one_line(e)
    return [_result(run_dir, status, time.perf_counter() - begin, message, done)]


def run_batch_job(run_dirs: Sequence[str], configs: Sequence[RunConfig]) -> list[dict[str, Any]]:
    """Bring the runs of one group (`runs.plan_groups`) to an end together (in a worker, with
    `runs.ensure_batch`). Never raises: a failure is recorded in the folders by their sessions."""
    begin = time.perf_counter()
    done = {d: _already(RunFolder(d), c) for d, c in zip(run_dirs, configs, strict=True)}
    try:
        statuses, message = ensure_batch(run_dirs, configs), ""
    except Exception as e:  # noqa: BLE001 - recorded in the folders; the sweep goes on
        statuses, message = {}, _one_line(e)
    seconds = (time.perf_counter() - begin) / max(sum(not v for v in done.values()), 1)
    return [_result(d, statuses.get(d, "failed"), 0.0 if done[d] else seconds, message, done[d]) for d in run_dirs]


def _already(folder: RunFolder, config: RunConfig) -> str | None:
    """The final status of a run that was finished before this sweep reached it (None if there is work)."""
    try:
        return folder.finished(config) if (folder.path / CONFIG).exists() else None
    except BadInput:
        return None  # reported by ensure


def _result(run_dir: str, status: str, seconds: float, message: str, already: str | None) -> dict[str, Any]:
    """One run's result for the sweep's log: a failure's reason comes from its status.json when the job has
    none (a run that raised records its error there)."""
    if status in ("failed", "interrupted") and not message:
        try:
            message = (RunFolder(run_dir).status() or {}).get("message", "")
        except BadInput as e:
            message = _one_line(e)
    return {
        "run_dir": run_dir,
        "status": status,
        "seconds": seconds,
        "message": message,
        "already": already is not None,
    }


def _lost(jobs: Sequence[Job]) -> Callable[[int, str], list[dict[str, Any]]]:
    """`run_jobs`'s `on_lost`: the runs of a job lost for good (a Ray task out of retries) are interrupted, with the
    reason; their folders read the same (no live lock), and rerunning the sweep resumes them."""

    def on_lost(index: int, message: str) -> list[dict[str, Any]]:
        fn, args = jobs[index]
        run_dirs = [args[0]] if fn is run_job else list(args[0])
        return [_result(d, "interrupted", 0.0, message, None) for d in run_dirs]

    return on_lost


def _one_line(error: BaseException) -> str:
    return described(error)


def check_folders(out: Path, runs: Sequence[Run]) -> None:
    """Refuse (before any work) run folders that hold a run with other settings than the grid's."""
    for run in runs:
        path = out / run.name / CONFIG
        if path.exists():
            existing = read_json(path)
            if not isinstance(existing, dict) or not same_run(existing, run.config):
                hint = "choose another $out or remove that folder"
                train = existing.get("train") if isinstance(existing, dict) else None
                if isinstance(train, dict) and not any(k in train for k in ADDED):  # an earlier version's run
                    hint = (
                        f"it was written by stablebptt {existing.get('version', '0.1.0')}, whose Adam epsilon "
                        "and C defaults were $adam_eps $regular_nonfinite: give those to continue "
                        f"it, or {hint}"
                    )
                raise BadArgument(
                    f"{out / run.name} holds a run with other settings than this sweep's; {hint}",
                    out=None,
                    adam_eps="optax",
                    regular_nonfinite="stop",
                )


def prepare_folder(out: str | Path) -> Path:
    """Create the sweep folder `out` (nothing if it cannot be: `BadInput` for a file or a name too long, an
    `OSError` for a folder the system refuses); returns its absolute path."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise BadArgument("$out exists and is not a folder", out=out)
    check_names(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_manifest(out: Path, task: str, runs: Sequence[Run]) -> None:
    """Record the runs of this sweep in ``out/sweep.json`` (adding to those of earlier sweeps in `out`)."""
    path = out / MANIFEST
    manifest: dict[str, Any] = read_json(path) if path.exists() else {"task": task, "runs": {}}
    if manifest.get("task") != task:
        raise BadArgument(
            f"{out} holds a sweep of task {manifest.get('task')!r}, not {task!r}; choose another $out", out=None
        )
    manifest["runs"].update({run.name: run.config.to_json() for run in runs})
    write_json(path, manifest)


def sweep(
    out: str | Path,
    runs: Sequence[Run],
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    batch_runs: bool | str = "off",
    log: Log | None = print,
    report: bool = True,
) -> list[dict[str, Any]]:
    """Bring every run of `runs` to an end in ``out/<run name>/`` and write the sweep's summary.

    Args:
        out: the sweep folder (created; rerunning on the same folder continues the sweep).
        runs: from `grid.expand`.
        backend: see `backends.run_jobs`.
        workers: see `backends.run_jobs`.
        address: see `backends.run_jobs`.
        batch_runs: "on" (or True): train the runs of each group of `runs.plan_groups` as one program; "off" (or
            False): one run per job; "auto": as `runs.default_batching` chooses for this machine.
        log: called with one line per finished run.
        report: write ``summary.csv``, ``summary.md`` and ``sweep.png`` at the end.

    Returns:
        One dict per run, in the order of `runs`: ``run_dir``, ``status`` (complete, diverged, failed or
        interrupted: a run that another process was training is waited for and then finished here),
        ``seconds``, ``message`` (why it failed) and ``already`` (it had ended before this sweep).
    """
    if not runs:
        raise BadInput("the grid is empty")
    out = prepare_folder(out)
    task = runs[0].config.task
    check_folders(out, runs)
    write_manifest(out, task, runs)
    names: dict[Any, Any] = {True: "on", False: "off"}  # a bool as its mode's name; `default_batching` checks the rest
    batching = default_batching(names.get(batch_runs, batch_runs))
    jobs: list[Job]
    if batching is not None:
        mixed, max_size = batching
        groups = plan_groups([r.config for r in runs], mixed=mixed, max_size=max_size)
        jobs = [(run_batch_job, ([str(out / runs[i].name) for i in g], [runs[i].config for i in g])) for g in groups]
    else:
        jobs = [(run_job, (str(out / r.name), r.config)) for r in runs]
    results: dict[str, dict[str, Any]] = {}
    begin = time.perf_counter()
    while jobs:
        for _, job_results in run_jobs(jobs, backend=backend, workers=workers, address=address, on_lost=_lost(jobs)):
            for r in job_results:
                results[r["run_dir"]] = r
                if log is not None:
                    log(f"[{len(results)}/{len(runs)}] {_line(r)}")
        # Runs another process was training (another sweep on the same folder): wait for it, then finish them
        # here, so that the result says how every run ended, whoever trained it.
        locked = [(d, c) for d, c in ((str(out / r.name), r.config) for r in runs) if results[d]["status"] == "locked"]
        if locked:
            if log is not None:
                log(f"waiting for {plural(len(locked), 'run')} that another process is training")
            _wait_unlocked([d for d, _ in locked])
            for d, _ in locked:
                del results[d]
        jobs = [(run_job, (d, c)) for d, c in locked]
    ordered = [results[str(out / r.name)] for r in runs]
    if report:
        from .report import write_report

        write_report(out, allow_partial=True)
    if log is not None:
        counts = {s: sum(r["status"] == s for r in ordered) for s in STATUSES if s != "running"}
        already = sum(r["already"] for r in ordered)
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        log(
            f"{plural(len(runs), 'run')} in {time.perf_counter() - begin:.1f} s: {summary}"
            + (f" ({already} of them finished before, or by another process)" if already else "")
            + f"; summary in {out / 'summary.md'}"
        )
    return ordered


def _line(result: dict[str, Any]) -> str:
    name = Path(result["run_dir"]).name
    if result["already"]:
        return f"{name}: already {result['status']}"
    if result["status"] == "locked":
        return f"{name}: being trained by another process (waited for at the end)"
    message = f" ({result['message']})" if result["message"] else ""
    return f"{name}: {result['status']}, {result['seconds']:.1f} s{message}"


def _wait_unlocked(run_dirs: Sequence[str], poll: float = 1.0) -> None:
    """Return once no live process holds any of `run_dirs`."""
    pending = list(run_dirs)
    while pending:
        pending = [d for d in pending if locked(d)]
        if pending:
            time.sleep(poll)
