from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stablebptt as sb


def step(x, c):
    return 0.9 * x + c[..., None]


def controller(params, x):
    return params * jnp.sum(x, axis=-1)


@pytest.mark.parametrize("method", ["R", "M", "S", "N", "C"])
def test_shapes_and_values(method):
    x0 = jnp.arange(6.0).reshape(3, 2)
    states, controls = sb.rollout(step, controller, jnp.array(-0.1), x0, 4, method)
    assert states.shape == (5, 3, 2) and controls.shape == (4, 3)
    np.testing.assert_array_equal(states[0], x0)
    x = np.asarray(x0)
    for n in range(4):
        c = -0.1 * x.sum(-1)
        np.testing.assert_allclose(controls[n], c, rtol=1e-6)
        x = 0.9 * x + c[:, None]
        np.testing.assert_allclose(states[n + 1], x, rtol=1e-6)


def test_unbatched_scalar_state():
    states, controls = sb.rollout(lambda x, c: x + c, lambda p, x: p * x, 0.5, jnp.array(1.0), 3)
    np.testing.assert_allclose(states, [1.0, 1.5, 2.25, 3.375])
    assert controls.shape == (3,)


@pytest.mark.parametrize("horizon", [0, -3, 2.5, "10"])
def test_bad_horizon(horizon):
    with pytest.raises(ValueError, match="horizon"):
        sb.rollout(step, controller, 1.0, jnp.zeros((1, 2)), horizon)


def test_stop_gradient_placement():
    """d x_2 / d x_0 through each path: R sees both paths, M only the simulator, N only the network, S none."""

    def final(x0, method):
        return sb.rollout(lambda x, c: 2.0 * x + c, lambda p, x: p * x, 3.0, x0, 2, method)[0][-1]

    grads = {m: float(jax.grad(final)(1.0, m)) for m in "RMSN"}
    assert grads == {"R": 25.0, "M": 4.0, "S": 0.0, "N": 9.0}
