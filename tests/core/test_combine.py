from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import stablebptt as sb


def test_sign_agreement_rule():
    m = jnp.array([1.0, -2.0, 3.0, 0.0, 0.0, 2.0, -1.0])
    r = jnp.array([5.0, -1.0, -3.0, 0.0, 1.0, 0.0, -0.5])
    np.testing.assert_array_equal(sb.combine(m, r), [1.0, -2.0, 0.0, 0.0, 0.0, 0.0, -1.0])


def test_pytrees_with_none_leaves():
    m = {"a": jnp.array([1.0, -1.0]), "b": None, "c": (jnp.array(2.0),)}
    r = {"a": jnp.array([1.0, 1.0]), "b": None, "c": (jnp.array(-2.0),)}
    out = sb.combine(m, r)
    assert out["b"] is None
    np.testing.assert_array_equal(out["a"], [1.0, 0.0])
    np.testing.assert_array_equal(out["c"][0], 0.0)


def test_mismatched_trees_fail_in_one_line_naming_the_difference():
    """Other keys, another number of leaves, or leaves of other shapes (which `jnp.where` would broadcast
    silently) are refused in one line by `combine` and by its statistics."""
    from stablebptt.core.combination import combine_stats

    cases = [
        ({"a": jnp.ones(2)}, {"b": jnp.ones(2)}, r"has the tree structure PyTreeDef\(\{'a': \*\}\), the regular"),
        ([jnp.ones(2), jnp.ones(2)], [jnp.ones(2)], r"has the tree structure PyTreeDef\(\[\*, \*\]\)"),
        (
            {"w": jnp.ones((2, 3))},
            {"w": jnp.ones(3)},
            r"at \['w'\] is shape \[2, 3\], the regular gradient is shape \[3\]",
        ),
    ]
    for modified, regular, message in cases:
        for f in (sb.combine, combine_stats):
            with pytest.raises(sb.BadInput, match="^the modified gradient " + message) as caught:
                f(modified, regular)
            assert len(str(caught.value).splitlines()) == 1


def test_optax_transform_in_a_chain():
    params = {"w": jnp.array([1.0, 1.0, 1.0])}
    m = {"w": jnp.array([0.5, -0.5, 2.0])}
    r = {"w": jnp.array([1.0, 1.0, 4.0])}
    tx = optax.chain(sb.sign_agreement(), optax.clip_by_global_norm(1.0), optax.sgd(1.0))
    state = tx.init(params)
    updates, _ = tx.update(m, state, params, regular=r)
    kept = np.array([0.5, 0.0, 2.0])
    np.testing.assert_allclose(updates["w"], -kept / np.linalg.norm(kept), rtol=1e-6)


def test_optax_transform_requires_regular():
    tx = sb.sign_agreement()
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'regular'"):
        tx.update({"w": jnp.ones(1)}, tx.init(None), None)
