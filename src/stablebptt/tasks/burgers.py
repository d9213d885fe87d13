"""Burgers' equation in 1D, simulated by PhiFlow: steer a random velocity field to a target field with forces.

The classic control problem of differentiable-physics courses. PhiFlow (``phiflow``, its JAX backend) is an
optional extra (``pip install 'stablebptt[phiflow]'``): this module imports it when a step is traced, so the
task's settings can be read without it. At the task's boundary the state is a dict of arrays; PhiFlow's fields
live only inside `step`.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import warnings
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

LENGTH = 2 * math.pi  # the periodic domain [0, 2 pi)
MODES = 3  # Fourier modes of the random initial and target fields
INSTALL_HINT = "task burgers needs PhiFlow: pip install 'stablebptt[phiflow]'"


def phiflow() -> types.ModuleType:
    """PhiFlow's `phi.jax.flow`, imported without its side effects on the process: PhiML switches JAX to float64
    for everyone on import (``jax_enable_x64``), which is put back as it was, and warns that an extrapolation it
    defines (not used here) is experimental, which is silenced. Import it here first, outside any trace."""
    if "phi.jax.flow" in sys.modules:
        return sys.modules["phi.jax.flow"]
    x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]  # set at run time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from phi.jax import flow
    finally:
        if bool(jax.config.jax_enable_x64) != x64:  # type: ignore[attr-defined]
            jax.config.update("jax_enable_x64", x64)
    return flow


def phiflow_step(u: jax.Array, dt: float, viscosity: float) -> jax.Array:
    """One step of Burgers' equation ``du/dt + u du/dx = viscosity d2u/dx2`` on a periodic grid of cell-centred
    velocities `u` ``(batch, n)`` (m/s; cell width ``2 pi / n`` m), by PhiFlow: explicit diffusion, then
    semi-Lagrangian self-advection, each over `dt` seconds, in the precision of `u` (PhiFlow computes in float32
    unless told otherwise). Returns ``(batch, n)``."""
    n = u.shape[-1]
    flow = phiflow()
    with flow.math.precision(64 if u.dtype == jnp.float64 else 32):  # PhiFlow's own default is float32
        values = flow.math.expand(flow.math.tensor(u, flow.batch("b"), flow.spatial("x")), flow.channel(vector="x"))
        grid = flow.CenteredGrid(values, flow.extrapolation.PERIODIC, bounds=flow.Box(x=LENGTH), x=n)
        grid = flow.diffuse.explicit(grid, viscosity, dt)
        grid = flow.advect.semi_lagrangian(grid, grid, dt)
        return grid.values.vector["x"].native(["b", "x"])


def smooth_fields(key: jax.Array, n: int, points: int) -> jax.Array:
    """`n` random smooth periodic fields on `points` cell centres ``(n, points)``: the sum over modes k = 1..3 of
    ``(a_k sin(k x) + b_k cos(k x)) / k``, a and b uniform in [-1, 1]."""
    x = (jnp.arange(points) + 0.5) * LENGTH / points
    k = jnp.arange(1, MODES + 1)
    a, b = jax.random.uniform(key, (2, n, MODES), minval=-1.0, maxval=1.0)
    waves = a[..., None] * jnp.sin(k[:, None] * x) + b[..., None] * jnp.cos(k[:, None] * x)
    return jnp.sum(waves / k[:, None], axis=1)


class Burgers(Task):
    """Steer a velocity field that obeys Burgers' equation to a target field with a force at every cell.

    Dynamics (`phiflow_step`, PhiFlow): ``u_{t+1} = A(D(u_t)) + dt * f_t`` on a periodic domain of 2 pi m with
    `n_points` cells, D explicit diffusion with `viscosity` (m^2/s), A semi-Lagrangian self-advection, `dt` s per
    step, `horizon` steps. Control: the force f_t ``(batch, n_points)`` (m/s^2), one value per cell.

    State: ``{"u": (batch, n_points), "target": (batch, n_points)}``, the velocity field and the field to reach
    (carried through unchanged; the controller sees it).

    Loss: ``mean((u_T - target)^2) + control_cost * mean(f^2)``, the first over cells and batch at the final
    state, the second over steps, cells and batch.

    Data (`sample`): initial and target fields drawn independently by `smooth_fields` (three Fourier modes,
    values within about [-1.8, 1.8] m/s).

    Controller: `stablebptt.nn.MLP` on ``[u, target]`` (``2 n_points`` inputs), `n_points` forces out, its last
    kernel zero at the start (no force).
    """

    name: ClassVar[str] = "burgers"
    summary: ClassVar[str] = (
        "steer Burgers' equation (1D, periodic, PhiFlow) to a target field (needs pip install 'stablebptt[phiflow]')"
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("n_points", "points", "positive_int", "grid cells of the periodic domain"),
        Option("horizon", "horizon", "positive_int", "unrolled simulator steps"),
        Option("viscosity", "viscosity", "nonnegative_float", "viscosity in m^2/s"),
        Option("control_cost", "control-cost", "nonnegative_float", "weight of the force term in the loss"),
    )
    complexity: ClassVar[str | None] = "viscosity"  # less viscosity: steeper fronts, a harder task
    harder_when_smaller: ClassVar[bool] = True
    n_points: int = eqx.field(static=True, default=32)
    horizon: int = eqx.field(static=True, default=32)
    dt: float = eqx.field(static=True, default=0.03)
    viscosity: float = eqx.field(static=True, default=0.01)
    control_cost: float = eqx.field(static=True, default=1e-3)
    hidden: tuple[int, ...] = eqx.field(static=True, default=(64, 64), converter=layer_widths)
    zero_final_kernel: bool = eqx.field(static=True, default=True)

    def __check_init__(self) -> None:
        check_positive_int("n_points", self.n_points)
        check_positive_int("horizon", self.horizon)
        check_positive_number("dt", self.dt)
        for name in ("viscosity", "control_cost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise BadInput(f"{name} must be a non-negative finite number, got {value!r}")
        check_layer_widths("hidden", self.hidden)
        if importlib.util.find_spec("phi") is None:
            raise BadInput(INSTALL_HINT)
        phiflow()  # here, outside the traces of training

    def step(self, x: dict[str, jax.Array], f: jax.Array) -> dict[str, jax.Array]:
        u = phiflow_step(x["u"], self.dt, self.viscosity) + self.dt * f
        return {"u": u.astype(x["u"].dtype), "target": x["target"]}

    def loss(self, states: dict[str, jax.Array], controls: jax.Array) -> jax.Array:
        miss = jnp.mean((states["u"][-1] - states["target"][-1]) ** 2)
        return miss + self.control_cost * jnp.mean(controls**2)

    def sample(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        key_u, key_target = jax.random.split(key)
        return {"u": smooth_fields(key_u, n, self.n_points), "target": smooth_fields(key_target, n, self.n_points)}

    def init_controller(self, key: jax.Array) -> MLP:
        return MLP(2 * self.n_points, self.n_points, self.hidden, key=key, zero_final_kernel=self.zero_final_kernel)

    def controller(self, params: MLP, x: dict[str, jax.Array]) -> jax.Array:
        return jax.vmap(params)(jnp.concatenate([x["u"], x["target"]], axis=-1))

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """Frames for `stablebptt animate`: the velocity field (line) against its target (dashed) per sample."""
        cells = (jnp.arange(self.n_points) + 0.5) * LENGTH / self.n_points
        u, target = states["u"], states["target"]
        lines = []
        for i, ax in enumerate(axes):
            ax.plot(cells, target[0, i], "--", color="0.5", label="target")
            (line,) = ax.plot(cells, u[0, i], color="tab:blue", label="u")
            bound = float(max(jnp.max(jnp.abs(u[:, i])), jnp.max(jnp.abs(target[0, i])))) * 1.1 + 1e-6
            ax.set(xlim=(0, LENGTH), ylim=(-bound, bound), xlabel="x (m)", ylabel="u (m/s)")
            lines.append(line)
        axes[0].legend(fontsize=7)

        def update(n: int) -> list[Artist]:
            for i, line in enumerate(lines):
                line.set_ydata(u[n, i])
            return list(lines)

        return update
