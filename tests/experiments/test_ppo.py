"""Brax's PPO as the study's reference (experiments/ppo.py): its budget is SHAC's training time read from the records,
its epochs' compiling time is left out, its records are read (or said unreadable) and answered on the study's page.
Running Brax's PPO itself compiles for minutes: its records in results/shac/ppo are the run; these tests check the
logic around it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from stablebptt.core.checks import BadInput
from stablebptt.experiments.ppo import COMPILING, _epoch_seconds, shac_seconds
from stablebptt.experiments.study import (
    APG,
    SHAC,
    Cell,
    brax_steps,
    ppo_record_path,
    ppo_references,
    ppo_rows,
    ppo_verdicts,
)

RESULTS = Path(__file__).resolve().parents[2] / "results"


def test_the_budget_is_the_median_training_time_of_shac_with_r_in_the_records():
    """Read independently here: the sum of each SHAC R record's epoch_time column on the double pendulum."""
    sums = []
    for path in (RESULTS / "shac" / "brax-inverted_double_pendulum").glob("method=R_*.json.gz"):
        record = json.loads(gzip.decompress(path.read_bytes()))
        if record["config"]["train"]["protocol"] != "shac":
            continue
        column = record["columns"].index("epoch_time")
        sums.append(sum(row[column] for row in record["rows"]))
    assert len(sums) == 3
    assert shac_seconds(RESULTS / "shac", "inverted_double_pendulum") == pytest.approx(np.median(sums))


def test_no_shac_records_is_a_one_line_error_that_says_what_to_run(tmp_path):
    with pytest.raises(BadInput, match="record those runs first.*--stages shac-brax-hopper") as info:
        shac_seconds(tmp_path, "hopper")
    assert "\n" not in str(info.value)


def test_the_compiling_epochs_take_the_time_of_the_first_that_does_not_compile():
    # (env steps after each epoch, steps per second of it): 2 epochs that compile, then 10 s, 5 s and 4 s
    marks = [(1000, 10.0), (2000, 40.0), (3000, 100.0), (4000, 200.0), (5000, 250.0)]
    assert COMPILING == 2
    assert _epoch_seconds(marks[:2]) == []  # nothing known until an epoch has run without compiling
    assert _epoch_seconds(marks) == pytest.approx([10.0, 10.0, 10.0, 5.0, 4.0])


def _reference(env, seed, reward, steps=50_000, budget=57.6):
    point = {"env_steps": steps, "train_s": budget - 1, "test_loss": -reward}
    return {"env": env, "seed": seed, "budget_s": budget, "final": point, "points": [point], "compile_s": 80.0}


def test_references_are_read_and_a_bad_file_is_named_not_counted(tmp_path):
    for seed, reward in ((42, 9.1), (43, 9.3)):
        path = ppo_record_path(tmp_path, "inverted_double_pendulum", seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_reference("inverted_double_pendulum", seed, reward)))
    ppo_record_path(tmp_path, "inverted_double_pendulum", 44).write_text('{"env": "inverted_double_pendulum"')
    ppo_record_path(tmp_path, "hopper", 42).write_text('{"env": "hopper", "seed": 42}')
    found, problems = ppo_references(tmp_path)
    assert [r["seed"] for r in found] == [42, 43]
    assert len(problems) == 2 and all("hopper_seed=42" in p or "seed=44" in p for p in problems)


def test_ppo_is_answered_against_shacs_best_rule_in_reward_per_step():
    from stablebptt.experiments.report import RunRecord

    def records(*losses):
        return [RunRecord("r", {}, "complete", [{"test_loss": x, "epoch_time": 1.0}]) for x in losses]

    env = "inverted_double_pendulum"
    cells = [
        Cell(f"brax:{env}", None, APG, "R", records(-9.3, -9.2, -9.4)),
        Cell(f"brax:{env}", None, SHAC, "R", records(-9.0, -9.1, -9.2)),
        Cell(f"brax:{env}", None, SHAC, "C", records(-9.35, -9.25, -9.3)),
    ]
    references = [_reference(env, s, r, steps=s * 1000) for s, r in ((42, 9.2), (43, 9.32), (44, 9.28))]
    (line,) = ppo_verdicts(cells, references)
    # PPO's median 9.28 over 43,000 steps; SHAC's best rule is C (median 9.3), above PPO in 6 of 9 pairs
    assert f"took 43,000 environment steps ({43000 / brax_steps():.3g} times a SHAC run's)" in line
    assert "reaches 9.28 reward per step (3 seeds, 9.28 [9.2, 9.32])" in line
    assert "SHAC's best rule (C, 9.3) is above it: 6 of 9 seed pairs above PPO; APG's recipe with R: 9.3." in line
    table = ppo_rows(references)
    row = "| inverted_double_pendulum | 42, 43, 44 | 57.6 | 4.3e+04 [4.2e+04, 4.4e+04] | 9.28 [9.2, 9.32] | 80 |"
    assert row in table
    (alone,) = ppo_verdicts([], references)
    assert alone.endswith("no SHAC records to compare with yet.")


def test_brax_training_loops_supply_device_put_replicated_on_one_device_and_take_it_back():
    pytest.importorskip("brax")
    import jax
    import jax.numpy as jnp

    from stablebptt.integrations.brax import brax_training_loops

    had = hasattr(jax, "device_put_replicated")
    for _ in range(2):  # a run per seed: each enters afresh
        with brax_training_loops():
            out = jax.device_put_replicated({"a": jnp.arange(3.0)}, jax.local_devices())
            assert out["a"].shape == (1, 3) and np.array_equal(out["a"][0], np.arange(3.0))
        assert hasattr(jax, "device_put_replicated") == had


def test_reproduce_ppo_is_refused_outside_shacs_study(tmp_path):
    from stablebptt.cli.main import main

    assert main(["reproduce", "ppo", "--records", str(tmp_path)]) != 0


def test_run_references_skips_what_is_recorded_and_retrains_what_cannot_be_read(tmp_path, monkeypatch):
    from stablebptt.experiments import ppo

    trained = []
    monkeypatch.setattr(ppo, "shac_seconds", lambda root, env: 57.6)

    def fake(env, seed, seconds, log=print):
        trained.append(seed)
        return _reference(env, seed, 9.0 + seed / 100, budget=seconds)

    monkeypatch.setattr(ppo, "ppo_reference", fake)
    env = "inverted_double_pendulum"
    good, corrupt = ppo_record_path(tmp_path, env, 42), ppo_record_path(tmp_path, env, 43)
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps(_reference(env, 42, 9.2)))
    corrupt.write_text('{"env": ')
    lines = []
    assert ppo.run_references(tmp_path, envs=[env], seeds=[42, 43, 44], log=lines.append) == 2
    assert trained == [43, 44]
    assert any("cannot be read" in line and "seed=43" in line for line in lines)
    found, problems = ppo_references(tmp_path)
    assert [r["seed"] for r in found] == [42, 43, 44] and not problems
    assert json.loads(good.read_text())["final"]["test_loss"] == -9.2  # untouched
