"""The forward rollout: a controller driving a simulator for a number of steps."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .methods import PATHS, canonical_method

PyTree = Any
Step = Callable[[jax.Array, jax.Array], jax.Array]
Controller = Callable[[PyTree, jax.Array], jax.Array]


def rollout(
    step: Step,
    controller: Controller,
    params: PyTree,
    x0: jax.Array,
    horizon: int,
    method: str = "R",
) -> tuple[jax.Array, jax.Array]:
    """Unroll `controller` and `step` for `horizon` steps with `lax.scan`.

    ``c_n = controller(params, x_n)``, ``x_{n+1} = step(x_n, c_n)``. The method decides where
    `stop_gradient` sits (method.md §1): M and S stop the gradient at the controller's input, S and N at the
    simulator's state input. The forward values are the same for every method; "C" places none (it is
    computed from R and M by `value_and_grad`).

    Args:
        step: one simulator step ``(x, c) -> x_next``.
        controller: ``(params, x) -> c``.
        params: controller parameters, any pytree.
        x0: initial state, any shape (batching is up to the task).
        horizon: number of steps Nt >= 1.
        method: R, M, S, N or C (or their names).

    Returns:
        ``(states, controls)``: time-major, `states` of shape ``(horizon + 1, *x0.shape)`` with
        ``states[0] == x0``; `controls` of shape ``(horizon, *c.shape)``.
    """
    method = canonical_method(method)
    through_net, through_sim = PATHS.get(method, (True, True))
    horizon = _check_horizon(horizon)
    x0 = jnp.asarray(x0)

    def body(x, _):
        c = controller(params, x if through_net else jax.lax.stop_gradient(x))
        x_next = step(x if through_sim else jax.lax.stop_gradient(x), c)
        return x_next, (x_next, c)

    _, (xs, cs) = jax.lax.scan(body, x0, None, length=horizon)
    states = jnp.concatenate([x0[None], xs], axis=0)
    return states, cs


def _check_horizon(horizon: Any) -> int:
    try:
        value = operator.index(horizon)
    except TypeError:
        value = None
    if value is None or isinstance(horizon, bool) or value < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    return value
