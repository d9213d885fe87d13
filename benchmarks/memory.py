"""Peak memory and time per update against the horizon, with and without rematerialisation (``remat``; issue 5,
benchmark 2).

Cart pole with 2 poles, batch 8, the published 2x100 MLP and the published time step (duration = horizon/100).
Every configuration runs in its own subprocess, so each peak is its own. Two memory figures per configuration:

- ``xla_temp_mb``: XLA's account of the compiled update's temporary buffers
  (``jit(...).lower(...).compile().memory_analysis().temp_size_in_bytes``): the working memory of one update,
  exact and independent of the allocator;
- ``peak_rss_mb``: the subprocess's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``),
  which also counts the Python interpreter, JAX itself (``base_rss_mb``, measured before compiling) and the
  compiler; ``update_rss_mb`` = peak - base.

    python benchmarks/memory.py            # horizons 100 .. 100000
    python benchmarks/memory.py --quick    # horizon 100, 2 timed updates
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = [  # (label, method, backward)
    ("R", "R", "auto"),
    ("R autodiff", "R", "autodiff"),
    ("C joint", "C", "joint"),
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(horizon: int, method: str, backward: str, remat: str, repeats: int) -> dict:
    import equinox as eqx
    import jax
    import numpy as np

    import stablebptt as sb

    task = sb.tasks.CartPole(n_poles=2, horizon=horizon, duration=horizon / 100)
    params = task.init_controller(jax.random.PRNGKey(0))
    x0 = task.sample(jax.random.PRNGKey(1), 8)
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    vg = sb.value_and_grad(
        task.loss,
        task.step,
        task.controller,
        horizon,
        method,
        backward=backward,
        remat=None if remat == "none" else remat,
    )
    jax.block_until_ready(x0)
    base = _rss_mb()
    start = time.perf_counter()
    compiled = jax.jit(lambda d, x: vg(eqx.combine(d, static), x)).lower(diff, x0).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    jax.block_until_ready(compiled(diff, x0))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(diff, x0))
        times.append(time.perf_counter() - start)
    peak = _rss_mb()
    return {
        "horizon": horizon,
        "method": method,
        "backward": backward,
        "remat": remat,
        "xla_temp_mb": analysis.temp_size_in_bytes / 2**20,
        "xla_argument_mb": analysis.argument_size_in_bytes / 2**20,
        "xla_output_mb": analysis.output_size_in_bytes / 2**20,
        "base_rss_mb": base,
        "peak_rss_mb": peak,
        "update_rss_mb": peak - base,
        "time_per_update_s": float(np.median(times)),
        "compile_s": compile_s,
        "repeats": repeats,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--horizons", default=None, help="comma-separated (default 100,1000,10000,100000)")
    parser.add_argument("--remat", default="none,sqrt", help="comma-separated remat values (none, sqrt, states, K)")
    parser.add_argument("--repeats", type=int, default=None, help="timed updates per configuration")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--child", nargs=5, metavar=("HORIZON", "METHOD", "BACKWARD", "REMAT", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        h, m, b, c, r = args.child
        print(json.dumps(child(int(h), m, b, c, int(r))))
        return 0

    import _common

    horizons = [int(h) for h in (args.horizons or ("100" if args.quick else "100,1000,10000,100000")).split(",")]
    rows = []
    for horizon in horizons:
        repeats = args.repeats or (2 if args.quick else max(3, min(20, 200_000 // (horizon * 10))))
        for label, method, backward in CONFIGS:
            for remat in args.remat.split(","):
                cmd = [sys.executable, __file__, "--child", str(horizon), method, backward, remat, str(repeats)]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
                    out = proc.stdout.strip().splitlines()
                    row = (
                        json.loads(out[-1])
                        if proc.returncode == 0 and out
                        else {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
                    )
                except subprocess.TimeoutExpired:
                    row = {"error": f"timeout after {args.timeout:.0f} s"}
                row.update({"label": label, "horizon": horizon, "remat": remat})
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    _common.print_table(
        ["horizon", "variant", "remat", "XLA temp MB", "peak RSS MB", "update RSS MB", "s / update"],
        [
            [
                r["horizon"],
                r["label"],
                r["remat"],
                r.get("xla_temp_mb", "-"),
                r.get("peak_rss_mb", "-"),
                r.get("update_rss_mb", "-"),
                r.get("time_per_update_s", r.get("error", "-")),
            ]
            for r in rows
        ],
    )
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {
        "horizons": horizons,
        "remat": args.remat.split(","),
        "repeats": args.repeats,
        "timeout_s": args.timeout,
    }
    _common.write_json(out, _common.result("memory", quick=args.quick, settings=settings, rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
