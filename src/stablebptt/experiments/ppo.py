"""Brax's own PPO as the reference of the study's Brax part (issue 43): ``ppo.train`` given the training time of a
SHAC run, its policy scored by the study's own evaluation.

PPO is the number users quote for these environments. It runs here as Brax ships it (`brax_training_loops` supplies
what Brax 0.14 needs from newer JAX), with Brax's published hyperparameters for the environment except the sizes of
one training step (`PPO_SETTINGS` says which and why). Its budget is wall time, not environment steps (PPO needs
many more; that is its trade): the median training time of the environment's SHAC runs with R, compilation
excluded on both sides. Its deterministic policy (tanh of the mean) is scored at every evaluation point as every run
of the study is: minus the mean reward per step over the study's episode of 100 steps, from the study's 16 test
states of the seed (`study.BRAX_TASK`). One record per environment and seed (`study.ppo_record_path`), read by the
study's records page (`study.ppo_references`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..core.checks import BadInput
from ..core.unroll import rollout
from ..integrations.brax import brax_training_loops
from ..runs.io import read_json, write_json
from ..runs.provenance import provenance
from ..tasks import make_task
from ..tasks.registry import task_label
from ..training.settings import FIELDS, from_mapping
from ..training.train import run_data
from .study import BASELINE, BRAX_TASK, PPO_ENVS, SEEDS, SHAC, _brax_grid, load_records, ppo_record_path

# Brax's PPO settings for inverted_double_pendulum (its training colab; inverted_pendulum's are the same), except one
# training step's sizes: 128 environments instead of 2048, batches of 64 instead of 1024 and 8 minibatches instead
# of 32, so that one CPU core runs about 200 training steps of 2,560 environment steps in the double pendulum's
# budget of about a minute (measured: 512,000 steps in 56 s), where Brax's sizes (163,840 environment steps a training
# step) would allow about 3; and episodes of the study's 100 steps instead of 1000.
PPO_SETTINGS: dict[str, dict[str, Any]] = {
    "inverted_double_pendulum": {
        "num_envs": 128,
        "batch_size": 64,
        "num_minibatches": 8,
        "unroll_length": 5,
        "num_updates_per_batch": 4,
        "reward_scaling": 10.0,
        "normalize_observations": True,
        "action_repeat": 1,
        "discounting": 0.97,
        "learning_rate": 3e-4,
        "entropy_cost": 1e-2,
    }
}
EVERY = 10  # training steps between evaluation points (25,600 environment steps at the settings above)
MAX_POINTS = 1000  # the most evaluation points a run may have (a bound on its length if the budget is never met)


def shac_seconds(root: str | Path, env: str) -> float:
    """The budget: the median training seconds of a SHAC run with R on `env` in the study's records under `root`
    (the sum of its ``epoch_time``, a batched group's time shared among its runs, compilation excluded)."""
    label = task_label(f"brax:{env}")
    times = [
        float(np.nansum(r.curve("epoch_time")))
        for r in load_records(root)
        if r.status != "unreadable"
        and task_label(r.config.get("task", "")) == label
        and r.settings().get("protocol") == "shac"
        and r.settings().get("method") == BASELINE
    ]
    if not times:
        raise BadInput(
            f"no record of SHAC with R on {env} under {root}: PPO's budget is its training time; record those runs "
            f"first (stablebptt reproduce run --study shac --stages shac-brax-{env.replace('_', '-')})"
        )
    return float(np.median(times))


def study_test_states(env: str, seed: int) -> tuple[Any, Any]:
    """The study's task on `env` and the test states of `seed` (those every run of the study is scored on)."""
    grid = _brax_grid(env, SHAC)
    config = {k: v[0] for k, v in grid.items() if k not in BRAX_TASK and k in FIELDS}
    config |= {"seed": seed, "method": BASELINE}
    task = make_task(f"brax:{env}", **BRAX_TASK)
    return task, run_data(task, from_mapping(config)).test


COMPILING = 2  # Brax's PPO compiles its training epoch twice: at the first call, and at the second (whose arguments
# have lost their weak types, `_strip_weak_type`); measured: 54 and 27 s, then 5 s an epoch


def _epoch_seconds(marks: Sequence[tuple[int, float]]) -> list[float]:
    """Each training epoch's seconds from Brax's ``(env steps, steps per second)`` after it, the epochs that compile
    (`COMPILING`) taken as the first one that does not (empty until there is one)."""
    if len(marks) <= COMPILING:
        return []
    steps = [s for s, _ in marks]
    seconds = [(b - a) / sps for a, b, (_, sps) in zip([0, *steps], steps, marks, strict=False)]
    return [seconds[COMPILING]] * COMPILING + seconds[COMPILING:]


class _Budget(Exception):
    """Raised from Brax's progress callback once the training time has reached the budget."""


def ppo_reference(
    env: str,
    seed: int,
    seconds: float,
    *,
    settings: dict[str, Any] | None = None,
    every: int = EVERY,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train Brax's PPO on `env` with `seed` until its training time (compilation excluded) reaches `seconds`,
    scoring its deterministic policy at every evaluation point by the study's test loss. Returns the record: the
    settings, the budget, and per point the environment steps, the training seconds and the test loss; the final
    point is the last one within the budget."""
    if env not in PPO_SETTINGS and settings is None:
        raise BadInput(f"no PPO settings for {env}; known: {', '.join(PPO_SETTINGS)} (or give settings)")
    if not seconds > 0:
        raise BadInput(f"the budget must be a positive number of seconds, got {seconds}")
    chosen = dict(PPO_SETTINGS[env] if settings is None else settings)
    task, test = study_test_states(env, seed)  # without Brax: a one-line error that says how to install it
    from brax.training.agents.ppo import train as ppo

    from ..integrations.brax import environment

    per_step = chosen["batch_size"] * chosen["num_minibatches"] * chosen["unroll_length"] * chosen["action_repeat"]
    params: list[tuple[int, Any]] = []
    marks: list[tuple[int, float]] = []
    policy: list[Any] = []
    begin = time.perf_counter()

    def keep(step: int, make_policy: Any, p: Any) -> None:
        policy[:] = [make_policy]
        if step > 0:
            params.append((step, jax.device_get(p)))

    def progress(step: int, metrics: dict[str, Any]) -> None:
        marks.append((step, float(metrics["training/sps"])))
        spent = sum(_epoch_seconds(marks))
        if len(marks) % 10 == 0:
            log(f"ppo {env} seed {seed}: {step:,} steps, {spent:.1f} of {seconds:.1f} s")
        if spent >= seconds:
            raise _Budget

    # the budget met (`_Budget`), `keep` has the parameters of every point
    with brax_training_loops(), contextlib.suppress(_Budget):
        ppo.train(
            environment=environment(env, task.backend, task.solver_iterations),
            num_timesteps=MAX_POINTS * every * per_step,
            num_evals=MAX_POINTS + 1,
            episode_length=task.auto_reset,
            seed=seed,
            run_evals=False,
            progress_fn=progress,
            policy_params_fn=keep,
            **chosen,
        )
    elapsed = time.perf_counter() - begin
    train_s = np.cumsum(_epoch_seconds(marks))
    score = _scorer(task, test, policy[0])
    points = [
        {"env_steps": step, "train_s": float(t), "test_loss": float(score(p))}
        for (step, p), t in zip(params, train_s, strict=False)
    ]
    within = [p for p in points if p["train_s"] <= seconds] or points[:1]
    return {
        "env": env,
        "seed": seed,
        "budget_s": seconds,
        "settings": chosen,
        "points": points,
        "final": within[-1],
        # ppo.train's wall time beyond its epochs' training time: initialising and compiling
        "compile_s": float(elapsed - train_s[-1]) if len(train_s) else math.nan,
        "provenance": provenance(task.config(), 0, [str(d.platform) for d in jax.devices()]),
    }


def _scorer(task: Any, test: Any, make_policy: Any) -> Callable[[Any], Any]:
    """The study's test loss of PPO's parameters: the deterministic policy over the task's horizon from `test`."""
    key = jax.random.PRNGKey(0)  # unused by the deterministic policy; its signature takes one

    def controller(p: Any, x: Any) -> Any:
        return make_policy(p, deterministic=True)(x.obs, key)[0]

    @jax.jit
    def loss(p: Any) -> Any:
        return task.loss(*rollout(task.step, controller, p, test, task.horizon))

    return loss


def run_references(
    root: str | Path,
    *,
    envs: Sequence[str] = PPO_ENVS,
    seeds: Sequence[int] = SEEDS,
    log: Callable[[str], None] = print,
) -> int:
    """PPO's record for each environment and seed that has none under `root`, each written as it finishes (rerun
    after any stop: nothing recorded is trained again). Returns how many were written."""
    written = 0
    for env in envs:
        budget = shac_seconds(root, env)
        for seed in seeds:
            path = ppo_record_path(root, env, seed)
            if path.exists():
                try:
                    float(read_json(path)["final"]["test_loss"])
                    continue
                except (BadInput, KeyError, TypeError, ValueError) as e:
                    log(f"ppo {env} seed {seed}: {path} cannot be read ({e}); training it again")
            path.parent.mkdir(parents=True, exist_ok=True)  # before training: an unwritable folder fails first
            log(f"ppo {env} seed {seed}: training for {budget:.1f} s (SHAC with R's median training time)")
            record = ppo_reference(env, seed, budget, log=log)
            write_json(path, record)
            final = record["final"]
            log(
                f"ppo {env} seed {seed}: {final['env_steps']:,} steps in {final['train_s']:.1f} s, mean reward per "
                f"step {-final['test_loss']:.3f}; wrote {path}"
            )
            written += 1
    return written
