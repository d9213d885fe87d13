"""The training protocol of method.md §5 on small settings."""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
import pytest

from stablebptt.core.checks import BadInput
from stablebptt.tasks import CartPole
from stablebptt.training import METRICS, TrainSettings, make_optimizer, train


@pytest.fixture(scope="module")
def small_task():
    return CartPole(n_poles=1, horizon=20, duration=0.2)


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
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


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": 17}, r"batch size 17 is larger than the training set \(16 states\)"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; allowed: adam, sgd"),
        ({"clip": "all"}, "unknown clip mode 'all'; allowed: none, value, norm, both"),
        ({"lr": -1.0}, "learning rate must be a positive number, got -1.0"),
        ({"method": "Q"}, "unknown method 'Q'; allowed: R, M, S, N, C"),
    ],
)
def test_bad_arguments(small_task, bad, message):
    kwargs = {"epochs": 1, "n_train": 16, "n_test": 8, **bad}
    method = kwargs.pop("method", "C")
    with pytest.raises(ValueError, match=message):
        train(small_task, method, **kwargs)


def test_clipping_applies_to_the_update():
    params = {"w": jax.numpy.zeros(3)}
    grads = {"w": jax.numpy.array([3.0, -0.5, 4.0])}
    for clip, expected in [("value", [1.0, -0.5, 1.0]), ("norm", [0.6, -0.1, 0.8]), ("none", [3.0, -0.5, 4.0])]:
        tx = make_optimizer("sgd", 1.0, clip, 1.0)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(-updates["w"], expected, rtol=1e-2 if clip == "norm" else 1e-6)


def _keras_adam_reference(grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """Keras' Adam update rule, in float64: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); w -= lr_t m / (sqrt(v) + eps)."""
    m = v = w = np.zeros_like(grads[0], np.float64)
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("form", ["keras", "optax"])
def test_adam_epsilon_forms(form):
    # Tiny gradients, where the two placements of epsilon differ most (the first entries).
    grads = [np.array([1e-6, -3e-7, 0.5, -2.0]) * (1 + 0.3 * t) for t in range(6)]
    tx = make_optimizer("adam", 1e-3, adam_eps=form)
    ref_tx = optax.adam(1e-3, eps=1e-7)
    params = ref_params = {"w": jax.numpy.zeros(4)}
    state, ref_state = tx.init(params), ref_tx.init(params)
    for g in grads:
        u, state = tx.update({"w": jax.numpy.asarray(g, jax.numpy.float32)}, state, params)
        params = optax.apply_updates(params, u)
        r, ref_state = ref_tx.update({"w": jax.numpy.asarray(g, jax.numpy.float32)}, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, r)
    keras = _keras_adam_reference(grads)
    expected = keras if form == "keras" else np.asarray(ref_params["w"])
    np.testing.assert_allclose(params["w"], expected, rtol=2e-5, atol=1e-9)
    # The forms differ where the gradient is tiny (effective epsilon 1e-7 / sqrt(1 - 0.999^t) in Keras).
    assert abs(keras[0] - float(ref_params["w"][0])) > 0.1 * abs(keras[0])


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
    broken = type(
        "Broken",
        (type(task),),
        {
            "sample": lambda self, key, n: {
                "angle": jnp.zeros((n, 2)),
                "speed": jnp.zeros((n + 1, 2)),
                "steps": jnp.zeros((n,), jnp.int32),
            }
        },
    )()
    with pytest.raises(ValueError, match=r"Broken.sample\(key, 16\): every leaf needs the same leading"):
        train(broken, "C", epochs=1, n_train=16, n_test=8)


def test_grad_size_is_the_squared_update_norm_averaged_over_updates(small_task):
    one = train(small_task, "C", epochs=2, n_train=8, n_test=8, batch_size=8)  # one update an epoch
    for row in one.metrics:
        np.testing.assert_allclose(row["grad_size"], row["grad_norm"] ** 2, rtol=1e-5)
    many = train(small_task, "R", epochs=1, n_train=32, n_test=8, batch_size=8)  # mean of squares >= square of mean
    assert many.metrics[0]["grad_size"] >= many.metrics[0]["grad_norm"] ** 2 * (1 - 1e-6)


def test_a_tasks_observe_runs_after_every_optimizer_step_with_the_mini_batch():
    """`Task.observe` changes the parameters outside the gradient after each step (here: counts the states it
    saw and keeps the last mini-batch's mean speed); parameters it does not touch train as usual."""
    import equinox as eqx
    import jax.numpy as jnp
    from systems import dict_task

    base = type(dict_task())

    class Observed(base):
        def init_controller(self, key):
            return {"net": super().init_controller(key), "seen": jnp.zeros(()), "last": jnp.zeros(())}

        def controller(self, params, x):
            return super().controller(params["net"], x)

        def observe(self, params, x0):
            return {**params, "seen": params["seen"] + x0["angle"].shape[0], "last": jnp.mean(x0["angle"])}

    task = Observed(horizon=5)
    result = train(task, "C", epochs=3, n_train=16, n_test=8, batch_size=4, seed=0)
    assert result.status == "complete"
    assert float(result.params["seen"]) == 3 * 16  # epochs x training states: after every one of 12 updates
    data = task.sample(jax.random.split(jax.random.split(jax.random.PRNGKey(0))[0])[0], 16)
    np.testing.assert_allclose(result.params["last"], jnp.mean(data["angle"][12:16]), rtol=1e-6)
    start = task.init_controller(jax.random.split(jax.random.PRNGKey(0))[1])  # the seed's initialisation
    assert eqx.tree_equal(jax.tree.structure(start), jax.tree.structure(result.params))
    assert not eqx.tree_equal(start["net"], result.params["net"])  # the network trained


def test_train_needs_a_task_instance():
    from stablebptt.core import BadInput

    with pytest.raises(BadInput, match=r"got the name 'cartpole'; build it first, e\.g\. stablebptt\.tasks\.make_task"):
        train("cartpole", epochs=1)
    with pytest.raises(BadInput, match="got the class CartPole; call it: CartPole()"):
        train(CartPole, epochs=1)


def test_settings_store_strategy_objects_as_their_spellings():
    from stablebptt.core import Joint, Segments

    settings = TrainSettings(backward=Joint(), remat=Segments(3))
    assert settings == TrainSettings(backward="joint", remat="3")
    assert settings.backward == "joint" and settings.remat == 3


@pytest.mark.parametrize(
    ("method", "truncation", "message"),
    [
        ("C", None, r"^method C needs backward='joint' or 'two_pass' \(it combines 2 modes\)$"),
        ("R", 2, r"^truncation needs backward='joint' or 'two_pass'$"),
    ],
)
def test_settings_refuse_a_backward_that_cannot_work(method, truncation, message):
    with pytest.raises(BadInput, match=message):
        TrainSettings(method=method, backward="autodiff", truncation=truncation)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"protocol": "stream", "window": 5},
        {"protocol": "stream", "window": 5, "key_scheme": "apg"},
    ],
    ids=["dataset", "stream", "stream-apg"],
)
def test_one_seed_derivation_gives_the_runs_epoch_0_controller(settings):
    """`initial_params` (what `diagnose RUN_DIR` labels "initial" and `animate` loads into) is the controller a
    run starts from, under every key scheme; the data's key is the same one under every protocol."""
    from stablebptt.training.train import Trainer, initial_params, seed_keys

    task = CartPole(n_poles=1, horizon=10)
    config = TrainSettings(seed=7, n_train=16, n_test=16, **settings)
    trainer = Trainer(task, config)
    drawn = initial_params(task, config)
    for a, b in zip(jax.tree.leaves(drawn), jax.tree.leaves(trainer.params(trainer.initial)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.array_equal(seed_keys(config).data, seed_keys(TrainSettings(seed=7)).data)
    other = initial_params(task, config.replace(seed=8))
    assert not np.array_equal(jax.tree.leaves(other)[0], jax.tree.leaves(drawn)[0])  # the seed matters


def test_the_apg_scheme_draws_another_controller_than_the_dataset_scheme():
    from stablebptt.training.train import initial_params

    task = CartPole(n_poles=1, horizon=10)
    base = TrainSettings(seed=7, protocol="stream", window=5, n_train=16, n_test=16)
    ours, apg = initial_params(task, base), initial_params(task, base.replace(key_scheme="apg"))
    assert not np.array_equal(jax.tree.leaves(ours)[0], jax.tree.leaves(apg)[0])


@pytest.mark.parametrize("protocol", ["dataset", "stream"])
def test_run_data_is_the_data_the_trainer_draws(protocol):
    """`run_data` (what another learner is scored on, e.g. Brax's PPO in SHAC's study) draws the states `Trainer`
    draws with the controller in one program: bit for bit, and another seed draws others."""
    from stablebptt.tasks import make_task
    from stablebptt.training import Trainer
    from stablebptt.training.settings import from_mapping
    from stablebptt.training.train import run_data

    task = make_task("cartpole", horizon=10)
    settings = from_mapping({"seed": 3, "protocol": protocol, "n_train": 16, "n_test": 8, "batch_size": 8})
    ours, trainers = run_data(task, settings), Trainer(task, settings).data
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(trainers), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = run_data(task, settings.replace(seed=4))
    assert not np.array_equal(np.asarray(other.test), np.asarray(ours.test))
