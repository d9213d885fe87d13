"""What the persistent compilation cache saves at a start (issue 46, item 1): a command's whole wall time, run as a
new process, with an empty cache (it compiles every program and writes it to the cache) and again with the cache
it left (it reads its programs). Each case is a one-epoch run, so the command's time is the time to its first
finished epoch, plus writing the run folder. Every round starts from a new, empty cache folder
(``STABLEBPTT_CACHE``); the table gives the median over rounds and the entries and size the cold start wrote.

    python benchmarks/compile_cache.py           # train and compare cart pole, train mjx-cartpole and
                                                 # brax:inverted_double_pendulum; 2 rounds
    python benchmarks/compile_cache.py --quick   # train and compare cart pole (1 pole, horizon 20); 1 round
    python benchmarks/compile_cache.py --cases train-cartpole,compare-cartpole
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

from stablebptt.runs.cache import cache_size

SMALL = ["--poles", "1", "--horizon", "20"]
# name -> (command line after `stablebptt`, the run folder given with --out; in --quick, there made SMALL).
CASES: dict[str, tuple[list[str], bool]] = {
    "train-cartpole": (["train", "cartpole", "--epochs", "1"], True),
    "compare-cartpole": (["compare", "cartpole", "--epochs", "1", "--seeds", "42"], True),
    "train-mjx-cartpole": (["train", "mjx-cartpole", "--epochs", "1"], False),
    "train-brax-idp": (["train", "brax:inverted_double_pendulum", "--epochs", "1"], False),
}


def start(argv: list[str], cache: Path, out: Path) -> dict[str, float]:
    """`stablebptt ARGV --out OUT` as a new process with the cache `cache`: its wall and CPU seconds."""
    env = {**os.environ, "STABLEBPTT_CACHE": str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "stablebptt", *argv, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"stablebptt {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def measure(name: str, argv: list[str], rounds: int) -> dict:
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    sizes: list[tuple[int, int]] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            cache = Path(folder) / "cache"
            cold.append(start(argv, cache, Path(folder) / "cold"))
            sizes.append(cache_size(cache))
            warm.append(start(argv, cache, Path(folder) / "warm"))
        print(f"{name}: cold {cold[-1]['wall_s']:.1f} s, warm {warm[-1]['wall_s']:.1f} s", flush=True)

    def median(runs: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "case": name,
        "command": "stablebptt " + " ".join(argv),
        "cold_wall_s": median(cold, "wall_s"),
        "warm_wall_s": median(warm, "wall_s"),
        "cold_cpu_s": median(cold, "cpu_s"),
        "warm_cpu_s": median(warm, "cpu_s"),
        "cold_over_warm": median(cold, "wall_s") / median(warm, "wall_s"),
        "entries": sizes[0][0],
        "cache_bytes": sizes[0][1],
        "rounds": rounds,
        "cold_walls_s": [r["wall_s"] for r in cold],
        "warm_walls_s": [r["wall_s"] for r in warm],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default=None, help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = args.cases.split(",") if args.cases else [n for n, (_, quick) in CASES.items() if quick or not args.quick]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]} (choose from {', '.join(CASES)})")
    rounds = args.rounds or (1 if args.quick else 2)
    rows = []
    for name in names:
        argv_, in_quick = CASES[name]
        command = argv_ + (SMALL if args.quick and in_quick else [])
        rows.append(measure(name, command, rounds))
    print(f"\na command's wall time as a new process, empty cache (cold) and warm; {rounds} round(s), median")
    _common.print_table(
        ["case", "cold s", "warm s", "cold / warm", "cold CPU s", "warm CPU s", "entries", "MB"],
        [
            [
                r["case"],
                r["cold_wall_s"],
                r["warm_wall_s"],
                r["cold_over_warm"],
                r["cold_cpu_s"],
                r["warm_cpu_s"],
                r["entries"],
                r["cache_bytes"] / 1e6,
            ]
            for r in rows
        ],
    )
    out = args.out or _common.default_output(__file__, args.quick)
    settings = {"rounds": rounds, "cases": names, "commands": [r["command"] for r in rows]}
    _common.write_json(out, _common.result("compile_cache", quick=args.quick, settings=settings, rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
