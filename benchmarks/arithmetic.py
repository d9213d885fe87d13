"""R's update against its arithmetic (issue 46, item 2): how far one update of plain BPTT is from what this CPU's
single core could do with the same floating-point operations.

For each task at its published size (cart pole: 2 poles, batch 8, 100 steps, a 2x100 MLP; quantum control:
batch 8, 128 steps, the published CNN) the script

1. counts the update's floating-point operations without its loop: the controller's forward and reverse pass and
   the simulator step's forward and VJP, each for every step of one rollout in one batched call (`jax.vmap` over
   time, no recurrence: the same shapes, nothing sequential), as XLA counts them (``cost_analysis()``; XLA's
   count of the update itself is also reported, but it may count a loop's body once, not per step);
2. measures what one core achieves on the controller's batched pass (the update's own matrix shapes) and on a
   large matrix product (the core's peak at large sizes);
3. times the update itself (interleaved rounds, `_common.time_interleaved`) and reports the ratios: measured /
   (flops at the controller's batched rate) and measured / (flops at the large-matmul peak).

The first ratio says how much of the update's time goes into what the flops alone do not explain (the sequential
dependence of 100 small steps, dispatch of small XLA ops, the simulator's elementwise work); the second, how far
the update is from the peak. A third bound, the recurrence's floor, times the update's own operations per step at
its own shapes (batch 8), one step after another in a `lax.scan`, each step from its recorded state: what any
implementation of the recurrence at this batch pays at least, without storing or reading residuals; the update over
it is what a better loop structure could still gain.

4. times R's and C's updates with the loops over time unrolled by ``--unrolls`` steps per iteration
   (`value_and_grad(..., unroll=K)`, the setting ``unroll`` / ``--unroll``), in the same interleaved rounds: what
   fusing across steps gains per task, against unroll 1 (the default).

Run pinned to one core (``taskset -c 0``) to compare with single-core figures:

    python benchmarks/arithmetic.py                 # cart pole and quantum, 100 rounds
    python benchmarks/arithmetic.py --quick         # cart pole, 5 rounds
"""

from __future__ import annotations

import argparse
import time

import _common
import equinox as eqx
import jax
import jax.numpy as jnp

import stablebptt as sb

PUBLISHED = {"cartpole": {"n_poles": 2}, "quantum": {}}


def _flops(compiled) -> tuple[float, float]:
    """XLA's count of a compiled program's floating-point operations and bytes accessed."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan"))), float(cost.get("bytes accessed", float("nan")))


def bench_task(name: str, repeats: int, unrolls: tuple[int, ...] = (1,)) -> dict:
    task = sb.tasks.make_task(name, **PUBLISHED[name])
    batch = 8
    params = task.init_controller(jax.random.PRNGKey(0))
    x0 = task.sample(jax.random.PRNGKey(1), batch)
    diff, static = eqx.partition(params, eqx.is_inexact_array)

    def compiled(method: str, unroll: int):
        vg = sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, method, unroll=unroll)
        return jax.jit(lambda d, x: vg(eqx.combine(d, static), x)).lower(diff, x0).compile()

    update = compiled("R", 1)  # XLA's flop count of the update
    # An epoch's evaluation: the test loss of 256 test states over the horizon, forward only (what `train` does
    # after the epoch's updates)
    tests = task.sample(jax.random.PRNGKey(3), 256)

    def test_loss(d, x):
        return task.loss(*sb.rollout(task.step, task.controller, eqx.combine(d, static), x, task.horizon))

    evaluate = jax.jit(test_loss).lower(diff, tests).compile()
    unrolled = {(m, k): compiled(m, k) for m in ("R", "C") for k in unrolls}
    update_flops, update_bytes = _flops(update)

    # The controller's own arithmetic over the horizon, all steps at once (no recurrence): the states of one
    # rollout, then forward and reverse through the network for every step in one batched call.
    states, _ = sb.rollout(task.step, task.controller, params, x0, task.horizon)
    inputs = jax.tree.map(lambda a: a[:-1], states)

    def network(d, xs):
        out = jax.vmap(lambda x: task.controller(eqx.combine(d, static), x))(xs)
        return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(out))

    batched = jax.jit(jax.value_and_grad(network)).lower(diff, inputs).compile()
    net_flops, _ = _flops(batched)
    controls = jax.vmap(lambda x: task.controller(params, x))(inputs)

    def simulator(xs, cs):
        out, pullback = jax.vjp(jax.vmap(task.step), xs, cs)
        return pullback(out)

    sim_flops, _ = _flops(jax.jit(simulator).lower(inputs, controls).compile())

    # The recurrence's floor: the same operations per step at the same shapes (batch 8), one step after another in
    # a `lax.scan`, but each step from its recorded state (no dependence between steps, nothing stored for a
    # reverse sweep): the controller's and the simulator's forward and VJP, the parameter cotangents summed.
    def stepwise(d, xs):
        def body(acc, x):
            out, pullback = jax.vjp(lambda d, x: task.step(x, task.controller(eqx.combine(d, static), x)), d, x)
            g_d, g_x = pullback(jax.tree.map(jnp.ones_like, out))
            total = acc[1] + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(g_x))
            return (jax.tree.map(jnp.add, acc[0], g_d), total), None

        return jax.lax.scan(body, (jax.tree.map(jnp.zeros_like, d), jnp.zeros(())), xs)[0]

    floor = jax.jit(stepwise).lower(diff, inputs).compile()
    arithmetic = net_flops + sim_flops

    size = 1024
    a = jax.random.normal(jax.random.PRNGKey(2), (size, size))
    matmul = jax.jit(lambda a: a @ a).lower(a).compile()
    timings = _common.time_interleaved(
        {
            "network batched": lambda: batched(diff, inputs),
            "matmul": lambda: matmul(a),
            "evaluation": lambda: evaluate(diff, tests),
        },
        repeats,
    )
    # The updates on their own, in a new order each round: timed beside the large matmul, an update ran up
    # to 60 % slower (cold caches). R at unroll 1 is the update of the table above.
    timings |= _common.time_interleaved(
        {
            **{f"{m} unroll={k}": (lambda f=f: f(diff, x0)) for (m, k), f in unrolled.items()},
            "stepwise floor": lambda: floor(diff, inputs),
        },
        repeats,
        shuffle=True,
    )
    peak = 2 * size**3 / timings["matmul"]["min_s"]
    net_rate = net_flops / timings["network batched"]["min_s"]
    measured = timings["R unroll=1"]["median_s"]
    return {
        "task": name,
        "batch": batch,
        "horizon": task.horizon,
        "flops": arithmetic,
        "network_flops": net_flops,
        "simulator_flops": sim_flops,
        "network_share": net_flops / arithmetic,
        "xla_update_flops": update_flops,
        "xla_update_bytes": update_bytes,
        "peak_flops_per_s": peak,
        "network_batched_flops_per_s": net_rate,
        "update_median_s": measured,
        "update_min_s": timings["R unroll=1"]["min_s"],
        "bound_at_network_rate_s": arithmetic / net_rate,
        "bound_at_peak_s": arithmetic / peak,
        "measured_over_network_rate": measured / (arithmetic / net_rate),
        "measured_over_peak": measured / (arithmetic / peak),
        "stepwise_floor_median_s": timings["stepwise floor"]["median_s"],
        "measured_over_stepwise_floor": measured / timings["stepwise floor"]["median_s"],
        "evaluation_median_s": timings["evaluation"]["median_s"],
        "evaluation_over_update": timings["evaluation"]["median_s"] / measured,
        "unroll_median_s": {m: {k: timings[f"{m} unroll={k}"]["median_s"] for k in unrolls} for m in ("R", "C")},
        "timings": timings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: cart pole, 5 rounds")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 100; quick 5)")
    parser.add_argument("--tasks", default=None, help="comma-separated (default cartpole,quantum; quick cartpole)")
    parser.add_argument(
        "--unrolls", default=None, help="steps per loop iteration to time R and C at (default 1,2,4,8; quick 1,2)"
    )
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/arithmetic*.json)")
    args = parser.parse_args(argv)
    tasks = (args.tasks or ("cartpole" if args.quick else "cartpole,quantum")).split(",")
    repeats = args.repeats or (5 if args.quick else 100)
    unrolls = tuple(int(k) for k in (args.unrolls or ("1,2" if args.quick else "1,2,4,8")).split(","))
    if 1 not in unrolls:
        parser.error("--unrolls must include 1, the baseline the others are compared with")
    start = time.perf_counter()
    rows = [bench_task(t, repeats, unrolls) for t in tasks]
    print(f"\nR's update against its arithmetic; {repeats} interleaved rounds; backend {jax.default_backend()}")
    _common.print_table(
        [
            "task",
            "MFLOP",
            "net share",
            "peak GFLOP/s",
            "net GFLOP/s",
            "update ms",
            "bound@net ms",
            "x",
            "bound@peak ms",
            "x",
            "floor ms",
            "x",
            "eval 256 ms",
        ],
        [
            [
                r["task"],
                r["flops"] / 1e6,
                r["network_share"],
                r["peak_flops_per_s"] / 1e9,
                r["network_batched_flops_per_s"] / 1e9,
                r["update_median_s"] * 1e3,
                r["bound_at_network_rate_s"] * 1e3,
                r["measured_over_network_rate"],
                r["bound_at_peak_s"] * 1e3,
                r["measured_over_peak"],
                r["stepwise_floor_median_s"] * 1e3,
                r["measured_over_stepwise_floor"],
                r["evaluation_median_s"] * 1e3,
            ]
            for r in rows
        ],
    )
    print("\nR's and C's updates with the loops over time unrolled (median ms; x: unroll 1's time over this one's)")
    _common.print_table(
        ["task", "rule", *(f"unroll {k} ms" for k in unrolls), *(f"x{k}" for k in unrolls if k != 1)],
        [
            [
                r["task"],
                m,
                *(r["unroll_median_s"][m][k] * 1e3 for k in unrolls),
                *(r["unroll_median_s"][m][1] / r["unroll_median_s"][m][k] for k in unrolls if k != 1),
            ]
            for r in rows
            for m in ("R", "C")
        ],
    )
    payload = _common.result(
        "arithmetic",
        quick=args.quick,
        settings={"tasks": tasks, "repeats": repeats, "batch": 8, "unrolls": list(unrolls)},
        rows=rows,
        total_s=time.perf_counter() - start,
    )
    _common.write_json(args.out or _common.default_output(__file__, args.quick), payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
