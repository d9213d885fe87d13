"""Cart with a chain of 1..3 poles (single, double, triple inverted pendulum), simulated by MuJoCo MJX.

A real engine as a task: the MJCF model is written here, `mujoco.mjx.step` advances it, and the state is the
`mjx.Data` itself (a pytree with float32, int32 and bool leaves; the core carries the non-float leaves through
unchanged). MuJoCo is an optional extra (``pip install 'stablebptt[mjx]'``): this module imports it lazily, so
the task's settings can be read without it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.checks import BadInput, check_layer_widths, check_positive_int, check_positive_number, layer_widths
from ..nn import MLP
from .base import Option, Task

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

MAX_POLES = 3
GRAVITY = 9.8  # m/s^2, as docs/tasks.md, cartpole (MuJoCo's default is 9.81)
CART_MASS = 1.0  # kg
POLE_MASS = 0.1  # kg, each link
POLE_LENGTH = 1.0  # m, each link: a uniform rod, the cart pole's full pole length (docs/tasks.md)
INSTALL_HINT = "task mjx-cartpole needs MuJoCo MJX: pip install 'stablebptt[mjx]'"


def _mjx() -> tuple[types.ModuleType, types.ModuleType]:
    """The `mujoco` and `mujoco.mjx` modules. MJX prints "Failed to import warp ..." to stdout when the optional
    GPU backend `warp` is absent (a `print` in `mujoco.mjx.warp`); that output is swallowed here."""
    with contextlib.redirect_stdout(io.StringIO()):
        import mujoco
        from mujoco import mjx
    return mujoco, mjx


def mjcf(n_poles: int, dt: float) -> str:
    """The MJCF text of a cart on an x rail with a chain of `n_poles` links hinged end to end.

    The cart (1 kg) slides along x without limits; link i (0.1 kg, 1 m, uniform rod: inertia m L^2 / 12 about
    its centre) turns about y at the tip of link i-1 (at the cart for i = 1); hinge angle 0 continues the
    previous link (for link 1: straight up), positive tips it towards +x. One motor on the rail: ctrl = force
    in N, unlimited. No collisions (contype 0), semi-implicit Euler with timestep `dt` (s).
    """
    rod = (
        f'<inertial pos="0 0 {POLE_LENGTH / 2}" mass="{POLE_MASS}" '
        f'diaginertia="{POLE_MASS * POLE_LENGTH**2 / 12} {POLE_MASS * POLE_LENGTH**2 / 12} 1e-6"/>'
    )
    chain = ""
    for i in reversed(range(n_poles)):
        pos = "0 0 0" if i == 0 else f"0 0 {POLE_LENGTH}"
        chain = (
            f'<body name="pole{i + 1}" pos="{pos}"><joint name="hinge{i + 1}" type="hinge" axis="0 1 0"/>'
            f'{rod}<geom type="capsule" fromto="0 0 0 0 0 {POLE_LENGTH}" size="0.02"/>{chain}</body>'
        )
    return f"""<mujoco model="cartpole-{n_poles}">
  <option timestep="{dt!r}" gravity="0 0 -{GRAVITY}" integrator="Euler"/>
  <default><geom contype="0" conaffinity="0" density="0"/></default>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0"/>
      <inertial pos="0 0 0" mass="{CART_MASS}" diaginertia="0.01 0.01 0.01"/>
      <geom type="box" size="0.2 0.1 0.05"/>
      {chain}
    </body>
  </worldbody>
  <actuator><motor name="force" joint="slider" gear="1"/></actuator>
</mujoco>"""


@functools.lru_cache(maxsize=16)
def _model(n_poles: int, dt: float) -> Any:
    """The `mjx.Model` (cached per setting): the MJCF of `mjcf` with the whole constraint solver disabled.

    Built eagerly even when first asked for inside a trace (`jax.ensure_compile_time_eval`), so the cache
    holds concrete arrays, never tracers."""
    mujoco, mjx = _mjx()
    model = mujoco.MjModel.from_xml_string(mjcf(n_poles, dt))
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONSTRAINT
    with jax.ensure_compile_time_eval():
        return mjx.put_model(model)


class MJXCartPole(Task):
    """Swing up a chain of `n_poles` links on a cart, simulated by MuJoCo MJX.

    Dynamics: `mjcf` (cart 1 kg on an unlimited rail; links of 0.1 kg and 1 m hinged end to end; g = 9.8),
    advanced by ``jax.vmap(mujoco.mjx.step)`` with MuJoCo's semi-implicit Euler and timestep `dt` (s); an
    episode lasts ``horizon * dt`` s. With one link this is the cart pole of docs/tasks.md, cartpole (same masses, the
    same rod, the same integrator; the tests check that the trajectories agree).

    Solver: the constraint solver is switched off (``opt.disableflags |= mjDSBL_CONSTRAINT``). The model has
    no contacts, joint limits or equality constraints, so nothing is lost, and each step is exactly the
    rigid-body forward dynamics (mass matrix, its factorisation, bias forces) plus Euler. MJX's default solver
    runs a `lax.while_loop`, which reverse mode cannot differentiate; ``opt.iterations = 1`` differentiates
    (one solver step whose line search is a `lax.scan`) but only matters where there are constraints: on this
    model with a rail limit added it gave the same gradients, cost 3.7x more per gradient (137 vs 37 ms, P=2,
    100 steps, batch 8) and took twice as long to compile.

    State: a batched `mjx.Data`, every leaf with a leading batch axis. ``qpos = [cart x (m), hinge angles
    (rad)]``, ``qvel = [cart velocity (m/s), hinge velocities (rad/s)]``, each ``(batch, 1 + n_poles)``. The
    absolute angle of link i from upright is the sum of hinge angles 1..i. Control: the force on the cart
    ``(batch,)`` in N (the motor's ctrl, unlimited), positive along +x.

    Loss: ``1 - mean(cos(absolute angles))`` over links and batch on the final state: 0 with every link up,
    1 on average for random angles, 2 with every link hanging down.

    Data (`sample`): absolute link angles ``pi + u * pi / 6`` (hanging down, u uniform in [-1, 1] per link),
    cart x and every velocity (cart and hinges) uniform in [-1, 1].

    Controller: `stablebptt.nn.MLP` on ``[cart x, cos and sin of each hinge angle, all qvel]``
    (``2 + 3 * n_poles`` features), scalar force output; its last kernel starts at zero by default (the
    published runs' quirk, docs/concepts.md, training protocol).

    Only ``qpos`` and ``qvel`` are read by the loss and the controller; the derived fields of the returned
    `mjx.Data` (body positions, mass matrix, ...) are MuJoCo's values at the start of the step, as after
    ``mj_step``.

    Cost with the defaults (P = 2, 50 steps of 20 ms: 1 s, batch 8, float32) on a shared 2-core CPU: a step
    0.5 ms (one jitted call), a forward rollout 1.2 ms, an update R 13.5 ms and C 20.6 ms (C / R = 1.5), an
    epoch (32 updates and the loss on 256 + 256 states) about 0.45 s (R) and 0.8 s (C), 13-20 s to compile an
    update. Details and the training results: docs/mjx.md.
    """

    name: ClassVar[str] = "mjx-cartpole"
    summary: ClassVar[str] = "cart pole with 1-3 poles simulated by MuJoCo MJX (needs pip install 'stablebptt[mjx]')"
    options: ClassVar[tuple[Option, ...]] = (
        Option("n_poles", "poles", "positive_int", "number of poles on the cart (1-3)"),
        Option("horizon", "horizon", "positive_int", "unrolled simulator steps"),
        Option("dt", "dt", "positive_float", "time step in seconds"),
    )
    complexity: ClassVar[str | None] = "n_poles"
    n_poles: int = eqx.field(static=True, default=2)
    horizon: int = eqx.field(static=True, default=50)
    dt: float = eqx.field(static=True, default=0.02)
    hidden: tuple[int, ...] = eqx.field(static=True, default=(100, 100), converter=layer_widths)
    zero_final_kernel: bool = eqx.field(static=True, default=True)

    def __check_init__(self) -> None:
        if isinstance(self.n_poles, bool) or self.n_poles not in range(1, MAX_POLES + 1):
            raise BadInput(f"n_poles must be 1, 2 or 3 (links in the chain), got {self.n_poles!r}")
        check_positive_int("horizon", self.horizon)
        check_positive_number("dt", self.dt)
        check_layer_widths("hidden", self.hidden)
        if importlib.util.find_spec("mujoco") is None:
            raise BadInput(INSTALL_HINT)

    @property
    def model(self) -> Any:
        """The `mjx.Model` of this setting (built once per ``(n_poles, dt)``)."""
        return _model(self.n_poles, float(self.dt))

    def data(self, qpos: jax.Array, qvel: jax.Array) -> Any:
        """A batched `mjx.Data` at ``qpos``, ``qvel`` (each ``(batch, 1 + n_poles)``), zero control, with every
        derived quantity (body positions, ...) computed by `mjx.forward`."""
        _, mjx = _mjx()
        model = self.model

        def one(q: jax.Array, v: jax.Array) -> Any:
            return mjx.forward(model, mjx.make_data(model).replace(qpos=q, qvel=v))

        return jax.vmap(one)(qpos, qvel)

    def step(self, x: Any, force: jax.Array) -> Any:
        _, mjx = _mjx()
        return jax.vmap(mjx.step, in_axes=(None, 0))(self.model, x.replace(ctrl=force[:, None]))

    def loss(self, states: Any, controls: jax.Array) -> jax.Array:
        del controls
        return 1.0 - jnp.mean(jnp.cos(absolute_angles(states.qpos[-1])))

    def sample(self, key: jax.Array, n: int) -> Any:
        key_x, key_u = jax.random.split(key)
        x = jax.random.uniform(key_x, (n, 2, 1 + self.n_poles), minval=-1.0, maxval=1.0)
        u = jax.random.uniform(key_u, (n, self.n_poles), minval=-1.0, maxval=1.0)
        phi = math.pi + u * math.pi / 6
        hinges = jnp.diff(phi, axis=1, prepend=0.0)
        return self.data(x[:, 0].at[:, 1:].set(hinges), x[:, 1])

    def init_controller(self, key: jax.Array) -> MLP:
        return MLP(2 + 3 * self.n_poles, 1, self.hidden, key=key, zero_final_kernel=self.zero_final_kernel)

    def controller(self, params: MLP, x: Any) -> jax.Array:
        return jax.vmap(params)(features(x.qpos, x.qvel))[:, 0]

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """Frames for `stablebptt animate`: the cart and its chain on each of `axes` (one per sample), the view
        following the cart along the (unlimited) rail, with a tick every metre on the ground.

        `states` and `controls` are NumPy pytrees, time-major, samples on axis 1. Returns ``update(n)`` that
        draws time index `n`.
        """
        import matplotlib.pyplot as plt
        import numpy as np

        qpos = np.asarray(states.qpos, dtype=float)  # (time, sample, 1 + n_poles)
        force = np.asarray(controls, dtype=float)
        phi = np.cumsum(qpos[..., 1:], axis=-1)
        tip_x = qpos[..., :1] + POLE_LENGTH * np.cumsum(np.sin(phi), axis=-1)
        tip_z = POLE_LENGTH * np.cumsum(np.cos(phi), axis=-1)
        reach = POLE_LENGTH * self.n_poles
        half = reach + 1.0
        ticks = np.arange(np.floor(qpos[..., 0].min() - half), np.ceil(qpos[..., 0].max() + half) + 1)
        artists = []
        for ax in axes:
            ax.set_ylim(-reach - 0.3, reach + 0.3)
            ax.set_aspect("equal")
            ax.axhline(0, color="0.7", lw=0.8)
            ax.plot(ticks, np.zeros_like(ticks), "|", color="0.6", ms=6)
            cart = plt.Rectangle((0, -0.1), 0.4, 0.2, color="0.3")
            ax.add_patch(cart)
            chain = ax.plot([], [], "-o", color="tab:blue", lw=2.5, ms=3)[0]
            text = ax.text(0.02, 0.96, "", transform=ax.transAxes, va="top", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            artists.append((ax, cart, chain, text))

        def update(n: int) -> list[Artist]:
            for i, (ax, cart, chain, text) in enumerate(artists):
                x = qpos[n, i, 0]
                ax.set_xlim(x - half, x + half)
                cart.set_x(x - 0.2)
                chain.set_data(np.r_[x, tip_x[n, i]], np.r_[0.0, tip_z[n, i]])
                f = force[min(n, force.shape[0] - 1), i]
                text.set_text(f"x {x:+.1f} m, force {f:+.1f} N\nmean cos φ {np.mean(np.cos(phi[n, i])):+.2f}")
            return [a for _, *drawn in artists for a in drawn]

        return update


def absolute_angles(qpos: jax.Array) -> jax.Array:
    """Angles of the links from upright (rad), ``(..., n_poles)``, from ``qpos (..., 1 + n_poles)``."""
    return jnp.cumsum(qpos[..., 1:], axis=-1)


def features(qpos: jax.Array, qvel: jax.Array) -> jax.Array:
    """Controller input ``(..., 2 + 3 n_poles)``: cart x, cos and sin of each hinge angle, all velocities."""
    hinges = qpos[..., 1:]
    return jnp.concatenate([qpos[..., :1], jnp.cos(hinges), jnp.sin(hinges), qvel], axis=-1)
