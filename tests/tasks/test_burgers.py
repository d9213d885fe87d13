"""Burgers' equation through PhiFlow (`tasks.burgers`): the step against the equation's linear limit, the data and
loss, gradients of every mode against a naive unroll in float64, and training from the command line."""

from __future__ import annotations

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("phi")

from systems import flat, task_mode_gradients

from stablebptt.cli.commands import run
from stablebptt.core.checks import BadInput
from stablebptt.tasks import Burgers, load_task
from stablebptt.tasks.burgers import LENGTH, phiflow_step, smooth_fields


def test_a_small_wave_decays_as_the_heat_equation_says(x64):
    """For amplitude eps -> 0 the advection term is O(eps^2): one step of a sine of wavenumber k decays by
    exp(-viscosity k^2 dt) (the explicit scheme's discrete Laplacian differs by O(dx^2))."""
    n, k, eps, nu, dt = 64, 2, 1e-6, 0.1, 0.03
    x = (jnp.arange(n) + 0.5) * LENGTH / n
    u = eps * jnp.sin(k * x)[None]
    stepped = phiflow_step(u, dt, nu)
    dx = LENGTH / n
    laplacian_factor = (2 - 2 * math.cos(k * dx)) / dx**2  # the grid's k^2
    np.testing.assert_allclose(stepped, u * (1 - nu * dt * laplacian_factor), rtol=1e-5, atol=1e-18)
    assert abs(laplacian_factor - k**2) / k**2 < 1e-2


def test_advection_moves_a_field_by_its_own_velocity(x64):
    """Without viscosity a constant velocity c plus a small wave carries the wave by c dt (semi-Lagrangian:
    linear interpolation between cells, exact for a shift of whole cells)."""
    n = 32
    dx = LENGTH / n
    c = 1.0
    dt = dx / c  # one cell per step
    x = (jnp.arange(n) + 0.5) * dx
    wave = 1e-7 * jnp.sin(x)
    stepped = phiflow_step((c + wave)[None], dt, 0.0)[0]
    np.testing.assert_allclose(stepped - c, jnp.roll(wave, 1), rtol=0, atol=1e-12)


def test_data_loss_and_settings():
    task = Burgers(n_points=16, horizon=4)
    x = task.sample(jax.random.PRNGKey(0), 5)
    assert set(x) == {"u", "target"} and x["u"].shape == x["target"].shape == (5, 16)
    assert 0.3 < float(jnp.max(jnp.abs(x["u"]))) < 2.0 and not np.allclose(x["u"], x["target"])
    again = smooth_fields(jax.random.split(jax.random.PRNGKey(0))[0], 5, 16)
    np.testing.assert_array_equal(x["u"], again)  # the initial field is the first key's
    states = jax.tree.map(lambda a: jnp.stack([a] * 3), x)
    controls = jnp.ones((2, 5, 16))
    want = float(jnp.mean((x["u"] - x["target"]) ** 2)) + 1e-3
    assert float(task.loss(states, controls)) == pytest.approx(want, rel=1e-6)
    assert load_task("burgers", {"n_points": 8}).n_points == 8
    for bad, message in (
        ({"n_points": 0}, "n_points must be a positive integer"),
        ({"viscosity": -1.0}, "viscosity must be a non-negative finite number"),
        ({"viscosity": math.inf}, "viscosity must be a non-negative finite number"),
        ({"control_cost": "a lot"}, "control_cost must be a non-negative finite number"),
    ):
        with pytest.raises(BadInput, match=message):
            Burgers(**bad)


def test_the_controller_sees_the_target_and_starts_with_no_force():
    task = Burgers(n_points=8, horizon=3)
    params = task.init_controller(jax.random.PRNGKey(1))
    x = task.sample(jax.random.PRNGKey(2), 4)
    np.testing.assert_array_equal(task.controller(params, x), 0.0)
    live = Burgers(n_points=8, horizon=3, zero_final_kernel=False).init_controller(jax.random.PRNGKey(1))
    moved = {"u": x["u"], "target": x["target"] + 1.0}
    assert not np.allclose(task.controller(live, x), task.controller(live, moved))


# ---- gradients of every mode against a naive unroll (float64) --------------------------------------------------


@pytest.fixture(scope="module")
def gradients():
    """Every mode's (value, update, info) and the naive (value, gradient), in float64, one compiled program."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        task = Burgers(n_points=8, horizon=5, hidden=(8,), zero_final_kernel=False, control_cost=0.01)
        k1, k2 = jax.random.split(jax.random.PRNGKey(3))
        params = task.init_controller(k1)
        params = eqx.tree_at(lambda p: p.layers[-1].weight, params, 5.0 * params.layers[-1].weight)
        params = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, params)
        x0 = jax.tree.map(lambda a: a.astype(jnp.float64), task.sample(k2, 3))
        yield task_mode_gradients(task, params, x0)
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.parametrize("method", "RMSN")
def test_single_modes_equal_naive_unroll_in_float64(gradients, method):
    ours, naive = gradients
    value, update, _ = ours[(method, "auto")]
    want_value, want = naive[method]
    assert flat(update).dtype == np.float64
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    assert np.max(np.abs(flat(want))) > 0
    np.testing.assert_allclose(flat(update), flat(want), rtol=1e-9, atol=1e-12 * np.max(np.abs(flat(want))))


def test_the_modes_differ_on_this_system(gradients):
    """Guards the test above: a misplaced stop_gradient shows only if the modes differ."""
    _, naive = gradients
    grads = {m: flat(naive[m][1]) for m in "RMSN"}
    for a in "RMSN":
        for b in "RMSN":
            if a < b:
                assert np.max(np.abs(grads[a] - grads[b])) > 1e-3 * np.max(np.abs(grads[a])), (a, b)


@pytest.mark.parametrize("backward", ["joint", "two_pass"])
def test_combined_equals_the_sign_test_of_the_naive_gradients(gradients, backward):
    ours, naive = gradients
    value, update, info = ours[("C", backward)]
    g_m, g_r = flat(naive["M"][1]), flat(naive["R"][1])
    want = np.where(np.sign(g_m) == np.sign(g_r), g_m, 0.0)
    assert np.any(want != 0) and np.any(want == 0)  # keeps some entries, drops others
    np.testing.assert_allclose(flat(update), want, rtol=1e-9, atol=1e-12 * np.max(np.abs(g_m)))
    np.testing.assert_allclose(value, naive["R"][0], rtol=1e-12)
    np.testing.assert_allclose(info["cosine"], g_m @ g_r / np.linalg.norm(g_m) / np.linalg.norm(g_r), rtol=1e-9)


# ---- training ----------------------------------------------------------------------------------------------------


def test_trains_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    args = ["train", "burgers", "--points", "8", "--horizon", "6", "--epochs", "3", "--n-train", "16"]
    assert run([*args, "--n-test", "16", "--batch-size", "4", "--lr", "0.01", "--out", str(out)]) == 0
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "complete"
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("test_loss")]) for r in rows[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]  # it learns something in 12 updates
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "burgers" and config["task_settings"]["n_points"] == 8


def test_phiflow_leaves_the_process_precision_as_it_was():
    """PhiML turns on float64 for the whole process when it is imported; the task puts it back."""
    import subprocess
    import sys

    code = (
        "import jax; from stablebptt.tasks import Burgers; t = Burgers(n_points=8, horizon=2); "
        "assert not jax.config.jax_enable_x64; x = t.sample(jax.random.PRNGKey(0), 2); "
        "y = t.step(x, jax.numpy.zeros((2, 8))); assert y['u'].dtype == jax.numpy.float32, y['u'].dtype; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
