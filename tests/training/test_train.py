"""The training protocol of method.md §5 on small settings."""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
import pytest

from stablebptt.tasks import CartPole
from stablebptt.training import METRICS, make_optimizer, train


@pytest.fixture(scope="module")
def small_task():
    return CartPole(n_poles=1, horizon=20, duration=0.2)


def test_c_lowers_the_loss_on_one_pole():
    result = train(CartPole(n_poles=1), "C", epochs=20, n_test=64)
    test = [row["test_loss"] for row in result.metrics]
    assert len(result.metrics) == 20
    assert test[-1] < 0.5 * test[0]
    assert all(math.isfinite(row[k]) for row in result.metrics for k in METRICS)


@pytest.mark.parametrize("method", ["R", "M", "S"])
def test_metrics_of_single_modes(small_task, method):
    result = train(small_task, method, epochs=2, n_train=16, n_test=8, batch_size=8)
    assert [row["epoch"] for row in result.metrics] == [1, 2]
    for row in result.metrics:
        assert set(METRICS) <= set(row)
        assert math.isnan(row["cosine"]) and math.isnan(row["kept_fraction"])
        assert row["grad_norm"] >= 0 and row["epoch_time"] > 0


def test_same_seed_same_run_and_methods_share_initialisation(small_task):
    a = train(small_task, "C", epochs=2, n_train=16, n_test=8)
    b = train(small_task, "C", epochs=2, n_train=16, n_test=8)
    assert [r["test_loss"] for r in a.metrics] == [r["test_loss"] for r in b.metrics]
    r = train(small_task, "R", epochs=1, n_train=16, n_test=8)
    # With the zero-final-kernel quirk, R and C make the same first update (g_M == g_R at a zero output layer).
    assert r.metrics[0]["loss"] == a.metrics[0]["loss"]


def test_progress_callback_and_starting_params(small_task):
    seen = []
    first = train(small_task, "C", epochs=2, n_train=16, n_test=8, progress_fn=lambda e, m: seen.append(e))
    assert seen == [1, 2]
    again = train(small_task, "C", epochs=1, n_train=16, n_test=8, params=first.params)
    assert again.metrics[0]["loss"] == pytest.approx(first.metrics[-1]["train_loss"], rel=0.2)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 17}, {"optimizer": "lbfgs"}, {"clip": "both"},
                                 {"lr": -1.0}, {"method": "Q"}])
def test_bad_arguments(small_task, bad):
    kwargs = {"epochs": 1, "n_train": 16, "n_test": 8, **bad}
    method = kwargs.pop("method", "C")
    with pytest.raises(ValueError):
        train(small_task, method, **kwargs)


def test_clipping_applies_to_the_update():
    params = {"w": jax.numpy.zeros(3)}
    grads = {"w": jax.numpy.array([3.0, -0.5, 4.0])}
    for clip, expected in [("value", [1.0, -0.5, 1.0]), ("norm", [0.6, -0.1, 0.8]), ("none", [3.0, -0.5, 4.0])]:
        tx = make_optimizer("sgd", 1.0, clip, 1.0)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(-updates["w"], expected, rtol=1e-2 if clip == "norm" else 1e-6)


def test_adam_uses_keras_epsilon():
    params = {"w": jax.numpy.zeros(1)}
    grads = {"w": jax.numpy.array([1e-6])}
    ours, _ = make_optimizer("adam", 1.0).update(grads, make_optimizer("adam", 1.0).init(params), params)
    ref_tx = optax.adam(1.0, eps=1e-7)
    ref, _ = ref_tx.update(grads, ref_tx.init(params), params)
    np.testing.assert_allclose(ours["w"], ref["w"], rtol=1e-6)
    default_tx = optax.adam(1.0)
    default, _ = default_tx.update(grads, default_tx.init(params), params)
    assert abs(float(ours["w"][0]) - float(default["w"][0])) > 1e-3


def test_a_task_with_pytree_states_trains():
    from systems import dict_task

    task = dict_task()
    result = train(task, "C", epochs=6, n_train=32, n_test=16, batch_size=8, lr=1e-2)
    test = [row["test_loss"] for row in result.metrics]
    assert all(math.isfinite(row[k]) for row in result.metrics for k in METRICS)
    assert test[-1] < 0.5 * test[0]
    assert 0 < result.metrics[-1]["kept_fraction"] <= 1


def test_a_sample_whose_leaves_disagree_on_the_batch_is_one_clear_error():
    import jax.numpy as jnp
    from systems import dict_task

    task = dict_task()
    broken = type("Broken", (type(task),), {"sample": lambda self, key, n: {
        "angle": jnp.zeros((n, 2)), "speed": jnp.zeros((n + 1, 2)), "steps": jnp.zeros((n,), jnp.int32)}})()
    with pytest.raises(ValueError, match=r"Broken.sample\(key, 16\): every leaf needs the same leading"):
        train(broken, "C", epochs=1, n_train=16, n_test=8)
