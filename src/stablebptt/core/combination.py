"""The sign-agreement rule of the combined update (docs/concepts.md, the five modes), as a function and as an
Optax transform."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu
from jax.flatten_util import ravel_pytree

from .checks import BadInput
from .trees import first_difference

PyTree = Any
Info = dict[str, jax.Array]


def _is_none(x: Any) -> bool:
    return x is None


def _agree(m: jax.Array | None, r: jax.Array | None) -> jax.Array | None:
    if m is None or r is None:
        return None
    return jnp.where((jnp.sign(m) == jnp.sign(r)) & jnp.isfinite(r), m, jnp.zeros_like(m))


def combine(modified: PyTree, regular: PyTree) -> PyTree:
    """Keep each entry of `modified` whose sign equals that of `regular`, else 0.

    sign(0) is its own sign: a zero in one tree and a non-zero in the other gives 0. An entry where `regular`
    is not finite (NaN or ±inf) counts as disagreement (0), as in the published code, so that a regular
    gradient that overflowed in places does not stop training; a non-finite entry of `modified` is kept where
    the signs agree (it is for the caller to stop on it). `None` leaves (as from Equinox's filtered gradients)
    pass through.

    Args:
        modified: the modified gradient g^M, any pytree of arrays (leaves of any shape, or `None`).
        regular: the regular gradient g^R, same structure and leaf shapes.

    Returns:
        The combined update u, same structure and leaf shapes as `modified`.

    Raises:
        BadInput: in one line, naming the first difference, if the trees differ in structure or leaf shapes (which
            would otherwise broadcast silently).
    """
    _check_pair(modified, regular)
    return jax.tree.map(_agree, modified, regular, is_leaf=_is_none)


def _check_pair(modified: PyTree, regular: PyTree) -> None:
    difference = first_difference(modified, regular, ("modified gradient", "regular gradient"), dtypes=False)
    if difference is not None:
        raise BadInput(f"the modified gradient {difference}; give two gradients of the same parameters")


def _leaves(tree: PyTree) -> list[jax.Array]:
    return [x for x in jax.tree.leaves(tree) if x is not None]


def tree_dot(a: PyTree, b: PyTree) -> jax.Array:
    """Sum over all leaves of the elementwise product (None leaves skipped): `optax.tree_utils.tree_vdot`."""
    return jnp.asarray(otu.tree_vdot(a, b))


def tree_norm(tree: PyTree) -> jax.Array:
    """Global L2 norm of a pytree (None leaves skipped). (`optax.tree_utils.tree_norm` from optax 0.2.5 on;
    ``tree_l2_norm`` before.)"""
    return jnp.sqrt(tree_dot(tree, tree))


def combine_stats(modified: PyTree, regular: PyTree) -> dict[str, jax.Array]:
    """Diagnostics of one combined update.

    Returns scalars: ``cosine`` of g^M and g^R (over the entries where g^R is finite), ``kept_fraction`` (the
    share of entries kept by the sign test), ``regular_nonfinite`` (the number of entries where g^R is not
    finite, int32) and ``modified_finite`` (whether every entry of g^M is finite, bool).
    """
    _check_pair(modified, regular)
    m_leaves, r_leaves = _leaves(modified), _leaves(regular)
    eps = jnp.finfo(jnp.result_type(*m_leaves)).tiny if m_leaves else 1e-30
    r_finite = [jnp.where(jnp.isfinite(r), r, jnp.zeros_like(r)) for r in r_leaves]
    cosine = tree_dot(m_leaves, r_finite) / jnp.maximum(tree_norm(m_leaves) * tree_norm(r_finite), eps)
    zero = jnp.zeros((), jnp.int32)
    kept = sum((jnp.sum((jnp.sign(m) == jnp.sign(r)) & jnp.isfinite(r)) for m, r in zip(m_leaves, r_leaves)), zero)
    total = max(sum(x.size for x in m_leaves), 1)
    bad = sum((jnp.sum(~jnp.isfinite(r)) for r in r_leaves), zero)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(m)) for m in m_leaves])) if m_leaves else jnp.array(True)
    return {"cosine": cosine, "kept_fraction": kept / total, "regular_nonfinite": bad, "modified_finite": finite}


def combined_update(g_m: PyTree, g_r: PyTree) -> tuple[PyTree, Info]:
    """The update of C from g_M and g_R and its `info` (``grad_norm`` and `combine_stats`): `combine` and its
    statistics. When every leaf has one dtype they run on the gradients raveled into one
    vector each: the same numbers (up to the order of float sums), from a few fused operations instead of a
    dozen small ones per leaf, which costs as much as the second mode's sweep on a small network."""
    leaves = jax.tree.leaves(g_m)
    if len(leaves) > 1 and len({leaf.dtype for leaf in leaves}) == 1:
        flat_m, unravel = ravel_pytree(g_m)
        flat_r, _ = ravel_pytree(g_r)
        flat = combine(flat_m, flat_r)
        return unravel(flat), {"grad_norm": tree_norm(flat), **combine_stats(flat_m, flat_r)}
    update = combine(g_m, g_r)
    return update, {"grad_norm": tree_norm(update), **combine_stats(g_m, g_r)}


class SignAgreementState(NamedTuple):
    """`sign_agreement` keeps no state."""


def sign_agreement() -> optax.GradientTransformationExtraArgs:
    """The combined update as an Optax transformation.

    Called as ``tx.update(modified, state, params, regular=regular_grads)`` with `modified` (g^M) and
    `regular` (g^R) pytrees of one structure (the structure of the parameters); `regular` is keyword-only and
    required, so forgetting it fails loudly. The update is ``combine(modified, regular)``, same structure.
    Chain it before clipping and the optimizer::

        tx = optax.chain(stablebptt.sign_agreement(), optax.clip_by_global_norm(1.0), optax.adam(1e-3))
        updates, state = tx.update(g_modified, state, params, regular=g_regular)

    Returns:
        An `optax.GradientTransformationExtraArgs` whose state is empty (`SignAgreementState`).

    References:
        Schnell & Thuerey, "Stabilizing Backpropagation Through Time to Learn Complex Physics", ICLR 2024.
    """

    def init_fn(params: optax.Params) -> SignAgreementState:
        del params
        return SignAgreementState()

    def update_fn(
        updates: optax.Updates,
        state: SignAgreementState,
        params: optax.Params | None = None,
        *,
        regular: optax.Updates,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SignAgreementState]:
        del params, extra_args
        return combine(updates, regular), state

    # Optax's update protocol has no required keyword; `regular` is required on purpose (forgetting it fails).
    return optax.GradientTransformationExtraArgs(init_fn, update_fn)  # type: ignore[arg-type]
