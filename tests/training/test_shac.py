"""SHAC's pieces (training/shac.py) against DiffRL's ``algorithms/shac.py`` written out as plain Python loops over
steps and environments, in float64, with episode ends inside the window: the actor loss and its gradient, the
TD-λ targets, the critic loss and the target critic's Polyak update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stablebptt.core.checks import BadInput
from stablebptt.training.shac import actor_loss, check_discount, critic_loss, polyak, td_lambda_targets


def diffrl_actor_loss(rew, next_values, done, gamma):
    """DiffRL's compute_actor_loss, its accumulation loop transcribed (no reward scaling, no normalisers)."""
    steps, envs = rew.shape
    rew_acc = np.zeros((steps + 1, envs))
    g = np.ones(envs)
    loss = 0.0
    for i in range(steps):
        ids = [e for e in range(envs) if done[i, e]]
        rew_acc[i + 1] = rew_acc[i] + g * rew[i]
        if i < steps - 1:
            loss += sum(-rew_acc[i + 1, e] - gamma * g[e] * next_values[i, e] for e in ids)
        else:
            loss += sum(-rew_acc[i + 1, e] - gamma * g[e] * next_values[i, e] for e in range(envs))
        g = g * gamma
        for e in ids:
            g[e] = 1.0
            rew_acc[i + 1, e] = 0.0
    return loss / (steps * envs)


def diffrl_targets(rew, next_values, done, gamma, lam):
    """DiffRL's compute_target_values (td-lambda), with done_mask's last row set to 1 as its rollout does."""
    steps, envs = rew.shape
    mask = done.astype(float).copy()
    mask[-1] = 1.0
    a, b, weight = np.zeros(envs), np.zeros(envs), np.ones(envs)
    out = np.zeros((steps, envs))
    for i in reversed(range(steps)):
        weight = weight * lam * (1.0 - mask[i]) + mask[i]
        a = (1.0 - mask[i]) * (lam * gamma * a + gamma * next_values[i] + (1.0 - weight) / (1.0 - lam) * rew[i])
        b = gamma * (next_values[i] * mask[i] + b * (1.0 - mask[i])) + rew[i]
        out[i] = (1.0 - lam) * a + weight * b
    return out


@pytest.fixture
def window(x64):
    rng = np.random.default_rng(0)
    steps, envs = 7, 5
    rew = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    done = np.zeros((steps, envs), bool)
    done[2, 0] = done[4, 0] = done[5, 3] = done[0, 4] = True  # episode ends inside the window, two in env 0
    return rew, values, done


def test_the_actor_loss_is_diffrls(window):
    rew, values, done = window
    for gamma in (0.99, 0.5, 1.0):
        ours = actor_loss(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma)
        np.testing.assert_allclose(float(ours), diffrl_actor_loss(rew, values, done, gamma), rtol=1e-12)


def test_the_actor_loss_gradient_weighs_each_reward_and_value_by_its_discount(window):
    """d loss / d r_i = -gamma^j / (K B) with j the steps since the episode's start; d loss / d v_i =
    -gamma^(j+1) / (K B) where an episode or the window ends at i, else 0: the terminal value is differentiated like
    any reward."""
    rew, values, done = window
    gamma = 0.9
    g_rew, g_val = jax.grad(actor_loss, argnums=(0, 1))(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma)
    steps, envs = rew.shape
    want_rew, want_val = np.zeros_like(rew), np.zeros_like(values)
    for e in range(envs):
        j = 0
        for i in range(steps):
            want_rew[i, e] = -(gamma**j) / (steps * envs)
            if done[i, e] or i == steps - 1:
                want_val[i, e] = -(gamma ** (j + 1)) / (steps * envs)
                j = 0
            else:
                j += 1
    np.testing.assert_allclose(np.asarray(g_rew), want_rew, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g_val), want_val, rtol=1e-12)


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.5), (1.0, 0.0)])
def test_td_lambda_targets_are_diffrls_recursion(window, gamma, lam):
    rew, values, done = window
    ours = td_lambda_targets(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma, lam)
    np.testing.assert_allclose(np.asarray(ours), diffrl_targets(rew, values, done, gamma, lam), rtol=1e-12)


def test_td_lambda_targets_at_the_extremes(window):
    """λ = 0: one-step targets r + gamma v (DiffRL's ``one-step`` critic); λ = 1: the discounted rewards to the next
    end, bootstrapped there."""
    rew, values, done = window
    gamma = 0.9
    args = (jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma)
    np.testing.assert_allclose(np.asarray(td_lambda_targets(*args, 0.0)), rew + gamma * values, rtol=1e-12)
    returns = np.zeros_like(rew)
    steps, envs = rew.shape
    for e in range(envs):
        for i in range(steps):
            total, k = 0.0, i
            while True:
                total += gamma ** (k - i) * rew[k, e]
                if done[k, e] or k == steps - 1:
                    total += gamma ** (k - i + 1) * values[k, e]
                    break
                k += 1
            returns[i, e] = total
    np.testing.assert_allclose(np.asarray(td_lambda_targets(*args, 1.0)), returns, rtol=1e-12)


def test_no_gradient_flows_into_the_targets(window):
    rew, values, done = window
    grad = jax.grad(lambda r: jnp.sum(td_lambda_targets(r, jnp.asarray(values), jnp.asarray(done), 0.9, 0.95)))
    assert not np.any(np.asarray(grad(jnp.asarray(rew))))


def test_one_critic_update_and_the_target_critic(x64):
    """One squared-error step of a linear critic against its closed-form gradient; Polyak averaging with alpha."""
    rng = np.random.default_rng(1)
    obs, targets, w = rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=3)
    loss, grad = jax.value_and_grad(lambda w: critic_loss(jnp.asarray(obs) @ w, jnp.asarray(targets)))(jnp.asarray(w))
    residual = obs @ w - targets
    assert float(loss) == pytest.approx(np.mean(residual**2), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), 2 * obs.T @ residual / 6, rtol=1e-12)
    target, critic = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    np.testing.assert_allclose(np.asarray(polyak(target, critic, 0.2)["w"]), 0.2 * np.ones(3), rtol=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.9", True, float("nan")])
def test_a_discount_outside_0_1_is_refused_in_one_line(bad):
    with pytest.raises(BadInput, match=r"^gamma must be a number in \[0, 1\], got "):
        check_discount("gamma", bad)
