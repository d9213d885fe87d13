"""2D incompressible flow through PhiFlow (`tasks.smoke`): the pressure projection against the discrete
divergence, advection by a uniform flow, the data and loss, gradients of every mode against a naive unroll in
float64, and training from the command line."""

from __future__ import annotations

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("phi")

from systems import VARIANTS, check_combined, check_single_mode, flat, task_mode_gradients

from stablebptt.cli.commands import run
from stablebptt.core.checks import BadInput
from stablebptt.tasks import Smoke, load_task
from stablebptt.tasks.smoke import BLOB_WIDTH, LENGTH, blobs, phiflow_smoke_step


def stepped(smoke, velocity, dt, tolerance=1e-12, max_iterations=500):
    """`phiflow_smoke_step` compiled: PhiML caches its solve's gradient by the arguments it was called with, and an
    eager call leaves concrete arrays there that a later traced call fails to compare with (as training would)."""
    return jax.jit(phiflow_smoke_step, static_argnums=(2, 3, 4))(smoke, velocity, dt, tolerance, max_iterations)


def divergence(v: jax.Array) -> jax.Array:
    """The discrete divergence of a periodic staggered velocity ``(batch, n, n, 2)``: component 0 sits on the
    lower x face of each cell, component 1 on its lower y face."""
    dx = LENGTH / v.shape[1]
    vx, vy = v[..., 0], v[..., 1]
    return (jnp.roll(vx, -1, axis=1) - vx + jnp.roll(vy, -1, axis=2) - vy) / dx


def test_the_projection_removes_the_divergence(x64):
    """With a step too short to advect anything, the step is the pressure projection alone: the divergence of a
    random velocity field falls by six orders or more, and a divergence-free part (a uniform flow) is kept."""
    n = 8
    key = jax.random.PRNGKey(0)
    v = jax.random.normal(key, (2, n, n, 2))
    smoke = jnp.zeros((2, n, n))
    _, projected = stepped(smoke, v, 1e-9)
    before, after = float(jnp.max(jnp.abs(divergence(v)))), float(jnp.max(jnp.abs(divergence(projected))))
    assert before > 1.0 and after < 1e-6 * before
    uniform = jnp.ones((1, n, n, 2)) * jnp.array([0.3, -0.2])
    _, kept = stepped(jnp.zeros((1, n, n)), uniform, 1e-9)
    np.testing.assert_allclose(kept, uniform, atol=1e-9)


def test_a_uniform_flow_carries_the_smoke_half_a_cell_per_step(x64):
    """Semi-Lagrangian advection with linear interpolation: a uniform flow of half a cell per step in x moves the
    smoke to the mean of each cell and its upstream neighbour (along axis 1), and leaves the velocity as it was.
    (Half a cell, not a whole one: at whole-cell shifts the sample points fall on the interpolation's cell
    boundaries, where the compiled program rounds one row of the periodic wrap to the other side.)"""
    n = 8
    dx = LENGTH / n
    dt = 0.1
    smoke = blobs(jax.random.PRNGKey(1), 1, n)
    velocity = jnp.zeros((1, n, n, 2)).at[..., 0].set(0.5 * dx / dt)
    moved, v = stepped(smoke, velocity, dt)
    np.testing.assert_allclose(moved, 0.5 * (smoke + jnp.roll(smoke, 1, axis=1)), atol=1e-9)
    assert float(jnp.max(jnp.abs(moved - smoke))) > 0.1  # it did move
    np.testing.assert_allclose(v, velocity, atol=1e-9)


def test_data_loss_and_settings():
    task = Smoke(n_points=8, horizon=3)
    x = task.sample(jax.random.PRNGKey(0), 5)
    assert x["smoke"].shape == x["target"].shape == (5, 8, 8) and x["velocity"].shape == (5, 8, 8, 2)
    assert np.all(x["velocity"] == 0) and not np.allclose(x["smoke"], x["target"])
    peak = np.asarray(jnp.max(x["smoke"], axis=(1, 2)))
    assert np.all((peak > 0.5) & (peak <= 1.0))  # a blob of width 0.1 m on cells of 0.125 m peaks near 1
    np.testing.assert_array_equal(x["smoke"], blobs(jax.random.split(jax.random.PRNGKey(0))[0], 5, 8))
    far = jnp.exp(-((0.5 * LENGTH) ** 2) / (2 * BLOB_WIDTH**2))
    assert float(jnp.min(x["smoke"])) < 10 * far + 1e-6  # the blob is local: far from it, nothing
    states = jax.tree.map(lambda a: jnp.stack([a] * 3), x)
    controls = jnp.ones((2, 5, 8, 8, 2))
    want = float(jnp.mean((x["smoke"] - x["target"]) ** 2)) + 1e-4
    assert float(task.loss(states, controls)) == pytest.approx(want, rel=1e-6)
    assert load_task("smoke", {"n_points": 6}).n_points == 6
    for bad, message in (
        ({"n_points": 3}, "n_points must be at least 4"),
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"control_cost": -1.0}, "control_cost must be a non-negative finite number"),
        ({"control_cost": math.nan}, "control_cost must be a non-negative finite number"),
        ({"tolerance": 0.0}, "tolerance must be a positive"),
    ):
        with pytest.raises(BadInput, match=message):
            Smoke(**bad)


def test_the_controller_sees_the_target_and_starts_with_no_force():
    task = Smoke(n_points=6, horizon=2)
    x = task.sample(jax.random.PRNGKey(2), 3)
    force = task.controller(task.init_controller(jax.random.PRNGKey(1)), x)
    assert force.shape == (3, 6, 6, 2) and np.all(force == 0)
    live = Smoke(n_points=6, horizon=2, zero_final_kernel=False).init_controller(jax.random.PRNGKey(1))
    moved = {**x, "target": x["target"] + 1.0}
    assert not np.allclose(task.controller(live, x), task.controller(live, moved))


# ---- gradients of every mode against a naive unroll (float32) --------------------------------------------------
# Float32: in float64 PhiML's implicit gradient of the pressure solve falls back to float32 outside the forward
# step's precision block. Float32 with the pressure solved to 1e-6 and the checks of the float32 simulators (MJX):
# every entry to 1e-4 of the largest. One program per variant: PhiML caches the solve's gradient per trace, and
# a second backward pass of it in the same trace fails comparing traced arrays.


@pytest.fixture(scope="module")
def gradients():
    """Every mode's (value, update, info) and the naive (value, gradient), one compiled program each."""
    task = Smoke(n_points=4, horizon=4, hidden=(8,), zero_final_kernel=False, tolerance=1e-6)
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params = task.init_controller(k1)
    params = eqx.tree_at(lambda p: p.layers[-1].weight, params, 20.0 * params.layers[-1].weight)
    joint_only = tuple(v for v in VARIANTS if v != ("C", "two_pass"))  # two_pass: not with PhiML's solve (Smoke)
    return task_mode_gradients(task, params, task.sample(k2, 2), joint_only, one_program=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", "RMSN")
def test_single_modes_equal_naive_unroll(gradients, method):
    ours, naive = gradients
    check_single_mode(ours[(method, "auto")], naive[method])


@pytest.mark.slow
def test_the_modes_differ_on_this_system(gradients):
    """Guards the test above: a misplaced stop_gradient shows only if the modes differ."""
    _, naive = gradients
    grads = {m: flat(naive[m][1]) for m in "RMSN"}
    for a in "RMSN":
        for b in "RMSN":
            if a < b:
                assert np.max(np.abs(grads[a] - grads[b])) > 1e-2 * np.max(np.abs(grads[a])), (a, b)


@pytest.mark.slow
def test_combined_equals_the_sign_test_of_the_naive_gradients(gradients):
    ours, naive = gradients
    check_combined(ours[("C", "joint")], naive)


# ---- training ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trains_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    args = ["train", "smoke", "--points", "6", "--horizon", "6", "--epochs", "3", "--n-train", "16"]
    assert run([*args, "--n-test", "16", "--batch-size", "4", "--lr", "0.01", "--out", str(out)]) == 0
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "complete"
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("test_loss")]) for r in rows[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "smoke" and config["task_settings"]["n_points"] == 6
