"""The persistent compilation cache on the command line: `--cache`, ``STABLEBPTT_CACHE``, a cache that cannot
be written, and `stablebptt cache` (answered without JAX)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from stablebptt.cli import main
from stablebptt.runs.cache import cache_size

TINY = ["cartpole", "--poles", "1", "--horizon", "10", "--n-train", "16", "--n-test", "16", "--epochs", "1"]


def stablebptt(*args, cwd, cache):
    """`stablebptt ARGS` in a new process, with ``STABLEBPTT_CACHE`` set to `cache`."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "STABLEBPTT_CACHE": str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "stablebptt", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def epochs(run) -> int:
    return len(list(csv.DictReader((run / "metrics.csv").read_text().splitlines())))


def test_train_writes_its_programs_into_the_folder_of_the_option(tmp_path):
    option, env = tmp_path / "option-cache", tmp_path / "env-cache"
    proc = stablebptt("train", *TINY, "--out", str(tmp_path / "run"), "--cache", str(option), cwd=tmp_path, cache=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    entries, size = cache_size(option)
    assert entries > 0 and size > 0
    assert not env.exists()  # the option wins over STABLEBPTT_CACHE


def test_a_cache_that_cannot_be_written_is_one_warning_and_training_goes_on(tmp_path, unwritable_folder):
    folder = unwritable_folder
    proc = stablebptt("train", *TINY, "--out", str(tmp_path / "run"), cwd=tmp_path, cache=folder)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith(f"stablebptt train: warning: the compilation cache {folder} cannot be written (")
    assert "STABLEBPTT_CACHE=off" in warnings[0]
    assert epochs(tmp_path / "run") == 1


def test_an_empty_cache_option_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", *TINY, "--cache", ""])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "stablebptt train: error: argument --cache: expected a folder or off, got an empty value"


def test_the_cache_command_reports_and_clears(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "jit_f-0123-cache").write_bytes(b"x" * 250_000)
    (folder / "jit_g-4567-cache").write_bytes(b"x" * 250_000)
    monkeypatch.setenv("STABLEBPTT_CACHE", str(folder))
    assert main(["cache"]) == 0
    assert capsys.readouterr().out.strip() == f"{folder}: 2 entries, 0.5 MB"
    assert main(["cache", "--clear"]) == 0
    assert capsys.readouterr().out.strip() == f"{folder}: removed 2 entries (0.5 MB)"
    assert list(folder.iterdir()) == []
    assert main(["cache", str(tmp_path / "new")]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'new'}: 0 entries, 0.0 MB (not created yet)"


def test_clearing_a_folder_that_is_no_cache_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("precious")
    assert main(["cache", str(tmp_path), "--clear"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stablebptt cache: error: {tmp_path} holds 1 other file(s)") and "\n" not in err
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_an_off_cache_is_said_and_not_cleared(capsys, monkeypatch):
    monkeypatch.setenv("STABLEBPTT_CACHE", "off")
    assert main(["cache"]) == 0
    assert capsys.readouterr().out.strip() == "the compilation cache is off (STABLEBPTT_CACHE=off)"
    assert main(["cache", "--clear"]) == 2
    assert "name its folder: stablebptt cache DIR --clear" in capsys.readouterr().err


def test_the_cache_command_answers_without_jax(tmp_path):
    probe = "import sys; from stablebptt.cli import main; code = main(['cache']); print('jax' in sys.modules, code)"
    env = {**os.environ, "STABLEBPTT_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines() == [f"{tmp_path}: 0 entries, 0.0 MB", "False 0"], proc.stderr
