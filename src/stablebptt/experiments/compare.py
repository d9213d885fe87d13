"""Train several methods from the same initialisation on the same data and compare their test loss, over one
or several seeds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.checks import BadArgument, BadInput
from ..runs import RunConfig, RunFolder
from ..runs.batch import default_batching, train_sessions
from ..runs.io import atomic_write_bytes, write_csv
from .report import RunRecord, plot_sweep, read_run

COMPARE_COLUMNS = (
    "method",
    "seeds",
    "final_test_loss",
    "final_test_min",
    "final_test_max",
    "best_test_loss",
    "final_train_loss",
    "seconds_per_epoch",
)


def run_folder_name(method: str, seed: int, seeds: Sequence[int]) -> str:
    """``METHOD`` for a comparison with one seed (as before seeds existed), else ``METHOD-seedS``."""
    return method if len(seeds) == 1 else f"{method}-seed{seed}"


def compare(
    out: str | Path,
    config: RunConfig,
    methods: Sequence[str] = ("R", "M", "C", "S"),
    *,
    seeds: Sequence[int] | None = None,
    force: bool = False,
    batch_runs: str = "auto",
    on_run: Callable[[str], Callable[[int, dict[str, float]], None] | None] | None = None,
) -> list[dict[str, Any]]:
    """Train `config` with each method and seed into ``out/<method>/`` (one seed) or ``out/<method>-seed<S>/``
    (a run folder each) and write ``out/compare.png`` (the median over seeds with a min-max band),
    ``compare.csv`` and ``compare.md``.

    Every folder is claimed before any training (so a folder that cannot take its run fails before any work).
    A comparison already in `out` carries on: its complete runs are kept and read, its interrupted ones continue
    from their checkpoints (bit-identical to an uninterrupted comparison), its missing ones are trained; `force`
    instead trains every run again from scratch. A folder holding another run is refused unless `force`.

    `seeds`: default the seed of `config`. `batch_runs` ("auto", "on", "off"; `runs.default_batching`): train the
    runs that can share one program together (on a CPU, the seeds of one method), as `stablebptt sweep` does;
    results equal separate runs up to float rounding. `on_run(label)` may return a progress callback for that run
    (label: the folder name). Returns one table row per method: the median over seeds of the final and best test
    loss and the final train loss, the range of the final test loss, the number of seeds and the median seconds
    per epoch.
    """
    out = Path(out)
    default_batching(batch_runs)  # a bad mode is refused before any folder is claimed
    seeds = list(dict.fromkeys(seeds if seeds is not None else [config.train.seed]))
    configs = {(m, s): config.replace(method=m, seed=s) for m in methods for s in seeds}
    records: list[RunRecord] = []
    table = []
    with contextlib.ExitStack() as stack:
        sessions: dict[tuple[str, int], Any] = {}  # runs.Session, which only runs/ may name (tests/test_layers.py)
        for key, c in configs.items():  # each claimed run is held (locked) until the end
            claimed = _claim(out / run_folder_name(*key, seeds), c, force)
            if not isinstance(claimed, str):
                sessions[key] = stack.enter_context(claimed)
        keys = list(sessions)
        labels = [run_folder_name(*k, seeds) for k in keys]
        by_path = {sessions[k].path: label for k, label in zip(keys, labels, strict=True)}
        done = train_sessions(
            [sessions[k] for k in keys],
            batch_runs=batch_runs,
            progress=(lambda session: on_run(by_path[session.path])) if on_run else None,
        )
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for key, label, result in zip(keys, labels, done, strict=True):
        if isinstance(result, str):  # could not begin; the reason is in its status.json
            status = RunFolder(out / label).status() or {}
            raise BadInput(f"{out / label}: {status.get('message', 'failed')}")
        results[key] = result.metrics
    for key in configs:
        if key not in sessions:  # finished before: its metrics as its folder holds them
            record = read_run(out / run_folder_name(*key, seeds))
            if record.status == "unreadable" or not record.rows:
                raise BadArgument(
                    "$path: " + f"cannot be read ({record.problem or 'no metrics'}); pass $force to train it again",
                    path=out / record.name,
                    force=True,
                )
            results[key] = record.rows
    for key, c in configs.items():
        label = run_folder_name(*key, seeds)
        status = (RunFolder(out / label).status() or {}).get("status", "complete")
        records.append(RunRecord(label, c.to_json(), status, results[key]))
    for m in methods:
        runs = [results[(m, s)] for s in seeds]
        final = np.asarray([r[-1]["test_loss"] for r in runs])
        table.append(
            {
                "method": m,
                "seeds": len(seeds),
                "final_test_loss": float(np.median(final)),
                "final_test_min": float(final.min()),
                "final_test_max": float(final.max()),
                "best_test_loss": float(np.median([np.nanmin([row["test_loss"] for row in r]) for r in runs])),
                "final_train_loss": float(np.median([r[-1]["train_loss"] for r in runs])),
                "seconds_per_epoch": float(np.median([row["epoch_time"] for r in runs for row in r])),
            }
        )
    over = f", median and range over {len(seeds)} seeds" if len(seeds) > 1 else ""
    title = f"{described(config.task, config.task_settings)}: test loss{over}"
    plot_sweep(records, out / "compare.png", window=1, ylim=None, title=title)
    write_csv(out / "compare.csv", COMPARE_COLUMNS, table)
    atomic_write_bytes(out / "compare.md", markdown_table(table).encode())
    return table


def _claim(path: Path, config: RunConfig, force: bool) -> Any:
    """The `runs.Session` that trains the run of `config` at `path` (from scratch with `force`), or its final status
    when it has nothing left to do (`RunFolder.open`); another process writing it, or another run there, is
    refused."""
    if force:
        return RunFolder(path).start(config, force=True)
    try:
        opened = RunFolder(path).open(config)
    except BadInput as e:
        if "holds a different run" not in str(e):
            raise
        raise BadArgument(
            f"{path}: holds a run of other settings; choose another folder, or pass $force to replace it", force=True
        ) from None
    if opened == "locked":
        raise BadInput(f"{path}: another process is training this run; wait for it or choose another folder")
    return opened


def described(task: str, settings: Mapping[str, Any]) -> str:
    """``task (a=1, b=2)``, or just ``task`` without settings."""
    given = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"{task} ({given})" if given else task


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    seeds = rows[0]["seeds"] if rows else 1
    if seeds > 1:
        lines = [
            f"Median over {seeds} seeds (final test loss: median [min, max]).",
            "",
            "| method | seeds | final test loss | best test loss | final train loss | s/epoch |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['method']} | {r['seeds']} | {r['final_test_loss']:.4g} [{r['final_test_min']:.4g}, "
                f"{r['final_test_max']:.4g}] | {r['best_test_loss']:.4g} | {r['final_train_loss']:.4g} | "
                f"{r['seconds_per_epoch']:.3f} |"
            )
        return "\n".join(lines) + "\n"
    lines = ["| method | final test loss | best test loss | final train loss | s/epoch |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['final_test_loss']:.4g} | {r['best_test_loss']:.4g} | "
            f"{r['final_train_loss']:.4g} | {r['seconds_per_epoch']:.3f} |"
        )
    return "\n".join(lines) + "\n"
