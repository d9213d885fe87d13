"""Batched groups (runs/batch.py): a group whose optimizer keeps its state in another structure than a run alone
(Keras' Adam state for ``adam_eps="optax"``, whose form is a traced value in the group) trains as the runs
alone do."""

from __future__ import annotations

import numpy as np
import pytest

from stablebptt.cli.main import main
from stablebptt.runs.io import read_csv


@pytest.mark.slow  # 7 s: the README's test command keeps its 6 minutes on 2 cores
def test_a_group_with_optax_epsilon_trains_as_its_runs_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--poles", "1", "--horizon", "20", "--epochs", "2", "--n-train", "16", "--n-test", "8"]
    common += ["--seeds", "0,1", "--adam-eps", "optax", "--workers", "1"]
    assert main(["sweep", "cartpole", *common, "--batch-runs", "on", "--out", "group"]) == 0
    assert main(["sweep", "cartpole", *common, "--batch-runs", "off", "--out", "alone"]) == 0
    runs = sorted(p.parent.name for p in (tmp_path / "group").glob("*/metrics.csv"))
    assert len(runs) == 2
    for run in runs:
        grouped = read_csv(tmp_path / "group" / run / "metrics.csv")
        alone = read_csv(tmp_path / "alone" / run / "metrics.csv")
        assert len(grouped) == len(alone) == 2
        np.testing.assert_allclose([r["test_loss"] for r in grouped], [r["test_loss"] for r in alone], rtol=1e-5)
