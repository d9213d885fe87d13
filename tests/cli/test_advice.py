"""Every hint a command gives leads somewhere when followed (issue: reliability, round 3): `main` in this
process on tiny runs, each case followed to its end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

TINY = ["--horizon", "10", "--epochs", "3"]


def main_in(cwd, *args) -> int:
    """`stablebptt ARGS` in this process, from folder `cwd`."""
    from stablebptt.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(old)


ONE = ["cartpole", "--poles", "1", *TINY]


def _status(run) -> dict:
    return json.loads((run / "status.json").read_text())


def test_train_without_out_never_takes_another_runs_folder(tmp_path, capsys):
    assert main_in(tmp_path, "train", *ONE, "--method", "R") == 0
    first = tmp_path / "runs" / "cartpole-R-seed42"
    before = (first / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert main_in(tmp_path, "train", *ONE, "--method", "R", "--lr", "0.01") == 0
    captured = capsys.readouterr()
    assert "runs/cartpole-R-seed42 holds another run; this one goes to runs/cartpole-R-seed42-2" in captured.err
    assert "--force" not in captured.err and "files in runs/cartpole-R-seed42-2" in captured.out
    assert (first / "metrics.csv").read_bytes() == before
    assert json.loads((tmp_path / "runs" / "cartpole-R-seed42-2" / "config.json").read_text())["train"]["lr"] == 0.01
    # The same run again is found in its own folder (and refused there as complete, as with --out).
    assert main_in(tmp_path, "train", *ONE, "--method", "R", "--lr", "0.01") == 2
    assert "cartpole-R-seed42-2: already holds this run, complete" in capsys.readouterr().err


def test_a_run_that_failed_before_its_first_epoch_does_not_block_its_folder(tmp_path, capsys):
    out = tmp_path / "run"
    # A horizon that cannot fit in memory fails before any epoch; the folder holds its config and status.
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"task": "cartpole", "task_settings": {}, "train": {"epochs": 3}}))
    (out / "status.json").write_text(json.dumps({"status": "failed", "message": "SimulatorFault: ..."}))
    assert main_in(tmp_path, "train", *ONE, "--out", str(out)) == 0, capsys.readouterr().err
    assert _status(out)["status"] == "complete"
    # One that trained an epoch is kept: train refuses, and says how to continue it.
    status = _status(out)
    status.update(status="interrupted", epoch=2)
    (out / "status.json").write_text(json.dumps(status))
    capsys.readouterr()
    assert main_in(tmp_path, "train", *ONE, "--out", str(out)) == 2
    assert "continue it with `stablebptt resume" in capsys.readouterr().err


def test_resume_without_its_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main_in(tmp_path, "train", *ONE, "--out", str(out)) == 0
    (out / "checkpoint.eqx").unlink()
    metrics = (out / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert main_in(tmp_path, "resume", str(out), "--epochs", "5") == 2
    err = capsys.readouterr().err
    assert "has no checkpoint.eqx though its run saved one at epoch 3 (deleted?)" in err and "--from-scratch" in err
    assert (out / "metrics.csv").read_bytes() == metrics  # nothing changed
    assert main_in(tmp_path, "resume", str(out), "--epochs", "5", "--from-scratch") == 0
    assert _status(out)["epoch"] == 5 and len((out / "metrics.csv").read_text().splitlines()) == 6


def test_resume_with_a_checkpoint_of_another_run_says_that_first(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main_in(tmp_path, "train", *ONE, "--out", str(a)) == 0
    assert main_in(tmp_path, "train", *ONE, "--lr", "0.01", "--epochs", "2", "--out", str(b)) == 0
    (b / "checkpoint.eqx").write_bytes((a / "checkpoint.eqx").read_bytes())  # 3 epochs, another configuration
    capsys.readouterr()
    assert main_in(tmp_path, "resume", str(b)) == 2
    err = capsys.readouterr().err
    assert "allowed" not in err and "checkpoint" in err, err


def test_animate_a_run_without_params_uses_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main_in(tmp_path, "train", *ONE, "--out", str(out)) == 0
    (out / "params.eqx").unlink()
    capsys.readouterr()
    assert main_in(tmp_path, "animate", str(out), "--samples", "1", "--frames", "3") == 0
    captured = capsys.readouterr()
    assert "drawing the parameters of its checkpoint, epoch 3 of 3" in captured.err
    assert (out / "animation.gif").read_bytes()[:3] == b"GIF"
    (out / "checkpoint.eqx").unlink()
    assert main_in(tmp_path, "animate", str(out)) == 2
    err = capsys.readouterr().err
    assert "no params.eqx and no checkpoint.eqx" in err and f"stablebptt resume {out}" in err


def test_status_json_follows_the_epochs(tmp_path):
    seen = []

    from stablebptt.runs import RunConfig, RunFolder

    config = RunConfig.create("cartpole", {"n_poles": 1, "horizon": 10}, epochs=3, n_train=16, n_test=16)
    with RunFolder(tmp_path / "run").start(config) as session:
        session.run(lambda epoch, row: seen.append(_status(tmp_path / "run")["epoch"]))
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_is_an_interrupt_like_ctrl_c(tmp_path, sig, ctrl_c_reaches_children):
    out = tmp_path / "run"
    args = ["train", *ONE[:-2], "--epochs", "100000", "--n-train", "16", "--n-test", "16", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stablebptt", *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (out / "metrics.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"signal {sig!r} during training: still running 120 s later")
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"continue the run with `stablebptt resume {out}`" in lines[0]
    status = _status(out)
    assert status["status"] == "interrupted"
    assert status["message"] == (
        "stopped by SIGTERM" if sig == signal.SIGTERM else "stopped by Ctrl-C (KeyboardInterrupt)"
    )
    assert not (out / ".lock").exists()
