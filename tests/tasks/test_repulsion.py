from __future__ import annotations

import json
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import assert_updates_finite_and_nonzero

import stablebptt as sb
from stablebptt.tasks import Repulsion, make_task
from stablebptt.training import evaluate, train


@eqx.filter_jit
def _setup(task, key, n):
    """A fresh controller and `n` initial states, in one compiled program (eager, each small op compiles)."""
    return task.init_controller(key), task.sample(jax.random.fold_in(key, 1), n)


def _dist(r):
    return 0.1 + math.hypot(*r)


def test_one_step_by_hand_one_driver_two_evaders(x64):
    """1 driver, 2 evaders, every force of method.md §3 written out by hand (no other drivers: no spread)."""
    task = Repulsion(n_drivers=1, n_evaders=2)
    dt = 4.0 / 60
    xd, vd = (1.0, 0.5), (0.2, -0.1)
    e1, v1 = (0.0, 0.0), (0.0, 0.3)
    e2, v2 = (0.0, 1.0), (-0.4, 0.0)
    c0, c1 = 0.7, -0.3
    # Driver: z = x_d - (e1 + e2) (the sum, quirk); a = c0 z + c1 perp(z) - v.
    z = (1.0 - 0.0, 0.5 - 1.0)  # (1.0, -0.5)
    perp = (0.5, 1.0)
    acc_d = (c0 * z[0] + c1 * perp[0] - vd[0], c0 * z[1] + c1 * perp[1] - vd[1])
    # Evader 1: evade = -(x_d - e1)/d^2, d = 0.1 + |x_d - e1|; flock from evader 2: ((0.5/d - 1)/d)(e2 - e1).
    d = _dist((1.0, 0.5))
    evade1 = (-1.0 / d**2, -0.5 / d**2)
    d12 = 0.1 + 1.0
    flock1 = (0.0, (0.5 / d12 - 1) / d12 * 1.0)
    acc_1 = tuple(15 * evade1[k] - 4 * v1[k] + 0.2 * flock1[k] for k in range(2))
    d = _dist((1.0, -0.5))
    evade2 = (-1.0 / d**2, 0.5 / d**2)
    flock2 = (0.0, (0.5 / d12 - 1) / d12 * -1.0)
    acc_2 = tuple(15 * evade2[k] - 4 * v2[k] + 0.2 * flock2[k] for k in range(2))

    x = jnp.array([[[xd, vd], [e1, v1], [e2, v2]]])
    out = np.asarray(jax.jit(task.step)(x, jnp.array([[[c0, c1]]])))[0]
    for obj, (p, v, a) in enumerate([(xd, vd, acc_d), (e1, v1, acc_1), (e2, v2, acc_2)]):
        # Explicit Euler: both updates from the old state.
        np.testing.assert_allclose(out[obj, 0], [p[0] + dt * v[0], p[1] + dt * v[1]], rtol=1e-13)
        np.testing.assert_allclose(out[obj, 1], [v[0] + dt * a[0], v[1] + dt * a[1]], rtol=1e-13)


def test_driver_spread_and_mean_centre(x64):
    """Two drivers push each other apart with 0.2 (x_j - x_i)/d^2; centre="mean" divides the evader sum."""
    x = jnp.zeros((1, 4, 2, 2)).at[0, 0, 0].set(jnp.array([1.0, 0.0])).at[0, 1, 0].set(jnp.array([-1.0, 0.0]))
    x = x.at[0, 2, 0].set(jnp.array([0.0, 3.0])).at[0, 3, 0].set(jnp.array([0.0, 5.0]))
    c = jnp.array([[[1.0, 0.0], [0.0, 0.0]]])
    d = 0.1 + 2.0
    for centre, evaders in [("sum", 8.0), ("mean", 4.0)]:
        acc = np.asarray(jax.jit(Repulsion(n_drivers=2, n_evaders=2, centre=centre).accelerations)(x, c))[0]
        np.testing.assert_allclose(acc[0], [1.0 + 0.2 * 2 / d**2, 0.0 - evaders], rtol=1e-13)
        np.testing.assert_allclose(acc[1], [-0.2 * 2 / d**2, 0.0], rtol=1e-13)


def test_far_apart_with_zero_control_drivers_only_decelerate(x64):
    task = Repulsion(n_drivers=2, n_evaders=1)
    pos = jnp.array([[1e6, 0.0], [0.0, 1e6], [-1e6, 0.0]])
    vel = jnp.array([[1.0, -2.0], [0.5, 0.5], [0.0, 0.0]])
    x = jnp.stack([pos, vel], axis=1)[None]
    acc = np.asarray(jax.jit(task.accelerations)(x, jnp.zeros((1, 2, 2))))[0]
    np.testing.assert_allclose(acc[:2], -np.asarray(vel[:2]), atol=1e-6)  # damping (spread ~ 0.2/distance)
    np.testing.assert_allclose(acc[2:], 0.0, atol=1e-4)  # the evader at rest; repulsion ~ 15/distance
    out = np.asarray(jax.jit(task.step)(x, jnp.zeros((1, 2, 2))))[0]
    np.testing.assert_allclose(out[:2, 1], np.asarray(vel[:2]) * (1 - task.dt), atol=1e-7)
    np.testing.assert_allclose(out[:, 0], np.asarray(pos + task.dt * vel), rtol=1e-15)


def test_coinciding_objects_give_finite_forces_and_gradients():
    task = Repulsion(n_drivers=2, n_evaders=3)
    x = jnp.zeros((2, 5, 2, 2))
    c = jnp.ones((2, 2, 2))
    out = jax.jit(task.step)(x, c)
    assert np.all(np.isfinite(np.asarray(out)))
    grads = jax.jit(jax.grad(lambda x, c: jnp.sum(task.step(x, c) ** 2), argnums=(0, 1)))(x, c)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_loss_counts_evaders_every_step_and_controls():
    task = Repulsion(n_drivers=1, n_evaders=2, horizon=2, rc=0.5, target=(1.0, 0.0))
    states = jnp.zeros((3, 1, 3, 2, 2)).at[:, :, 0, 0].set(100.0)  # drivers do not count
    controls = jnp.full((2, 1, 1, 2), 2.0)
    # evaders at the origin, target (1, 0): squared error 1 in x, 0 in y -> mean 0.5; controls: 0.5 * 4.
    assert float(jax.jit(task.loss)(states, controls)) == pytest.approx(0.5 + 2.0)
    states = states.at[0, :, 1:, 0].set(50.0)  # the initial state does not count either
    assert float(jax.jit(task.loss)(states, controls)) == pytest.approx(2.5)


def test_sample_distribution(key):
    task = Repulsion(n_drivers=2, n_evaders=4)
    x = np.asarray(eqx.filter_jit(task.sample)(key, 2000))
    assert x.shape == (2000, 6, 2, 2)
    np.testing.assert_array_equal(x[:, :, 1], 0.0)
    r = np.linalg.norm(x[:, :2, 0], axis=-1)
    assert r.min() >= 3.0 - 1e-5 and r.max() <= 4.0 + 1e-5 and r.std() > 0.2
    evaders = x[:, 2:, 0]
    centre = evaders.mean(axis=1)
    assert np.all(np.abs(evaders - centre[:, None]) <= 1.0 + 1e-5)  # offsets within [-0.5, 0.5]^2
    r = np.linalg.norm(centre, axis=-1)
    assert r.min() >= 0.25 and r.max() <= 2.75 and 1.3 < r.mean() < 1.7


@pytest.mark.parametrize("nd, ne", [(1, 1), (3, 2)])
def test_any_numbers_of_drivers_and_evaders(key, nd, ne):
    task = make_task("repulsion", n_drivers=nd, n_evaders=ne, horizon=5, hidden=[8])
    params, x0 = _setup(task, key, 3)
    states, controls = eqx.filter_jit(sb.rollout)(task.step, task.controller, params, x0, task.horizon)
    assert states.shape == (6, 3, nd + ne, 2, 2) and controls.shape == (5, 3, nd, 2)
    assert np.isfinite(float(jax.jit(task.loss)(states, controls)))
    assert params.layers[-1].weight.shape == (2 * nd, 8)
    assert np.all(np.asarray(controls) == 0)  # zero final kernel (quirk)


def test_updates_finite_and_nonzero(key):
    """R, M and C on a fresh controller (zero output layer, as published), compiled as one program."""
    task = Repulsion(horizon=8, hidden=(16, 16))
    params, x0 = _setup(task, key, 4)
    assert_updates_finite_and_nonzero(task, params, x0)


def test_short_combined_training_lowers_test_loss(key):
    task = Repulsion(horizon=8, hidden=(16, 16))
    params, held_out = _setup(task, key, 64)
    result = train(task, "C", epochs=10, batch_size=8, n_train=64, n_test=8, lr=1e-2, params=params)
    loss = eqx.filter_jit(evaluate)
    before, after = float(loss(task, params, held_out)), float(loss(task, result.params, held_out))
    assert after < 0.85 * before


@pytest.mark.parametrize(
    "settings",
    [
        {"n_drivers": 0},
        {"n_evaders": 0},
        {"rc": -1.0},
        {"centre": "median"},
        {"target": (0.0,)},
        {"horizon": 0},
        {"duration": -4.0},
    ],
)
def test_bad_settings(settings):
    ((name, value),) = settings.items()  # the message names the setting and the value given
    with pytest.raises(ValueError, match=rf"\b{name}\b.*{re.escape(repr(value))}"):
        Repulsion(**settings)


def test_config_round_trip():
    task = Repulsion(n_drivers=3, rc=0.01, centre="mean", target=(1.0, 2.0))
    settings = json.loads(json.dumps(task.config()))
    settings.pop("name", None)  # Task.config() also lists the class variable
    assert make_task("repulsion", **settings).config() == task.config()
