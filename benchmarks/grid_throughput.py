"""Grid throughput: run-updates per second of the cart-pole paper grid (methods R, M, C, S x clip none/value/norm
x poles) trained as a sweep would train it, with one process per run or with batched groups of runs.

One update is one mini-batch step of one run (an epoch of a run is n_train / batch_size updates: 32 at the
published sizes). Every variant trains the same runs into a fresh temporary sweep folder (complete run folders:
checkpoints every epoch, metrics, figures, as a user gets them; deleted afterwards), in a fresh Python process
(so no compiled program carries over from one variant to the next; `--workers 1` trains in that process, as
``stablebptt sweep --workers 1`` does). Variants:

    proc:W         one process per run: `sweep(..., batch_runs="off", workers=W)`
    mixed:W        batched groups, any mix of methods in one program (`plan_groups(mixed=True)`: one group per pole
                   count; `sweep(..., batch_runs="on")`), W worker processes, each training one group at a time
    method:W       batched groups of one method each (`plan_groups(mixed=False)`: 3 runs, one per clipping mode)
    mixed/N:W      the same with groups of at most N runs (`max_size=N`), likewise method/N:W

Reported per variant (medians over `--rounds` rounds; the variants of a round run one after the other, in an
order rotated from round to round, so that load from other processes hits all alike):

    updates/s      run-updates / wall seconds of the whole sweep (compilation, process start-up and files included)
    steady/s       the same without the fixed costs (compilation, set-up, the final files of each run): the wall
                   time scaled by the fraction of the jobs' time spent in epochs and in their per-epoch files
                   (metrics, checkpoint). This is the rate a 1000-epoch run approaches.
    full grid h    extrapolated wall time of the whole paper grid (48 runs x 1000 epochs): fixed costs scaled by
                   48 / runs, plus 48,000 run-epochs at the measured steady time per run-epoch (from the pole counts
                   measured; 1, 3 and 4 poles cost more or less than 2)

    python benchmarks/grid_throughput.py                  # poles 2 (12 runs) x 20 epochs, 2 rounds
    python benchmarks/grid_throughput.py --poles 1,2,3,4  # all 48 runs (about 4x longer)
    python benchmarks/grid_throughput.py --quick          # proc:1 and mixed:1, 2 poles, 2 epochs, horizon 20, 1 round

On an accelerator the defaults are all 48 runs (poles 1-4) and one more variant, mixed:4: the 4 groups of 12 (one
per pole count; poles change the array shapes, so they cannot share one program) all in flight at once.
`--device-defaults` takes those defaults on any backend, so that CI's smoke lane runs the accelerator's path on
its CPUs (``--quick --device-defaults``: the 48 runs at the quick sizes, mixed:4 only) before a GPU is lent:

    python benchmarks/grid_throughput.py --quick --device-defaults
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The parent process only asks JAX which device it has: it must not take the GPU's memory from the variants' processes,
# which get the environment as it was given (`measure`).
_PREALLOCATE = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
if "--child" not in sys.argv:
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"

import _common  # noqa: E402 -- after the environment above
import jax  # noqa: E402

FULL_RUNS = 48
FULL_EPOCHS = 1000


# ------------------------------------------------------------------------------------------------ the grid


def grid_runs(poles: list[int], epochs: int, horizon: int | None, n_train: int | None) -> list:
    from stablebptt.experiments.grid import expand, paper_grid

    grid: dict[str, list] = paper_grid("cartpole") | {"n_poles": poles, "epochs": [epochs]}
    if horizon is not None:
        grid["horizon"] = [horizon]
    if n_train is not None:
        grid["n_train"] = [n_train]
    return expand("cartpole", grid)


def parse_variant(spec: str) -> dict[str, Any]:
    """``proc:2``, ``mixed:1``, ``method/3:2`` -> grouping, max_size, workers."""
    grouping, _, workers = spec.partition(":")
    grouping, _, size = grouping.partition("/")
    if grouping not in ("proc", "mixed", "method") or not workers.isdigit() or (size and not size.isdigit()):
        raise SystemExit(f"bad variant {spec!r}; write GROUPING[/MAX_SIZE]:WORKERS with GROUPING proc, mixed or method")
    if grouping == "proc" and size:
        raise SystemExit(f"bad variant {spec!r}: proc has no group size")
    return {"name": spec, "grouping": grouping, "max_size": int(size) if size else None, "workers": int(workers)}


# ------------------------------------------------------------------------------------------------ child side

_RECORD_SECONDS = [0.0]


def _instrument() -> None:
    """Time `Session.record_epoch` (the per-epoch files: metrics.csv and the checkpoint) in this process."""
    from stablebptt.runs.folder import Session

    if getattr(Session.record_epoch, "_timed", False):
        return
    original = Session.record_epoch

    def record_epoch(self, *args, **kwargs):
        begin = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            _RECORD_SECONDS[0] += time.perf_counter() - begin

    record_epoch._timed = True  # type: ignore[attr-defined]
    Session.record_epoch = record_epoch  # type: ignore[method-assign]


def timed_job(fn, args: tuple) -> list[dict]:
    """A sweep job (`sweep.run_job` or `sweep.run_batch_job`) with the time of its per-epoch files added to its
    results (`record_seconds`, split evenly over the job's runs). Top level: picklable for spawned workers."""
    _instrument()
    _RECORD_SECONDS[0] = 0.0
    results = fn(*args)
    for r in results:
        r["record_seconds"] = _RECORD_SECONDS[0] / max(len(results), 1)
    return results


def plan(configs: list, variant: dict[str, Any]) -> list[list[int]] | None:
    """The groups of `variant` (None: one process per run), planned as `sweep` plans them."""
    from stablebptt.runs import plan_groups

    if variant["grouping"] == "proc":
        return None
    return plan_groups(configs, mixed=variant["grouping"] == "mixed", max_size=variant["max_size"])


def sweep_jobs(out: Path, runs: list, variant: dict[str, Any]) -> list[dict]:
    """What `stablebptt.experiments.sweep.sweep(out, runs, workers=W, batch_runs=..., log=None, report=False)` does,
    with the grouping of `variant` (sweep itself takes only "on": mixed groups without a size limit) and each job
    wrapped in `timed_job`."""
    from stablebptt.experiments.backends import run_jobs
    from stablebptt.experiments.sweep import check_folders, run_batch_job, run_job, write_manifest

    out.mkdir(parents=True, exist_ok=True)
    check_folders(out, runs)
    write_manifest(out, runs[0].config.task, runs)
    groups = plan([r.config for r in runs], variant)
    if groups is None:
        jobs = [(timed_job, (run_job, (str(out / r.name), r.config))) for r in runs]
    else:
        jobs = [
            (timed_job, (run_batch_job, ([str(out / runs[i].name) for i in g], [runs[i].config for i in g])))
            for g in groups
        ]
    results: list[dict] = []
    for _, job_results in run_jobs(jobs, backend="local", workers=variant["workers"]):
        results.extend(job_results)
    return results


def read_metrics(run_dir: str) -> tuple[int, float]:
    """Epochs trained (rows of metrics.csv, a diverged epoch included) and their summed epoch_time."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return 0, 0.0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return len(rows), sum(float(r["epoch_time"]) for r in rows)


def child(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    variant = spec["variant"]
    runs = grid_runs(spec["poles"], spec["epochs"], spec["horizon"], spec["n_train"])
    groups = plan([r.config for r in runs], variant)
    with tempfile.TemporaryDirectory(prefix="grid_throughput-", dir=spec.get("tmp")) as tmp:
        load0 = os.getloadavg()
        cpu0 = time.process_time()
        begin = time.perf_counter()
        results = sweep_jobs(Path(tmp) / "sweep", runs, variant)
        wall = time.perf_counter() - begin
        cpu = time.process_time() - cpu0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += children.ru_utime + children.ru_stime
        load1 = os.getloadavg()
        metrics = {r["run_dir"]: read_metrics(r["run_dir"]) for r in results}
    updates_per_epoch = runs[0].config.train.n_train // runs[0].config.train.batch_size
    epochs = sum(m[0] for m in metrics.values())
    epoch_s = sum(m[1] for m in metrics.values())
    record_s = sum(r.get("record_seconds", 0.0) for r in results)
    job_s = sum(r["seconds"] for r in results)
    statuses = [r["status"] for r in results]
    messages = sorted({r["message"] for r in results if r["message"]})
    steady_wall = wall * min((epoch_s + record_s) / job_s, 1.0) if job_s > 0 else wall
    payload = {
        "variant": variant,
        "runs": len(runs),
        "groups": None if groups is None else [len(g) for g in groups],
        "jobs": len(runs) if groups is None else len(groups),
        "wall_s": wall,
        "cpu_s": cpu,
        "run_epochs": epochs,
        "updates": epochs * updates_per_epoch,
        "updates_per_epoch": updates_per_epoch,
        "epoch_s": epoch_s,
        "record_s": record_s,
        "job_s": job_s,
        "steady_wall_s": steady_wall,
        "fixed_wall_s": wall - steady_wall,
        "load_before": load0,
        "load_after": load1,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "messages": messages,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
    }
    Path(out_path).write_text(json.dumps(payload))
    return 0


# ------------------------------------------------------------------------------------------------ parent side


def measure(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One variant in a fresh Python process."""
    with tempfile.TemporaryDirectory(prefix="grid_throughput-spec-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
        if _PREALLOCATE is not None:
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = _PREALLOCATE
        begin = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path), "--child-out", str(out_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        process_s = time.perf_counter() - begin
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(
                f"variant {spec['variant']['name']} failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        result = json.loads(out_path.read_text())
    result["process_s"] = process_s  # with the interpreter's start-up and imports
    return result


def summarize(name: str, samples: list[dict[str, Any]], full_runs: int, full_epochs: int) -> dict[str, Any]:
    def med(key: str) -> float:
        return statistics.median(s[key] for s in samples)

    first = samples[0]
    wall, steady, fixed = med("wall_s"), med("steady_wall_s"), med("fixed_wall_s")
    run_epochs = first["run_epochs"]
    full_s = fixed * full_runs / first["runs"] + full_runs * full_epochs * steady / run_epochs
    return {
        "variant": name,
        "runs": first["runs"],
        "groups": first["groups"],
        "jobs": first["jobs"],
        "workers": first["variant"]["workers"],
        "rounds": len(samples),
        "run_epochs": run_epochs,
        "updates": first["updates"],
        "wall_s": wall,
        "wall_min_s": min(s["wall_s"] for s in samples),
        "cpu_s": med("cpu_s"),
        "steady_wall_s": steady,
        "fixed_wall_s": fixed,
        "updates_per_s": first["updates"] / wall,
        "steady_updates_per_s": first["updates"] / steady,
        "updates_per_cpu_s": first["updates"] / med("cpu_s"),
        "full_grid_hours": full_s / 3600,
        "statuses": first["statuses"],
        "messages": sorted({m for s in samples for m in s["messages"]}),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="proc:1 and mixed:1; 2 poles, 2 epochs, horizon 20, n_train 64, 1 round"
    )
    parser.add_argument("--poles", default=None, help="pole counts of the grid (default 2; 1,2,3,4 on an accelerator)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 20; quick 2)")
    parser.add_argument("--horizon", type=int, default=None, help="default: the task's (100); quick 20")
    parser.add_argument("--n-train", type=int, default=None, help="default: 256; quick 64")
    parser.add_argument("--rounds", type=int, default=None, help="default 2; quick 1")
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated GROUPING[/MAX_SIZE]:WORKERS (default proc:1,proc:2,mixed:1,mixed:2,"
        "method:1,method:2; plus mixed/6:2 when the grid has one pole count, so that two "
        "mixed groups exist for two workers; plus mixed:4 on an accelerator)",
    )
    parser.add_argument(
        "--device-defaults",
        action="store_true",
        help="the defaults of an accelerator (poles 1-4, mixed:4) on any backend; with --quick: mixed:4 only",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to one variant")
    parser.add_argument("--tmp", default=None, help="where the temporary sweep folders go (default: the system's)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.child_out)

    accelerator = jax.default_backend() != "cpu" or args.device_defaults
    device_path = args.device_defaults or not args.quick  # an accelerator's defaults: poles 1-4 unless quick
    poles = [int(p) for p in (args.poles or ("1,2,3,4" if accelerator and device_path else "2")).split(",")]
    epochs = args.epochs or (2 if args.quick else 20)
    horizon = args.horizon or (20 if args.quick else None)
    n_train = args.n_train or (64 if args.quick else None)
    rounds = args.rounds or (1 if args.quick else 2)
    if args.variants:
        specs = args.variants.split(",")
    elif args.quick and args.device_defaults:
        specs = ["mixed:4"]
    elif args.quick:
        specs = ["proc:1", "mixed:1"]
    else:
        specs = ["proc:1", "proc:2", "mixed:1", "mixed:2", "method:1", "method:2"]
        if len(poles) == 1:
            specs.append("mixed/6:2")
        if accelerator:
            specs.append("mixed:4")
    variants = [parse_variant(s) for s in specs]
    runs = grid_runs(poles, epochs, horizon, n_train)  # checks the grid before any work
    configs = [r.config for r in runs]
    print(
        f"cart-pole paper grid, poles {poles}: {len(runs)} runs x {epochs} epochs, "
        f"{configs[0].train.n_train // configs[0].train.batch_size} updates per epoch; "
        f"backend {jax.default_backend()}, {jax.device_count()} device(s); {rounds} round(s)"
    )
    for v in variants:
        groups = plan(configs, v)
        print(
            f"  {v['name']}: "
            + (
                "one process per run"
                if groups is None
                else f"{len(groups)} group(s) of {sorted({len(g) for g in groups})}"
            )
            + f", {v['workers']} worker(s)"
        )

    samples: dict[str, list[dict]] = {v["name"]: [] for v in variants}
    errors: dict[str, list[str]] = {}
    loads = [os.getloadavg()]
    begin = time.perf_counter()
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            spec = {
                "variant": v,
                "poles": poles,
                "epochs": epochs,
                "horizon": horizon,
                "n_train": n_train,
                "tmp": args.tmp,
            }
            try:
                result = measure(spec, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as e:  # reported; the other variants go on
                print(f"  round {r + 1}/{rounds} {v['name']}: FAILED {e}", flush=True)
                errors.setdefault(v["name"], []).append(str(e))
                continue
            samples[v["name"]].append(result)
            loads += [tuple(result["load_before"]), tuple(result["load_after"])]
            print(
                f"  round {r + 1}/{rounds} {v['name']}: {result['wall_s']:.1f} s wall, "
                f"{result['updates'] / result['wall_s']:.0f} updates/s, statuses {result['statuses']}, "
                f"load {result['load_after'][0]:.1f}",
                flush=True,
            )
            if result["messages"]:
                print(f"    messages: {result['messages']}")
    total_s = time.perf_counter() - begin

    results = [summarize(v["name"], samples[v["name"]], FULL_RUNS, FULL_EPOCHS) for v in variants if samples[v["name"]]]
    by_name = {r["variant"]: r for r in results}
    for base in ("proc:1", "proc:2"):
        if base in by_name:
            for r in results:
                r[f"ratio_to_{base}"] = r["updates_per_s"] / by_name[base]["updates_per_s"]
                r[f"steady_ratio_to_{base}"] = r["steady_updates_per_s"] / by_name[base]["steady_updates_per_s"]

    def cell(r: dict, key: str) -> str:
        return f"{r[key]:.2f}" if key in r else "-"

    print()
    _common.print_table(
        [
            "variant",
            "jobs",
            "wall s",
            "updates/s",
            "steady/s",
            "/proc:1",
            "/proc:2",
            "steady /proc:1",
            "steady /proc:2",
            "updates/CPU s",
            "full grid h",
        ],
        [
            [
                r["variant"],
                r["jobs"],
                r["wall_s"],
                r["updates_per_s"],
                r["steady_updates_per_s"],
                cell(r, "ratio_to_proc:1"),
                cell(r, "ratio_to_proc:2"),
                cell(r, "steady_ratio_to_proc:1"),
                cell(r, "steady_ratio_to_proc:2"),
                r["updates_per_cpu_s"],
                r["full_grid_hours"],
            ]
            for r in results
        ],
    )
    one = [load[0] for load in loads]
    print(
        f"\nfull grid h: {FULL_RUNS} runs x {FULL_EPOCHS} epochs at this run's horizon and n_train, from the pole "
        f"counts {poles}; backend {jax.default_backend()}, {jax.device_count()} device(s)"
    )
    print(f"load average (1 min) during the run: {min(one):.1f} - {max(one):.1f}; {total_s / 60:.1f} min in all")
    bad = [r for r in results if set(r["statuses"]) - {"complete", "diverged"}]
    for r in bad:
        print(f"WARNING {r['variant']}: statuses {r['statuses']}, messages {r['messages']}")

    for name, messages in errors.items():
        print(f"ERROR {name}: {messages[0]}")
    if not results:
        print("every variant failed: nothing written")
        return 1
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {
        "task": "cartpole",
        "poles": poles,
        "runs": len(runs),
        "epochs": epochs,
        "horizon": horizon,
        "n_train": n_train,
        "updates_per_epoch": configs[0].train.n_train // configs[0].train.batch_size,
        "full_grid": {"runs": FULL_RUNS, "epochs": FULL_EPOCHS},
        "rounds": rounds,
        "variants": specs,
        "device_defaults": args.device_defaults,
    }
    payload = _common.result(
        "grid_throughput",
        quick=args.quick,
        settings=settings,
        rows=results,
        device={
            "backend": jax.default_backend(),
            "device_count": jax.device_count(),
            "devices": [str(d) for d in jax.devices()],
        },
        total_s=total_s,
        load_average_1min={"min": min(one), "max": max(one)},
        loads=loads,
        errors=errors,
    )
    _common.write_json(out, payload)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
