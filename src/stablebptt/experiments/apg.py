"""Brax's analytic policy gradients (``brax.training.agents.apg.train``) as a recipe of stablebptt.

`apg_recipe` returns the task and the settings that train as ``apg.train`` with the same arguments does, seed
for seed (checked against Brax's own in tests/experiments/test_apg.py and benchmarks/vs_brax_apg.py), under the
JAX this library runs on (Brax 0.14's ``apg.train`` itself needs ``jax.device_put_replicated``, gone since JAX
0.8), and with any of stablebptt's gradient rules in place of APG's (R). docs/brax.md, "APG's recipe".

Brax is an optional extra (``pip install 'stablebptt[brax]'``), imported when the task is built.
"""

from __future__ import annotations

from typing import Any

from ..core.checks import BadInput, check_positive_int
from ..training import TrainSettings
from ..training.settings import from_mapping

# apg.train's defaults: Adam with betas (0.7, 0.95) and optax's epsilon, the learning rate decaying by 0.997 per
# update, the gradient clipped to global norm 1e9 and then every entry to [-1, 1]
APG_OPTIMIZER: dict[str, Any] = {
    "schedule": "exponential",
    "decay_rate": 0.997,
    "transition_steps": 1,
    "adam_b1": 0.7,
    "adam_b2": 0.95,
    "adam_eps": "optax",
    "adam_epsilon": 1e-8,
    "clip": "both",
    "clip_value": 1.0,
    "clip_norm": 1e9,
}


# the settings apg_recipe derives from its arguments (None: fixed by the recipe), which `settings` may not change
RECIPE_ARGUMENTS = {
    "method": "method",
    "epochs": "num_evals",
    "batch_size": "num_envs",
    "n_train": "policy_updates",
    "lr": "learning_rate",
    "window": "horizon_length",
    "seed": "seed",
    "protocol": None,
    "key_scheme": None,
}


def apg_recipe(
    environment: str,
    *,
    episode_length: int,
    policy_updates: int,
    horizon_length: int = 32,
    num_envs: int = 1,
    num_evals: int = 2,
    learning_rate: float = 1e-4,
    seed: int = 0,
    backend: str = "generalized",
    solver_iterations: int = 1,
    hidden: tuple[int, ...] = (32, 32, 32, 32),
    method: str = "R",
    **settings: Any,
) -> tuple[Any, TrainSettings]:
    """``(BraxTask, TrainSettings)`` that train as ``apg.train(env, episode_length, policy_updates,
    horizon_length, num_envs, num_evals, learning_rate, seed)`` with its other defaults (no observation
    normalisation, one process and device, action repeat 1): the stream protocol with windows of
    `horizon_length` steps, Brax's training wrapper with episodes of `episode_length` steps, APG's network,
    sampled actions and loss, `APG_OPTIMIZER`, APG's key scheme, and ``num_evals - 1`` epochs of
    ``round(policy_updates / (num_evals - 1))`` updates each (APG evaluates after each such epoch).

    `method` replaces APG's gradient (R) with another rule (M, C, ...); `settings` sets any other
    `TrainSettings` field (e.g. ``regular_nonfinite``, or one of `APG_OPTIMIZER` to depart from APG's), but not
    one of `RECIPE_ARGUMENTS`. An epoch's own losses (``train_loss``, ``test_loss``)
    are stablebptt's, over `episode_length` steps from `num_envs` fixed states each; APG's evaluation is
    Brax's ``acting.Evaluator``, which `BraxTask.policy` and `training.stream.apg_eval_key` reproduce."""
    from ..integrations.brax import BraxTask

    if isinstance(num_evals, bool) or not isinstance(num_evals, int) or num_evals < 2:
        raise BadInput(
            "num_evals must be an integer >= 2 (APG evaluates before training and after each of num_evals - 1 "
            f"epochs), got {num_evals!r}"
        )
    check_positive_int("policy_updates", policy_updates)
    check_positive_int("num_envs", num_envs)
    per_epoch = round(policy_updates / (num_evals - 1))
    if per_epoch < 1:
        raise BadInput(
            f"policy_updates {policy_updates} over {num_evals - 1} evaluations is no update per epoch; give at "
            f"least {num_evals - 1} policy_updates or fewer num_evals"
        )
    task = BraxTask(
        env=environment,
        backend=backend,
        solver_iterations=solver_iterations,
        horizon=episode_length,
        hidden=hidden,
        auto_reset=episode_length,
        network="apg",
        actions="sampled",
        objective="apg",
    )
    given = {
        **APG_OPTIMIZER,
        "method": method,
        "epochs": num_evals - 1,
        "batch_size": num_envs,
        "n_train": num_envs * per_epoch,
        "n_test": num_envs,
        "lr": learning_rate,
        "protocol": "stream",
        "window": horizon_length,
        "key_scheme": "apg",
        "seed": seed,
        "skip_nonfinite": False,  # APG has no skip: a non-finite update ends the run
    }
    for name in set(settings) & set(given):
        if name in RECIPE_ARGUMENTS:
            raise BadInput(
                f"apg_recipe sets {name} from its argument {RECIPE_ARGUMENTS[name]}; give that instead"
                if RECIPE_ARGUMENTS[name]
                else f"apg_recipe sets {name} itself (APG's recipe); it cannot be changed here"
            )
    return task, from_mapping({**given, **settings})
