"""Where the time of an update and of an epoch goes (issue 5: profile, and the epoch-overhead target).

Per method (R, C), cart pole with 2 poles at the published size, batch 8, all timed interleaved:

- ``dispatch``: a jitted function that does nothing (the fixed cost of one call from Python);
- ``forward``: rollout + loss of one mini-batch;
- ``value_and_grad``: the update direction (forward + backward); backward = this - forward;
- ``optimizer``: Adam's ``tx.update`` + ``apply_updates`` on a given gradient;
- ``update``: all of it in one jitted call (what an epoch runs 32 times);
- ``32 updates (python loop)``: 32 calls of ``update``, blocking once at the end;
- ``32 updates (one scan)``: the same 32 updates in one jitted ``lax.scan``;
- ``evaluation``: the loss on the 256 training and 256 test states;
- ``epoch``: ``jit(make_epoch(...))``: 32 updates + evaluation, what `train` runs;
- ``train() epoch_time``: the per-epoch wall time `train` itself reports (epochs 2..n), and its first epoch
  (which includes compilation).

    python benchmarks/epoch_overhead.py           # 50 rounds
    python benchmarks/epoch_overhead.py --quick   # 3 rounds
"""

from __future__ import annotations

import argparse
import time

import _common
import equinox as eqx
import jax
import optax

import stablebptt as sb
from stablebptt import training  # the package: its epoch builder, data, states and train()


def bench(method: str, repeats: int, train_epochs: int) -> dict:
    task = sb.tasks.CartPole(n_poles=2)
    batch = 8
    tx = optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-7)
    params = task.init_controller(jax.random.PRNGKey(42))
    data = training.make_data(task, jax.random.PRNGKey(0))
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    state = training.TrainState(diff, tx.init(diff))
    x0 = data.train[:batch]
    batches = data.train.reshape(-1, batch, *data.train.shape[1:])
    vg = sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, method)

    def update(state, batch):
        value, grads, _info = vg(eqx.combine(state.params, static), batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return training.TrainState(optax.apply_updates(state.params, updates), opt_state), value

    def optimizer(state, grads):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return training.TrainState(optax.apply_updates(state.params, updates), opt_state)

    def evaluation(params):
        p = eqx.combine(params, static)
        return training.evaluate(task, p, data.train), training.evaluate(task, p, data.test)

    update_jit = jax.jit(update)
    scan_jit = jax.jit(lambda s, b: jax.lax.scan(update, s, b))
    settings = training.TrainSettings(method=method, batch_size=batch)
    epoch_jit = jax.jit(training.make_epoch(task, settings, static, protocol=training.Dataset(), tx=tx))
    forward_jit = jax.jit(lambda d, x: training.evaluate(task, eqx.combine(d, static), x))
    vg_jit = jax.jit(lambda d, x: vg(eqx.combine(d, static), x))
    opt_jit = jax.jit(optimizer)
    eval_jit = jax.jit(evaluation)
    noop_jit = jax.jit(lambda x: x)
    grads = vg_jit(diff, x0)[1]

    def loop32():
        s = state
        for i in range(batches.shape[0]):
            s, _ = update_jit(s, batches[i])
        return s

    fns = {
        "dispatch": lambda: noop_jit(x0),
        "forward": lambda: forward_jit(diff, x0),
        "value_and_grad": lambda: vg_jit(diff, x0),
        "optimizer": lambda: opt_jit(state, grads),
        "update": lambda: update_jit(state, x0),
        "32 updates (python loop)": loop32,
        "32 updates (one scan)": lambda: scan_jit(state, batches),
        "evaluation": lambda: eval_jit(diff),
        "epoch": lambda: epoch_jit(state, data),
    }
    compile_start = time.perf_counter()
    _common.block(epoch_jit(state, data))
    epoch_compile_s = time.perf_counter() - compile_start
    timings = _common.time_interleaved(fns, repeats)
    result = {"method": method, "timings": timings, "epoch_first_call_s": epoch_compile_s}
    try:
        metrics = training.train(task, method, epochs=train_epochs).metrics
        times = [row["epoch_time"] for row in metrics]
        result["train_first_epoch_s"] = times[0]
        result["train_epoch_median_s"] = float(sorted(times[1:])[len(times[1:]) // 2]) if len(times) > 1 else None
    except Exception as error:  # noqa: BLE001 -- train() belongs to another module; report, do not fail the benchmark
        result["train_error"] = repr(error)
    summary = {}
    for stat in ("cpu_median_s", "min_s", "median_s"):
        t = {k: v[stat] for k, v in timings.items()}
        tag = stat.removesuffix("_s")
        summary[f"backward ms ({tag})"] = (t["value_and_grad"] - t["forward"]) * 1e3
        summary[f"epoch / 32 updates, python loop ({tag})"] = t["epoch"] / t["32 updates (python loop)"]
        summary[f"epoch / 32 updates, one scan ({tag})"] = t["epoch"] / t["32 updates (one scan)"]
        summary[f"evaluation / epoch ({tag})"] = t["evaluation"] / t["epoch"]
    if result.get("train_epoch_median_s"):
        epoch_s = timings["epoch"]["median_s"]
        summary["train() epoch_time / epoch (wall median)"] = result["train_epoch_median_s"] / epoch_s
    result["summary"] = summary
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--methods", default="R,C")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 50)
    results = []
    for method in args.methods.split(","):
        result = bench(method, repeats, train_epochs=3 if args.quick else 6)
        results.append(result)
        print(
            f"\nmethod {method}  ({repeats} interleaved rounds; first epoch call incl. compile "
            f"{result['epoch_first_call_s']:.2f} s)"
        )
        _common.print_table(
            ["part", "median ms", "min ms", "cpu ms"],
            [[k, v["median_s"] * 1e3, v["min_s"] * 1e3, v["cpu_median_s"] * 1e3] for k, v in result["timings"].items()],
        )
        for k, v in result["summary"].items():
            print(f"  {k}: {v:.2f}")
        for k in ("train_first_epoch_s", "train_epoch_median_s", "train_error"):
            if k in result:
                print(f"  {k}: {result[k]}")
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {"repeats": repeats, "methods": [r["method"] for r in results]}
    _common.write_json(out, _common.result("epoch_overhead", quick=args.quick, settings=settings, rows=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
