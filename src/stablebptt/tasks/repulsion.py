"""Guidance by repulsion: drivers herd evaders to a target (docs/tasks.md, repulsion)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.checks import (
    BadInput,
    check_choice,
    check_layer_widths,
    check_positive_int,
    check_positive_number,
    layer_widths,
)
from ..nn import MLP
from .base import Option, Task

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

EPSILON = 0.1  # dist(r) = EPSILON + |r|: forces stay finite when objects coincide
DRIVER_DAMPING = 1.0
DRIVER_SPREAD = 0.2
EVADE = 15.0
EVADER_DAMPING = 4.0
FLOCK = 0.2
FLOCK_RANGE = 0.5
CENTRES = ("sum", "mean")


def _norm(r: jax.Array) -> jax.Array:
    """|r| over the last axis with a finite gradient at r = 0 (where it is 0)."""
    sq = jnp.sum(r**2, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _pairs(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Differences ``b_j - a_i`` of shape ``(batch, len(a), len(b), 2)`` and their ``dist``."""
    r = b[:, None, :, :] - a[:, :, None, :]
    return r, EPSILON + _norm(r)[..., None]


def _perp(v: jax.Array) -> jax.Array:
    return jnp.stack([-v[..., 1], v[..., 0]], axis=-1)


class Repulsion(Task):
    """`n_drivers` controlled drivers push `n_evaders` evaders towards `target` by repulsion.

    State ``x``: ``(batch, n_drivers + n_evaders, 2, 2)``, objects (drivers first), [position, velocity], xy.
    Control ``c``: ``(batch, n_drivers, 2)``, per driver the coefficients (c0, c1) of its acceleration along
    ``z`` and ``perp(z)``, with ``z = x_driver - centre(evaders)``. Explicit Euler with
    ``dt = duration / horizon``. Loss: mean squared distance of the evaders to `target` over steps 1..Nt plus
    ``rc * mean(c**2)``.

    Settings:
        centre: "sum" (**quirk** of the published code: the SUM of the evader positions) or "mean".
        zero_final_kernel: **quirk** of the published runs: the controller's output layer starts at zero.
    """

    name: ClassVar[str] = "repulsion"
    summary: ClassVar[str] = "drivers guide evaders to a target by repulsion (docs/tasks.md, repulsion)"
    options: ClassVar[tuple[Option, ...]] = (
        Option("n_drivers", "drivers", "positive_int", "number of controlled drivers"),
        Option("n_evaders", "evaders", "positive_int", "number of evaders to guide to the target"),
        Option("rc", "rc", "nonnegative_float", "weight of the control regularisation rc*mean(c^2)"),
        Option("horizon", "horizon", "positive_int", "unrolled steps Nt (dt = 4.0 / Nt)"),
        Option(
            "centre",
            "centre",
            "choice",
            "driver control axis relative to the sum (published quirk) or the mean of the evader positions",
            ("sum", "mean"),
        ),
    )
    complexity: ClassVar[str | None] = "rc"
    harder_when_smaller: ClassVar[bool] = True
    n_drivers: int = eqx.field(static=True, default=2)
    n_evaders: int = eqx.field(static=True, default=4)
    duration: float = eqx.field(static=True, default=4.0)
    horizon: int = eqx.field(static=True, default=60)
    rc: float = eqx.field(default=0.1)  # a leaf, not static: runs of several rc share one batched program
    target: tuple[float, float] = eqx.field(static=True, default=(0.0, 0.0), converter=tuple)
    centre: str = eqx.field(static=True, default="sum")
    hidden: tuple[int, ...] = eqx.field(static=True, default=(100, 100), converter=layer_widths)
    zero_final_kernel: bool = eqx.field(static=True, default=True)

    def __check_init__(self) -> None:
        check_positive_int("n_drivers", self.n_drivers)
        check_positive_int("n_evaders", self.n_evaders)
        check_positive_int("horizon", self.horizon)
        check_layer_widths("hidden", self.hidden)
        check_positive_number("duration", self.duration)
        check_choice("centre", self.centre, CENTRES)
        if isinstance(self.rc, bool) or not isinstance(self.rc, int | float) or not (0 <= self.rc < math.inf):
            raise BadInput(f"rc must be a non-negative number, got {self.rc!r}")
        if len(self.target) != 2 or not all(isinstance(t, int | float) and math.isfinite(t) for t in self.target):
            raise BadInput(f"target must be two finite numbers (x, y), got {self.target!r}")

    @property
    def dt(self) -> float:
        return self.duration / self.horizon

    def accelerations(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """Accelerations ``(batch, n_drivers + n_evaders, 2)`` of every object (docs/tasks.md, repulsion)."""
        nd = self.n_drivers
        pos, vel = x[:, :, 0], x[:, :, 1]
        pd, pe, vd, ve = pos[:, :nd], pos[:, nd:], vel[:, :nd], vel[:, nd:]

        evaders = jnp.sum(pe, axis=1, keepdims=True)
        if self.centre == "mean":
            evaders = evaders / self.n_evaders
        z = pd - evaders
        c0, c1 = c[..., 0:1], c[..., 1:2]
        off_d = ~jnp.eye(nd, dtype=bool)[None, :, :, None]
        r, d = _pairs(pd, pd)  # r[i, j] = x_j - x_i
        spread = jnp.sum(jnp.where(off_d, r / d**2, 0), axis=1)  # on driver j, from every other driver i
        acc_d = c0 * z + c1 * _perp(z) - DRIVER_DAMPING * vd + DRIVER_SPREAD * spread

        r, d = _pairs(pe, pd)  # r[j, i] = x_driver_i - x_evader_j
        evade = jnp.sum(-r / d**2, axis=2)
        off_e = ~jnp.eye(self.n_evaders, dtype=bool)[None, :, :, None]
        r, d = _pairs(pe, pe)  # r[j, i] = x_i - x_j
        flock = jnp.sum(jnp.where(off_e, (FLOCK_RANGE / d - 1.0) / d * r, 0), axis=2)
        acc_e = EVADE * evade - EVADER_DAMPING * ve + FLOCK * flock
        return jnp.concatenate([acc_d, acc_e], axis=1)

    def step(self, x: jax.Array, c: jax.Array) -> jax.Array:
        acc = self.accelerations(x, c)
        pos = x[:, :, 0] + self.dt * x[:, :, 1]
        vel = x[:, :, 1] + self.dt * acc
        return jnp.stack([pos, vel], axis=2)

    def loss(self, states: jax.Array, controls: jax.Array) -> jax.Array:
        evaders = states[1:, :, self.n_drivers :, 0]
        target = jnp.asarray(self.target, evaders.dtype).reshape(1, 1, 1, 2)
        return jnp.mean((evaders - target) ** 2) + self.rc * jnp.mean(controls**2)

    def reward(self, x: jax.Array, c: jax.Array, x_next: jax.Array) -> jax.Array:
        """``(batch,)``: minus the step's share of the loss (the evaders' squared distance to the target after
        the step, and the control cost of the step), so that an episode's rewards sum to minus the loss."""
        del x
        evaders = x_next[:, self.n_drivers :, 0]
        target = jnp.asarray(self.target, evaders.dtype).reshape(1, 1, 2)
        distance = jnp.mean((evaders - target) ** 2, axis=(1, 2))
        return -(distance + self.rc * jnp.mean(c**2, axis=tuple(range(1, c.ndim)))) / self.horizon

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        k_rd, k_ad, k_rc, k_ac, k_off = jax.random.split(key, 5)
        nd, ne = self.n_drivers, self.n_evaders
        radius = jax.random.uniform(k_rd, (n, nd), minval=3.0, maxval=4.0)
        angle = jax.random.uniform(k_ad, (n, nd), minval=0.0, maxval=2 * math.pi)
        drivers = radius[..., None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        radius = jax.random.uniform(k_rc, (n, 1), minval=1.0, maxval=2.0)
        angle = jax.random.uniform(k_ac, (n, 1), minval=0.0, maxval=2 * math.pi)
        centre = radius[..., None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        evaders = centre + jax.random.uniform(k_off, (n, ne, 2), minval=-0.5, maxval=0.5)
        pos = jnp.concatenate([drivers, evaders], axis=1)
        return jnp.stack([pos, jnp.zeros_like(pos)], axis=2)

    def init_controller(self, key: jax.Array) -> MLP:
        n_objects = self.n_drivers + self.n_evaders
        return MLP(4 * n_objects, 2 * self.n_drivers, self.hidden, key=key, zero_final_kernel=self.zero_final_kernel)

    def controller(self, params: MLP, x: jax.Array) -> jax.Array:
        return jax.vmap(params)(x).reshape(x.shape[0], self.n_drivers, 2)

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """Drivers (red) and evaders (blue) with their trails, and the target (x)."""
        import numpy as np

        nd = self.n_drivers
        pos = states[:, :, :, 0]  # (time, sample, object, xy)
        target = np.asarray(self.target, dtype=float)
        artists = []
        for i, ax in enumerate(axes):
            lim = max(4.5, float(np.abs(pos[:, i]).max()) + 0.5)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.plot(*target, "x", color="k", ms=9, mew=2)
            trails = [
                ax.plot([], [], "-", color="tab:red" if j < nd else "tab:blue", lw=0.8, alpha=0.6)[0]
                for j in range(pos.shape[2])
            ]
            drivers = ax.plot([], [], "o", color="tab:red", ms=7, label="drivers")[0]
            evaders = ax.plot([], [], "o", color="tab:blue", ms=5, label="evaders")[0]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.legend(loc="lower left", fontsize=7)
            artists.append((trails, drivers, evaders))

        def update(n: int) -> list[Artist]:
            for i, (trails, drivers, evaders) in enumerate(artists):
                for j, trail in enumerate(trails):
                    trail.set_data(pos[: n + 1, i, j, 0], pos[: n + 1, i, j, 1])
                drivers.set_data(pos[n, i, :nd, 0], pos[n, i, :nd, 1])
                evaders.set_data(pos[n, i, nd:, 0], pos[n, i, nd:, 1])
            return []

        return update
