"""APG's recipe (`stablebptt.experiments.apg`): its settings against Brax's optimizer written out with Optax, its
refusals, and (slow) a run of the recipe against Brax's own ``apg.train`` with the same arguments and seed on
inverted_double_pendulum (MJX, one solver iteration): the same evaluation rewards and the same final network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

pytest.importorskip("brax")

from stablebptt.core.checks import BadInput
from stablebptt.experiments.apg import apg_recipe
from stablebptt.integrations.brax import BraxTask

ENV = "inverted_double_pendulum"


def test_the_recipe_is_apgs_task_protocol_and_counts():
    task, settings = apg_recipe(ENV, episode_length=20, policy_updates=6, horizon_length=8, num_envs=4, num_evals=3)
    assert isinstance(task, BraxTask)
    assert (task.network, task.actions, task.objective, task.auto_reset) == ("apg", "sampled", "apg", 20)
    assert (settings.protocol, settings.window, settings.key_scheme, settings.method) == ("stream", 8, "apg", "R")
    assert (settings.epochs, settings.n_train // settings.batch_size, settings.batch_size) == (2, 3, 4)
    _, other = apg_recipe(ENV, episode_length=20, policy_updates=6, method="C", regular_nonfinite="stop")
    assert (other.method, other.regular_nonfinite) == ("C", "stop")


def test_the_recipes_optimizer_is_apgs():
    """APG's update written out with Optax (its own global-norm clip, then ``optax.clip(1.0)`` and Adam with
    betas (0.7, 0.95) and an exponentially decaying rate) against the recipe's transform, over steps whose
    gradients are large (the value clip acts) and small (the schedule and epsilon show)."""
    _, settings = apg_recipe(ENV, episode_length=20, policy_updates=6, learning_rate=3e-4)
    ours = settings.transform()
    theirs = optax.chain(
        optax.clip(1.0), optax.adam(optax.exponential_decay(3e-4, transition_steps=1, decay_rate=0.997), 0.7, 0.95)
    )
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    key = jax.random.PRNGKey(0)
    for scale in (30.0, 1e-3, 2.0, 1e-6):
        key, sub = jax.random.split(key)
        grads = {"w": jax.random.normal(sub, (3, 2)) * scale, "b": jnp.array([scale, -scale])}
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12), u_ours, u_theirs)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_evals": 1}, "^num_evals must be an integer >= 2"),
        ({"policy_updates": 0}, "^policy_updates must be a positive integer, got 0$"),
        ({"policy_updates": 1, "num_evals": 4}, "^policy_updates 1 over 3 evaluations is no update per epoch"),
        ({"num_envs": 0}, "^num_envs must be a positive integer"),
        ({"method": "X"}, "method"),
        ({"lr": 0.1}, "^apg_recipe sets lr from its argument learning_rate; give that instead$"),
        ({"window": 4}, "^apg_recipe sets window from its argument horizon_length; give that instead$"),
    ],
)
def test_bad_arguments_are_one_line_errors(arguments, message):
    given = {"episode_length": 20, "policy_updates": 6, **arguments}
    with pytest.raises(BadInput, match=message) as info:
        apg_recipe(ENV, **given)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_the_recipe_reproduces_brax_apg_train():
    """Brax's ``apg.train`` and the recipe with the same arguments and seed (apg_reproduction.py, in a process of
    its own with XLA's quick compilation, 3 min instead of 10 here): the evaluation rewards (Brax's evaluator,
    APG's evaluation key) are equal, and the final networks differ by float reordering only."""
    flags = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    script = Path(__file__).with_name("apg_reproduction.py")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": flags}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    theirs, ours = result["theirs"], result["ours"]
    assert len(theirs) == len(ours) == 3
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert len(set(np.round(theirs, 3))) == 3  # training changed the rewards: the comparison is not of constants
    # 6 updates of about the learning rate each moved the network; where the two differ, by float reordering only
    # (measured: 2e-7 against a movement of 2e-3; Adam makes entries of tiny gradient as large as any other)
    assert result["moved"] > 1e-4
    assert result["max_param_diff"] < 1e-3 * result["moved"]
