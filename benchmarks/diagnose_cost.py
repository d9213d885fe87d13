"""What ``stablebptt diagnose`` costs on the built-in tasks (issue 26: under a minute for a built-in task).

For each task (the published settings, 16 initial states, the default ladder of about 8 horizons, 4 directions)
it times compiling the diagnosis and running it once compiled, and, in the same process for scale, one update of
C (`core.value_and_grad`, the task's horizon, the same 16 states) compiled and run: the diagnosis computes four
single modes on a ladder of horizons and two forward-mode rollouts, so its run costs some updates of C.

    python benchmarks/diagnose_cost.py            # cart pole 2 poles, repulsion rc 0.001, quantum target 3
    python benchmarks/diagnose_cost.py --quick    # cart pole 1 pole, horizon 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common


def measure(task: Any, batch: int) -> dict[str, float]:
    import equinox as eqx
    import jax

    from stablebptt.core import value_and_grad
    from stablebptt.experiments.diagnose import diagnose_task, draw

    params, x0 = draw(task, batch, 0)
    begin = time.perf_counter()
    result = diagnose_task(task, params, x0)
    total = time.perf_counter() - begin
    vg = eqx.filter_jit(value_and_grad(task.loss, task.step, task.controller, task.horizon, "C"))
    begin = time.perf_counter()
    compiled = vg.lower(params, x0).compile()  # type: ignore[attr-defined]
    update_compile = time.perf_counter() - begin
    jax.block_until_ready(compiled(params, x0))
    begin = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(compiled(params, x0))
    update_run = (time.perf_counter() - begin) / 3
    return {
        "diagnose_total_s": total,
        "diagnose_compile_s": result["compile_s"],
        "diagnose_run_s": result["run_s"],
        "update_compile_s": update_compile,
        "update_run_s": update_run,
        "run_over_update": result["run_s"] / update_run,
        "horizons": len(result["horizons"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: cart pole 1 pole, horizon 20")
    p.add_argument("--batch", type=int, default=16, help="initial states (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/diagnose_cost.json)")
    args = p.parse_args(argv)
    from stablebptt.tasks import CartPole, Quantum, Repulsion

    tasks = (
        [("cartpole 1 pole, horizon 20", CartPole(n_poles=1, horizon=20))]
        if args.quick
        else [
            ("cartpole 2 poles", CartPole(n_poles=2)),
            ("repulsion rc 0.001", Repulsion(rc=0.001)),
            ("quantum target 3", Quantum(target=3)),
        ]
    )
    rows = []
    for name, task in tasks:
        row = {"task": name, **measure(task, args.batch)}
        rows.append(row)
        print(f"{name}: {row['diagnose_total_s']:.1f} s", flush=True)
    _common.print_table(
        ["task", "diagnose s", "of it compiling", "running", "C update: compile", "run", "run / update"],
        [
            [
                r["task"],
                round(r["diagnose_total_s"], 1),
                round(r["diagnose_compile_s"], 1),
                round(r["diagnose_run_s"], 3),
                round(r["update_compile_s"], 1),
                round(r["update_run_s"], 4),
                round(r["run_over_update"], 1),
            ]
            for r in rows
        ],
    )
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {"batch": args.batch, "directions": 4, "ladder": "horizon_ladder(task.horizon)"}
    _common.write_json(out, _common.result("diagnose_cost", quick=args.quick, settings=settings, rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
