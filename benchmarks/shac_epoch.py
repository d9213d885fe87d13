"""Where the time of a SHAC epoch goes, and what an environment step costs under SHAC and under the paper's loop.

Cart pole at the SHAC study's size (`experiments.study`: windows of 32 steps, 64 environments, 4 windows an
epoch, 256 test states over the horizon of 100 steps; R and C), each variant trained by `training.train` for a
few epochs, in rounds (one run of each variant per round, in the same process), the per-epoch wall time
(`epoch_time`, epochs 2..n: the first compiles) taken as the median over all rounds:

- ``shac``: DiffRL's recipe as the study's first stages train it (plain critic, 16 passes of 4 minibatches);
- ``shac, 1 critic pass``: the same with ``critic_iterations=1``; the critic's share of the epoch is
  ``(shac - 1 pass) / shac * 16 / 15`` (a pass's cost times 16, over the epoch);
- ``shac, DiffRL's critic``: ``critic_network="diffrl"`` (a LayerNorm after each hidden layer), ``critic_order=
  "steps"``, standardised inputs, a decaying rate: DiffRL in full, with ``episode_restart="step"``;
- ``paper loop``: the published protocol (32 updates of 8 states over the whole horizon, then the evaluation).

Each row also gives the wall time per million environment steps of training (the evaluation included), the
budget the study holds equal between recipes.

    python benchmarks/shac_epoch.py            # 3 rounds of 12 epochs, 4 poles
    python benchmarks/shac_epoch.py --quick    # 1 round of 3 epochs, 2 poles
"""

from __future__ import annotations

import argparse

import _common
import numpy as np

from stablebptt import training
from stablebptt.experiments.study import RECORDED_CRITIC, SHAC_BATCH, SHAC_TRAIN, env_steps_per_epoch
from stablebptt.tasks import CartPole
from stablebptt.training.shac import diffrl_recipe


def variants() -> dict[str, dict]:
    """The settings of each variant (the method is given per row)."""
    plain = {"critic_schedule": "constant", "critic_normalize": False, **RECORDED_CRITIC}
    shac = diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=SHAC_BATCH, n_train=SHAC_TRAIN, **plain)
    full = diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=SHAC_BATCH, n_train=SHAC_TRAIN, episode_restart="step")
    return {
        "shac": shac,
        "shac, 1 critic pass": {**shac, "critic_iterations": 1},
        "shac, DiffRL's critic": full,
        "paper loop": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 epochs, 2 poles (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--poles", type=int, default=4)
    parser.add_argument("--methods", default="R,C")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rounds, epochs, poles = (1, 3, 2) if args.quick else (args.rounds, args.epochs, args.poles)
    task = CartPole(n_poles=poles)
    methods = args.methods.split(",")
    cases = variants()
    times: dict[tuple[str, str], list[float]] = {(n, m): [] for n in cases for m in methods}
    for _ in range(rounds):
        for (name, method), found in times.items():
            metrics = training.train(task, method, epochs=epochs, **cases[name]).metrics
            found += [row["epoch_time"] for row in metrics[1:]]

    rows, table = [], []
    for method in methods:
        epoch = {name: float(np.median(times[name, method])) for name in cases}
        for name, settings in cases.items():
            config = {"task": "cartpole", "task_settings": {"n_poles": poles}, "train": settings}
            steps = env_steps_per_epoch(config)
            row = {
                "task": "cartpole",
                "poles": poles,
                "method": method,
                "variant": name,
                "epoch_median_s": epoch[name],
                "env_steps_per_epoch": steps,
                "s_per_million_env_steps": epoch[name] / steps * 1e6,
                "epochs_timed": len(times[name, method]),
            }
            if name == "shac":
                passes = cases[name]["critic_iterations"]
                one = epoch["shac, 1 critic pass"]
                row["critic_share"] = (epoch[name] - one) / epoch[name] * passes / (passes - 1)
            rows.append(row)
            table.append([method, name, epoch[name] * 1e3, steps, row["s_per_million_env_steps"]])
        shac_per_step = rows[-4]["s_per_million_env_steps"]
        rows[-1]["shac_over_paper_per_env_step"] = shac_per_step / rows[-1]["s_per_million_env_steps"]
    _common.print_table(["method", "variant", "epoch (ms)", "env steps", "s / 1e6 env steps"], table)
    for row in rows:
        if "critic_share" in row:
            print(f"{row['method']}: the critic's 16 passes take {row['critic_share']:.0%} of a SHAC epoch")
        if "shac_over_paper_per_env_step" in row:
            print(f"{row['method']}: an environment step costs {row['shac_over_paper_per_env_step']:.2f}x under SHAC")
    payload = _common.result(
        "shac_epoch",
        quick=args.quick,
        settings={"rounds": rounds, "epochs": epochs, "poles": poles, "methods": methods},
        rows=rows,
    )
    _common.write_json(args.out or _common.default_output(__file__, args.quick), payload)


if __name__ == "__main__":
    main()
