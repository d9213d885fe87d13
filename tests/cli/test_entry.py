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
