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
from ..core.checks import BadArgument, BadInput, check_positive_int
from ..runs import CHECKPOINT, PARAMS, RunConfig, RunFolder, use_precision
from ..runs.checkpoint import load_checkpoint
from ..runs.io import load_params, probe_writable
from ..tasks import TASKS, Task
from ..training.epoch import make_data
from ..training.train import Trainer, initial_params, seed_keys

if TYPE_CHECKING:
    from matplotlib.artist import Artist


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
        return config, task, load_params(path / PARAMS, initial_params(task, config.train))
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
    sizes = t.n_train, max(t.n_test, n)
    data = eqx.filter_jit(make_data)(task, seed_keys(t).data, *sizes)
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
        raise BadArgument(f"$out is a folder; give a file name such as {out / 'animation.gif'}", out=out)
    if out.suffix.lower() != ".gif":
        raise BadArgument(
            f"$out: animate writes a GIF; give a file name ending in .gif, e.g. {out.with_suffix('.gif')}", out=out
        )
    if not out.parent.is_dir():
        raise BadArgument("the folder of $out does not exist", out=out)
    try:
        probe_writable(out.parent)
    except OSError as e:
        raise BadArgument(
            f"$out: cannot write in {out.parent} ({e.strerror}); allowed: a file in a folder you can write", out=out
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
    """``draw(axes, states, controls) -> update`` for `task` (named `spec` in its run): its `Task.draw`; a
    one-line `BadInput` if it defines none."""
    if type(task).can_draw():
        return task.draw
    drawn = ", ".join(name for name, cls in TASKS.items() if cls.can_draw())
    raise BadInput(
        f"task {spec} cannot draw itself: it defines no draw method (the built-in tasks {drawn} do); define "
        "draw(axes, states, controls) on the Task"
    )
