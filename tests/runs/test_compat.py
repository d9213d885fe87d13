"""Run folders written by stablebptt 0.1.0 (before `runs/`; see data/v0.1.0/README.md) resume with this
version: a complete run extends, an interrupted one finishes, a run with the old ``checkpoint`` option (now
``remat``) continues, and a sweep folder is recognised and extended. Their metrics continue those of a run
trained from scratch by this version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stablebptt.cli import main
from stablebptt.core import BadInput
from stablebptt.experiments.grid import expand
from stablebptt.experiments.sweep import sweep
from stablebptt.runs import RunConfig, RunFolder, config_hash
from stablebptt.runs.io import read_csv

DATA = Path(__file__).parent / "data" / "v0.1.0"
COLUMNS = ("loss", "train_loss", "test_loss", "grad_norm")


@pytest.fixture
def legacy(tmp_path):
    shutil.copytree(DATA, tmp_path / "legacy")
    return tmp_path / "legacy"


def _close(rows, expected):
    """Metrics equal up to float rounding (another CPU may round differently than the one that wrote them)."""
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in expected]
    for r, e in zip(rows, expected):
        np.testing.assert_allclose([r[k] for k in COLUMNS], [e[k] for k in COLUMNS], rtol=1e-5)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The complete run's configuration trained from scratch for 3 epochs by this version."""
    record = json.loads((DATA / "complete" / "config.json").read_text())
    config = RunConfig.from_json(record).replace(epochs=3)
    return RunFolder(tmp_path_factory.mktemp("fresh") / "run").start(config).run().metrics


def test_hashes_of_old_configs_are_unchanged():
    for path in sorted(DATA.rglob("config.json")):
        record = json.loads(path.read_text())
        assert RunConfig.from_json(record).hash() == config_hash(record), path


def test_complete_run_extends(legacy, fresh):
    run = legacy / "complete"
    old = read_csv(run / "metrics.csv")
    result = RunFolder(run).resume(epochs=3).run()
    assert result.status == "complete"
    _close(result.metrics[:2], old)
    _close(result.metrics, fresh)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3
    assert (run / "loss.png").exists()


def test_interrupted_run_finishes(legacy, fresh):
    run = legacy / "interrupted"
    assert RunFolder(run).status()["stale"]
    config = RunFolder(run).read_config()
    assert RunFolder(run).ensure(config) == "complete"
    _close(read_csv(run / "metrics.csv"), fresh)


def test_old_checkpoint_option_resumes_from_the_command_line(legacy, capsys):
    run = legacy / "remat-sqrt"
    assert RunFolder(run).read_config().train.remat == "sqrt"
    assert main(["resume", str(run), "--epochs", "3"]) == 0
    assert "R: final test loss" in capsys.readouterr().out
    record = json.loads((run / "config.json").read_text())
    assert record["train"]["checkpoint"] == "sqrt" and record["train"]["epochs"] == 3  # rewritten as it was


def test_old_sweep_is_recognised_and_extended(legacy):
    out = legacy / "sweep"
    grid = {
        "n_poles": [1],
        "horizon": [8],
        "hidden": [[8, 8]],
        "epochs": [3],
        "n_train": [16],
        "n_test": [16],
        "seed": [1, 2],
    }
    # With this version's defaults (Keras' Adam epsilon, C going on past a non-finite g_R) these are other runs:
    # refused, with the settings that continue them.
    with pytest.raises(BadInput, match="adam_eps='optax' regular_nonfinite='stop'"):
        sweep(out, expand("cartpole", grid), workers=1, log=None, report=False)
    runs = expand("cartpole", {**grid, "adam_eps": ["optax"], "regular_nonfinite": ["stop"]})
    assert sorted(r.name for r in runs) == sorted(p.name for p in out.iterdir() if p.is_dir())
    results = sweep(out, runs, workers=1, log=None, report=False)
    assert [r["status"] for r in results] == ["complete", "complete"]
    for run in runs:
        assert [r["epoch"] for r in read_csv(out / run.name / "metrics.csv")] == [1, 2, 3]
