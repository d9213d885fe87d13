"""Incompressible flow in 2D, simulated by PhiFlow: steer a blob of smoke to a target with control forces.

The flow lives on a periodic square; every step adds the controller's force to the velocity, makes the velocity
divergence-free by PhiFlow's pressure projection (a conjugate-gradient solve, differentiated implicitly by
PhiFlow), then advects the smoke and the velocity semi-Lagrangianly. PhiFlow is the optional extra
``pip install 'stablebptt[phiflow]'``, imported when a step is traced; at the task's boundary the state is a dict
of arrays and PhiFlow's fields live only inside `step`.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.checks import BadInput, check_layer_widths, check_positive_int, check_positive_number, layer_widths
from ..nn import MLP
from .base import Option, Task
from .burgers import phiflow

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

LENGTH = 1.0  # the periodic square [0, 1) x [0, 1), m
BLOB_WIDTH = 0.1  # standard deviation of the smoke blobs, m
INSTALL_HINT = "task smoke needs PhiFlow: pip install 'stablebptt[phiflow]'"


def phiflow_smoke_step(
    smoke: jax.Array, velocity: jax.Array, dt: float, tolerance: float, max_iterations: int
) -> tuple[jax.Array, jax.Array]:
    """One step of incompressible flow carrying a passive marker, by PhiFlow, in the precision of the inputs.

    `smoke` ``(batch, n, n)`` is the marker's density at cell centres; `velocity` ``(batch, n, n, 2)`` the
    staggered (face-centred, MAC) velocity in m/s, component ``[..., 0]`` on the x faces and ``[..., 1]`` on
    the y faces (on a periodic grid each axis has n faces). The step: pressure projection (conjugate gradients
    to `tolerance`, relative and absolute, at most `max_iterations`; the constant pressure is the solve's one
    free direction), then semi-Lagrangian advection of the smoke and of the velocity by the projected velocity
    over `dt` s. Returns the new ``(smoke, velocity)``, shapes as given."""
    n = smoke.shape[-1]
    flow = phiflow()
    box = flow.Box(x=LENGTH, y=LENGTH)
    periodic = flow.extrapolation.PERIODIC
    with flow.math.precision(64 if smoke.dtype == jnp.float64 else 32):
        s = flow.CenteredGrid(
            flow.math.tensor(smoke, flow.batch("b"), flow.spatial("x", "y")), periodic, bounds=box, x=n, y=n
        )
        values = flow.math.tensor(velocity, flow.batch("b"), flow.spatial("x", "y"), flow.channel(vector="x,y"))
        v = flow.StaggeredGrid(values, periodic, bounds=box, x=n, y=n)
        # The adjoint solve of the backward pass too, built here: in the precision of the inputs (the backward
        # pass runs outside this block, where PhiML's default precision, float32, would apply).
        adjoint = flow.Solve("CG", tolerance, tolerance, max_iterations=max_iterations, rank_deficiency=1)
        solve = flow.Solve(
            "CG", tolerance, tolerance, max_iterations=max_iterations, rank_deficiency=1, gradient_solve=adjoint
        )
        with warnings.catch_warnings():
            # PhiML warns of the periodic Poisson problem's one free direction (the constant pressure) even when
            # told of it, as here; the solve handles it.
            warnings.filterwarnings("ignore", "Rank deficiency >= 1 detected", RuntimeWarning)
            v, _ = flow.fluid.make_incompressible(v, (), solve)
        s = flow.advect.semi_lagrangian(s, v, dt)
        v = flow.advect.semi_lagrangian(v, v, dt)
        return s.values.native(["b", "x", "y"]), v.values.native(["b", "x", "y", "~vector"])


def blobs(key: jax.Array, n: int, points: int) -> jax.Array:
    """`n` Gaussian blobs of smoke ``(n, points, points)`` on the periodic square, each at a uniformly random
    centre, standard deviation `BLOB_WIDTH` m, peak 1 (the distance taken periodically)."""
    centres = jax.random.uniform(key, (n, 2), maxval=LENGTH)
    cells = (jnp.arange(points) + 0.5) * LENGTH / points
    d = cells[None, :, None] - centres[:, None, None, :]  # (n, points, 1, 2) against (n, 1, 1, 2)
    d = (d + LENGTH / 2) % LENGTH - LENGTH / 2  # periodic distance per axis
    dx, dy = d[..., 0], d[..., 1]  # (n, points, 1) each: x along axis 1, y along axis 2
    return jnp.exp(-(dx**2 + jnp.swapaxes(dy, 1, 2) ** 2) / (2 * BLOB_WIDTH**2))


class Smoke(Task):
    """Steer a blob of smoke carried by an incompressible flow onto a target blob with a force at every face.

    Dynamics (`phiflow_smoke_step`, PhiFlow): ``v <- v + dt * f``, then the pressure projection, then the smoke
    and the velocity advected by the projected velocity; a periodic square of 1 m with `n_points` x `n_points`
    cells, `dt` s per step, `horizon` steps. Control: the force f ``(batch, n_points, n_points, 2)`` (m/s^2) on
    the staggered velocity's faces; only its divergence-free part moves anything.

    State: ``{"smoke": (batch, n, n), "velocity": (batch, n, n, 2), "target": (batch, n, n)}``; the target is
    carried through unchanged and the controller sees all three.

    Loss: ``mean((smoke_T - target)^2) + control_cost * mean(f^2)``, the first over cells and batch at the final
    state, the second over steps, faces and batch.

    Data (`sample`): the smoke a Gaussian blob (`blobs`) at a random place, the target another at an
    independent random place, the fluid at rest.

    Controller: `stablebptt.nn.MLP` on ``[smoke, target, velocity]`` flattened (``4 n^2`` inputs), ``2 n^2``
    forces out, its last kernel zero at the start (no force).

    Limits that come from PhiML's implicit gradient of the pressure solve (a custom VJP with a cache per trace):
    C works with its default joint reverse pass, not ``backward="two_pass"`` (two backward passes of the solve in
    one program fail); there is no forward mode, so `stablebptt diagnose` cannot measure perturbation growth here;
    and float64 needs ``phi.math.precision(64)`` around the whole computation, backward pass included.
    """

    name: ClassVar[str] = "smoke"
    summary: ClassVar[str] = (
        "steer smoke in a 2D incompressible flow (PhiFlow, pressure projection) onto a target "
        "(needs pip install 'stablebptt[phiflow]')"
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("n_points", "points", "positive_int", "grid cells per side of the periodic square"),
        Option("horizon", "horizon", "positive_int", "unrolled simulator steps"),
        Option("control_cost", "control-cost", "nonnegative_float", "weight of the force term in the loss"),
    )
    complexity: ClassVar[str | None] = "horizon"  # a longer horizon: more steps to differentiate through
    n_points: int = eqx.field(static=True, default=12)
    horizon: int = eqx.field(static=True, default=16)
    dt: float = eqx.field(static=True, default=0.1)
    control_cost: float = eqx.field(static=True, default=1e-4)
    tolerance: float = eqx.field(static=True, default=1e-5)
    max_iterations: int = eqx.field(static=True, default=200)
    hidden: tuple[int, ...] = eqx.field(static=True, default=(64, 64), converter=layer_widths)
    zero_final_kernel: bool = eqx.field(static=True, default=True)

    def __check_init__(self) -> None:
        check_positive_int("n_points", self.n_points)
        if self.n_points < 4:
            raise BadInput(f"n_points must be at least 4 (a blob needs a few cells), got {self.n_points}")
        check_positive_int("horizon", self.horizon)
        check_positive_number("dt", self.dt)
        check_positive_number("tolerance", self.tolerance)
        check_positive_int("max_iterations", self.max_iterations)
        value = self.control_cost
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise BadInput(f"control_cost must be a non-negative finite number, got {value!r}")
        check_layer_widths("hidden", self.hidden)
        if importlib.util.find_spec("phi") is None:
            raise BadInput(INSTALL_HINT)
        phiflow()  # here, outside the traces of training

    def step(self, x: dict[str, jax.Array], f: jax.Array) -> dict[str, jax.Array]:
        velocity = x["velocity"] + self.dt * f.reshape(x["velocity"].shape)
        smoke, velocity = phiflow_smoke_step(x["smoke"], velocity, self.dt, self.tolerance, self.max_iterations)
        dtype = x["smoke"].dtype
        return {"smoke": smoke.astype(dtype), "velocity": velocity.astype(dtype), "target": x["target"]}

    def loss(self, states: dict[str, jax.Array], controls: jax.Array) -> jax.Array:
        miss = jnp.mean((states["smoke"][-1] - states["target"][-1]) ** 2)
        return miss + self.control_cost * jnp.mean(controls**2)

    def sample(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        key_smoke, key_target = jax.random.split(key)
        p = self.n_points
        return {
            "smoke": blobs(key_smoke, n, p),
            "velocity": jnp.zeros((n, p, p, 2)),
            "target": blobs(key_target, n, p),
        }

    def init_controller(self, key: jax.Array) -> MLP:
        cells = self.n_points**2
        return MLP(4 * cells, 2 * cells, self.hidden, key=key, zero_final_kernel=self.zero_final_kernel)

    def controller(self, params: MLP, x: dict[str, jax.Array]) -> jax.Array:
        batch = x["smoke"].shape[0]
        inputs = jnp.concatenate(
            [x["smoke"].reshape(batch, -1), x["target"].reshape(batch, -1), x["velocity"].reshape(batch, -1)],
            axis=-1,
        )
        return jax.vmap(params)(inputs).reshape(x["velocity"].shape)

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """Frames for `stablebptt animate`: the smoke per sample, the target's outline in white."""
        smoke, target = states["smoke"], states["target"]
        images = []
        extent = (0.0, LENGTH, 0.0, LENGTH)
        top = float(jnp.max(smoke)) + 1e-6
        for i, ax in enumerate(axes):
            image = ax.imshow(smoke[0, i].T, origin="lower", extent=extent, vmin=0.0, vmax=top, cmap="viridis")
            ax.contour(target[0, i].T, levels=[0.5], colors="white", linewidths=0.8, origin="lower", extent=extent)
            ax.set(xlabel="x (m)", ylabel="y (m)")
            images.append(image)

        def update(n: int) -> list[Artist]:
            for i, image in enumerate(images):
                image.set_data(smoke[n, i].T)
            return list(images)

        return update
