"""Cart-pole swing-up with P poles on one cart (docs/tasks.md, cartpole)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.checks import check_choice, check_layer_widths, check_positive_int, check_positive_number, layer_widths
from ..nn import MLP
from .base import Option, Task

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

GRAVITY = 9.8
POLE_MASS = 0.1
TOTAL_MASS = 1.1
HALF_LENGTH = 0.5
LOSS_MODES = ("final", "continuous")


class CartPole(Task):
    """Swing up `n_poles` independent poles hanging from one cart by pushing the cart.

    State ``x``: ``(batch, 1 + n_poles, 2)``; entry 0 is the cart ``[x, x_dot]`` (m, m/s), entries 1.. are the
    poles ``[theta, theta_dot]`` (rad, rad/s), theta = 0 upright. Control: a force ``(batch,)`` (N).
    Semi-implicit Euler with ``dt = duration / horizon`` (s).
    """

    name: ClassVar[str] = "cartpole"
    summary: ClassVar[str] = "swing-up of 1-4 poles on a cart (docs/tasks.md, cartpole)"
    options: ClassVar[tuple[Option, ...]] = (
        Option("n_poles", "poles", "positive_int", "number of poles on the cart: 1 or more (1-4 in the paper)"),
        Option("loss_mode", "loss", "choice", "loss on the final state or every state", ("final", "continuous")),
        Option("horizon", "horizon", "positive_int", "unrolled steps Nt (dt = 1.0 / Nt)"),
    )
    complexity: ClassVar[str | None] = "n_poles"
    n_poles: int = eqx.field(static=True, default=2)
    duration: float = eqx.field(static=True, default=1.0)
    horizon: int = eqx.field(static=True, default=100)
    loss_mode: str = eqx.field(static=True, default="final")
    hidden: tuple[int, ...] = eqx.field(static=True, default=(100, 100), converter=layer_widths)
    zero_final_kernel: bool = eqx.field(static=True, default=True)

    def __check_init__(self) -> None:
        check_positive_int("n_poles", self.n_poles)
        check_positive_int("horizon", self.horizon)
        check_layer_widths("hidden", self.hidden)
        check_positive_number("duration", self.duration)
        check_choice("loss_mode", self.loss_mode, LOSS_MODES)

    @property
    def dt(self) -> float:
        return self.duration / self.horizon

    def step(self, x: jax.Array, force: jax.Array) -> jax.Array:
        cart_v = x[:, 0, 1]
        theta, theta_v = x[:, 1:, 0], x[:, 1:, 1]
        f = force[:, None]
        sin, cos = jnp.sin(theta), jnp.cos(theta)
        s = sin * theta_v**2
        a = (f + POLE_MASS * HALF_LENGTH * s) / TOTAL_MASS
        b = HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos**2 / TOTAL_MASS)
        theta_acc = (GRAVITY * sin - cos * a) / b
        cart_acc = (force + POLE_MASS * HALF_LENGTH * jnp.sum(s - theta_acc * cos, axis=1)) / TOTAL_MASS
        dt = self.dt
        theta_v = theta_v + dt * theta_acc
        theta = theta + dt * theta_v
        cart_v = cart_v + dt * cart_acc
        cart_x = x[:, 0, 0] + dt * cart_v
        cart = jnp.stack([cart_x, cart_v], axis=-1)[:, None]
        poles = jnp.stack([theta, theta_v], axis=-1)
        return jnp.concatenate([cart, poles], axis=1)

    def loss(self, states: jax.Array, controls: jax.Array) -> jax.Array:
        del controls
        theta = states[-1:, :, 1:, 0] if self.loss_mode == "final" else states[1:, :, 1:, 0]
        return 1.0 - jnp.mean(jnp.cos(theta))

    def reward(self, x: jax.Array, c: jax.Array, x_next: jax.Array) -> jax.Array:
        """``(batch,)``. Loss on the final state: the fall of the potential ``1 - mean cos(theta)`` over the step,
        so that an episode's rewards sum to the potential of its first state minus the loss (shaping that keeps
        the optimum); on every state: minus that state's share of the loss."""
        del c

        def potential(x: jax.Array) -> jax.Array:
            return 1.0 - jnp.mean(jnp.cos(x[:, 1:, 0]), axis=1)

        if self.loss_mode == "final":
            return potential(x) - potential(x_next)
        return -potential(x_next) / self.horizon

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        key_x, key_u = jax.random.split(key)
        x = jax.random.uniform(key_x, (n, 1 + self.n_poles, 2), minval=-1.0, maxval=1.0)
        u = jax.random.uniform(key_u, (n, self.n_poles), minval=-1.0, maxval=1.0)
        return x.at[:, 1:, 0].set(math.pi + u * math.pi / 6)

    def init_controller(self, key: jax.Array) -> MLP:
        return MLP(2 * (1 + self.n_poles), 1, self.hidden, key=key, zero_final_kernel=self.zero_final_kernel)

    def controller(self, params: MLP, x: jax.Array) -> jax.Array:
        return jax.vmap(params)(x)[:, 0]

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """Each panel follows its cart (a window of ``2 * HALF_WIDTH`` around it) over a track with a mark every
        half unit, so that the poles are drawn large and the cart's motion shows as the track moving; the force
        and the mean cos θ of the poles (1: all upright) are the panel's title."""
        import numpy as np
        from matplotlib.patches import Rectangle

        length = 1.0  # the full pole (twice the half-length of docs/tasks.md, cartpole)
        half_width = 1.6
        cart_x = states[:, :, 0, 0]
        reach = float(np.abs(cart_x).max()) + half_width + 1.0
        marks = np.arange(-math.ceil(reach), math.ceil(reach) + 0.5, 0.5)
        artists = []
        for ax in axes:
            ax.set_ylim(-1.25, 1.25)
            ax.set_aspect("equal")
            ax.axhline(0, color="0.6", lw=1.0)
            ax.vlines(marks, -0.06, 0.0, color="0.6", lw=0.8)
            ax.vlines(marks[marks == np.round(marks)], -0.12, 0.0, color="0.4", lw=1.0)  # whole units longer
            ax.axhline(length, color="0.85", lw=0.8, ls=":")  # the height of an upright pole
            cart = Rectangle((0, -0.08), 0.36, 0.16, color="0.25", zorder=3)
            ax.add_patch(cart)
            poles = [
                ax.plot([], [], "-o", color="tab:blue", lw=3, ms=4, zorder=4)[0] for _ in range(states.shape[2] - 1)
            ]
            ax.set_xticks([])
            ax.set_yticks([])
            artists.append((ax, cart, poles))

        def update(n: int) -> list[Artist]:
            for i, (ax, cart, poles) in enumerate(artists):
                x = states[n, i, 0, 0]
                ax.set_xlim(x - half_width, x + half_width)
                cart.set_x(x - 0.18)
                for p, line in enumerate(poles):
                    theta = states[n, i, 1 + p, 0]
                    line.set_data([x, x + length * np.sin(theta)], [0, length * np.cos(theta)])
                force = controls[min(n, controls.shape[0] - 1), i]
                upright = np.mean(np.cos(states[n, i, 1:, 0]))
                ax.set_title(f"x {x:+.2f}  force {force:+.2f}  cos θ {upright:+.2f}", fontsize=8)
            return []

        return update
