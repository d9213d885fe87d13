"""Quantum control of a particle in a box (docs/tasks.md, quantum)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from ..core.checks import BadInput, check_positive_int, check_positive_number
from ..nn import CNN
from .base import Option, Task

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

LENGTH = 2.0  # the box is [0, LENGTH] with zero (Dirichlet) boundaries
MIN_POINTS = 7  # the smallest grid the CNN controller accepts


class Quantum(Task):
    """Drive a particle in a 1-D box into eigenstate `target` with a linear potential ``V(x) = c * x``.

    State ``psi``: ``(batch, n_points, 2)``, real and imaginary parts of the wave function on the interior
    points ``x_j = j * dx``, ``dx = 2 / (n_points + 1)``. Control ``c``: ``(batch,)``. One step is
    Crank-Nicolson for ``i psi_t = H psi``, ``H = -D2 + c x``, solved as a tridiagonal system:
    ``(I + i dt/2 H) psi' = (I - i dt/2 H) psi``. Loss (CONTINUOUS):
    ``sum_{n=1..Nt} (1 - |<e_target, psi_n>|^2)``, averaged over the batch (so 0..horizon).
    """

    name: ClassVar[str] = "quantum"
    summary: ClassVar[str] = "drive a particle in a box into an eigenstate (docs/tasks.md, quantum)"
    options: ClassVar[tuple[Option, ...]] = (
        Option("target", "target", "positive_int", "target eigenstate, 1..32 (3, 4, 5 in the paper)"),
        Option("horizon", "horizon", "positive_int", "unrolled Crank-Nicolson steps Nt (dt = 0.0625)"),
    )
    complexity: ClassVar[str | None] = "target"
    target: int = eqx.field(default=3)  # a leaf, not static: runs of several targets share one batched program
    n_points: int = eqx.field(static=True, default=32)
    dt: float = eqx.field(static=True, default=0.0625)
    horizon: int = eqx.field(static=True, default=128)
    filters: int = eqx.field(static=True, default=60)

    def __check_init__(self) -> None:
        check_positive_int("n_points", self.n_points)
        if self.n_points < MIN_POINTS:
            raise BadInput(f"n_points must be at least {MIN_POINTS} (for the CNN controller), got {self.n_points}")
        check_positive_int("target", self.target)
        if self.target > self.n_points:
            raise BadInput(f"target must be an eigenstate number from 1 to n_points={self.n_points}, got {self.target}")
        check_positive_int("horizon", self.horizon)
        check_positive_int("filters", self.filters)
        check_positive_number("dt", self.dt)

    @property
    def dx(self) -> float:
        return LENGTH / (self.n_points + 1)

    def grid(self, dtype: DTypeLike | None = None) -> jax.Array:
        """The interior points ``x_j = j * dx``, ``j = 1..n_points``: ``(n_points,)``."""
        return jnp.arange(1, self.n_points + 1, dtype=dtype) * self.dx

    def eigenstate(self, n: int, dtype: DTypeLike | None = None) -> jax.Array:
        """Eigenstate `n` of the box without potential, ``(n_points,)``, real, unit sum of squares."""
        j = jnp.arange(1, self.n_points + 1, dtype=dtype)
        e = jnp.sin(math.pi * n * j / (self.n_points + 1))
        return e / jnp.sqrt(jnp.sum(e**2))

    def hamiltonian(self, psi: jax.Array, c: jax.Array) -> jax.Array:
        """``H psi`` for complex ``psi (batch, n_points)`` and ``c (batch,)`` (zero boundaries)."""
        zero = jnp.zeros_like(psi[:, :1])
        left = jnp.concatenate([zero, psi[:, :-1]], axis=1)
        right = jnp.concatenate([psi[:, 1:], zero], axis=1)
        x = self.grid(psi.real.dtype)[None, :]
        return (2 * psi - left - right) / self.dx**2 + c[:, None] * x * psi

    def step(self, psi: jax.Array, c: jax.Array) -> jax.Array:
        z = jax.lax.complex(psi[..., 0], psi[..., 1])
        real = psi.dtype
        batch, n = z.shape
        half = 0.5j * self.dt
        x = self.grid(real)[None, :]
        diag = 1 + half * (2 / self.dx**2 + c[:, None] * x)
        off = jnp.full((batch, n), -half / self.dx**2, dtype=z.dtype)
        lower = off.at[:, 0].set(0)
        upper = off.at[:, -1].set(0)
        rhs = z - half * self.hamiltonian(z, c)
        z_next = jax.lax.linalg.tridiagonal_solve(lower, diag.astype(z.dtype), upper, rhs[..., None])[..., 0]
        return jnp.stack([z_next.real, z_next.imag], axis=-1).astype(real)

    def overlap(self, psi: jax.Array) -> jax.Array:
        """``|<e_target, psi>|^2`` over the trailing ``(n_points, 2)`` axes."""
        e = self.eigenstate(self.target, psi.dtype)[:, None]
        amplitude = jnp.sum(e * psi, axis=-2)  # (..., 2): real and imaginary part
        return jnp.sum(amplitude**2, axis=-1)

    def loss(self, states: jax.Array, controls: jax.Array) -> jax.Array:
        del controls
        return jnp.mean(jnp.sum(1.0 - self.overlap(states[1:]), axis=0))

    def reward(self, x: jax.Array, c: jax.Array, x_next: jax.Array) -> jax.Array:
        """``(batch,)``: the overlap with the target after the step, minus 1 (the step's share of the loss)."""
        del x, c
        return self.overlap(x_next) - 1.0

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        k_a, k_p = jax.random.split(key)
        a = jax.random.normal(k_a, (n, 2))
        p = jax.random.uniform(k_p, (n, 2), minval=0.0, maxval=2 * math.pi)
        basis = jnp.stack([self.eigenstate(1, a.dtype), self.eigenstate(2, a.dtype)])  # (2, n_points)
        coef = a / jnp.sqrt(jnp.sum(a**2, axis=1, keepdims=True))
        re = (coef * jnp.cos(p)) @ basis
        im = (coef * jnp.sin(p)) @ basis
        return jnp.stack([re, im], axis=-1)

    def init_controller(self, key: jax.Array) -> CNN:
        return CNN(self.n_points, 1, self.filters, key=key)

    def controller(self, params: CNN, psi: jax.Array) -> jax.Array:
        return jax.vmap(params)(psi)[:, 0]

    def draw(self, axes: Sequence[Axes], states: Any, controls: Any) -> Callable[[int], list[Artist]]:
        """The density |ψ|² against the target eigenstate's, with the control and the overlap."""
        import numpy as np

        x = np.asarray(self.grid())
        density = np.sum(states**2, axis=-1)  # (time, sample, points)
        target_amplitude = np.asarray(self.eigenstate(self.target), dtype=float)
        target = target_amplitude**2
        top = max(float(density.max()), float(target.max())) * 1.1
        artists = []
        for i, ax in enumerate(axes):
            ax.plot(x, target, "--", color="k", lw=1, label=f"|e{self.target}|²")
            line = ax.plot(x, density[0, i], "-", color="tab:green", lw=2, label="|ψ|²")[0]
            text = ax.text(0.02, 0.96, "", transform=ax.transAxes, va="top", fontsize=8)
            ax.set_xlim(0, 2)
            ax.set_ylim(0, top)
            ax.set_xlabel("x")
            if i == 0:
                ax.legend(loc="upper right", fontsize=7)
            artists.append((line, text))

        def update(n: int) -> list[Artist]:
            overlap = np.sum(np.einsum("j,sjk->sk", target_amplitude, states[n]) ** 2, axis=-1)
            for i, (line, text) in enumerate(artists):
                line.set_ydata(density[n, i])
                c = controls[min(n, controls.shape[0] - 1), i]
                text.set_text(f"c {c:+.2f}\n|<e,ψ>|² {overlap[i]:.2f}")
            return []

        return update
