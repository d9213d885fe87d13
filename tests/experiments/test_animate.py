from __future__ import annotations

import sys
import uuid

import equinox as eqx
import jax
import pytest
from PIL import Image

from stablebptt.cli import main
from stablebptt.core.checks import BadInput
from stablebptt.experiments import animate
from stablebptt.experiments.animate import (
    DPI,
    MAX_GIF_PIXELS,
    MAX_SAMPLES,
    PANEL_INCHES,
    animate_run,
    drawn_samples,
    figure_inches,
    frame_indices,
    grid_shape,
)
from stablebptt.runs import RunConfig
from stablebptt.runs.io import save_params, write_json
from stablebptt.tasks import make_task

SMALL = {
    "cartpole": {"n_poles": 2, "horizon": 12},
    "repulsion": {"n_drivers": 2, "n_evaders": 3, "horizon": 12},
    "quantum": {"target": 3, "horizon": 12},
}


PANEL_PX = PANEL_INCHES * DPI  # side of one full-size panel in the GIF (px)
DRAWING_MODULE = """
from stablebptt.tasks import TASKS

SEEN = []  # per call of draw: what it was given


class DrawnCartPole(TASKS["cartpole"]):
    def draw(self, axes, states, controls):
        cells = axes[0].figure.axes
        SEEN.append({"axes": len(axes), "samples": states.shape[1], "controls": controls.shape[1],
                     "off": sum(not ax.axison for ax in cells), "cells": len(cells)})
        dots = [ax.plot([], [], "o")[0] for ax in axes]

        def update(n):
            for i, dot in enumerate(dots):
                dot.set_data(states[n, i, :1, 0], states[n, i, 1:2, 0])
            return dots

        return update
"""


def _run_dir(tmp_path, task_name, seed=0, spec=None):
    """A run folder as `stablebptt train` leaves it (config.json, params.eqx), with untrained parameters; `spec`
    names a user task with the settings of `task_name`."""
    out = tmp_path / task_name
    out.mkdir()
    settings, spec = SMALL[task_name], spec or task_name
    write_json(out / "config.json", RunConfig.create(spec, settings, method="C", epochs=1, seed=seed).to_json())
    task = make_task(spec, **settings)
    _, key_init = jax.random.split(jax.random.PRNGKey(seed))
    save_params(out / "params.eqx", eqx.filter_jit(task.init_controller)(key_init))
    return out


def test_frame_indices_subsample_and_keep_the_last():
    assert list(frame_indices(5, 40)) == [0, 1, 2, 3, 4]
    idx = frame_indices(129, 40)
    assert len(idx) <= 41 and idx[0] == 0 and idx[-1] == 128


@pytest.mark.parametrize("task_name", sorted(SMALL))
def test_animate_writes_a_gif_with_several_frames(tmp_path, task_name):
    run = _run_dir(tmp_path, task_name)
    gif = animate_run(run, tmp_path / "a.gif", samples=2, max_frames=4)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames > 1


@pytest.fixture
def drawing_module(tmp_path, monkeypatch):
    """A module of a fresh name on the Python path with `DrawnCartPole`, a cart pole with its own `draw`."""
    name = f"drawn_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / f"{name}.py").write_text(DRAWING_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def test_grid_shape_is_roughly_square_and_the_gif_size_capped():
    shapes = {n: grid_shape(n) for n in (1, 2, 3, 4, 5, 16, 17, 100)}
    assert shapes == {1: (1, 1), 2: (1, 2), 3: (1, 3), 4: (2, 2), 5: (2, 3), 16: (4, 4), 17: (4, 5), 100: (10, 10)}
    assert figure_inches(2, 3) == pytest.approx((3 * PANEL_INCHES, 2 * PANEL_INCHES))
    for rows, cols in ((4, 4), (4, 5), (10, 10), (1, 1000)):
        assert max(figure_inches(rows, cols)) * DPI <= MAX_GIF_PIXELS + 1e-9


def test_five_samples_lie_in_a_grid(tmp_path):
    run = _run_dir(tmp_path, "cartpole")
    lines = []
    gif = animate_run(run, tmp_path / "a.gif", samples=5, max_frames=2, log=lines.append)
    with Image.open(gif) as im:
        width, height = im.size
    assert width < 5 * PANEL_PX and abs(width - 3 * PANEL_PX) <= 1 and abs(height - 2 * PANEL_PX) <= 1
    assert lines == []


def test_a_user_draw_gets_one_axis_per_sample_and_unused_cells_are_off(tmp_path, drawing_module):
    run = _run_dir(tmp_path, "cartpole", spec=f"{drawing_module}:DrawnCartPole")
    animate_run(run, tmp_path / "a.gif", samples=5, max_frames=2)
    assert sys.modules[drawing_module].SEEN == [{"axes": 5, "samples": 5, "controls": 5, "off": 1, "cells": 6}]


def test_more_samples_than_the_maximum_draw_the_maximum_and_say_so(tmp_path, drawing_module, monkeypatch):
    assert drawn_samples(MAX_SAMPLES + 84) == MAX_SAMPLES and drawn_samples(MAX_SAMPLES) == MAX_SAMPLES
    monkeypatch.setattr(animate, "MAX_SAMPLES", 4)  # a small maximum: a fast test
    run = _run_dir(tmp_path, "cartpole", spec=f"{drawing_module}:DrawnCartPole")
    lines = []
    gif = animate_run(run, tmp_path / "a.gif", samples=7, max_frames=2, log=lines.append)
    assert sys.modules[drawing_module].SEEN == [{"axes": 4, "samples": 4, "controls": 4, "off": 0, "cells": 4}]
    assert len(lines) == 1 and "\n" not in lines[0] and "4 of the 7 samples" in lines[0]
    with Image.open(gif) as im:
        width, height = im.size
    assert abs(width - 2 * PANEL_PX) <= 1 and abs(height - 2 * PANEL_PX) <= 1


def test_samples_must_be_a_positive_integer(tmp_path):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(BadInput, match="samples must be a positive integer"):
            animate_run(tmp_path / "missing", samples=bad)


def test_animate_command_default_output(tmp_path, capsys):
    run = _run_dir(tmp_path, "repulsion")
    assert main(["animate", str(run), "--samples", "1", "--frames", "3"]) == 0
    with Image.open(run / "animation.gif") as im:
        assert im.n_frames > 1
    assert "animation.gif" in capsys.readouterr().out


def _one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for word in words:
        assert word in err


def test_animate_errors_are_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["animate", str(tmp_path / "missing")], "does not exist")
    run = _run_dir(tmp_path, "repulsion")
    _one_line_error(capsys, ["animate", str(run), "--out", "/proc/a.gif"], "--out /proc/a.gif", "cannot write")
    _one_line_error(capsys, ["animate", str(run), "--out", str(tmp_path / "x.txt")], "writes a GIF", "x.gif")
    (run / "params.eqx").write_bytes(b"not parameters")
    _one_line_error(capsys, ["animate", str(run)], "params.eqx")
    (run / "params.eqx").unlink()
    (run / "checkpoint.eqx").unlink(missing_ok=True)  # with a checkpoint, its parameters are drawn
    _one_line_error(capsys, ["animate", str(run)], "no trained parameters", "resume")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ["animate", str(empty)], "config.json")
