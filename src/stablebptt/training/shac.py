"""SHAC's pieces (Xu et al., ICLR 2022, "Accelerated Policy Learning with Parallel Differentiable Simulation"), as
pure functions on time-major arrays, written to DiffRL's ``algorithms/shac.py`` (the reference implementation).

SHAC differentiates through short windows of K steps carried on from update to update, and adds a learned critic's
value at each window's end and at each episode's end, standing in for the rest of the horizon:

- `actor_loss`: the window's discounted rewards, plus ``gamma^k`` times the target critic's value where an episode
  ends inside the window or where the window ends, per environment, negated and averaged over steps and
  environments (``compute_actor_loss``). Differentiable in the rewards and the values, so that any gradient rule
  differentiates it through the rollout, the terminal value through the final state.
- `td_lambda_targets`: the critic's TD-λ targets, DiffRL's recursion (``compute_target_values``), with episode
  ends inside the window.
- `critic_loss`: the squared error of the critic's values against the targets (``compute_critic_loss``).
- `polyak`: the target critic's update, ``alpha · target + (1 - alpha) · critic``.

Shapes: K steps, B environments; ``rewards (K, B)``, ``next_values (K, B)`` (the target critic's value of the
state after each step: 0 where an episode terminated early, the critic of the state before the reset where it
was truncated by its time limit), ``done (K, B)`` (bool or 0/1: an episode ended at that step).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..core.checks import BadInput

PyTree = Any
Pair = tuple[jax.Array, jax.Array]
Triple = tuple[jax.Array, jax.Array, jax.Array]


def check_discount(name: str, value: Any) -> float:
    """`value` as a float if it is a number in [0, 1] (a discount gamma or λ); `BadInput` naming `name` otherwise."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0
    if not ok:
        raise BadInput(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def actor_loss(rewards: jax.Array, next_values: jax.Array, done: jax.Array, gamma: float) -> jax.Array:
    """SHAC's actor loss of one window (DiffRL's ``compute_actor_loss``, without its reward scaling).

    Per environment, the rewards are summed with discounts ``gamma^j`` from the start of the window or of the episode
    (``rew_acc``); where an episode ends at step i inside the window, and for every environment at the window's
    last step, ``-(rew_acc + gamma^(j+1) · next_values[i])`` is added to the loss, and the sum and discount restart.
    The loss is divided by ``K · B``.

    Args:
        rewards: ``(K, B)`` rewards of each step (differentiable).
        next_values: ``(K, B)`` values of the states after each step (differentiable: the terminal value is
            differentiated through the final state).
        done: ``(K, B)``, an episode ended at that step.
        gamma: the discount gamma in [0, 1].

    Returns:
        The scalar loss.
    """
    steps = rewards.shape[0]
    done = done.astype(bool).at[-1].set(True)  # the window's end ends every environment's sum

    def step(carry: Pair, inputs: Triple) -> tuple[Pair, jax.Array]:
        acc, discount = carry
        reward, value, ended = inputs
        acc = acc + discount * reward
        term = jnp.where(ended, -acc - gamma * discount * value, 0.0)
        discount = jnp.where(ended, 1.0, discount * gamma)
        acc = jnp.where(ended, 0.0, acc)
        return (acc, discount), term

    init = (jnp.zeros_like(rewards[0]), jnp.ones_like(rewards[0]))
    _, terms = jax.lax.scan(step, init, (rewards, next_values, done))
    return jnp.sum(terms) / (steps * rewards.shape[1])


def td_lambda_targets(
    rewards: jax.Array, next_values: jax.Array, done: jax.Array, gamma: float, lam: float
) -> jax.Array:
    """The critic's TD-λ targets of one window (DiffRL's ``compute_target_values``, ``critic_method:
    td-lambda``): a reverse recursion over the steps with

        λ_i = λ_{i+1} λ (1 - d_i) + d_i
        A_i = (1 - d_i) (λ gamma A_{i+1} + gamma v_i + (1 - λ_i) / (1 - λ) r_i)
        B_i = gamma (v_i d_i + B_{i+1} (1 - d_i)) + r_i
        target_i = (1 - λ) A_i + λ_i B_i

    where ``d`` is `done` with the window's last step counted as an end (the critic bootstraps there with
    `next_values`, as at a truncated episode's end). No gradient flows into the targets.

    Args:
        rewards, next_values, done: ``(K, B)`` as in `actor_loss`.
        gamma: gamma in [0, 1]; lam: λ in [0, 1] (1: the discounted returns, bootstrapped at the ends).

    Returns:
        ``(K, B)`` targets.
    """
    rewards, next_values = jax.lax.stop_gradient(rewards), jax.lax.stop_gradient(next_values)
    d = done.astype(rewards.dtype).at[-1].set(1.0)

    def step(carry: Triple, inputs: Triple) -> tuple[Triple, jax.Array]:
        a, b, weight = carry
        r, v, di = inputs
        weight = weight * lam * (1.0 - di) + di
        # (1 - λ_i) / (1 - λ) = 1 + λ + ... + λ^(n-1) for the n steps to the end: finite at λ = 1 too
        share = (1.0 - weight) / (1.0 - lam) if lam < 1.0 else jnp.zeros_like(weight)
        a = (1.0 - di) * (lam * gamma * a + gamma * v + share * r)
        b = gamma * (v * di + b * (1.0 - di)) + r
        return (a, b, weight), (1.0 - lam) * a + weight * b

    zeros = jnp.zeros_like(rewards[0])
    _, targets = jax.lax.scan(step, (zeros, zeros, jnp.ones_like(zeros)), (rewards, next_values, d), reverse=True)
    return targets


def critic_loss(values: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error of the critic's `values` against the TD-λ `targets` (any equal shapes)."""
    return jnp.mean((values - jax.lax.stop_gradient(targets)) ** 2)


def polyak(target: PyTree, critic: PyTree, alpha: float) -> PyTree:
    """The target critic after one update: ``alpha * target + (1 - alpha) * critic`` per leaf
    (`optax.incremental_update` with step size ``1 - alpha``; DiffRL's ``target_critic_alpha``)."""
    return optax.incremental_update(critic, target, 1.0 - alpha)
