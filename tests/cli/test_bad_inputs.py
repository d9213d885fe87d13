"""Every bad input through the command line: exit 2, one line on stderr naming the problem, no traceback,
nothing created; an error raised inside a user's own simulator is bad input too (exit 2, one line naming the
user's function, recorded in the run's status.json); a failure of the program itself exits 1 in one line. The
cases call `main` in this process (each in its own folder): no case gets as far as compiling, so they take
milliseconds;
`test_the_installed_command_reports_like_main` runs the real `stablebptt` command for two of them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--poles", "1", "--horizon", "10", "--epochs", "2", "--n-train", "16", "--n-test", "16"]


def _file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder\n")


def _user_folder(tmp: Path) -> None:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("precious\n")


def _comparison(tmp: Path) -> None:
    for name in ("R-seed1", "C-seed1"):
        (tmp / "cmp" / name).mkdir(parents=True)
        (tmp / "cmp" / name / "config.json").write_text("{}")


def _corrupt_config(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text('{"task": "cartpole", "task_se')


def _not_a_config(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text('{"hello": 1}\n')


# (name, arguments, setup of the case's folder, words the error line must contain)
CASES = [
    ("unknown task", ["train", "pendulum"], None, ["pendulum", "cartpole"]),
    ("unknown method", ["train", "cartpole", "--method", "X"], None, ["--method", "'X'", "R, M, S, N, C"]),
    ("unknown optimizer", ["train", "cartpole", "--optimizer", "lbfgs"], None, ["--optimizer", "lbfgs", "adam"]),
    ("unknown clip mode", ["train", "cartpole", "--clip", "all"], None, ["--clip", "all", "norm, both"]),
    ("unknown schedule", ["train", "cartpole", "--schedule", "step"], None, ["--schedule", "step", "cosine"]),
    ("adam beta of 1", ["train", "cartpole", "--adam-b1", "1"], None, ["--adam-b1", "[0, 1)", "got 1.0"]),
    ("decay rate above 1", ["train", "cartpole", "--decay-rate", "1.5"], None, ["--decay-rate", "(0, 1]"]),
    ("unknown loss mode", ["train", "cartpole", "--loss", "mean"], None, ["--loss", "mean", "final"]),
    ("zero epochs", ["train", "cartpole", "--epochs", "0"], None, ["--epochs", "'0'", "positive integer"]),
    ("negative epochs", ["train", "cartpole", "--epochs", "-5"], None, ["--epochs", "-5"]),
    ("non-numeric epochs", ["train", "cartpole", "--epochs", "ten"], None, ["--epochs", "ten", "integer"]),
    ("fractional epochs", ["train", "cartpole", "--epochs", "2.5"], None, ["--epochs", "2.5", "integer"]),
    ("zero batch size", ["train", "cartpole", "--batch-size", "0"], None, ["--batch-size", "'0'"]),
    (
        "batch larger than data",
        ["train", "cartpole", *TINY, "--batch-size", "32"],
        None,
        ["batch size 32", "16", "1..16"],
    ),
    ("zero poles", ["train", "cartpole", "--poles", "0"], None, ["--poles", "'0'", "positive integer"]),
    ("zero horizon", ["train", "cartpole", "--horizon", "0"], None, ["--horizon", "'0'"]),
    ("negative lr", ["train", "cartpole", "--lr", "-1"], None, ["--lr", "-1", "positive"]),
    ("nan lr", ["train", "cartpole", "--lr", "nan"], None, ["--lr", "nan", "finite"]),
    ("non-numeric lr", ["train", "cartpole", "--lr", "fast"], None, ["--lr", "fast", "number"]),
    ("zero clip value", ["train", "cartpole", "--clip", "norm", "--clip-value", "0"], None, ["--clip-value", "'0'"]),
    ("negative seed", ["train", "cartpole", "--seed", "-1"], None, ["--seed", "-1", "non-negative"]),
    ("unknown adam eps form", ["train", "cartpole", "--adam-eps", "tf"], None, ["--adam-eps", "tf", "keras, optax"]),
    (
        "unknown regular-nonfinite",
        ["train", "cartpole", "--regular-nonfinite", "skip"],
        None,
        ["--regular-nonfinite", "skip", "zero, stop"],
    ),
    (
        "seed and seeds in compare",
        ["compare", "cartpole", *TINY, "--seed", "1", "--seeds", "1,2"],
        None,
        ["--seed", "--seeds", "not both"],
    ),
    ("bad seed in compare --seeds", ["compare", "cartpole", "--seeds", "1,x"], None, ["--seeds", "x"]),
    (
        "unknown batch-runs mode",
        ["sweep", "cartpole", "--batch-runs", "always"],
        None,
        ["--batch-runs", "always", "auto", "off"],
    ),
    ("zero checkpoint-every", ["train", "cartpole", "--checkpoint-every", "0"], None, ["--checkpoint-every", "'0'"]),
    ("zero n-train", ["train", "cartpole", "--n-train", "0"], None, ["--n-train", "'0'"]),
    ("unknown option", ["train", "cartpole", "--bogus", "1"], None, ["--bogus"]),
    ("out is a file", ["train", "cartpole", *TINY, "--out", "afile"], _file, ["--out", "afile", "not a folder"]),
    ("out under a file", ["train", "cartpole", *TINY, "--out", "afile/run"], _file, ["afile", "not a folder"]),
    (
        "out not writable",
        ["train", "cartpole", *TINY, "--out", "/proc/stablebptt-run"],
        None,
        ["--out", "/proc", "cannot write"],
    ),
    ("out holds no run", ["train", "cartpole", *TINY, "--out", "mine"], _user_folder, ["mine", "not empty"]),
    (
        "out holds no run, forced",
        ["train", "cartpole", *TINY, "--out", "mine", "--force"],
        _user_folder,
        ["mine", "not empty"],
    ),
    ("unknown command", ["fly"], None, ["fly", "train"]),
    ("diagnose zero horizon", ["diagnose", "cartpole", "--horizons", "0,5"], None, ["--horizons", "'0'"]),
    ("diagnose bad precision", ["diagnose", "cartpole", "--precision", "16"], None, ["--precision", "16", "both"]),
    ("diagnose missing run folder", ["diagnose", "runs/nowhere"], None, ["runs/nowhere", "does not exist"]),
    ("diagnose folder without run", ["diagnose", "mine"], _user_folder, ["mine", "not a run folder"]),
    ("diagnose unknown task", ["diagnose", "pendulum"], None, ["no task and no folder named pendulum", "cartpole"]),
    ("diagnose a comparison", ["diagnose", "cmp"], _comparison, ["cmp holds 2 runs", "cmp/C-seed1"]),
    ("animate a comparison", ["animate", "cmp"], _comparison, ["cmp holds 2 runs", "cmp/C-seed1"]),
    ("resume a comparison", ["resume", "cmp"], _comparison, ["cmp holds 2 runs", "cmp/C-seed1"]),
    ("compare unknown method", ["compare", "cartpole", "--methods", "R,Z"], None, ["--methods", "'Z'"]),
    ("resume missing folder", ["resume", "nowhere"], None, ["nowhere", "does not exist"]),
    ("resume corrupt config", ["resume", "run"], _corrupt_config, ["config.json", "not valid JSON"]),
    ("resume not a config", ["resume", "run"], _not_a_config, ["config.json", "not a stablebptt run config"]),
    ("resume zero epochs", ["resume", "run", "--epochs", "0"], _not_a_config, ["--epochs", "'0'"]),
    ("zero truncation", ["train", "cartpole", "--truncation", "0"], None, ["--truncation", "'0'"]),
    ("zero unroll", ["train", "cartpole", "--unroll", "0"], None, ["--unroll", "'0'"]),
    ("unknown remat", ["train", "cartpole", "--remat", "halves"], None, ["--remat", "halves", "sqrt"]),
    ("removed checkpoint", ["train", "cartpole", "--remat", "4", "--checkpoint", "sqrt"], None, ["--checkpoint"]),
    ("autodiff for C", ["train", "cartpole", "--backward", "autodiff"], None, ["method C", "joint"]),
    ("unknown backward", ["train", "cartpole", "--backward", "sideways"], None, ["--backward", "sideways"]),
    ("sweep zero truncation", ["sweep", "cartpole", "--truncation", "2,0"], None, ["--truncation", "'0'"]),
    ("sweep lowercase method list", ["sweep", "cartpole", "--methods", "r,q"], None, ["--methods", "'q'"]),
    ("compare repeated seed", ["compare", "cartpole", "--seeds", "42,42"], None, ["--seeds", "42 is given twice"]),
    ("compare repeated method", ["compare", "cartpole", "--methods", "C,c"], None, ["--methods", "C is given twice"]),
    ("sweep repeated lr", ["sweep", "cartpole", "--lr", "1e-3,0.001"], None, ["--lr", "0.001 is given twice"]),
    ("compare unknown remat", ["compare", "cartpole", "--remat", "x"], None, ["--remat", "'x'"]),
    ("compare batch larger than data", ["compare", "cartpole", *TINY, "--batch-size", "32"], None, ["batch size 32"]),
    # 1.4 TB at least (an update of 10**8 steps): more than any machine; refused before compiling
    (
        "horizon beyond memory",
        ["train", "cartpole", "--horizon", "100000000", "--out", "x"],
        None,
        ["horizon 100000000", "GB", "--remat sqrt"],
    ),
    ("compare horizon beyond memory", ["compare", "cartpole", "--horizon", "100000000"], None, ["--remat sqrt"]),
    # Refused where they are given, not blamed later on the loss or the network.
    (
        "sweep syntax outside a sweep",
        ["train", "repulsion", "--set", "rc=0.5,1.0"],
        None,
        ["rc must be a non-negative number", "'0.5,1.0'", "stablebptt sweep repulsion --set rc=0.5,1.0"],
    ),
    ("text for an integer field", ["train", "cartpole", "--set", "horizon=ten"], None, ["horizon", "'ten'"]),
    ("a zero-width layer", ["train", "cartpole", "--set", "hidden=[0]"], None, ["hidden", "positive layer widths"]),
    ("layer widths as text", ["train", "cartpole", "--set", "hidden=wide"], None, ["hidden", "got 'wide'"]),
    ("an empty item in a list", ["sweep", "cartpole", "--poles", "1,,2"], None, ["--poles", "empty", "'1,,2'"]),
    ("an empty value in --set", ["sweep", "cartpole", "--set", "horizon=10,,20"], None, ["without empty values"]),
    # A SHAC option given without --protocol shac is refused even at its default value (TrainSettings cannot tell
    # a default given from one left out; the command line can).
    (
        "a critic option at its default without shac",
        ["train", "cartpole", "--lam", "0.95"],
        None,
        ["--lam is a setting of the SHAC protocol's critic", "--protocol shac"],
    ),
    (
        "a SHAC option in a sweep without shac",
        ["sweep", "cartpole", "--protocol", "dataset,stream", "--episode-restart", "window"],
        None,
        ["--episode-restart is a setting of the SHAC protocol;", "--protocol shac"],
    ),
    # A report of records that are not there would replace the last page with one of nothing.
    (
        "a report of a records folder that is not there",
        ["reproduce", "report", "--records", "typo", "--figures", "figs", "--tables", "page.md"],
        None,
        ["--records typo: no such folder", "records to report"],
    ),
    (
        "the study's report without the paper's records",
        ["reproduce", "report", "--study", "shac", "--records", "afile", "--paper-records", "none"],
        _file,
        ["--records afile is a file, not a folder of records"],
    ),
    (
        "more critic minibatches than samples",
        [
            "train",
            "cartpole",
            *TINY,
            "--protocol",
            "shac",
            "--window",
            "5",
            "--batch-size",
            "4",
            "--critic-batches",
            "21",
        ],
        None,
        ["--critic-batches 21", "(20: --window 5 steps x --batch-size 4 environments)", "give at most 20"],
    ),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in folder.rglob("*")}


def _run(args, folder, capsys) -> tuple[int, str]:
    from stablebptt.cli.main import main

    capsys.readouterr()
    old = os.getcwd()
    os.chdir(folder)
    try:
        code = main(args)
    except SystemExit as e:  # argparse
        code = e.code
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """{name: (folder, args)}: each case's folder, set up."""
    cases = {}
    for name, args, setup, _ in CASES:
        folder = tmp_path_factory.mktemp("case")
        if setup is not None:
            setup(folder)
        cases[name] = folder, args
    return cases


def test_at_least_15_cases():
    assert len(CASES) >= 15 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, words", [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(outcomes, name, words, capsys):
    folder, args = outcomes[name]
    before = _snapshot(folder)
    code, stderr = _run(args, folder, capsys)
    after = _snapshot(folder)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    command = args[0] if args[0] in ("train", "compare", "resume", "sweep", "diagnose", "animate", "reproduce") else ""
    assert lines[0].startswith(f"stablebptt {command}: ".replace(" :", ":")) and "error" in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert after == before, "the command created or changed files"


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = ["train", "cartpole", *TINY, "--batch-size", "32", "--debug"]
    proc = subprocess.run(
        [sys.executable, "-m", "stablebptt", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "batch size 32" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_installed_command_reports_like_main(tmp_path):
    """The real command (a subprocess) for one argparse error and one error found after parsing."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for args, word in (
        (["train", "cartpole", "--poles", "0"], "--poles"),
        (["train", "cartpole", *TINY, "--batch-size", "32"], "batch size 32"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "stablebptt", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2 and proc.stderr.startswith("stablebptt train: error: ") and word in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


BROKEN_STEP = """
import jax.numpy as jnp
from stablebptt.tasks import CartPole


class Broken(CartPole):
    def step(self, x, c):
        return x + jnp.ones(3)  # a bug: shapes that do not broadcast, found inside JAX
"""


def test_an_error_inside_a_user_step_is_bad_input_naming_the_step(tmp_path, monkeypatch, capsys):
    (tmp_path / "brokentask.py").write_text(BROKEN_STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, stderr = _run(
        [
            "train",
            "brokentask:Broken",
            "--set",
            "horizon=4",
            "--epochs",
            "1",
            "--n-train",
            "8",
            "--n-test",
            "8",
            "--out",
            "run",
        ],
        tmp_path,
        capsys,
    )
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert re.match(
        r"stablebptt train: error: the simulator step `Broken.step` raised (TypeError|ValueError): "
        r".*shapes.*\(its input: state float\d+\[8,3,2\], control float\d+\[8\]\)$",
        lines[0],
    ), lines[0]
    assert "Traceback" not in stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())  # the run folder records the failure
    assert status["status"] == "failed" and status["message"].endswith(lines[0].split("error: ", 1)[1])


def test_a_failure_of_the_program_is_exit_1_not_bad_input(tmp_path, monkeypatch, capsys):
    """An error that is not the user's (here: the trainer's compilation fails) is one line, exit 1, recorded."""
    from stablebptt.training.train import Trainer

    def broken_compile(self):
        raise RuntimeError("XLA: internal error\nmore detail")

    monkeypatch.setattr(Trainer, "compile", broken_compile)
    code, stderr = _run(["train", "cartpole", *TINY, "--out", "run"], tmp_path, capsys)
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1, stderr
    assert lines[0] == (
        "stablebptt train: error: RuntimeError: XLA: internal error (a failure, not bad input; rerun "
        "with --debug for the traceback)"
    )
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and status["message"] == "RuntimeError: XLA: internal error"


def test_a_horizon_beyond_memory_is_refused_before_compiling(tmp_path, monkeypatch, capsys):
    """--horizon 10000000 (XLA asks for 381 GB after seconds of compiling) is refused at once, in one line that
    suggests --remat sqrt, and no run folder is made."""
    from stablebptt.training import budget

    limit, where = budget.memory_limit()
    monkeypatch.setattr(budget, "memory_limit", lambda: (min(limit, 100 * 10**9), where))  # below the 143 GB
    code, stderr = _run(["train", "cartpole", "--horizon", "10000000", "--out", str(tmp_path / "x")], tmp_path, capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith("stablebptt train: error: horizon 10000000 needs at least 143 GB")
    assert "--remat sqrt" in lines[0]
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_options_without_effect_get_a_note(tmp_path, capsys):
    code, stderr = _run(
        [
            "train",
            "cartpole",
            "--poles",
            "1",
            "--horizon",
            "5",
            "--truncation",
            "500",
            "--remat",
            "1000",
            "--epochs",
            "1",
            "--n-train",
            "8",
            "--n-test",
            "8",
            "--out",
            "run",
        ],
        tmp_path,
        capsys,
    )
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if ": note: " in line]
    assert [n.split(": note: ")[0] for n in notes] == ["stablebptt train"] * 2
    assert "truncation 500 has no effect at horizon 5" in notes[0] and "remat 1000 has no effect" in notes[1]
