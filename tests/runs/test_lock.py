"""The run folder's lock and the states a run is left in: one writer at a time, no ``.lock`` left by a clean
finish (or by Ctrl-C), a run stopped by Ctrl-C recorded as interrupted, and resumed to the end."""

from __future__ import annotations

import json

import pytest

from stablebptt.runs import RunConfig, RunFolder, RunLocked
from stablebptt.runs.lock import LOCK, RunLock, locked

TINY = {"method": "C", "epochs": 3, "n_train": 16, "n_test": 16}


def test_one_holder_at_a_time_and_a_release_removes_the_file(tmp_path):
    with RunLock(tmp_path):
        assert locked(tmp_path) and (tmp_path / LOCK).read_text().strip().isdigit()
        with pytest.raises(RunLocked, match="being written by another process"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / LOCK).exists() and not locked(tmp_path)
    with RunLock(tmp_path):  # taken again after a release
        assert locked(tmp_path)
    (tmp_path / LOCK).write_text("12345\n")  # left by a killed process: free, taken over
    assert not locked(tmp_path)
    with RunLock(tmp_path):
        assert locked(tmp_path)
    assert not (tmp_path / LOCK).exists()


def test_ctrl_c_leaves_an_interrupted_run_that_resumes_to_the_end(tmp_path):
    config = RunConfig.create("cartpole", {"n_poles": 1, "horizon": 10}, **TINY)
    run = tmp_path / "run"

    def stop(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RunFolder(run).start(config).run(stop)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and "Ctrl-C" in status["message"]
    assert status["epoch"] == 2 and status["checkpoint_epoch"] == 2  # checkpoints every epoch by default
    assert RunFolder(run).status()["status"] == "interrupted"
    assert not (run / LOCK).exists()
    assert RunFolder(run).finished(config) is None
    with pytest.raises(
        ValueError,
        match=r"holds this run \(interrupted, 3 epochs configured\); continue it with "
        r"RunFolder\('[^']*run'\)\.resume\(\)",
    ):
        RunFolder(run).start(config)
    result = RunFolder(run).resume().run()
    assert [int(r["epoch"]) for r in result.metrics] == [1, 2, 3]
    assert RunFolder(run).status()["status"] == "complete" and RunFolder(run).finished(config) == "complete"
    assert not (run / LOCK).exists()
