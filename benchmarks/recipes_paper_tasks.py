"""The two training recipes on the paper's own tasks (docs/brax.md, "Each recipe on the other's home ground").

`benchmarks/vs_brax_apg.py` compares the recipes on Brax's environments; this script compares them on the
paper's tasks, where the paper's recipe is at home:

- ``R``, ``C``: the paper's recipe (its published settings: every update unrolls the whole horizon from a
  mini-batch of 8 fixed initial states, Adam with Keras' epsilon, constant learning rate, no clipping);
- ``stream-R``, ``stream-M``, ``stream-C``: Brax's APG recipe with the gradient of R (APG's own), M or C: the
  stream protocol (8 environments run on; every update unrolls a window of a quarter of the horizon from where the
  last one stopped; an episode of the task's horizon restarts from a fresh `Task.sample`), Adam with betas
  (0.7, 0.95) and epsilon 1e-8 outside the root (optax), every gradient entry clipped to 1, and a learning rate
  decaying exponentially to 0.406 of its start over the run (APG's 0.997 per update over its 300 updates,
  stretched to this run's length). The task's loss is taken over each window (cart pole: the window's last
  state; repulsion: its steps and controls).

Every variant gets the same environment steps (an "epoch" of either recipe is 32 x 8 x horizon steps: 32 updates
of the paper's recipe, 128 of APG's) and is evaluated alike after every epoch: the task's loss over its horizon
from the same 256 test states (the dataset protocol's test loss), no NaN skip on any side (C's sign test counts
a non-finite g_R entry as disagreement; no run has had one). The learning rate of each variant and setting is
chosen from a sweep over 1e-4, 1e-3, 1e-2 on seed 100 (phase ``tune``), the reported runs use seeds 42, 43, 44
(phase ``report``). Every finished run is kept as a compact record (as the reproduction campaign's,
`stablebptt.experiments.campaign`) under `--records`, so the study continues across stops of work and trains
nothing twice:

    python benchmarks/recipes_paper_tasks.py              # train what is missing (tune, then report) and tabulate
    python benchmarks/recipes_paper_tasks.py --phase none --figure docs/figures/recipes_paper_tasks.png
                                                          # only the table and figure from the records
    python benchmarks/recipes_paper_tasks.py --quick      # smoke run: one setting, 2 epochs, 2 variants

Writes the JSON (`--out`), a CSV of every median curve next to it and a figure (the JSON's path with .png).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

import _common
import numpy as np

SETTINGS = (("cartpole", "n_poles", 2), ("cartpole", "n_poles", 3), ("repulsion", "rc", 0.001))
VARIANTS = {  # variant: (method, recipe)
    "R": ("R", "paper"),
    "C": ("C", "paper"),
    "stream-R": ("R", "apg"),
    "stream-M": ("M", "apg"),
    "stream-C": ("C", "apg"),
}
LRS = (1e-4, 1e-3, 1e-2)
TUNE_SEED = 100
SEEDS = (42, 43, 44)


class Refused(Exception):
    """A setting this script cannot run, with the one line that says why."""


def recipe(task: str, recipe_name: str, epochs: int) -> dict[str, Any]:
    """The training settings (`TrainSettings` fields) of `recipe_name` on `task` for `epochs` epochs of
    ``32 x 8 x horizon`` environment steps each (APG's: `stablebptt.experiments.study.apg_settings`, which the
    SHAC study's APG stages train too)."""
    from stablebptt.core.checks import BadInput
    from stablebptt.experiments.study import apg_settings

    if recipe_name == "paper":
        return {"epochs": epochs}
    try:
        return {"epochs": epochs, **apg_settings(task, epochs)}
    except BadInput as e:
        raise Refused(str(e)) from None


def stage(
    key: str, task: str, level_key: str, level: Any, variant: str, lrs: list[float], seeds: list[int], epochs: int
):
    from stablebptt.experiments.campaign import Stage

    method, recipe_name = VARIANTS[variant]
    settings = recipe(task, recipe_name, epochs)
    grid = {level_key: [level], "method": [method], "seed": seeds, "lr": lrs}
    grid.update({k: [v] for k, v in settings.items() if k != "epochs"})
    grid.setdefault("clip", ["none"])
    return Stage(key, f"{variant}, {task} {level_key}={level}", task, grid, epochs=settings["epochs"])


def _records_of(records, st) -> dict[str, Any]:
    from stablebptt.experiments.campaign import progress

    (p,), _, _ = progress(records, [st])
    return {r.name: r for r in p.recorded.values()}


def _final(record) -> float:
    values = record.curve("test_loss")
    return float(values[-1]) if record.status == "complete" and np.isfinite(values[-1]) else math.inf


def chosen_lr(records, task, level_key, level, variant, epochs, lrs) -> float | None:
    """The learning rate of the lowest final test loss on the tuning seed; None until every rate is recorded."""
    st = stage("tune", task, level_key, level, variant, list(lrs), [TUNE_SEED], epochs)
    got = _records_of(records, st)
    if len(got) < len(st.runs()):
        return None
    by_lr = {r.settings()["lr"]: _final(r) for r in got.values()}
    return min(by_lr, key=lambda lr: by_lr[lr])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", default="all", choices=("all", "tune", "report", "none"), help="what to train")
    p.add_argument("--epochs", type=int, default=250, help="epochs of 32 x 8 x horizon steps (default: %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated of " + ", ".join(VARIANTS))
    p.add_argument("--records", type=Path, default=Path("results/recipes"), help="records folder")
    p.add_argument("--work", type=Path, default=Path("runs/recipes"), help="run folders")
    p.add_argument("--batch-runs", default="off", choices=("auto", "on", "off"), help="train seeds as one program")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/recipes/cache"),
        help="JAX's persistent compilation cache (runs that differ only in their seed share compiled programs)",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: cart pole 2 poles, 2 epochs, R and stream-C, 1 seed"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/recipes_paper_tasks.json)")
    p.add_argument("--figure", type=Path, default=None, help="figure (default: the JSON's path with .png)")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import jax

    from stablebptt.experiments.campaign import load_records, train_missing
    from stablebptt.experiments.study import APG_DECAY_OVER_RUN, APG_WINDOWS

    jax.config.update("jax_compilation_cache_dir", str(args.cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

    settings = SETTINGS[:1] if args.quick else SETTINGS
    variants = ["R", "stream-C"] if args.quick else args.variants
    lrs = [1e-3] if args.quick else list(LRS)
    epochs = 2 if args.quick else args.epochs
    seeds = list(SEEDS[:1] if args.quick else SEEDS)
    if args.quick and args.records == Path("results/recipes"):
        args.records, args.work = Path(args.work) / "quick-records", Path(args.work) / "quick"
    out = args.out or _common.default_output(__file__, args.quick)
    log = print
    if args.phase in ("all", "tune"):
        for task, level_key, level in settings:
            for variant in variants:
                st = stage("tune", task, level_key, level, variant, lrs, [TUNE_SEED], epochs)
                train_missing(args.records, args.work, [st], batch_runs=args.batch_runs, log=log)
    rows: list[dict[str, Any]] = []
    curves: dict[str, np.ndarray] = {}
    for task, level_key, level in settings:
        for variant in variants:
            records = load_records(args.records)
            lr = chosen_lr(records, task, level_key, level, variant, epochs, lrs)
            if lr is None:
                print(f"{task} {level_key}={level} {variant}: tuning not complete; no reported runs yet")
                continue
            st = stage("report", task, level_key, level, variant, [lr], seeds, epochs)
            if args.phase in ("all", "report"):
                train_missing(args.records, args.work, [st], batch_runs=args.batch_runs, log=log)
            got = dict(
                sorted(_records_of(load_records(args.records), st).items(), key=lambda kv: kv[1].settings()["seed"])
            )
            finals = [_final(r) for r in got.values()]
            finite = [x for x in finals if math.isfinite(x)]
            row = {
                "task": task,
                "level": f"{level_key}={level}",
                "variant": variant,
                "lr": lr,
                "seeds": sorted(r.settings()["seed"] for r in got.values()),
                "final": finals,
                "final_median": float(np.median(finite)) if finite else None,
                "stopped": sum(not math.isfinite(x) for x in finals),
                "s_per_epoch": float(np.median([t for r in got.values() for t in r.curve("epoch_time")]))
                if got
                else None,
            }
            if got:
                stacked = np.stack([r.curve("test_loss") for r in got.values() if r.status == "complete"])
                curves[f"{task} {level_key}={level} {variant}"] = np.median(stacked, axis=0)
                row["median_at"] = {
                    str(e): float(np.median(stacked[:, e - 1]))
                    for e in sorted({max(1, epochs // 4), max(1, epochs // 2), epochs})
                }
            rows.append(row)
    if not rows:
        print("no reported runs recorded yet", file=sys.stderr)
        return 0 if args.phase != "none" else 1
    _common.print_table(
        ["setting", "variant", "lr", "final test loss (median [min, max])", "s/epoch"],
        [
            [
                f"{r['task']} {r['level']}",
                r["variant"],
                f"{r['lr']:g}",
                _spread(r["final"]),
                f"{r['s_per_epoch']:.3g}" if r["s_per_epoch"] else "-",
            ]
            for r in rows
        ],
    )
    payload = _common.result(
        "recipes_paper_tasks",
        quick=args.quick,
        settings={
            "epochs": epochs,
            "env_steps_per_epoch": "32 x 8 x horizon",
            "lrs": lrs,
            "tune_seed": TUNE_SEED,
            "seeds": seeds,
            "windows_per_episode": APG_WINDOWS,
            "apg_decay_over_run": APG_DECAY_OVER_RUN,
            "records": str(args.records),
        },
        rows=rows,
    )
    _common.write_json(out, payload)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["curve", "epoch", "median_test_loss"])
        for name, c in curves.items():
            w.writerows([name, e + 1, float(v)] for e, v in enumerate(c))
    _figure(curves, settings, args.figure or out.with_suffix(".png"), epochs)
    return 0


def _spread(values: list[float]) -> str:
    finite = [x for x in values if math.isfinite(x)]
    stopped = len(values) - len(finite)
    text = f"{np.median(finite):.3g} [{min(finite):.3g}, {max(finite):.3g}]" if finite else "-"
    return text + (f", {stopped} stopped" if stopped else "")


def _figure(curves: dict[str, np.ndarray], settings, path: Path, epochs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"R": "C0", "M": "C1", "C": "C2"}
    fig, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings), 3.4), squeeze=False)
    for ax, (task, level_key, level) in zip(axes[0], settings):
        prefix = f"{task} {level_key}={level} "
        for name, c in curves.items():
            if name.startswith(prefix):
                variant = name[len(prefix) :]
                method, recipe_name = VARIANTS[variant]
                ax.plot(
                    np.arange(1, len(c) + 1),
                    c,
                    color=colors[method],
                    ls="-" if recipe_name == "paper" else "--",
                    label=f"{variant} ({'paper' if recipe_name == 'paper' else 'APG'}'s recipe)",
                )
        ax.set_yscale("log")
        ax.set_title(f"{task}, {level_key} = {level}")
        ax.set_xlabel(f"epoch (32 x 8 x horizon env steps), of {epochs}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test loss, median over seeds")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
