"""The benchmarks' shared result schema (benchmarks/_common.py): every committed result follows it, and the check
finds what a result lacks. The scripts themselves run in `.ci/run` (``--quick``), not here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS = sorted(BENCHMARKS.glob("results/*.json"))
PARTIAL = [p for p in RESULTS if p.name.endswith(".partial.json")]


@pytest.mark.parametrize("path", [p for p in RESULTS if p not in PARTIAL], ids=lambda p: p.name)
def test_every_committed_result_follows_the_schema(common, path):
    payload = json.loads(path.read_text())
    assert common.check_result(payload) == []
    assert path.stem.startswith(payload["benchmark"])
    assert payload["quick"] == ("_quick" in path.stem)


@pytest.mark.parametrize("path", PARTIAL, ids=lambda p: p.name)
def test_every_committed_partial_result_can_be_resumed(path):
    """A study's .partial.json (kept so that `--resume` carries it across stops of work) is not a result yet: it
    holds the settings it was written with and the runs done so far, each complete."""
    payload = json.loads(path.read_text())
    assert set(payload) >= {"machine", "settings", "rows"}
    assert not path.with_name(path.name.replace(".partial.json", ".json")).exists(), "a finished study left its partial"
    assert payload["rows"], "a partial result with no runs"
    for row in payload["rows"]:
        assert {"env", "variant", "seed", "lr", "curve", "status"} <= set(row)
        assert row["curve"] and row["seed"] in payload["settings"]["seeds"]


def test_every_script_writes_through_the_schema():
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert scripts, "no benchmark scripts found"
    for script in scripts:
        text = script.read_text()
        assert "_common.result(" in text, f"{script.name} does not build its JSON with _common.result"
        assert "sys.path.insert(0, str(HERE" not in text and "sys.path.append" not in text


def test_result_builds_a_valid_payload(common):
    payload = common.result("demo", quick=True, settings={"rounds": 1}, rows=[{"case": "a", "s": 0.1}], extra=3)
    assert common.check_result(payload) == [] and payload["extra"] == 3 and payload["schema"] == common.SCHEMA


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.pop("rows"), "key 'rows' missing"),
        (lambda p: p.update(rows=[]), "rows is empty: nothing was measured"),
        (lambda p: p.update(rows=[1.5]), "row 0 is not an object"),
        (lambda p: p.update(quick="yes"), "key 'quick' must be bool, got 'yes'"),
        (lambda p: p.update(schema="stablebptt-benchmark/0"), "schema 'stablebptt-benchmark/0' is not"),
    ],
)
def test_check_names_what_is_wrong(common, change, problem):
    payload = common.result("demo", quick=False, settings={}, rows=[{"case": "a"}])
    change(payload)
    problems = common.check_result(payload)
    assert len(problems) == 1 and problems[0].startswith(problem)
    with pytest.raises(ValueError, match="outside the schema"):
        common.result("demo", quick=False, settings={}, rows=[])


def test_the_checker_exits_non_zero_on_a_bad_file(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({**json.loads((BENCHMARKS / "results/batch_runs.json").read_text())}))
    bad.write_text('{"benchmark": "x"}')
    ran = subprocess.run([sys.executable, str(BENCHMARKS / "_common.py"), str(good)], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip().endswith(": ok")
    ran = subprocess.run(
        [sys.executable, str(BENCHMARKS / "_common.py"), str(good), str(bad)], capture_output=True, text=True
    )
    assert ran.returncode == 1 and "bad.json: key 'schema' missing" in ran.stdout
