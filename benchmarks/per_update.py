"""Per-update time of every method for each task at its published size (issue 5, benchmarks 1 and 4).

Times one jitted update ``(params, x0) -> (value, update, info)`` of R, M, S, N, C (joint backward) and C
(two-pass backward), all with the automatic choices (``backward="auto"`` for R, M, S, N; ``param_vjp="auto"``),
plus C with the parameter VJP inside the sweep (``param_vjp="per_step"``), R through plain autodiff of
`rollout` and a hand-written ``jax.value_and_grad`` over a ``lax.scan`` unroll
(the yardstick R must not be slower than). All variants of a task are timed interleaved in the same process;
the ratios (C/R, M/R, S/R, N/R, C-joint/C-two-pass, R/plain) come from the same rounds. Targets at batch 8:
C/R <= 1.2, and M, S, N no slower than R.

    python benchmarks/per_update.py                      # all tasks, batch 8, 200 rounds
    python benchmarks/per_update.py --quick              # smoke run: the cart pole, 3 rounds
    python benchmarks/per_update.py --batch-sizes 8,1024 # benchmark 4 (GPU or whatever device JAX has)
    python benchmarks/per_update.py --tasks mjx-cartpole # MuJoCo MJX cart pole (needs stablebptt[mjx])

By default every registered task is timed; one whose optional dependency is missing (mjx-cartpole without
MuJoCo) is skipped with a note.
"""

from __future__ import annotations

import argparse
import time

import _common
import equinox as eqx
import jax
import jax.numpy as jnp

import stablebptt as sb

VARIANTS = {
    # name: (method, value_and_grad options)
    "R": ("R", {}),
    "R autodiff": ("R", {"backward": "autodiff"}),
    "M": ("M", {}),
    "S": ("S", {}),
    "N": ("N", {}),
    "C joint": ("C", {"backward": "joint"}),
    "C two-pass": ("C", {"backward": "two_pass"}),
    "C per-step VJP": ("C", {"backward": "joint", "param_vjp": "per_step"}),
}
PUBLISHED = {"cartpole": {"n_poles": 2}, "repulsion": {}, "quantum": {}, "mjx-cartpole": {}}


def plain_value_and_grad(task, static):
    """The yardstick: R written by hand, `jax.value_and_grad` of a `lax.scan` unroll."""

    def objective(diff, x0):
        params = eqx.combine(diff, static)

        def body(x, _):
            c = task.controller(params, x)
            x_next = task.step(x, c)
            return x_next, (x_next, c)

        _, (xs, cs) = jax.lax.scan(body, x0, None, length=task.horizon)
        states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0), x0, xs)  # any state pytree
        return task.loss(states, cs)

    return jax.jit(jax.value_and_grad(objective))


def bench_task(name: str, batch: int, repeats: int) -> dict:
    task = sb.tasks.make_task(name, **PUBLISHED.get(name, {}))
    params = task.init_controller(jax.random.PRNGKey(0))
    x0 = task.sample(jax.random.PRNGKey(1), batch)
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    fns, compile_s = {}, {}
    for label, (method, options) in VARIANTS.items():
        vg = sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, method, **options)
        fn = jax.jit(lambda d, x, vg=vg: vg(eqx.combine(d, static), x))
        start = time.perf_counter()
        fn = fn.lower(diff, x0).compile()
        compile_s[label] = time.perf_counter() - start
        fns[label] = fn
    plain = plain_value_and_grad(task, static)
    start = time.perf_counter()
    fns["plain scan+grad"] = plain.lower(diff, x0).compile()
    compile_s["plain scan+grad"] = time.perf_counter() - start
    timings = _common.time_interleaved({k: (lambda f=f: f(diff, x0)) for k, f in fns.items()}, repeats)
    for label in timings:
        timings[label]["compile_s"] = compile_s[label]

    def ratio(a, b, key="median_s"):
        return timings[a][key] / timings[b][key]

    ratios = {
        f"{a} / {b} ({key.removesuffix('_s')})": ratio(a, b, key)
        for a, b in [
            ("C joint", "R"),
            ("M", "R"),
            ("S", "R"),
            ("N", "R"),
            ("C joint", "C two-pass"),
            ("R", "plain scan+grad"),
            ("C joint", "plain scan+grad"),
            ("R", "R autodiff"),
        ]
        for key in ("median_s", "min_s", "cpu_median_s")
    }
    auto = sb.core.adjoint.choose_param_vjp(lambda d, x: task.controller(eqx.combine(d, static), x), diff, x0)
    return {
        "task": name,
        "settings": task.config(),
        "batch": batch,
        "horizon": task.horizon,
        "param_vjp_auto": auto.spelling,
        "timings": timings,
        "ratios": ratios,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: the cart pole only (unless --tasks), 3 rounds")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per variant (default 200)")
    default_tasks = ",".join(sb.tasks.TASKS)
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: all; quick: cartpole)")
    parser.add_argument("--batch-sizes", default="8", help="comma-separated batch sizes, e.g. 8,1024")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/per_update*.json)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 200)
    args.tasks = args.tasks or ("cartpole" if args.quick else default_tasks)
    results = []
    names = args.tasks.split(",")
    for name in list(names):
        try:
            sb.tasks.make_task(name, **PUBLISHED.get(name, {}))
        except ValueError as e:
            if args.tasks != default_tasks:
                raise
            print(f"skipping {name}: {e}")
            names.remove(name)
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for name in names:
            result = bench_task(name, batch, repeats)
            results.append(result)
            t = result["timings"]
            print(
                f"\n{name}  batch {batch}  horizon {result['horizon']}  ({repeats} interleaved rounds; "
                f"param_vjp auto: {result['param_vjp_auto']})"
            )
            _common.print_table(
                ["variant", "median ms", "min ms", "p90 ms", "cpu ms", "/R (median)", "compile s"],
                [
                    [
                        k,
                        v["median_s"] * 1e3,
                        v["min_s"] * 1e3,
                        v["p90_s"] * 1e3,
                        v["cpu_median_s"] * 1e3,
                        v["median_s"] / t["R"]["median_s"],
                        v["compile_s"],
                    ]
                    for k, v in t.items()
                ],
            )
            for k, v in result["ratios"].items():
                print(f"  {k}: {v:.2f}")
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {"repeats": repeats, "tasks": names, "batch_sizes": [int(b) for b in args.batch_sizes.split(",")]}
    _common.write_json(out, _common.result("per_update", quick=args.quick, settings=settings, rows=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
