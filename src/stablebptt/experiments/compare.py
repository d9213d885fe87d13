"""Train several methods from the same initialisation on the same data and compare their test loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..training.io import atomic_write_bytes, write_csv
from ..training.run import prepare_run_dir, run_config, train_to_dir
from .plotting import plot_curves

COMPARE_COLUMNS = ("method", "final_test_loss", "best_test_loss", "final_train_loss", "seconds_per_epoch")


def compare(
    out: str | Path,
    task_name: str,
    task_settings: dict,
    methods: Sequence[str] = ("R", "M", "C", "S"),
    *,
    force: bool = False,
    x64: bool = False,
    on_run: Callable[[str], Callable[[int, dict], None] | None] | None = None,
    **train_settings,
) -> list[dict]:
    """Train each method into ``out/<method>/`` and write ``out/compare.png``, ``compare.csv``, ``compare.md``.

    `on_run(method)` may return a progress callback for that method's run. Returns the table rows.
    """
    out = Path(out)
    configs = {m: run_config(task_name, task_settings, x64=x64, method=m, **train_settings) for m in methods}
    out.mkdir(parents=True, exist_ok=True)
    dirs = {m: prepare_run_dir(out / m, configs[m], force=force) for m in methods}
    curves, table = {}, []
    for m in methods:
        progress = on_run(m) if on_run else None
        result = train_to_dir(dirs[m], configs[m], progress)
        test = [r["test_loss"] for r in result.metrics]
        curves[m] = {"test_loss": test}
        table.append({
            "method": m,
            "final_test_loss": test[-1],
            "best_test_loss": float(np.nanmin(test)),
            "final_train_loss": result.metrics[-1]["train_loss"],
            "seconds_per_epoch": float(np.median([r["epoch_time"] for r in result.metrics])),
        })
    settings = ", ".join(f"{k}={v}" for k, v in task_settings.items())
    plot_curves(curves, out / "compare.png", title=f"{task_name} ({settings}): test loss")
    write_csv(out / "compare.csv", COMPARE_COLUMNS, table)
    atomic_write_bytes(out / "compare.md", markdown_table(table).encode())
    return table


def markdown_table(rows: Sequence[dict]) -> str:
    lines = ["| method | final test loss | best test loss | final train loss | s/epoch |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['final_test_loss']:.4g} | {r['best_test_loss']:.4g} | "
                     f"{r['final_train_loss']:.4g} | {r['seconds_per_epoch']:.3f} |")
    return "\n".join(lines) + "\n"
