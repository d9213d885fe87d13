"""The joint backward pass of C equals the two-pass definition and combine(g_M, g_R) of naive unrolls (float64).

Systems: a nonlinear toy system whose loss includes the controls, the cart pole, a system with a vector control
per sample and a control-dependent loss, an Equinox-module controller with non-array leaves, and the other
registered tasks at a small horizon.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import naive_loss, toy_controller, toy_loss, toy_step

import stablebptt as sb

RTOL = 1e-10


def vector_step(x, c):
    """x (batch, 3), c (batch, 2): the controls enter nonlinearly and couple the coordinates."""
    return x + 0.1 * jnp.stack([jnp.tanh(c[:, 0]) * x[:, 1], c[:, 1] - x[:, 0] ** 2, jnp.sin(x[:, 2] + c[:, 0])], -1)


def vector_controller(params, x):
    return jnp.tanh(x @ params["w"]) @ params["v"] + params["b"]


def vector_loss(states, controls):
    return jnp.mean(jnp.cos(states[1:])) + 0.1 * jnp.mean(controls**2 * states[:-1, :, :2])


class Policy(eqx.Module):
    """A controller with non-array leaves: a name, an integer setting and a static function."""

    linear: eqx.nn.Linear
    gain: jax.Array
    name: str = "policy"
    power: int = 3
    activation: Callable = eqx.field(static=True, default=jnp.tanh)

    def __call__(self, x):
        return self.gain * self.activation(jax.vmap(self.linear)(x)[:, 0]) ** self.power


def policy_controller(params, x):
    return params(x)


def naive_grad(system, diff, method):
    """Gradient of the Python-loop unroll (jitted) with respect to the inexact leaves `diff`."""
    loss, step, controller, horizon, params, x0 = system

    @eqx.filter_jit
    def grad(d):
        return eqx.filter_grad(
            lambda d: naive_loss(loss, step, controller, eqx.combine(d, params), x0, method, horizon)
        )(d)

    return grad(diff)


def _system(name, key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    if name == "toy":
        params = {
            "w1": jax.random.normal(k1, (2, 5)),
            "b1": jax.random.normal(k2, (5,)) * 0.1,
            "w2": jax.random.normal(k3, (5, 1)),
            "b2": jnp.array(0.2),
        }
        return toy_loss, toy_step, toy_controller, 7, params, jax.random.normal(k4, (4, 2))
    if name == "vector":
        params = {
            "w": jax.random.normal(k1, (3, 6)),
            "v": jax.random.normal(k2, (6, 2)),
            "b": jax.random.normal(k3, (2,)),
        }
        return vector_loss, vector_step, vector_controller, 6, params, jax.random.normal(k4, (3, 3))
    if name == "module":
        params = Policy(eqx.nn.Linear(2, 1, key=k1), jnp.array(1.5))
        return toy_loss, toy_step, policy_controller, 6, params, jax.random.normal(k4, (4, 2))
    task = {
        "cartpole": lambda: sb.tasks.CartPole(
            n_poles=2, horizon=8, loss_mode="continuous", zero_final_kernel=False, hidden=(16, 16)
        ),
        "repulsion": lambda: sb.tasks.make_task("repulsion", horizon=5, hidden=(16, 16)),
        "quantum": lambda: sb.tasks.make_task("quantum", horizon=5, filters=8),
    }[name]()
    params = task.init_controller(k1)
    if name != "cartpole":  # a non-zero final layer, so that every gradient path is active
        params = jax.tree.map(
            lambda a: a + 0.1 * jax.random.normal(k3, a.shape, a.dtype) if eqx.is_inexact_array(a) else a, params
        )
    return task.loss, task.step, task.controller, task.horizon, params, task.sample(k2, 3)


SYSTEMS = ["toy", "cartpole"] + [
    pytest.param(t, marks=pytest.mark.slow)  # 5-18 s each: .ci/run's slow lane
    for t in ("vector", "module", "repulsion", "quantum")
    if t in ("vector", "module") or t in sb.tasks.TASKS
]


def rel_close(a, b, rtol=RTOL):
    """Trees equal up to `rtol` relative to the largest entry of each leaf."""
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(leaf_a), np.asarray(leaf_b)
        scale = max(np.max(np.abs(y)), 1e-300)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale)


@pytest.fixture(params=SYSTEMS)
def system(request, x64, key):
    return _system(request.param, key)


def test_joint_equals_two_pass_equals_naive(system):
    loss, step, controller, horizon, params, x0 = system
    diff = eqx.filter(params, eqx.is_inexact_array)
    g_m, g_r = (naive_grad(system, diff, m) for m in "MR")
    expected = sb.combine(g_m, g_r)
    value_expected = naive_loss(loss, step, controller, params, x0, "R", horizon)
    results = {}
    for backward in ("joint", "two_pass"):
        for param_vjp in ("batched", "per_step"):
            vg = sb.value_and_grad(loss, step, controller, horizon, "C", backward=backward, param_vjp=param_vjp)
            results[backward, param_vjp] = value, update, info = eqx.filter_jit(vg)(params, x0)
            np.testing.assert_allclose(value, value_expected, rtol=1e-12)
            rel_close(update, expected)
    reference = results["two_pass", "batched"]
    for _value, update, info in results.values():
        rel_close(update, reference[1])
        for name in ("grad_norm", "cosine", "kept_fraction"):
            np.testing.assert_allclose(info[name], reference[2][name], rtol=RTOL)
    assert float(reference[2]["grad_norm"]) > 0


@pytest.mark.parametrize("name", ["vector", "module", "cartpole"])
@pytest.mark.parametrize("param_vjp", ["batched", "per_step"])
def test_single_modes_equal_naive(x64, key, name, param_vjp):
    system = _system(name, key)
    loss, step, controller, horizon, params, x0 = system
    diff = eqx.filter(params, eqx.is_inexact_array)
    for method in "RMSN":
        vg = sb.value_and_grad(loss, step, controller, horizon, method, backward="joint", param_vjp=param_vjp)
        rel_close(eqx.filter_jit(vg)(params, x0)[1], naive_grad(system, diff, method))


def test_default_backward_is_joint(x64, key):
    loss, step, controller, horizon, params, x0 = _system("toy", key)
    default = sb.value_and_grad(loss, step, controller, horizon, "C")(params, x0)
    joint = sb.value_and_grad(loss, step, controller, horizon, "C", backward="joint")(params, x0)
    rel_close(default[1], joint[1], rtol=0)


def test_joint_pass_does_not_stack_the_weights(key):
    """The residuals kept per step must not contain `horizon` copies of the weight matrices."""
    task = sb.tasks.CartPole(n_poles=1, horizon=50)
    params = task.init_controller(key)
    x0 = task.sample(key, 2)
    vg = jax.jit(sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, "C"))
    temp = vg.lower(params, x0).compile().memory_analysis().temp_size_in_bytes
    weights = sum(a.nbytes for a in jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array)))
    assert temp < 0.5 * task.horizon * weights


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_param_vjp_choice(key):
    """The published MLP on the published batch 8: batched over time; larger batches, and the quantum CNN from
    batch 4 on (its row-block convolutions made per-step products cheap): per step."""
    from stablebptt.core.adjoint import choose_param_vjp

    cases = [
        (sb.tasks.CartPole(n_poles=2), 8, "batched"),
        (sb.tasks.CartPole(n_poles=2), 16, "per_step"),
        (sb.tasks.CartPole(n_poles=2), 1024, "per_step"),
    ]
    if "quantum" in sb.tasks.TASKS:
        quantum = sb.tasks.make_task("quantum")
        cases += [(quantum, 2, "batched"), (quantum, 4, "per_step"), (quantum, 8, "per_step")]
        cases += [(quantum, 64, "per_step")]
    for task, batch, expected in cases:
        params = eqx.filter(task.init_controller(key), eqx.is_inexact_array)
        static = eqx.filter(task.init_controller(key), eqx.is_inexact_array, inverse=True)

        def net(d, x, task=task, static=static):
            return task.controller(eqx.combine(d, static), x)

        assert choose_param_vjp(net, params, task.sample(key, batch)).spelling == expected


def test_bad_param_vjp_is_a_value_error():
    with pytest.raises(ValueError, match="param_vjp"):
        sb.value_and_grad(toy_loss, toy_step, toy_controller, 3, "C", param_vjp="fast")
