"""The Ray backend runs the same runs as the local backend and writes the same folders, and survives a worker
that dies: Ray runs its task again and the run resumes from its checkpoint."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stablebptt.experiments import backends
from stablebptt.experiments.backends import run_jobs
from stablebptt.experiments.grid import expand
from stablebptt.experiments.sweep import sweep
from stablebptt.runs import RunFolder, same_run
from stablebptt.runs.io import read_csv, read_json

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


@pytest.mark.slow  # a sweep through Ray workers: 1-3 minutes on 2 cores (worker start-up and compiling)
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


def test_a_lost_or_failing_ray_task_is_reported_and_the_others_go_on(local_ray, monkeypatch):
    """A worker that dies on every try (after the retries) or a job that raises: `on_lost` gives the result."""
    monkeypatch.setattr(backends, "RAY_MAX_RETRIES", 1)  # one retry: two dead workers, not four
    jobs = [(abs, (-3,)), (int, ("x",)), (os._exit, (1,))]
    lost: dict[int, str] = {}
    results = dict(run_jobs(jobs, backend="ray", on_lost=lost.setdefault))
    assert results == {0: 3, 1: lost[1], 2: lost[2]}
    assert lost[1] == "the job raised ValueError: invalid literal for int() with base 10: 'x'"
    assert lost[2].startswith("Ray task lost after 1 retries (WorkerCrashedError: ")
    assert all("\n" not in m for m in lost.values())
    with pytest.raises(backends.JobLost, match="^job 0: the job raised ValueError"):
        list(run_jobs([(int, ("x",))], backend="ray"))


# ------------------------------------------------------------------------------------- a worker killed mid-run

SWEEP_ARGS = [
    "--poles",
    "1",
    "--horizon",
    "10",
    "--n-train",
    "16",
    "--n-test",
    "16",
    "--methods",
    "C",
    "--seeds",
    "1,2,3",
    "--epochs",
    "4",
    "--checkpoint-every",
    "1",
    "--batch-runs",
    "off",
]
GRID = {
    "n_poles": [1],
    "horizon": [10],
    "n_train": [16],
    "n_test": [16],
    "method": ["C"],
    "seed": [1, 2, 3],
    "epochs": [4],
}
TIMEOUT = 300  # seconds for each wait: Ray's start, JAX's compilations and the runs on 2 shared cores


def _descendants(pid: int) -> list[int]:
    """The pids of all processes descended from `pid` (from /proc; Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` and every process it started (Ray's head processes and workers) if it is still running
    (once it has ended, its `ray.shutdown` stopped them and its pid may belong to another process)."""
    if proc.poll() is not None:
        return
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def _wait_for_mark(mark: Path, proc: subprocess.Popen, err: Path) -> int:
    """The pid written by the process paused at the fault point, once it is there."""
    deadline = time.monotonic() + TIMEOUT
    while not mark.exists():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before any worker reached the fault point: {err.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no worker reached the fault point within {TIMEOUT} s")
        time.sleep(0.1)
    point, pid = mark.read_text().split()
    assert point == "between:2"
    return int(pid)


def _lock_holder(folder: Path) -> str | None:
    """The pid recorded in the run folder's lock file (None without one: a finished run may remove it)."""
    try:
        return (folder / ".lock").read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _metrics(run: Path) -> list[dict[str, str]]:
    """metrics.csv as written (text: NaN compares equal), without epoch_time."""
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("epoch_time")
    return rows


@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_is_retried_and_its_run_resumed(tmp_path):
    """SIGKILL the Ray worker of one run after its epoch 2 (CLI sweep, 2 workers): Ray runs the task again, the
    run resumes from its checkpoint, and the sweep ends with every run complete once and bit-identical."""
    runs = expand("cartpole", GRID)
    mark = tmp_path / "reached"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a new local Ray instance
    env.update(
        JAX_PLATFORMS="cpu",
        STABLEBPTT_FAULT="between:2",
        STABLEBPTT_FAULT_MARK=str(mark),
        STABLEBPTT_FAULT_SLEEP=str(2 * TIMEOUT),
    )
    command = [
        sys.executable,
        "-m",
        "stablebptt",
        "sweep",
        "cartpole",
        *SWEEP_ARGS,
        "--backend",
        "ray",
        "--workers",
        "2",
        "--out",
        "sweep",
    ]
    out, err = tmp_path / "sweep.out", tmp_path / "sweep.err"  # files, not pipes: nothing blocks on a full pipe
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr)
    try:
        pid = _wait_for_mark(mark, proc, err)
        assert pid in _descendants(proc.pid), "the paused process is not a worker of this sweep"
        holders = [d for d in (tmp_path / "sweep").iterdir() if _lock_holder(d) == str(pid)]
        assert len(holders) == 1, "the paused worker holds no run folder"
        killed = holders[0]
        assert RunFolder(killed).status()["status"] == "running" and len(_metrics(killed)) == 2
        os.kill(pid, signal.SIGKILL)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not end within {TIMEOUT} s of the kill")
    finally:
        _kill_tree(proc)
    assert proc.returncode == 0, err.read_text()[-3000:]
    out = out.read_text()

    sweep_dir = tmp_path / "sweep"
    names = sorted(r.name for r in runs)
    assert sorted(d.name for d in sweep_dir.iterdir() if d.is_dir()) == names
    logged = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]
    assert sorted(line.split(":")[0] for line in logged) == names, out  # each run reported exactly once
    assert all(": complete," in line for line in logged), out
    for run in runs:
        folder = sweep_dir / run.name
        assert RunFolder(folder).status()["status"] == "complete"
        assert same_run(read_json(folder / "config.json"), run.config)
        assert [int(row["epoch"]) for row in read_csv(folder / "metrics.csv")] == [1, 2, 3, 4]
        assert not list(folder.glob(".*.tmp")), f"temporary files left in {folder}"

    # The same run without a kill, in this process: the same metrics, parameters and final checkpoint.
    (run,) = [r for r in runs if r.name == killed.name]
    reference = tmp_path / "reference"
    assert sweep(reference, [run], backend="local", workers=1, log=None, report=False)[0]["status"] == "complete"
    assert _metrics(killed) == _metrics(reference / run.name)
    assert (killed / "params.eqx").read_bytes() == (reference / run.name / "params.eqx").read_bytes()
    checkpoints = [(d / "checkpoint.eqx").read_bytes().partition(b"\n")[2] for d in (killed, reference / run.name)]
    assert checkpoints[0] == checkpoints[1]  # the payload (its header holds epoch times)
