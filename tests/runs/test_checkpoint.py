"""Run checkpoints: exact round trip, extension of a finished run, and refusal (without touching the file) of
truncated, corrupted, foreign and mismatched checkpoints."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil

import jax
import numpy as np
import pytest

from stablebptt.core.checks import BadInput
from stablebptt.runs import CHECKPOINT, Checkpoint, RunConfig, RunFolder, load_checkpoint, save_checkpoint
from stablebptt.tasks import make_task
from stablebptt.training import Trainer, TrainSettings

TASK = {"n_poles": 1, "horizon": 10}
TRAIN = {"method": "C", "n_train": 16, "n_test": 16}


def config_for(epochs=2, task=TASK, **train):
    return RunConfig.create("cartpole", task, **{**TRAIN, "epochs": epochs, **train})


def new_run(path, config):
    return RunFolder(path).start(config).run()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete 2-epoch run and, from another configuration (2 poles), a foreign checkpoint."""
    base = tmp_path_factory.mktemp("runs")
    new_run(base / "run", config_for())
    new_run(base / "two-poles", config_for(epochs=1, task={"n_poles": 2, "horizon": 10}))
    return base


def test_round_trip_is_exact(tmp_path):
    config = config_for()
    trainer = Trainer(make_task("cartpole", **TASK), TrainSettings(**TRAIN))
    outcome = trainer.run(trainer.initial, epochs=1)
    rows = [{"epoch": 1, "loss": 0.1 + 0.2, "cosine": float("nan")}]
    save_checkpoint(tmp_path / "c.eqx", config, Checkpoint(1, outcome.state, trainer.key, rows))
    back = load_checkpoint(tmp_path / "c.eqx", config, (trainer.key, trainer.initial))
    assert back.epoch == 1 and back.metrics[0]["loss"] == 0.1 + 0.2 and np.isnan(back.metrics[0]["cosine"])
    assert np.array_equal(back.key, trainer.key)
    for a, b in zip(jax.tree.leaves(back.state), jax.tree.leaves(outcome.state)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_hash_ignores_epochs_and_checkpoint_frequency_only():
    assert config_for(2).hash() == config_for(7).hash()
    assert config_for(2).hash() == config_for(2).replace(checkpoint_every=5).hash()
    assert config_for(2).hash() != config_for(2, lr=0.01).hash()
    assert config_for(2).hash() != config_for(2, task={"n_poles": 1, "horizon": 11}).hash()
    assert config_for(2).hash() != config_for(2, remat="sqrt").hash()
    assert config_for(2).hash() == config_for(2, remat=None, backward="auto").hash()  # defaults spelled out


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_a_cosine_schedule_over_the_run_ties_its_epochs(tmp_path):
    """Its learning rate at an update depends on the run's length: the epochs are hashed, and the run is not
    extended (a fixed `decay_steps` lifts both)."""
    assert config_for(2, schedule="cosine").hash() != config_for(3, schedule="cosine").hash()
    assert (
        config_for(2, schedule="cosine", decay_steps=50).hash()
        == config_for(3, schedule="cosine", decay_steps=50).hash()
    )
    run = tmp_path / "cosine"
    new_run(run, config_for(1, schedule="cosine"))
    with pytest.raises(
        BadInput,
        match=r"cosine learning-rate schedule spans its 1 epoch, so the run cannot be changed to 2; .*decay_steps",
    ):
        RunFolder(run).resume(epochs=2)
    fixed = tmp_path / "fixed"
    new_run(fixed, config_for(1, schedule="cosine", decay_steps=50))
    assert RunFolder(fixed).resume(epochs=2).run().status == "complete"


def test_extending_a_finished_run_equals_training_longer(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    assert RunFolder(run).resume() is None  # complete: nothing to do
    with pytest.raises(ValueError, match="already has 2 epochs"):
        RunFolder(run).resume(epochs=1)
    extended = RunFolder(run).resume(epochs=3).run()
    direct = new_run(tmp_path / "direct", config_for(3))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]  # noqa: E731
    assert drop(extended.metrics) == drop(direct.metrics)
    assert (run / "params.eqx").read_bytes() == (tmp_path / "direct" / "params.eqx").read_bytes()
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3
    with open(run / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def _truncated(data, finished):
    return data[: len(data) // 2]


def _random_bytes(data, finished):
    return random.Random(0).randbytes(len(data))


def _flipped_payload_byte(data, finished):
    i = len(data) - 100
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _empty(data, finished):
    return b""


def _other_task(data, finished):
    header, _, payload = data.partition(b"\n")
    header = json.loads(header)
    header["task"] = "repulsion"
    return json.dumps(header).encode() + b"\n" + payload


def _other_config(data, finished):
    return (finished / "two-poles" / CHECKPOINT).read_bytes()


def _other_shapes(data, finished):
    """Header of this run, parameters of the 2-pole run (consistent checksum): caught by the template."""
    header = json.loads(data.partition(b"\n")[0])
    payload = (finished / "two-poles" / CHECKPOINT).read_bytes().partition(b"\n")[2]
    header.update(payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    return json.dumps(header).encode() + b"\n" + payload


CORRUPTIONS = [
    (_truncated, "truncated"),
    (_random_bytes, "not a valid stablebptt checkpoint"),
    (_flipped_payload_byte, "checksum mismatch"),
    (_empty, "not a valid stablebptt checkpoint"),
    (_other_task, "belongs to task 'repulsion'"),
    (_other_config, "different configuration"),
    (_other_shapes, "does not fit"),
]


@pytest.mark.parametrize("corrupt, message", CORRUPTIONS, ids=[c[0].__name__.strip("_") for c in CORRUPTIONS])
def test_bad_checkpoint_is_refused_and_left_untouched(finished, tmp_path, corrupt, message):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    bad = corrupt((run / CHECKPOINT).read_bytes(), finished)
    (run / CHECKPOINT).write_bytes(bad)
    stat = (run / CHECKPOINT).stat()
    before = _files(run)
    with pytest.raises(ValueError, match=message) as error:
        RunFolder(run).resume(epochs=3).run()
    assert "\n" not in str(error.value) and "left untouched" in str(error.value)
    assert (run / CHECKPOINT).read_bytes() == bad
    assert (run / CHECKPOINT).stat().st_mtime_ns == stat.st_mtime_ns
    assert _files(run) == before  # a refused resume changes no file: config.json keeps 2 epochs, status complete
    assert RunFolder(run).status()["status"] == "complete"


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_refused_resume_of_an_edited_config_changes_no_file(finished, tmp_path, capsys):
    """The issue's case: config.json edited after the run (another learning rate), then `resume --epochs 3`."""
    from stablebptt.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    record = json.loads((run / "config.json").read_text())
    record["train"]["lr"] = 0.5
    (run / "config.json").write_text(json.dumps(record))
    before = _files(run)
    assert main(["resume", str(run), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different configuration" in err
    assert _files(run) == before
    # Fewer epochs than done: the checkpoint of another configuration is the first thing said (not "allowed: 2
    # or more", which would not help), nothing changed.
    assert main(["resume", str(run), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "allowed" not in err and _files(run) == before


def test_metric_rows_encode_as_json_does():
    """`Metrics.to_json` keeps each row's text from its append; the checkpoint header holds the same JSON list as
    ``json.dumps`` would write, NaN included; the rows only grow."""
    from stablebptt.runs.checkpoint import Metrics

    rows = [{"epoch": i, "loss": 1.0 / i, "cosine": float("nan")} for i in range(1, 5)]
    metrics = Metrics(rows[:2])
    for row in rows[2:]:
        metrics.append(row)
    assert metrics.to_json() == json.dumps(rows, sort_keys=True)
    assert metrics == rows[:] and list(metrics) == rows and metrics[-1] is rows[-1] and metrics[:2] == rows[:2]
    assert not hasattr(metrics, "pop") and not hasattr(metrics, "__setitem__")


def test_the_metrics_file_grows_by_appends_and_a_half_written_line_is_not_read(tmp_path):
    """`CsvTable.flush` appends what the file lacks (the whole file the first time), giving the file `write`
    gives; `read_csv` leaves out a last line still being written."""
    from stablebptt.runs.io import CsvTable, read_csv

    table = CsvTable(["epoch", "loss"], [{"epoch": 1, "loss": 0.5}])
    table.flush(tmp_path / "m.csv")
    for epoch in (2, 3):
        table.append({"epoch": epoch, "loss": 0.5 / epoch})
        table.flush(tmp_path / "m.csv")
    table.write(tmp_path / "whole.csv")
    assert (tmp_path / "m.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert [r["epoch"] for r in read_csv(tmp_path / "m.csv")] == [1.0, 2.0, 3.0]
    with open(tmp_path / "m.csv", "a") as f:
        f.write("4,0.1")  # no newline yet: a writer is appending it
    assert [r["epoch"] for r in read_csv(tmp_path / "m.csv")] == [1.0, 2.0, 3.0]
    table.write(tmp_path / "m.csv", [{"epoch": 4, "loss": float("nan")}])  # extra rows: the next flush rewrites
    table.flush(tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
