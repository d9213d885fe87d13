"""The sign-agreement rule of the combined update (method.md §1), as a function and as an Optax transform."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def _is_none(x: Any) -> bool:
    return x is None


def _agree(m: jax.Array | None, r: jax.Array | None) -> jax.Array | None:
    if m is None or r is None:
        return None
    return jnp.where(jnp.sign(m) == jnp.sign(r), m, jnp.zeros_like(m))


def combine(modified: PyTree, regular: PyTree) -> PyTree:
    """Keep each entry of `modified` whose sign equals that of `regular`, else 0.

    sign(0) is its own sign: a zero in one tree and a non-zero in the other gives 0. `None` leaves (as from
    Equinox's filtered gradients) pass through.

    Args:
        modified: the modified gradient g^M, any pytree of arrays.
        regular: the regular gradient g^R, same structure.

    Returns:
        The combined update u, same structure as `modified`.
    """
    return jax.tree.map(_agree, modified, regular, is_leaf=_is_none)


def _leaves(tree: PyTree) -> list[jax.Array]:
    return [x for x in jax.tree.leaves(tree) if x is not None]


def tree_dot(a: PyTree, b: PyTree) -> jax.Array:
    """Sum over all leaves of the elementwise product (None leaves skipped)."""
    terms = [jnp.vdot(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True)]
    return sum(terms, jnp.zeros(()))


def tree_norm(tree: PyTree) -> jax.Array:
    """Global L2 norm of a pytree (None leaves skipped)."""
    return jnp.sqrt(tree_dot(tree, tree))


def combine_stats(modified: PyTree, regular: PyTree) -> dict[str, jax.Array]:
    """Diagnostics of one combined update: cosine of g^M and g^R, and the share of entries kept."""
    eps = jnp.finfo(jnp.result_type(*_leaves(modified))).tiny if _leaves(modified) else 1e-30
    cosine = tree_dot(modified, regular) / jnp.maximum(tree_norm(modified) * tree_norm(regular), eps)
    m_leaves, r_leaves = _leaves(modified), _leaves(regular)
    kept = sum((jnp.sum(jnp.sign(m) == jnp.sign(r)) for m, r in zip(m_leaves, r_leaves)), jnp.zeros((), jnp.int32))
    total = max(sum(x.size for x in m_leaves), 1)
    return {"cosine": cosine, "kept_fraction": kept / total}


class SignAgreementState(NamedTuple):
    """`sign_agreement` keeps no state."""


def sign_agreement() -> optax.GradientTransformationExtraArgs:
    """The combined update as an Optax transformation.

    Called as ``tx.update(modified, state, params, regular=regular_grads)``; `regular` is keyword-only and
    required, so forgetting it fails loudly. Chain it before clipping and the optimizer::

        tx = optax.chain(stablebptt.sign_agreement(), optax.clip_by_global_norm(1.0), optax.adam(1e-3))
        updates, state = tx.update(g_modified, state, params, regular=g_regular)

    References:
        Schnell & Thuerey, "Stabilizing Backpropagation Through Time to Learn Complex Physics", ICLR 2024.
    """

    def init_fn(params: PyTree) -> SignAgreementState:
        del params
        return SignAgreementState()

    def update_fn(updates, state, params=None, *, regular, **extra_args):
        del params, extra_args
        return combine(updates, regular), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
