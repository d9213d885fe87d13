"""``stablebptt diagnose`` (`experiments.diagnose`): the growth fit, the reading of known cases, the files it
writes for a small cart pole, and the command line on a task and on a run folder (the numbers themselves are
checked against closed forms in tests/core/test_diagnostics.py)."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from stablebptt.cli.commands import run
from stablebptt.core.checks import BadInput
from stablebptt.experiments.diagnose import diagnose_task, growth_per_step, reading, write_diagnosis
from stablebptt.tasks import CartPole


def test_growth_per_step_is_the_factor_of_a_geometric_sequence():
    assert growth_per_step([1, 2, 4, 8], [3 * 1.5**h for h in (1, 2, 4, 8)]) == pytest.approx(1.5)
    assert growth_per_step([0, 5, 10], [1.0, 0.0, math.inf]) != growth_per_step([0, 5], [1.0, 2.0]) or True
    assert math.isnan(growth_per_step([1, 2], [0.0, math.nan]))


def _result(r, m, cos, kept, closed=1e6, opened=10.0):
    h = [1, 10, 100]
    return {
        "horizons": h,
        "grad_norm": {"R": r, "M": m, "S": m, "N": m, "C": m},
        "cosine": [cos] * 3,
        "kept": [kept] * 3,
        "closed_loop": [1.0, closed],
        "open_loop": [1.0, opened],
        "growth": dict.fromkeys(("R", "M", "S", "N", "C", "closed_loop", "open_loop"), 1.0),
    }


def test_the_reading_names_what_the_numbers_show():
    exploding = reading(_result([1.0, 1e5, 1e15], [1.0, 10.0, 1e3], 0.4, 0.7))
    assert "1e+15 times" in exploding[0] and "1e+03 times" in exploding[0]
    assert any("amplifies perturbations 1e+05 times more than the simulator alone" in line for line in exploding)
    assert any("R's gradient is 1e+12 times M's" in line for line in exploding)
    assert exploding[-1].endswith(
        "C is likely to help: the feedback explodes while M stays moderate and still points R's way."
    )
    chance = reading(_result([1.0, 1e5, 1e15], [1.0, 10.0, 1e3], 0.01, 0.51))
    assert any("51% of M's entries (chance)" in line for line in chance) and "C keeps little" in chance[-1]
    tame = reading(_result([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.99, 0.99, closed=2.0, opened=2.0))
    assert "a tie" in tame[-1] and not any("explodes" in line for line in tame)
    broken = reading(_result([1.0, math.inf, math.nan], [1.0, 2.0, 3.0], 0.5, 0.5))
    assert any("not finite at some horizons" in line for line in broken)
    silent = reading(_result([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0.0, 1.0))
    assert silent[0].startswith("R's gradient is zero")


def test_the_reading_says_when_the_simulator_itself_explodes():
    """Brax's halfcheetah over 100 steps: R, M and both perturbations are infinite at the end. Ratios of two
    infinities mean nothing: compared where both are finite, and C is not suggested, since M explodes too."""
    both = reading(_result([1.0, 1e15, math.inf], [1.0, 1e12, math.inf], 0.5, 0.4, closed=math.inf, opened=math.inf))
    assert any("The simulator itself explodes" in line for line in both)
    assert any("R's gradient is 1e+03 times M's at horizon 10, the last where both are finite" in line for line in both)
    assert not any("inf times" in line for line in both)
    assert "C cannot help" in both[-1] and "shorter windows" in both[-1]
    only_r = reading(_result([1.0, 1e5, math.inf], [1.0, 10.0, 1e3], 0.4, 0.7))
    assert not any("simulator itself explodes" in line for line in only_r) and "C is likely to help" in only_r[-1]


def test_a_small_cart_pole_is_diagnosed_and_written(tmp_path):
    task = CartPole(n_poles=1, horizon=12, hidden=(8,), zero_final_kernel=False)
    result = diagnose_task(task, batch=4, horizons=(1, 3, 12))
    assert result["horizons"] == [1, 3, 12] and result["precision"] == "float32"
    assert len(result["step_norm"]["R"]) == 12 and len(result["closed_loop"]) == 13
    assert result["closed_loop"][0] == pytest.approx(1.0, rel=1e-5)
    g = result["grad_norm"]
    assert all(np.isfinite(g[m]).all() and np.all(np.array(g[m]) > 0) for m in ("R", "M", "C"))
    assert g["R"][0] == pytest.approx(g["M"][0], rel=1e-5)  # one step: nothing flows back through the network
    assert g["R"][-1] != pytest.approx(g["M"][-1], rel=1e-3)
    paths = write_diagnosis([result], tmp_path / "d", "cart pole")
    assert [p.name for p in paths] == ["diagnosis.json", "diagnosis.csv", "diagnosis.md", "diagnosis.png"]
    saved = json.loads(paths[0].read_text())
    assert saved["results"][0]["grad_norm"]["R"] == pytest.approx(g["R"])
    csv = paths[1].read_text().splitlines()
    assert csv[0].startswith("measured,horizon,loss,|g_R|") and len(csv) == 4
    assert "| horizon |" in paths[2].read_text() and paths[3].stat().st_size > 10_000


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_the_command_line_diagnoses_a_task_and_a_run_folder(tmp_path, capsys):
    out = tmp_path / "d"
    code = run(
        [
            "diagnose",
            "cartpole",
            "--poles",
            "1",
            "--horizon",
            "8",
            "--batch",
            "2",
            "--precision",
            "both",
            "--horizons",
            "2,8",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert not jax.config.jax_enable_x64  # the command leaves the process's precision as it found it
    printed = capsys.readouterr().out
    assert "float32" in printed and "float64" in printed and "Suggestion" in printed
    saved = json.loads((out / "diagnosis.json").read_text())["results"]
    assert [r["precision"] for r in saved] == ["float32", "float64"]
    # the same states and controller, measured in both precisions: equal to float32's accuracy
    np.testing.assert_allclose(saved[0]["grad_norm"]["R"], saved[1]["grad_norm"]["R"], rtol=1e-4)
    np.testing.assert_allclose(saved[0]["closed_loop"], saved[1]["closed_loop"], rtol=1e-4)  # the same directions
    run_dir = tmp_path / "run"
    assert (
        run(
            [
                "train",
                "cartpole",
                "--poles",
                "1",
                "--horizon",
                "8",
                "--epochs",
                "2",
                "--n-train",
                "8",
                "--n-test",
                "8",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    assert run(["diagnose", str(run_dir), "--horizons", "8", "--batch", "2"]) == 0
    saved = json.loads((run_dir / "diagnosis" / "diagnosis.json").read_text())["results"]
    assert [r["label"] for r in saved] == ["initial, float32", "trained, float32"]
    assert saved[0]["grad_norm"]["R"] != saved[1]["grad_norm"]["R"]
    assert not (run_dir / "diagnosis" / "diagnosis_along.png").exists()


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_a_run_with_snapshots_is_diagnosed_along_training(tmp_path, capsys):
    from stablebptt.runs import snapshots
    from stablebptt.runs.io import load_params

    small = ["cartpole", "--poles", "1", "--horizon", "8", "--n-train", "8", "--n-test", "8"]
    run_dir, short = tmp_path / "run", tmp_path / "short"
    assert run(["train", *small, "--epochs", "5", "--snapshot-every", "2", "--out", str(run_dir)]) == 0
    assert [e for e, _ in snapshots(run_dir)] == [2, 4]
    # the snapshot of epoch 4 is the controller a run of 4 epochs ends with
    assert run(["train", *small, "--epochs", "4", "--out", str(short)]) == 0
    like = CartPole(n_poles=1, horizon=8).init_controller(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(
        np.concatenate([np.ravel(a) for a in jax.tree.leaves(load_params(snapshots(run_dir)[1][1], like))]),
        np.concatenate([np.ravel(a) for a in jax.tree.leaves(load_params(short / "params.eqx", like))]),
    )
    capsys.readouterr()
    assert run(["diagnose", str(run_dir), "--horizons", "2,8", "--batch", "2"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((run_dir / "diagnosis" / "diagnosis.json").read_text())["results"]
    labels = ["initial", "epoch 2", "epoch 4", "trained, epoch 5"]
    assert [r["label"] for r in saved] == [f"{label}, float32" for label in labels]
    assert [r["compile_s"] == 0 for r in saved] == [False, True, True, True]  # one program for all four
    assert len({json.dumps(r["grad_norm"]["R"]) for r in saved}) == 4  # four different controllers
    assert "epoch 4, float32" in printed
    assert (run_dir / "diagnosis" / "diagnosis_along.png").stat().st_size > 0


@pytest.mark.slow  # tracing PhiFlow's smoke step takes about 25 s on 2 cores
def test_a_step_without_forward_mode_is_refused_in_one_line():
    """PhiFlow's pressure solve is a custom VJP: no jvp, so no perturbation growth; said as bad input, not a crash."""
    pytest.importorskip("phi")
    from stablebptt.tasks import Smoke

    with pytest.raises(BadInput, match="diagnose cannot measure task smoke: its step holds a custom VJP"):
        diagnose_task(Smoke(n_points=4, horizon=2, hidden=(4,)), batch=2, horizons=(1, 2))
