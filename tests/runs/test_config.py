"""`RunConfig` and `TrainSettings`: checked once, when made, with one-line `BadInput` naming the value; a JSON
round trip that keeps the hash; frozen; and folders that cannot hold a run refused before anything is written."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stablebptt.core import BadInput, BadType
from stablebptt.runs import RunConfig, RunFolder
from stablebptt.tasks import CartPole
from stablebptt.training import TrainSettings, train

GOOD_TASK = {"n_poles": 1, "horizon": 10}


def record(task=GOOD_TASK, name="cartpole", **changes):
    """A config.json record with `changes` to its top level (x64, checkpoint_every) or training settings."""
    r = RunConfig.create(name, task, method="C", epochs=2, n_train=16, n_test=16).to_json()
    for key, value in changes.items():
        if key in ("x64", "checkpoint_every", "snapshot_every", "task_path"):
            r[key] = value
        else:
            r["train"][key] = value
    return r


def broken_record(name, task=GOOD_TASK):
    r = record(task={"n_poles": 1})
    r.update(task=name, task_settings=task)
    return r


BAD_CONFIGS = [
    (broken_record("pendulum"), BadInput, "unknown task 'pendulum'"),
    (broken_record("cartpole", {"n_poles": 0}), BadInput, "n_poles must be a positive integer, got 0"),
    (
        broken_record("cartpole", {"n_poles": 1, "wheels": 4}),
        BadInput,
        "task cartpole has no field 'wheels'; its fields: horizon, n_poles, duration",
    ),
    (record(method="Q"), BadInput, "unknown method 'Q'"),
    (record(epochs=0), BadInput, "epochs must be a positive integer, got 0"),
    (record(epochs=2.0), BadInput, "epochs must be a positive integer, got 2.0"),
    (record(batch_size=17), BadInput, "batch size 17 is larger than the training set"),
    (record(lr=float("inf")), BadInput, "learning rate must be a positive finite number, got inf"),
    (record(lr="0.1"), BadInput, "learning rate must be a positive number, got '0.1'"),
    (record(optimizer="lbfgs"), BadInput, "unknown optimizer 'lbfgs'; allowed: adam"),
    (record(clip="all"), BadInput, "unknown clip mode 'all'; allowed: none, value, norm, both"),
    (record(seed=-1), BadInput, r"seed must be an integer in \[0, 2\*\*32\), got -1"),
    (record(skip_nonfinite="yes"), BadType, "skip_nonfinite must be True or False"),
    (record(backward="sideways"), BadInput, "unknown backward 'sideways'"),
    (record(backward="autodiff"), BadInput, "method C needs backward='joint' or 'two_pass'"),
    (record(remat="halves"), BadInput, "remat must be None, 'none', 'sqrt', 'states' or a positive segment length"),
    (record(truncation=0), BadInput, "truncation must be None or a positive integer, got 0"),
    (record(momentum=0.9), BadInput, "unknown training settings: momentum"),
    (record(checkpoint_every=0), BadInput, "checkpoint_every must be a positive integer, got 0"),
    (record(snapshot_every=0), BadInput, "snapshot_every must be a positive integer, got 0"),
    (record(x64="yes"), BadType, "x64 must be True or False"),
    (record(task_path=3), BadType, "task_path must be a folder name"),
    ({"task": "cartpole"}, BadInput, "not a stablebptt run configuration"),
    ({**record(), "colour": "red"}, BadInput, "unknown run configuration keys: colour"),
]


@pytest.mark.parametrize("bad, error, message", BAD_CONFIGS, ids=[m for _, _, m in BAD_CONFIGS])
def test_bad_config_is_refused_when_made(tmp_path, bad, error, message):
    with pytest.raises(error, match=message) as info:
        RunConfig.from_json(bad)
    assert "\n" not in str(info.value)


def test_bad_config_json_in_a_folder_is_refused_with_its_path(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(record(epochs=0)))
    with pytest.raises(BadInput, match=f"{run / 'config.json'}: epochs must be a positive integer"):
        RunFolder(run).resume()
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_json_round_trip_keeps_everything_and_the_hash():
    config = RunConfig.create(
        "cartpole",
        GOOD_TASK,
        method="m",
        epochs=3,
        lr=0.01,
        truncation=5,
        remat="4",
        n_train=16,
        n_test=16,
        x64=True,
        checkpoint_every=2,
    )
    assert config.train.method == "M" and config.train.remat == 4  # normal forms
    back = RunConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert back == config and back.hash() == config.hash()
    assert config.task_settings == {"n_poles": 1, "loss_mode": "final", "horizon": 10}  # main settings recorded
    train_json = config.to_json()["train"]
    assert train_json["remat"] == 4 and "backward" not in train_json  # gradient options only when set
    assert "snapshot_every" not in config.to_json()  # written only when asked for: earlier configs stay as they were
    kept = config.replace(snapshot_every=5)
    back = RunConfig.from_json(json.loads(json.dumps(kept.to_json())))
    assert back.snapshot_every == 5 and back.hash() == config.hash()  # how often to keep is not the run's identity


def test_every_default_comes_from_one_place():
    assert RunConfig.create("cartpole").train == TrainSettings()
    assert RunConfig.create("cartpole").task_settings == {"n_poles": 2, "loss_mode": "final", "horizon": 100}
    assert CartPole().n_poles == 2 and CartPole().horizon == 100  # the task's own field defaults
    assert RunConfig.create("cartpole", {"n_poles": 2}).hash() == RunConfig.create("cartpole").hash()


def test_configs_are_frozen():
    config = RunConfig.create("cartpole", GOOD_TASK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.x64 = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0
    assert config.replace(epochs=5).train.epochs == 5 and config.train.epochs == 1000


def test_start_needs_a_run_config(tmp_path):
    with pytest.raises(BadType, match="expected a RunConfig"):
        RunFolder(tmp_path / "run").start(record())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": 1.5}, "seed must be an integer"),
        ({"clip_value": float("nan")}, "clip value must be a positive"),
        ({"n_test": 0}, "n_test must be a positive integer"),
        ({"lr": 0.0}, "learning rate must be a positive"),
        ({"momentum": 0.9}, "unknown training settings: momentum"),
    ],
)
def test_train_refuses_bad_arguments(kwargs, message):
    with pytest.raises(BadInput, match=message):
        train(CartPole(**GOOD_TASK), epochs=1, n_train=16, **kwargs)


def test_paths_that_cannot_hold_a_run(tmp_path):
    (tmp_path / "afile").write_text("x")
    config = RunConfig.from_json(record())
    for path, message in [
        (tmp_path / "afile", "exists and is not a folder"),
        (tmp_path / "afile" / "run", "is a file, not a folder"),
        ("/proc/stablebptt-run", "cannot write in /proc"),
    ]:
        with pytest.raises(BadInput, match=message):
            RunFolder(path).start(config)
        with pytest.raises(BadInput, match=message):
            RunFolder(path).ensure(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
