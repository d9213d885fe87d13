"""Where a run came from (runs/provenance.py): each session that trains a run folder adds its entry to
provenance.json (the code's commit and whether it had changes, the libraries' versions, the processor, the
task's every field), a resumed run keeps the entries before it, a run begun again starts afresh; what cannot be
found is "unknown"."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess

import pytest

from stablebptt.runs import RunConfig, RunFolder
from stablebptt.runs.provenance import code_version, jsonable, library_versions

SMALL = {"epochs": 2, "n_train": 16, "n_test": 8, "batch_size": 8}


def config(epochs=2):
    return RunConfig.create("cartpole", {"n_poles": 1, "horizon": 10}, **{**SMALL, "epochs": epochs})


def test_each_session_adds_an_entry_and_a_fresh_start_begins_the_list_again(tmp_path):
    RunFolder(tmp_path / "run").start(config(2)).run()
    first = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert len(first) == 1 and first[0]["from_epoch"] == 0
    entry = first[0]
    assert entry["task"] == {
        "n_poles": 1,
        "horizon": 10,
        "duration": 1.0,
        "hidden": [100, 100],
        "loss_mode": "final",
        "zero_final_kernel": True,
    }
    for name in ("jax", "jaxlib", "optax", "equinox"):
        assert entry["versions"][name] == importlib.metadata.version(name)
    assert entry["processor"]["cpus"] >= 1 and entry["processor"]["model"]
    assert entry["devices"] and all(isinstance(d, str) and d for d in entry["devices"])
    assert set(entry) >= {"commit", "dirty", "time", "versions", "processor", "task"}

    RunFolder(tmp_path / "run").resume(epochs=3).run()
    resumed = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert resumed[0] == entry and resumed[1]["from_epoch"] == 2 and len(resumed) == 2

    RunFolder(tmp_path / "run").start(config(2), force=True).run()
    assert [e["from_epoch"] for e in json.loads((tmp_path / "run" / "provenance.json").read_text())] == [0]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_and_a_dirty_tree_are_read_from_git_and_unknown_outside_it(tmp_path):
    assert code_version(tmp_path) == {"commit": "unknown", "dirty": "unknown"}  # not a checkout

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", "code.py")
    git("commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert code_version(tmp_path) == {"commit": head.stdout.strip(), "dirty": False}
    (tmp_path / "runs.csv").write_text("untracked files are not code changes\n")
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("a = 2\n")
    assert code_version(tmp_path)["dirty"] is True


def test_versions_and_values_as_json():
    versions = library_versions()
    assert set(versions) == {"stablebptt", "python", "jax", "jaxlib", "optax", "equinox", "numpy"}
    import numpy as np

    assert jsonable({"a": np.float32(0.5), "b": (1, np.arange(2)), 3: None}) == {"a": 0.5, "b": [1, [0, 1]], "3": None}
