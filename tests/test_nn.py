from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stablebptt.nn import CNN, MLP, Normalizer


@pytest.fixture(scope="module")
def cnn():
    """The published CNN (float32), built once for the module in one compiled program."""
    return eqx.filter_jit(lambda k: CNN(32, key=k))(jax.random.PRNGKey(0))


def _count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array)))


def test_cnn_architecture_of_method_md(cnn):
    """(32, 2) -> conv2d 60 filters (3, 2) stride 2 -> (15, 60) -> conv1d 60 filters 3 stride 2 -> (7, 60)
    -> dense 420 -> 1: 3*2*60 + 60 + 3*60*60 + 60 + 420 + 1 = 11,701 parameters."""
    assert cnn.conv2d.weight.shape == (60, 1, 3, 2)
    assert cnn.conv1d.weight.shape == (60, 60, 3)
    assert cnn.dense.weight.shape == (1, 7 * 60)
    assert _count(cnn) == 420 + 10860 + 421 == 11701
    assert eqx.filter_eval_shape(cnn, jnp.ones((32, 2))).shape == (1,)
    assert eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(cnn, jnp.ones((5, 32, 2))).shape == (5, 1)


def test_cnn_equals_the_equinox_convolutions(x64, key):
    cnn = eqx.filter_jit(lambda k: CNN(32, key=k))(key)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 2))

    @eqx.filter_jit
    def both(m):
        def loss(m, reference):
            out = jax.vmap(m.reference if reference else m)(x)
            return jnp.sum(out**2), out

        (_, fast), g_fast = jax.value_and_grad(loss, has_aux=True)(m, False)
        (_, ref), g_ref = jax.value_and_grad(loss, has_aux=True)(m, True)
        return fast, ref, g_fast, g_ref

    fast, reference, g_fast, g_ref = both(cnn)
    np.testing.assert_allclose(fast, reference, rtol=1e-12, atol=1e-13)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_cnn_other_sizes(key):
    cnn = CNN(9, out_size=2, filters=4, key=key)
    assert eqx.filter_eval_shape(cnn, jnp.zeros((9, 2))).shape == (2,)
    with pytest.raises(ValueError, match="the CNN needs at least 7 points, got 6"):
        CNN(6, key=key)


def test_glorot_conv_initialisation(cnn):
    conv = cnn.conv1d  # built by glorot_conv(1, 60, 60, (3,), 2)
    limit = math.sqrt(6 / (3 * 60 + 3 * 60))
    w = np.asarray(conv.weight)
    assert np.max(np.abs(w)) <= limit
    assert np.std(w) == pytest.approx(limit / math.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(conv.bias, 0.0)


def test_cnn_biases_start_at_zero(cnn):
    for layer in (cnn.conv2d, cnn.conv1d, cnn.dense):
        np.testing.assert_array_equal(layer.bias, 0.0)
    assert np.any(np.asarray(cnn.dense.weight) != 0)  # no zero-final-kernel quirk for the CNN


def test_mlp_shapes_and_zero_final_kernel(key):
    mlp = MLP(24, 4, (16, 8), key=key)
    assert [layer.weight.shape for layer in mlp.layers] == [(16, 24), (8, 16), (4, 8)]
    np.testing.assert_array_equal(mlp(jnp.ones((6, 2, 2))), 0.0)
    assert np.any(np.asarray(MLP(24, 4, (16, 8), key=key, zero_final_kernel=False)(jnp.ones(24))) != 0)


@pytest.mark.parametrize("x64", [False, True])
def test_normalizer_equals_braxs_running_statistics(x64):
    """Our running statistics against the library's (Brax's `running_statistics`, acme's Welford merge): the same
    mean, standard deviation and normalised batch after each of several unequal batches, one nearly constant
    feature (the standard deviation's floor) included."""
    stats = pytest.importorskip("brax.training.acme.running_statistics", reason="needs pip install 'stablebptt[brax]'")
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        keys = jax.random.split(jax.random.PRNGKey(3), 4)
        batches = [
            (jax.random.normal(k, (n, 4), dtype) * jnp.asarray([1.0, 5.0, 0.01, 0.0], dtype) + 3.0)
            for k, n in zip(keys, (1, 7, 32, 200), strict=True)
        ]
        ours, theirs = Normalizer.empty(4), stats.init_state(jnp.zeros((4,), dtype))
        for batch in batches:
            ours, theirs = ours.update(batch), stats.update(theirs, batch)
            tight = {"rtol": 1e-12, "atol": 1e-12} if x64 else {"rtol": 2e-5, "atol": 1e-6}
            np.testing.assert_allclose(ours.mean, theirs.mean, **tight)
            std = np.clip(np.sqrt(np.asarray(ours.var)), 1e-6, 1e6)
            np.testing.assert_allclose(std, theirs.std, **tight)
            np.testing.assert_allclose(
                jax.vmap(ours)(batch), stats.normalize(batch, theirs), rtol=1e-4 if not x64 else 1e-10, atol=1e-4
            )
        assert float(ours.count) == sum(b.shape[0] for b in batches)
