"""`stablebptt plot`: figure and summary tables of finished and partial sweeps (synthetic run folders)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stablebptt.cli.main import main
from stablebptt.experiments.grid import expand
from stablebptt.experiments.report import default_window, load_runs, plot_sweep, smooth, summaries, write_report
from stablebptt.training.train import METRICS


def _write_run(
    out: Path, run, epochs: int, status: str | None, *, diverge_at: int | None = None, sign: float = 1.0
) -> None:
    d = out / run.name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(run.config.to_json()))
    if epochs:
        seed, method = run.config.train.seed, run.config.train.method
        scale = {"R": 1.0, "M": 0.7, "C": 0.3, "S": 2.0}[method]
        rows = []
        for e in range(1, epochs + 1):
            loss = sign * scale * (1 + 0.1 * seed) / e
            if diverge_at is not None and e == diverge_at:
                loss = math.nan
            rows.append(
                {
                    "epoch": e,
                    "loss": loss,
                    "train_loss": loss,
                    "test_loss": loss,
                    "grad_norm": 1.0,
                    "cosine": "",
                    "kept_fraction": "",
                    "epoch_time": 0.01,
                }
            )
        with open(d / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRICS, extrasaction="ignore")
            w.writeheader()
            w.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows)
    if status is not None:
        (d / "status.json").write_text(json.dumps({"status": status, "epoch": epochs}))


@pytest.fixture
def grid():
    return expand(
        "cartpole", {"method": ["R", "C"], "n_poles": [1, 2], "clip": ["none", "norm"], "seed": [0, 1], "epochs": [20]}
    )


def test_plot_finished_sweep(tmp_path, grid, capsys):
    for run in grid:
        _write_run(tmp_path, run, 20, "complete")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    fig = tmp_path / "fig"
    assert {p.name for p in fig.iterdir()} == {
        "sweep.png",
        "sweep-clip=none.png",
        "sweep-clip=norm.png",
        "summary.csv",
        "summary.md",
    }
    with open(fig / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and {r["status"] for r in rows} == {"complete"}
    r = next(r for r in rows if r["run"] == "method=C_poles=1_clip=none_seed=1")
    assert float(r["final_test_loss"]) == pytest.approx(0.3 * 1.1 / 20)
    assert float(r["best_test_loss"]) == pytest.approx(0.3 * 1.1 / 20) and r["best_epoch"] == "20"
    md = (fig / "summary.md").read_text()
    assert "16 runs: 16 complete." in md and "| 1 | C | none | 2 | 2 |" in md  # per configuration over 2 seeds
    assert "figures:" in capsys.readouterr().out


def test_plot_partial_sweep(tmp_path, grid):
    """Runs finished, half-way, diverged, started without metrics, and only planned (sweep.json)."""
    _write_run(tmp_path, grid[0], 20, "complete")
    _write_run(tmp_path, grid[1], 7, "running")
    _write_run(tmp_path, grid[2], 5, "diverged", diverge_at=5)
    _write_run(tmp_path, grid[3], 0, None)
    (tmp_path / "sweep.json").write_text(
        json.dumps({"task": "cartpole", "runs": {r.name: r.config.to_json() for r in grid}})
    )
    figures = write_report(tmp_path)
    assert all(p.stat().st_size > 0 for p in figures)
    runs = {r.name: r for r in load_runs(tmp_path)}
    assert len(runs) == 16
    assert runs[grid[1].name].status == "interrupted"  # running, but no live writer holds its lock
    assert runs[grid[3].name].status == "pending" and runs[grid[5].name].status == "pending"
    _, per_run, _, per_config = summaries(list(runs.values()))
    by_name = {r["run"]: r for r in per_run}
    assert by_name[grid[1].name]["epochs_done"] == 7
    assert by_name[grid[2].name]["epochs_done"] == 4  # the diverged epoch is not counted
    assert by_name[grid[2].name]["final_test_loss"] == pytest.approx(1.0 / 4)  # R, seed 0, epoch 4
    assert "final_test_loss" not in by_name[grid[5].name]
    assert len(per_config) == 8
    md = (tmp_path / "summary.md").read_text()
    assert "16 runs: 1 complete, 1 interrupted, 1 diverged, 13 pending." in md


def test_plot_errors_and_empty_sweep(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["plot", str(tmp_path)]) == 2  # an empty folder holds no runs
    run = expand("cartpole", {"epochs": [3]})[0]
    _write_run(tmp_path, run, 0, None)
    assert main(["plot", str(tmp_path)]) == 0  # a sweep that has not finished an epoch yet
    assert (tmp_path / "sweep.png").exists()


def test_smooth_is_a_trailing_mean_ignoring_nan():
    y = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(smooth(y, 2), [1.0, 2.0, 3.0, 5.0, 6.0])
    np.testing.assert_allclose(smooth(y, 1), y)


def test_smooth_pads_with_the_first_value_as_published():
    y = np.array([4.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(smooth(y, 3), [4.0, 3.0, 2.0, 1.0])  # (4+4+4)/3, (4+4+1)/3, (4+1+1)/3, ...
    np.testing.assert_allclose(smooth(y, 3, pad_first=False), [4.0, 2.5, 2.0, 1.0])
    assert [default_window(n) for n in (5, 100, 1000, 5000)] == [1, 10, 30, 30]


def test_sweep_figure_uses_the_published_y_limits(tmp_path, grid, monkeypatch):
    import stablebptt.runs.plotting as plotting

    for run in grid:
        _write_run(tmp_path, run, 20, "complete")
    limits = []

    def capture(fig, path):
        limits.extend(ax.get_ylim() for ax in fig.axes if ax.has_data())
        plotting.plt.close(fig)

    monkeypatch.setattr(plotting, "save_figure", capture)
    plot_sweep(load_runs(tmp_path), tmp_path / "sweep.png")
    assert limits and all(np.allclose(lim, (1e-6, 3.0)) for lim in limits)  # cart pole's published limits
    limits.clear()
    plot_sweep(load_runs(tmp_path), tmp_path / "sweep.png", ylim=None)
    assert limits and not any(np.allclose(lim, (1e-6, 3.0)) for lim in limits)


def test_negative_losses_are_drawn_on_a_linear_scale(tmp_path, grid, monkeypatch):
    """A loss that is minus a reward (Brax) is negative: drawn as it is on a linear scale, not dropped as a log
    scale would (the figure once failed with "Data cannot be log-scaled")."""
    import stablebptt.runs.plotting as plotting

    for run in grid:
        _write_run(tmp_path, run, 20, "complete", sign=-1.0)
    drawn = []

    def capture(fig, path):
        drawn.extend((ax.get_yscale(), ax.get_ylim()) for ax in fig.axes if ax.has_data())
        plotting.plt.close(fig)

    monkeypatch.setattr(plotting, "save_figure", capture)
    plot_sweep(load_runs(tmp_path), tmp_path / "sweep.png", ylim=None)
    assert drawn and all(scale == "linear" and low < -0.3 for scale, (low, _) in drawn)


CORRUPTIONS = {
    "metrics.csv": "epoch,loss,test_loss\n1,0.5,abc\n",  # a cell that is not a number
    "metrics.csv ": "\x00\x01garbage without columns\n",  # no header of metrics
    "config.json": "{not json",
    "status.json": '{"status": "exploded"}',
}


@pytest.mark.parametrize("name", list(CORRUPTIONS), ids=lambda n: n.strip() + ("-header" if n.endswith(" ") else ""))
def test_an_unreadable_run_is_reported_counted_and_left_out(tmp_path, capsys, name):
    """Two seeds of one configuration, one with a corrupt file: `plot` refuses (writing nothing) unless
    --allow-partial; then the run is listed as unreadable, counted so, and the statistics are the other run's."""
    runs = expand("cartpole", {"method": ["C"], "seed": [0, 1], "epochs": [5]})
    (tmp_path / "sweep.json").write_text(
        json.dumps({"task": "cartpole", "runs": {r.name: r.config.to_json() for r in runs}})
    )
    for run in runs:
        _write_run(tmp_path, run, 5, "complete")
    (tmp_path / runs[1].name / name.strip()).write_text(CORRUPTIONS[name])

    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 run of 2 cannot be read" in err and runs[1].name in err
    assert "--allow-partial" in err and name.strip() in err
    assert not (tmp_path / "summary.md").exists() and not (tmp_path / "sweep.png").exists()

    assert main(["plot", str(tmp_path), "--allow-partial"]) == 0
    assert "2 runs: 1 complete, 1 unreadable" in capsys.readouterr().out
    md = (tmp_path / "summary.md").read_text()
    assert "2 runs: 1 complete, 1 unreadable." in md
    with open(tmp_path / "summary.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert rows[runs[1].name]["status"] == "unreadable" and name.strip() in rows[runs[1].name]["problem"]
    assert rows[runs[1].name]["final_test_loss"] == ""
    _, _, _, per_config = summaries(load_runs(tmp_path))
    (config,) = per_config
    expected = 0.3 * 1.0 / 5  # seed 0's final loss alone: the unreadable run is not in the statistics
    assert config["runs"] == 2 and config["complete"] == 1 and config["unreadable"] == 1
    assert (
        config["final_test_median"] == config["final_test_min"] == config["final_test_max"] == pytest.approx(expected)
    )


def test_status_lists_runs_by_state(tmp_path, grid, capsys):
    _write_run(tmp_path, grid[0], 20, "complete")
    _write_run(tmp_path, grid[1], 7, "running")
    _write_run(tmp_path, grid[2], 5, "diverged", diverge_at=5)
    _write_run(tmp_path, grid[3], 3, "failed")
    _write_run(tmp_path, grid[4], 2, "complete")
    (tmp_path / grid[4].name / "metrics.csv").write_text("epoch,test_loss\n1,x\n")
    (tmp_path / "sweep.json").write_text(
        json.dumps({"task": "cartpole", "runs": {r.name: r.config.to_json() for r in grid[:6]}})
    )
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 runs: 1 complete, 1 interrupted, 1 diverged, 1 failed, 1 unreadable, 1 pending" in " ".join(out.split())
    lines = [line for line in out.splitlines() if "│" in line and "method=" in line]
    states = [
        next(s for s in ("complete", "interrupted", "diverged", "failed", "unreadable", "pending") if s in line)
        for line in lines
        if any(s in line for s in ("complete", "interrupted", "diverged", "failed", "unreadable", "pending"))
    ]
    assert states == ["complete", "interrupted", "diverged", "failed", "unreadable", "pending"]  # ordered by state
    from stablebptt.experiments.report import load_folder, status_rows

    rows = {r["run"]: r for r in status_rows(load_folder(tmp_path))}
    assert rows[grid[0].name]["epochs_done"] == 20 and rows[grid[0].name]["last_test_loss"] == pytest.approx(1 / 20)
    assert rows[grid[1].name]["epochs_done"] == 7 and rows[grid[1].name]["epochs"] == 20
    assert rows[grid[2].name]["epochs_done"] == 4 and rows[grid[2].name]["last_test_loss"] == pytest.approx(1 / 4)
    assert "metrics.csv" in rows[grid[4].name]["note"]

    # One run folder, and folders that hold no run.
    assert main(["status", str(tmp_path / grid[0].name)]) == 0
    assert "1 run: 1 complete" in " ".join(capsys.readouterr().out.split())
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["status", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
