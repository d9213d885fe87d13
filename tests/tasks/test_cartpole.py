from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest

import stablebptt as sb
from stablebptt.tasks import CartPole


def hand_step(x, f, dt):
    """One semi-implicit Euler step of method.md §2, in plain Python floats, one sample."""
    g, m, big_m, l = 9.8, 0.1, 1.1, 0.5  # noqa: E741 -- method.md's names
    (cx, cv), poles = x[0], x[1:]
    thdd, s_all = [], []
    for th, thv in poles:
        s = math.sin(th) * thv**2
        a = (f + m * l * s) / big_m
        b = l * (4 / 3 - m * math.cos(th) ** 2 / big_m)
        thdd.append((g * math.sin(th) - math.cos(th) * a) / b)
        s_all.append(s)
    xdd = (f + m * l * sum(s - d * math.cos(th) for s, d, (th, _) in zip(s_all, thdd, poles))) / big_m
    new_poles = []
    for (th, thv), d in zip(poles, thdd):
        new_thv = thv + dt * d
        new_poles.append([th + dt * new_thv, new_thv])
    cv = cv + dt * xdd
    return [[cx + dt * cv, cv], *new_poles]


@pytest.mark.parametrize("n_poles", [1, 3])
def test_one_step_by_hand(x64, n_poles):
    task = CartPole(n_poles=n_poles)
    rng = np.random.default_rng(n_poles)
    x = rng.uniform(-2, 2, size=(2, 1 + n_poles, 2))
    f = np.array([0.7, -1.3])
    out = np.asarray(task.step(jnp.asarray(x), jnp.asarray(f)))
    for i in range(2):
        np.testing.assert_allclose(out[i], hand_step(x[i].tolist(), f[i], 0.01), rtol=1e-12)


def test_upright_at_rest_stays_put(x64):
    task = CartPole(n_poles=2)
    x = jnp.zeros((1, 3, 2))
    states, _ = sb.rollout(task.step, lambda p, x: jnp.zeros(x.shape[0]), None, x, 100)
    np.testing.assert_array_equal(states, 0.0)


def test_free_swing_of_a_hanging_pole(x64):
    """Zero force, a small swing around the bottom: the angle oscillates around pi with the pendulum period
    and the pole's energy stays nearly constant over a short horizon."""
    task = CartPole(n_poles=1, duration=2.0, horizon=2000)
    x = jnp.array([[[0.0, 0.0], [math.pi + 0.05, 0.0]]])
    states, _ = sb.rollout(task.step, lambda p, x: jnp.zeros(x.shape[0]), None, x, task.horizon)
    theta = np.asarray(states[:, 0, 1, 0]) - math.pi
    assert np.max(np.abs(theta)) < 0.0501
    crossings = np.where(np.diff(np.sign(theta)) != 0)[0]
    assert len(crossings) >= 2
    # A swinging pole rocks the cart; its energy (cart + pole) is conserved up to integration error.
    theta_v = np.asarray(states[:, 0, 1, 1])
    cart_v = np.asarray(states[:, 0, 0, 1])
    th = theta + math.pi
    m, big_m, l, g = 0.1, 1.1, 0.5, 9.8  # noqa: E741 -- method.md's names
    pole_vx = cart_v + l * np.cos(th) * theta_v
    pole_vy = -l * np.sin(th) * theta_v
    energy = (
        0.5 * (big_m - m) * cart_v**2
        + 0.5 * m * (pole_vx**2 + pole_vy**2)
        + 0.5 * m * l**2 / 3 * theta_v**2
        + m * g * l * np.cos(th)
    )
    assert np.ptp(energy) < 0.02 * m * g * l * (1 - math.cos(0.05))


def test_sample_distribution(key):
    task = CartPole(n_poles=3)
    x = task.sample(key, 4000)
    assert x.shape == (4000, 4, 2)
    angles = np.asarray(x[:, 1:, 0])
    assert np.all(np.abs(angles - math.pi) <= math.pi / 6 + 1e-6)
    others = np.concatenate([np.ravel(x[:, 0]), np.ravel(x[:, 1:, 1])])
    assert np.all(np.abs(others) <= 1) and abs(np.mean(others)) < 0.05 and np.std(others) > 0.5


def test_loss_final_and_continuous():
    states = jnp.zeros((3, 2, 2, 2)).at[-1, :, 1, 0].set(math.pi)
    assert float(CartPole(n_poles=1).loss(states, None)) == pytest.approx(2.0)
    assert float(CartPole(n_poles=1, loss_mode="continuous").loss(states, None)) == pytest.approx(1.0)


def test_controller_quirk_and_switch(key):
    x = CartPole(n_poles=2).sample(key, 5)
    zero = CartPole(n_poles=2)
    assert np.all(zero.controller(zero.init_controller(key), x) == 0)
    glorot = CartPole(n_poles=2, zero_final_kernel=False)
    assert np.all(glorot.controller(glorot.init_controller(key), x) != 0)
    mlp = glorot.init_controller(key)
    assert [layer.weight.shape for layer in mlp.layers] == [(100, 6), (100, 100), (1, 100)]
    assert all(np.all(layer.bias == 0) for layer in mlp.layers)
    limit = math.sqrt(6 / 200)
    assert np.max(np.abs(mlp.layers[1].weight)) <= limit and np.std(mlp.layers[1].weight) > 0.5 * limit / math.sqrt(3)


@pytest.mark.parametrize("settings", [{"n_poles": 0}, {"horizon": -1}, {"duration": 0.0}, {"loss_mode": "mean"}])
def test_bad_settings(settings):
    ((name, value),) = settings.items()  # the message names the setting and the value given
    with pytest.raises(ValueError, match=rf"\b{name}\b.*{re.escape(repr(value))}"):
        CartPole(**settings)
