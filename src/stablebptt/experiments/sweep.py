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

from ..core.checks import BadInput, plural
from ..runs import CONFIG, RunConfig, RunFolder, ensure_batch, same_run
from ..runs.batch import default_batching, plan_groups
from ..runs.io import read_json, write_json
from ..training.settings import ADDED
from .backends import run_jobs
from .grid import Run

MANIFEST = "sweep.json"
Log = Callable[[str], None]


def run_job(run_dir: str, config: RunConfig) -> list[dict]:
    """Bring one run to an end with `RunFolder.ensure` (in a worker). Never raises."""
    begin = time.perf_counter()
    try:
        status, message = RunFolder(run_dir).ensure(config), ""
    except Exception as e:  # noqa: BLE001 - a folder that holds something else: reported, the sweep goes on
        status, message = "failed", f"{type(e).__name__}: {e}"
    return [{"run_dir": run_dir, "status": status, "seconds": time.perf_counter() - begin, "message": message}]


def run_batch_job(run_dirs: Sequence[str], configs: Sequence[RunConfig]) -> list[dict]:
    """Bring the runs of one group (`runs.plan_groups`) to an end together (in a worker, with
    `runs.ensure_batch`). Never raises: a failure is recorded in the folders by their sessions."""
    begin = time.perf_counter()
    try:
        statuses, message = ensure_batch(run_dirs, configs), ""
    except Exception as e:  # noqa: BLE001 - recorded in the folders; the sweep goes on
        statuses, message = {}, f"{type(e).__name__}: {e}".splitlines()[0]
    seconds = (time.perf_counter() - begin) / max(len(run_dirs), 1)
    return [{"run_dir": d, "status": statuses.get(d, "failed"), "seconds": seconds, "message": message}
            for d in run_dirs]


def check_folders(out: Path, runs: Sequence[Run]) -> None:
    """Refuse (before any work) run folders that hold a run with other settings than the grid's."""
    for run in runs:
        path = out / run.name / CONFIG
        if path.exists():
            existing = read_json(path)
            if not isinstance(existing, dict) or not same_run(existing, run.config):
                hint = "choose another --out or remove that folder"
                train = existing.get("train") if isinstance(existing, dict) else None
                if isinstance(train, dict) and not any(k in train for k in ADDED):  # an earlier version's run
                    hint = (f"it was written by stablebptt {existing.get('version', '0.1.0')}, whose Adam epsilon "
                            "and C defaults were --adam-eps optax --regular-nonfinite stop: give those to continue "
                            f"it, or {hint}")
                raise BadInput(f"{out / run.name} holds a run with other settings than this sweep's; {hint}")


def write_manifest(out: Path, task: str, runs: Sequence[Run]) -> None:
    """Record the runs of this sweep in ``out/sweep.json`` (adding to those of earlier sweeps in `out`)."""
    path = out / MANIFEST
    manifest = read_json(path) if path.exists() else {"task": task, "runs": {}}
    if manifest.get("task") != task:
        raise BadInput(f"{out} holds a sweep of task {manifest.get('task')!r}, not {task!r}; choose another --out")
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
) -> list[dict]:
    """Bring every run of `runs` to an end in ``out/<run name>/`` and write the sweep's summary.

    Args:
        out: the sweep folder (created; rerunning on the same folder continues the sweep).
        runs: from `grid.expand`.
        backend, workers, address: see `backends.run_jobs`.
        batch_runs: "on" (or True): train the runs of each group of `runs.plan_groups` as one program; "off" (or
            False): one run per job; "auto": as `runs.default_batching` chooses for this machine.
        log: called with one line per finished run.
        report: write ``summary.csv``, ``summary.md`` and ``sweep.png`` at the end.

    Returns:
        One dict per run: ``run_dir``, ``status`` (complete, diverged, failed, locked), ``seconds``, ``message``.
    """
    if not runs:
        raise BadInput("the grid is empty")
    out = Path(out).resolve()
    task = runs[0].config.task
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    check_folders(out, runs)
    write_manifest(out, task, runs)
    batching = default_batching({True: "on", False: "off"}.get(batch_runs, batch_runs))
    if batching is not None:
        mixed, max_size = batching
        groups = plan_groups([r.config for r in runs], mixed=mixed, max_size=max_size)
        jobs = [(run_batch_job, ([str(out / runs[i].name) for i in g], [runs[i].config for i in g])) for g in groups]
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
        log(f"{plural(len(runs), 'run')} in {time.perf_counter() - begin:.1f} s: {summary}; "
            f"summary in {out / 'summary.md'}")
    return results
