"""SIGKILL a training process at chosen points (and at arbitrary moments), resume it, and get exactly the
files of an uninterrupted run: the same metrics (but epoch_time), parameters and checkpoint state."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stablebptt.runs import RunFolder

TINY = ["--poles", "1", "--horizon", "10", "--n-train", "16", "--n-test", "16", "--method", "C", "--epochs", "5"]


ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "STABLEBPTT_CACHE": "off"}  # the reference compiles on its own
ENV.pop("JAX_COMPILATION_CACHE_DIR", None)


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Processes after the reference share a persistent compilation cache (seconds less per process); the
    reference compiles on its own, so resumed runs do not reuse its executable."""
    yield
    ENV.pop("JAX_COMPILATION_CACHE_DIR", None)
    ENV["STABLEBPTT_CACHE"] = "off"


def use_cache(folder: Path) -> None:
    ENV.update(
        STABLEBPTT_CACHE=str(folder),
        JAX_COMPILATION_CACHE_DIR=str(folder),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


def cli(*args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "stablebptt", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def start_paused(*args, cwd, point):
    """Start `stablebptt ARGS` that pauses at fault point `point` ("NAME:EPOCH"); return once it is there."""
    mark = Path(cwd) / f"reached-{point.replace(':', '-')}"
    env = {**ENV, "STABLEBPTT_FAULT": point, "STABLEBPTT_FAULT_MARK": str(mark)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stablebptt", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not mark.exists():
        if proc.poll() is not None:
            pytest.fail(f"the process ended before reaching {point}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{point} not reached")
        time.sleep(0.05)
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def metrics_without_time(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert float(row.pop("epoch_time")) > 0
    return rows


def checkpoint_state(run: Path) -> tuple[int, bytes]:
    """The epoch and the serialised training state of the checkpoint (the header also holds epoch times)."""
    header, _, payload = (run / "checkpoint.eqx").read_bytes().partition(b"\n")
    return json.loads(header)["epoch"], payload


def assert_same_run(run: Path, reference: Path) -> None:
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert metrics_without_time(run) == metrics_without_time(reference)
    assert (run / "params.eqx").read_bytes() == (reference / "params.eqx").read_bytes()
    assert checkpoint_state(run) == checkpoint_state(reference)
    assert not list(run.glob(".*.tmp")), "temporary files left behind"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    proc = cli("train", "cartpole", *TINY, "--out", "run", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert len(metrics_without_time(folder / "run")) == 5
    use_cache(tmp_path_factory.mktemp("jax-cache"))
    return folder / "run"


# (fault point, extra options, epoch of the checkpoint left behind, half-written temporary file expected)
KILLS = [
    ("epoch:3", [], 2, False),  # epoch 3 computed, nothing of it written
    ("checkpoint:3", [], 2, True),  # halfway through writing checkpoint 3
    ("between:3", [], 3, False),  # epoch 3 fully written, before epoch 4
    ("checkpoint:1", [], None, True),  # first checkpoint half-written: resume from scratch
    ("epoch:4", ["--checkpoint-every", "2"], 2, False),  # epoch 3 only in metrics.csv, not in the checkpoint
    ("between:5", [], 5, False),  # all epochs done, parameters and status not written
]


FAST_KILLS = ("checkpoint:3",)  # the others in .ci/run's slow lane (5-15 s each)


@pytest.mark.parametrize(
    "point, extra, saved, partial",
    [pytest.param(*k, marks=() if k[0] in FAST_KILLS else pytest.mark.slow) for k in KILLS],
    ids=[k[0] + " ".join(k[1]) for k in KILLS],
)
def test_sigkill_and_resume_is_bit_identical(reference, tmp_path, point, extra, saved, partial):
    proc = start_paused("train", "cartpole", *TINY, *extra, "--out", "run", cwd=tmp_path, point=point)
    kill(proc)
    run = tmp_path / "run"
    status = RunFolder(run).status()
    assert status["status"] == "interrupted" and status["stale"] is True and "resume" in status["message"]
    assert json.loads((run / "status.json").read_text())["status"] == "running"  # as the killed process left it
    assert (run / ".lock").exists()  # left by the killed process, and free
    if saved is None:
        assert not (run / "checkpoint.eqx").exists()
    else:
        assert checkpoint_state(run)[0] == saved
    assert bool(list(run.glob(".checkpoint.eqx.*.tmp"))) == partial

    resumed = cli("resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, reference)
    assert not (run / ".lock").exists()  # a clean finish leaves no lock behind


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_lock_refuses_a_second_writer_and_is_taken_over_after_a_kill(reference, tmp_path):
    proc = start_paused("train", "cartpole", *TINY, "--out", "run", cwd=tmp_path, point="between:1")
    try:
        assert RunFolder(tmp_path / "run").status()["stale"] is False
        for args in (["train", "cartpole", *TINY, "--out", "run"], ["resume", "run"]):
            second = cli(*args, cwd=tmp_path)
            assert second.returncode == 2 and "Traceback" not in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1
            assert f"being written by another process (pid {proc.pid})" in second.stderr
    finally:
        kill(proc)
    # The dead process's lock is free; the folder holds this run unfinished, or a different run.
    again = cli("train", "cartpole", *TINY, "--out", "run", cwd=tmp_path)
    assert again.returncode == 2 and "stablebptt resume run" in again.stderr
    other = cli("train", "cartpole", *TINY, "--lr", "0.01", "--out", "run", cwd=tmp_path)
    assert other.returncode == 2 and "different run" in other.stderr and "--force" in other.stderr
    resumed = cli("resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "run", reference)


@pytest.mark.slow
def test_killed_at_arbitrary_moments_until_done(reference, tmp_path):
    """Kill after growing delays (startup, compilation, epochs, writes) and resume each time."""
    args = ["train", "cartpole", *TINY, "--out", "run"]
    for delay in (0.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0):
        proc = subprocess.Popen(
            [sys.executable, "-m", "stablebptt", *args],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        args = ["resume", "run"] if (tmp_path / "run" / "config.json").exists() else args
    final = cli("resume", "run", cwd=tmp_path)  # finishes the run, or says it is complete
    assert final.returncode == 0, final.stderr
    assert_same_run(tmp_path / "run", reference)
