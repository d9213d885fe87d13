from __future__ import annotations

import equinox as eqx
import jax
import pytest
from PIL import Image

from stablebptt.cli import main
from stablebptt.experiments.animate import animate_run, frame_indices
from stablebptt.runs import RunConfig
from stablebptt.runs.io import save_params, write_json
from stablebptt.tasks import make_task

SMALL = {
    "cartpole": {"n_poles": 2, "horizon": 12},
    "repulsion": {"n_drivers": 2, "n_evaders": 3, "horizon": 12},
    "quantum": {"target": 3, "horizon": 12},
}


def _run_dir(tmp_path, task_name, seed=0):
    """A run folder as `stablebptt train` leaves it (config.json, params.eqx), with untrained parameters."""
    out = tmp_path / task_name
    out.mkdir()
    settings = SMALL[task_name]
    write_json(out / "config.json", RunConfig.create(task_name, settings, method="C", epochs=1, seed=seed).to_json())
    task = make_task(task_name, **settings)
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
    (run / "params.eqx").write_bytes(b"not parameters")
    _one_line_error(capsys, ["animate", str(run)], "params.eqx")
    (run / "params.eqx").unlink()
    _one_line_error(capsys, ["animate", str(run)], "params.eqx", "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ["animate", str(empty)], "config.json")
