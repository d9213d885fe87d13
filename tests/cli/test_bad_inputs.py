"""Every bad input through the real command line: exit 2, one line on stderr naming the problem, no traceback,
nothing created. The cases run as concurrent subprocesses (one folder each) to keep the suite fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--poles", "1", "--horizon", "10", "--epochs", "2", "--n-train", "16", "--n-test", "16"]


def _file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder\n")


def _user_folder(tmp: Path) -> None:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("precious\n")


def _corrupt_config(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text('{"task": "cartpole", "task_se')


def _not_a_config(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text('{"hello": 1}\n')


# (name, arguments, setup of the case's folder, words the error line must contain)
CASES = [
    ("unknown task", ["train", "pendulum"], None, ["pendulum", "cartpole"]),
    ("unknown method", ["train", "cartpole", "--method", "X"], None, ["--method", "'X'", "R, M, S, N, C"]),
    ("unknown optimizer", ["train", "cartpole", "--optimizer", "lbfgs"], None, ["--optimizer", "lbfgs", "adam"]),
    ("unknown clip mode", ["train", "cartpole", "--clip", "both"], None, ["--clip", "both", "norm"]),
    ("unknown loss mode", ["train", "cartpole", "--loss", "mean"], None, ["--loss", "mean", "final"]),
    ("zero epochs", ["train", "cartpole", "--epochs", "0"], None, ["--epochs", "'0'", "positive integer"]),
    ("negative epochs", ["train", "cartpole", "--epochs", "-5"], None, ["--epochs", "-5"]),
    ("non-numeric epochs", ["train", "cartpole", "--epochs", "ten"], None, ["--epochs", "ten", "integer"]),
    ("fractional epochs", ["train", "cartpole", "--epochs", "2.5"], None, ["--epochs", "2.5", "integer"]),
    ("zero batch size", ["train", "cartpole", "--batch-size", "0"], None, ["--batch-size", "'0'"]),
    ("batch larger than data", ["train", "cartpole", *TINY, "--batch-size", "32"], None,
     ["batch size 32", "16", "1..16"]),
    ("zero poles", ["train", "cartpole", "--poles", "0"], None, ["--poles", "'0'", "positive integer"]),
    ("zero horizon", ["train", "cartpole", "--horizon", "0"], None, ["--horizon", "'0'"]),
    ("negative lr", ["train", "cartpole", "--lr", "-1"], None, ["--lr", "-1", "positive"]),
    ("nan lr", ["train", "cartpole", "--lr", "nan"], None, ["--lr", "nan", "finite"]),
    ("non-numeric lr", ["train", "cartpole", "--lr", "fast"], None, ["--lr", "fast", "number"]),
    ("zero clip value", ["train", "cartpole", "--clip", "norm", "--clip-value", "0"], None, ["--clip-value", "'0'"]),
    ("negative seed", ["train", "cartpole", "--seed", "-1"], None, ["--seed", "-1", "non-negative"]),
    ("zero checkpoint-every", ["train", "cartpole", "--checkpoint-every", "0"], None, ["--checkpoint-every", "'0'"]),
    ("zero n-train", ["train", "cartpole", "--n-train", "0"], None, ["--n-train", "'0'"]),
    ("unknown option", ["train", "cartpole", "--bogus", "1"], None, ["--bogus"]),
    ("out is a file", ["train", "cartpole", *TINY, "--out", "afile"], _file, ["--out", "afile", "not a folder"]),
    ("out under a file", ["train", "cartpole", *TINY, "--out", "afile/run"], _file, ["afile", "not a folder"]),
    ("out not writable", ["train", "cartpole", *TINY, "--out", "/proc/stablebptt-run"], None,
     ["--out", "/proc", "cannot write"]),
    ("out holds no run", ["train", "cartpole", *TINY, "--out", "mine"], _user_folder, ["mine", "not empty"]),
    ("out holds no run, forced", ["train", "cartpole", *TINY, "--out", "mine", "--force"], _user_folder,
     ["mine", "not empty"]),
    ("unknown command", ["fly"], None, ["fly", "train"]),
    ("compare unknown method", ["compare", "cartpole", "--methods", "R,Z"], None, ["--methods", "'Z'"]),
    ("resume missing folder", ["resume", "nowhere"], None, ["nowhere", "does not exist"]),
    ("resume corrupt config", ["resume", "run"], _corrupt_config, ["config.json", "not valid JSON"]),
    ("resume not a config", ["resume", "run"], _not_a_config, ["config.json", "not a stablebptt run config"]),
    ("resume zero epochs", ["resume", "run", "--epochs", "0"], _not_a_config, ["--epochs", "'0'"]),
]


PARALLEL = 4


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run every case at once; return {name: (returncode, stderr, folder before, folder after)}."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    pending, running, results = list(CASES), [], {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            name, args, setup, _ = pending.pop(0)
            folder = tmp_path_factory.mktemp("case")
            if setup is not None:
                setup(folder)
            before = _snapshot(folder)
            proc = subprocess.Popen([sys.executable, "-m", "stablebptt", *args], cwd=folder, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            running.append((name, proc, folder, before))
        name, proc, folder, before = running.pop(0)
        _, stderr = proc.communicate(timeout=300)
        results[name] = (proc.returncode, stderr, before, _snapshot(folder))
    return results


def test_at_least_15_cases():
    assert len(CASES) >= 15 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, words", [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(outcomes, name, words):
    code, stderr, before, after = outcomes[name]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "error" in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert after == before, "the command created or changed files"


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = ["train", "cartpole", *TINY, "--batch-size", "32", "--debug"]
    proc = subprocess.run([sys.executable, "-m", "stablebptt", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "batch size 32" in proc.stderr
    assert list(tmp_path.iterdir()) == []
