"""What recording an epoch costs as a run grows (issue 44, item 4): a run folder's `Session.record_epoch` (the
metrics row appended to ``metrics.csv``, the checkpoint with every metric row so far, the status) after a history
of H epochs, against the way it was written before (the whole ``metrics.csv`` rewritten and every row encoded to
JSON again, per epoch), timed interleaved in one process.

Cart pole with 1 pole (the parameters of a 2x100 MLP and Adam's state: a checkpoint of about 0.2 MB plus the
metrics); the state is the run's initial one, so only the files are measured, not training.

    python benchmarks/run_files.py           # histories 0, 1000, 8000; 30 rounds
    python benchmarks/run_files.py --quick   # histories 0, 200; 3 rounds
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import _common

from stablebptt.runs import RunConfig, RunFolder
from stablebptt.runs.io import CsvTable
from stablebptt.training.train import Trainer, run_metrics


def bench(history: int, repeats: int) -> dict:
    config = RunConfig.create("cartpole", {"n_poles": 1}, method="R", epochs=history + 10 * (repeats + 3) + 10)
    columns = run_metrics(config.train)
    row = dict.fromkeys(columns, 0.123456789)
    with tempfile.TemporaryDirectory() as folder:
        session = RunFolder(Path(folder) / "run").start(config)
        trainer = Trainer(config.make_task(), config.train)
        state, _ = session.begin(trainer)
        for epoch in range(1, history + 1):  # the history, written the new way
            session.rows.append({**row, "epoch": epoch})
            session.table.append({**row, "epoch": epoch})
        session.table.write(session.path / "metrics.csv")
        epoch = history

        def now() -> None:
            nonlocal epoch
            epoch += 1
            session.record_epoch(epoch, state, {**row, "epoch": epoch})

        def before() -> None:  # what record_epoch added per epoch before: a full rewrite and a full encoding
            table = CsvTable(columns, session.rows)
            table.write(session.path / "before.csv")
            json.dumps(list(session.rows), sort_keys=True)

        timings = _common.time_interleaved({"record_epoch": now, "before (extra work)": before}, repeats)
        session.close()
    return {"history": history, "timings": timings}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--histories", default=None, help="comma-separated history lengths (epochs)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    histories = [int(h) for h in (args.histories or ("0,200" if args.quick else "0,1000,8000")).split(",")]
    repeats = args.repeats or (3 if args.quick else 30)
    rows = []
    for history in histories:
        t = bench(history, repeats)["timings"]
        now, extra = t["record_epoch"]["median_s"], t["before (extra work)"]["median_s"]
        rows.append(
            {
                "history_epochs": history,
                "record_epoch_ms": now * 1e3,
                "before_ms": (now + extra) * 1e3,
                "before_over_now": (now + extra) / now,
            }
        )
    print(f"\nrecording one epoch after a history of H epochs ({repeats} interleaved rounds, median)")
    _common.print_table(
        ["H epochs", "record_epoch ms", "before ms", "before / now"],
        [[r["history_epochs"], r["record_epoch_ms"], r["before_ms"], r["before_over_now"]] for r in rows],
    )
    out = args.out or _common.default_output(__file__, args.quick)
    _common.write_json(
        out, _common.result("run_files", quick=args.quick, settings={"repeats": repeats, "task": "cartpole"}, rows=rows)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
