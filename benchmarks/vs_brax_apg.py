"""stablebptt against Brax's analytic policy gradients (APG) on Brax's own environments (docs/brax.md).

For each environment and seed it trains
- ``APG``: Brax's own ``brax.training.agents.apg.train`` with its defaults (4 x 32 ELU network with layer norm,
  tanh-normal policy sampled in training, Adam `--lr-stream` with decay 0.997 per update and betas (0.7, 0.95),
  every gradient entry clipped to 1) and windows of `--window` steps: every update backpropagates through one
  window of `--num-envs` environments that carry on from where the last window ended (with Brax's automatic
  reset at the episode's end or on termination);
- ``stream-R``, ``stream-M``, ``stream-C``: APG's recipe in stablebptt (the stream protocol, `BraxTask` with
  APG's network, sampled actions, APG's loss and Brax's training wrapper, APG's optimizer, clipping, schedule
  and key scheme), with the gradient of R (APG's own: the same run as ``APG``, seed for seed), M or C;
- ``R``, ``C``: the paper's recipe in stablebptt (library defaults: 4 x 32 tanh network, Adam `--lr-paper`,
  constant) on whole episodes of `--episode-length` steps from reset states, `--num-envs` per update;
- ``C-trunc``: the paper's recipe with C and truncation windows of `--window` steps (gradient flow along time
  cut every window, as APG).

Every variant gets the same number of environment steps (``--apg-updates x num_envs x window``; the paper's
recipe makes ``window / episode_length`` as many updates, each over a whole episode) and is evaluated the same
way: Brax's ``acting.Evaluator`` with APG's evaluation key for the seed (so every variant of a seed meets the
same evaluation episodes as APG's own evaluation) on `--eval-envs` episodes of `--episode-length` steps from
reset states, deterministic policy (APG: ``deterministic_eval=True``), reward summed until termination. Non-finite
values are handled alike: no variant skips an update (C's sign test does not zero a non-finite g_R either:
``regular_nonfinite="stop"``), a run whose update turns non-finite stops there. Wall time is training time
without compilation (stablebptt: its epochs' ``epoch_time``, which also includes the epoch's train and test
loss; APG: its ``training/walltime`` with the first epoch, which compiles, counted as the median of the others).
With ``APG`` and ``stream-R`` both run, each row of ``stream-R`` records how far its evaluation curve is from
APG's of the same seed and learning rate (``reproduction``). ``--lrs`` runs every variant at several learning
rates (the tuning sweep, on a seed kept out of the report): the stream variants and APG take the rates as they
are, the paper's recipe ten times them (its default is ten times APG's).

    python benchmarks/vs_brax_apg.py                     # the docs/brax.md run (long; see there)
    python benchmarks/vs_brax_apg.py --quick             # smoke run: 1 seed, tiny budget
    python benchmarks/vs_brax_apg.py --envs hopper --out benchmarks/results/vs_brax_apg_hopper.json
    python benchmarks/vs_brax_apg.py --merge a.json b.json --out all.json   # one table and figure from several

Brax 0.14's ``apg.train`` calls ``jax.device_put_replicated``, which newer JAX removed: run the APG variant in
an environment with ``jax<0.8`` (docs/brax.md gives the command; stablebptt runs there too, so both sides share
one JAX). Writes the JSON (`--out`), a CSV of every curve next to it and a figure (`--figure`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import _common
import numpy as np

ENVS = ("inverted_pendulum", "inverted_double_pendulum", "reacher", "hopper")
VARIANTS = ("APG", "stream-R", "stream-M", "stream-C", "R", "C", "C-trunc")
METHODS = {  # variant: (method, recipe, truncated)
    "stream-R": ("R", "stream", False),
    "stream-M": ("M", "stream", False),
    "stream-C": ("C", "stream", False),
    "R": ("R", "paper", False),
    "C": ("C", "paper", False),
    "C-trunc": ("C", "paper", True),
}


class Refused(Exception):
    """A setting this benchmark cannot run, with the one line that says why and what to do."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default=",".join(ENVS), help="comma-separated Brax environments (default: %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated of " + ", ".join(VARIANTS))
    p.add_argument("--lr-stream", type=float, default=1e-4, help="learning rate of APG and stream-* (APG's 1e-4)")
    p.add_argument("--lr-paper", type=float, default=1e-3, help="learning rate of R, C, C-trunc (the library's)")
    p.add_argument(
        "--lrs",
        default=None,
        help="comma-separated: run every variant at each of these stream learning rates "
        "(the paper's recipe at ten times each); the tuning sweep",
    )
    p.add_argument(
        "--lr-for",
        default="",
        help="comma-separated VARIANT=LR: a variant's own learning rate (the tuned ones, e.g. "
        "stream-C=3e-4,R=3e-3), in place of --lr-stream / --lr-paper",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--backend", default="mjx", help="Brax backend (default: mjx with opt.iterations = 1)")
    p.add_argument("--episode-length", type=int, default=100, help="steps per episode = stablebptt's horizon")
    p.add_argument("--num-envs", type=int, default=16, help="environments per update (APG) = batch size")
    p.add_argument("--window", type=int, default=32, help="APG's horizon_length; C-trunc's truncation")
    p.add_argument("--apg-updates", type=int, default=300, help="APG policy updates; sets the step budget")
    p.add_argument("--evals", type=int, default=11, help="evaluations per run, the first before training")
    p.add_argument("--eval-envs", type=int, default=64, help="episodes per evaluation")
    p.add_argument("--x64", action="store_true", help="every variant in float64 (jax_enable_x64)")
    p.add_argument(
        "--backward",
        default="auto",
        choices=("auto", "autodiff", "joint", "two_pass"),
        help="stablebptt's backward pass (the same gradient in another float order; rows are labelled with it)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JAX's persistent compilation cache in this folder: runs that differ only in their seed share "
        "compiled programs (each Brax gradient program takes minutes to compile here)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the runs of the output's .partial.json (written after every run) with the same settings: "
        "runs recorded there are not trained again",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: first seed, 20 APG updates, 3 evaluations")
    p.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/vs_brax_apg.json)")
    p.add_argument("--figure", type=Path, default=None, help="figure (default: the JSON's path with .png)")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="only merge these JSONs into --out")
    args = p.parse_args(argv)
    args.envs = [e for e in args.envs.split(",") if e]
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant {bad[0]!r}; allowed: {', '.join(VARIANTS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    try:
        given = [float(v) for v in args.lrs.split(",") if v] if args.lrs else None
    except ValueError:
        p.error(f"--lrs must be comma-separated numbers, got {args.lrs!r}")
    args.lr_for = parse_lr_for(p, args.lr_for)
    # (stream's, paper's) learning rate per sweep point
    args.lrs = [(v, float(f"{10 * v:.6g}")) for v in given] if given else [(args.lr_stream, args.lr_paper)]
    if not all(np.isfinite(v) and v > 0 for pair in args.lrs for v in pair):
        p.error("learning rates must be positive numbers")
    if args.quick:
        args.seeds, args.apg_updates, args.evals = args.seeds[:1], 20, 3
    for name in ("episode_length", "num_envs", "window", "apg_updates", "eval_envs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.backward == "autodiff" and any(METHODS.get(v, ("",))[0] == "C" for v in args.variants):
        p.error("--backward autodiff cannot compute C (it needs joint or two_pass); leave the C variants out")
    if args.evals < 2:
        p.error("--evals must be at least 2 (before and after training)")
    if args.episode_length % args.window and "C-trunc" in args.variants:
        print(
            f"note: the episode of {args.episode_length} steps ends with a window of "
            f"{args.episode_length % args.window} steps"
        )
    args.out = args.out or _common.default_output(__file__, args.quick)
    args.figure = args.figure or args.out.with_suffix(".png")
    return args


def parse_lr_for(p: argparse.ArgumentParser, text: str) -> dict[str, float]:
    """``VARIANT=LR,...`` as a dict, each variant known and each rate a positive number."""
    rates: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        variant, _, value = item.partition("=")
        if variant not in VARIANTS:
            p.error(f"--lr-for: unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        try:
            rates[variant] = float(value)
        except ValueError:
            p.error(f"--lr-for {item!r}: expected VARIANT=LR with LR a number")
        if not (np.isfinite(rates[variant]) and rates[variant] > 0):
            p.error(f"--lr-for {item!r}: the learning rate must be a positive number")
    return rates


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """Environment steps and the stablebptt schedule that spends them: updates of whole episodes (as many as fit
    the steps exactly when they divide), in epochs of `updates_per_epoch` updates (the divisor of the updates
    closest to one epoch per evaluation of APG), evaluated after every epoch."""
    steps = args.apg_updates * args.num_envs * args.window
    per_update = args.num_envs * args.episode_length
    updates = max(1, round(steps / per_update))
    target = updates / (args.evals - 1)
    per_epoch = min((d for d in range(1, updates + 1) if updates % d == 0), key=lambda d: (abs(d - target), -d))
    return {
        "env_steps": steps,
        "stablebptt_updates": updates,
        "updates_per_epoch": per_epoch,
        "epochs": updates // per_epoch,
        "eval_every_epochs": 1,
        "stablebptt_env_steps": updates * per_update,
    }


def evaluator(env: Any, policy_fn: Any, args: argparse.Namespace, seed: int) -> Any:
    """Brax's evaluator as ``apg.train(seed=seed)`` builds its own: the same wrapper, episodes and key."""
    from brax import envs
    from brax.training import acting

    from stablebptt.training.stream import apg_eval_key

    wrapped = envs.training.wrap(env, episode_length=args.episode_length)
    return acting.Evaluator(
        wrapped,
        policy_fn,
        num_eval_envs=args.eval_envs,
        episode_length=args.episode_length,
        action_repeat=1,
        key=apg_eval_key(seed),
    )


def stablebptt_setup(name: str, variant: str, seed: int, lr: float, args: argparse.Namespace) -> tuple[Any, Any, int]:
    """The task, the settings and the environment steps per epoch of a stablebptt variant."""
    from stablebptt.experiments.apg import apg_recipe
    from stablebptt.integrations.brax import BraxTask
    from stablebptt.training.settings import from_mapping

    method, recipe, truncated = METHODS[variant]
    common = {"method": method, "batch_size": args.num_envs, "n_test": args.num_envs, "seed": seed}
    common.update(regular_nonfinite="stop", skip_nonfinite=False)  # every variant meets a NaN alike: it stops
    if recipe == "stream":  # APG's recipe, as apg.train runs it with these arguments
        task, settings = apg_recipe(
            name,
            episode_length=args.episode_length,
            policy_updates=args.apg_updates,
            horizon_length=args.window,
            num_envs=args.num_envs,
            num_evals=args.evals,
            learning_rate=lr,
            seed=seed,
            backend=args.backend,
            method=method,
            regular_nonfinite="stop",
            backward=args.backward,
        )
        per_epoch = settings.n_train // settings.batch_size
        return task, settings, per_epoch * args.num_envs * args.window
    plan = budget(args)
    task = BraxTask(env=name, backend=args.backend, horizon=args.episode_length)
    settings = from_mapping(
        {
            **common,
            "epochs": plan["epochs"],
            "n_train": args.num_envs * plan["updates_per_epoch"],
            "lr": lr,
            "truncation": args.window if truncated else None,
            "backward": args.backward,
        }
    )
    return task, settings, plan["updates_per_epoch"] * args.num_envs * args.episode_length


def run_stablebptt(name: str, variant: str, seed: int, lr: float, args: argparse.Namespace) -> dict[str, Any]:
    from stablebptt.training import Trainer

    task, settings, per_epoch_steps = stablebptt_setup(name, variant, seed, lr, args)
    trainer = Trainer(task, settings)
    begin = time.perf_counter()
    trainer.compile()
    compile_s = time.perf_counter() - begin
    evaluate = evaluator(task.brax_env, lambda params, deterministic=True: task.policy(params), args, seed)
    curve = [
        {
            "env_steps": 0,
            "wall_s": 0.0,
            "reward": float(evaluate.run_evaluation(trainer.params(trainer.initial), {})["eval/episode_reward"]),
        }
    ]
    wall = [0.0]

    def on_epoch(epoch: int, state: Any, row: dict[str, float]) -> None:
        wall[0] += row["epoch_time"]
        reward = evaluate.run_evaluation(trainer.params(state), {})["eval/episode_reward"]
        curve.append(
            {"env_steps": epoch * per_epoch_steps, "wall_s": wall[0], "reward": float(reward), "loss": row["loss"]}
        )

    outcome = trainer.run(trainer.initial, epochs=settings.epochs, on_epoch=on_epoch)
    status = "complete" if outcome.diverged_row is None else f"diverged at epoch {outcome.diverged_row['epoch']}"
    return {"compile_s": compile_s, "curve": curve, "status": status}


def check_apg_runs() -> None:
    """Make Brax 0.14's apg.train runnable, or refuse before any run: it calls `jax.device_put_replicated`, which
    JAX 0.8 removed. On one device that call is a stack along a new leading (device) axis, put on the device; with
    that shim apg.train runs under JAX 0.10 (checked: inverted_double_pendulum, generalized, 4 updates). On several
    devices the shim would have to shard, so there the benchmark refuses (the shim itself:
    `stablebptt.integrations.brax.brax_training_loops`, around each apg.train)."""
    import jax

    if hasattr(jax, "device_put_replicated"):
        return
    if len(jax.local_devices()) != 1:
        raise Refused(
            f"Brax's apg.train needs jax.device_put_replicated, which JAX {jax.__version__} no longer has; on one "
            "device this benchmark supplies it, on several run it with jax<0.8 (docs/brax.md) or leave APG out: "
            "--variants stream-R,stream-M,stream-C,R,C,C-trunc"
        )


def run_apg(name: str, seed: int, lr: float, args: argparse.Namespace) -> dict[str, Any]:
    from brax.training.agents.apg import train as apg

    from stablebptt.integrations.brax import brax_training_loops, environment

    env = environment(name, args.backend, 1)
    updates_per_eval = round(args.apg_updates / (args.evals - 1))
    per_eval_steps = updates_per_eval * args.num_envs * args.window
    curve: list[dict[str, Any]] = []
    epoch_times: list[float] = []
    begin = time.perf_counter()

    def progress(it: int, metrics: dict[str, Any]) -> None:
        if it > 0:
            epoch_times.append(float(metrics["training/walltime"]) - sum(epoch_times))
        curve.append(
            {
                "env_steps": it * per_eval_steps,
                "wall_s": float(metrics.get("training/walltime", 0.0)),
                "reward": float(metrics["eval/episode_reward"]),
                "grad_norm": float(metrics.get("training/grad_norm", np.nan)),
            }
        )

    status = "complete"
    try:
        with brax_training_loops():
            apg.train(
                environment=env,
                episode_length=args.episode_length,
                policy_updates=args.apg_updates,
                horizon_length=args.window,
                num_envs=args.num_envs,
                num_evals=args.evals,
                num_eval_envs=args.eval_envs,
                seed=seed,
                learning_rate=lr,
                deterministic_eval=True,
                progress_fn=progress,
            )
    except AssertionError:
        # apg.train ends with pmap.assert_is_replicated(training_state), which compares the state with itself
        # across devices: with one device it fails exactly when the state holds a NaN.
        status = "diverged (NaN in the training state at the end)"
    if not curve:
        raise Refused(f"APG on {name} seed {seed} stopped before its first evaluation")
    if any(not np.isfinite(p["reward"]) for p in curve):
        first = next(p["env_steps"] for p in curve if not np.isfinite(p["reward"]))
        status = f"diverged (evaluation reward NaN from {first} steps)"
    total_s = time.perf_counter() - begin
    # The first training epoch compiles: count it as the median of the others.
    steady = float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else epoch_times[0]
    for point, elapsed in zip(curve[1:], np.cumsum([steady, *epoch_times[1:]]), strict=False):
        point["wall_s"] = float(elapsed)
    return {
        "compile_s": (epoch_times[0] - steady) if epoch_times else None,
        "curve": curve,
        "status": status,
        "total_s": total_s,
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, variant, lr in dict.fromkeys((r["env"], r["variant"], r.get("lr")) for r in runs):
        if True:
            group = [r for r in runs if (r["env"], r["variant"], r.get("lr")) == (name, variant, lr)]
            gaps = [r["reproduction"]["max_abs_reward_diff"] for r in group if "reproduction" in r]
            # A run that diverged ends at its last finite evaluation (stablebptt) or at a NaN reward (APG):
            # statistics are over the finite rewards, `diverged` counts the runs and `statuses` says what happened.
            final = np.array([r["curve"][-1]["reward"] for r in group])
            best = np.array([np.nanmax([p["reward"] for p in r["curve"]]) for r in group])
            initial = [r["curve"][0]["reward"] for r in group]
            with np.errstate(all="ignore"):
                stats = {
                    f"{k}_{f.__name__.replace('nan', '')}": float(f(v)) if np.any(np.isfinite(v)) else float("nan")
                    for k, v in (("final", final), ("best", best))
                    for f in (np.nanmedian, np.nanmin, np.nanmax)
                }
            rows.append(
                {
                    "env": name,
                    "variant": variant,
                    "lr": lr,
                    "seeds": len(group),
                    "reproduction_max_abs_reward_diff": max(gaps) if gaps else None,
                    "diverged": sum(r["status"].startswith("diverged") for r in group),
                    "initial_median": float(np.median(initial)),
                    **stats,
                    "env_steps": group[0]["curve"][-1]["env_steps"],
                    "train_wall_s_median": float(np.median([r["curve"][-1]["wall_s"] for r in group])),
                    "compile_s_median": float(
                        np.median([r["compile_s"] for r in group if r["compile_s"] is not None] or [np.nan])
                    ),
                    "statuses": sorted({r["status"] for r in group}),
                }
            )
    return rows


def write_outputs(settings: dict[str, Any], runs: list[dict[str, Any]], args: argparse.Namespace, **extra: Any) -> None:
    """The table, the JSON (the shared schema: one row per run), the curves as CSV and the figure."""
    payload = _common.result("vs_brax_apg", quick=args.quick, settings=settings, rows=runs, **extra)
    payload["summary"] = summarize(runs)
    _common.print_table(
        [
            "env",
            "variant",
            "lr",
            "seeds",
            "diverged",
            "final (median [min, max])",
            "best (median [min, max])",
            "steps",
            "train s",
            "compile s",
            "status",
            "vs APG",
        ],
        [
            [
                s["env"],
                s["variant"],
                "" if s["lr"] is None else f"{s['lr']:g}",
                s["seeds"],
                s["diverged"],
                f"{s['final_median']:.1f} [{s['final_min']:.1f}, {s['final_max']:.1f}]",
                f"{s['best_median']:.1f} [{s['best_min']:.1f}, {s['best_max']:.1f}]",
                s["env_steps"],
                round(s["train_wall_s_median"], 1),
                round(s["compile_s_median"], 1),
                ", ".join(s["statuses"]),
                "" if s["reproduction_max_abs_reward_diff"] is None else f"{s['reproduction_max_abs_reward_diff']:.2g}",
            ]
            for s in payload["summary"]
        ],
    )
    _common.write_json(args.out, payload)
    curves = args.out.with_suffix(".csv")
    with open(curves, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env", "variant", "lr", "seed", "env_steps", "wall_s", "reward"])
        for r in runs:
            for p in r["curve"]:
                writer.writerow(
                    [
                        r["env"],
                        r["variant"],
                        r.get("lr", ""),
                        r["seed"],
                        p["env_steps"],
                        f"{p['wall_s']:.3f}",
                        f"{p['reward']:.4f}",
                    ]
                )
    print(f"wrote {curves}")
    plot(payload, args.figure)


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = payload["rows"]
    names = list(dict.fromkeys(r["env"] for r in runs))
    colours = {
        "APG": "tab:gray",
        "stream-R": "tab:cyan",
        "stream-M": "tab:green",
        "stream-C": "tab:purple",
        "R": "tab:blue",
        "C": "tab:red",
        "C-trunc": "tab:orange",
    }
    styles = {"APG": ":", "stream-R": "--"}  # APG and stream-R coincide where the reproduction holds
    several = len({r.get("lr") for r in runs}) > 1
    fig, axes = plt.subplots(2, len(names), figsize=(max(4.2 * len(names), 7.5), 6.4), squeeze=False)
    for j, name in enumerate(names):
        for variant, lr in dict.fromkeys((r["variant"], r.get("lr")) for r in runs if r["env"] == name):
            group = [r["curve"] for r in runs if (r["env"], r["variant"], r.get("lr")) == (name, variant, lr)]
            label = f"{variant} lr {lr:g}" if several and lr is not None else variant
            n = min(len(c) for c in group)
            steps = np.array([[p["env_steps"] for p in c[:n]] for c in group])
            wall = np.array([[p["wall_s"] for p in c[:n]] for c in group])
            reward = np.array([[p["reward"] for p in c[:n]] for c in group])
            for i, x in enumerate((np.median(steps, 0), np.median(wall, 0))):
                ax = axes[i, j]
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # all-NaN columns of diverged runs
                    ax.plot(
                        x,
                        np.nanmedian(reward, 0),
                        styles.get(variant, "-"),
                        marker="o",
                        ms=2.5,
                        color=colours.get(variant),
                        label=label,
                    )
                    ax.fill_between(
                        x, np.nanmin(reward, 0), np.nanmax(reward, 0), color=colours.get(variant), alpha=0.15, lw=0
                    )
        finite = [sum(np.isfinite(p["reward"]) for p in r["curve"][1:]) for r in runs if r["env"] == name]
        if max(finite) == 0:  # no run got past its first update
            for i in range(2):
                axes[i, j].text(
                    0.5,
                    0.5,
                    "every run diverged\n(NaN gradients; see the table)",
                    ha="center",
                    va="center",
                    transform=axes[i, j].transAxes,
                )
        axes[0, j].set_title(name)
        axes[0, j].set_xlabel("environment steps")
        axes[1, j].set_xlabel("training wall time (s, without compilation)")
        for i in range(2):
            axes[i, j].grid(alpha=0.3)
    for i in range(2):
        axes[i, 0].set_ylabel("evaluation episode reward")
    axes[0, 0].legend(fontsize=8)
    settings = payload.get("settings", {})
    fig.suptitle(
        f"Brax {settings.get('backend', '')}: median and range over seeds "
        f"({settings.get('num_envs')} envs, episodes of {settings.get('episode_length')} steps, "
        f"APG windows of {settings.get('window')})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def merge(args: argparse.Namespace) -> None:
    runs, settings, machines = [], None, []
    for path in args.merge:
        try:
            part = json.loads(Path(path).read_text())
            rows = part["rows"] if "rows" in part else part["runs"]  # "runs": files written before the schema
            runs += [{"backend": part["settings"]["backend"], **r} for r in rows]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Refused(f"cannot read {path} as this benchmark's JSON: {e}") from None
        settings = settings or part.get("settings")
        machines.append(part.get("machine"))
    if len({r["backend"] for r in runs}) > 1:  # the same environment on two backends: tell them apart
        for r in runs:
            r["brax_env"], r["env"] = r["env"], f"{r['env']} ({r['backend']})"
    settings = {**settings, "backend": ", ".join(dict.fromkeys(r["backend"] for r in runs))}
    write_outputs(settings, runs, args, machines=machines)


def compare_with_apg(runs: list[dict[str, Any]]) -> None:
    """Where the last run and one before it are ``APG`` and ``stream-R`` of the same environment, seed and
    learning rate: the largest difference of their evaluation rewards along training, recorded with stream-R
    (its ``reproduction``) and printed."""
    last = runs[-1]
    pair = {"APG", "stream-R"}
    if last["variant"] not in pair:
        return
    key = (last["env"], last["seed"], last["lr"])
    partner = pair - {last["variant"]}
    other = next((r for r in runs[:-1] if (r["env"], r["seed"], r["lr"]) == key and r["variant"] in partner), None)
    if other is None:
        return
    apg, ours = (other, last) if other["variant"] == "APG" else (last, other)
    a = np.array([p["reward"] for p in apg["curve"]])
    b = np.array([p["reward"] for p in ours["curve"]])
    n = min(len(a), len(b))
    diff = np.abs(a[:n] - b[:n])
    ours["reproduction"] = {
        "points": int(n),
        "max_abs_reward_diff": float(np.max(diff)),
        "max_rel_reward_diff": float(np.max(diff / np.maximum(np.abs(a[:n]), 1e-12))),
        "same_length": len(a) == len(b),
    }
    print(
        f"reproduction: {key[0]} seed {key[1]} lr {key[2]:g}: stream-R's evaluation rewards differ from APG's by "
        f"at most {ours['reproduction']['max_abs_reward_diff']:.3g} over {n} evaluations",
        flush=True,
    )


def resumed(args: argparse.Namespace, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs recorded in the output's .partial.json, if it exists and was written with `settings`."""
    path = args.out.with_suffix(".partial.json")
    if not path.exists():
        print(f"--resume: no {path}; starting from the first run")
        return []
    try:
        earlier = json.loads(path.read_text())
        rows, before = earlier["rows"], earlier["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Refused(f"--resume: cannot read {path} ({e}); delete it to start again") from None
    now = json.loads(json.dumps(settings))  # as JSON would give it back (tuples as lists)
    differ = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
    if differ:
        raise Refused(
            f"--resume: {path} was written with other settings ({', '.join(differ[:4])}"
            f"{', ...' if len(differ) > 4 else ''}); use the same ones"
        )
    print(f"--resume: {len(rows)} runs recorded in {path} are kept")
    return list(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        merge(args)
        return 0
    try:
        from stablebptt.integrations.brax import environment_names

        known = environment_names()
    except ImportError:
        raise Refused("this benchmark needs Brax: pip install -e '.[brax]'") from None
    unknown = [e for e in args.envs if e not in known]
    if unknown:
        raise Refused(f"unknown Brax environment {unknown[0]!r}; allowed: {', '.join(known)}")
    if args.x64 or args.cache:
        import jax

        jax.config.update("jax_enable_x64", args.x64)
        if args.cache:
            jax.config.update("jax_compilation_cache_dir", str(args.cache))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if "APG" in args.variants:
        check_apg_runs()
    settings = {
        k: getattr(args, k)
        for k in (
            "backend",
            "episode_length",
            "num_envs",
            "window",
            "apg_updates",
            "evals",
            "eval_envs",
            "seeds",
            "envs",
            "variants",
            "lrs",
            "lr_for",
            "x64",
            "backward",
        )
    }
    settings.update(budget(args))
    print(json.dumps(settings))
    runs = resumed(args, settings) if args.resume else []
    partial = {"machine": _common.machine(), "settings": settings, "rows": runs}  # what is done so far
    done = {(r["env"], r["variant"], r["seed"], r["lr"]) for r in runs}
    for name in args.envs:
        for seed in args.seeds:
            for lr_stream, lr_paper in args.lrs:
                for variant in args.variants:
                    lr = lr_stream if variant == "APG" or variant.startswith("stream") else lr_paper
                    lr = args.lr_for.get(variant, lr)
                    label = variant if variant == "APG" or args.backward == "auto" else f"{variant} ({args.backward})"
                    if (name, label, seed, lr) in done:
                        continue
                    begin = time.perf_counter()
                    if variant == "APG":
                        result = run_apg(name, seed, lr, args)
                    else:
                        result = run_stablebptt(name, variant, seed, lr, args)
                    run = {
                        "env": name,
                        "backend": args.backend,
                        "variant": label,
                        "seed": seed,
                        "lr": lr,
                        **result,
                        "elapsed_s": time.perf_counter() - begin,
                    }
                    runs.append(run)
                    compare_with_apg(runs)
                    last = run["curve"][-1]
                    print(
                        f"{name} {variant} lr {run['lr']:g} seed {seed}: reward {run['curve'][0]['reward']:.1f} -> "
                        f"{last['reward']:.1f} after {last['env_steps']} steps, {last['wall_s']:.1f} s training, "
                        f"{run['elapsed_s']:.0f} s in all ({run['status']})",
                        flush=True,
                    )
                    _common.write_json(args.out.with_suffix(".partial.json"), partial)
    write_outputs(settings, runs, args)
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
