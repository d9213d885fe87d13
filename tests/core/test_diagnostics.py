"""`core.diagnostics` against a scalar linear system with a linear controller, whose gradients, per-step
contributions and perturbation growth are known in closed form (float64), and its refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stablebptt.core.checks import BadInput
from stablebptt.core.diagnostics import check_horizons, gradient_diagnostics, horizon_ladder

A, B, K = 1.05, 0.5, 0.3  # x' = A x + B c, c = K x: the closed loop multiplies by A + B K = 1.2 per step
LOOP = A + B * K


def lqr(x64):
    def step(x, c):
        return A * x + B * c

    def controller(p, x):
        return p["k"] * x

    def loss(states, controls):
        return jnp.mean(states[-1] ** 2)  # the final state's square, averaged over the batch

    x0 = jnp.array([[0.5], [-1.0], [2.0]])
    return step, controller, loss, {"k": jnp.array(K)}, x0


def test_gradients_per_step_contributions_and_growth_match_the_closed_form(x64):
    step, controller, loss, params, x0 = lqr(x64)
    ladder = (1, 3, 10, 25)
    d = jax.jit(gradient_diagnostics, static_argnums=(0, 1, 2, 5))(
        loss, step, controller, params, x0, ladder, jax.random.PRNGKey(0)
    )
    s = float(jnp.mean(x0**2))
    h = np.array(ladder, float)
    np.testing.assert_array_equal(d.horizons, ladder)
    np.testing.assert_allclose(d.loss, s * LOOP ** (2 * h), rtol=1e-12)
    # R: dL/dk = 2 h B s (A + B K)^(2h - 1)
    np.testing.assert_allclose(d.grad_norm["R"], 2 * h * B * s * LOOP ** (2 * h - 1), rtol=1e-12)

    def summed(rate):  # sum over t < h of rate^(h - 1 - t) LOOP^t, times 2 B s LOOP^h
        return np.array([2 * B * s * LOOP**n * sum(rate ** (n - 1 - t) * LOOP**t for t in range(n)) for n in ladder])

    np.testing.assert_allclose(d.grad_norm["M"], summed(A), rtol=1e-12)  # the adjoint through the simulator only
    np.testing.assert_allclose(d.grad_norm["N"], np.abs(summed(B * K)), rtol=1e-12)  # through the network only
    np.testing.assert_allclose(d.grad_norm["S"], 2 * B * s * LOOP ** (2 * h - 1), rtol=1e-12)  # the last step's
    np.testing.assert_allclose(d.grad_norm["C"], d.grad_norm["M"], rtol=1e-12)  # one entry, signs agree
    np.testing.assert_allclose(d.cosine, 1.0) and np.testing.assert_allclose(d.kept, 1.0)
    n = ladder[-1]
    t = np.arange(n)
    np.testing.assert_allclose(d.step_norm["R"], np.full(n, 2 * B * s * LOOP ** (2 * n - 1)), rtol=1e-12)
    np.testing.assert_allclose(d.step_norm["M"], 2 * B * s * LOOP**n * A ** (n - 1 - t) * LOOP**t, rtol=1e-12)
    steps = np.arange(n + 1)
    np.testing.assert_allclose(d.closed_loop, LOOP**steps, rtol=1e-12)  # growth rate per step: A + B K
    np.testing.assert_allclose(d.open_loop, A**steps, rtol=1e-12)  # the simulator's own: A


def test_opposite_signs_are_measured():
    """A controller that overcorrects an unstable simulator (x' = 1.1 x + c, c = -1.5 x: the loop multiplies by
    -0.4): g_M and g_R point opposite ways at every even horizon, where C keeps nothing and the cosine is -1."""

    def step(x, c):
        return 1.1 * x + c

    def controller(p, x):
        return p["k"] * x

    def loss(states, controls):
        return jnp.mean(states[-1] ** 2)

    d = gradient_diagnostics(
        loss, step, controller, {"k": jnp.array(-1.5)}, jnp.ones((2, 1)), (1, 2, 3, 4, 5), jax.random.PRNGKey(0)
    )
    signs = np.sign(d.cosine)
    np.testing.assert_array_equal(signs, [1, -1, 1, -1, 1])
    np.testing.assert_allclose(np.abs(d.cosine), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(d.kept, (signs > 0).astype(float))
    np.testing.assert_allclose(np.where(signs < 0, d.grad_norm["C"], 0.0), 0.0)


def test_horizon_ladder_is_geometric_and_ends_at_the_horizon():
    assert horizon_ladder(100) == (1, 2, 4, 7, 14, 27, 52, 100)
    assert horizon_ladder(3, 8) == (1, 2, 3) and horizon_ladder(5, 1) == (5,)
    assert check_horizons([10, 2, 2]) == (2, 10)


@pytest.mark.parametrize(("horizons", "message"), [([], "at least one"), ([0, 3], "positive integer"), (5, "sequence")])
def test_bad_horizons_are_refused(horizons, message):
    with pytest.raises(BadInput, match=message):
        check_horizons(horizons)
