"""Helpers shared by the benchmark scripts: machine description, interleaved timing, tables and the one JSON
schema every script writes (`result`, `check_result`).

Every result file is one JSON object with at least these keys (`SCHEMA`, version 1):

- ``schema``: ``"stablebptt-benchmark/1"``;
- ``benchmark``: the script's name (``per_update``);
- ``quick``: whether it was the ``--quick`` smoke run;
- ``argv``: the script's command-line arguments;
- ``machine``: what it ran on (`machine`);
- ``settings``: what was measured and how often (a flat object: sizes, rounds, repeats, tasks, seeds);
- ``rows``: a list of objects, one per measured case, each naming its case (task, method, horizon...) and its
  figures (times in seconds, memory in bytes, ratios measured in the same process).

A script may add keys of its own (a summary, a figure's data). Run ``python benchmarks/_common.py FILE...`` to
check files against the schema (`.ci/run` does, after running every script with ``--quick``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "x64": bool(jax.config.jax_enable_x64),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 3, *, shuffle: bool = False
) -> dict[str, dict[str, float]]:
    """Time each zero-argument function `repeats` times, interleaved (one call of each per round), so that
    load from other processes hits all variants alike. With `shuffle`, each round calls them in another order
    (a fixed seed), so that no variant always follows the same one (a large neighbour evicts the caches of the
    next; rotating the start keeps the neighbours). Returns per
    name: median, min and p90 wall seconds and the median process CPU seconds (all threads), which is less
    sensitive to other processes."""
    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for i in rng.permutation(len(order)) if shuffle else range(len(order)):
            name, fn = order[i]
            c0, t0 = time.process_time(), time.perf_counter()
            block(fn())
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        k: {
            "median_s": float(np.median(wall[k])),
            "min_s": float(np.min(wall[k])),
            "p90_s": float(np.percentile(wall[k], 90)),
            "cpu_median_s": float(np.median(cpu[k])),
            "repeats": repeats,
        }
        for k in fns
    }


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [list(headers)] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


SCHEMA = "stablebptt-benchmark/1"
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "benchmark": str,
    "quick": bool,
    "argv": list,
    "machine": dict,
    "settings": dict,
    "rows": list,
}


def result(
    benchmark: str, *, quick: bool, settings: dict[str, Any], rows: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A result in the shared schema (module docstring); `extra` adds the script's own keys. Checked here."""
    payload = {
        "schema": SCHEMA,
        "benchmark": benchmark,
        "quick": quick,
        "argv": sys.argv[1:],
        "machine": machine(),
        "settings": settings,
        "rows": rows,
        **extra,
    }
    problems = check_result(payload)
    if problems:
        raise ValueError(f"benchmark {benchmark} built a result outside the schema: {problems[0]}")
    return payload


def check_result(payload: Any) -> list[str]:
    """What is wrong with `payload` as a result of the shared schema (empty if nothing): missing keys, wrong
    types, an empty list of rows, rows that are not objects."""
    if not isinstance(payload, dict):
        return [f"a result is a JSON object, got {type(payload).__name__}"]
    problems = [
        f"key {key!r} missing"
        if key not in payload
        else f"key {key!r} must be {kind.__name__}, got {payload[key]!r:.60}"
        for key, kind in REQUIRED.items()
        if not isinstance(payload.get(key), kind)
    ]
    if payload.get("schema", SCHEMA) != SCHEMA:
        problems.append(f"schema {payload['schema']!r} is not {SCHEMA!r}")
    rows = payload.get("rows")
    if isinstance(rows, list):
        if not rows:
            problems.append("rows is empty: nothing was measured")
        problems += [f"row {i} is not an object" for i, row in enumerate(rows) if not isinstance(row, dict)]
    return problems


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def default_output(script: str, quick: bool) -> Path:
    """``benchmarks/results/<script>[_quick].json``."""
    here = Path(script).resolve().parent
    stem = Path(script).stem
    return here / "results" / f"{stem}{'_quick' if quick else ''}.json"


def _check_files(paths: list[str]) -> int:
    """Check result files against the schema; print one line per file; 1 if any fails."""
    failed = 0
    for path in paths:
        try:
            problems = check_result(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            problems = [f"cannot read it: {e}"]
        failed += bool(problems)
        print(f"{path}: {'ok' if not problems else '; '.join(problems)}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python benchmarks/_common.py RESULT.json...", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(_check_files(sys.argv[1:]))
