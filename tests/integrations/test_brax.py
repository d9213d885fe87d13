"""Brax environments as tasks (`stablebptt.integrations.brax`): the ``brax:NAME`` spec, the loss and the
observation statistics (the default set: no compiled programs), then the reset states and the policy (slow:
seconds of eager dispatch each), gradients against a naive unroll on both differentiable backends (R, N and C on
mjx, R and C on generalized: `MODES`), training, and the command line (slow: compiling the reverse pass of a Brax
step takes 20-60 s per program on 2 CPU cores; ``.ci/run`` runs them with ``--runslow``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from systems import (
    assert_updates_finite_and_nonzero,
    check_combined,
    check_single_mode,
    flat,
    task_naive_loss,
)

import stablebptt as sb
from stablebptt.core.checks import BadInput
from stablebptt.integrations.brax import BraxPolicy, BraxTask, Normalizer
from stablebptt.tasks import load_task, task_fields, task_label
from stablebptt.training import train

FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}


# ---- the spec, settings and errors -------------------------------------------------------------------------------


@pytest.mark.slow
def test_brax_spec_builds_the_environment_with_settings():
    task = load_task("brax:reacher", {"backend": "generalized", "horizon": 7})
    assert isinstance(task, BraxTask) and (task.env, task.backend, task.horizon) == ("reacher", "generalized", 7)
    assert task.config()["env"] == "reacher"
    assert (task.observation_size, task.action_size) == (11, 2)
    assert task_label("brax:reacher") == "brax-reacher"
    fields = task_fields("brax:reacher")
    assert "env" not in fields and fields["backend"] == "generalized" and fields["solver_iterations"] == 1


def test_mjx_backend_gets_one_solver_iteration_and_zero_keeps_the_model():
    assert BraxTask(env="hopper", backend="mjx").brax_env.sys.opt.iterations == 1
    assert BraxTask(env="hopper", backend="mjx", solver_iterations=0).brax_env.sys.opt.iterations == 4  # its own


@pytest.mark.parametrize(
    "spec,settings,match",
    [
        ("brax:nope", {}, "unknown Brax environment 'nope'; allowed: .*hopper"),
        ("brax:", {}, "names no brax environment"),
        ("brax:hopper", {"backend": "warp"}, "unknown Brax backend 'warp'; allowed: mjx, generalized"),
        ("brax:hopper", {"env": "ant"}, "has no field 'env'"),
        ("brax:hopper", {"solver_iterations": -1}, "solver_iterations must be an integer >= 0"),
        ("brax:hopper", {"horizon": 0}, "horizon must be a positive integer"),
        ("brax:hopper", {"mask_done": "yes"}, "mask_done must be true or false"),
    ],
)
def test_bad_settings_are_one_line_errors(spec, settings, match):
    with pytest.raises(BadInput, match=match) as info:
        load_task(spec, settings)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_sample_is_the_environments_reset_state(key):
    task = BraxTask(env="inverted_double_pendulum", backend="generalized")
    x = jax.jit(task.sample, static_argnums=1)(key, 5)
    assert type(x).__name__ == "State" and x.obs.shape == (5, task.observation_size)
    assert x.reward.shape == x.done.shape == (5,) and not np.any(x.done)
    single = jax.jit(task.brax_env.reset)(jax.random.split(key, 5)[2])
    np.testing.assert_allclose(x.obs[2], single.obs, rtol=1e-6)


# ---- the loss and the controller (no simulation) -----------------------------------------------------------------


def test_loss_sums_rewards_until_the_first_done_inclusive():
    task = BraxTask(env="inverted_double_pendulum", horizon=4)
    reward = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [4.0, 4.0], [8.0, 8.0]])  # (time, batch)
    done = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])  # sample 0 ends at step 2
    states = types.SimpleNamespace(reward=reward, done=done)
    # sample 0: 1 + 2 (the terminating step counts, as in Brax's evaluation); sample 1: every step.
    np.testing.assert_allclose(task.loss(states, None), -(3.0 + 15.0) / 2)
    unmasked = BraxTask(env="inverted_double_pendulum", horizon=4, mask_done=False)
    np.testing.assert_allclose(unmasked.loss(states, None), -(15.0 + 15.0) / 2)
    grad = jax.grad(lambda r: task.loss(types.SimpleNamespace(reward=r, done=done), None))(reward)
    np.testing.assert_allclose(grad[:, 0], [0, -0.5, -0.5, 0, 0])  # no gradient after termination


def test_normalizer_keeps_the_mean_and_variance_of_everything_seen(key):
    data = jax.random.normal(key, (3, 40, 5)) * jnp.arange(1.0, 6.0) + 2.0
    stats = Normalizer.empty(5)
    for part in data:
        stats = stats.update(part)
    whole = data.reshape(-1, 5)
    np.testing.assert_allclose(stats.mean, whole.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, whole.var(0), rtol=1e-4)
    assert float(stats.count) == 120
    standard = jax.vmap(stats)(whole)
    np.testing.assert_allclose(standard.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(standard.std(0), 1, rtol=1e-4)
    grad = jax.grad(lambda s: jnp.sum(s(whole[0])))(stats)
    assert not np.any(grad.mean) and not np.any(grad.var)  # statistics change only through update


@pytest.mark.slow
def test_policy_is_tanh_of_the_network_and_usable_by_brax(key):
    task = BraxTask(env="reacher", backend="mjx", normalize_observations=True)
    params = task.init_controller(key)
    assert isinstance(params, BraxPolicy) and params.normalizer is not None
    obs = 100.0 * jax.random.normal(key, (6, task.observation_size))
    action, extras = task.policy(params)(obs, key)
    assert action.shape == (6, 2) and extras == {}
    assert np.all(np.abs(action) <= 1) and np.max(np.abs(action)) > 0.5  # a Glorot last layer: not all zero
    np.testing.assert_allclose(action, jnp.tanh(jax.vmap(params.mlp)(obs)), rtol=1e-6)  # empty statistics


# ---- gradients of every mode against a naive unroll (slow) ----------------------------------------------------------


def gradient_problem(env: str, backend: str, horizon: int = 4, n: int = 3):
    """A task, a small network whose output layer is scaled up (so that R and M differ), and `n` reset states
    advanced 10 steps under a fixed push (so that the start is not an exact rest state)."""
    task = BraxTask(env=env, backend=backend, horizon=horizon, hidden=(8,))
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    params = task.init_controller(k1)
    params = eqx.tree_at(lambda p: p.mlp.layers[-1].weight, params, 5.0 * params.mlp.layers[-1].weight)
    diff, static = eqx.partition(params, eqx.is_inexact_array)

    @jax.jit
    def start(key):
        x = task.sample(key, n)
        push = 0.3 * jnp.ones((n, task.action_size))
        return jax.lax.fori_loop(0, 10, lambda _, x: task.step(x, push), x)

    return task, diff, static, start(k2)


def compute_gradients(env, backend, methods="RMSN", combined=True):
    task, diff, static, x0 = gradient_problem(env, backend)

    def everything(diff, x0):
        p = eqx.combine(diff, static)
        ours = {
            m: sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, m)(p, x0)
            for m in methods + ("C" if combined else "")
        }
        naive = {
            m: jax.value_and_grad(lambda d, m=m: task_naive_loss(task, eqx.combine(d, static), x0, m))(diff)
            for m in sorted(set(methods) | {"M", "R"})
        }
        return ours, naive

    return jax.jit(everything).lower(diff, x0).compile(compiler_options=FAST_COMPILE)(diff, x0)


# Which modes each backend checks against a naive unroll. Where the modes put their stops is the core's, the same on
# every simulator, and is checked for every mode on every task of the core's tests and on MJX's own cart pole
# (tests/tasks/test_mjx_cartpole.py); what depends on Brax is whether its state pytree passes through a stop at the
# network's input (M) and at the simulator's (N). So mjx checks R and N, generalized R, and both C, which runs the
# backward passes of R and M together (against the naive R and M); S is M's stop and N's together. Each mode's
# reverse pass costs 20-40 s of compiling on 2 cores; the slow lane has 30 minutes for everything.
MODES = {"mjx": "RN", "generalized": "R"}


# Under `.ci/run`'s `--dist loadgroup` the tests of each backend run on one worker (tests/conftest.py groups the
# users of a module fixture), so the two fixtures (minutes of compiling each) are built once, on two workers.
@pytest.fixture(scope="module", params=list(MODES))
def brax_gradients(request):
    """The modes of `MODES` and C (the automatic backward), and the naive gradients of those modes and of M and R, on
    inverted_double_pendulum."""
    return compute_gradients("inverted_double_pendulum", request.param, methods=MODES[request.param])


@pytest.mark.slow
def test_single_modes_equal_naive_unroll(brax_gradients, request):
    ours, naive = brax_gradients
    modes = MODES[request.node.callspec.params["brax_gradients"]]
    assert set(ours) == set(modes) | {"C"}
    for method in modes:
        try:
            check_single_mode(ours[method], naive[method])
        except AssertionError as error:
            raise AssertionError(f"mode {method}: {error}") from error


@pytest.mark.slow
def test_modes_differ_on_this_system(brax_gradients):
    """Guards the test above: a misplaced stop_gradient shows as a mismatch only if the modes differ."""
    _, naive = brax_gradients
    grads = {m: flat(g) for m, (_, g) in naive.items()}
    pairs = [(a, b) for a, b in (("R", "M"), ("R", "S"), ("M", "S"), ("R", "N")) if a in grads and b in grads]
    assert ("R", "M") in pairs
    for a, b in pairs:
        scale = max(np.max(np.abs(grads[a])), np.max(np.abs(grads[b])))
        assert np.max(np.abs(grads[a] - grads[b])) > 1e-2 * scale, (a, b)


@pytest.mark.slow
def test_combined_equals_combine_of_naive_gradients(brax_gradients, request):
    """On the generalized backend g_M and g_R happen to agree in sign on every entry of this small problem (C = M
    there); on mjx some differ, so that C is told apart from M (and on hopper below)."""
    ours, naive = brax_gradients
    check_combined(ours["C"], naive, some_disagree=request.node.callspec.params["brax_gradients"] == "mjx")


@pytest.mark.slow
def test_contacts_differentiate_on_mjx_with_one_solver_iteration():
    """hopper standing on the floor (foot contact active): C and the naive R and M agree, all finite."""
    ours, naive = compute_gradients("hopper", "mjx", methods="")
    assert all(np.all(np.isfinite(flat(g))) for _, g in naive.values())
    check_combined(ours["C"], naive)


@pytest.mark.slow
@pytest.mark.parametrize("env", ["reacher", "hopper"])
def test_default_backend_gives_finite_updates(env):
    """The default backend (generalized) on the benchmark's environments, 20 steps from reset states and the
    default controller: R and C updates are finite and not zero (mjx gave NaN on reacher here).
    inverted_double_pendulum on generalized is covered by `brax_gradients` (every mode against a naive unroll)."""
    task = BraxTask(env=env, horizon=20)
    key = jax.random.PRNGKey(0)
    assert_updates_finite_and_nonzero(task, task.init_controller(key), task.sample(key, 4), methods="RC")


@pytest.mark.slow
def test_a_constant_reward_has_no_gradient():
    """inverted_pendulum's reward is 1 per step until termination: every analytic gradient of it is exactly 0."""
    task = BraxTask(env="inverted_pendulum", horizon=20)
    key = jax.random.PRNGKey(0)
    value, update, _ = jax.jit(sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, "R"))(
        task.init_controller(key), task.sample(key, 4)
    )
    assert -20 <= float(value) < 0 and not np.any(flat(update))


# ---- training and the command line (slow) ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("normalize", [False, True])
def test_short_training_run_lowers_the_loss(normalize):
    """C on inverted_double_pendulum (generalized, 30 steps, 32 states): the test loss falls; with observation
    normalisation the statistics have counted every observation of every update's rollout."""
    task = BraxTask(env="inverted_double_pendulum", backend="generalized", horizon=30, normalize_observations=normalize)
    result = train(task, "C", epochs=5, n_train=32, n_test=32, batch_size=16, lr=3e-3, seed=1)
    test = [row["test_loss"] for row in result.metrics]
    assert result.status == "complete" and len(test) == 5 and all(np.isfinite(test))
    if normalize:  # the statistics move most in the first updates, so the loss is not monotone: its best falls
        assert min(test[1:]) < test[0] - 5.0, test
        assert float(result.params.normalizer.count) == 5 * 2 * 16 * 31  # epochs x updates x batch x states
    else:
        assert test[-1] < test[0] - 5.0, test


@pytest.mark.slow
def test_command_line_trains_resumes_and_plots(tmp_path):
    out = tmp_path / "run"
    common = [sys.executable, "-m", "stablebptt"]
    train_args = [
        "train",
        "brax:inverted_double_pendulum",
        "--set",
        "backend=generalized",
        "--set",
        "horizon=10",
        "--n-train",
        "16",
        "--n-test",
        "16",
        "--batch-size",
        "8",
        "--out",
        str(out),
    ]
    done = subprocess.run(common + train_args + ["--epochs", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "brax:inverted_double_pendulum" and config["task_settings"]["backend"] == "generalized"
    resumed = subprocess.run([*common, "resume", str(out), "--epochs", "3"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    plotted = subprocess.run([*common, "plot", str(tmp_path)], capture_output=True, text=True)  # the folder of runs
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "sweep.png").exists() and "Traceback" not in plotted.stderr
    bad = subprocess.run(
        [*common, "train", "brax:inverted_double_pendulm", "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown Brax environment 'inverted_double_pendulm'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "x").exists()


def _apg_networks(key):
    """Brax's APG network (initialised) and an `APGNetwork` with its weights; the layer norms' scale and offset
    moved away from 1 and 0, so that a mix-up of the two shows."""
    from brax.training.agents.apg import networks as apg_networks

    from stablebptt.integrations.brax import APGNetwork

    brax_net = apg_networks.make_apg_networks(5, 2, hidden_layer_sizes=(8, 8))
    theirs = brax_net.policy_network.init(jax.random.PRNGKey(3))
    p = theirs["params"]
    ours = APGNetwork(5, 2, (8, 8), key=key)
    assert np.allclose(np.linalg.norm(ours.layers[0].weight), np.linalg.norm(p["hidden_0"]["kernel"]), rtol=0.3)
    for i in range(2):
        p[f"LayerNorm_{i}"] = {"scale": jnp.linspace(0.5, 1.5, 8), "bias": jnp.linspace(-0.2, 0.3, 8)}
    layers = tuple(
        eqx.tree_at(lambda m: (m.weight, m.bias), layer, (p[f"hidden_{i}"]["kernel"].T, p[f"hidden_{i}"]["bias"]))
        for i, layer in enumerate(ours.layers)
    )
    norms = tuple(
        eqx.tree_at(lambda m: (m.weight, m.bias), norm, (p[f"LayerNorm_{i}"]["scale"], p[f"LayerNorm_{i}"]["bias"]))
        for i, norm in enumerate(ours.norms)
    )
    return brax_net, theirs, eqx.tree_at(lambda n: (n.layers, n.norms), ours, (layers, norms))


def test_apg_network_equals_braxs_own(key):
    """`APGNetwork` with the weights of Brax's APG policy network gives its outputs, and `BraxPolicy` its
    deterministic action (the mode of the tanh-normal: tanh of the location); at initialisation both draw kernels
    of the same size (orthogonal, scale 0.01)."""
    from brax.training.agents.apg import networks as apg_networks

    brax_net, theirs, ours = _apg_networks(key)
    obs = jax.random.normal(key, (6, 5)) * 3.0
    expected = brax_net.policy_network.apply(None, theirs, obs)
    np.testing.assert_allclose(jax.vmap(ours)(obs), expected, rtol=1e-5, atol=1e-7)
    mode = apg_networks.make_inference_fn(brax_net)((None, theirs), deterministic=True)(obs, key)[0]
    np.testing.assert_allclose(jax.vmap(BraxPolicy(ours))(obs), mode, rtol=1e-5, atol=1e-7)


def test_sampled_actions_are_apgs_with_its_key_sequence(key):
    """APG's unroll splits its key at every step and samples the batch's actions with the split-off key: the
    noise of `apg_noise` at step n, through `BraxPolicy.sample`, gives Brax's sampled action of that step."""
    from brax.training.agents.apg import networks as apg_networks

    from stablebptt.integrations.brax import apg_noise

    brax_net, theirs, ours = _apg_networks(key)
    sample = apg_networks.make_inference_fn(brax_net)((None, theirs), deterministic=False)
    obs = jax.random.normal(key, (6, 5))
    noise = apg_noise(jax.random.PRNGKey(11), 3, 6, 2)
    assert noise.shape == (6, 3, 2)
    k = jax.random.PRNGKey(11)
    for n in range(3):
        k, k_sample = jax.random.split(k)
        ours_n = jax.vmap(BraxPolicy(ours).sample)(obs, noise[:, n])
        np.testing.assert_allclose(ours_n, sample(obs, k_sample)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours_n, jax.vmap(BraxPolicy(ours))(obs), atol=1e-3)  # the noise matters


def test_apg_network_and_zero_final_kernel_are_refused_together():
    with pytest.raises(sb.BadInput, match="^zero_final_kernel applies to network='mlp'"):
        BraxTask(env="inverted_double_pendulum", network="apg", zero_final_kernel=True)


def test_sampled_actions_need_apgs_network():
    with pytest.raises(sb.BadInput, match="^actions='sampled' needs network='apg'"):
        BraxTask(env="inverted_double_pendulum", actions="sampled")


def test_apg_network_is_initialised_as_braxs_for_the_same_key(key):
    """Drawn by Brax's own initialiser: for the same key, `APGNetwork` is ``apg.train``'s initial network (the
    kernels of the two are equal, not only of equal size), and `brax_params` puts given weights in."""
    from brax.training.agents.apg import networks as apg_networks

    from stablebptt.integrations.brax import APGNetwork

    brax_net = apg_networks.make_apg_networks(5, 2, hidden_layer_sizes=(8, 8))
    theirs = brax_net.policy_network.init(key)
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 5)) * 3.0
    expected = brax_net.policy_network.apply(None, theirs, obs)
    drawn = APGNetwork(5, 2, (8, 8), key=key)
    np.testing.assert_allclose(jax.vmap(drawn)(obs), expected, rtol=1e-5, atol=1e-7)
    other = APGNetwork(5, 2, (8, 8), key=jax.random.PRNGKey(2))
    assert not np.allclose(jax.vmap(other)(obs), expected, atol=1e-6)
    given = APGNetwork(5, 2, (8, 8), key=jax.random.PRNGKey(2), brax_params=theirs)
    np.testing.assert_array_equal(given.layers[0].weight, theirs["params"]["hidden_0"]["kernel"].T)
    with pytest.raises(BadInput, match="^brax_params hold kernels of shapes"):
        APGNetwork(5, 2, (8, 4), key=key, brax_params=theirs)


@pytest.mark.parametrize("value", [-1, 2.5, True, "10"])
def test_bad_auto_reset_is_refused(value):
    with pytest.raises(BadInput, match="^auto_reset must be an integer >= 0"):
        BraxTask(env="inverted_double_pendulum", auto_reset=value)


def test_apg_objective_is_minus_the_mean_reward_of_every_step():
    """``objective="apg"``: every step's reward counts (done or not) and the mean is over steps and batch."""
    task = BraxTask(env="inverted_double_pendulum", objective="apg")
    rewards = jnp.array([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # (horizon + 1, batch)
    done = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    states = types.SimpleNamespace(reward=rewards, done=done)
    assert float(task.loss(states, None)) == pytest.approx(-3.5)
    assert float(BraxTask(env="inverted_double_pendulum").loss(states, None)) == pytest.approx(-(1 + 2 + 4 + 6) / 2)
    with pytest.raises(BadInput, match="objective"):
        BraxTask(env="inverted_double_pendulum", objective="mean")


@pytest.mark.slow
def test_auto_reset_wraps_the_environment_as_apg_trains_it(key):
    """With `auto_reset` the task steps Brax's training wrapper: the clock of `start_stream` (spread, then
    one zero-action step), done at the episode's end, and the step after restarts from the episode's first state
    (auto-reset); the caller's state is left as it was."""
    task = BraxTask(env="inverted_double_pendulum", backend="generalized", auto_reset=6, horizon=6)
    assert task.resets and not BraxTask(env="inverted_double_pendulum").resets
    x = task.sample(key, 3)
    first = x.info["first_obs"]
    x = task.start_stream(x, jax.random.PRNGKey(2))  # spreads the clocks of this key over 2, 5 and 6
    clocks = np.asarray(x.info["steps"])
    assert set(clocks) <= set(range(1, 8)) and len(set(clocks)) > 1
    before = jax.tree.map(np.asarray, x)
    states, _ = sb.rollout(task.step, task.controller, task.init_controller(key), x, 8)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, x))  # untouched
    steps, done, obs = (np.asarray(a) for a in (states.info["steps"], states.done, states.obs))
    restarted = 0
    for b in range(3):
        ends = [n for n in range(1, 9) if done[n, b] == 1]
        assert ends and steps[ends[0], b] >= 6 and all(done[n, b] == 0 for n in range(1, ends[0]))
        if ends[0] < 8:  # auto-reset: the done step returns the episode's first observation, the clock restarts
            np.testing.assert_array_equal(obs[ends[0], b], first[b])
            assert steps[ends[0] + 1, b] == 1
            restarted += 1
    assert restarted > 0


@pytest.mark.slow
def test_episode_ends_keep_the_observation_before_the_reset_and_shac_trains(key):
    """`with_episode_ends`: the same steps as Brax's training wrapper, each state also keeping its step's
    observation before the auto-reset: at a truncation (the episode's length) it is the unwrapped environment's
    observation after as many steps, while the state is the episode's first; and SHAC trains on it (the critic
    bootstrapping there) with a finite critic loss."""
    task = BraxTask(env="inverted_double_pendulum", backend="generalized", auto_reset=4, horizon=4)
    kept = task.with_episode_ends()
    assert kept.keep_last_obs and not task.keep_last_obs and BraxTask().with_episode_ends() == BraxTask()
    x, zeros = kept.sample(key, 2), jnp.zeros((2, task.action_size))
    plain = jax.vmap(task.brax_env.reset)(jax.random.split(key, 2))
    for _ in range(4):
        x, plain = kept.step(x, zeros), jax.vmap(task.brax_env.step)(plain, zeros)
    ends = kept.episode_ends(x)
    assert np.all(np.asarray(ends.done)) and np.all(np.asarray(ends.truncated))  # the length, not a fall
    np.testing.assert_allclose(ends.last, plain.obs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(x.obs, x.info["first_obs"])  # the state itself restarted
    with pytest.raises(BadInput, match="episode_ends needs the states of task.with_episode_ends"):
        task.episode_ends(task.step(task.sample(key, 2), zeros))

    result = train(
        task,
        "C",
        protocol="shac",
        window=4,
        batch_size=4,
        n_train=8,
        n_test=2,
        epochs=2,
        critic_iterations=2,
        critic_normalize=True,
    )
    assert result.status == "complete" and all(np.isfinite(r["critic_loss"]) for r in result.metrics)
