"""The entry point answers `--version`, `--help` and a missing or unknown command without importing JAX, with
exactly what the full parser says."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from stablebptt.cli import main
try:
    code = main({args!r})
except SystemExit as e:
    code = e.code
print("jax imported" if "jax" in sys.modules else "jax not imported", code)
"""


@pytest.mark.parametrize(
    ("args", "code"), [(["--version"], 0), (["--help"], 0), (["trian"], 2), ([], 2), (["--debug"], 2)]
)
def test_the_top_level_answers_without_jax(args, code):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == f"jax not imported {code}", proc.stdout + proc.stderr
    if code == 2:
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("stablebptt: error:")


def test_the_light_top_level_is_the_full_one(capsys):
    from stablebptt.cli.commands import build_parser
    from stablebptt.cli.main import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out == build_parser().format_help()
    with pytest.raises(SystemExit):
        main(["trian"])
    light = capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["trian"])
    assert light == capsys.readouterr().err


def _folder_of_runs(tmp_path):
    """A sweep folder as `stablebptt sweep` leaves it: a complete run, a failed one and an unreadable one."""
    import json

    for name, status in (("a", "complete"), ("b", "failed"), ("c", None)):
        run = tmp_path / "sweep" / name
        run.mkdir(parents=True)
        config = {"task": "cartpole", "task_settings": {"n_poles": 1}, "train": {"epochs": 2, "method": "R"}}
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.csv").write_text("epoch,loss,test_loss\n1,2.0,2.5\n2,1.0,1.5\n")
        (run / "status.json").write_text(
            json.dumps({"status": status, "epoch": 2, "message": "boom"}) if status else "{not json"
        )
    return tmp_path / "sweep"


@pytest.mark.parametrize(
    ("where", "extra", "code"), [("sweep", [], 0), ("sweep/a", [], 0), ("nothing", [], 2), ("sweep", ["b"], 2)]
)
def test_status_reads_folders_without_jax_and_says_what_the_full_parser_says(tmp_path, where, extra, code):
    """`status` only reads files: it answers without importing JAX, with the output of the full command."""
    _folder_of_runs(tmp_path)
    args = ["status", str(tmp_path / where), *extra]
    light = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=120)
    assert light.stdout.strip().splitlines()[-1] == f"jax not imported {code}", light.stdout + light.stderr
    full = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE.replace("from stablebptt.cli import main", "from stablebptt.cli.commands import run as main").format(
                args=args
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert full.stdout.strip().splitlines()[-1] == f"jax imported {code}"
    assert light.stdout.strip().splitlines()[:-1] == full.stdout.strip().splitlines()[:-1]
    assert light.stderr == full.stderr
    if extra:
        assert light.stderr.strip() == "stablebptt status: error: unrecognized arguments: b"
    elif where == "sweep":
        assert "3 runs: 1 complete, 1 failed, 1 unreadable" in light.stdout
        assert "boom" in light.stdout and "1.5" in light.stdout
    if where == "nothing":
        assert light.stderr.strip() == f"stablebptt status: error: {tmp_path / where} is not a folder"
