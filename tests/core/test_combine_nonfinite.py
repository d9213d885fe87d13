"""The combined update where g_R is not finite (method.md §1, the published behaviour)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from stablebptt.core import combine, combine_stats


def test_nonfinite_regular_entries_count_as_disagreement():
    m = {"a": jnp.array([1.0, -2.0, 3.0, 4.0, -5.0]), "b": jnp.array([0.5])}
    r = {"a": jnp.array([2.0, jnp.nan, jnp.inf, -1.0, -jnp.inf]), "b": jnp.array([1.0])}
    u = combine(m, r)
    np.testing.assert_array_equal(u["a"], [1.0, 0.0, 0.0, 0.0, 0.0])  # inf agreeing in sign is dropped too
    np.testing.assert_array_equal(u["b"], [0.5])
    stats = combine_stats(m, r)
    assert int(stats["regular_nonfinite"]) == 3
    assert bool(stats["modified_finite"])
    np.testing.assert_allclose(float(stats["kept_fraction"]), 2 / 6)
    # The cosine is taken over the entries where g_R is finite.
    mf, rf = np.array([1.0, -2.0, 3.0, 4.0, -5.0, 0.5]), np.array([2.0, 0, 0, -1.0, 0, 1.0])
    np.testing.assert_allclose(float(stats["cosine"]), mf @ rf / np.linalg.norm(mf) / np.linalg.norm(rf), rtol=1e-6)


def test_nonfinite_modified_entries_are_reported():
    m = {"a": jnp.array([jnp.nan, 1.0])}
    r = {"a": jnp.array([1.0, 1.0])}
    assert not bool(combine_stats(m, r)["modified_finite"])
    assert int(combine_stats(m, r)["regular_nonfinite"]) == 0
