"""One reverse sweep for any group of modes (`adjoint_gradients` with groups such as ``(("S", "N", "M", "R"),)``)
equals the naive unroll of each mode, and the combined update's statistics equal those of the naive gradients
(float64).

The sweep stacks the modes' adjoints and applies the simulator's VJP only to the modes through the simulator and
the network's input VJP only to those through the network; every subset and order of modes takes a different
path through that code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import assert_close, toy_controller, toy_loss, toy_naive_loss, toy_step

import stablebptt as sb
from stablebptt.core.adjoint import adjoint_gradients
from stablebptt.core.combination import combine_stats, tree_norm

HORIZON = 7
GROUPS = [("S", "N", "M", "R"), ("N", "M"), ("M", "R", "S"), ("R", "N"), ("S", "N"), ("S",), ("N",), ("M",)]


def naive_grad(params, x0, method):
    return jax.jit(jax.grad(toy_naive_loss), static_argnums=(2, 3))(params, x0, method, HORIZON)


def joint(params, x0, groups, **options):
    return jax.jit(
        lambda p, x: adjoint_gradients(toy_loss, toy_step, toy_controller, p, x, HORIZON, groups, **options)
    )(params, x0)


@pytest.mark.parametrize(
    ("param_vjp", "segment"),
    [
        ("batched", None),
        pytest.param("per_step", None, marks=pytest.mark.slow),
        pytest.param("batched", 3, marks=pytest.mark.slow),
    ],
)
def test_any_group_equals_naive(problem, param_vjp, segment):
    params, x0 = problem
    naive = {m: naive_grad(params, x0, m) for m in "RMSN"}
    for group in GROUPS:
        _, grads = joint(params, x0, (group,), param_vjp=param_vjp, segment=segment)
        assert len(grads) == len(group)
        for mode, grad in zip(group, grads, strict=True):
            assert_close(grad, naive[mode])


@pytest.mark.parametrize("param_vjp", ["batched", pytest.param("per_step", marks=pytest.mark.slow)])
def test_group_with_truncation_equals_one_sweep_per_mode(problem, param_vjp):
    params, x0 = problem
    for group in GROUPS[:4]:
        _, together = joint(params, x0, (group,), param_vjp=param_vjp, truncation=3)
        _, apart = joint(params, x0, tuple((m,) for m in group), param_vjp=param_vjp, truncation=3)
        for a, b in zip(together, apart, strict=True):
            assert_close(a, b)


def test_gradients_in_flattened_group_order(problem):
    params, x0 = problem
    _, grads = joint(params, x0, (("M", "R", "S"), ("N",)), param_vjp="batched")
    for mode, grad in zip("MRSN", grads, strict=True):
        assert_close(grad, naive_grad(params, x0, mode))


def test_combined_statistics_equal_those_of_naive_gradients(problem):
    """C's update and `info` (computed on the raveled gradients) equal `combine`/`combine_stats` of the naive
    gradients leaf by leaf."""
    params, x0 = problem
    params = {**params, "b2": jnp.array(0.3)}
    g_m, g_r = naive_grad(params, x0, "M"), naive_grad(params, x0, "R")
    _, update, info = jax.jit(sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, "C"))(params, x0)
    assert_close(update, sb.combine(g_m, g_r))
    expected = combine_stats(g_m, g_r)
    for name, v in expected.items():
        np.testing.assert_allclose(np.asarray(info[name]), np.asarray(v), rtol=1e-12)
    np.testing.assert_allclose(info["grad_norm"], tree_norm(update), rtol=1e-12)


def test_combined_with_mixed_dtypes_keeps_each_leaf_dtype(problem):
    params, x0 = problem
    params = {**params, "w2": params["w2"].astype(jnp.float32)}
    _, update, info = jax.jit(sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, "C"))(params, x0)
    assert update["w2"].dtype == jnp.float32 and update["w1"].dtype == jnp.float64
    assert np.isfinite(float(info["cosine"]))
