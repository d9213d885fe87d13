"""The `train` and `compare` commands end to end on tiny settings: the installed command in a subprocess once,
`main` in this process otherwise (bad input is in test_bad_inputs.py)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys

import pytest

TINY = ["--horizon", "10", "--epochs", "3"]


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "stablebptt", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def main_in(cwd, *args) -> int:
    """`stablebptt ARGS` in this process, from folder `cwd`."""
    from stablebptt.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(old)


def test_train_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    proc = run("train", "cartpole", "--poles", "1", "--method", "C", *TINY, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "cartpole" and config["task_settings"]["n_poles"] == 1
    assert config["train"]["method"] == "C" and config["train"]["epochs"] == 3
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["test_loss"])) for r in rows)
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "params.eqx").stat().st_size > 1000


def test_train_refuses_to_overwrite_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main_in(tmp_path, "train", "cartpole", *TINY, "--poles", "1", "--out", str(out)) == 0
    before = (out / "metrics.csv").read_bytes()
    assert main_in(tmp_path, "train", "cartpole", *TINY, "--poles", "1", "--lr", "0.01", "--out", str(out)) == 2
    assert "already holds a different run" in capsys.readouterr().err
    assert (out / "metrics.csv").read_bytes() == before


def test_compare_writes_figure_and_table(tmp_path, capsys):
    assert (
        main_in(
            tmp_path,
            "compare",
            "cartpole",
            "--poles",
            "1",
            *TINY,
            "--methods",
            "r,C",
            "--remat",
            "sqrt",
            "--seed",
            "7",
            "--out",
            str(tmp_path / "cmp"),
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").read_text().splitlines()))
    assert [r["method"] for r in rows] == ["R", "C"]
    assert all(math.isfinite(float(r["final_test_loss"])) for r in rows)
    assert "final test loss" in stdout and "after 3 epochs" in stdout
    assert json.loads((tmp_path / "cmp" / "R" / "config.json").read_text())["train"]["remat"] == "sqrt"


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_remat_and_truncation_options(tmp_path):
    """--remat only changes memory use, not results; --truncation changes the update and is recorded."""
    base = ["train", "cartpole", "--poles", "1", *TINY, "--n-train", "16", "--n-test", "16"]
    assert main_in(tmp_path, *base, "--out", str(tmp_path / "plain")) == 0
    assert main_in(tmp_path, *base, "--remat", "sqrt", "--out", str(tmp_path / "ckpt")) == 0
    assert main_in(tmp_path, *base, "--truncation", "3", "--out", str(tmp_path / "trunc")) == 0

    def losses(name):
        return [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / name / "metrics.csv"))]

    assert losses("ckpt") == pytest.approx(losses("plain"), rel=1e-5)
    assert losses("trunc") != pytest.approx(losses("plain"), rel=1e-5)
    config = json.loads((tmp_path / "trunc" / "config.json").read_text())
    assert config["train"]["truncation"] == 3 and "remat" not in config["train"]
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["train"]["remat"] == "sqrt"


def test_the_removed_checkpoint_option_is_refused(capsys):
    from stablebptt.cli.main import main

    assert main(["train", "cartpole", "--checkpoint", "sqrt"]) == 2  # deprecated in 0.2, removed: --remat
    err = capsys.readouterr().err  # not read as an abbreviation of --checkpoint-every
    assert err.count("\n") == 1 and "--checkpoint was removed" in err and "use --remat" in err


def test_compare_defaults_to_its_own_epochs_and_takes_seeds(tmp_path, monkeypatch, capsys):
    """`compare` trains 250 epochs and 3 seeds unless told otherwise (its help says so), batched by default, and
    --seeds, --seed and --batch-runs reach compare()."""
    import stablebptt.experiments.compare as compare_module
    from stablebptt.cli.commands import COMPARE_EPOCHS, COMPARE_SEEDS
    from stablebptt.cli.main import main

    seen = {}

    def fake_compare(out, config, methods, *, seeds, force, batch_runs, on_run):
        seen.update(epochs=config.train.epochs, seeds=list(seeds), methods=list(methods), batch=batch_runs)
        return [
            {
                "method": m,
                "seeds": len(seeds),
                "final_test_loss": 1.0,
                "final_test_min": 1.0,
                "final_test_max": 1.0,
                "best_test_loss": 1.0,
                "final_train_loss": 1.0,
                "seconds_per_epoch": 0.1,
            }
            for m in methods
        ]

    monkeypatch.setattr(compare_module, "compare", fake_compare)
    assert main(["compare", "cartpole", "--out", str(tmp_path / "a")]) == 0
    assert seen == {
        "epochs": COMPARE_EPOCHS,
        "seeds": list(COMPARE_SEEDS),
        "methods": ["R", "M", "C", "S"],
        "batch": "auto",
    }
    assert COMPARE_EPOCHS == 250 and len(COMPARE_SEEDS) == 3
    assert "median over 3 seeds" in capsys.readouterr().out
    args = ["compare", "cartpole", "--epochs", "7", "--methods", "R,C", "--batch-runs", "off"]
    assert main([*args, "--seeds", "1,2", "--out", str(tmp_path / "b")]) == 0
    assert seen == {"epochs": 7, "seeds": [1, 2], "methods": ["R", "C"], "batch": "off"}
    assert "median over 2 seeds" in capsys.readouterr().out
    assert main([*args, "--seed", "5", "--out", str(tmp_path / "c")]) == 0
    assert seen["seeds"] == [5]
    assert "median over" not in capsys.readouterr().out


def test_a_run_diverging_in_its_first_epoch_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "cartpole",
        "--poles",
        "1",
        "--method",
        "R",
        "--lr",
        "1e30",
        "--n-train",
        "16",
        "--n-test",
        "16",
        *TINY,
        "--out",
        str(out),
    ]
    assert main_in(tmp_path, *args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epoch 1" in err and "no epoch before it finished" in err and "none" not in err
    assert json.loads((out / "status.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    "args, option",
    [
        (["train", "cartpole", "--out", "x" * 300], "--out"),
        (["train", "cartpole", "--out", "deep/" + "y" * 300 + "/run"], "--out"),
        (["plot", ".", "--out", "/proc/x/figures"], "--out"),
        (["toy", "--out", "/proc/x"], "--out"),
    ],
    ids=["long-name", "long-inner-name", "plot-proc", "toy-proc"],
)
def test_os_errors_on_paths_are_one_line_naming_the_option(tmp_path, capsys, args, option):
    (tmp_path / "sweep.json").write_text('{"task": "cartpole", "runs": {}}')
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"task": "cartpole", "task_settings": {}, "train": {}}))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main_in(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"stablebptt {args[0]}: error: {option}") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


def test_sweep_caps_workers_at_the_number_of_runs(tmp_path, capsys):
    args = [
        "sweep",
        "cartpole",
        "--poles",
        "1",
        "--method",
        "R",
        "--horizon",
        "5",
        "--epochs",
        "1",
        "--n-train",
        "8",
        "--n-test",
        "8",
        "--batch-size",
        "8",
        "--workers",
        "1000",
        "--out",
        "s",
    ]
    assert main_in(tmp_path, *args) == 0
    captured = capsys.readouterr()
    assert "--workers 1000 capped at 1, the number of runs" in captured.err
    assert "(local backend, 1 worker" in captured.out


def test_version_prints_the_package_version(capsys):
    from stablebptt import __version__
    from stablebptt.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"stablebptt {__version__}\n"


def test_training_options_are_made_from_what_the_settings_declare():
    """One source for a training setting's help, default, kind and choices: the `TrainSettings` field."""
    import dataclasses

    from stablebptt.cli.options import TRAIN_OPTIONS
    from stablebptt.training import TrainSettings
    from stablebptt.training.settings import KINDS

    fields = dataclasses.fields(TrainSettings)
    assert [o.name for o in TRAIN_OPTIONS] == [f.name for f in fields]
    for field, option in zip(fields, TRAIN_OPTIONS, strict=True):
        kind = field.metadata["kind"]
        assert kind in KINDS or (isinstance(kind, tuple) and field.default in kind), field.name
        assert option.flags == ("--" + field.name.replace("_", "-"),) and option.help and "$" not in option.help
    options = {o.name: o for o in TRAIN_OPTIONS}
    assert "--clip-norm" in options["clip"].help  # a setting named in a help is shown as its flag
    assert options["optimizer"].type("sgd") == "sgd"
    with pytest.raises(argparse.ArgumentTypeError, match="invalid choice 'sideways'"):
        options["backward"].type("sideways")


def test_a_file_that_cannot_be_written_is_named_by_its_option(tmp_path):
    """An unwritable file is named as asked for (not by the hidden temporary file beside it), and the command
    line names the option nearest to it: --tables inside --records is --tables."""
    import argparse
    import errno

    from stablebptt.cli.guard import _os_error, _short
    from stablebptt.runs.io import atomic_write_bytes

    target = tmp_path / "missing" / "t.md"
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write_bytes(target, b"x")
    assert caught.value.filename == str(target)
    args = argparse.Namespace(records=tmp_path / "rec", tables=tmp_path / "rec" / "t.md", figures=tmp_path / "f")
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "rec" / "t.md"))
    # paths longer than 80 characters are shortened (_short): pytest's temporary folders grow with its run count
    assert _os_error(args, denied).startswith(
        f"--tables {_short(tmp_path / 'rec' / 't.md')}: Permission denied; allowed:"
    )
    inside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "rec" / "a" / "r.json.gz"))
    assert _os_error(args, inside).startswith(f"--records {_short(tmp_path / 'rec')}: Permission denied (at ")
