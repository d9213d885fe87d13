"""The `train` and `compare` commands end to end, in subprocesses, on tiny settings."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest

TINY = ["--horizon", "10", "--epochs", "3"]


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "stablebptt", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_train_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    proc = run("train", "cartpole", "--poles", "1", "--method", "C", *TINY, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "cartpole" and config["task_settings"]["n_poles"] == 1
    assert config["train"]["method"] == "C" and config["train"]["epochs"] == 3
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["test_loss"])) for r in rows)
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "params.eqx").stat().st_size > 1000


def test_train_refuses_to_overwrite_another_run(tmp_path):
    out = tmp_path / "run"
    assert run("train", "cartpole", *TINY, "--out", str(out), cwd=tmp_path).returncode == 0
    before = (out / "metrics.csv").read_bytes()
    proc = run("train", "cartpole", *TINY, "--lr", "0.01", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (out / "metrics.csv").read_bytes() == before


def test_compare_writes_figure_and_table(tmp_path):
    proc = run("compare", "cartpole", "--poles", "1", *TINY, "--methods", "R,C", "--out", str(tmp_path / "cmp"),
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    assert [r["method"] for r in rows] == ["R", "C"]
    assert all(math.isfinite(float(r["final_test_loss"])) for r in rows)
    assert "final test loss" in proc.stdout


@pytest.mark.parametrize("args", [
    ["train", "pendulum"],
    ["train", "cartpole", "--method", "X"],
    ["train", "cartpole", "--poles", "0"],
    ["train", "cartpole", "--epochs", "-5"],
    ["train", "cartpole", "--lr", "fast"],
    ["train", "cartpole", "--optimizer", "lbfgs"],
    ["train", "cartpole", "--clip", "both"],
    ["compare", "cartpole", "--methods", "R,Z"],
])
def test_bad_input_is_one_line_exit_2(tmp_path, args):
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_checkpoint_and_truncation_options(tmp_path):
    """--checkpoint only changes memory use, not results; --truncation changes the update and is recorded."""
    base = ["train", "cartpole", "--poles", "1", *TINY, "--n-train", "16", "--n-test", "16"]
    plain = run(*base, "--out", str(tmp_path / "plain"), cwd=tmp_path)
    ckpt = run(*base, "--checkpoint", "sqrt", "--out", str(tmp_path / "ckpt"), cwd=tmp_path)
    trunc = run(*base, "--truncation", "3", "--out", str(tmp_path / "trunc"), cwd=tmp_path)
    assert plain.returncode == ckpt.returncode == trunc.returncode == 0, (ckpt.stderr, trunc.stderr)

    def losses(name):
        return [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / name / "metrics.csv"))]

    assert losses("ckpt") == pytest.approx(losses("plain"), rel=1e-5)
    assert losses("trunc") != pytest.approx(losses("plain"), rel=1e-5)
    config = json.loads((tmp_path / "trunc" / "config.json").read_text())
    assert config["train"]["truncation"] == 3 and "checkpoint" not in config["train"]
