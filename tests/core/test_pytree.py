"""Pytree states and controls: every mode, backward and option against a naive `lax.scan` unroll (float64).

The state is a dict with float leaves of different shapes, an integer counter and a boolean flag (both used by
the dynamics, neither differentiable); the control is a dict of two leaves. The reference unroll is written
here, independently of the library: a `lax.scan` that places the mode's `stop_gradient`s (and the truncation's)
on the whole state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import assert_close, naive_loss

import stablebptt as sb

HORIZON = 6
DT = 0.1


def step(x, c):
    """x: pos (B, 3), vel (B, 3), mass (B,), count (B,) int32, on (B,) bool; c: force (B, 3), gain (B,)."""
    odd = (x["count"] % 2).astype(x["vel"].dtype)[:, None]
    drive = jnp.where(x["on"][:, None], c["force"] * c["gain"][:, None], 0.5 * c["force"])
    acc = drive - jnp.sin(x["pos"]) * x["mass"][:, None] * (1.0 + 0.5 * odd)
    vel = x["vel"] + DT * acc
    return {
        "pos": x["pos"] + DT * vel,
        "vel": vel,
        "mass": x["mass"] * (1.0 + 0.1 * jnp.tanh(c["gain"] + x["pos"][:, 0])),
        "count": x["count"] + 1,
        "on": jnp.logical_xor(x["on"], x["count"] % 3 == 0),
    }


def controller(params, x):
    features = jnp.concatenate([x["pos"], x["vel"], x["mass"][:, None]], axis=-1)
    h = jnp.tanh(features @ params["w"] + params["b"])
    return {"force": h @ params["v"], "gain": jnp.tanh(h @ params["u"])}


def loss(states, controls):
    weight = 1.0 + (states["count"][-1] % 3).astype(states["pos"].dtype)
    return (
        jnp.mean(weight[:, None] * states["pos"][-1] ** 2)
        + 0.3 * jnp.mean(jnp.sin(states["vel"][1:]))
        + 0.2 * jnp.mean(states["mass"] ** 2)
        + 0.01 * jnp.mean(controls["force"] ** 2)
        + 0.05 * jnp.mean(controls["gain"])
    )


def pytree_naive_loss(params, x0, method, truncation=None):
    """`systems.naive_loss` of this pytree system."""
    return naive_loss(loss, step, controller, params, x0, method, HORIZON, truncation)


naive_grad = jax.jit(jax.grad(pytree_naive_loss), static_argnums=(2, 3))  # compiled once per mode and truncation


def naive_update(params, x0, method, truncation=None):
    if method == "C":
        return sb.combine(naive_grad(params, x0, "M", truncation), naive_grad(params, x0, "R", truncation))
    return naive_grad(params, x0, method, truncation)


@pytest.fixture
def problem(x64):
    k = jax.random.split(jax.random.PRNGKey(3), 8)
    params = {
        "w": jax.random.normal(k[0], (7, 5)),
        "b": 0.1 * jax.random.normal(k[1], (5,)),
        "v": 2.0 * jax.random.normal(k[2], (5, 3)),
        "u": jax.random.normal(k[3], (5,)),
    }
    x0 = {
        "pos": jax.random.normal(k[4], (4, 3)),
        "vel": jax.random.normal(k[5], (4, 3)),
        "mass": 1.0 + 0.1 * jax.random.uniform(k[6], (4,)),
        "count": jnp.arange(4, dtype=jnp.int32),
        "on": jax.random.bernoulli(k[7], 0.5, (4,)),
    }
    return params, x0


def test_rollout_returns_time_stacked_pytrees(problem):
    params, x0 = problem
    states, controls = jax.jit(sb.rollout, static_argnums=(0, 1, 4))(step, controller, params, x0, HORIZON)
    assert jax.tree.structure(states) == jax.tree.structure(x0)
    for name, leaf in x0.items():
        assert states[name].shape == (HORIZON + 1, *leaf.shape) and states[name].dtype == leaf.dtype
        np.testing.assert_array_equal(states[name][0], leaf)
    assert {k: v.shape for k, v in controls.items()} == {"force": (HORIZON, 4, 3), "gain": (HORIZON, 4)}
    np.testing.assert_array_equal(states["count"][:, 0], np.arange(HORIZON + 1))
    x = x0  # the same values as a Python loop
    for _ in range(HORIZON):
        x = step(x, controller(params, x))
    for name in x0:
        np.testing.assert_allclose(states[name][-1], x[name], rtol=1e-12)


def test_modes_differ_on_this_system(problem):
    """Guards the tests below: the modes must differ and the sign test must drop entries."""
    params, x0 = problem
    grads = {m: naive_update(params, x0, m) for m in "RMSN"}
    for a, b in [("R", "M"), ("R", "S"), ("R", "N"), ("M", "S"), ("M", "N"), ("S", "N")]:
        diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(grads[a]), jax.tree.leaves(grads[b])))
        assert diff > 1e-4, (a, b)
    kept = sb.core.combine_stats(grads["M"], grads["R"])["kept_fraction"]
    assert 0.1 < float(kept) < 0.95


CASES = [(m, b) for m in "RMSN" for b in ("autodiff", "joint", "two_pass")] + [
    ("C", "joint"),
    ("C", "two_pass"),
    ("R", "auto"),
    ("C", "auto"),
]
# The options run with C: its update, cosine and norm depend on both the M and the R adjoint.
OPTIONS = [
    ("joint", {"param_vjp": "per_step"}),
    ("joint", {"remat": "sqrt"}),
    ("joint", {"remat": 2, "param_vjp": "per_step"}),
    ("joint", {"truncation": 3}),
    ("two_pass", {"truncation": 3, "remat": "states"}),
    ("joint", {"truncation": 3, "remat": "sqrt", "param_vjp": "batched"}),
]


def check_against_naive(params, x0, method, backward, options):
    vg = sb.value_and_grad(loss, step, controller, HORIZON, method, backward=backward, **options)
    value, update, info = jax.jit(vg)(params, x0)
    truncation = options.get("truncation")
    expected = naive_update(params, x0, method, truncation)
    np.testing.assert_allclose(value, pytree_naive_loss(params, x0, "R"), rtol=1e-12)
    assert jax.tree.structure(update) == jax.tree.structure(params)
    assert_close(update, expected, rtol=1e-9)
    stats = {"grad_norm": sb.core.tree_norm(expected)}
    if method == "C":
        m, r = (naive_update(params, x0, mode, truncation) for mode in "MR")
        stats |= sb.core.combine_stats(m, r)
    assert_close(info, stats, rtol=1e-9)


@pytest.mark.parametrize("method,backward", CASES)
def test_every_mode_and_backward_equals_naive_unroll(problem, method, backward):
    check_against_naive(*problem, method, backward, {})


@pytest.mark.parametrize("backward,options", OPTIONS, ids=[str(o) for o in OPTIONS])
def test_truncation_remat_and_param_vjp_equal_naive_unroll(problem, backward, options):
    check_against_naive(*problem, "C", backward, options)


def test_float32_pytree_state_trains(key):
    """Without float64: a few Adam steps of C on the dict system reduce the loss."""
    import optax

    k = jax.random.split(key, 3)
    params = {
        "w": 0.3 * jax.random.normal(k[0], (7, 8)),
        "b": jnp.zeros(8),
        "v": 0.1 * jax.random.normal(k[1], (8, 3)),
        "u": 0.1 * jax.random.normal(k[2], (8,)),
    }
    x0 = {
        "pos": jnp.ones((8, 3)),
        "vel": jnp.zeros((8, 3)),
        "mass": jnp.ones(8),
        "count": jnp.zeros(8, jnp.int32),
        "on": jnp.ones(8, bool),
    }
    vg = sb.value_and_grad(loss, step, controller, HORIZON, "C")
    tx = optax.adam(3e-2)

    @jax.jit
    def train(params):
        def update(carry, _):
            params, state = carry
            value, grads, _ = vg(params, x0)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        return jax.lax.scan(update, (params, tx.init(params)), None, length=60)[1]

    values = train(params)
    assert values.dtype == jnp.float32
    assert float(values[-1]) < 0.8 * float(values[0])


# ------------------------------------------------------------------------------------------- bad functions


def _vg(bad_step=step, bad_controller=controller, **options):
    return sb.value_and_grad(loss, bad_step, bad_controller, HORIZON, "C", **options)


def drops_a_leaf(x, c):
    return {k: v for k, v in step(x, c).items() if k != "mass"}


def reshapes_pos(x, c):
    return step(x, c) | {"pos": step(x, c)["pos"][:, :2]}


def counts_in_floats(x, c):
    return step(x, c) | {"count": x["count"] + 0.5}


def int_controller(params, x):
    return {"force": jnp.round(x["pos"]).astype(jnp.int32)}


@pytest.mark.parametrize(
    "bad_step,pattern",
    [
        (drops_a_leaf, r"`drops_a_leaf` returned a state of another structure.*expected \{.*'mass'.*got"),
        (reshapes_pos, r"`reshapes_pos` changed \['pos'\] from float64\[4,3\] to float64\[4,2\]"),
        (counts_in_floats, r"`counts_in_floats` changed \['count'\] from int32\[4\] to float64\[4\]"),
    ],
)
@pytest.mark.parametrize("where", ["rollout", "autodiff", "joint", "remat"])
def test_a_step_that_changes_the_state_is_one_clear_error_at_trace_time(problem, bad_step, pattern, where):
    params, x0 = problem
    fn = {
        "rollout": lambda p, x: sb.rollout(bad_step, controller, p, x, HORIZON),
        "autodiff": sb.value_and_grad(loss, bad_step, controller, HORIZON, "R", backward="autodiff"),
        "joint": _vg(bad_step),
        "remat": _vg(bad_step, remat="sqrt"),
    }[where]
    with pytest.raises(ValueError, match=pattern):
        jax.eval_shape(fn, params, x0)  # tracing only: the error comes before any compilation


@pytest.mark.parametrize("backward", ["autodiff", "joint"])
def test_a_controller_without_float_output_is_one_clear_error(problem, backward):
    params, x0 = problem
    vg = sb.value_and_grad(loss, step, int_controller, HORIZON, "R", backward=backward)
    with pytest.raises(ValueError, match=r"controller `int_controller` returned no floating-point array.*int32"):
        jax.eval_shape(vg, params, x0)


def test_non_array_leaf_in_the_initial_state_is_refused(problem):
    params, x0 = problem
    with pytest.raises(ValueError, match=r"initial state x0 has a leaf at \['label'\] that is not an array"):
        sb.rollout(step, controller, params, x0 | {"label": "cart"}, HORIZON)


def test_initial_states_as_a_python_list_are_refused_as_such():
    """A Python list of numbers is a tree of scalars to JAX; it is named as the input at fault (not blamed on the
    controller it reaches), in one line, with the fix; the same numbers as an array train."""
    task = sb.tasks.CartPole(n_poles=1, horizon=3)
    params = task.init_controller(jax.random.PRNGKey(0))
    x0 = task.sample(jax.random.PRNGKey(1), 2)
    vg = sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, "C")
    with pytest.raises(sb.BadInput, match=r"^the initial state x0 is a Python list of 8 numbers, .*\(jnp.asarray"):
        vg(params, x0.tolist())
    with pytest.raises(sb.BadInput, match=r"^the initial state x0 is a Python list"):
        sb.rollout(task.step, task.controller, params, x0.tolist(), task.horizon)
    assert jnp.isfinite(vg(params, jnp.asarray(x0.tolist()))[0])
