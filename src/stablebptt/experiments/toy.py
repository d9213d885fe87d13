"""The toy examples of the paper as figures: the recurrent toy problem and the rotation illustration.

1. Recurrent toy problem: simulator ``S(x, c) = x + c``, controller ``N(x; θ) = θ1 x^2 + θ2 x``, 4 steps from
   ``x0 = -0.3``, loss ``0.5 (x_4 - 2)^2``. The R, M and C update fields over ``θ ∈ [-4, 4]^2`` are computed
   with the library's own `value_and_grad` (a batch-free, scalar use of the core).
2. Rotation illustration: on ``L = |θ|^2`` the gradient field ("divergence"), the same plus a rotational
   component ("+ rotation") and their sign-agreement combination ("combination"), each followed by Adam.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from ..core import combine, value_and_grad
from ..core.checks import BadArgument
from ..runs.plotting import METHOD_COLORS, save_figure
from ..training.optim import make_optimizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Field = Callable[[jax.Array], tuple[jax.Array, jax.Array]]  # theta (2,) -> (loss, update (2,))

TOY_X0 = -0.3
TOY_TARGET = 2.0
TOY_STEPS = 4
TOY_LIMIT = 4.0
TOY_START = (-1.0, -3.5)
TOY_LR = 0.03
ROTATION_START = (2.0, 4.0)
ROTATION_LR = 0.1
ROTATION_STRENGTH = 2.0
ROTATION_LABELS = {"divergence": "R", "+ rotation": "M", "combination": "C"}  # colour of each field


class Path2D(NamedTuple):
    """An optimisation path: `thetas` ``(iterations + 1, 2)`` and the loss at each, `losses` ``(iterations + 1,)``."""

    thetas: np.ndarray
    losses: np.ndarray


def toy_step(x: jax.Array, c: jax.Array) -> jax.Array:
    """The toy simulator ``S(x, c) = x + c``."""
    return x + c


def toy_controller(theta: jax.Array, x: jax.Array) -> jax.Array:
    """The toy controller ``N(x; θ) = θ1 x^2 + θ2 x``."""
    return theta[0] * x**2 + theta[1] * x


def toy_loss(states: jax.Array, controls: jax.Array) -> jax.Array:
    """``0.5 (x_4 - y)^2`` on the final state."""
    del controls
    return 0.5 * (states[-1] - TOY_TARGET) ** 2


def toy_field(method: str) -> Field:
    """``θ -> (loss, update)`` of `method` (R, M or C) on the recurrent toy problem, via `value_and_grad`."""
    vg = value_and_grad(toy_loss, toy_step, toy_controller, TOY_STEPS, method)

    def field(theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        value, update, _ = vg(theta, jnp.asarray(TOY_X0, theta.dtype))
        return value, update

    return field


def rotation_fields(strength: float = ROTATION_STRENGTH) -> dict[str, Field]:
    """The three fields of the rotation illustration on ``L = |θ|^2``: ``g = 2θ``, ``g + strength * perp(g)``
    and ``combine(g + strength * perp(g), g)``."""

    def loss_and_grad(theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.sum(theta**2), 2 * theta

    def rotated(theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        value, g = loss_and_grad(theta)
        return value, g + strength * jnp.stack([-g[1], g[0]])

    def combined(theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        value, g = loss_and_grad(theta)
        return value, combine(rotated(theta)[1], g)

    return {"divergence": loss_and_grad, "+ rotation": rotated, "combination": combined}


def adam_path(field: Field, start: Sequence[float], iterations: int, lr: float) -> Path2D:
    """Follow `field` with Adam (Keras defaults) from `start` for `iterations` updates."""
    tx = make_optimizer("adam", lr)
    theta0 = jnp.asarray(start, dtype=jnp.result_type(float))

    def body(
        carry: tuple[jax.Array, optax.OptState], _: None
    ) -> tuple[tuple[jax.Array, optax.OptState], tuple[jax.Array, jax.Array]]:
        theta, state = carry
        value, update = field(theta)
        steps, state = tx.update(update, state, theta)
        return (jnp.asarray(optax.apply_updates(theta, steps)), state), (theta, value)

    (theta, _), (thetas, values) = jax.jit(lambda t: jax.lax.scan(body, (t, tx.init(t)), None, length=iterations))(
        theta0
    )
    last, _ = field(theta)
    return Path2D(
        np.concatenate([np.asarray(thetas), np.asarray(theta)[None]]), np.append(np.asarray(values), float(last))
    )


def field_on_grid(field: Field, n: int = 41, limit: float = TOY_LIMIT) -> tuple[np.ndarray, ...]:
    """`field` on an ``n x n`` grid over ``[-limit, limit]^2``: ``(t1, t2, loss, u1, u2)``, the last three
    of shape ``(n, n)`` indexed ``[i2, i1]`` (rows along θ2), as matplotlib's streamplot wants."""
    t = jnp.linspace(-limit, limit, n)
    t1, t2 = jnp.meshgrid(t, t)
    thetas = jnp.stack([t1.ravel(), t2.ravel()], axis=-1)
    values, updates = jax.jit(jax.vmap(field))(thetas)
    shape = t1.shape
    return (
        np.asarray(t),
        np.asarray(t),
        np.asarray(values).reshape(shape),
        np.asarray(updates[:, 0]).reshape(shape),
        np.asarray(updates[:, 1]).reshape(shape),
    )


def _field_panel(
    ax: Axes,
    t1: np.ndarray,
    t2: np.ndarray,
    u1: np.ndarray,
    u2: np.ndarray,
    path: Path2D,
    color: str,
    title: str,
    limit: float,
) -> None:
    from matplotlib.colors import LogNorm

    mag = np.hypot(u1, u2)
    floor, top = _log_range(mag)
    mesh = ax.pcolormesh(t1, t2, np.clip(mag, floor, top), norm=LogNorm(floor, top), cmap="Greys", shading="auto")
    plt.colorbar(mesh, ax=ax, label="|update|")
    # The optimizer follows -update: draw the descent direction.
    ax.streamplot(t1, t2, -u1, -u2, color="tab:gray", density=0.9, linewidth=0.6, arrowsize=0.7)
    _path(ax, path, color)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_title(title)
    ax.set_xlabel("θ1")
    ax.set_ylabel("θ2")


def _log_range(values: np.ndarray, low: float = 2.0, high: float = 98.0) -> tuple[float, float]:
    """A colour range for a log scale from percentiles of the positive values (fields span many decades)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return 1e-3, 1.0
    floor, top = np.percentile(positive, [low, high])
    return float(floor), float(max(top, floor * 10))


def _path(ax: Axes, path: Path2D, color: str) -> None:
    ax.plot(path.thetas[:, 0], path.thetas[:, 1], "-", color=color, lw=1.5)
    ax.plot(*path.thetas[0], "o", color=color, ms=5)
    ax.plot(*path.thetas[-1], "*", color=color, ms=9, mec="k", mew=0.5)


def _curves(ax: Axes, paths: dict[str, Path2D], colors: dict[str, str], title: str) -> None:
    for name, path in paths.items():
        ax.plot(np.arange(path.losses.size), np.maximum(path.losses, 1e-16), color=colors[name], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("Adam iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def plot_recurrent(
    path: str | os.PathLike[str],
    *,
    n: int = 41,
    start: Sequence[float] = TOY_START,
    lr: float = TOY_LR,
    iterations: int = 200,
) -> dict[str, Path2D]:
    """Draw the recurrent toy problem: loss landscape, R, M and C fields with Adam paths, loss curves."""
    paths, grids = {}, {}
    for method in ("R", "M", "C"):
        field = toy_field(method)
        grids[method] = field_on_grid(field, n)
        paths[method] = adam_path(field, start, iterations, lr)
    t1, t2 = grids["R"][:2]
    # The landscape on a 4x finer grid (the loss is cheap) so that the thin valley of minima shows.
    f1, f2, loss = field_on_grid(lambda th: (toy_field("R")(th)[0], th), 4 * (n - 1) + 1)[:3]

    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 5, figsize=(17.5, 3.3))
    ax = axes[0]
    floor, top = _log_range(loss, low=0.5)
    mesh = ax.imshow(
        np.clip(loss, floor, top),
        norm=LogNorm(floor, top),
        cmap="viridis",
        origin="lower",
        extent=(f1[0], f1[-1], f2[0], f2[-1]),
        aspect="auto",
        interpolation="nearest",
    )
    plt.colorbar(mesh, ax=ax, label="loss")
    ax.contour(f1, f2, loss, levels=[0.01], colors="w", linewidths=0.8)  # the valley of the minima
    for method, p in paths.items():
        _path(ax, p, METHOD_COLORS[method])
    ax.set_xlim(-TOY_LIMIT, TOY_LIMIT)
    ax.set_ylim(-TOY_LIMIT, TOY_LIMIT)
    ax.set_title("loss 0.5 (x₄ - 2)², 4 steps of x + θ1 x² + θ2 x")
    ax.set_xlabel("θ1")
    ax.set_ylabel("θ2")
    names = {"R": "R: regular gradient", "M": "M: modified update", "C": "C: combined update"}
    for ax, method in zip(axes[1:4], ("R", "M", "C")):
        _, _, _, u1, u2 = grids[method]
        _field_panel(ax, t1, t2, u1, u2, paths[method], METHOD_COLORS[method], names[method], TOY_LIMIT)
    _curves(axes[4], paths, METHOD_COLORS, f"Adam lr {lr} from θ = {tuple(start)}")
    fig.tight_layout()
    save_figure(fig, path)
    return paths


def plot_rotation(
    path: str | os.PathLike[str],
    *,
    n: int = 41,
    strength: float = ROTATION_STRENGTH,
    start: Sequence[float] = ROTATION_START,
    lr: float = ROTATION_LR,
    iterations: int = 200,
    limit: float = 5.0,
) -> dict[str, Path2D]:
    """Draw the rotation illustration: three fields with Adam paths and their loss curves."""
    fields = rotation_fields(strength)
    colors = {name: METHOD_COLORS[letter] for name, letter in ROTATION_LABELS.items()}
    fig, axes = plt.subplots(1, 4, figsize=(15.5, 3.5))
    paths = {}
    for ax, (name, field) in zip(axes, fields.items()):
        t1, t2, _, u1, u2 = field_on_grid(field, n, limit)
        paths[name] = adam_path(field, start, iterations, lr)
        _field_panel(ax, t1, t2, u1, u2, paths[name], colors[name], f"{name}", limit)
    _curves(axes[3], paths, colors, f"L = |θ|², Adam lr {lr} from θ = {tuple(start)}")
    fig.tight_layout()
    save_figure(fig, path)
    return paths


def run_toy(out: str | os.PathLike[str], *, n: int = 41) -> dict[str, dict[str, Path2D]]:
    """Write ``toy_recurrent.png`` and ``toy_rotation.png`` into `out`; return the Adam paths of each."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadArgument("$out exists and is not a folder; choose another path", out=out)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "recurrent": plot_recurrent(out / "toy_recurrent.png", n=n),
        "rotation": plot_rotation(out / "toy_rotation.png", n=n),
    }


def summary(results: dict[str, dict[str, Path2D]], at: Sequence[int] = (60, 200)) -> list[str]:
    """One line per figure: the loss of each path after the iterations in `at`."""
    lines = []
    for figure, paths in results.items():
        parts = []
        for name, p in paths.items():
            values = ", ".join(f"{p.losses[min(i, p.losses.size - 1)]:.2g} @{i}" for i in at)
            parts.append(f"{name}: {values}")
        lines.append(f"{figure}: " + "; ".join(parts))
    return lines
