"""The MuJoCo MJX cart pole: physics, the `mjx.Data` state, gradients of every mode, and training.

Compiling the reverse pass of `mjx.step` dominates this module's time: 5-15 s per gradient program on 2 CPU cores
even with XLA options that only shorten compilation (`FAST_COMPILE`, about 3x). So the gradients come from module
fixtures that compile one program each, the forward rollouts of the physics tests share one program per number of
links, and only the combined method's joint backward is in the default set; the other modes and backwards and the
training run are marked slow (``--runslow``, about 3 minutes more).
"""

from __future__ import annotations

import contextlib
import io
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

with contextlib.redirect_stdout(io.StringIO()):  # MJX prints "Failed to import warp" without the GPU backend
    pytest.importorskip("mujoco.mjx")

import mujoco
from systems import check_combined, check_single_mode, flat, task_naive_loss

import stablebptt as sb
from stablebptt.tasks import CartPole
from stablebptt.tasks.mjx_cartpole import MJXCartPole, absolute_angles, mjcf
from stablebptt.training import train

FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0}
GRAD_HORIZON = 4
VARIANTS = [(m, b) for m in "RMSN" for b in ("autodiff", "joint")] + [("C", "joint"), ("C", "two_pass")]
# Physics batch: exactly upright, upright nudged, hanging nudged, pushed +1 N, pushed -1 N (all at rest).
PHYSICS_FORCES = np.array([0.0, 0.0, 0.0, 1.0, -1.0], dtype=np.float32)
PHYSICS_HORIZON = 300  # 3 s at dt = 0.01


def physics_start(n_poles: int) -> tuple[np.ndarray, np.ndarray]:
    """qpos, qvel of the physics batch (see PHYSICS_FORCES); hinge angles relative, so only the first link's
    hinge sets the chain hanging."""
    qpos = np.zeros((5, 1 + n_poles), np.float32)
    qpos[1, 1] = 1e-3
    qpos[2, 1] = math.pi + 0.05
    qpos[3:, 1] = math.pi
    return qpos, np.zeros_like(qpos)


@pytest.fixture(scope="module", params=[1, 2, 3])
def free_run(request):
    """(task, qpos (time, 5, 1 + P), qvel) of the physics batch under constant forces, 3 s."""
    task = MJXCartPole(n_poles=request.param, horizon=PHYSICS_HORIZON, dt=0.01)
    qpos, qvel = physics_start(task.n_poles)

    @jax.jit
    def run(qpos, qvel):
        x0 = task.data(qpos, qvel)
        states, _ = sb.rollout(task.step, lambda p, x: p, jnp.asarray(PHYSICS_FORCES), x0, task.horizon)
        return states.qpos, states.qvel

    qs, vs = run(qpos, qvel)
    return task, np.asarray(qs, dtype=float), np.asarray(vs, dtype=float)


def test_upright_at_rest_stays_up_and_a_nudge_falls(free_run):
    _task, qpos, _ = free_run
    np.testing.assert_allclose(qpos[:, 0], 0.0, atol=1e-6)  # exactly upright, no force: an equilibrium
    nudged = absolute_angles(qpos[:, 1])
    assert np.all(np.abs(nudged[-1]) > 0.5)  # ... an unstable one: 1 mrad grows to a fall within 3 s


def test_hanging_chain_swings_without_gaining_or_losing_energy(free_run):
    """Energy (MuJoCo's own, computed in C) of a small free swing about the bottom: semi-implicit Euler lets it
    oscillate by O(omega dt) of the swing's energy above rest (about 4% here), but not drift; the angles stay
    near pi."""
    task, qpos, qvel = free_run
    model = mujoco.MjModel.from_xml_string(mjcf(task.n_poles, task.dt))
    model.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_ENERGY
    data = mujoco.MjData(model)

    def energy(q, v):
        data.qpos[:], data.qvel[:] = q, v
        mujoco.mj_forward(model, data)
        return data.energy[0] + data.energy[1]

    series = np.array([energy(qpos[n, 2], qvel[n, 2]) for n in range(0, PHYSICS_HORIZON + 1, 10)])
    hanging = np.zeros(1 + task.n_poles)
    hanging[1] = math.pi
    swing = series[0] - energy(hanging, np.zeros_like(hanging))
    assert swing > 0
    assert np.ptp(series) < 0.1 * swing  # explicit Euler would gain about 60% over these 300 steps
    assert np.all(np.abs(absolute_angles(qpos[:, 2]) - math.pi) < 0.2)


def test_motor_pushes_the_cart_along_the_sign_of_the_control(free_run):
    task, qpos, qvel = free_run
    for sample, sign in ((3, 1.0), (4, -1.0)):
        x, v = qpos[:, sample, 0], qvel[:, sample, 0]
        assert np.all(sign * x[1:] > 0) and np.all(sign * v[1:] > 0)
        # 1 N for 3 s on 1 kg of cart and 0.1 kg per link: about t^2 / (2 * total mass), the swinging chain
        # takes a little of the push.
        expected = 0.5 * 3.0**2 / (1.0 + 0.1 * task.n_poles)
        assert 0.7 * expected < sign * x[-1] < 1.3 * expected


@pytest.mark.parametrize("free_run", [1], indirect=True)
def test_free_swing_period_of_one_pole(free_run):
    """Small oscillations of a pole hanging from a free cart (method.md §2 linearised about the bottom):
    omega^2 = g / (l (4/3 - m / M)) with half-length l."""
    task, qpos, _ = free_run
    l, m, big_m, g = 0.5, 0.1, 1.1, 9.8  # noqa: E741 -- the docstring's names
    period = 2 * math.pi / math.sqrt(g / (l * (4 / 3 - m / big_m)))
    eps = qpos[:, 2, 1] - math.pi
    crossings = np.where(np.diff(np.sign(eps)) != 0)[0]
    assert len(crossings) >= 3
    measured = 2 * np.mean(np.diff(crossings)) * task.dt
    assert abs(measured - period) < 0.01 * period


def test_one_pole_matches_the_published_cart_pole():
    """With one link, MJX and the hand-written dynamics of method.md §2 agree step for step."""
    mjx_task = MJXCartPole(n_poles=1, horizon=50, dt=0.01)
    ref = CartPole(n_poles=1, horizon=50, duration=0.5)
    forces = 3.0 * jnp.sin(0.3 * jnp.arange(50))[:, None] * jnp.array([1.0, -1.0, 0.5, 2.0])

    @jax.jit
    def both(key):
        x0 = mjx_task.sample(key, 4)
        as_cartpole = jnp.stack([x0.qpos, x0.qvel], axis=-1)  # (batch, [cart, pole], [position, velocity])
        got = jax.lax.scan(lambda x, f: (mjx_task.step(x, f),) * 2, x0, forces)[1]
        want = jax.lax.scan(lambda x, f: (ref.step(x, f),) * 2, as_cartpole, forces)[1]
        return got.qpos, got.qvel, want

    qpos, qvel, want = both(jax.random.PRNGKey(3))
    assert np.max(np.abs(want[..., 0])) > 1.0  # the trajectories go somewhere
    np.testing.assert_allclose(qpos, want[..., 0], atol=1e-4)
    np.testing.assert_allclose(qvel, want[..., 1], atol=1e-3)


def test_state_is_mjx_data_and_sample_follows_its_distribution(key):
    from mujoco import mjx

    task = MJXCartPole(n_poles=2)
    x = jax.jit(task.sample, static_argnums=1)(key, 2000)
    assert isinstance(x, mjx.Data)
    assert x.qpos.shape == x.qvel.shape == (2000, 3)
    dtypes = {np.dtype(leaf.dtype) for leaf in jax.tree.leaves(x)}
    assert {np.dtype("float32"), np.dtype("int32")} <= dtypes  # the core must carry the non-float leaves
    phi = np.asarray(absolute_angles(x.qpos))
    assert np.all(np.abs(phi - math.pi) <= math.pi / 6 + 1e-5)
    others = np.concatenate([np.ravel(x.qpos[:, 0]), np.ravel(x.qvel)])
    assert np.all(np.abs(others) <= 1) and abs(np.mean(others)) < 0.05 and np.std(others) > 0.5
    # derived quantities are consistent with qpos: the cart body sits at qpos[0]
    np.testing.assert_allclose(x.xpos[:, 1, 0], x.qpos[:, 0], atol=1e-6)
    assert task.loss(jax.tree.map(lambda a: a[None], x), None) > 1.5  # hanging: loss near 2


def test_draw_places_the_chain_at_the_simulated_link_tips(free_run):
    """`draw` (used by `stablebptt animate`) puts the chain's joints where the angles say, frame by frame."""
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task, qpos, _ = free_run
    fig, axes = plt.subplots(1, 2)
    try:
        update = task.draw(axes, types.SimpleNamespace(qpos=qpos[:, 3:5]), np.tile(PHYSICS_FORCES[3:5], (300, 1)))
        n = 150
        update(n)
        chain = axes[1].lines[-1]
        phi = np.cumsum(qpos[n, 4, 1:])
        np.testing.assert_allclose(chain.get_xdata(), qpos[n, 4, 0] + np.r_[0.0, np.cumsum(np.sin(phi))])
        np.testing.assert_allclose(chain.get_ydata(), np.r_[0.0, np.cumsum(np.cos(phi))])
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"n_poles": 0}, "n_poles"),
        ({"n_poles": 4}, "n_poles"),
        ({"n_poles": True}, "n_poles"),
        ({"dt": 0.0}, "dt"),
        ({"horizon": 0}, "horizon"),
    ],
)
def test_bad_settings_are_value_errors(settings, match):
    with pytest.raises(ValueError, match=match):
        MJXCartPole(**settings)


# ---- gradients of every mode against a naive unroll (float32) -------------------------------------------------


def gradient_problem(n_poles: int):
    """A task of `n_poles` links, 4 steps of 20 ms, 3 samples, and a small network whose output layer is not
    zero (so that R and M differ): (task, differentiable params, the rest, x0)."""
    task = MJXCartPole(n_poles=n_poles, horizon=GRAD_HORIZON, dt=0.02, hidden=(8,), zero_final_kernel=False)
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    params = task.init_controller(k1)
    params = eqx.tree_at(lambda p: p.layers[-1].weight, params, 20.0 * params.layers[-1].weight)
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    return task, diff, static, jax.jit(task.sample, static_argnums=1)(k2, 3)


def compute_gradients(n_poles, variants, naive_modes):
    """Each variant's (value, update, info) and the naive (value, gradient) of each of `naive_modes`, from one
    program compiled with `FAST_COMPILE`."""
    task, diff, static, x0 = gradient_problem(n_poles)

    def everything(diff, x0):
        p = eqx.combine(diff, static)
        ours = {
            (m, b): sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, m, backward=b)(p, x0)
            for m, b in variants
        }
        naive = {
            m: jax.value_and_grad(lambda d, m=m: task_naive_loss(task, eqx.combine(d, static), x0, m))(diff)
            for m in naive_modes
        }
        return ours, naive

    return jax.jit(everything).lower(diff, x0).compile(compiler_options=FAST_COMPILE)(diff, x0)


@pytest.fixture(scope="module")
def combined_joint():
    """C with the joint backward and the naive g_M and g_R, one link (the cheapest
    program; still over a minute to compile)."""
    return compute_gradients(1, [("C", "joint")], "MR")


@pytest.fixture(scope="module")
def every_variant():
    """Every other variant and the naive gradients of R, M, S, N, two links (about 100 s to compile)."""
    return compute_gradients(2, [v for v in VARIANTS if v != ("C", "joint")], "RMSN")


@pytest.mark.slow
@pytest.mark.parametrize("method,backward", [v for v in VARIANTS if v[0] != "C"])
def test_single_modes_equal_naive_unroll(every_variant, method, backward):
    ours, naive = every_variant
    check_single_mode(ours[(method, backward)], naive[method])


@pytest.mark.slow
def test_modes_differ_on_this_system(every_variant):
    """Guards the test above: a misplaced stop_gradient would show as a mismatch only if the modes differ."""
    _, naive = every_variant
    grads = {m: flat(naive[m][1]) for m in "RMSN"}
    for a in "RMSN":
        for b in "RMSN":
            if a < b:
                scale = max(np.max(np.abs(grads[a])), np.max(np.abs(grads[b])))
                assert np.max(np.abs(grads[a] - grads[b])) > 1e-2 * scale, (a, b)


@pytest.mark.slow  # compiling MJX's reverse pass: over a minute on 2 cores
def test_combined_joint_equals_combine_of_naive_gradients(combined_joint):
    ours, naive = combined_joint
    check_combined(ours[("C", "joint")], naive)


@pytest.mark.slow
def test_combined_two_pass_equals_combine_of_naive_gradients(every_variant):
    ours, naive = every_variant
    check_combined(ours[("C", "two_pass")], naive)


# ---- training ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_combined_method_reduces_the_swing_up_loss():
    """C on one pole, 1 s (20 steps of 50 ms), 32 states: the test loss falls over a few epochs."""
    task = MJXCartPole(n_poles=1, horizon=20, dt=0.05, hidden=(16,))
    result = train(task, "C", epochs=6, n_train=32, n_test=32, batch_size=8, lr=1e-2, seed=0)
    test = [row["test_loss"] for row in result.metrics]
    assert result.status == "complete" and len(test) == 6
    assert test[-1] < test[0] - 0.05, test
