"""Every mode of `value_and_grad` against naive Python-loop unrolls with explicit stop_gradients (float64)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import assert_trees_close, toy_controller, toy_loss, toy_naive_loss, toy_step

import stablebptt as sb

HORIZON = 6


def toy_params(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (2, 5)),
        "b1": jax.random.normal(k2, (5,)) * 0.1,
        "w2": 6.0 * jax.random.normal(k3, (5, 1)),  # strong feedback: M and R disagree in sign somewhere
        "b2": jnp.array(0.2),
    }


def naive_loss(params, x0, method):
    """Python-loop unroll with the stop_gradients of method.md §1."""
    return toy_naive_loss(params, x0, method, HORIZON)


@pytest.fixture
def problem(x64):
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    return toy_params(k1), jax.random.normal(k2, (4, 2))


@pytest.mark.parametrize("method", ["R", "M", "S", "N"])
@pytest.mark.parametrize("backward", ["autodiff", "joint"])
def test_single_modes_equal_naive_unroll(problem, method, backward):
    params, x0 = problem
    value, update, info = jax.jit(
        sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, method, backward=backward)
    )(params, x0)
    expected_value, expected = jax.value_and_grad(naive_loss)(params, x0, method)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    assert_trees_close(update, expected)
    norm = np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in jax.tree.leaves(expected)))
    np.testing.assert_allclose(info["grad_norm"], norm, rtol=1e-10)


def test_modes_differ_on_this_system(problem):
    """Guards the test above: if all modes agreed, it could not tell a misplaced stop_gradient."""
    params, x0 = problem
    grads = {m: jax.grad(naive_loss)(params, x0, m) for m in "RMSN"}
    for a in "RMSN":
        for b in "RMSN":
            if a < b:
                diff = max(
                    float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(grads[a]), jax.tree.leaves(grads[b]))
                )
                assert diff > 1e-4, (a, b)


@pytest.mark.parametrize("backward", ["joint", "two_pass"])
def test_combined_equals_combine_of_naive_gradients(problem, backward):
    params, x0 = problem
    value, update, info = jax.jit(
        sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, "C", backward=backward)
    )(params, x0)
    g_m = jax.grad(naive_loss)(params, x0, "M")
    g_r = jax.grad(naive_loss)(params, x0, "R")
    assert_trees_close(update, sb.combine(g_m, g_r))
    np.testing.assert_allclose(value, naive_loss(params, x0, "R"), rtol=1e-12)
    m, r = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (g_m, g_r))
    np.testing.assert_allclose(info["cosine"], m @ r / np.linalg.norm(m) / np.linalg.norm(r), rtol=1e-10)
    np.testing.assert_allclose(info["kept_fraction"], np.mean(np.sign(m) == np.sign(r)), rtol=1e-12)
    assert 0 < info["kept_fraction"] < 1  # the sign test actually removes something here


def test_regular_gradient_matches_finite_differences(x64, key):
    params = toy_params(key)
    x0 = jnp.array([[0.3, -0.2], [0.1, 0.4]])
    vg = jax.jit(sb.value_and_grad(toy_loss, toy_step, toy_controller, 4, "R"))
    _, update, _ = vg(params, x0)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    eps = 1e-6
    fd = []
    for i in range(flat.size):
        e = jnp.zeros_like(flat).at[i].set(eps)
        plus, _, _ = vg(unravel(flat + e), x0)
        minus, _, _ = vg(unravel(flat - e), x0)
        fd.append((plus - minus) / (2 * eps))
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(update)[0], np.array(fd), rtol=1e-6, atol=1e-9)


def test_equinox_module_params_with_non_array_leaves(x64, key):
    task = sb.tasks.CartPole(n_poles=1, horizon=5, zero_final_kernel=False)
    params = task.init_controller(key)
    x0 = task.sample(key, 3)
    value, update, info = sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, "C")(params, x0)
    assert jax.tree.structure(update) == jax.tree.structure(eqx.filter(params, eqx.is_inexact_array))
    assert np.isfinite(value) and info["grad_norm"] > 0


def test_float32_by_default(key):
    task = sb.tasks.CartPole(n_poles=1, horizon=5)
    params = task.init_controller(key)
    x0 = task.sample(key, 2)
    value, update, _ = jax.jit(sb.value_and_grad(task.loss, task.step, task.controller, 5, "C"))(params, x0)
    assert value.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(update))


@pytest.mark.parametrize("bad", ["X", "", "combo", 3])
def test_unknown_method_is_a_value_error(bad):
    with pytest.raises(ValueError, match="unknown method"):
        sb.value_and_grad(toy_loss, toy_step, toy_controller, 3, bad)


@pytest.mark.parametrize(
    "name,letter", [("regular", "R"), ("modified", "M"), ("stopped", "S"), ("network", "N"), ("combined", "C")]
)
def test_method_names_are_aliases(problem, name, letter):
    params, x0 = problem
    by_name = sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, name)(params, x0)[1]
    by_letter = sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, letter)(params, x0)[1]
    assert_trees_close(by_name, by_letter, rtol=0, atol=0)


def _naive_final_state(params, x0, horizon):
    x = x0
    for _ in range(horizon):
        x = toy_step(x, toy_controller(params, x))
    return x


def _loss_with_aux(states, controls):
    per_sample = jnp.mean(states[-1] ** 2, axis=-1)
    return toy_loss(states, controls), {"per_sample": per_sample, "steps": jnp.asarray(states.shape[0] - 1)}


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("R", {"backward": "autodiff"}),
        ("M", {"backward": "joint"}),
        ("C", {"backward": "joint"}),
        ("C", {"backward": "two_pass", "remat": "sqrt"}),
        ("R", {"backward": "autodiff", "remat": 2}),
        ("C", {"truncation": 3}),
    ],
)
def test_final_state_and_aux_are_returned_and_change_nothing_else(problem, method, options):
    """`final_state` is the naive rollout's last state; `aux` is the loss's second output, not differentiated:
    value and update equal those without either."""
    params, x0 = problem
    plain = jax.jit(sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, method, **options))
    extra = jax.jit(
        sb.value_and_grad(
            _loss_with_aux, toy_step, toy_controller, HORIZON, method, has_aux=True, final_state=True, **options
        )
    )
    value, update, info = plain(params, x0)
    value_x, update_x, info_x = extra(params, x0)
    assert float(value_x) == float(value)
    assert_trees_close(update_x, update, rtol=1e-13)
    assert set(info_x) == set(info) | {"aux", "final_state"}
    np.testing.assert_allclose(info_x["final_state"], _naive_final_state(params, x0, HORIZON), rtol=1e-12)
    np.testing.assert_allclose(info_x["aux"]["per_sample"], np.mean(np.asarray(info_x["final_state"]) ** 2, -1))
    assert int(info_x["aux"]["steps"]) == HORIZON


def test_windows_carried_by_the_final_state_continue_the_trajectory(problem):
    """Two windows of H steps, the second from the first's final state, end where one rollout of 2H ends."""
    params, x0 = problem
    window = jax.jit(sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, "C", final_state=True))
    _, _, first = window(params, x0)
    _, _, second = window(params, first["final_state"])
    np.testing.assert_allclose(second["final_state"], _naive_final_state(params, x0, 2 * HORIZON), rtol=1e-12)


def test_a_loss_without_its_aux_is_refused_in_one_line(problem):
    params, x0 = problem
    vg = sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, "C", has_aux=True)
    with pytest.raises(
        sb.BadInput,
        match=r"the loss `toy_loss` returned .*float.*; with has_aux=True it must return a pair \(value, aux\)",
    ):
        vg(params, x0)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("R", {"backward": "autodiff"}),
        ("R", {"backward": "joint"}),
        ("M", {"backward": "joint", "param_vjp": "per_step"}),
        ("C", {"backward": "joint"}),
        ("C", {"backward": "two_pass", "truncation": 4}),
        ("R", {"backward": "autodiff", "remat": 4}),
        ("C", {"backward": "joint", "remat": 4}),
    ],
)
@pytest.mark.parametrize("unroll", [2, 4, 7])  # 4 does not divide the horizon of 6; 7 exceeds it
def test_unrolled_loops_give_the_naive_unrolls_gradients(problem, method, options, unroll):
    """`unroll` (steps per iteration of the loops over time, forward and reverse) changes no number: every
    backward, with truncation and with segments, against the naive unroll (C: combined from naive g_M, g_R)."""
    params, x0 = problem
    value, update, _ = jax.jit(
        sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, method, unroll=unroll, **options)
    )(params, x0)
    truncated = options.get("truncation")

    def naive(mode):
        if truncated is None:
            return jax.grad(naive_loss)(params, x0, mode)
        return jax.grad(lambda p: toy_naive_loss(p, x0, mode, HORIZON, truncation=truncated))(params)

    expected = sb.combine(naive("M"), naive("R")) if method == "C" else naive(method)
    np.testing.assert_allclose(value, naive_loss(params, x0, "R"), rtol=1e-12)
    assert_trees_close(update, expected)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True])
def test_a_bad_unroll_is_refused_in_one_line(bad):
    with pytest.raises(sb.BadInput, match="unroll") as error:
        sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, "R", unroll=bad)
    assert "\n" not in str(error.value)
    with pytest.raises(sb.BadInput, match="unroll"):
        sb.rollout(toy_step, toy_controller, {}, jnp.zeros((1, 2)), HORIZON, unroll=bad)
