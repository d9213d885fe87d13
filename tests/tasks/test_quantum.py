from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import assert_updates_finite_and_nonzero

from stablebptt.tasks import Quantum, make_task
from stablebptt.training import evaluate, train


def _random_psi(rng, batch, n):
    z = rng.normal(size=(batch, n)) + 1j * rng.normal(size=(batch, n))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return np.stack([z.real, z.imag], axis=-1)


def _complex(psi):
    psi = np.asarray(psi)
    return psi[..., 0] + 1j * psi[..., 1]


def _rollout_controls(task, psi, controls):
    def body(x, c):
        x = task.step(x, c)
        return x, x

    return jax.lax.scan(body, psi, controls)[1]


@eqx.filter_jit
def _rollout_jit(task, psi, controls):
    return _rollout_controls(task, psi, controls)


@eqx.filter_jit
def _setup(task, key, n):
    """A fresh controller and `n` initial states, in one compiled program (eager, each small op compiles)."""
    return task.init_controller(key), task.sample(jax.random.fold_in(key, 1), n)


def test_norm_is_conserved_over_128_steps(x64):
    task = Quantum()
    rng = np.random.default_rng(0)
    psi = jnp.asarray(_random_psi(rng, 4, task.n_points))
    controls = jnp.asarray(rng.uniform(-20, 20, size=(128, 4)))
    states = _rollout_jit(task, psi, controls)
    norms = np.sum(np.asarray(states) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(norms, 1.0, atol=1e-12)


def test_norm_is_conserved_in_float32():
    task = Quantum()
    rng = np.random.default_rng(1)
    psi = jnp.asarray(_random_psi(rng, 4, task.n_points), jnp.float32)
    controls = jnp.asarray(rng.uniform(-20, 20, size=(128, 4)), jnp.float32)
    states = _rollout_jit(task, psi, controls)
    assert states.dtype == jnp.float32
    norms = np.sum(np.asarray(states, dtype=np.float64) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


@pytest.mark.parametrize("n", [1, 3])
def test_eigenstate_without_control_keeps_its_shape_with_the_crank_nicolson_phase(x64, n):
    task = Quantum()
    e = np.asarray(task.eigenstate(n))
    psi = jnp.asarray(np.stack([e, np.zeros_like(e)], axis=-1)[None])
    states = _rollout_jit(task, psi, jnp.zeros((128, 1)))
    z = _complex(states[-1, 0])
    # Eigenvalue of -D2 for sin(pi n j / (N + 1)); one Crank-Nicolson step multiplies by (1 - ia)/(1 + ia).
    lam = 4 / task.dx**2 * math.sin(math.pi * n / (2 * (task.n_points + 1))) ** 2
    a = 0.5 * task.dt * lam
    factor = ((1 - 1j * a) / (1 + 1j * a)) ** 128
    np.testing.assert_allclose(z, factor * e, atol=1e-11)


def test_step_equals_a_dense_complex_solve(x64):
    task = Quantum(n_points=12, dt=0.1)
    rng = np.random.default_rng(2)
    psi = _random_psi(rng, 3, 12)
    c = rng.uniform(-5, 5, size=3)
    out = _complex(jax.jit(task.step)(jnp.asarray(psi), jnp.asarray(c)))
    dx = 2 / 13
    x = np.arange(1, 13) * dx
    lap = (np.diag(np.full(11, 1.0), 1) + np.diag(np.full(11, 1.0), -1) - 2 * np.eye(12)) / dx**2
    for b in range(3):
        h = -lap + np.diag(c[b] * x)
        a_mat = np.eye(12) + 0.05j * h
        b_mat = np.eye(12) - 0.05j * h
        expected = np.linalg.solve(a_mat, b_mat @ _complex(psi[b]))
        np.testing.assert_allclose(out[b], expected, rtol=1e-12, atol=1e-14)


def test_gradient_through_steps_matches_finite_differences(x64):
    task = Quantum(target=2)
    rng = np.random.default_rng(3)
    psi = jnp.asarray(_random_psi(rng, 2, task.n_points))
    controls = jnp.asarray(rng.uniform(-3, 3, size=(5, 2)))

    @jax.jit
    def f(controls, psi):
        return task.loss(jnp.concatenate([psi[None], _rollout_controls(task, psi, controls)]), controls)

    g_c, g_psi = jax.jit(jax.grad(f, argnums=(0, 1)))(controls, psi)
    for direction, arg in [(rng.normal(size=controls.shape), 0), (rng.normal(size=psi.shape), 1)]:
        eps = 1e-6
        args = [controls, psi]
        plus = list(args)
        minus = list(args)
        plus[arg] = args[arg] + eps * direction
        minus[arg] = args[arg] - eps * direction
        fd = (f(*plus) - f(*minus)) / (2 * eps)
        analytic = np.sum(np.asarray((g_c, g_psi)[arg]) * direction)
        assert float(fd) == pytest.approx(float(analytic), rel=1e-6, abs=1e-9)


def test_loss_sums_over_steps_and_averages_over_the_batch(x64):
    task = Quantum(target=3, horizon=4)
    e3, e1 = np.asarray(task.eigenstate(3)), np.asarray(task.eigenstate(1))
    on = np.stack([e3, 0 * e3], axis=-1)
    off = np.stack([0 * e1, e1], axis=-1)
    states = np.stack([np.stack([off, on])] * 5)  # sample 0 orthogonal, sample 1 on target, every step
    states[0] = states[0][::-1]  # the initial state does not count
    assert float(jax.jit(task.loss)(jnp.asarray(states), None)) == pytest.approx((4 * 1.0 + 4 * 0.0) / 2)


def test_sample_is_a_normalised_mix_of_the_two_lowest_eigenstates(key):
    task = Quantum()
    psi = eqx.filter_jit(task.sample)(key, 500)
    assert psi.shape == (500, 32, 2)
    np.testing.assert_allclose(np.sum(np.asarray(psi) ** 2, axis=(1, 2)), 1.0, atol=1e-5)
    z = _complex(psi)
    basis = np.stack([np.asarray(task.eigenstate(n)) for n in (1, 2)])
    rest = z - (z @ basis.T) @ basis
    assert np.max(np.abs(rest)) < 1e-5
    phases = np.angle(z @ basis.T)
    assert np.std(phases) > 1.5  # uniform phases


def test_updates_finite_and_nonzero(key):
    """R, M and C on a fresh CNN controller (output non-zero: no zero-kernel quirk), compiled as one program."""
    task = make_task("quantum", target=4, horizon=8)
    params, x0 = _setup(task, key, 4)
    c = eqx.filter_jit(task.controller)(params, x0)
    assert c.shape == (4,) and np.all(np.isfinite(np.asarray(c))) and np.all(np.asarray(c) != 0)
    assert_updates_finite_and_nonzero(task, params, x0)


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_short_combined_training_lowers_test_loss(key):
    task = Quantum(horizon=16, filters=8)
    params, held_out = _setup(task, key, 64)
    result = train(task, "C", epochs=20, batch_size=8, n_train=64, n_test=8, lr=1e-2, params=params)
    loss = eqx.filter_jit(evaluate)
    before, after = float(loss(task, params, held_out)), float(loss(task, result.params, held_out))
    assert after < 0.92 * before


@pytest.mark.parametrize(
    "settings", [{"target": 0}, {"target": 33}, {"n_points": 5}, {"horizon": 0}, {"dt": 0.0}, {"target": 2.5}]
)
def test_bad_settings(settings):
    ((name, value),) = settings.items()  # the message names the setting and the value given
    with pytest.raises(ValueError, match=rf"\b{name}\b.*{re.escape(repr(value))}"):
        Quantum(**settings)
