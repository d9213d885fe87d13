"""SHAC's pieces (training/shac.py) against DiffRL's ``algorithms/shac.py`` written out as plain Python loops over
steps and environments, in float64, with episode ends inside the window: the actor loss and its gradient, the
TD-λ targets, the critic loss and the target critic's Polyak update."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from systems import Resetting, naive_loss

import stablebptt as sb
from stablebptt.core import RULES
from stablebptt.core.checks import BadInput
from stablebptt.tasks import CartPole
from stablebptt.training import TrainSettings, train
from stablebptt.training.shac import (
    actor_loss,
    critic_features,
    critic_loss,
    critic_net,
    polyak,
    td_lambda_targets,
    window_loss,
)

DIFFRL_CRITIC = ["--critic-normalize", "--critic-network", "diffrl", "--critic-order", "steps"]  # its options


def diffrl_actor_loss(rew, next_values, done, gamma):
    """DiffRL's compute_actor_loss, its accumulation loop transcribed (no reward scaling, no normalisers)."""
    steps, envs = rew.shape
    rew_acc = np.zeros((steps + 1, envs))
    g = np.ones(envs)
    loss = 0.0
    for i in range(steps):
        ids = [e for e in range(envs) if done[i, e]]
        rew_acc[i + 1] = rew_acc[i] + g * rew[i]
        if i < steps - 1:
            loss += sum(-rew_acc[i + 1, e] - gamma * g[e] * next_values[i, e] for e in ids)
        else:
            loss += sum(-rew_acc[i + 1, e] - gamma * g[e] * next_values[i, e] for e in range(envs))
        g = g * gamma
        for e in ids:
            g[e] = 1.0
            rew_acc[i + 1, e] = 0.0
    return loss / (steps * envs)


def diffrl_targets(rew, next_values, done, gamma, lam):
    """DiffRL's compute_target_values (td-lambda), with done_mask's last row set to 1 as its rollout does."""
    steps, envs = rew.shape
    mask = done.astype(float).copy()
    mask[-1] = 1.0
    a, b, weight = np.zeros(envs), np.zeros(envs), np.ones(envs)
    out = np.zeros((steps, envs))
    for i in reversed(range(steps)):
        weight = weight * lam * (1.0 - mask[i]) + mask[i]
        a = (1.0 - mask[i]) * (lam * gamma * a + gamma * next_values[i] + (1.0 - weight) / (1.0 - lam) * rew[i])
        b = gamma * (next_values[i] * mask[i] + b * (1.0 - mask[i])) + rew[i]
        out[i] = (1.0 - lam) * a + weight * b
    return out


@pytest.fixture
def window(x64):
    rng = np.random.default_rng(0)
    steps, envs = 7, 5
    rew = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    done = np.zeros((steps, envs), bool)
    done[2, 0] = done[4, 0] = done[5, 3] = done[0, 4] = True  # episode ends inside the window, two in env 0
    return rew, values, done


def test_the_actor_loss_is_diffrls(window):
    rew, values, done = window
    for gamma in (0.99, 0.5, 1.0):
        ours = actor_loss(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma)
        np.testing.assert_allclose(float(ours), diffrl_actor_loss(rew, values, done, gamma), rtol=1e-12)


def test_the_actor_loss_gradient_weighs_each_reward_and_value_by_its_discount(window):
    """d loss / d r_i = -gamma^j / (K B) with j the steps since the episode's start; d loss / d v_i =
    -gamma^(j+1) / (K B) where an episode or the window ends at i, else 0: the terminal value is differentiated like
    any reward."""
    rew, values, done = window
    gamma = 0.9
    g_rew, g_val = jax.grad(actor_loss, argnums=(0, 1))(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma)
    steps, envs = rew.shape
    want_rew, want_val = np.zeros_like(rew), np.zeros_like(values)
    for e in range(envs):
        j = 0
        for i in range(steps):
            want_rew[i, e] = -(gamma**j) / (steps * envs)
            if done[i, e] or i == steps - 1:
                want_val[i, e] = -(gamma ** (j + 1)) / (steps * envs)
                j = 0
            else:
                j += 1
    np.testing.assert_allclose(np.asarray(g_rew), want_rew, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g_val), want_val, rtol=1e-12)


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.5), (1.0, 0.0)])
def test_td_lambda_targets_are_diffrls_recursion(window, gamma, lam):
    rew, values, done = window
    ours = td_lambda_targets(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma, lam)
    np.testing.assert_allclose(np.asarray(ours), diffrl_targets(rew, values, done, gamma, lam), rtol=1e-12)


def test_td_lambda_targets_at_the_extremes(window):
    """λ = 0: one-step targets r + gamma v (DiffRL's ``one-step`` critic); λ = 1: the discounted rewards to the next
    end, bootstrapped there."""
    rew, values, done = window
    gamma = 0.9
    args = (jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma)
    np.testing.assert_allclose(np.asarray(td_lambda_targets(*args, 0.0)), rew + gamma * values, rtol=1e-12)
    returns = np.zeros_like(rew)
    steps, envs = rew.shape
    for e in range(envs):
        for i in range(steps):
            total, k = 0.0, i
            while True:
                total += gamma ** (k - i) * rew[k, e]
                if done[k, e] or k == steps - 1:
                    total += gamma ** (k - i + 1) * values[k, e]
                    break
                k += 1
            returns[i, e] = total
    np.testing.assert_allclose(np.asarray(td_lambda_targets(*args, 1.0)), returns, rtol=1e-12)


def test_no_gradient_flows_into_the_targets(window):
    rew, values, done = window
    grad = jax.grad(lambda r: jnp.sum(td_lambda_targets(r, jnp.asarray(values), jnp.asarray(done), 0.9, 0.95)))
    assert not np.any(np.asarray(grad(jnp.asarray(rew))))


def test_one_critic_update_and_the_target_critic(x64):
    """One squared-error step of a linear critic against its closed-form gradient; Polyak averaging with alpha."""
    rng = np.random.default_rng(1)
    obs, targets, w = rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=3)
    loss, grad = jax.value_and_grad(lambda w: critic_loss(jnp.asarray(obs) @ w, jnp.asarray(targets)))(jnp.asarray(w))
    residual = obs @ w - targets
    assert float(loss) == pytest.approx(np.mean(residual**2), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), 2 * obs.T @ residual / 6, rtol=1e-12)
    target, critic = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    np.testing.assert_allclose(np.asarray(polyak(target, critic, 0.2)["w"]), 0.2 * np.ones(3), rtol=1e-12)


# ----------------------------------------------------------------------------------------------- the protocol


def naive_shac_objective(task, target, clocks, done, episode, gamma):
    """SHAC's window objective written out step by step (DiffRL's accumulation loop, differentiable): rewards of
    the task, the target critic's value after each step (0 where done), restarted sums where episodes end."""

    def objective(states, controls):
        steps, envs = controls.shape[0], controls.shape[1]
        acc, discount, total = jnp.zeros(envs), jnp.ones(envs), 0.0
        for i in range(steps):
            acc = acc + discount * task.reward(states[i], controls[i], states[i + 1])
            features = critic_features(task, states[i + 1], clocks[i], episode)
            value = jnp.where(done[i], 0.0, jax.vmap(target)(features)[:, 0])
            ends = done[i] | (i == steps - 1)
            total = total + jnp.sum(jnp.where(ends, -acc - gamma * discount * value, 0.0))
            discount = jnp.where(ends, 1.0, discount * gamma)
            acc = jnp.where(ends, 0.0, acc)
        return total / (steps * envs)

    return objective


@pytest.mark.parametrize("episode_ends", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_the_actor_gradient_of_every_rule_is_the_naive_unrolls_plus_the_critic_term(x64, episode_ends):
    """Every rule differentiates SHAC's window objective (rewards and the target critic's value, through the final
    state) as it differentiates any loss: M's and C's stop at the network's input applies to the actor."""
    task = CartPole(n_poles=1, horizon=12, zero_final_kernel=False)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 3)
    params, x0 = task.init_controller(k1), task.sample(k2, 3)
    window, episode, gamma = 6, 12, 0.9
    target = critic_net(critic_features(task, x0, jnp.zeros(3, jnp.int32), episode).shape[1], k3)
    start = jnp.array([0, 6, 2]) if episode_ends else jnp.array([0, 1, 2])  # env 1 reaches 12 at the window's end
    clocks = start[None] + jnp.arange(1, window + 1)[:, None]
    done = jnp.zeros(clocks.shape, bool).at[-1].set(clocks[-1] >= episode)
    assert bool(done.any()) == episode_ends
    loss = window_loss(task, target, clocks, done, episode, gamma)
    naive = naive_shac_objective(task, target, clocks, done, episode, gamma)

    @jax.jit
    def naive_value_and_grads(p):
        value = naive_loss(naive, task.step, task.controller, p, x0, "R", window)
        grads = {
            m: jax.grad(lambda q, m=m: naive_loss(naive, task.step, task.controller, q, x0, m, window))(p)
            for m in "RMSN"
        }
        return value, grads

    want_value, grads = naive_value_and_grads(params)
    assert not np.allclose(jax.tree.leaves(grads["M"])[0], jax.tree.leaves(grads["R"])[0])  # the modes differ
    assert_every_rule(loss, task, params, x0, window, want_value, grads)


def test_episodes_restart_at_their_length_inside_the_window(x64):
    """episode_restart="step" (`Restarting`): an episode ends at the step its clock reaches the episode's length,
    inside the window, and the next state is the fresh one (DiffRL's environments reset so); the value there is 0
    (the paper's episodes end with nothing after them), the critic sees the share of the episode left, and every
    rule differentiates the objective as the naive unroll differentiates it written out per environment."""
    from stablebptt.training.shac import Restarting

    task = CartPole(n_poles=1, horizon=12, zero_final_kernel=False)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(8), 4)
    params, x0, fresh = task.init_controller(k1), task.sample(k2, 3), task.sample(k4, 3)
    window, episode, gamma = 6, 12, 0.9
    clocks = jnp.array([0, 8, 11])  # env 0 runs on; env 1 restarts after its 4th step, env 2 after its 1st
    wrapped = Restarting(task, episode)
    start = wrapped.start(x0, clocks, fresh)
    states, _ = sb.rollout(wrapped.step, wrapped.controller, params, start, window)
    ends = np.zeros((window, 3), bool)
    ends[3, 1] = ends[0, 2] = True
    np.testing.assert_array_equal(np.asarray(states["done"][1:]), ends)
    np.testing.assert_array_equal(np.asarray(states["t"][-1]), [6, 2, 5])
    np.testing.assert_array_equal(np.asarray(states["x"][4][1]), np.asarray(fresh[1]))  # restarted, then stepped on
    target = critic_net(critic_features(task, x0, clocks, episode).shape[1], k3)

    def naive_step(x, c):  # the inner task's step, its restart written out environment by environment
        reached = task.step(x["x"], c)
        t = x["t"] + 1
        rows = [jnp.where(t[e] == episode, fresh[e], reached[e]) for e in range(3)]
        return {"x": jnp.stack(rows), "t": jnp.where(t == episode, 0, t), "reached": reached}

    def naive(states, controls):
        total = 0.0
        for e in range(3):
            acc, g = 0.0, 1.0
            for i in range(window):
                r = task.reward(states["x"][i], controls[i], states["reached"][i + 1])[e]
                acc = acc + g * r
                if int(states["t"][i + 1][e]) == 0:  # the episode ended at this step: nothing after it
                    total, acc, g = total - acc, 0.0, 1.0
                elif i == window - 1:
                    features = critic_features(task, states["x"][i + 1], states["t"][i + 1], episode)
                    total = total - acc - gamma * g * target(features[e])[0]
                else:
                    g = g * gamma
        return total / (window * 3)

    naive_x0 = {"x": x0, "t": clocks, "reached": x0}

    def controller(p, x):
        return task.controller(p, x["x"])

    want_value = naive_loss(naive, naive_step, controller, params, naive_x0, "R", window)
    grads = {m: jax.grad(lambda q, m=m: naive_loss(naive, naive_step, controller, q, naive_x0, m, window))(params)
             for m in "RMSN"}  # fmt: skip
    loss = window_loss(wrapped, target, None, None, episode, gamma)
    assert_every_rule(loss, wrapped, params, start, window, want_value, grads)


def test_a_shac_run_restarting_episodes_inside_the_window_trains():
    """A run under episode_restart="step" trains to its end with finite critic losses; a task that resets its
    own episodes refuses the setting (it would do nothing)."""
    task = CartPole(n_poles=1, horizon=20)
    common = {"protocol": "shac", "window": 8, "epochs": 2, "n_train": 32, "batch_size": 16, "n_test": 8}
    result = train(task, "C", episode_restart="step", **common)
    assert result.status == "complete" and all(np.isfinite(r["critic_loss"]) for r in result.metrics)
    with pytest.raises(BadInput, match=r"episode_restart is for a task that does not: leave it out"):
        train(Resetting(), "C", protocol="shac", window=4, episode_restart="step", epochs=1, n_train=8, batch_size=4)


def assert_every_rule(loss, task, params, x0, window, want_value, grads):
    """Every rule's value and update of the window objective `loss` equal the naive unroll's: `grads` of the
    single modes R, M, S, N, and C combined from M's and R's."""
    for method in RULES:
        vg = jax.jit(sb.value_and_grad(loss, task.step, task.controller, window, method, has_aux=True))
        value, update, _ = vg(params, x0)
        want = sb.combine(grads["M"], grads["R"]) if method == "C" else grads[method]
        assert float(value) == pytest.approx(float(want_value), rel=1e-12)
        for a, b in zip(jax.tree.leaves(update), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12, err_msg=method)


def test_the_critic_learns_and_the_target_follows():
    """A short SHAC run: the critic's loss falls, the values at the windows' ends are finite, and the target moves
    towards the critic."""
    result = train(CartPole(n_poles=1, horizon=40), "R", protocol="shac", window=8, epochs=3, n_train=64, n_test=16)
    losses = [row["critic_loss"] for row in result.metrics]
    assert result.status == "complete" and losses[-1] < losses[0]
    assert all(np.isfinite(row["end_value"]) for row in result.metrics)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"protocol": "shac", "gamma": 1.5}, r"^gamma must be a number in \[0, 1\], got 1.5"),
        ({"protocol": "shac", "lam": -0.1}, r"^lam must be a number in \[0, 1\], got -0.1"),
        ({"critic_lr": 0.01}, r"^critic_lr is a setting of the SHAC protocol's critic; give protocol='shac'"),
        ({"protocol": "stream", "gamma": 0.5}, r"^gamma is a setting of the SHAC protocol's critic"),
        ({"critic_normalize": True}, r"^critic_normalize is a setting of the SHAC protocol's critic"),
        ({"protocol": "shac", "critic_normalize": 1}, r"^critic_normalize must be True or False, got 1"),
        ({"protocol": "shac", "critic_network": "lstm"}, r"^unknown critic network 'lstm'; allowed: mlp, diffrl$"),
        ({"protocol": "shac", "critic_order": "random"}, r"^unknown critic order 'random'; allowed: shuffled, steps$"),
        ({"critic_network": "diffrl"}, r"^critic_network is a setting of the SHAC protocol's critic"),
        ({"protocol": "stream", "critic_order": "steps"}, r"^critic_order is a setting of the SHAC protocol's critic"),
        ({"protocol": "shac", "episode_restart": "never"}, r"^unknown episode restart 'never'; allowed: window, step$"),
        ({"episode_restart": "step"}, r"^episode_restart is a setting of the SHAC protocol; give protocol='shac'"),
    ],
)
def test_bad_shac_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(BadInput, match=message):
        TrainSettings(**settings)


def test_a_window_longer_than_the_episode_too_many_minibatches_and_a_task_without_rewards_are_refused():
    from stablebptt.training import Trainer

    with pytest.raises(BadInput, match=r"window=50 is longer than the episode \(40 steps: the task horizon\)"):
        Trainer(CartPole(n_poles=1, horizon=40), TrainSettings(protocol="shac", window=50))
    many = r"^critic_batches=21 is more minibatches than a window has samples \(20: window=5 steps x batch_size=4 "
    with pytest.raises(BadInput, match=many):
        Trainer(
            CartPole(n_poles=1, horizon=40), TrainSettings(protocol="shac", window=5, batch_size=4, critic_batches=21)
        )
    Trainer(CartPole(n_poles=1, horizon=40), TrainSettings(protocol="shac", window=5, batch_size=4, critic_batches=20))

    class Silent(CartPole):
        reward = sb.tasks.Task.reward

    with pytest.raises(
        BadInput, match=r"^Silent defines no reward\(x, c, x_next\), whose value the critic of protocol='shac' learns;"
    ):
        Trainer(Silent(n_poles=1), TrainSettings(protocol="shac", window=10))


@pytest.mark.parametrize("task", ["cartpole-final", "cartpole-continuous", "repulsion", "quantum"])
def test_the_rewards_of_an_episode_sum_to_minus_the_papers_loss(x64, task):
    """docs/tasks.md, rewards: summed over the task's horizon and averaged over the batch, the rewards are minus
    the loss (cart pole on the final state: plus the potential of the first state, which no parameter changes)."""
    from stablebptt.tasks import Quantum, Repulsion

    made = {
        "cartpole-final": lambda: CartPole(n_poles=2, horizon=30),
        "cartpole-continuous": lambda: CartPole(n_poles=2, horizon=30, loss_mode="continuous"),
        "repulsion": lambda: Repulsion(horizon=30),
        "quantum": lambda: Quantum(horizon=30),
    }[task]()
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params, x0 = made.init_controller(k1), made.sample(k2, 4)
    states, controls = sb.rollout(made.step, made.controller, params, x0, made.horizon)
    rewards = jax.vmap(made.reward)(states[:-1], controls, states[1:])
    assert rewards.shape == (made.horizon, 4)
    constant = jnp.mean(1.0 - jnp.mean(jnp.cos(x0[:, 1:, 0]), axis=1)) if task == "cartpole-final" else 0.0
    total = float(jnp.mean(jnp.sum(rewards, axis=0)))
    assert total == pytest.approx(float(constant - made.loss(states, controls)), rel=1e-10)


# DiffRL's critic (normalize=True) in the slow lane (the README's test command keeps its 6 minutes on 2 cores)
@pytest.mark.parametrize("normalize", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_shac_run_resumed_from_its_checkpoint_is_bit_identical(tmp_path, monkeypatch, normalize):
    """The checkpoint holds the critic, the target critic, both optimizer states, the carried environments, the
    key and (as DiffRL: --critic-normalize, its LayerNorm network, minibatches in step order, episodes restarting
    inside the window) the
    critic's input statistics and its LayerNorms: 2 epochs, then resumed to 3, give the rows of 3 epochs in one
    go."""
    from stablebptt.cli.main import main
    from stablebptt.runs.io import read_csv

    monkeypatch.chdir(tmp_path)
    common = ["--poles", "1", "--horizon", "20", "--protocol", "shac", "--window", "5", "--n-train", "16"]
    common += ["--n-test", "8", "--method", "C", "--critic-iterations", "2"]
    common += [*DIFFRL_CRITIC, "--episode-restart", "step"] if normalize else []
    assert main(["train", "cartpole", *common, "--epochs", "2", "--out", "split"]) == 0
    assert main(["resume", "split", "--epochs", "3"]) == 0
    assert main(["train", "cartpole", *common, "--epochs", "3", "--out", "whole"]) == 0
    split, whole = read_csv(tmp_path / "split" / "metrics.csv"), read_csv(tmp_path / "whole" / "metrics.csv")
    assert len(split) == len(whole) == 3
    for a, b in zip(split, whole, strict=True):
        assert {k: v for k, v in a.items() if k != "epoch_time"} == {k: v for k, v in b.items() if k != "epoch_time"}
    assert {"critic_loss", "end_value"} <= set(split[0]) and np.isfinite(split[-1]["critic_loss"])
    config = json.loads((tmp_path / "split" / "config.json").read_text())["train"]
    assert config["protocol"] == "shac" and config["critic_iterations"] == 2 and "gamma" not in config
    assert config.get("critic_normalize", False) is normalize  # left out at its default: earlier names unchanged
    assert config.get("critic_network", "mlp") == ("diffrl" if normalize else "mlp")
    assert ("critic_order" in config) is normalize


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
@pytest.mark.parametrize(
    "critic",
    # in float64: with LayerNorms, 64 critic steps an update on 40 samples amplify float32's rounding (a group's
    # and a run's reductions differ in their last bit) to 2x in the critic's loss within an epoch, chaos not a bug
    [[], [*DIFFRL_CRITIC, "--critic-schedule", "linear", "--episode-restart", "step", "--x64"]],
    ids=["plain", "diffrl"],
)
def test_shac_runs_train_in_a_batched_group_as_they_do_alone(tmp_path, monkeypatch, critic):
    """Also as DiffRL's SHAC in full (its critic's network, statistics, order and decay, and episodes that end
    inside the window)."""
    from stablebptt.cli.main import main
    from stablebptt.runs.io import read_csv

    monkeypatch.chdir(tmp_path)
    common = ["--poles", "1", "--horizon", "20", "--protocol", "shac", "--window", "5", "--n-train", "16", *critic]
    common += ["--n-test", "8", "--methods", "R,C", "--seeds", "0", "--epochs", "2", "--workers", "1"]
    assert main(["sweep", "cartpole", *common, "--batch-runs", "on", "--out", "group"]) == 0
    assert main(["sweep", "cartpole", *common, "--batch-runs", "off", "--out", "alone"]) == 0
    runs = sorted(p.parent.name for p in (tmp_path / "group").glob("*/metrics.csv"))
    assert len(runs) == 2
    for run in runs:
        grouped, alone = (
            read_csv(tmp_path / "group" / run / "metrics.csv"),
            read_csv(tmp_path / "alone" / run / "metrics.csv"),
        )
        for key in ("test_loss", "critic_loss", "end_value"):
            np.testing.assert_allclose([r[key] for r in grouped], [r[key] for r in alone], rtol=1e-4, err_msg=key)


def test_diffrls_recipe_is_settings_that_train():
    from stablebptt.training.shac import diffrl_recipe

    settings = TrainSettings(**diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=64, method="C", epochs=10))
    assert (settings.protocol, settings.window, settings.schedule, settings.clip) == ("shac", 32, "linear", "norm")
    schedule = settings.learning_rate()
    assert float(schedule(0)) == pytest.approx(1e-2) and float(schedule(settings.updates)) == pytest.approx(1e-5)
    assert settings.schedule_needs_epochs  # the decay spans the run: its length is part of the run
    assert (settings.critic_network, settings.critic_order) == ("diffrl", "steps")  # DiffRL's CriticMLP, its order


def test_diffrls_critic_network_is_layer_normed_with_orthogonal_kernels(x64):
    """nn.NormedMLP as DiffRL's CriticMLP: Linear -> ELU -> LayerNorm twice, then Linear; orthogonal kernels of gain
    sqrt(2) (W W^T = 2 I for the square one), zero biases; against the forward pass written out in NumPy."""
    from stablebptt.nn import NormedMLP

    net = critic_net(5, jax.random.PRNGKey(3), "diffrl")
    assert isinstance(net, NormedMLP) and [layer.weight.shape for layer in net.layers] == [(64, 5), (64, 64), (1, 64)]
    square = np.asarray(net.layers[1].weight)
    np.testing.assert_allclose(square @ square.T, 2.0 * np.eye(64), atol=1e-10)
    assert all(not np.any(np.asarray(layer.bias)) for layer in net.layers)
    x = np.random.default_rng(4).normal(size=5)

    def elu(h):
        return np.where(h > 0, h, np.expm1(np.minimum(h, 0)))

    def layer_norm(h):
        return (h - h.mean()) / np.sqrt(h.var() + 1e-5)

    h = x
    for layer in net.layers[:-1]:
        h = layer_norm(elu(np.asarray(layer.weight) @ h + np.asarray(layer.bias)))
    want = np.asarray(net.layers[-1].weight) @ h + np.asarray(net.layers[-1].bias)
    np.testing.assert_allclose(np.asarray(net(jnp.asarray(x))), want, rtol=1e-12)
    plain = critic_net(5, jax.random.PRNGKey(3))
    assert not hasattr(plain, "norms")  # the default: the plain MLP the study's first stages trained
    with pytest.raises(BadInput, match="^unknown critic network 'gru'; allowed: mlp, diffrl$"):
        critic_net(5, jax.random.PRNGKey(3), "gru")


@pytest.mark.parametrize("order", ["steps", "shuffled"])
def test_the_critic_is_fitted_on_minibatches_in_diffrls_order_or_shuffled(x64, order):
    """critic_order "steps": every pass takes the window's samples in step order, cut into the same contiguous
    minibatches (DiffRL's CriticDataset, never shuffled): the fit equals Adam steps on those slices in a plain
    loop. "shuffled" draws other minibatches: it ends elsewhere."""
    from stablebptt.training.shac import _fit_critic, critic_optimizer

    settings = TrainSettings(protocol="shac", critic_iterations=3, critic_batches=4, critic_order=order)
    rng = np.random.default_rng(5)
    steps, envs = 8, 3
    features = jnp.asarray(rng.normal(size=(steps, envs, 2)))
    targets = jnp.asarray(rng.normal(size=(steps, envs)))
    net = critic_net(2, jax.random.PRNGKey(6), "diffrl")
    params, static = eqx.partition(net, eqx.is_inexact_array)
    tx = critic_optimizer(settings)
    fitted, _, last = _fit_critic(params, tx.init(params), static, tx, features, targets, settings, jax.random.key(7))

    x, y = features.reshape(-1, 2), targets.reshape(-1)
    size = x.shape[0] // 4
    want, opt = params, tx.init(params)
    for _ in range(3):
        losses = []
        for b in range(4):
            rows = slice(b * size, (b + 1) * size)

            def objective(p, rows=rows):
                return critic_loss(jax.vmap(eqx.combine(p, static))(x[rows])[:, 0], y[rows])

            value, grads = jax.value_and_grad(objective)(want)
            updates, opt = tx.update(grads, opt, want)
            want = optax.apply_updates(want, updates)
            losses.append(float(value))
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(fitted), jax.tree.leaves(want)))
    if order == "steps":
        assert gap < 1e-12 and float(last) == pytest.approx(np.mean(losses), rel=1e-12)
    else:
        assert gap > 1e-6


def test_td_lambda_targets_are_the_textbook_lambda_returns(window):
    """DiffRL's recursion renormalises the lambda weights of the n-step returns left before an end; that is the
    recursive lambda-return G_i = r_i + gamma ((1 - lambda) v_i + lambda G_(i+1)), bootstrapped with v at an end
    (rlax's ``lambda_returns`` with a discount of 0 past an end): an independent second reference."""
    rew, values, done = window
    gamma, lam = 0.97, 0.8
    steps, envs = rew.shape
    want = np.zeros_like(rew)
    for e in range(envs):
        following = 0.0
        for i in reversed(range(steps)):
            ends = done[i, e] or i == steps - 1
            following = rew[i, e] + gamma * (values[i, e] if ends else (1 - lam) * values[i, e] + lam * following)
            want[i, e] = following
    got = td_lambda_targets(jnp.asarray(rew), jnp.asarray(values), jnp.asarray(done), gamma, lam)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def test_the_critics_inputs_are_standardised_by_the_frozen_statistics(x64):
    """`window_loss` with statistics equals `window_loss` of a task whose own `critic_input` standardises by the
    same mean and standard deviation, written out (the objective, its aux and the critic's inputs); the raw
    inputs it returns for the statistics' update are the task's own."""
    from stablebptt.nn import Normalizer

    task = CartPole(n_poles=1, horizon=12, zero_final_kernel=False)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(8), 4)
    params, x0 = task.init_controller(k1), task.sample(k2, 3)
    stats = Normalizer.empty(task.critic_input(x0).shape[1]).update(
        jax.random.normal(k4, (50, task.critic_input(x0).shape[1])) * 3.0 + 1.0
    )
    mean, std = np.asarray(stats.mean), np.sqrt(np.asarray(stats.var))

    class Standardised(CartPole):
        def critic_input(self, x):
            return (super().critic_input(x) - mean) / std

    mine = Standardised(n_poles=1, horizon=12, zero_final_kernel=False)
    window, episode, gamma = 6, 12, 0.9
    target = critic_net(critic_features(task, x0, jnp.zeros(3, jnp.int32), episode).shape[1], k3)
    clocks = jnp.array([0, 6, 2])[None] + jnp.arange(1, window + 1)[:, None]
    done = jnp.zeros(clocks.shape, bool).at[-1].set(clocks[-1] >= episode)
    states, controls = sb.rollout(task.step, task.controller, params, x0, window)
    got_loss, (_, values, seen, raw, _) = window_loss(task, target, clocks, done, episode, gamma, stats)(
        states, controls
    )
    want_loss, (_, want_values, want_seen, _, _) = window_loss(mine, target, clocks, done, episode, gamma)(
        states, controls
    )
    assert float(got_loss) == pytest.approx(float(want_loss), rel=1e-9)
    np.testing.assert_allclose(values, want_values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(seen, want_seen, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(raw, jax.vmap(task.critic_input)(jax.tree.map(lambda a: a[:-1], states)))
    plain_loss = window_loss(task, target, clocks, done, episode, gamma)(states, controls)[0]
    assert float(plain_loss) != pytest.approx(float(got_loss), rel=1e-6)  # the statistics change the objective


def test_the_critics_learning_rate_falls_as_diffrls():
    """``critic_schedule="linear"``: at each actor update (epoch, in DiffRL's words) the critic's passes take
    ``(1e-5 - critic_lr) * epoch / max_epochs + critic_lr`` (DiffRL's shac.py, written out here), held within the
    update's ``critic_iterations * critic_batches`` Adam steps; constant by default."""
    from stablebptt.training.shac import critic_learning_rate, diffrl_recipe

    settings = TrainSettings(**diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=64, epochs=10))
    assert settings.critic_schedule == "linear" and settings.schedule_needs_epochs
    per_update, max_epochs = settings.critic_iterations * settings.critic_batches, settings.updates
    schedule = critic_learning_rate(settings)
    for epoch in (0, 1, max_epochs // 2, max_epochs - 1):
        want = (1e-5 - 1e-3) * float(epoch / max_epochs) + 1e-3
        for step in (0, per_update - 1):
            assert float(schedule(epoch * per_update + step)) == pytest.approx(want, rel=1e-6)
    constant = TrainSettings(protocol="shac", critic_lr=3e-4)
    assert critic_learning_rate(constant) == 3e-4 and not constant.schedule_needs_epochs
    with pytest.raises(BadInput, match=r"critic_schedule is a setting of the SHAC protocol's critic"):
        TrainSettings(critic_schedule="linear")


def diffrl_objective_with_resets(task, target, gamma):
    """DiffRL's compute_actor_loss on a task that resets itself, written out step by step and environment by
    environment (jnp, so that it differentiates): the value at a done step is the target critic's of
    ``obs_before_reset`` where the episode was truncated, 0 where it terminated; the window's end ends every sum."""

    def value(inputs):
        return target(inputs)[0]

    def loss(states, controls):
        steps, envs = controls.shape[0], controls.shape[1]
        total = 0.0
        for e in range(envs):
            acc, g = 0.0, 1.0
            for i in range(steps):
                x, x_next = jax.tree.map(lambda a, i=i: a[i], states), jax.tree.map(lambda a, i=i: a[i + 1], states)
                r = task.reward(x, controls[i], x_next)[e]
                acc = acc + g * r
                done, trunc = bool(x_next["done"][e]), bool(x_next["trunc"][e])
                v = (value(x_next["last"][e]) if trunc else 0.0) if done else value(x_next["p"][e])
                if done or i == steps - 1:
                    total = total - acc - gamma * g * v
                    acc, g = 0.0, 1.0
                else:
                    g = g * gamma
        return total / (steps * envs)

    return loss


@pytest.mark.slow  # 13 s: the README's test command keeps its 6 minutes on 2 cores
def test_the_objective_and_every_rules_gradient_where_the_task_resets_itself(x64):
    """Inside one window, episodes end by termination and by truncation (the task's own resets): SHAC's objective
    bootstraps from the state before the reset where truncated, stops where terminated, as DiffRL's; and every
    rule differentiates it as the naive unroll with explicit stop_gradients differentiates DiffRL's loop."""
    task = Resetting()
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(11), 3)
    params, x0 = task.init_controller(k1), task.sample(k2, 4)
    x0 = {**x0, "t": jnp.array([0, 1, 2, 3])}  # clocks spread: truncations at different steps
    window, gamma = 7, 0.9
    target = critic_net(2, k3)
    states, _ = sb.rollout(task.step, task.controller, params, x0, window)
    assert bool(jnp.any(states["trunc"])) and bool(jnp.any(states["done"] & ~states["trunc"]))  # both kinds
    loss = window_loss(task, target, None, None, task.episode, gamma)
    naive = diffrl_objective_with_resets(task, target, gamma)

    grads = {
        m: jax.grad(lambda q, m=m: naive_loss(naive, task.step, task.controller, q, x0, m, window))(params)
        for m in "RMSN"
    }
    want_value = naive_loss(naive, task.step, task.controller, params, x0, "R", window)
    assert_every_rule(loss, task, params, x0, window, want_value, grads)
    # the critic's targets stop and bootstrap at the same ends
    _, (_, values, _, _, ended) = loss(*sb.rollout(task.step, task.controller, params, x0, window))
    np.testing.assert_array_equal(np.asarray(ended), np.asarray(states["done"][1:]))
    assert np.all(np.asarray(values)[np.asarray(states["done"][1:] & ~states["trunc"][1:])] == 0.0)


def test_shac_trains_a_task_that_resets_itself_and_resumes_bit_identically(tmp_path):
    """The SHAC protocol carries a resetting task's environments on (no protocol resets, no episode clock in the
    critic's inputs), and a run of it resumed from its checkpoint continues bit for bit."""
    from stablebptt.runs import RunConfig, RunFolder
    from stablebptt.training import Trainer

    def config(epochs):
        settings = {"window": 4, "batch_size": 4, "n_train": 8, "n_test": 4, "critic_iterations": 2}
        return RunConfig.create("systems:Resetting", {}, method="C", protocol="shac", epochs=epochs, **settings)

    straight = RunFolder(tmp_path / "straight").start(config(3)).run()
    RunFolder(tmp_path / "resumed").start(config(2)).run()
    resumed = RunFolder(tmp_path / "resumed").resume(epochs=3).run()
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]  # noqa: E731
    assert drop(resumed.metrics) == drop(straight.metrics) and len(straight.metrics) == 3
    assert all(np.isfinite(r["critic_loss"]) for r in straight.metrics)
    assert (tmp_path / "resumed" / "params.eqx").read_bytes() == (tmp_path / "straight" / "params.eqx").read_bytes()

    class Silent(Resetting):
        episode_ends = sb.tasks.Task.episode_ends

    with pytest.raises(BadInput, match=r"^Silent resets its own episodes but does not define episode_ends"):
        Trainer(Silent(), TrainSettings(protocol="shac", window=4))


@pytest.mark.parametrize(("task", "length"), [("cartpole", 128), ("repulsion", 64)])
def test_by_default_an_episode_runs_on_to_the_window_end(task, length):
    """docs/recipes.md and docs/concepts.md: with the default episode_restart ("window", the stream protocol's)
    and DiffRL's windows of 32, an episode of the study's first stages that starts at clock 0 lasts 128 steps on
    cart pole (horizon 100) and 64 on repulsion (horizon 60): its clock restarts only at a window's end."""
    from stablebptt.tasks import make_task
    from stablebptt.training.stream import next_episodes

    problem = make_task(task)
    settings = TrainSettings(protocol="shac", window=32, batch_size=2, n_train=2)
    x = problem.sample(jax.random.PRNGKey(0), 2)
    steps, lived = jnp.zeros(2, jnp.int32), 0
    while True:
        x, steps = next_episodes(problem, settings, jax.random.PRNGKey(1), x, steps)
        lived += 32
        if int(steps[0]) == 0:
            break
    assert lived == length and length > problem.horizon
