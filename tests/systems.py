"""Small systems shared by the gradient tests (on the path through pytest's `pythonpath` setting)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from stablebptt.tasks import EpisodeEnds, Task

# Which backward paths each mode keeps: (through the network's input, through the simulator's state).
PATHS = {"R": (True, True), "M": (False, True), "S": (False, False), "N": (True, False)}


def toy_step(x, c):
    """A nonlinear 2-state system with a scalar control per sample: x (batch, 2), c (batch,)."""
    pos, vel = x[:, 0], x[:, 1]
    vel = vel + 0.1 * (-jnp.sin(pos) + 0.5 * c * jnp.cos(vel))
    return jnp.stack([pos + 0.1 * vel, vel], axis=-1)


def toy_controller(params, x):
    """A one-hidden-layer tanh network; params w1 (2, h), b1 (h,), w2 (h, 1) and optionally a scalar b2."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return (h @ params["w2"])[:, 0] + params.get("b2", 0.0)


def toy_loss(states, controls):
    """Depends on the final state, every state and the controls."""
    return jnp.mean(states[-1] ** 2) + 0.3 * jnp.mean(jnp.sin(states[1:, :, 0])) + 0.01 * jnp.mean(controls**2)


def naive_loss(loss, step, controller, params, x0, method, horizon, truncation=None):
    """THE reference of the gradient tests: the loss of a `lax.scan` unroll with the explicit stop_gradients of
    a single mode (`method` R, M, S or N: docs/concepts.md, the five modes) and, with `truncation` K, one on the
    whole state x_n where n % K == 0. States and controls may be pytrees; the loss gets time-major trajectories,
    as from `stablebptt.rollout`. Independent of the library's rollout and adjoint code."""
    net_input, sim_input = PATHS[method]

    def body(x, n):
        if truncation is not None:
            x = jax.lax.cond(n % truncation == 0, jax.lax.stop_gradient, lambda y: y, x)
        c = controller(params, x if net_input else jax.lax.stop_gradient(x))
        x_next = step(x if sim_input else jax.lax.stop_gradient(x), c)
        return x_next, (x_next, c)

    _, (xs, cs) = jax.lax.scan(body, x0, jnp.arange(horizon))
    states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs)
    return loss(states, cs)


def toy_naive_loss(params, x0, method, horizon, truncation=None):
    """`naive_loss` of the toy system."""
    return naive_loss(toy_loss, toy_step, toy_controller, params, x0, method, horizon, truncation)


def task_naive_loss(task, params, x0, method):
    """`naive_loss` of any task (pytree states: MJX, Brax)."""
    return naive_loss(task.loss, task.step, task.controller, params, x0, method, task.horizon)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


def check_single_mode(result, naive_value_grad):
    """A single mode's ``(value, update, info)`` equals the naive ``(value, gradient)`` of the same mode: value to
    1e-5, every entry to 1e-4 of the largest, ``grad_norm`` to 1e-4; the naive gradient is finite and not zero."""
    value, update, info = result
    want_value, want = naive_value_grad
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    got, want = flat(update), flat(want)
    assert np.all(np.isfinite(want)) and np.max(np.abs(want)) > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.max(np.abs(want)))
    np.testing.assert_allclose(info["grad_norm"], np.linalg.norm(want), rtol=1e-4)


def check_combined(result, naive, *, some_disagree=True):
    """C's ``(value, update, info)`` = sign agreement of the naive g_M and g_R (``naive[mode] = (value, grad)``).
    Entries where g_M or g_R is within float32 noise of zero may keep or drop g_M (their sign is noise); all
    others must match. `some_disagree`: also require that the system has entries where the signs differ (so
    that the test can tell C from M)."""
    value, update, info = result
    g_m, g_r = flat(naive["M"][1]), flat(naive["R"][1])
    got = flat(update)
    tol_m, tol_r = 1e-4 * np.max(np.abs(g_m)), 1e-4 * np.max(np.abs(g_r))
    clear = (np.abs(g_m) > tol_m) & (np.abs(g_r) > tol_r)
    want = np.where(np.sign(g_m) == np.sign(g_r), g_m, 0.0)
    np.testing.assert_allclose(got[clear], want[clear], rtol=0, atol=tol_m)
    assert np.all((np.abs(got[~clear]) <= 2 * tol_m) | (np.abs(got[~clear] - g_m[~clear]) <= tol_m))
    assert np.any(want[clear] != 0) and (np.any(want[clear] == 0) or not some_disagree)  # removes some, keeps others
    np.testing.assert_allclose(value, naive["R"][0], rtol=1e-5)
    np.testing.assert_allclose(info["cosine"], g_m @ g_r / np.linalg.norm(g_m) / np.linalg.norm(g_r), atol=1e-4)


def assert_trees_close(a, b, rtol=1e-10, atol=1e-13):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def assert_close(a, b, rtol=1e-10):
    """Trees equal to `rtol` relative to the largest entry of each leaf of `b`."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        scale = max(float(np.max(np.abs(y))), 1e-300)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * scale)


def assert_updates_finite_and_nonzero(task, params, x0, methods="RMC"):
    """Each method's value and update on `task` are finite and the update is not zero (compiled as one program)."""
    import stablebptt as sb

    fns = [sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, m) for m in methods]
    results = jax.jit(lambda p, x: [f(p, x) for f in fns])(params, x0)
    for method, (value, update, info) in zip(methods, results):
        leaves = [np.asarray(u) for u in jax.tree.leaves(update)]
        assert np.isfinite(float(value)) and all(np.all(np.isfinite(u)) for u in leaves), method
        assert float(info["grad_norm"]) > 0, method


def _dict_task_class():
    """`DictPendulums`, defined on first use so that importing this module does not import the library."""

    import equinox as eqx

    from stablebptt.nn import MLP
    from stablebptt.tasks import Task

    class DictPendulums(Task):
        """Two torque-driven pendulums per sample with a dict state and a dict control.

        State: ``angle (n, 2)``, ``speed (n, 2)`` (rad, rad/s) and ``steps (n,)`` int32 (a counter, no gradient);
        control ``{"torque": (n, 2)}``. Loss: squared distance of the final angles to `target` (rad^2).
        """

        name: ClassVar[str] = "dict-pendulums"
        horizon: int = eqx.field(static=True, default=20)
        dt: float = eqx.field(static=True, default=0.1)
        target: float = eqx.field(static=True, default=1.0)

        def step(self, x, c):
            speed = x["speed"] + self.dt * (c["torque"] - jnp.sin(x["angle"]))
            return {"angle": x["angle"] + self.dt * speed, "speed": speed, "steps": x["steps"] + 1}

        def loss(self, states, controls):
            del controls
            return jnp.mean((states["angle"][-1] - self.target) ** 2)

        def sample(self, key, n):
            return {
                "angle": jax.random.uniform(key, (n, 2), minval=-0.5, maxval=0.5),
                "speed": jnp.zeros((n, 2)),
                "steps": jnp.zeros((n,), jnp.int32),
            }

        def init_controller(self, key):
            return MLP(6, 2, (16,), key=key, zero_final_kernel=False)

        def controller(self, params, x):
            features = jnp.concatenate([jnp.cos(x["angle"]), jnp.sin(x["angle"]), x["speed"]], axis=-1)
            return {"torque": jax.vmap(params)(features)}

    return DictPendulums


def dict_task(**settings):
    """A `DictPendulums` task (a Task with pytree states and controls) with the given settings."""
    return _dict_task_class()(**settings)


VARIANTS = (("R", "auto"), ("M", "auto"), ("S", "auto"), ("N", "auto"), ("C", "joint"), ("C", "two_pass"))


def task_mode_gradients(task, params, x0, variants=VARIANTS, naive_modes="RMSN", *, one_program=True):
    """Every `(mode, backward)` variant's ``(value, update, info)`` from `sb.value_and_grad` and every naive mode's
    ``(value, gradient)`` (`task_naive_loss`): ``(ours, naive)`` keyed by variant and by mode. The gradients are of
    the inexact leaves of `params` (an Equinox module or any pytree). One compiled program for all, or with
    `one_program=False` one per variant (PhiFlow's pressure solve caches its gradient per trace and fails when one
    trace holds several of its backward passes)."""
    import equinox as eqx

    import stablebptt as sb

    diff, static = eqx.partition(params, eqx.is_inexact_array)

    def ours(variant, diff, x0):
        m, b = variant
        p = eqx.combine(diff, static)
        return sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, m, backward=b)(p, x0)

    def naive(m, diff, x0):
        return jax.value_and_grad(lambda d: task_naive_loss(task, eqx.combine(d, static), x0, m))(diff)

    if one_program:
        return jax.jit(lambda d, x: ({v: ours(v, d, x) for v in variants}, {m: naive(m, d, x) for m in naive_modes}))(
            diff, x0
        )
    return (
        {v: jax.jit(lambda d, x, v=v: ours(v, d, x))(diff, x0) for v in variants},
        {m: jax.jit(lambda d, x, m=m: naive(m, d, x))(diff, x0) for m in naive_modes},
    )


class Resetting(Task):
    """A task that resets itself, as Brax's training wrapper does: a point drifting under its controls, an
    episode ending where the point leaves [-1.5, 1.5] (terminated) or at `episode` steps (truncated), the next
    state then its episode's first; each state keeps its step's point before the reset."""

    name: ClassVar[str] = "resetting"
    horizon: int = 12
    episode: int = 4

    @property
    def resets(self) -> bool:
        return True

    def sample(self, key, n):
        p = jax.random.uniform(key, (n, 2), minval=-1.0, maxval=1.0)
        zeros = jnp.zeros((n,), bool)
        return {"p": p, "first": p, "last": p, "t": jnp.zeros((n,), jnp.int32), "done": zeros, "trunc": zeros}

    def init_controller(self, key):
        k1, k2 = jax.random.split(key)
        return {"w": jax.random.normal(k1, (2, 2)) * 0.8, "b": jax.random.normal(k2, (2,)) * 0.3}

    def controller(self, params, x):
        return jnp.tanh(x["p"] @ params["w"] + params["b"])

    def step(self, x, c):
        p = x["p"] + 0.4 * c + 0.3 * jnp.sin(2.0 * x["p"])
        t = x["t"] + 1
        terminated = jnp.any(jnp.abs(p) > 1.5, axis=1)
        truncated = (t >= self.episode) & ~terminated
        done = terminated | truncated
        fresh = jnp.where(done[:, None], x["first"], p)
        return {
            "p": fresh,
            "first": x["first"],
            "last": p,
            "t": jnp.where(done, 0, t),
            "done": done,
            "trunc": truncated,
        }

    def reward(self, x, c, x_next):
        return -jnp.sum(x_next["last"] ** 2, axis=1) - 0.1 * jnp.sum(c**2, axis=1)

    def critic_input(self, x):
        return x["p"]

    def episode_ends(self, x_next):
        return EpisodeEnds(x_next["done"], x_next["trunc"], x_next["last"])

    def loss(self, states, controls):
        return jnp.mean(jnp.sum(states["p"][1:] ** 2, axis=(0, 2)))
