"""The API refuses bad settings before any work, with one-line `ValueError`/`TypeError` naming the value."""

from __future__ import annotations

import pytest

from stablebptt.tasks import CartPole
from stablebptt.training import train
from stablebptt.training.run import check_config, check_out_path, execute, new_run, run_config

GOOD_TASK = {"n_poles": 1, "horizon": 10}


def config(task=GOOD_TASK, name="cartpole", **changes):
    c = run_config(name, task, method="C", epochs=2, n_train=16, n_test=16)
    for key, value in changes.items():
        if key in ("x64", "checkpoint_every"):
            c[key] = value
        else:
            c["train"][key] = value
    return c


BAD_CONFIGS = [
    (config(name="pendulum"), ValueError, "unknown task 'pendulum'"),
    (config(task={"n_poles": 0}), ValueError, "n_poles must be a positive integer, got 0"),
    (config(task={"n_poles": 1, "wheels": 4}), ValueError, "task cartpole has no field 'wheels'; its fields: horizon, n_poles, duration"),
    (config(method="Q"), ValueError, "unknown method 'Q'"),
    (config(epochs=0), ValueError, "epochs must be a positive integer, got 0"),
    (config(epochs=2.0), ValueError, "epochs must be a positive integer, got 2.0"),
    (config(batch_size=17), ValueError, "batch size 17 is larger than the training set"),
    (config(lr=float("inf")), ValueError, "learning rate must be a positive finite number, got inf"),
    (config(lr="0.1"), ValueError, "learning rate must be a positive number, got '0.1'"),
    (config(optimizer="lbfgs"), ValueError, "unknown optimizer 'lbfgs'; allowed: adam"),
    (config(clip="both"), ValueError, "unknown clip mode 'both'; allowed: none, value, norm"),
    (config(seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*32\), got -1"),
    (config(skip_nonfinite="yes"), TypeError, "skip_nonfinite must be True or False"),
    (config(backward="sideways"), ValueError, "unknown backward 'sideways'"),
    (config(checkpoint_every=0), ValueError, "checkpoint_every must be a positive integer, got 0"),
    (config(x64="yes"), TypeError, "x64 must be True or False"),
    ({"task": "cartpole"}, ValueError, "not a stablebptt run configuration"),
]


@pytest.mark.parametrize("bad, error, message", BAD_CONFIGS, ids=[m for _, _, m in BAD_CONFIGS])
def test_bad_config_is_refused_before_anything_is_created(tmp_path, bad, error, message):
    with pytest.raises(error, match=message) as info:
        check_config(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(error, match=message):
        new_run(tmp_path / "run", bad)
    assert list(tmp_path.iterdir()) == []


def test_unknown_training_setting():
    with pytest.raises(ValueError, match="unknown training settings: momentum"):
        run_config("cartpole", GOOD_TASK, momentum=0.9)


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": 1.5}, "seed must be an integer"), ({"clip_value": float("nan")}, "clip value must be a positive"),
    ({"n_test": 0}, "n_test must be a positive integer"), ({"lr": 0.0}, "learning rate must be a positive"),
])
def test_train_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train(CartPole(**GOOD_TASK), epochs=1, n_train=16, **kwargs)


def test_paths_that_cannot_hold_a_run(tmp_path):
    (tmp_path / "afile").write_text("x")
    for path, message in [(tmp_path / "afile", "exists and is not a folder"),
                          (tmp_path / "afile" / "run", "is a file, not a folder"),
                          ("/proc/stablebptt-run", "cannot write in /proc")]:
        with pytest.raises(ValueError, match=message):
            check_out_path(path)
        with pytest.raises(ValueError, match=message):
            execute(path, config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
