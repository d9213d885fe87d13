"""Loss value and update of any gradient-flow mode, including the combined update C.

Two ways to differentiate a rollout are offered (the strategy is a parameter, as in Diffrax):

- ``"autodiff"``: `jax.value_and_grad` of `rollout` with the mode's `stop_gradient`s. Single modes only.
- ``"joint"``: one forward `lax.scan` that keeps each step's VJP residuals, then ONE reverse scan that carries
  one adjoint per requested mode side by side (a leading axis, `vmap`ped), so R and M share every step's work.
  This is the default for C.
- ``"two_pass"``: the same single forward, then one reverse scan per mode (the published cost model of C).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .combine import combine, combine_stats, tree_norm
from .methods import PATHS, canonical_method
from .rollout import Controller, Step, _check_horizon, rollout

PyTree = Any
Loss = Callable[[jax.Array, jax.Array], jax.Array]
BACKWARDS = ("auto", "autodiff", "joint", "two_pass")


def value_and_grad(
    loss: Loss,
    step: Step,
    controller: Controller,
    horizon: int,
    method: str = "C",
    *,
    backward: str = "auto",
    truncation: int | None = None,
) -> Callable[[PyTree, jax.Array], tuple[jax.Array, PyTree, dict[str, jax.Array]]]:
    """Build ``(params, x0) -> (value, update, info)`` for one gradient-flow mode.

    Args:
        loss: ``(states, controls) -> scalar`` on time-major trajectories as returned by `rollout`.
        step: one simulator step ``(x, c) -> x_next``.
        controller: ``(params, x) -> c``.
        horizon: number of unrolled steps.
        method: R, M, S, N or C (or regular, modified, stopped, network, combined).
        backward: "auto" (autodiff for single modes, joint for C), "autodiff", "joint" or "two_pass".
        truncation: if given, cut all gradient flow along time every `truncation` steps (truncated BPTT),
            independently of the method.

    Returns:
        A pure, jit-able function. `update` has the structure of `params` (`None` at leaves that are not
        inexact arrays, as Equinox's filtered gradients). For C it is ``combine(g_M, g_R)``. `info` holds
        scalars: ``grad_norm`` (L2 norm of `update`), and for C ``cosine`` (of g_M and g_R) and
        ``kept_fraction`` (share of entries kept by the sign test).
    """
    method = canonical_method(method)
    horizon = _check_horizon(horizon)
    if backward not in BACKWARDS:
        raise ValueError(f"unknown backward {backward!r}; allowed: {', '.join(BACKWARDS)}")
    if truncation is not None:
        truncation = _check_horizon(truncation)
    if backward == "auto":
        backward = "joint" if (method == "C" or truncation is not None) else "autodiff"
    if backward == "autodiff" and method == "C":
        raise ValueError("method C needs backward='joint' or 'two_pass' (it combines two modes)")
    if backward == "autodiff" and truncation is not None:
        raise ValueError("truncation needs backward='joint' or 'two_pass'")

    modes = ("M", "R") if method == "C" else (method,)

    def value_and_update(params: PyTree, x0: jax.Array):
        diff, static = eqx.partition(params, eqx.is_inexact_array)
        if backward == "autodiff":
            value, grads = _autodiff(loss, step, controller, horizon, method, diff, static, x0)
        elif backward == "joint":
            value, grads = _adjoint(loss, step, controller, horizon, modes, diff, static, x0, truncation)
        else:
            value, grads = None, []
            for mode in modes:
                value, (g,) = _adjoint(loss, step, controller, horizon, (mode,), diff, static, x0, truncation)
                grads.append(g)
        if method == "C":
            g_m, g_r = grads
            update = combine(g_m, g_r)
            info = {"grad_norm": tree_norm(update), **combine_stats(g_m, g_r)}
        else:
            update = grads[0] if isinstance(grads, list | tuple) else grads
            info = {"grad_norm": tree_norm(update)}
        return value, update, info

    return value_and_update


def _autodiff(loss, step, controller, horizon, method, diff, static, x0):
    def objective(d):
        states, controls = rollout(step, controller, eqx.combine(d, static), x0, horizon, method)
        return loss(states, controls)

    return jax.value_and_grad(objective)(diff)


def _adjoint(
    loss: Loss,
    step: Step,
    controller: Controller,
    horizon: int,
    modes: Sequence[str],
    diff: PyTree,
    static: PyTree,
    x0: jax.Array,
    truncation: int | None,
) -> tuple[jax.Array, list[PyTree]]:
    """One forward sweep, one reverse sweep carrying ``len(modes)`` adjoints; returns one gradient per mode."""
    x0 = jnp.asarray(x0)

    def net(d, x):
        return controller(eqx.combine(d, static), x)

    def forward(x, _):
        c, net_vjp = jax.vjp(net, diff, x)
        x_next, step_vjp = jax.vjp(step, x, c)
        return x_next, (x_next, c, net_vjp, step_vjp)

    _, (xs, controls, net_vjps, step_vjps) = jax.lax.scan(forward, x0, None, length=horizon)
    states = jnp.concatenate([x0[None], xs], axis=0)
    value, loss_vjp = jax.vjp(loss, states, controls)
    dl_dx, dl_dc = loss_vjp(jnp.ones_like(value))

    k = len(modes)
    through_net = jnp.array([PATHS[m][0] for m in modes])
    through_sim = jnp.array([PATHS[m][1] for m in modes])
    steps = jnp.arange(horizon)
    keep_time = jnp.ones(horizon, bool) if truncation is None else (steps % truncation) != 0

    def stack(tree):
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (k, *a.shape)), tree)

    def backward(carry, inputs):
        lam, grad = carry  # cotangent of x_{n+1} per mode, (k, *x.shape); parameter gradient per mode
        n, dx_n, dc_n, net_vjp, step_vjp = inputs
        a_x, a_c = jax.vmap(step_vjp)(lam)
        g_p, g_x = jax.vmap(net_vjp)(a_c + dc_n)
        expand = (slice(None),) + (None,) * x0.ndim
        keep = keep_time[n]
        lam = (
            dx_n
            + jnp.where((through_sim & keep)[expand], a_x, 0)
            + jnp.where((through_net & keep)[expand], g_x, 0)
        )
        grad = jax.tree.map(jnp.add, grad, g_p)
        return (lam, grad), None

    lam_final = stack(dl_dx[horizon])
    grad0 = stack(jax.tree.map(jnp.zeros_like, diff))
    (_, grads), _ = jax.lax.scan(
        backward,
        (lam_final, grad0),
        (steps, dl_dx[:horizon], dl_dc, net_vjps, step_vjps),
        reverse=True,
    )
    return value, [jax.tree.map(lambda g, i=i: g[i], grads) for i in range(k)]
