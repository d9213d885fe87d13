"""Hand-copied tables of benchmarks/README.md, and the README's performance paragraph, agree with the JSON their
benchmark wrote, every number to its printed digits (R's update against its arithmetic: arithmetic.json; the
compilation cache's first and second start: compile_cache.json; the README: per_update.json and memory.json):
editing either side without the other fails."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = {"cart pole": "cartpole", "quantum": "quantum"}


def agrees(printed: str, value: float) -> bool:
    d = Decimal(printed)
    half = Decimal(1).scaleb(d.as_tuple().exponent) / 2
    return abs(float(d) - value) <= float(half) * (1 + 1e-9)


def expected(row: dict) -> list[float]:
    """The table's numbers in order: MFLOP, update ms, bound at the network's rate ms (its GFLOP/s), x, bound at
    the peak ms (its GFLOP/s), x, the floor ms, x, the evaluation ms."""
    return [
        row["flops"] / 1e6,
        row["update_median_s"] * 1e3,
        row["bound_at_network_rate_s"] * 1e3,
        row["network_batched_flops_per_s"] / 1e9,
        row["measured_over_network_rate"],
        row["bound_at_peak_s"] * 1e3,
        row["peak_flops_per_s"] / 1e9,
        row["measured_over_peak"],
        row["stepwise_floor_median_s"] * 1e3,
        row["measured_over_stepwise_floor"],
        row["evaluation_median_s"] * 1e3,
    ]


@pytest.mark.parametrize("name", list(ROWS))
def test_the_arithmetic_table_agrees_with_its_json(name):
    rows = {r["task"]: r for r in json.loads((ROOT / "benchmarks/results/arithmetic.json").read_text())["rows"]}
    readme = (ROOT / "benchmarks/README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith(f"| {name} (batch 8,")]
    cells = line.strip("|").split("|")[1:]  # after the task's name (whose sizes are not figures of the run)
    printed = [n for cell in cells for n in re.findall(r"\d+(?:\.\d+)?", cell)]
    want = expected(rows[ROWS[name]])
    assert len(printed) == len(want), (printed, want)
    for p, v in zip(printed, want, strict=True):
        assert agrees(p, v), (name, p, v)


CACHE_ROWS = {
    "`train cartpole --epochs 1`": "train-cartpole",
    "`compare cartpole --epochs 1 --seeds 42`": "compare-cartpole",
    "`train mjx-cartpole --epochs 1`": "train-mjx-cartpole",
    "`train brax:inverted_double_pendulum --epochs 1`": "train-brax-idp",
}


@pytest.mark.parametrize("command", list(CACHE_ROWS))
def test_the_compilation_cache_table_agrees_with_its_json(command):
    rows = {r["case"]: r for r in json.loads((ROOT / "benchmarks/results/compile_cache.json").read_text())["rows"]}
    row = rows[CACHE_ROWS[command]]
    readme = (ROOT / "benchmarks/README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith(f"| {command} |")]
    cells = line.strip("|").split("|")[1:]
    printed = [n for cell in cells for n in re.findall(r"\d+(?:\.\d+)?", cell)]
    want = [row[k] for k in ("cold_wall_s", "warm_wall_s", "cold_over_warm", "cold_cpu_s", "warm_cpu_s", "entries")]
    assert len(printed) == len(want), (printed, want)
    for p, v in zip(printed, want, strict=True):
        assert agrees(p, v), (command, p, v)


def test_the_diffrl_table_agrees_with_its_json_and_every_piece_agrees():
    """benchmarks/README.md §9 prints vs_diffrl_shac.json's rows; each within its tolerance (the script's verdict)."""
    payload = json.loads((ROOT / "benchmarks/results/vs_diffrl_shac.json").read_text())
    readme = (ROOT / "benchmarks/README.md").read_text()
    assert payload["rows"] and all(r["agrees"] and r["ratio"] <= r["tolerance"] for r in payload["rows"])
    assert f"DiffRL commit\n`{payload['diffrl']['commit'][:7]}`" in readme
    for row in payload["rows"]:
        (line,) = [x for x in readme.splitlines() if x.startswith(f"| {row['piece']} |")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert int(cells[1]) == row["numbers"], row["piece"]
        for printed, value in zip(cells[2:5], (row["max_abs_error"], row["max_abs"], row["ratio"]), strict=True):
            assert agrees(printed, value), (row["piece"], printed, value)
        assert cells[5] == ("yes" if row["clipped"] else "no")


def _json(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / name).read_text())


def test_the_readmes_performance_paragraph_agrees_with_its_json():
    """README.md, "Performance": C's cost per update against R's and R's against plain autodiff on cart pole
    (per_update.json), and the working memory of a C update at horizon 100,000 with and without remat
    (memory.json)."""
    text = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(
        r"C costs ([\d.]+)x R per update .*? R takes ([\d.]+) of the time of a hand-written .*? a C update at horizon"
        r" 100,000 needs ([\d.]+) MB of XLA working memory instead of ([\d.]+) MB",
        text,
    )
    assert found, "README.md: the performance sentence is gone"
    (cartpole,) = [r for r in _json("per_update.json")["rows"] if r["task"] == "cartpole"]
    t = cartpole["timings"]
    memory = {
        r["remat"]: r["xla_temp_mb"]
        for r in _json("memory.json")["rows"]
        if (r["horizon"], r["method"], r["backward"]) == (100000, "C", "joint")
    }
    values = [
        t["C joint"]["median_s"] / t["R"]["median_s"],
        t["R"]["median_s"] / t["plain scan+grad"]["median_s"],
        memory["sqrt"],
        memory["none"],
    ]
    wrong = [(p, v) for p, v in zip(found.groups(), values, strict=True) if not agrees(p, v)]
    assert not wrong, f"README.md, printed against per_update.json / memory.json: {wrong}"


def test_the_shac_epoch_table_and_its_reading_agree_with_its_json():
    """benchmarks/README.md §10: every cell of the table, and the critic's share and SHAC's cost per environment
    step in its reading, against shac_epoch.json."""
    text = (ROOT / "benchmarks" / "README.md").read_text()
    section = text[text.index("## 10. Where a SHAC epoch's time goes") :]
    rows = {(r["method"], r["variant"]): r for r in _json("shac_epoch.json")["rows"]}
    assert _json("shac_epoch.json")["quick"] is False
    table = [line for line in section.splitlines() if line.startswith(("| R |", "| C |"))]
    assert len(table) == len(rows) == 8
    for line in table:
        method, variant, epoch_ms, steps, per_million = (c.strip() for c in line.strip("|").split("|"))
        row = rows[method, variant]
        assert agrees(epoch_ms, row["epoch_median_s"] * 1e3), line
        assert int(steps) == row["env_steps_per_epoch"], line
        assert agrees(per_million, row["s_per_million_env_steps"]), line
    reading = " ".join(section.split())
    found = re.search(r"take (\d+) % of a SHAC epoch with R and (\d+) % with C", reading)
    assert found, "the critic's share is gone from the reading"
    shares = [100 * rows[m, "shac"]["critic_share"] for m in "RC"]
    assert all(agrees(p, v) for p, v in zip(found.groups(), shares, strict=True)), (found.groups(), shares)
    found = re.search(r"costs ([\d.]+)x \(R\) and ([\d.]+)x \(C\) as much under SHAC", reading)
    assert found, "SHAC's cost per environment step is gone from the reading"
    ratios = [rows[m, "paper loop"]["shac_over_paper_per_env_step"] for m in "RC"]
    assert all(agrees(p, v) for p, v in zip(found.groups(), ratios, strict=True)), (found.groups(), ratios)


def test_the_readmes_mjx_cost_agrees_with_its_json():
    """README.md, MuJoCo MJX: C's cost per update over R's on mjx-cartpole, against per_update_mjx.json."""
    text = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"C cost ([\d.]+)x R per update \(`benchmarks/results/per_update_mjx.json`\)", text)
    assert found, "README.md: the MJX cost sentence is gone"
    (row,) = _json("per_update_mjx.json")["rows"]
    assert agrees(found.group(1), row["timings"]["C joint"]["median_s"] / row["timings"]["R"]["median_s"])
