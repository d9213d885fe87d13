"""Truncated BPTT (`truncation=K`) against a naive Python-loop unroll with stop_gradient every K steps (float64)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest
from systems import assert_close, toy_naive_loss
from systems import toy_controller as controller
from systems import toy_loss as loss
from systems import toy_step as step

import stablebptt as sb

HORIZON = 7


def naive_grad(params, x0, method, truncation):
    """The gradient of a Python-loop unroll that stops the gradient of the state x_n when n % K == 0, on top
    of the method's own stop_gradients."""
    return jax.jit(jax.grad(toy_naive_loss), static_argnums=(2, 3, 4))(params, x0, method, HORIZON, truncation)


def combined(params, x0, truncation):
    return sb.combine(naive_grad(params, x0, "M", truncation), naive_grad(params, x0, "R", truncation))


@pytest.mark.parametrize("truncation", [2, 3])
@pytest.mark.parametrize("method", ["R", "M", "S", "N", "C"])
@pytest.mark.parametrize("backward", ["joint", "two_pass"])
def test_truncation_equals_naive_unroll(problem, method, truncation, backward):
    params, x0 = problem
    vg = jax.jit(sb.value_and_grad(loss, step, controller, HORIZON, method, backward=backward, truncation=truncation))
    _value, update, _ = vg(params, x0)
    expected = combined(params, x0, truncation) if method == "C" else naive_grad(params, x0, method, truncation)
    assert_close(update, expected)


def test_truncation_changes_the_gradient(problem):
    """Guards the test above: with K = 2 the truncated and full gradients differ."""
    params, x0 = problem
    full, cut = naive_grad(params, x0, "R", None), naive_grad(params, x0, "R", 2)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(cut))) > 1e-4


@pytest.mark.parametrize("truncation", [HORIZON, HORIZON + 3])
def test_window_as_long_as_the_horizon_cuts_nothing(problem, truncation):
    params, x0 = problem
    full = sb.value_and_grad(loss, step, controller, HORIZON, "C")(params, x0)[1]
    cut = sb.value_and_grad(loss, step, controller, HORIZON, "C", truncation=truncation)(params, x0)[1]
    assert_close(cut, full)


def test_window_of_one_step_makes_every_method_stopped(problem):
    params, x0 = problem
    stopped = naive_grad(params, x0, "S", None)
    for method in "RMNC":
        update = sb.value_and_grad(loss, step, controller, HORIZON, method, truncation=1)(params, x0)[1]
        assert_close(update, stopped)


@pytest.mark.parametrize("remat", ["states", 3])
def test_truncation_with_remat(problem, remat):
    params, x0 = problem
    update = sb.value_and_grad(loss, step, controller, HORIZON, "C", truncation=2, remat=remat)(params, x0)[1]
    assert_close(update, combined(params, x0, 2))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_truncation_is_a_value_error(bad):
    with pytest.raises(ValueError, match=re.escape(f"truncation must be None or a positive integer, got {bad!r}")):
        sb.value_and_grad(loss, step, controller, HORIZON, "C", truncation=bad)


def test_truncation_needs_an_adjoint_backward():
    with pytest.raises(ValueError, match="truncation"):
        sb.value_and_grad(loss, step, controller, HORIZON, "R", backward="autodiff", truncation=2)
