"""The forward rollout: a controller driving a simulator for a number of steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from . import trees
from .checks import check_positive_index
from .methods import MODE_R, Method, Mode, as_method, as_mode

PyTree = Any
Step = Callable[[PyTree, PyTree], PyTree]
Controller = Callable[[PyTree, PyTree], PyTree]
ScanBody = Callable[[PyTree, None], tuple[PyTree, tuple[PyTree, PyTree]]]  # x -> (x_next, (x_next, c))


def rollout(
    step: Step,
    controller: Controller,
    params: PyTree,
    x0: PyTree,
    horizon: int,
    method: str | Method | Mode = "R",
    unroll: int = 1,
) -> tuple[PyTree, PyTree]:
    """Unroll `controller` and `step` for `horizon` steps with `lax.scan`.

    ``c_n = controller(params, x_n)``, ``x_{n+1} = step(x_n, c_n)``. The method decides where
    `stop_gradient` sits (docs/concepts.md, the five modes): M and S stop the gradient at the controller's
    input, S and N at the simulator's state input. The forward values are the same for every method; "C"
    places none (it is computed from R and M by `value_and_grad`).

    States and controls are any pytrees of arrays (an array, a dict of fields, `mjx.Data`); leaves that are not
    floating point (step counters, flags) are carried through and get no gradient.

    Args:
        step: one simulator step ``(x, c) -> x_next``; `x_next` must have the structure, shapes and dtypes of
            `x` (checked when traced: a `BadInput` names the step and shows both).
        controller: ``(params, x) -> c``, `c` any pytree with at least one floating-point leaf.
        params: controller parameters, any pytree.
        x0: initial state, any pytree of arrays (batching is up to the task).
        horizon: number of steps Nt >= 1.
        method: R, M, S, N or C (or their names), a `methods.Method` or a `methods.Mode`.
        unroll: steps per iteration of the compiled loop (`lax.scan`'s ``unroll``): the same values, a larger
            program that XLA may fuse across steps (`check_unroll`).

    Returns:
        ``(states, controls)``, time-major: `states` has the structure of `x0`, each leaf of shape
        ``(horizon + 1, *leaf.shape)`` with ``states[0] == x0``; `controls` has the structure of `c`, each leaf
        of shape ``(horizon, *leaf.shape)``.
    """
    mode = forward_mode(method)
    horizon = _check_horizon(horizon)
    unroll = check_unroll(unroll)
    x0 = trees.as_arrays(x0, "the initial state x0")
    step, controller = trees.checked(step, controller)
    _, (xs, cs) = jax.lax.scan(scan_body(step, controller, params, mode), x0, None, length=horizon, unroll=unroll)
    return trees.prepend(x0, xs), cs


def check_unroll(unroll: Any) -> int:
    """`unroll` (steps per iteration of a rollout's compiled loop) as a positive int, or a one-line `BadInput`.
    Every value computes the same numbers; 1 (a loop of single steps) compiles the smallest program, a few steps
    let XLA fuse across them (benchmarks/arithmetic.py measures it per task)."""
    return check_positive_index("unroll", unroll)


def forward_mode(method: str | Method | Mode) -> Mode:
    """The mode whose `stop_gradient`s a rollout for `method` places: a single mode's own; R's (none) for a rule
    that combines modes, whose gradients `value_and_grad` computes from its modes' sweeps."""
    if isinstance(method, Mode):
        return method
    if isinstance(method, str) and len(method.strip()) == 1 and method.strip().upper() in "RMSN":
        return as_mode(method.strip())
    rule = as_method(method)
    return MODE_R if rule.combines else rule.modes[0]


def scan_body(step: Step, controller: Controller, params: PyTree, mode: Mode) -> ScanBody:
    """The `lax.scan` body of one step, ``x -> (x_next, (x_next, c))``, with the `stop_gradient`s of `mode`."""
    through_net, through_sim = mode.network, mode.simulator

    def body(x: PyTree, _: None) -> tuple[PyTree, tuple[PyTree, PyTree]]:
        c = controller(params, x if through_net else jax.lax.stop_gradient(x))
        x_next = step(x if through_sim else jax.lax.stop_gradient(x), c)
        return x_next, (x_next, c)

    return body


def _check_horizon(horizon: Any) -> int:
    return check_positive_index("horizon", horizon)
