"""Optimizers, clipping and learning-rate schedules (training/optim.py and `TrainSettings.transform`), each
against an independent computation: closed forms of the schedules, Optax's own Adam, clipping by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stablebptt.training import TrainSettings
from stablebptt.training.optim import CLIP_MODES, clipping, learning_rate


def _rates(settings: TrainSettings, n: int) -> np.ndarray:
    """The learning rate of updates 0..n-1, read off SGD updates of a unit gradient."""
    tx = settings.replace(optimizer="sgd").transform()
    params = {"w": jnp.zeros(())}
    state, rates = tx.init(params), []
    for _ in range(n):
        update, state = tx.update({"w": jnp.ones(())}, state, params)
        rates.append(-float(update["w"]))
    return np.asarray(rates)


def test_constant_is_the_plain_number():
    assert learning_rate(0.01) == 0.01
    np.testing.assert_allclose(_rates(TrainSettings(lr=0.01), 5), 0.01, rtol=1e-6)


def test_exponential_decays_by_the_rate_per_transition():
    settings = TrainSettings(lr=0.1, schedule="exponential", decay_rate=0.5, transition_steps=2)
    np.testing.assert_allclose(_rates(settings, 6), 0.1 * 0.5 ** (np.arange(6) / 2), rtol=1e-6)


def test_cosine_reaches_its_floor_at_the_end_of_the_run():
    settings = TrainSettings(lr=0.1, schedule="cosine", final_lr_fraction=0.1, epochs=2, n_train=8, batch_size=2)
    assert settings.updates == 8
    k = np.arange(8)
    expected = 0.1 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.minimum(k, 8) / 8)))
    np.testing.assert_allclose(_rates(settings, 8), expected, rtol=1e-5)


def test_warmup_rises_linearly_then_the_schedule_starts():
    settings = TrainSettings(lr=0.1, schedule="exponential", decay_rate=0.5, warmup_steps=4)
    rates = _rates(settings, 7)
    np.testing.assert_allclose(rates[:4], 0.1 * np.arange(4) / 4, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rates[4:], 0.1 * 0.5 ** np.arange(3), rtol=1e-6)


@pytest.mark.parametrize("form", ["keras", "optax"])
def test_adam_betas_and_epsilon(form):
    settings = TrainSettings(lr=0.01, adam_b1=0.7, adam_b2=0.95, adam_epsilon=1e-3, adam_eps=form)
    grads = [np.array([0.3, -1e-4, 2.0]) * (1 + 0.5 * t) for t in range(5)]
    tx, params = settings.transform(), {"w": jnp.zeros(3)}
    state = tx.init(params)
    m = v = w = np.zeros(3)
    for t, g in enumerate(grads, 1):
        u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, u)
        m, v = 0.7 * m + 0.3 * g, 0.95 * v + 0.05 * g * g
        eps = 1e-3 / np.sqrt(1 - 0.95**t) if form == "keras" else 1e-3  # Keras adds it to the raw sqrt(v)
        w = w - 0.01 * (m / (1 - 0.7**t)) / (np.sqrt(v / (1 - 0.95**t)) + eps)
    np.testing.assert_allclose(params["w"], w, rtol=2e-5, atol=1e-8)


def test_clipping_both_is_norm_then_value():
    updates = {"a": jnp.array([3.0, -4.0, 0.5]), "b": jnp.array([12.0])}
    norm = np.sqrt(9 + 16 + 0.25 + 144)
    scaled = {k: np.asarray(v) * 2.0 / norm for k, v in updates.items()}
    expected = {k: np.clip(v, -0.3, 0.3) for k, v in scaled.items()}
    for mode in ("both", jnp.asarray(CLIP_MODES.index("both"))):  # by name, and as a group's traced index
        tx = clipping(mode, 0.3, 2.0)
        got, state = tx.update(updates, tx.init(updates))
        assert state == optax.EmptyState()
        for k in updates:
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-6)


@pytest.mark.parametrize("mode", CLIP_MODES)
def test_a_traced_clip_index_selects_the_named_mode(mode):
    updates = {"a": jnp.array([3.0, -4.0, 0.5])}
    named = clipping(mode, 1.0, 2.0).update(updates, optax.EmptyState())[0]
    traced = jax.jit(lambda i: clipping(i, 1.0, 2.0).update(updates, optax.EmptyState())[0])(CLIP_MODES.index(mode))
    np.testing.assert_array_equal(named["a"], traced["a"])
