"""Benchmark 3: throughput of a small grid trained with `--batch-runs` (one `jax.vmap`ped program) against the
same runs trained one at a time, in the same process. Both paths write complete run folders (checkpoints,
metrics) and include their compilation, as a sweep would.

    python benchmarks/batch_runs.py            # cart pole 2 poles, C, 8 seeds x 20 epochs
    python benchmarks/batch_runs.py --quick    # 2 seeds x 2 epochs, horizon 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common

from stablebptt.runs import RunConfig, RunFolder, ensure_batch


def configs(runs: int, epochs: int, horizon: int, method: str) -> list[RunConfig]:
    return [
        RunConfig.create("cartpole", {"n_poles": 2, "horizon": horizon}, method=method, epochs=epochs, seed=seed)
        for seed in range(runs)
    ]


def bench(runs: int, epochs: int, horizon: int, method: str) -> dict:
    cfgs = configs(runs, epochs, horizon, method)
    with tempfile.TemporaryDirectory() as tmp:
        one_dirs = [str(Path(tmp) / f"one-{i}") for i in range(runs)]
        begin = time.perf_counter()
        statuses = [RunFolder(d).ensure(c) for d, c in zip(one_dirs, cfgs)]
        one_s = time.perf_counter() - begin
        batch_dirs = [str(Path(tmp) / f"batch-{i}") for i in range(runs)]
        begin = time.perf_counter()
        batch_statuses = ensure_batch(batch_dirs, cfgs)
        batch_s = time.perf_counter() - begin
    assert all(s == "complete" for s in statuses), statuses
    assert all(s == "complete" for s in batch_statuses.values()), batch_statuses
    work = runs * epochs
    return {
        "runs": runs,
        "epochs": epochs,
        "horizon": horizon,
        "method": method,
        "one_at_a_time_s": one_s,
        "batched_s": batch_s,
        "one_at_a_time_run_epochs_per_s": work / one_s,
        "batched_run_epochs_per_s": work / batch_s,
        "speedup": one_s / batch_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--methods", default="C,R")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 8)
    epochs = args.epochs or (2 if args.quick else 20)
    horizon = 20 if args.quick else 100
    results = [bench(runs, epochs, horizon, m) for m in args.methods.split(",")]
    _common.print_table(
        ["method", "runs x epochs", "one at a time (run-epochs/s)", "batched (run-epochs/s)", "speedup"],
        [
            [
                r["method"],
                f"{r['runs']} x {r['epochs']}",
                r["one_at_a_time_run_epochs_per_s"],
                r["batched_run_epochs_per_s"],
                r["speedup"],
            ]
            for r in results
        ],
    )
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {"runs": runs, "epochs": epochs, "horizon": horizon, "methods": args.methods.split(",")}
    _common.write_json(out, _common.result("batch_runs", quick=args.quick, settings=settings, rows=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
