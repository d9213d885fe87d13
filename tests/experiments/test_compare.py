"""`experiments.compare`: the seeds of each method trained together (`runs.train_together`) give the results of
runs trained one at a time, the same folders and the same progress calls."""

import csv

import pytest

from stablebptt.experiments.compare import compare, run_folder_name
from stablebptt.runs import RunConfig


def _config():
    return RunConfig.create(
        "cartpole", {"n_poles": 1, "horizon": 10}, method="R", epochs=2, n_train=16, n_test=16, batch_size=8
    )


def _metrics(folder):
    with open(folder / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time"} for row in csv.DictReader(f)]


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_batched_seeds_equal_separate_runs(tmp_path):
    calls = {}

    def on_run(label):
        calls[label] = []
        return lambda epoch, row: calls[label].append(epoch)

    tables = {}
    for mode in ("on", "off"):
        tables[mode] = compare(tmp_path / mode, _config(), ["R", "C"], seeds=[1, 2], batch_runs=mode, on_run=on_run)
        labels = [run_folder_name(m, s, [1, 2]) for m in ("R", "C") for s in (1, 2)]
        assert calls == {label: [1, 2] for label in labels}, mode
        calls.clear()
    for label in ("R-seed1", "R-seed2", "C-seed1", "C-seed2"):
        on, off = _metrics(tmp_path / "on" / label), _metrics(tmp_path / "off" / label)
        assert len(on) == len(off) == 2
        for a, b in zip(on, off):
            for k in ("loss", "train_loss", "test_loss", "grad_norm"):
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-5), (label, k)
        assert sorted(p.name for p in (tmp_path / "on" / label).iterdir()) == sorted(
            p.name for p in (tmp_path / "off" / label).iterdir()
        )
    for a, b in zip(tables["on"], tables["off"]):
        assert a["method"] == b["method"] and a["seeds"] == b["seeds"] == 2
        assert a["final_test_loss"] == pytest.approx(b["final_test_loss"], rel=1e-5)
    # different seeds are different runs, so the band is not empty
    assert tables["on"][0]["final_test_min"] < tables["on"][0]["final_test_max"]
    assert (tmp_path / "on" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_batching_mode_is_refused_before_training(tmp_path):
    from stablebptt.core.checks import BadInput

    with pytest.raises(BadInput, match="batch_runs='maybe': must be one of auto, on, off"):
        compare(tmp_path / "x", _config(), ["R"], seeds=[1, 2], batch_runs="maybe")
    assert not (tmp_path / "x").exists()  # nothing claimed or written


def test_an_interrupted_comparison_carries_on_where_it_stopped(tmp_path):
    """Rerun after an interrupt: the finished run is read, not trained again; the interrupted one continues from
    its checkpoint; the missing one starts. Its metrics equal an uninterrupted comparison's, bit for bit."""
    from stablebptt.runs import RunFolder

    config = _config().replace(epochs=3)
    compare(tmp_path / "whole", config, ["R", "C"], seeds=[1], batch_runs="off")

    def stop_in_c(label):
        def progress(epoch, row):
            if label == "C" and epoch == 2:
                raise KeyboardInterrupt

        return progress

    with pytest.raises(KeyboardInterrupt):
        compare(tmp_path / "cut", config, ["R", "C", "S"], seeds=[1], batch_runs="off", on_run=stop_in_c)
    assert RunFolder(tmp_path / "cut" / "R").status()["status"] == "complete"
    assert RunFolder(tmp_path / "cut" / "C").status()["status"] == "interrupted"
    assert not (tmp_path / "cut" / "S" / "metrics.csv").exists()  # claimed (its config written), not started
    trained = []
    table = compare(
        tmp_path / "cut",
        config,
        ["R", "C", "S"],
        seeds=[1],
        batch_runs="off",
        on_run=lambda label: lambda epoch, row: trained.append((label, epoch)),
    )
    assert trained == [("C", 3), ("S", 1), ("S", 2), ("S", 3)]  # R is not trained again, C goes on from 2
    for label in ("R", "C"):
        assert _metrics(tmp_path / "cut" / label) == _metrics(tmp_path / "whole" / label)
    assert [row["method"] for row in table] == ["R", "C", "S"]
    whole = {row["method"]: row for row in compare(tmp_path / "whole", config, ["R", "C"], seeds=[1])}
    for row in table[:2]:  # the comparison that was complete is read again, not retrained
        assert row["final_test_loss"] == whole[row["method"]]["final_test_loss"]


def test_a_folder_with_another_run_is_refused_unless_forced(tmp_path):
    from stablebptt.core.checks import BadInput

    compare(tmp_path / "x", _config(), ["R"], seeds=[1], batch_runs="off")
    before = _metrics(tmp_path / "x" / "R")
    with pytest.raises(BadInput, match=r"R: holds a run of other settings; .* pass force=True to replace it"):
        compare(tmp_path / "x", _config().replace(lr=0.5), ["R"], seeds=[1], batch_runs="off")
    assert _metrics(tmp_path / "x" / "R") == before  # nothing replaced
    compare(tmp_path / "x", _config().replace(lr=0.5), ["R"], seeds=[1], batch_runs="off", force=True)
    assert _metrics(tmp_path / "x" / "R") != before
