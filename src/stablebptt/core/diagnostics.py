"""Where gradients explode or vanish, measured before training: the numbers of ``stablebptt diagnose``.

For one batch of initial states and one controller, `gradient_diagnostics` measures

- the norm of the parameter gradient of each single mode (R, M, S, N) and of C against the horizon, on a ladder
  of horizons up to the longest (the loss of horizon h is the task's loss of the first h steps);
- each time step's contribution to R's and M's gradient at the longest horizon (the parameter cotangent of the
  controller's call at step t);
- the growth of a perturbation of the initial state through the closed loop (simulator and controller) and
  through the simulator alone (the rollout's controls held fixed), step by step, by forward-mode derivatives;
- the cosine of g_M and g_R and the share of entries whose signs agree (what C keeps), per horizon.

It is one program for every horizon of the ladder: one rollout to the longest horizon per mode with the mode's
``stop_gradient``s, the controller's parameters given to every step as a copy of their own, and one reverse
sweep per mode, batched over the ladder's horizons (`jax.vmap` of the VJP); the per-step cotangents of those
copies are the steps' contributions, and their sum over steps the gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .checks import BadInput, check_positive_int
from .combination import combine, combine_stats, tree_norm
from .unroll import Controller, Step, rollout

PyTree = Any
Loss = Callable[[PyTree, PyTree], jax.Array]
MODES = ("R", "M", "S", "N")


class Diagnostics(NamedTuple):
    """What `gradient_diagnostics` measures (a pytree of arrays; K horizons, H the longest, D directions).

    Attributes:
        horizons: ``(K,)`` int32, the ladder of horizons, increasing.
        loss: ``(K,)`` the task's loss of the first h steps.
        grad_norm: mode letter (R, M, S, N, C) -> ``(K,)``, the global norm of the parameter gradient (C: of the
            combined update) of the loss of horizon h.
        cosine: ``(K,)`` cosine of g_M and g_R (over the entries where g_R is finite).
        kept: ``(K,)`` the share of entries whose signs agree, which C keeps of g_M.
        step_norm: R and M -> ``(H,)``, the norm of step t's contribution to the gradient of the longest horizon.
        closed_loop: ``(H + 1,)`` the norm of a perturbation of the initial state at step t through simulator and
            controller, relative to its initial norm (the largest over D random directions).
        open_loop: ``(H + 1,)`` the same through the simulator alone, the rollout's controls held fixed.
    """

    horizons: jax.Array
    loss: jax.Array
    grad_norm: dict[str, jax.Array]
    cosine: jax.Array
    kept: jax.Array
    step_norm: dict[str, jax.Array]
    closed_loop: jax.Array
    open_loop: jax.Array


def horizon_ladder(horizon: int, count: int = 8) -> tuple[int, ...]:
    """About `count` horizons spaced geometrically from 1 to `horizon` (both included, no repeats)."""
    horizon, count = check_positive_int("horizon", horizon), check_positive_int("count", count)
    if count == 1:
        return (horizon,)
    values = {round(horizon ** (i / (count - 1))) for i in range(count)}
    return tuple(sorted(v for v in values if 1 <= v <= horizon))


def check_horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    """`horizons` as an increasing tuple of distinct positive ints, or `BadInput`."""
    try:
        values = [check_positive_int("each horizon", h) for h in horizons]
    except TypeError:
        raise BadInput(f"horizons must be a sequence of positive integers, got {horizons!r}") from None
    if not values:
        raise BadInput("horizons must name at least one horizon")
    return tuple(sorted(set(values)))


def _floats(tree: PyTree) -> tuple[PyTree, PyTree]:
    return eqx.partition(tree, eqx.is_inexact_array)


def gradient_diagnostics(
    loss: Loss,
    step: Step,
    controller: Controller,
    params: PyTree,
    x0: PyTree,
    horizons: Sequence[int],
    key: jax.Array,
    *,
    directions: int = 4,
) -> Diagnostics:
    """Measure gradient growth along the horizon (module docstring); jit-able (`horizons` and `directions` are
    static).

    Args:
        loss: ``(states, controls) -> scalar`` of time-major trajectories (`Task.loss`).
        step, controller: the simulator and the controller, as for `rollout`.
        params: the controller's parameters, any pytree (its floating-point arrays are differentiated).
        x0: a batch of initial states, any pytree of arrays.
        horizons: the ladder (e.g. `horizon_ladder`); the longest sets the rollout.
        key: draws the perturbations' directions.
        directions: how many random directions of perturbation.

    Returns:
        `Diagnostics`.
    """
    ladder = check_horizons(horizons)
    directions = check_positive_int("directions", directions)
    longest = ladder[-1]
    diff, static = _floats(params)
    copies = jax.tree.map(lambda a: jnp.broadcast_to(a, (longest, *a.shape)), diff)

    def per_step_controller(p: PyTree, xt: tuple[PyTree, jax.Array]) -> PyTree:
        x, t = xt
        return controller(eqx.combine(jax.tree.map(lambda a: a[t], p), static), x)

    def counted_step(xt: tuple[PyTree, jax.Array], c: PyTree) -> tuple[PyTree, jax.Array]:
        x, t = xt
        return step(x, c), t + 1

    start = (x0, jnp.zeros((), jnp.int32))

    def losses(p: PyTree, mode: str) -> jax.Array:
        (states, _), controls = rollout(counted_step, per_step_controller, p, start, longest, mode)
        return jnp.stack(
            [
                loss(jax.tree.map(lambda a, h=h: a[: h + 1], states), jax.tree.map(lambda a, h=h: a[:h], controls))
                for h in ladder
            ]
        )

    values = None
    per_step: dict[str, PyTree] = {}
    for mode in MODES:
        out, vjp = jax.vjp(lambda p, mode=mode: losses(p, mode), copies)
        values = out if values is None else values
        (per_step[mode],) = jax.vmap(vjp)(jnp.eye(len(ladder), dtype=out.dtype))  # (K, H, ...) per leaf
    assert values is not None
    grads = {mode: jax.tree.map(lambda a: jnp.sum(a, axis=1), g) for mode, g in per_step.items()}  # (K, ...)
    grads["C"] = combine(grads["M"], grads["R"])
    grad_norm = {mode: jax.vmap(tree_norm)(g) for mode, g in grads.items()}
    stats = jax.vmap(combine_stats)(grads["M"], grads["R"])

    def step_norms(g: PyTree) -> jax.Array:  # (H,) of the longest horizon
        return jax.vmap(tree_norm)(jax.tree.map(lambda a: a[-1], g))

    closed, opened = _perturbation_growth(step, controller, params, x0, longest, key, directions)
    return Diagnostics(
        horizons=jnp.asarray(ladder, jnp.int32),
        loss=values,
        grad_norm=grad_norm,
        cosine=stats["cosine"],
        kept=stats["kept_fraction"],
        step_norm={mode: step_norms(per_step[mode]) for mode in ("R", "M")},
        closed_loop=closed,
        open_loop=opened,
    )


def _perturbation_growth(
    step: Step, controller: Controller, params: PyTree, x0: PyTree, horizon: int, key: jax.Array, directions: int
) -> tuple[jax.Array, jax.Array]:
    """``(closed, open)``, each ``(horizon + 1,)``: the largest over `directions` unit perturbations of the
    initial state's floating-point leaves of the perturbation's norm at each step (forward mode)."""
    x_diff, x_static = _floats(x0)
    _, controls = rollout(step, controller, params, x0, horizon)

    def closed(d: PyTree) -> PyTree:
        states, _ = rollout(step, controller, params, eqx.combine(d, x_static), horizon)
        return _floats(states)[0]

    def replay(d: PyTree) -> PyTree:  # the rollout's controls, fed back in order
        def body(x: PyTree, c: PyTree) -> tuple[PyTree, PyTree]:
            x_next = step(x, c)
            return x_next, x_next

        x = eqx.combine(d, x_static)
        _, xs = jax.lax.scan(body, x, controls)
        return _floats(jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), x, xs))[0]

    leaves, tree = jax.tree.flatten(x_diff)
    keys = jax.random.split(key, directions * max(len(leaves), 1)).reshape(directions, max(len(leaves), 1), -1)

    def direction(k: jax.Array) -> PyTree:
        # drawn in float32 and cast: the same directions in either precision
        v = jax.tree.unflatten(
            tree, [jax.random.normal(k[i], a.shape, jnp.float32).astype(a.dtype) for i, a in enumerate(leaves)]
        )
        return jax.tree.map(lambda a: a / tree_norm(v), v)

    def growth(f: Callable[[PyTree], PyTree], k: jax.Array) -> jax.Array:
        _, tangent = jax.jvp(f, (x_diff,), (direction(k),))
        return jax.vmap(tree_norm)(tangent)

    closed_growth = jnp.max(jnp.stack([growth(closed, k) for k in keys]), axis=0)
    open_growth = jnp.max(jnp.stack([growth(replay, k) for k in keys]), axis=0)
    return closed_growth, open_growth
