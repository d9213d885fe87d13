"""Loss value and update of any gradient rule (`methods.Method`), including the combined update C.

How to differentiate a rollout is a parameter, a strategy object of `strategies` (as in Diffrax) or its name:

- `Autodiff` (``"autodiff"``): `jax.value_and_grad` of `rollout` with the mode's `stop_gradient`s. Single
  modes only.
- `Joint` (``"joint"``): one forward `lax.scan`, then ONE reverse sweep that carries one adjoint per requested
  mode side by side, so R and M share every step's work (see `adjoint`). The default for C, for truncation,
  and for single modes whose controller calls are small enough that the batched parameter VJP wins
  (`AutoBackward`, ``"auto"``).
- `TwoPass` (``"two_pass"``): the same single forward, then one reverse sweep per mode (the published cost
  model of C).

Orthogonal options: ``truncation=K`` (cut gradient flow along time every K steps), ``remat`` (a
`strategies.Remat`: store only states, recompute the rest in segments, for long horizons) and ``param_vjp`` (a
`strategies.ParamVJP`: only speed differs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from . import trees
from .adjoint import adjoint_gradients, resolve_param_vjp
from .checks import BadInput, check_truncation
from .methods import Method, Mode, as_method, as_mode
from .strategies import AutoBackward, Backward, ParamVJP, Remat, as_backward, as_param_vjp, as_remat
from .unroll import Controller, Step, _check_horizon, check_unroll, rollout, scan_body

PyTree = Any
Loss = Callable[[PyTree, PyTree], jax.Array]
Info = dict[str, jax.Array]
ValueAndGrad = Callable[[PyTree, PyTree], tuple[jax.Array, PyTree, Info]]  # (params, x0) -> (value, update, info)


def value_and_grad(
    loss: Loss,
    step: Step,
    controller: Controller,
    horizon: int,
    method: str | Method = "C",
    *,
    backward: str | Backward = "auto",
    truncation: int | None = None,
    remat: int | str | Remat | None = None,
    param_vjp: str | ParamVJP = "auto",
    unroll: int = 1,
    has_aux: bool = False,
    final_state: bool = False,
) -> ValueAndGrad:
    """Build ``(params, x0) -> (value, update, info)`` for one gradient-flow mode.

    States and controls may be any pytrees of arrays (see `rollout`); only their floating-point leaves carry
    adjoints, the others (counters, flags) are carried through unchanged by every backward pass.

    Args:
        loss: ``(states, controls) -> scalar`` on time-major trajectories (pytrees) as returned by `rollout`:
            state leaves ``(horizon + 1, ...)``, control leaves ``(horizon, ...)``.
        step: one simulator step ``(x, c) -> x_next``, returning `x`'s structure, shapes and dtypes.
        controller: ``(params, x) -> c``. The adjoint backward passes also call it on a time-stacked batch
            through `jax.vmap`, so it must be vmappable (any pure JAX function is).
        horizon: number of unrolled steps.
        method: R, M, S, N or C (either case, or regular, modified, stopped, network, combined), a
            `methods.Method` (a rule of your own too), or ``module.path:Name`` naming one.
        backward: a `strategies.Backward` or its name: "autodiff" (single modes only), "joint", "two_pass" or
            "auto": "joint" for C and with truncation; for a single mode "joint" when the batched parameter VJP
            is chosen (small controllers on small batches, such as every task at its published batch of 8:
            faster than autodiff), else "autodiff".
        truncation: if given, a positive int K: cut all gradient flow along time at the steps n with
            ``n % K == 0`` (truncated BPTT: windows of K steps), independently of the method. Needs an adjoint
            backward ("auto", "joint" or "two_pass").
        remat: rematerialisation, memory for long horizons, a `strategies.Remat` or its spelling. None, False
            or "none": store every step's residuals (fastest); "sqrt": store only states and recompute segments
            of ``ceil(sqrt(horizon))`` steps in the backward pass; "states": the same with segments of one step
            (least memory); a positive int (or a string of one): that segment length (`Segments`). Works with
            every method and every backward.
        param_vjp: for the adjoint backwards, how parameter gradients are formed, a `strategies.ParamVJP` or
            its name: "batched" (one VJP of the network over all steps after the reverse sweep), "per_step"
            (inside the sweep) or "auto" (chosen from XLA's flop count of one controller call per parameter;
            see `adjoint.choose_param_vjp`). Only speed differs.
        unroll: steps per iteration of the compiled loops over time, forward and reverse (`lax.scan`'s
            ``unroll``; a positive int). Only speed and compile time differ: 1 (the default) compiles the
            smallest program; a few steps may run faster where each step is small (benchmarks/arithmetic.py).
        has_aux: the loss returns ``(value, aux)`` (any pytree `aux`, e.g. per-sample losses or the final
            state's error), as with ``jax.value_and_grad(..., has_aux=True)``; `aux` is returned as
            ``info["aux"]`` and is not differentiated.
        final_state: also return the last state of the rollout, ``info["final_state"]`` (the structure of `x0`),
            so that a training loop can carry states from one update to the next (windows of a longer
            trajectory). It costs nothing: the forward pass computes it anyway.

    Returns:
        A pure, jit-able function. `value` is the loss, a scalar; `update` has the structure of `params`
        (`None` at leaves that are not inexact arrays, as Equinox's filtered gradients). For C it is
        ``combine(g_M, g_R)`` (`Method.update`). `info` holds scalars: ``grad_norm`` (L2 norm of `update`), and for C
        ``cosine`` (of g_M and g_R) and ``kept_fraction`` (share of entries kept by the sign test); with
        `has_aux` and `final_state` also ``aux`` and ``final_state``.

    Raises:
        BadInput: a bad option (named in the message), at once; a step or controller whose output does not fit
            (see `rollout`), when the returned function is traced.
    """
    rule = as_method(method)
    horizon = _check_horizon(horizon)
    how = as_backward(backward)
    truncation = check_truncation(truncation)
    segment = as_remat(remat).segment(horizon)
    vjp = as_param_vjp(param_vjp)
    unroll = check_unroll(unroll)
    how.check(rule, truncation)  # an impossible combination fails here, not when called

    modes = rule.modes
    step, controller = trees.checked(step, controller)  # errors name the user's functions
    loss = trees.loss_with_extras(loss, has_aux)  # (value, (aux, final state)), the value checked

    def value_and_update(params: PyTree, x0: PyTree) -> tuple[jax.Array, PyTree, Info]:
        diff, static = eqx.partition(params, eqx.is_inexact_array)
        x0 = trees.as_arrays(x0, "the initial state x0")

        def net(d: PyTree, x: PyTree) -> PyTree:
            return controller(eqx.combine(d, static), x)

        chosen = resolve_param_vjp(vjp, net, diff, x0)
        # The adjoint sweep pays off for C (shared sweep), truncation, and wherever the batched parameter VJP is
        # the better choice; otherwise a single mode is plain autodiff of the rollout.
        concrete = how.resolve(rule, truncation, chosen) if isinstance(how, AutoBackward) else how
        groups = concrete.sweeps(modes)
        if groups is None:
            (value, extras), grad = _autodiff(
                loss, step, controller, horizon, modes[0], diff, static, x0, segment, unroll
            )
            grads = [grad]
        else:
            (value, extras), grads = adjoint_gradients(
                loss,
                step,
                net,
                diff,
                x0,
                horizon,
                groups,
                truncation=truncation,
                segment=segment,
                param_vjp=chosen,
                unroll=unroll,
                has_aux=True,
            )
        update, info = rule.update(grads)
        rule.check_update(update, diff)  # a rule of one's own with a wrong update fails here, in one line
        aux, last = extras
        info = {**info, **({"aux": aux} if has_aux else {}), **({"final_state": last} if final_state else {})}
        return value, update, info

    return value_and_update


def _autodiff(
    loss: Callable[[PyTree, PyTree], Any],
    step: Step,
    controller: Controller,
    horizon: int,
    mode: Mode,
    diff: PyTree,
    static: PyTree,
    x0: PyTree,
    segment: int | None,
    unroll: int = 1,
) -> tuple[tuple[jax.Array, Any], PyTree]:
    """``((value, extras), grad)`` of a loss that returns ``(value, extras)`` (`trees.loss_with_extras`)."""

    def objective(d: PyTree) -> tuple[jax.Array, Any]:
        params = eqx.combine(d, static)
        if segment is None or segment >= horizon:
            states, controls = rollout(step, controller, params, x0, horizon, mode, unroll)
        else:
            states, controls = _remat_rollout(step, controller, params, x0, horizon, mode, segment, unroll)
        return loss(states, controls)

    return jax.value_and_grad(objective, has_aux=True)(diff)


def _remat_rollout(
    step: Step,
    controller: Controller,
    params: PyTree,
    x0: PyTree,
    horizon: int,
    mode: Mode,
    segment: int,
    unroll: int = 1,
) -> tuple[PyTree, PyTree]:
    """`rollout` as an outer scan over segments of `segment` steps, each under `jax.checkpoint`: the backward
    pass keeps the segments' first states and recomputes the inside of one segment at a time."""
    body = scan_body(step, controller, params, mode)

    @functools.partial(jax.checkpoint, static_argnums=(1,))
    def run(x: PyTree, length: int) -> tuple[PyTree, tuple[PyTree, PyTree]]:
        return jax.lax.scan(body, x, None, length=length, unroll=unroll)

    rest, count = horizon % segment, horizon // segment
    parts_x, parts_c = [], []
    x = x0
    if rest:
        x, (xs, cs) = run(x, rest)
        parts_x.append(xs)
        parts_c.append(cs)
    _, (xs, cs) = jax.lax.scan(lambda x, _: run(x, segment), x, None, length=count)
    flat = functools.partial(jax.tree.map, lambda a: a.reshape(count * segment, *a.shape[2:]))
    parts_x.append(flat(xs))
    parts_c.append(flat(cs))
    concat = functools.partial(jax.tree.map, lambda *a: jnp.concatenate(a, axis=0))
    return trees.prepend(x0, concat(*parts_x)), concat(*parts_c)


def value_and_grads(
    loss: Loss,
    step: Step,
    controller: Controller,
    horizon: int,
    modes: tuple[str | Mode, ...],
    *,
    truncation: int | None = None,
    remat: int | str | Remat | None = None,
    param_vjp: str | ParamVJP = "auto",
    final_state: bool = False,
) -> Callable[[PyTree, PyTree], tuple[Any, ...]]:
    """Build ``(params, x0) -> (value, {mode: gradient})`` for several single modes (R, M, S, N) at once: one
    forward sweep and ONE reverse sweep carrying one adjoint per mode (the ``"joint"`` backward of
    `value_and_grad`). Used to train runs of different methods in one program (C is ``combine(g[MODE_M],
    g[MODE_R])``). Arguments as for `value_and_grad` (`modes`: `methods.Mode`s or their letters); gradients have
    the structure of `params` (`None` at leaves that are not inexact arrays), keyed by `methods.Mode`. With
    `final_state` it returns ``(value, {mode: gradient}, last state)``.

    Raises:
        BadInput: for a bad option or mode (C is not a single mode), at once.
    """
    if not modes:
        raise BadInput("value_and_grads needs at least one single mode (R, M, S, N), got none")
    modes = tuple(dict.fromkeys(as_mode(m) for m in modes))
    horizon = _check_horizon(horizon)
    truncation = check_truncation(truncation)
    segment = as_remat(remat).segment(horizon)
    param_vjp = as_param_vjp(param_vjp)
    step, controller = trees.checked(step, controller)
    loss = trees.loss_with_extras(loss, False)  # (value, (None, final state)), the value checked

    def values_and_grads(params: PyTree, x0: PyTree) -> tuple[Any, ...]:
        diff, static = eqx.partition(params, eqx.is_inexact_array)
        x0 = trees.as_arrays(x0, "the initial state x0")

        def net(d: PyTree, x: PyTree) -> PyTree:
            return controller(eqx.combine(d, static), x)

        (value, (_, last)), grads = adjoint_gradients(
            loss,
            step,
            net,
            diff,
            x0,
            horizon,
            (modes,),
            truncation=truncation,
            segment=segment,
            param_vjp=param_vjp,
            has_aux=True,
        )
        by_mode = dict(zip(modes, grads, strict=True))
        return (value, by_mode, last) if final_state else (value, by_mode)

    return values_and_grads
