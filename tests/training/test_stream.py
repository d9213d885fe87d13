"""The stream protocol (training/stream.py): windows that carry on from one update to the next, episodes that
restart from fresh states, against a hand-written loop of the same protocol (float64); its state in checkpoints
(a resumed run continues bit for bit); and its settings."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import assert_trees_close, naive_loss

from stablebptt.core.checks import BadInput
from stablebptt.runs import RunConfig, RunFolder
from stablebptt.tasks import CartPole, Task
from stablebptt.training import Trainer, TrainSettings
from stablebptt.training.stream import StreamState

WINDOW, EPISODE, BATCH = 3, 5, 4


def _reference(task, settings, state: StreamState, static, updates: int, method: str) -> tuple[StreamState, int]:
    """The protocol written out: for each update a `lax.scan` unroll of WINDOW steps (the method's
    stop_gradients), an SGD step, then environments past EPISODE steps replaced by fresh samples."""
    params, env, steps, key = state.params, state.env, state.steps, state.key
    restarts = 0
    for _ in range(updates):

        def loss(d, env=env):
            return naive_loss(task.loss, task.step, task.controller, eqx.combine(d, static), env, method, WINDOW)

        grads = jax.grad(loss)(params)
        full = eqx.combine(params, static)
        last = env
        for _ in range(WINDOW):  # the window's last state, forward only
            last = task.step(last, task.controller(full, last))
        params = jax.tree.map(lambda p, g: p - settings.lr * g, params, grads)
        key, update_key = jax.random.split(key)
        fresh_key = jax.random.fold_in(update_key, 1)
        steps = steps + WINDOW
        done = steps >= EPISODE
        restarts += int(jnp.sum(done))
        fresh = task.sample(fresh_key, BATCH)
        env = jnp.where(done.reshape(-1, *[1] * (fresh.ndim - 1)), fresh, last)
        steps = jnp.where(done, 0, steps)
    return StreamState(params, state.opt_state, env, steps, key), restarts


@pytest.mark.parametrize("method", ["R", pytest.param("M", marks=pytest.mark.slow)])
def test_stream_epochs_equal_the_protocol_written_out(x64, method):
    task = CartPole(n_poles=1, horizon=10, hidden=(8,), zero_final_kernel=False)
    settings = TrainSettings(
        method=method,
        protocol="stream",
        window=WINDOW,
        episode_length=EPISODE,
        batch_size=BATCH,
        n_train=8,  # 2 updates an epoch
        n_test=4,
        optimizer="sgd",
        lr=0.05,
        epochs=3,
    )
    trainer = Trainer(task, settings)
    start = trainer.initial
    assert isinstance(start, StreamState) and start.steps.shape == (BATCH,)
    assert np.all((start.steps >= 0) & (start.steps < EPISODE))
    outcome = trainer.run(start, epochs=3)
    expected, restarts = _reference(task, settings, start, trainer.static, 6, method)
    assert_trees_close(outcome.state.params, expected.params, rtol=1e-9, atol=1e-12)
    assert_trees_close(outcome.state.env, expected.env, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(outcome.state.steps, expected.steps)
    np.testing.assert_array_equal(jax.random.key_data(outcome.state.key), jax.random.key_data(expected.key))
    assert restarts >= BATCH  # 18 steps in episodes of 5: every environment restarted at least once


def test_a_stream_run_resumed_from_its_checkpoint_continues_bit_for_bit(tmp_path):
    def config(epochs):
        return RunConfig.create(
            "cartpole",
            {"n_poles": 1, "horizon": 10},
            method="C",
            protocol="stream",
            window=4,
            episode_length=7,
            n_train=16,
            n_test=8,
            epochs=epochs,
        )

    straight = RunFolder(tmp_path / "straight").start(config(4)).run()
    RunFolder(tmp_path / "resumed").start(config(2)).run()
    resumed = RunFolder(tmp_path / "resumed").resume(epochs=4).run()
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]  # noqa: E731
    assert drop(resumed.metrics) == drop(straight.metrics) and len(straight.metrics) == 4
    assert (tmp_path / "resumed" / "params.eqx").read_bytes() == (tmp_path / "straight" / "params.eqx").read_bytes()


def test_the_protocols_are_different_runs():
    dataset = RunConfig.create("cartpole", {"n_poles": 1}, method="C")
    stream = RunConfig.create("cartpole", {"n_poles": 1}, method="C", protocol="stream")
    assert dataset.hash() != stream.hash() and stream.hash() == stream.replace(epochs=3).hash()
    assert "protocol" not in dataset.to_json()["train"]  # configs of the dataset protocol read as before


def test_runs_group_by_protocol():
    from stablebptt.runs import plan_groups

    configs = [
        RunConfig.create("cartpole", {"n_poles": 1}, method=m, seed=s, protocol=p)
        for p in ("dataset", "stream")
        for m, s in (("C", 1), ("R", 2))
    ]
    assert plan_groups(configs) == [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window": 8}, "^window applies to the stream protocol only; give protocol='stream' or leave it out$"),
        ({"episode_length": 8}, "^episode_length applies to the stream protocol only"),
        ({"protocol": "online"}, "^unknown protocol 'online'; allowed: dataset, stream, shac$"),
        ({"protocol": "stream", "window": 0}, "^window must be a positive integer, got 0$"),
        ({"key_scheme": "apg"}, "^key_scheme='apg' draws the keys of the stream protocol; give protocol='stream'"),
        ({"protocol": "stream", "key_scheme": "jax"}, "^unknown key scheme 'jax'; allowed: stablebptt, apg$"),
    ],
)
def test_bad_stream_settings(settings, message):
    with pytest.raises(BadInput, match=message):
        TrainSettings(**settings)


def test_a_task_that_samples_its_actions_needs_the_stream_protocol():
    class Noisy(CartPole):
        @property
        def explores(self) -> bool:
            return True

    task = Noisy(n_poles=1, horizon=10)
    message = r"^Noisy samples its actions in training, which only the stream protocol does .*protocol='stream'"
    with pytest.raises(BadInput, match=message):
        Trainer(task, TrainSettings(n_train=8, n_test=8))
    assert isinstance(Trainer(task, TrainSettings(n_train=8, n_test=8, protocol="stream")).initial, StreamState)


class Clocked(Task):
    """A task that resets its own episodes (`Task.resets`): a damped point driven by a linear controller, with
    a clock ``t`` in the state; at ``t == EPISODE`` the step returns the episode's first state ``x0``."""

    name: ClassVar[str] = "clocked"
    horizon: int = eqx.field(static=True, default=6)

    def step(self, x, c):
        t = x["t"] + 1
        moved = x["x"] + 0.1 * jnp.stack([x["x"][:, 1], c - 0.5 * x["x"][:, 1]], axis=1)
        done = (t >= EPISODE)[:, None]
        return {"x": jnp.where(done, x["x0"], moved), "x0": x["x0"], "t": jnp.where(t >= EPISODE, 0, t)}

    def loss(self, states, controls):
        return jnp.mean(jnp.sum(states["x"][1:] ** 2, axis=(0, 2)))

    def sample(self, key, n):
        x = jax.random.normal(key, (n, 2))
        return {"x": x, "x0": x, "t": jnp.zeros((n,), jnp.int32)}

    def init_controller(self, key):
        return jax.random.normal(key, (2,)) * 0.1

    def controller(self, params, x):
        return x["x"] @ params

    @property
    def resets(self):
        return True

    def start_stream(self, x, key):
        return {**x, "t": jax.random.randint(key, x["t"].shape, 0, EPISODE)}


def test_a_task_that_resets_itself_keeps_its_clock_and_is_never_reset_by_the_protocol():
    """The protocol neither resets nor samples fresh states for a task that `resets`: the carried environments
    keep their first states ``x0`` and their clocks advance by the task's own rule; the clocks start where
    `start_stream` put them; the protocol's own `episode_length` is refused for such a task."""
    task = Clocked()
    settings = TrainSettings(method="C", protocol="stream", window=WINDOW, batch_size=BATCH, n_train=8, n_test=4)
    trainer = Trainer(task, settings)
    start = trainer.initial
    clocks = np.asarray(start.env["t"])
    assert len(set(clocks.tolist())) > 1 and np.all(start.steps == 0)
    outcome = trainer.run(start, epochs=3)  # 6 updates of WINDOW steps
    np.testing.assert_array_equal(outcome.state.env["x0"], start.env["x0"])
    np.testing.assert_array_equal(outcome.state.env["t"], (clocks + 6 * WINDOW) % EPISODE)
    assert np.all(outcome.state.steps == 0)
    with pytest.raises(BadInput, match="^Clocked resets its own episodes .*leave episode_length=5 out"):
        Trainer(task, TrainSettings(protocol="stream", episode_length=EPISODE, n_train=8, n_test=4))


def test_a_window_longer_than_the_episode_is_refused_in_one_line():
    """The episode's length would do nothing (episodes end at window ends): refused when the run is made."""
    with pytest.raises(BadInput, match=r"^window=30 is longer than the episode \(20 steps: the episode length\)"):
        RunConfig.create("cartpole", {"n_poles": 1}, protocol="stream", window=30, episode_length=20)
    with pytest.raises(BadInput, match=r"^window=120 is longer than the episode \(100 steps: the task horizon\)"):
        Trainer(CartPole(n_poles=1), TrainSettings(protocol="stream", window=120))
