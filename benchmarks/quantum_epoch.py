"""One quantum-control epoch, a baseline revision against the working tree, side by side in one process.

The package at ``--baseline`` (a git revision; default ``5146d2a``, the code before the quantum epoch was made
cheaper for issue 22) is extracted with ``git archive`` into a temporary folder and imported under another name,
``stablebptt_baseline``, next to the installed ``stablebptt``. Both build the same epoch (published settings:
target 3, 32 points, 128 steps, batch 8, 256 + 256 states, Adam 1e-3 with Keras epsilon) from the same data and
initial parameters, and every variant is timed interleaved (one call of each per round), so that load from other
processes hits old and new alike. Parts timed per method: the whole epoch (32 updates in a `lax.scan`, then
the loss on the training and test sets, what `train` runs), one update, and the evaluation of 256 states.

Before timing, one epoch of each is run from the same state and the results compared (relative to each
leaf's largest entry): the change must be float32 rounding, not a different computation.

    python benchmarks/quantum_epoch.py                 # R, M, C, S; 10 rounds; both cores
    python benchmarks/quantum_epoch.py --cpus 1        # pinned to one core (as the campaign's processes run)
    python benchmarks/quantum_epoch.py --quick         # C, 1 round
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = "5146d2a"  # the last commit before issue 22's quantum speed-up
BASELINE_NAME = "stablebptt_baseline"


def extract_baseline(revision: str, into: Path) -> None:
    """``src/stablebptt`` at `revision` as the package ``stablebptt_baseline`` in `into` (relative imports
    only, so the renamed copy imports itself, never the working tree)."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "src/stablebptt"],
            cwd=HERE.parent,
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise SystemExit(f"cannot read revision {revision!r} from git: {detail.decode().strip() or error}") from None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "src" / "stablebptt").rename(into / BASELINE_NAME)


def build(pkg: ModuleType, method: str) -> dict[str, Any]:
    """The epoch, one update and the evaluation of `pkg` for `method`, with their arguments."""
    import equinox as eqx
    import jax
    import optax

    training = importlib.import_module(pkg.__name__ + ".training")
    new_api = hasattr(training, "UpdateStep")  # one epoch builder, from settings (issue 42)
    train = importlib.import_module(pkg.__name__ + (".training.epoch" if new_api else ".training.train"))
    optim = importlib.import_module(pkg.__name__ + ".training.optim")
    task = pkg.tasks.Quantum(target=3)
    key = jax.random.PRNGKey(42)
    data = train.make_data(task, jax.random.split(key)[0])
    params = task.init_controller(jax.random.split(key)[1])
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    tx = optim.optimizer("adam", 1e-3, "none", 1.0, "keras")
    state = train.TrainState(diff, tx.init(diff))
    if new_api:
        settings = training.TrainSettings(method=method, batch_size=8)
        epoch = jax.jit(train.make_epoch(task, settings, static, protocol=train.Dataset(), tx=tx))
    else:
        epoch = jax.jit(train.make_epoch(task, method, tx, static, 8))
    vg = pkg.value_and_grad(train.user_loss(task), task.step, task.controller, task.horizon, method)

    def update(state: Any, batch: Any) -> Any:
        _, grads, _ = vg(eqx.combine(state.params, static), batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return train.TrainState(optax.apply_updates(state.params, updates), opt_state)

    evaluate = jax.jit(lambda d, x: train.evaluate(task, eqx.combine(d, static), x))
    return {
        "epoch": (epoch, (state, data)),
        "update": (jax.jit(update), (state, data.train[:8])),
        "evaluation (256 states)": (evaluate, (diff, data.test)),
        "data": data,
    }


def max_relative_difference(a: Any, b: Any) -> float:
    """Largest ``|a - b| / max|a|`` over the leaves of two pytrees of the same structure."""
    import jax
    import numpy as np

    worst = 0.0
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(leaf_a, np.float64), np.asarray(leaf_b, np.float64)
        scale = max(float(np.max(np.abs(x))), 1e-30)
        worst = max(worst, float(np.max(np.abs(x - y))) / scale)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    parser.add_argument("--methods", default=None, help="comma-separated (default R,M,C,S; quick C)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10; quick 1)")
    parser.add_argument("--cpus", type=int, default=None, help="pin the process to this many cores (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.cpus is not None:  # before JAX starts its threads
        available = sorted(os.sched_getaffinity(0))
        if not 1 <= args.cpus <= len(available):
            parser.error(f"--cpus must be 1..{len(available)}, got {args.cpus}")
        os.sched_setaffinity(0, available[-args.cpus :])
    methods = (args.methods or ("C" if args.quick else "R,M,C,S")).split(",")
    rounds = args.rounds or (1 if args.quick else 10)

    import _common

    import stablebptt as new

    with tempfile.TemporaryDirectory() as tmp:
        try:
            extract_baseline(args.baseline, Path(tmp))
        except SystemExit as error:
            if not args.quick:
                raise
            # a smoke run in a clone without that commit (a shallow CI clone): the working tree against itself
            print(f"note: {error}; this smoke run compares the working tree with itself")
            shutil.copytree(HERE.parent / "src" / "stablebptt", Path(tmp) / BASELINE_NAME)
            args.baseline = "the working tree (baseline commit not in this clone)"
        sys.path.insert(0, tmp)
        old = importlib.import_module(BASELINE_NAME)
        fns: dict[str, Any] = {}
        agreement: dict[str, dict[str, float]] = {}
        for method in methods:
            built = {tag: build(pkg, method) for tag, pkg in (("old", old), ("new", new))}
            if max_relative_difference(built["old"]["data"], built["new"]["data"]) != 0.0:
                raise SystemExit("the baseline draws other data: the comparison would not be like for like")
            (state_old, metrics_old), (state_new, metrics_new) = (
                built[tag]["epoch"][0](*built[tag]["epoch"][1]) for tag in ("old", "new")
            )
            agreement[method] = {
                "parameters after one epoch": max_relative_difference(state_old.params, state_new.params),
                "test loss after one epoch": max_relative_difference(
                    metrics_old["test_loss"], metrics_new["test_loss"]
                ),
            }
            for part in ("epoch", "update", "evaluation (256 states)"):
                if part.startswith("evaluation") and method != methods[0]:
                    continue  # the same for every method
                for tag in ("old", "new"):
                    fn, fn_args = built[tag][part]
                    label = part if part.startswith("evaluation") else f"{part} {method}"
                    fns[f"{label} | {tag}"] = lambda fn=fn, fn_args=fn_args: fn(*fn_args)
        timings = _common.time_interleaved(fns, rounds, warmup=1)

    rows, summary = [], []
    for name in dict.fromkeys(k.split(" | ")[0] for k in fns):
        old_t, new_t = timings[f"{name} | old"], timings[f"{name} | new"]
        ratio = {stat: old_t[stat] / new_t[stat] for stat in ("median_s", "min_s", "cpu_median_s")}
        summary.append({"part": name, "old": old_t, "new": new_t, "old/new": ratio})
        rows.append(
            [
                name,
                old_t["median_s"] * 1e3,
                new_t["median_s"] * 1e3,
                ratio["median_s"],
                ratio["min_s"],
                old_t["cpu_median_s"] * 1e3,
                new_t["cpu_median_s"] * 1e3,
                ratio["cpu_median_s"],
            ]
        )
    cores = len(os.sched_getaffinity(0))
    print(f"\nquantum epoch, baseline {args.baseline} (old) against the working tree (new); {rounds} interleaved")
    print(f"rounds on {cores} core(s), load average {os.getloadavg()[0]:.1f}; times in ms\n")
    _common.print_table(
        ["part", "old wall", "new wall", "old/new wall", "old/new min", "old CPU", "new CPU", "old/new CPU"], rows
    )
    print("\nagreement after one epoch from the same state (max |old - new| / max |old| per leaf):")
    for method, values in agreement.items():
        print(f"  {method}: " + ", ".join(f"{k} {v:.1e}" for k, v in values.items()))
    out = args.out or _common.default_output(__file__, args.quick)
    if args.cpus is not None and args.out is None:
        out = Path(str(out).replace(".json", f"_cpus{args.cpus}.json"))
    settings = {"baseline": args.baseline, "cores": cores, "rounds": rounds, "methods": methods}
    _common.write_json(
        out, _common.result("quantum_epoch", quick=args.quick, settings=settings, rows=summary, agreement=agreement)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
