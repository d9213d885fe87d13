"""The Ray backend runs the same runs as the local backend and writes the same folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from stablebptt.experiments.grid import expand
from stablebptt.experiments.sweep import sweep
from stablebptt.runs.io import read_csv

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'stablebptt[ray]'); CI installs it")

# Ray starts its processes with fork+exec after JAX is imported; exec makes that safe.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))


def test_ray_backend_gives_the_metrics_of_the_local_backend(tmp_path, local_ray):
    runs = expand("cartpole", {"method": ["R", "C"], "horizon": [10], "epochs": [2], "n_poles": [1]})
    local = sweep(tmp_path / "local", runs, backend="local", workers=1, log=None)
    remote = sweep(tmp_path / "ray", runs, backend="ray", log=None)
    assert [r["status"] for r in local] == [r["status"] for r in remote] == ["complete", "complete"]
    for run in runs:
        a, b = tmp_path / "local" / run.name, tmp_path / "ray" / run.name
        assert _files(a) == _files(b)
        rows_a, rows_b = read_csv(a / "metrics.csv"), read_csv(b / "metrics.csv")
        assert len(rows_a) == len(rows_b) == 2
        for ra, rb in zip(rows_a, rows_b):
            ra.pop("epoch_time"), rb.pop("epoch_time")
            assert ra.keys() == rb.keys()
            assert all(ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]) for k in ra), (run.name, ra, rb)
    assert (tmp_path / "ray" / "summary.csv").exists()
