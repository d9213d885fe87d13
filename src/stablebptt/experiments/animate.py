"""Animations of a trained controller: roll it out on a few test states of a run folder and write a GIF.

Cart pole: the cart with its poles. Repulsion: drivers and evaders with their trails and the target. Quantum:
the probability density ``|psi(x)|^2`` over time beside the target eigenstate's. Any other task draws itself
with its own ``draw(axes, states, controls) -> update``: `states` and `controls` are the rollout as pytrees of
numpy arrays, time-major, the drawn samples on axis 1 (one per axis of `axes`), and ``update(n)`` draws time
step ``n`` and returns the changed artists.

The panels, one per sample, lie in a roughly square grid (`grid_shape`); unused cells are blank. At most
`MAX_SAMPLES` samples are drawn, and the GIF is at most `MAX_GIF_PIXELS` on its longer side (panels shrink to fit).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import matplotlib.pyplot as plt  # the Agg backend: chosen by ..runs.plotting, before any figure is made
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..core import rollout
from ..core.checks import BadInput, check_positive_int
from ..runs import CHECKPOINT, PARAMS, RunConfig, RunFolder, use_precision
from ..runs.checkpoint import load_checkpoint
from ..runs.io import load_params, probe_writable
from ..runs.plotting import METHOD_COLORS
from ..tasks import TASKS, Task
from ..training.train import Trainer, make_data

if TYPE_CHECKING:
    from matplotlib.artist import Artist

    from ..tasks import CartPole, Quantum, Repulsion

Update = Callable[[int], Iterable["Artist"]]  # time index n -> the artists it changed
Drawer = Callable[[Sequence[Axes], Any, Any], Update]  # (axes, states, controls) -> update

MAX_SAMPLES = 16  # samples drawn at most; more asked for are cut to this (a 4 x 4 grid)
PANEL_INCHES = 3.2  # side of one panel when the GIF fits in MAX_GIF_PIXELS (in)
DPI = 72  # resolution of the GIF (pixels per inch)
MAX_GIF_PIXELS = 1024  # longer side of the GIF at most (px); panels shrink below PANEL_INCHES to fit
Log = Callable[[str], None]


def load_run(run_dir: str | os.PathLike[str], *, log: Log | None = None) -> tuple[RunConfig, Task, Any]:
    """The config, task and trained parameters of a run folder written by `stablebptt train`: its
    ``params.eqx``, or, for a run that has none yet (running, interrupted, or the file deleted), the parameters
    of its latest checkpoint (`log` says so).

    Raises:
        BadInput: if the folder, its config or its checkpoint are unreadable, or it has no parameters at all.
    """
    path = Path(run_dir)
    folder = RunFolder(run_dir)
    config = folder.read_config()
    use_precision(config)
    task = config.make_task()
    if (path / PARAMS).exists():
        _, key_init = jax.random.split(jax.random.PRNGKey(config.train.seed))
        like = eqx.filter_jit(task.init_controller)(key_init)  # compiled: eager initialisation is slow
        return config, task, load_params(path / PARAMS, like)
    state = (folder.status() or {}).get("status", "not started")
    if not (path / CHECKPOINT).exists():
        raise BadInput(
            f"{run_dir} has no trained parameters (no {PARAMS} and no {CHECKPOINT}; its run is {state}); "
            f"`stablebptt resume {run_dir}` trains it from epoch 0"
        )
    trainer = Trainer(task, config.train)
    checkpoint = load_checkpoint(path / CHECKPOINT, folder.read_record(), (trainer.key, trainer.initial))
    if log is not None:
        log(
            f"animate: {run_dir} has no {PARAMS} (its run is {state}); drawing the parameters of its checkpoint, "
            f"epoch {checkpoint.epoch} of {config.train.epochs}"
        )
    return config, task, trainer.params(checkpoint.state)


def test_states(task: Task, config: RunConfig, n: int) -> Any:
    """The first `n` states of the run's test set (the same data as in training), a pytree like the task's
    states."""
    t = config.train
    key_data, _ = jax.random.split(jax.random.PRNGKey(t.seed))
    sizes = t.n_train, max(t.n_test, n)
    data = eqx.filter_jit(make_data)(task, key_data, *sizes)
    return jax.tree.map(lambda leaf: leaf[:n], data.test)


def frame_indices(n_states: int, max_frames: int) -> np.ndarray:
    """Time indices of the frames: every k-th state so that at most `max_frames` are drawn, always the last."""
    stride = max(1, math.ceil(n_states / max_frames))
    idx = np.arange(0, n_states, stride)
    return idx if idx[-1] == n_states - 1 else np.append(idx, n_states - 1)


def drawn_samples(samples: int) -> int:
    """The number of samples drawn for `samples` asked for: at most `MAX_SAMPLES`.

    Raises:
        BadInput: if `samples` is not a positive integer.
    """
    return min(check_positive_int("samples", samples), MAX_SAMPLES)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a roughly square grid of `n` panels: ``ceil(sqrt(n))`` columns, as few rows as fit;
    up to 3 panels in one row (no empty cell)."""
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def figure_inches(rows: int, cols: int) -> tuple[float, float]:
    """(width, height) of the figure in inches: square panels of `PANEL_INCHES`, smaller where needed so that
    neither side exceeds `MAX_GIF_PIXELS` at `DPI`."""
    panel = min(PANEL_INCHES, MAX_GIF_PIXELS / (DPI * max(rows, cols)))
    return cols * panel, rows * panel


def panel_axes(n: int) -> tuple[Figure, list[Axes]]:
    """A figure with `n` panels in a grid (`grid_shape`, `figure_inches`): the used axes, row by row, as a flat
    list; the unused cells are turned off."""
    rows, cols = grid_shape(n)
    fig, grid = plt.subplots(rows, cols, figsize=figure_inches(rows, cols), squeeze=False)
    cells = list(grid.flat)
    for ax in cells[n:]:
        ax.set_axis_off()
    return fig, cells[:n]


def animate_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    samples: int = 3,
    fps: int = 8,
    max_frames: int = 40,
    log: Log | None = None,
) -> Path:
    """Roll the trained controller of `run_dir` out on `samples` test states and write a GIF, one panel per
    sample in a grid; at most `MAX_SAMPLES` are drawn, and `log` (if given) is called with one line when fewer
    than asked for are.

    Returns:
        The path of the GIF (default ``RUN_DIR/animation.gif``).

    Raises:
        BadInput: if `samples` is not a positive integer, `out` is a folder or in none, or the run is unreadable.
    """
    n = drawn_samples(samples)
    config, task, params = load_run(run_dir, log=log)
    drawer = drawer_of(task, config.task)
    out = Path(out) if out is not None else Path(run_dir) / "animation.gif"
    if out.is_dir():
        raise BadInput(f"--out {out} is a folder; give a file name such as {out / 'animation.gif'}")
    if out.suffix.lower() != ".gif":
        raise BadInput(
            f"--out {out}: animate writes a GIF; give a file name ending in .gif, e.g. {out.with_suffix('.gif')}"
        )
    if not out.parent.is_dir():
        raise BadInput(f"the folder of --out {out} does not exist")
    try:
        probe_writable(out.parent)
    except OSError as e:
        raise BadInput(
            f"--out {out}: cannot write in {out.parent} ({e.strerror}); allowed: a file in a folder you can write"
        ) from None
    if n < samples and log is not None:
        log(f"animate: drawing {n} of the {samples} samples asked for (at most {MAX_SAMPLES})")
    x0 = test_states(task, config, n)
    states, controls = jax.device_get(eqx.filter_jit(rollout)(task.step, task.controller, params, x0, task.horizon))
    states, controls = jax.tree.map(np.asarray, states), jax.tree.map(np.asarray, controls)
    method = config.train.method

    fig, axes = panel_axes(n)
    update = drawer(axes, states, controls)
    frames = frame_indices(jax.tree.leaves(states)[0].shape[0], max_frames)
    title = fig.suptitle("")

    def draw(n: int) -> Iterable[Artist]:
        title.set_text(f"{task.name}, method {method}: step {n} of {task.horizon}")
        return update(n)

    fig.tight_layout()
    animation = FuncAnimation(fig, draw, frames=frames, blit=False)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".gif")
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        animation.save(tmp, writer=PillowWriter(fps=fps), dpi=DPI)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return out


def drawer_of(task: Task, spec: str) -> Drawer:
    """``draw(axes, states, controls) -> update`` for `task` (named `spec` in its run): its own `draw` method,
    else the built-in animation of its kind; a one-line `ValueError` if it has neither."""
    own = getattr(task, "draw", None)
    if callable(own):
        return own
    builtin = TASKS.get(task.name)
    if task.name in DRAWERS and isinstance(builtin, type) and isinstance(task, builtin):
        return functools.partial(DRAWERS[task.name], task)
    raise BadInput(
        f"task {spec} cannot draw itself: it has no draw method and is none of the tasks with a "
        f"built-in animation ({', '.join(DRAWERS)}) (define draw(axes, states, controls) on the Task)"
    )


def _draw_cartpole(task: CartPole, axes: Sequence[Axes], states: np.ndarray, controls: np.ndarray) -> Update:
    """Each panel follows its cart (a window of ``2 * HALF_WIDTH`` around it) over a track with a mark every
    half unit, so that the poles are drawn large and the cart's motion shows as the track moving; the force
    and the mean cos θ of the poles (1: all upright) are the panel's title."""
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
        cart = plt.Rectangle((0, -0.08), 0.36, 0.16, color="0.25", zorder=3)
        ax.add_patch(cart)
        poles = [
            ax.plot([], [], "-o", color=METHOD_COLORS["R"], lw=3, ms=4, zorder=4)[0] for _ in range(states.shape[2] - 1)
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


def _draw_repulsion(task: Repulsion, axes: Sequence[Axes], states: np.ndarray, controls: np.ndarray) -> Update:
    nd = task.n_drivers
    pos = states[:, :, :, 0]  # (time, sample, object, xy)
    target = np.asarray(task.target, dtype=float)
    artists = []
    for i, ax in enumerate(axes):
        lim = max(4.5, float(np.abs(pos[:, i]).max()) + 0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.plot(*target, "x", color="k", ms=9, mew=2)
        trails = [
            ax.plot([], [], "-", color=METHOD_COLORS["S" if j < nd else "R"], lw=0.8, alpha=0.6)[0]
            for j in range(pos.shape[2])
        ]
        drivers = ax.plot([], [], "o", color=METHOD_COLORS["S"], ms=7, label="drivers")[0]
        evaders = ax.plot([], [], "o", color=METHOD_COLORS["R"], ms=5, label="evaders")[0]
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


def _draw_quantum(task: Quantum, axes: Sequence[Axes], states: np.ndarray, controls: np.ndarray) -> Update:
    x = np.asarray(task.grid())
    density = np.sum(states**2, axis=-1)  # (time, sample, points)
    target_amplitude = np.asarray(task.eigenstate(task.target), dtype=float)
    target = target_amplitude**2
    top = max(float(density.max()), float(target.max())) * 1.1
    artists = []
    for i, ax in enumerate(axes):
        ax.plot(x, target, "--", color="k", lw=1, label=f"|e{task.target}|²")
        line = ax.plot(x, density[0, i], "-", color=METHOD_COLORS["C"], lw=2, label="|ψ|²")[0]
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


DRAWERS: dict[str, Callable[[Any, Sequence[Axes], np.ndarray, np.ndarray], Update]] = {
    "cartpole": _draw_cartpole,
    "repulsion": _draw_repulsion,
    "quantum": _draw_quantum,
}
