"""Train several methods from the same initialisation on the same data and compare their test loss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..runs import RunConfig, RunFolder
from ..runs.io import atomic_write_bytes, write_csv
from ..runs.plotting import plot_curves

COMPARE_COLUMNS = ("method", "final_test_loss", "best_test_loss", "final_train_loss", "seconds_per_epoch")


def compare(
    out: str | Path,
    config: RunConfig,
    methods: Sequence[str] = ("R", "M", "C", "S"),
    *,
    force: bool = False,
    on_run: Callable[[str], Callable[[int, dict], None] | None] | None = None,
) -> list[dict]:
    """Train `config` with each method into ``out/<method>/`` (a run folder each) and write
    ``out/compare.png``, ``compare.csv`` and ``compare.md``.

    Every folder is claimed before any training (so a folder that cannot take its run fails before any work);
    `force` replaces runs already there. `on_run(method)` may return a progress callback for that method's
    run. Returns the table rows.
    """
    out = Path(out)
    configs = {m: config.replace(method=m) for m in methods}
    curves, table = {}, []
    with contextlib.ExitStack() as stack:
        sessions = {m: stack.enter_context(RunFolder(out / m).start(configs[m], force=force)) for m in methods}
        for m in methods:
            result = sessions[m].run(on_run(m) if on_run else None)
            test = [r["test_loss"] for r in result.metrics]
            curves[m] = {"test_loss": test}
            table.append({
                "method": m,
                "final_test_loss": test[-1],
                "best_test_loss": float(np.nanmin(test)),
                "final_train_loss": result.metrics[-1]["train_loss"],
                "seconds_per_epoch": float(np.median([r["epoch_time"] for r in result.metrics])),
            })
    settings = ", ".join(f"{k}={v}" for k, v in config.task_settings.items())
    plot_curves(curves, out / "compare.png", title=f"{config.task} ({settings}): test loss")
    write_csv(out / "compare.csv", COMPARE_COLUMNS, table)
    atomic_write_bytes(out / "compare.md", markdown_table(table).encode())
    return table


def markdown_table(rows: Sequence[dict]) -> str:
    lines = ["| method | final test loss | best test loss | final train loss | s/epoch |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['final_test_loss']:.4g} | {r['best_test_loss']:.4g} | "
                     f"{r['final_train_loss']:.4g} | {r['seconds_per_epoch']:.3f} |")
    return "\n".join(lines) + "\n"
