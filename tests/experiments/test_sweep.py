"""Sweeps: grids, run folders, kill-and-rerun, failed and diverged runs, batched runs."""

from __future__ import annotations

import functools
import json
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stablebptt.cli.main import main
from stablebptt.experiments.grid import expand, paper_grid
from stablebptt.experiments.sweep import run_job, sweep
from stablebptt.runs import ensure_batch, plan_groups
from stablebptt.runs.io import read_csv

TINY = {"horizon": [10], "epochs": [2]}


def _epochs(run_dir: Path) -> list[int]:
    return [int(r["epoch"]) for r in read_csv(run_dir / "metrics.csv")]


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in read_csv(run_dir / "metrics.csv")]


def test_grid_product_names_and_paper_grids():
    runs = expand(
        "cartpole", {"method": ["R", "C"], "n_poles": [1, 2], "clip": ["none", "norm"], "seed": [0, 1], "horizon": [10]}
    )
    assert len(runs) == 16 and len({r.name for r in runs}) == 16
    assert runs[0].name == "method=R_poles=1_horizon=10_clip=none_seed=0"
    assert runs[0].config.task_settings == {"n_poles": 1, "loss_mode": "final", "horizon": 10}
    assert runs[0].config.train.clip == "none" and runs[1].config.train.seed == 1
    # A setting at its default is left out of the name, so that extending a grid keeps the names.
    assert expand("cartpole", {"lr": [1e-3]})[0].name == "method=C_poles=2_clip=none_seed=42"
    assert expand("cartpole", {"lr": [1e-2]})[0].name == "method=C_poles=2_clip=none_lr=0.01_seed=42"
    sizes = {task: len(expand(task, paper_grid(task))) for task in ("cartpole", "repulsion", "quantum")}
    assert sizes == {"cartpole": 48, "repulsion": 48, "quantum": 36}  # every clipping mode, as published
    with pytest.raises(ValueError, match="unknown settings"):
        expand("cartpole", {"n_pole": [1]})


def test_a_run_of_many_settings_gets_a_short_name_that_still_tells_runs_apart():
    """Settings past `MAX_SETTINGS_CHARS` characters end in a hash of the whole (a file name has 255 bytes at
    most); the seed stays last (groups of seeds are found by it), names stay distinct and repeat exactly."""
    from stablebptt.experiments.grid import MAX_SETTINGS_CHARS

    many = {
        "horizon": [10],
        "method": ["R"],
        "lr": [0.011, 0.012],
        "seed": [123456, 7],
        "adam_b1": [0.71],
        "adam_b2": [0.951],
        "adam_eps": ["optax"],
        "adam_epsilon": [1.5e-8],
        "schedule": ["exponential"],
        "decay_rate": [0.40602],
        "transition_steps": [128000],
        "clip": ["both"],
        "clip_value": [0.5],
        "clip_norm": [2.5],
        "n_train": [1024],
        "n_test": [64],
        "protocol": ["stream"],
        "window": [5],
        "episode_length": [10],
    }
    runs = expand("cartpole", many)
    names = [r.name for r in runs]
    assert len(set(names)) == 4 and names == [r.name for r in expand("cartpole", many)]
    for run in runs:
        settings, seed = run.name.rsplit("_seed=", 1)
        assert seed == str(run.config.train.seed) and len(settings) <= MAX_SETTINGS_CHARS
        assert "_h=" in settings and len(f"{run.name}.json.gz".encode()) < 255
    short = expand("cartpole", {"lr": [1e-2]})[0].name  # a short name is left as it is
    assert "_h=" not in short


def test_grid_of_other_task_fields_keeps_builtin_configs():
    """Fields without a CLI option (``--set`` in a sweep) are recorded and named only when the grid gives them."""
    runs = expand("cartpole", {"duration": [1.0, 2.0], "horizon": [10]})
    assert [r.name for r in runs] == [
        "method=C_poles=2_horizon=10_clip=none_seed=42",
        "method=C_poles=2_horizon=10_duration=2_clip=none_seed=42",
    ]
    assert runs[1].config.task_settings == {"n_poles": 2, "loss_mode": "final", "horizon": 10, "duration": 2.0}
    plain = expand("cartpole", {"horizon": [10]})[0].config.to_json()
    assert list(plain) == ["task", "task_settings", "train", "x64", "checkpoint_every", "version"]
    assert plain["task_settings"] == {"n_poles": 2, "loss_mode": "final", "horizon": 10}


def test_cli_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "cartpole", "--poles", "1,0"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["sweep", "cartpole", "--address", "x:1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend ray" in err


def test_dry_run_lists_the_paper_grid(capsys, tmp_path):
    assert main(["sweep", "cartpole", "--grid", "paper", "--clip", "none", "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "16 runs" and not any(tmp_path.iterdir())


def _run_cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-m", "stablebptt", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        text=True,
    )


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_kill_and_rerun_finishes_the_grid(tmp_path):
    """2 methods x 2 settings x 3 epochs: SIGKILL the whole process group mid-way, rerun, check every run."""
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "cartpole",
        "--methods",
        "R,C",
        "--poles",
        "1,2",
        "--horizon",
        "10",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    proc = _run_cli(args)
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if any(out.glob("*/metrics.csv")):  # some epochs done, most of the grid not
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed, "the sweep ended before it could be killed"
    done = [p for p in out.glob("*/status.json") if _status(p.parent)["status"] == "complete"]
    assert len(done) < 4

    rerun = _run_cli(args)
    text, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, text
    runs = sorted(p.parent for p in out.glob("*/config.json"))
    assert [r.name for r in runs] == [
        "method=C_poles=1_horizon=10_clip=none_seed=42",
        "method=C_poles=2_horizon=10_clip=none_seed=42",
        "method=R_poles=1_horizon=10_clip=none_seed=42",
        "method=R_poles=2_horizon=10_clip=none_seed=42",
    ]
    for r in runs:
        assert _status(r)["status"] == "complete"
        assert _epochs(r) == [1, 2, 3]  # every epoch once: nothing lost, nothing duplicated
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4 and all(",complete," in line for line in summary[1:])
    assert (out / "sweep.png").stat().st_size > 0

    # A third run of the same command does nothing.
    again = _run_cli(args)
    text, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and text.count(": already complete\n") == 4 and ": complete," not in text
    for r in runs:
        assert _epochs(r) == [1, 2, 3]


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from stablebptt import tasks
    from stablebptt.tasks.cartpole import CartPole

    class Broken(CartPole):
        def step(self, x, c):
            if self.n_poles == 2:
                raise RuntimeError("simulated crash")
            return super().step(x, c)

    monkeypatch.setitem(tasks.TASKS, "cartpole", Broken)
    runs = expand("cartpole", {**TINY, "method": ["R"], "n_poles": [1, 2], "lr": [1e-3, 1e6]})
    lines: list[str] = []
    results = sweep(tmp_path, runs, workers=1, log=lines.append)
    status = {Path(r["run_dir"]).name: r["status"] for r in results}
    assert status == {
        "method=R_poles=1_horizon=10_clip=none_seed=42": "complete",
        "method=R_poles=1_horizon=10_clip=none_lr=1e+06_seed=42": "diverged",
        "method=R_poles=2_horizon=10_clip=none_seed=42": "failed",
        "method=R_poles=2_horizon=10_clip=none_lr=1e+06_seed=42": "failed",
    }
    for name, s in status.items():
        record = _status(tmp_path / name)
        assert record["status"] == s
        if s == "failed":
            assert "simulated crash" in record["message"]
    summary = (tmp_path / "summary.md").read_text()
    assert "1 complete, 1 diverged, 2 failed" in summary
    assert "2 failed" in lines[-1]
    failed = [line for line in lines if ": failed," in line]
    assert len(failed) == 2 and all("simulated crash" in line for line in failed)  # the reason, from status.json


def test_runs_another_process_trains_are_waited_for_and_the_sweep_ends_complete(tmp_path):
    """Two sweeps on one folder: a run whose lock another writer holds is waited for, then finished (here by
    this sweep, as the other writer stops without training it); the result counts every run as complete."""
    import threading

    from stablebptt.runs.lock import RunLock

    runs = expand("cartpole", {**TINY, "method": ["R", "C"], "n_poles": [1]})
    held = tmp_path / runs[0].name  # the first job: locked when it starts
    held.mkdir(parents=True)
    lock = RunLock(held).__enter__()
    threading.Timer(1.0, lock.__exit__, (None, None, None)).start()
    lines: list[str] = []
    results = sweep(tmp_path, runs, workers=1, log=lines.append)
    assert [r["status"] for r in results] == ["complete", "complete"]
    assert [Path(r["run_dir"]).name for r in results] == [r.name for r in runs]
    assert any(line.startswith("waiting for 1 run that another process is training") for line in lines)
    assert lines[-1].startswith("2 runs in") and "2 complete" in lines[-1] and "locked" not in lines[-1]
    assert _epochs(held) == [1, 2]


MIXED = {
    **TINY,
    "method": ["R", "M", "C", "S"],
    "n_poles": [2],
    "clip": ["none", "norm"],
    "seed": [0, 1],
    "n_train": [32],
    "n_test": [16],
}


@pytest.fixture(scope="module")
def mixed_group(tmp_path_factory):
    """A mixed group (R, M, C, S x 2 clipping modes x 2 seeds) trained as one program, and the same runs trained
    one at a time."""
    root = tmp_path_factory.mktemp("mixed")
    runs = expand("cartpole", MIXED)
    assert plan_groups([r.config for r in runs]) == [list(range(16))]
    dirs = [str(root / "batched" / r.name) for r in runs]
    assert ensure_batch(dirs, [r.config for r in runs]) == dict.fromkeys(dirs, "complete")
    singles = [root / "single" / r.name for r in runs]
    for run, single in zip(runs, singles):
        assert run_job(str(single), run.config)[0]["status"] == "complete"
    return runs, [Path(d) for d in dirs], singles


def _assert_same_metrics(a: list[dict], b: list[dict], name: str) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b):
        for k in ra:
            np.testing.assert_allclose(ra[k], rb[k], rtol=2e-5, atol=1e-7, err_msg=f"{name} {k}")


@pytest.mark.slow  # 16 single runs plus the group (about 35 s): run by .ci/run
def test_mixed_group_equals_separate_runs(mixed_group):
    """Methods, clipping modes and seeds trained together (one vmapped program) give the metrics and files of
    separate runs; rerunning the group finds every run complete and changes nothing."""
    runs, batched, singles = mixed_group
    for run, b, single in zip(runs, batched, singles):
        a = _metrics(b)
        assert [r["epoch"] for r in a] == [1, 2]
        _assert_same_metrics(a, _metrics(single), run.name)
        assert np.isnan(a[0]["cosine"]) == (run.config.train.method != "C")
        assert sorted(p.name for p in b.iterdir() if not p.name.startswith(".")) == sorted(
            p.name for p in single.iterdir() if not p.name.startswith(".")
        )
        assert _status(b)["status"] == "complete"
    before = [(b / "metrics.csv").read_bytes() for b in batched]
    dirs = [str(b) for b in batched]
    assert ensure_batch(dirs, [r.config for r in runs]) == dict.fromkeys(dirs, "complete")
    assert before == [(b / "metrics.csv").read_bytes() for b in batched]


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_a_small_mixed_group_equals_separate_runs(tmp_path):
    """The fast check of the slow test above, in the default suite: R, C and S with different clipping and
    seeds, as one program, give the metrics of the runs trained one at a time (C's statistics only for C)."""
    grid = {**TINY, "method": ["R", "C", "S"], "n_poles": [1], "n_train": [16], "n_test": [8], "batch_size": [8]}
    every = {
        (r.config.train.method, r.config.train.clip, r.config.train.seed): r
        for r in expand("cartpole", {**grid, "clip": ["none", "norm"], "seed": [0, 1]})
    }
    runs = [every[k] for k in (("R", "none", 0), ("C", "norm", 1), ("S", "none", 1), ("C", "none", 0))]
    assert plan_groups([r.config for r in runs]) == [[0, 1, 2, 3]]
    dirs = [str(tmp_path / "batched" / r.name) for r in runs]
    assert ensure_batch(dirs, [r.config for r in runs]) == dict.fromkeys(dirs, "complete")
    for run, d in zip(runs, dirs):
        single = tmp_path / "single" / run.name
        assert run_job(str(single), run.config)[0]["status"] == "complete"
        batched = _metrics(Path(d))
        _assert_same_metrics(batched, _metrics(single), run.name)
        assert np.isnan(batched[0]["cosine"]) == (run.config.train.method != "C")


@pytest.mark.slow  # 16 single runs plus the group (about 35 s): run by .ci/run
def test_group_sharded_over_two_devices_equals_one_device(mixed_group, tmp_path):
    """The run axis of a group sharded over 2 (host) devices: 3 runs (padded to 4) give the metrics of the
    unsharded group."""
    runs, batched, _ = mixed_group
    pick = [0, 5, 10]  # R, M and C runs with different clipping and seeds
    script = (
        "import sys, jax; from stablebptt.experiments.grid import expand; from stablebptt.runs import ensure_batch\n"
        "assert len(jax.devices()) == 2, jax.devices()\n"
        f"runs = [expand('cartpole', {MIXED!r})[i] for i in {pick!r}]\n"
        "dirs = [sys.argv[1] + '/' + r.name for r in runs]\n"
        "print(ensure_batch(dirs, [r.config for r in runs]))\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for i in pick:
        _assert_same_metrics(_metrics(tmp_path / runs[i].name), _metrics(batched[i]), runs[i].name)


def test_plan_groups_splits_by_shape_and_by_method_on_request():
    runs = expand("cartpole", {**TINY, "method": ["R", "C"], "n_poles": [1, 2], "seed": [0, 1]})
    configs = [r.config for r in runs]
    groups = plan_groups(configs)
    assert sorted(len(g) for g in groups) == [4, 4]  # poles change shapes
    assert all(len({configs[i].task_settings["n_poles"] for i in g}) == 1 for g in groups)
    by_method = plan_groups(configs, mixed=False, max_size=1)
    assert sorted(functools.reduce(operator.iadd, by_method, [])) == list(range(8)) and all(
        len(g) == 1 for g in by_method
    )
    # Numeric settings the task can trace share a group: repulsion's rc.
    rep = expand("repulsion", {"horizon": [5], "rc": [1.0, 0.01], "method": ["R", "C"]})
    assert plan_groups([r.config for r in rep]) == [[0, 1, 2, 3]]


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_batch_runs_through_the_sweep_resume_and_diverge(tmp_path):
    """--batch-runs in a sweep: a diverging member is frozen and recorded, the others of its group go on; a
    group continues from its checkpoints."""
    grid = {**TINY, "method": ["R", "C"], "n_poles": [1], "lr": [1e-3, 1e6]}
    runs = expand("cartpole", grid)
    results = sweep(tmp_path, runs, workers=1, batch_runs=True, log=None)
    statuses = {Path(r["run_dir"]).name: r["status"] for r in results}
    assert statuses == {r.name: "diverged" if r.config.train.lr > 1 else "complete" for r in runs}
    for r in runs:
        if r.config.train.lr > 1:
            assert _status(tmp_path / r.name)["status"] == "diverged"
    runs = [r for r in runs if r.config.train.method == "R"]
    good = tmp_path / runs[0].name
    assert _epochs(good) == [1, 2]
    # Extending the grid to 4 epochs continues from the checkpoint of epoch 2 (same names, no duplicates).
    longer = [r for r in expand("cartpole", {**grid, "epochs": [4]}) if r.config.train.method == "R"]
    first = _metrics(good)
    results = sweep(tmp_path, longer, workers=1, batch_runs=True, log=None)
    assert sorted(r["status"] for r in results) == ["complete", "diverged"]
    assert _epochs(good) == [1, 2, 3, 4]
    np.testing.assert_equal(_metrics(good)[:2], first)  # NaN equals NaN here


def test_ensure_batch_refuses_runs_that_cannot_share_a_program(tmp_path):
    from stablebptt.core import BadInput

    runs = expand("cartpole", {**TINY, "n_poles": [1, 2]})
    dirs = [str(tmp_path / r.name) for r in runs]
    with pytest.raises(BadInput, match="cannot be trained as one group"):
        ensure_batch(dirs, [r.config for r in runs])
    assert not any(Path(d).exists() for d in dirs)


def _one_group_equals_separate_runs(tmp_path, runs) -> list[str]:
    """`runs` are planned as one group; trained as one, each run's metrics equal those of the run trained alone.
    Returns the group's run folders."""
    assert plan_groups([r.config for r in runs]) == [list(range(len(runs)))]
    dirs = [str(tmp_path / "batched" / r.name) for r in runs]
    assert ensure_batch(dirs, [r.config for r in runs]) == dict.fromkeys(dirs, "complete")
    for run, d in zip(runs, dirs, strict=True):
        single = tmp_path / "single" / run.name
        assert run_job(str(single), run.config)[0]["status"] == "complete"
        _assert_same_metrics(_metrics(Path(d)), _metrics(single), run.name)
    return dirs


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_a_group_with_another_recipe_equals_separate_runs(tmp_path):
    """Brax's APG recipe (exponential decay, Adam betas 0.7 / 0.95, clipping by norm then value) in a batched
    group of R and C runs with different clipping modes and seeds gives the runs trained one at a time."""
    recipe = {"schedule": ["exponential"], "decay_rate": [0.9], "adam_b1": [0.7], "adam_b2": [0.95], "clip_norm": [2.0]}
    grid = {**TINY, **recipe, "n_poles": [1], "n_train": [16], "n_test": [8], "batch_size": [8], "lr": [0.01]}
    runs = expand("cartpole", {**grid, "method": ["R", "C"], "clip": ["both", "value"], "seed": [0, 1]})
    runs = [r for r in runs if (r.config.train.method == "C") == (r.config.train.seed == 1)][:3]
    assert {r.config.train.clip for r in runs} == {"both", "value"} and len(runs) == 3
    dirs = _one_group_equals_separate_runs(tmp_path, runs)
    config = json.loads((Path(dirs[0]) / "config.json").read_text())
    assert {k: config["train"][k] for k in ("schedule", "adam_b1", "adam_b2")} == {
        "schedule": "exponential",
        "adam_b1": 0.7,
        "adam_b2": 0.95,
    }


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_a_group_of_stream_runs_equals_separate_runs(tmp_path):
    """Stream-protocol runs of R and C (different seeds and learning rates) as one batched program give
    the runs trained one at a time: the carried environments, clocks and keys of each member stay its own."""
    grid = {**TINY, "protocol": ["stream"], "window": [4], "episode_length": [7], "n_poles": [1], "n_train": [16]}
    grid = {**grid, "n_test": [8], "batch_size": [8], "method": ["R", "C"], "lr": [0.01, 0.003], "clip": ["none"]}
    runs = expand("cartpole", {**grid, "seed": [0, 1]})
    runs = [r for r in runs if (r.config.train.method == "C") == (r.config.train.seed == 1)][:3]
    assert len(runs) == 3
    _one_group_equals_separate_runs(tmp_path, runs)


def test_default_workers_follow_the_cpu_affinity():
    """Under ``taskset -c 0`` a sweep starts one worker, not one per core of the machine."""
    import shutil
    import subprocess
    import sys

    if shutil.which("taskset") is None:
        pytest.skip("no taskset here")
    code = "from stablebptt.experiments.backends import default_workers; print(default_workers())"
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
