"""Reverse-sweep (adjoint) gradients of a controlled rollout, for one or several gradient-flow modes at once.

The recursion, for ``c_n = N(x_n; θ)``, ``x_{n+1} = S(x_n, c_n)`` and a loss ``L(x_0..x_H, c_0..c_{H-1})``::

    a_n   = S_c(n)^T λ_{n+1} + ∂L/∂c_n                        cotangent of the control c_n
    λ_n   = ∂L/∂x_n + [sim] S_x(n)^T λ_{n+1} + [net] N_x(n)^T a_n
    g     = Σ_n N_θ(n)^T a_n                                  parameter gradient

A mode (docs/concepts.md, the five modes) decides which of the bracketed paths exist: R both, M only [sim],
S neither, N only [net].
Truncation removes both paths at the steps ``n % K == 0``.

All modes of a group share one forward sweep and one reverse sweep (their adjoints stacked on a leading axis,
the simulator VJP `vmap`ped over it; the new adjoints of all modes are formed on the stacked arrays, so a second
mode adds almost nothing to the sweep). The parameter gradient is formed in one of two ways (``param_vjp``):

- ``"batched"``: the parameter gradient is linear in the control cotangents ``a_n``, and the ``N_θ(n)`` of
  different steps are independent. So the reverse sweep only produces the ``a_n`` and runs the network's
  input VJP for the modes through the network (R, not M); the parameter gradients of all modes are then ONE
  VJP of the network over all steps at once (large matrix products instead of `horizon` tiny ones, one
  forward recomputation shared by all modes). Best for small networks, dense or convolutional, on small
  batches: its extra work (the recomputation, and R's backpropagation done twice) is repaid by products several
  times more efficient, which also use every core.
- ``"per_step"``: each step's full network VJP (parameters and input) inside the sweep, `vmap`ped over the
  modes, accumulated in the carry: no recomputation. Best when one step's network work is large
  (convolutions, large batches).

The residuals stored by the forward sweep drop the loop-invariant parameters (``_hoist``): a VJP closure holds
the weight matrices, and stacking them per step would copy them `horizon` times.

Rematerialisation (the ``remat`` option): with ``segment`` set, the forward sweep keeps only states and controls
(which the loss needs anyway), and the reverse sweep re-linearises ``segment`` steps at a time, batched over those
steps, so peak memory is ``horizon x state + segment x activations`` instead of ``horizon x activations``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import PyTreeDef

from . import trees
from .methods import Mode, as_mode
from .strategies import AutoVJP, BatchedVJP, ParamVJP, PerStepVJP, as_param_vjp

PyTree = Any
Net = Callable[[PyTree, PyTree], PyTree]  # (differentiable params, x) -> c
Spec = tuple[PyTreeDef, tuple[int, ...]]  # a hoisted closure's treedef, and per leaf its invariant's index or -1
Residuals = tuple[PyTree, PyTree]  # the hoisted VJP leaves (network's or None, simulator's) of one or more steps
Linearize = Callable[..., tuple[PyTree, PyTree, Residuals]]  # (x, c=None) -> (x_next, c, residuals)
# (steps, states, controls, dL/dx, dL/dc) of a block of steps, each leaf with the steps on its leading axis
Block = tuple[jax.Array, PyTree, PyTree, PyTree, PyTree]
Sweep = Callable[[PyTree, Block, Residuals | None], tuple[PyTree, list[PyTree]]]  # (λ, block, stored) -> (λ, grads)

# Crossovers of `choose_param_vjp`, measured on a 2-core CPU (benchmarks/README.md, section 1, and
# benchmarks/quantum_epoch.py): the 2x100 MLP (flops per parameter of one call = the batch) is faster "batched" at
# batch 8 and per step from batch 16; the quantum CNN (7 x the batch: a convolution reuses each weight at every
# position), since its convolutions became row-block products, per step from batch 4 (28) and level at batch 2
# (14). Per step when the measure exceeds PER_STEP_THRESHOLD or the batch PER_STEP_BATCH.
PER_STEP_THRESHOLD = 20.0
PER_STEP_BATCH = 12


def _copies(a: jax.Array, k: int) -> jax.Array:
    """`a` repeated along a new leading axis of length `k`: (k, *a.shape)."""
    return jnp.broadcast_to(a, (k, *a.shape))


def _hoist(closure: PyTree, invariants: Sequence[jax.Array]) -> tuple[list[jax.Array], Spec]:
    """Split a VJP closure into its per-step leaves and a spec; leaves that ARE one of `invariants` (the
    parameters, by identity) are left out and re-inserted by `_unhoist`."""
    leaves, treedef = jax.tree.flatten(closure)
    index = {id(v): i for i, v in enumerate(invariants)}
    where = tuple(index.get(id(leaf), -1) for leaf in leaves)
    return [leaf for leaf, w in zip(leaves, where, strict=True) if w < 0], (treedef, where)


def _unhoist(varying: Sequence[jax.Array], invariants: Sequence[jax.Array], spec: Spec) -> PyTree:
    treedef, where = spec
    it = iter(varying)
    return jax.tree.unflatten(treedef, [next(it) if w < 0 else invariants[w] for w in where])


def adjoint_gradients(
    loss: Callable[[PyTree, PyTree], Any],
    step: Callable[[PyTree, PyTree], PyTree],
    net: Net,
    diff: PyTree,
    x0: PyTree,
    horizon: int,
    groups: Sequence[Sequence[str | Mode]],
    *,
    truncation: int | None = None,
    segment: int | None = None,
    param_vjp: str | ParamVJP = "auto",
    unroll: int = 1,
    has_aux: bool = False,
) -> tuple[Any, list[PyTree]]:
    """Loss value and one parameter gradient per mode, after ONE forward sweep.

    States and controls are pytrees; the adjoints λ_n and a_n have the structure of their floating-point
    leaves (`trees.split`): every VJP is taken with respect to those, the other leaves are closed over.

    Args:
        loss: as for `value_and_grad`.
        step: as for `value_and_grad`.
        net: ``(diff, x) -> c``, the controller on the differentiable part of its parameters.
        diff: the differentiable parameters (a pytree of inexact arrays, `None` elsewhere).
        x0: initial state, a pytree of arrays (`value_and_grad` converts it and checks `step` and the
            controller when they are traced).
        horizon: number of steps.
        groups: modes (R, M, S, N) to differentiate; the modes of one group share one reverse sweep (their
            adjoints stacked on a leading axis), each group has its own sweep. ``(("M", "R"),)`` is the joint
            pass of C, ``(("M",), ("R",))`` the two-pass definition.
        truncation: cut both backward paths at the steps ``n % truncation == 0``.
        segment: None to store every step's residuals; else re-linearise `segment` steps at a time.
        param_vjp: how the parameter gradient is formed: "batched" (one VJP of the network over all steps
            of a segment, after the sweep), "per_step" (each step's full network VJP inside the sweep, all
            modes `vmap`ped, accumulated in the carry), "auto" (`choose_param_vjp`) or a
            `strategies.ParamVJP`.
        unroll: steps per iteration of the forward and reverse loops (`lax.scan`'s ``unroll``).
        has_aux: `loss` returns ``(value, aux)``; then the first output is ``(value, aux)``, as with
            ``jax.value_and_grad(..., has_aux=True)``.

    Returns:
        ``(value, grads)`` with one gradient pytree per mode, in the order of the flattened `groups`.
    """
    sweeps = tuple(tuple(as_mode(m) for m in group) for group in groups)
    per_step = isinstance(resolve_param_vjp(param_vjp, net, diff, x0), PerStepVJP)
    invariants = list(jax.tree.leaves(diff))
    any_net = per_step or any(m.network for group in sweeps for m in group)
    specs: dict[str, Spec] = {}

    def linearize(x: PyTree, c: PyTree = None) -> tuple[PyTree, PyTree, Residuals]:
        """Per-step VJP closures (the network's input VJP only when some mode needs it), parameters hoisted
        out, all with respect to the floating-point leaves. With `c` None the control is computed here; else
        `c` (the stored control) is used for the step."""
        x_f, x_i = trees.split(x)

        def net_f(d: PyTree, x_f: PyTree) -> tuple[PyTree, PyTree]:
            return trees.split(net(d, trees.merge(x_f, x_i)))  # (float part, aux: the rest)

        if per_step:  # the VJP with respect to parameters and input
            c_f, net_vjp, c_i = jax.vjp(net_f, diff, x_f, has_aux=True)
            net_res, specs["net"] = _hoist(net_vjp, invariants)
        elif any_net:  # the input VJP only
            c_f, net_vjp, c_i = jax.vjp(functools.partial(net_f, diff), x_f, has_aux=True)
            net_res, specs["net"] = _hoist(net_vjp, invariants)
        else:
            (c_f, c_i), net_res = (net_f(diff, x_f) if c is None else (None, None)), None
        if c is not None:
            c_f, c_i = trees.split(c)

        def step_f(x_f: PyTree, c_f: PyTree) -> tuple[PyTree, PyTree]:
            return trees.split(step(trees.merge(x_f, x_i), trees.merge(c_f, c_i)))

        next_f, step_vjp, next_i = jax.vjp(step_f, x_f, c_f, has_aux=True)
        step_res, specs["step"] = _hoist(step_vjp, invariants)
        return trees.merge(next_f, next_i), trees.merge(c_f, c_i), (net_res, step_res)

    def forward(x: PyTree, _: None) -> tuple[PyTree, tuple[PyTree, PyTree, Residuals | None]]:
        if segment is None:
            x_next, c, res = linearize(x)
        else:
            c = net(diff, x)
            x_next, res = step(x, c), None
        return x_next, (x_next, c, res)

    _, (xs, controls, stored) = jax.lax.scan(forward, x0, None, length=horizon, unroll=unroll)
    states = trees.prepend(x0, xs)
    (states_f, states_i), (controls_f, controls_i) = trees.split(states), trees.split(controls)

    def on_floats(s: PyTree, c: PyTree) -> Any:
        return loss(trees.merge(s, states_i), trees.merge(c, controls_i))

    if has_aux:
        value, loss_vjp, aux = jax.vjp(on_floats, states_f, controls_f, has_aux=True)
    else:
        value, loss_vjp = jax.vjp(on_floats, states_f, controls_f)
    dl_dx, dl_dc = loss_vjp(jnp.ones_like(value))

    def net_float(d: PyTree, x: PyTree) -> PyTree:
        return trees.split(net(d, x))[0]

    steps = jnp.arange(horizon)
    grads: list[PyTree] = []
    for modes in sweeps:
        sweep = functools.partial(
            _sweep,
            modes=tuple(modes),
            net=net_float,
            diff=diff,
            invariants=invariants,
            specs=specs,
            linearize=linearize,
            truncation=truncation,
            per_step=per_step,
            unroll=unroll,
        )
        lam = jax.tree.map(functools.partial(_copies, k=len(modes)), trees.at(dl_dx, horizon))
        block = (steps, trees.at(states, slice(None, horizon)), controls, trees.at(dl_dx, slice(None, horizon)), dl_dc)
        if segment is None or segment >= horizon:
            _, group_grads = sweep(lam, block, stored if segment is None else None)
        else:
            group_grads = _segmented(sweep, lam, block, horizon, segment)
        grads.extend(group_grads)
    return ((value, aux) if has_aux else value), grads


def _segmented(sweep: Sweep, lam: PyTree, block: Block, horizon: int, segment: int) -> list[PyTree]:
    """Reverse sweep over full segments (an outer `lax.scan`), then over the leading remainder."""
    rest = horizon % segment
    count = horizon // segment
    head = trees.at(block, slice(None, rest))
    body = jax.tree.map(lambda a: a[rest:].reshape(count, segment, *a.shape[1:]), block)

    def outer(carry: tuple[PyTree, list[PyTree]], seg: Block) -> tuple[tuple[PyTree, list[PyTree]], None]:
        lam, acc = carry
        lam, g = sweep(lam, seg, None)
        return (lam, trees.add(acc, g)), None

    lam, acc = sweep(lam, trees.at(body, -1), None)  # the last segment initialises the accumulator
    if count > 1:
        (lam, acc), _ = jax.lax.scan(outer, (lam, acc), trees.at(body, slice(None, -1)), reverse=True)
    if rest:
        lam, g = sweep(lam, head, None)
        acc = trees.add(acc, g)
    return acc


def _lead(tree: PyTree) -> PyTree:
    """A leading axis of length 1 on every leaf (one mode, shaped like several)."""
    return jax.tree.map(lambda y: y[None], tree)


def _take(tree: PyTree, rows: Sequence[int], k: int) -> PyTree:
    """Rows `rows` of the leading axis (of length `k`) of every leaf."""
    if len(rows) == k:
        return tree
    if len(rows) == 1:
        return jax.tree.map(lambda a: a[rows[0]][None], tree)
    return trees.at(tree, jnp.array(rows, dtype=jnp.int32))


def _place(tree: PyTree, rows: Sequence[int], k: int) -> PyTree:
    """`tree` (leading axis ``len(rows)``) placed at `rows` of a leading axis of `k`, zeros elsewhere."""
    if len(rows) == k:
        return tree
    index = jnp.array(rows, dtype=jnp.int32)
    return jax.tree.map(lambda a: jnp.zeros((k, *a.shape[1:]), a.dtype).at[index].set(a), tree)


def _sweep(
    lam: PyTree,
    block: Block,
    stored: Residuals | None,
    *,
    modes: tuple[Mode, ...],
    net: Net,
    diff: PyTree,
    invariants: Sequence[jax.Array],
    specs: Mapping[str, Spec],
    linearize: Linearize,
    truncation: int | None,
    per_step: bool,
    unroll: int = 1,
) -> tuple[PyTree, list[PyTree]]:
    """Reverse sweep over one contiguous block of steps; returns the adjoint at the block's first state and
    one parameter gradient per mode (list). Adjoints are pytrees of the states' float leaves, with the modes
    on a leading axis."""
    steps, xs, cs, dl_dx, dl_dc = block
    if stored is None:
        stored = jax.vmap(linearize)(xs, cs)[2]  # one batched re-linearisation of the block
    k = len(modes)
    via_net = [i for i, m in enumerate(modes) if m.network]
    via_sim = [i for i, m in enumerate(modes) if m.simulator]

    def backward(
        carry: tuple[PyTree, PyTree], inputs: tuple[jax.Array, PyTree, PyTree, Residuals]
    ) -> tuple[tuple[PyTree, PyTree], PyTree]:
        lam, acc = carry
        n, dx, dc, (net_res, step_res) = inputs
        step_vjp = _unhoist(step_res, invariants, specs["step"])
        if via_sim:  # the simulator VJP only for the modes through the simulator
            a_x, a_c = jax.vmap(step_vjp)(lam) if k > 1 else _lead(step_vjp(trees.at(lam, 0)))
        else:  # S and N: only the control cotangent S_c^T λ is needed
            a_x, a_c = None, jax.vmap(lambda cot: step_vjp(cot)[1])(lam)
        a_c = trees.add(a_c, dc)
        g_x = None
        if per_step:  # parameter and input VJP of every mode at once
            net_vjp = _unhoist(net_res, invariants, specs["net"])
            g_p, g_x = jax.vmap(net_vjp)(a_c) if k > 1 else _lead(net_vjp(trees.at(a_c, 0)))
            acc = trees.add(acc, g_p)
            g_x = _take(g_x, via_net, k) if via_net else None
        elif via_net:  # the input VJP, only for the modes through the network
            net_vjp = _unhoist(net_res, invariants, specs["net"])
            if len(via_net) == 1:
                g_x = _lead(net_vjp(trees.at(a_c, via_net[0]))[0])
            else:
                g_x = jax.vmap(net_vjp)(_take(a_c, via_net, k))[0]
        # The new adjoints of all modes at once, on the stacked arrays (no per-mode slices and re-stacking).
        back = None if a_x is None else _place(_take(a_x, via_sim, k), via_sim, k)
        if via_net:
            g_x = _place(g_x, via_net, k)
            back = g_x if back is None else trees.add(back, g_x)
        if back is None:
            lam_new = jax.tree.map(lambda d: jnp.broadcast_to(d, (k, *d.shape)), dx)
        else:
            if truncation is not None:
                keep = n % truncation != 0
                back = jax.tree.map(lambda b: jnp.where(keep, b, jnp.zeros_like(b)), back)
            lam_new = jax.tree.map(lambda d, b: d[None] + b, dx, back)
        return (lam_new, acc), (None if per_step else a_c)

    acc0 = jax.tree.map(lambda a: jnp.zeros((k, *a.shape), a.dtype), diff) if per_step else None
    (lam, acc), a = jax.lax.scan(backward, (lam, acc0), (steps, dl_dx, dl_dc, stored), reverse=True, unroll=unroll)
    if not per_step:
        # The parameter gradient is linear in the control cotangents: one batched VJP over all steps.
        _, pull = jax.vjp(lambda d: jax.vmap(net, (None, 0))(d, xs), diff)
        if k == 1:
            return lam, [pull(trees.at(a, (slice(None), 0)))[0]]
        (acc,) = jax.vmap(pull, in_axes=1)(a)
    return lam, [trees.at(acc, i) for i in range(k)]


def choose_param_vjp(net: Net, diff: PyTree, x0: PyTree, threshold: float | None = None) -> ParamVJP:
    """Pick `PerStepVJP` when one network call does many operations per parameter, else `BatchedVJP`.

    Many operations per parameter (large batches): the per-step products are big enough to be efficient inside
    the sweep, and "batched" would pay for recomputing the forward pass and the regular mode's
    backpropagation (about 5/3 of the network work for R, 7/5 for C). Few (a small network on a small batch,
    dense or convolutional): the per-step products are tiny, and one product over all steps is several times
    more efficient (and uses every core), which outweighs the extra work.

    The measure is XLA's flop count of one call of `net` on `x0` divided by twice the parameter count (a
    dense layer on a batch of B does B multiply-adds per weight, so the measure is B for an MLP; a
    convolution reuses each weight at every position, so the quantum CNN measures 7 B). The crossover
    (`PER_STEP_THRESHOLD`) is where both cost the same for the quantum CNN on a 2-core CPU; a batch (leading
    axis of `x0`) above `PER_STEP_BATCH` also picks "per_step" (the crossover of the published MLP, whose
    measure is its batch). Only speed depends on the choice.
    """
    n_params = sum(leaf.size for leaf in jax.tree.leaves(diff))
    if n_params == 0:
        return BatchedVJP()
    try:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (diff, x0))
        cost: Any = jax.jit(net).lower(*abstract).cost_analysis()  # a dict, a list of one, or None (fails here)
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        flops = float(cost["flops"])
    except Exception:  # noqa: BLE001 -- no cost model on this backend: the choice that never recomputes
        return PerStepVJP()
    leaves = jax.tree.leaves(x0)
    batch = leaves[0].shape[0] if leaves and leaves[0].ndim else 1
    threshold = PER_STEP_THRESHOLD if threshold is None else threshold
    return PerStepVJP() if flops / (2 * n_params) > threshold or batch > PER_STEP_BATCH else BatchedVJP()


def resolve_param_vjp(param_vjp: str | ParamVJP, net: Net, diff: PyTree, x0: PyTree) -> ParamVJP:
    """The concrete `strategies.ParamVJP` (`BatchedVJP` or `PerStepVJP`) of an option for this network,
    parameters and initial state: an `AutoVJP` is decided by `choose_param_vjp` with its threshold."""
    vjp = as_param_vjp(param_vjp)
    if isinstance(vjp, AutoVJP):
        return choose_param_vjp(net, diff, x0, vjp.threshold)
    return vjp
