"""Linear simulator, linear controller c = K x: at the dead-beat gain K* = -B^-1 A the state reaches zero in
one step, a global minimum of the loss, where every mode's update vanishes (method.md §1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import stablebptt as sb

A = jnp.array([[1.0, 0.1], [-0.2, 1.05]])
B = jnp.array([[0.5, 0.0], [0.1, 1.0]])
K_OPT = -jnp.linalg.solve(B, A)
HORIZON = 5


def step(x, c):
    return x @ A.T + c @ B.T


def controller(k, x):
    return x @ k.T


def loss(states, controls):
    del controls
    return jnp.mean(jnp.sum(states[1:] ** 2, axis=-1))


@pytest.fixture
def x0(x64, key):
    return jax.random.normal(key, (16, 2))


@pytest.mark.parametrize("method", ["R", "M", "S", "N", "C"])
def test_every_update_vanishes_at_the_optimum(x0, method):
    value, update, _ = sb.value_and_grad(loss, step, controller, HORIZON, method)(K_OPT, x0)
    assert value < 1e-14
    np.testing.assert_allclose(update, 0.0, atol=1e-7)
    # and away from the optimum it does not
    _, away, _ = sb.value_and_grad(loss, step, controller, HORIZON, method)(K_OPT + 0.1, x0)
    assert np.max(np.abs(away)) > 1e-3


def test_training_with_c_returns_to_the_optimum(x0):
    vg = jax.jit(sb.value_and_grad(loss, step, controller, HORIZON, "C"))
    tx = optax.adam(1e-2)
    k = K_OPT + jnp.array([[0.3, -0.2], [0.1, 0.25]])
    state = tx.init(k)
    start = float(jnp.max(jnp.abs(k - K_OPT)))
    for _ in range(600):
        _, update, _ = vg(k, x0)
        u, state = tx.update(update, state, k)
        k = optax.apply_updates(k, u)
    assert float(jnp.max(jnp.abs(k - K_OPT))) < 0.05 * start
