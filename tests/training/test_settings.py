"""`TrainSettings`: settings added for other recipes are left out of a run's JSON where they keep the earlier
behaviour (so configs and hashes of earlier runs are unchanged), are checked when made, and decide which runs
may share a batched group."""

from __future__ import annotations

import pytest

from stablebptt.core.checks import BadInput
from stablebptt.runs.config import ADDED_0_3, train_from_json, train_to_json
from stablebptt.training import TrainSettings
from stablebptt.training.group import shared_key


def test_defaults_write_the_json_of_earlier_releases():
    assert not set(ADDED_0_3) & set(train_to_json(TrainSettings()))
    recipe = TrainSettings(schedule="exponential", adam_b1=0.7, adam_b2=0.95, clip="both", clip_norm=1e9)
    written = train_to_json(recipe)
    assert {k: written[k] for k in ("schedule", "adam_b1", "adam_b2", "clip", "clip_norm")} == {
        "schedule": "exponential",
        "adam_b1": 0.7,
        "adam_b2": 0.95,
        "clip": "both",
        "clip_norm": 1e9,
    }
    assert "decay_rate" not in written  # the default rate of the exponential schedule
    assert train_from_json(written) == recipe


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"schedule": "step"}, "^unknown schedule 'step'; allowed: constant, exponential, cosine, linear$"),
        ({"decay_rate": 0.0}, r"^decay_rate must be a number in \(0, 1\], got 0.0$"),
        ({"decay_rate": 1.5}, r"^decay_rate must be a number in \(0, 1\], got 1.5$"),
        ({"transition_steps": 0}, "^transition_steps must be a positive integer, got 0$"),
        ({"warmup_steps": -1}, "^warmup_steps must be a non-negative integer, got -1$"),
        ({"decay_steps": 0}, "^decay_steps must be a positive integer, got 0$"),
        ({"final_lr_fraction": 2.0}, r"^final_lr_fraction must be a number in \[0, 1\], got 2.0$"),
        ({"adam_b1": 1.0}, r"^adam_b1 must be a number in \[0, 1\), got 1.0$"),
        ({"adam_b2": float("nan")}, r"^adam_b2 must be a number in \[0, 1\), got nan$"),
        ({"adam_epsilon": 0.0}, "^adam_epsilon must be a positive finite number, got 0.0$"),
        ({"clip_norm": float("inf")}, "^clip_norm must be a positive finite number, got inf$"),
        ({"clip": "all"}, "^unknown clip mode 'all'; allowed: none, value, norm, both$"),
    ],
)
def test_bad_recipe_settings_are_refused_when_made(bad, message):
    with pytest.raises(BadInput, match=message):
        TrainSettings(**bad)


def test_a_cosine_over_the_run_keeps_runs_of_other_lengths_apart():
    short, long = TrainSettings(epochs=10), TrainSettings(epochs=20)
    assert shared_key(short) == shared_key(long)  # a constant rate: epochs may differ within a group
    cosine = {"schedule": "cosine"}
    assert shared_key(short.replace(**cosine)) != shared_key(long.replace(**cosine))
    fixed = {"schedule": "cosine", "decay_steps": 100}  # a fixed length: the rate does not depend on epochs
    assert shared_key(short.replace(**fixed)) == shared_key(long.replace(**fixed))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"decay_steps": 10}, r"^decay_steps is read by the cosine and linear schedules only; give schedule='cosine'"),
        ({"final_lr_fraction": 0.1}, r"^final_lr_fraction is read by the cosine and linear schedules only"),
        ({"decay_rate": 0.9}, r"^decay_rate is read by the exponential schedule only; give schedule='exponential'"),
        ({"schedule": "cosine", "transition_steps": 4}, r"^transition_steps is read by the exponential schedule"),
        (
            {"epochs": 2, "n_train": 16, "batch_size": 8, "warmup_steps": 4},
            r"^warmup_steps=4 is as long as the run \(4 updates\), which would train at a learning rate near 0",
        ),
    ],
)
def test_settings_that_would_do_nothing_are_refused(settings, message):
    """Issue 44: a setting no part of the run reads is refused, not recorded (it would change the run's hash)."""
    with pytest.raises(BadInput, match=message):
        TrainSettings(**settings)
    assert TrainSettings(schedule="linear", decay_steps=10, final_lr_fraction=0.1).decay_steps == 10  # read there
