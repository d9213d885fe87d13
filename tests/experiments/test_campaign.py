"""The reproduction campaign: its plan, records that survive a stop, the report rebuilt from records alone."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stablebptt.cli.main import main
from stablebptt.core.checks import BadInput
from stablebptt.experiments import campaign
from stablebptt.experiments.campaign import STAGES, Stage
from stablebptt.experiments.report import RunRecord, read_run
from stablebptt.runs.io import read_csv
from stablebptt.tasks import CartPole

ROOT = Path(__file__).resolve().parents[2]
TINY = Stage(
    "t",
    "tiny cart pole",
    "cartpole",
    {"n_poles": [1], "method": ["R", "C"], "horizon": [10], "clip": ["none"], "seed": [0, 1]},
    epochs=2,
)


def test_the_plan_is_the_issues():
    sizes = {s.key: len(s.runs()) for s in STAGES}
    assert sizes["a"] == 36 and sizes["b"] == 48 and sizes["c"] == 48  # levels x R, M, C, S x 3 seeds
    assert sizes["d1"] == sizes["d2"] == 12  # R, C x lr 1e-4, 1e-2 x 3 seeds
    assert sizes["e1-quantum"] == 24 and sizes["e2-cartpole"] == 64
    assert sizes["f1"] == 18 and sizes["f2"] == 2  # 5, 6 poles x R, M, C x 3 seeds; target 6 x R, C x seed 42
    for stage in STAGES:
        runs = stage.runs()
        assert len({r.name for r in runs}) == len(runs)
        assert all(r.config.train.epochs == 1000 for r in runs)
    quantum = STAGES[0].runs()
    assert {r.config.task_settings["target"] for r in quantum} == {3, 4, 5}
    assert {r.config.train.seed for r in quantum} == {42, 43, 44}
    assert {r.config.train.clip for r in quantum} == {"none"}
    rates = {r.config.train.lr for r in campaign.stage_named(["d1"])[0].runs()}
    assert rates == {1e-4, 1e-2}


def test_stage_names():
    assert [s.key for s in campaign.stage_named(["d"])] == ["d1", "d2"]
    assert [s.key for s in campaign.stage_named(["e1"])] == ["e1-quantum", "e1-cartpole", "e1-repulsion"]
    assert [s.key for s in campaign.stage_named(["c", "a"])] == ["a", "c"]  # campaign order
    with pytest.raises(BadInput, match="no stage x; stages: a, b"):
        campaign.stage_named(["x"])


def test_train_missing_records_and_never_trains_twice(tmp_path):
    root, work = tmp_path / "records", tmp_path / "work"
    lines: list[str] = []
    assert campaign.train_missing(root, work, [TINY], batch_runs="off", max_groups=1, log=lines.append) == 1
    (p,), unreadable, unmatched = campaign.progress(campaign.load_records(root), [TINY])
    assert len(p.recorded) == 1 and len(p.missing) == 3 and not unreadable and not unmatched
    # A stop of work loses the work folder; the records are what is kept.
    work = tmp_path / "after a stop"
    assert campaign.train_missing(root, work, [TINY], batch_runs="off", log=lines.append) == 3
    trained = [line for line in lines if line.startswith("stage t")]
    assert len(trained) == 4 and len(set(trained)) == 4  # every run once
    assert campaign.train_missing(root, work, [TINY], batch_runs="off", log=lines.append) == 0
    (p,), _, _ = campaign.progress(campaign.load_records(root), [TINY])
    assert len(p.recorded) == 4 and not p.missing


def test_a_record_holds_what_the_report_needs(tmp_path):
    work = tmp_path / "work"
    campaign.train_missing(tmp_path / "r", work, [TINY], batch_runs="off", max_groups=1, log=None)
    run = TINY.runs()[0]
    run_dir = work / "cartpole" / run.name
    path = campaign.write_record(tmp_path / "again", run_dir)
    assert path == campaign.record_path(tmp_path / "again", "cartpole", run.name)
    record, original = campaign.read_record(path), read_run(run_dir)
    assert record.status == "complete" and record.config == original.config and record.epochs == 2
    rows = read_csv(run_dir / "metrics.csv")
    assert len(record.rows) == len(rows) == 2
    for kept, row in zip(record.rows, rows, strict=True):
        assert kept["epoch"] == int(row["epoch"])
        for key in ("train_loss", "test_loss", "grad_norm"):
            assert kept[key] == pytest.approx(float(row[key]), rel=1e-6)  # float32 kept exactly
        assert kept["epoch_time"] == pytest.approx(float(row["epoch_time"]), rel=1e-3)
    # Where it came from: the run folder's provenance, whole (the task's every field, the libraries, the code)
    assert record.provenance == json.loads((run_dir / "provenance.json").read_text())
    assert record.provenance[0]["task"]["hidden"] == list(CartPole().hidden)  # a default the config leaves out
    # A record made before provenance was kept reads as unknown, filled in by no guess
    old = json.loads(gzip.decompress(path.read_bytes()))
    del old["provenance"]
    path.write_bytes(gzip.compress(json.dumps(old).encode()))
    assert {v for entry in campaign.read_record(path).provenance for v in entry.values()} == {"unknown"}
    # Unfinished runs are not recorded.
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "epoch": 1}))
    with pytest.raises(BadInput, match="has not finished"):
        campaign.write_record(tmp_path / "third", run_dir)
    assert not (tmp_path / "third").exists()


def test_unreadable_and_foreign_records_are_reported_not_counted(tmp_path):
    root = tmp_path / "records"
    campaign.train_missing(root, tmp_path / "work", [TINY], batch_runs="off", max_groups=2, log=None)
    recorded = sorted((root / "cartpole").glob("*.json.gz"))
    assert len(recorded) == 2
    recorded[0].write_bytes(b"not gzip")
    data = json.loads(gzip.decompress(recorded[1].read_bytes()))
    data["config"]["train"]["lr"] = 0.5  # another configuration under a planned name
    recorded[1].write_bytes(gzip.compress(json.dumps(data).encode()))
    (p,), unreadable, unmatched = campaign.progress(campaign.load_records(root), [TINY])
    assert not p.recorded and len(p.missing) == 4
    assert [r.problem.split(":")[0] for r in unreadable] == [recorded[0].name]
    assert [r.name for r in unmatched] == [recorded[1].name.removesuffix(".json.gz")]
    # The next start records them again from the work folder (where they finished) and trains the other two.
    assert campaign.train_missing(root, tmp_path / "work", [TINY], batch_runs="off", max_groups=2, log=None) == 4
    (p,), unreadable, unmatched = campaign.progress(campaign.load_records(root), [TINY])
    assert len(p.recorded) == 4 and not unreadable and not unmatched


def _synthetic(method: str, poles: int, seed: int, final: float, clip: str = "none", lr: float = 0.001):
    config = {
        "task": "cartpole",
        "task_settings": {"n_poles": poles},
        "train": {"method": method, "seed": seed, "clip": clip, "lr": lr, "epochs": 3},
    }
    rows = [
        {"epoch": e, "test_loss": v, "epoch_time": 0.5}
        for e, v in enumerate([1.0, math.nan, final] if seed == 1 else [1.0, 0.5, final], start=1)
    ]
    return RunRecord(f"{method}{poles}{seed}{clip}{lr}", config, "complete", rows, epoch=3)


def test_ratio_table_per_level_with_the_seeds_spread():
    finals = {  # (method, poles) -> final loss of seeds 0, 1, 2
        ("R", 1): [2.0, 4.0, 8.0],
        ("C", 1): [1.0, 1.0, 2.0],
        ("R", 2): [10.0, 30.0, 90.0],
        ("C", 2): [1.0, 2.0, 3.0],
        ("R", 3): [1.0, 1.0, 1.0],
        ("C", 3): [1.0, 1.0, 1.0],
    }
    records = [_synthetic(m, p, s, v) for (m, p), vs in finals.items() for s, v in enumerate(vs)]
    records.append(_synthetic("R", 2, 0, 1e-9, clip="norm"))  # other clipping modes are left out
    table = campaign.ratio_table(records).splitlines()
    assert table[0].startswith("| poles | R final (median) | C final (median) | R/C of medians | R/C per seed")
    assert set(table[1]) <= set("|-: ")  # a header row: the table renders
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert [float(r[3]) for r in rows] == [4.0, 15.0, 1.0]
    assert rows[0][4] == "4 [2, 4]" and rows[1][4] == "15 [10, 30]"  # R/C of the same seed
    assert [r[-1] for r in rows] == ["-", "yes", "no"]


def test_config_table_final_and_best_loss():
    records = [_synthetic("C", 1, s, v) for s, v in enumerate([0.1, 0.2, 0.3])]
    records += [_synthetic("R", 1, s, v) for s, v in enumerate([0.4, 0.6, 0.8])]
    lines = campaign.config_table(records).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["poles", "method", "runs", "seeds", "final test loss", "best test loss", "s per epoch"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[1] for r in rows] == ["R", "C"]  # the paper's order
    assert rows[0][4] == "0.6 [0.4, 0.8]" and rows[1][5] == "0.2 [0.1, 0.3]"
    assert rows[0][2] == "3 complete" and rows[0][6] == "0.5"


def test_lr_table_columns_per_rate():
    records = [
        _synthetic(m, 2, s, v * lr * 1e3 * (1 + s), lr=lr)
        for m, v in (("R", 2.0), ("C", 1.0))
        for lr in (1e-4, 1e-3, 1e-2)
        for s in range(3)
    ]
    lines = campaign.lr_table(records).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "level",
        "method",
        "lr 0.0001",
        "lr 0.001",
        "lr 0.01",
    ]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert rows[0][:2] == ["2", "R"] and rows[0][2:] == ["0.4 [0.2, 0.6]", "4 [2, 6]", "40 [20, 60]"]
    assert rows[1][:2] == ["2", "C"] and rows[1][3] == "2 [1, 3]"


def test_report_from_records_alone(tmp_path):
    root = tmp_path / "records"
    campaign.train_missing(root, tmp_path / "work", [TINY], batch_runs="off", log=None)
    figures, tables = campaign.write_pages(root, tmp_path / "fig", tmp_path / "tables.md", [TINY], log=None)
    assert [f.name for f in figures] == ["repro_cartpole.png"] and figures[0].stat().st_size > 10_000
    text = tables.read_text()
    assert "| t | tiny cart pole | 4 | 4 | 0 |" in text
    assert "| 1 | R | 2 complete | 0,1 |" in text and "| 1 | C | 2 complete | 0,1 |" in text
    assert "R/C of medians" in text


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_the_committed_tables_are_rebuilt_from_the_committed_records(tmp_path, monkeypatch):
    """docs/reproduction-records.md is what `stablebptt reproduce report` makes of results/paper."""
    monkeypatch.chdir(ROOT)
    _, tables = campaign.write_pages("results/paper", tmp_path / "fig", tmp_path / "tables.md", log=None)
    assert tables.read_text() == (ROOT / "docs" / "reproduction-records.md").read_text()
    assert campaign.records_size("results/paper") < 30e6
    _, unreadable, unmatched = campaign.progress(campaign.load_records("results/paper"))
    assert not unreadable and not unmatched


def test_the_committed_records_are_complete_runs():
    records = campaign.load_records(ROOT / "results" / "paper")
    assert records, "no records committed"
    for record in records:
        assert record.status in ("complete", "diverged"), record.name
        test = record.curve("test_loss")
        assert record.status == "diverged" or (len(test) == record.epochs and np.isfinite(test[-1]))


def test_cli_reproduce(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["reproduce", "status", "--records", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "0 of 440 planned runs recorded" in out and "next: a method=R_target=3_clip=none_seed=42" in out
    assert main(["reproduce", "run", "--stages", "q", "--records", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no stage q" in err
    assert not any(tmp_path.iterdir())


def test_reproduce_status_of_some_stages_counts_no_planned_record_as_unmatched(tmp_path, capsys, monkeypatch):
    """With --stages, a record of another stage is neither counted nor called a configuration no planned run has;
    a record no stage plans is, with or without --stages."""
    monkeypatch.setenv("COLUMNS", "200")
    (b_run,) = [r for r in campaign.stage_named(["b"])[0].runs() if r.name == "method=R_poles=1_clip=none_seed=42"]
    source = campaign.record_path(ROOT / "results" / "paper", "cartpole", b_run.name)
    target = campaign.record_path(tmp_path, "cartpole", b_run.name)
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    record = json.loads(gzip.decompress(source.read_bytes()))
    record["name"] = "method=R_poles=9_clip=none_seed=42"  # planned by no stage
    record["config"]["task_settings"]["n_poles"] = 9
    stray = target.with_name(f"{record['name']}.json.gz")
    stray.write_bytes(gzip.compress(json.dumps(record).encode()))
    assert main(["reproduce", "status", "--records", str(tmp_path), "--stages", "c"]) == 0
    out = capsys.readouterr().out
    assert "0 of 48 planned runs recorded" in " ".join(out.split())
    unmatched = [line for line in out.splitlines() if line.startswith("not counted")]
    assert len(unmatched) == 1 and "poles=9" in unmatched[0], unmatched
    assert main(["reproduce", "status", "--records", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 of 440 planned runs recorded" in " ".join(out.split())
    assert [line for line in out.splitlines() if line.startswith("not counted")] == unmatched


def test_level_table_one_row_per_level_the_best_median_in_bold():
    finals = {("R", 1): [0.4, 0.6, 0.8], ("C", 1): [0.1, 0.2, 0.3], ("R", 2): [1.0, 2.0, 3.0], ("C", 2): [4.0, 5.0]}
    records = [_synthetic(m, p, s, v) for (m, p), vs in finals.items() for s, v in enumerate(vs)]
    records.append(_synthetic("C", 2, 7, 1e-9, clip="norm"))  # other clipping modes are left out
    lines = campaign.level_table(records).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["poles", "R", "C", "seeds"]
    assert set(lines[1]) <= set("|-: ")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert rows[0] == ["1", "0.6 [0.4, 0.8]", "**0.2 [0.1, 0.3]**", "3/3"]
    assert rows[1] == ["2", "**2 [1, 3]**", "4.5 [4, 5]", "3/2"]
