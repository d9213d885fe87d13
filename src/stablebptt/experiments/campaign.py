"""The reproduction campaign: every published grid at full scale, trained across many stops of work.

No process outlives a stop of work, and only what is committed is kept, so the campaign's results live as
compact **records**, one file per finished run, ``RECORDS/<task>/<run name>.json.gz``: its ``config.json``, its
status and its per-epoch metrics (float32 values written in their shortest exact form, epoch times to 4
significant digits), gzipped; about 50 kB for 1000 epochs. Checkpoints and parameters are not kept.

- `STAGES`: the runs, in priority order (each stage complete before the next starts); a-e are the paper's grids,
  f the harder levels beyond them (cart pole 5 and 6 poles, quantum target 6);
- `progress`: per stage, which planned runs are recorded and which are missing;
- `train_missing`: trains the next missing runs with `sweep` in a work folder and records each group of seeds
  as soon as it has finished, so that a stop loses at most the runs in progress (which the next start trains
  from the beginning; no recorded run is trained twice);
- `record_finished`: records the runs of a work folder that have finished (complete or diverged);
- `write_pages`: every figure and table of the report, from the records alone.

A record counts for a planned run only if its configuration has the same hash (`runs.config_hash`) and its
number of epochs, and it finished all of them or diverged. A record that cannot be read, or that no planned
run matches, is reported, never counted.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.checks import BadInput, first_line, plural
from ..runs import same_run
from ..runs.io import atomic_write_bytes, read_json
from ..runs.provenance import PROVENANCE, unknown_provenance
from ..runs.state import FINISHED
from ..tasks import SHORT_NAMES, TASKS, task_label
from . import evidence
from .evidence import final_loss as _final
from .evidence import level_of as _level
from .evidence import ordered_levels as _ordered_levels
from .grid import COMPLEXITY, PAPER, Run, expand
from .report import RunRecord, markdown, plot_sweep, read_run

SEEDS = (42, 43, 44)
EPOCHS = 1000
METHODS = ("R", "M", "C", "S")
CHECKPOINT_EVERY = 25  # in the work folders; not part of a run's identity
RECORD_FORMAT = "stablebptt-record/1"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    """A block of the campaign: one task, the grid of its runs (`grid.expand`), `epochs` epochs each."""

    key: str
    title: str
    task: str
    grid: Mapping[str, Sequence[Any]]
    epochs: int = EPOCHS

    def runs(self) -> list[Run]:
        return expand(self.task, {**self.grid, "epochs": [self.epochs]}, checkpoint_every=CHECKPOINT_EVERY)


def _grid(task: str, levels: Sequence[Any] | None = None) -> dict[str, Sequence[Any]]:
    """The runs of `task` at its complexity `levels` (default: the published ones, `grid.PAPER`) with every
    method of the paper, no clipping and the campaign's seeds."""
    cls = TASKS[task]
    level = cls.complexity or ""
    chosen = list(PAPER[task].grid[level] if levels is None else levels)
    return {level: chosen, "method": list(METHODS), "clip": ["none"], "seed": list(SEEDS)}


PAPER_TASKS = ("quantum", "cartpole", "repulsion")  # in the order of the report
STAGES: tuple[Stage, ...] = (
    Stage("a", "quantum control, target 3, 4, 5", "quantum", _grid("quantum")),
    Stage("b", "cart pole, 1-4 poles", "cartpole", _grid("cartpole")),
    Stage("c", "guidance by repulsion, rc 1 ... 0.001", "repulsion", _grid("repulsion")),
    Stage(
        "d1",
        "learning rate 1e-4 and 1e-2, cart pole 2 poles",
        "cartpole",
        {**_grid("cartpole", [2]), "method": ["R", "C"], "lr": [1e-4, 1e-2]},
    ),
    Stage(
        "d2",
        "learning rate 1e-4 and 1e-2, repulsion rc 0.001",
        "repulsion",
        {**_grid("repulsion", [0.001]), "method": ["R", "C"], "lr": [1e-4, 1e-2]},
    ),
    *(
        Stage(
            f"e{i}-{task}",
            f"clipping by value and by norm, {task}, seed{'s' if len(seeds) > 1 else ''} " + ", ".join(map(str, seeds)),
            task,
            {**_grid(task), "clip": ["value", "norm"], "seed": list(seeds)},
        )
        for i, seeds in ((1, SEEDS[:1]), (2, SEEDS[1:]))
        for task in PAPER_TASKS
    ),
    # Beyond the paper (the issue "Beyond the paper's tasks"): harder levels, recorded and reported the same way.
    Stage(
        "f1",
        "harder than the paper: cart pole 5 and 6 poles, R, M, C",
        "cartpole",
        {**_grid("cartpole", [5, 6]), "method": ["R", "M", "C"]},
    ),
    Stage(
        "f2",
        "harder than the paper: quantum target 6, R and C, seed 42",
        "quantum",
        {**_grid("quantum", [6]), "method": ["R", "C"], "seed": list(SEEDS[:1])},
    ),
)


def stage_named(keys: Iterable[str], stages: Sequence[Stage] = STAGES) -> list[Stage]:
    """The stages whose key is one of `keys` or starts with one of them followed by nothing or a digit or
    ``-`` (``d`` selects d1 and d2, ``e1`` the three e1 stages), in campaign order."""
    keys = list(keys)
    chosen = [s for s in stages if any(s.key == k or s.key.startswith(k) for k in keys)]
    unknown = [k for k in keys if not any(s.key == k or s.key.startswith(k) for s in stages)]
    if unknown:
        raise BadInput(f"no stage {', '.join(unknown)}; stages: {', '.join(s.key for s in stages)}")
    return chosen


# Records -------------------------------------------------------------------------------------------------


def record_path(root: str | Path, task: str, name: str) -> Path:
    """Where the run `name` of `task` is recorded: ``root/<task label>/<name>.json.gz`` (`task_label`: the task's
    name, ``brax-hopper`` for ``brax:hopper``)."""
    return Path(root) / task_label(task) / f"{name}.json.gz"


def _compact(column: str, value: float) -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    if column == "epoch":
        return int(value)
    if column == "epoch_time":
        return float(f"{value:.4g}")
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def write_record(root: str | Path, run_dir: str | Path) -> Path:
    """Record the finished run in `run_dir` (complete or diverged) under `root`; returns the record's path.

    Raises:
        BadInput: the run cannot be read or has not finished (nothing is written).
    """
    run = read_run(run_dir)
    if run.status not in FINISHED:
        raise BadInput(f"{run_dir} has not finished ({run.status}); only complete or diverged runs are recorded")
    columns = list(dict.fromkeys(k for row in run.rows for k in row if k != "diverged"))
    record = {
        "format": RECORD_FORMAT,
        "name": run.name,
        "config": run.config,
        "status": {"status": run.status, "epoch": run.epoch, "message": run.message},
        "columns": columns,
        "rows": [[_compact(c, row.get(c, math.nan)) for c in columns] for row in run.rows],
        "provenance": _provenance_of(Path(run_dir)),
    }
    path = record_path(root, run.config["task"], run.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = gzip.compress(json.dumps(record, separators=(",", ":")).encode(), mtime=0)
    atomic_write_bytes(path, payload)
    return path


def _provenance_of(run_dir: Path) -> list[Any]:
    """The run folder's provenance.json (`runs.provenance`), or one entry of "unknown" where it has none."""
    try:
        entries = read_json(run_dir / PROVENANCE)
    except BadInput:
        return unknown_provenance()
    return entries if isinstance(entries, list) and entries else unknown_provenance()


def read_record(path: str | Path) -> RunRecord:
    """The run recorded at `path` (status complete or diverged), or an ``unreadable`` one with the reason."""
    path = Path(path)
    name = path.name.removesuffix(".json.gz")
    try:
        record = json.loads(gzip.decompress(path.read_bytes()))
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f"not a {RECORD_FORMAT} record")
        columns, status = record["columns"], record["status"]
        if not isinstance(record["config"], dict) or status.get("status") not in FINISHED or "epoch" not in columns:
            raise ValueError("no config, no finished status or no epoch column")
        rows = [
            {c: math.nan if v is None else float(v) for c, v in zip(columns, row, strict=True)}
            for row in record["rows"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as e:
        return RunRecord(name, {}, "unreadable", problem=f"{path.name}: {first_line(e) or type(e).__name__}")
    return RunRecord(
        record["name"],
        record["config"],
        status["status"],
        rows,
        epoch=status.get("epoch"),
        message=str(status.get("message", "")),
        provenance=record.get("provenance") or unknown_provenance(),  # records made before it: unknown
    )


def load_records(root: str | Path) -> list[RunRecord]:
    """Every record under `root` (``TASK/NAME.json.gz``), unreadable ones included (status ``unreadable``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [read_record(p) for p in sorted(root.glob("*/*.json.gz"))]


def _counts_for(record: RunRecord, run: Run) -> bool:
    """Whether `record` is a finished run of the planned `run` (same configuration and number of epochs)."""
    epochs = run.config.train.epochs
    if record.status not in FINISHED or record.epochs != epochs or not same_run(record.config, run.config):
        return False
    return record.status == "diverged" or len(record.rows) == epochs


@dataclass
class Progress:
    """One stage: its planned runs, those recorded (by name) and those missing, in plan order."""

    stage: Stage
    planned: list[Run]
    recorded: dict[str, RunRecord] = field(default_factory=dict)

    @property
    def missing(self) -> list[Run]:
        return [r for r in self.planned if r.name not in self.recorded]


def progress(
    records: Sequence[RunRecord], stages: Sequence[Stage] = STAGES
) -> tuple[list[Progress], list[RunRecord], list[RunRecord]]:
    """Per stage, the planned runs that `records` hold; and the records that are unreadable, and those that
    no planned run matches (another configuration, fewer epochs, unfinished): both reported, never counted."""
    unreadable = [r for r in records if r.status == "unreadable"]
    by_key = {(r.config.get("task"), r.name): r for r in records if r.status != "unreadable"}
    used: set[tuple[Any, str]] = set()
    out = []
    for stage in stages:
        p = Progress(stage, stage.runs())
        for run in p.planned:
            record = by_key.get((stage.task, run.name))
            if record is not None and _counts_for(record, run):
                p.recorded[run.name] = record
                used.add((stage.task, run.name))
        out.append(p)
    unmatched = [r for k, r in by_key.items() if k not in used]
    return out, unreadable, unmatched


# Training ------------------------------------------------------------------------------------------------


def record_finished(root: str | Path, work: str | Path, runs: Sequence[Run] | None = None) -> list[Path]:
    """Record every finished run in the work folder ``work/<task>/<name>`` of `runs` (default: every planned
    run) that is not recorded yet, or whose record is of another configuration; returns the new records."""
    runs = [r for s in STAGES for r in s.runs()] if runs is None else runs
    written = []
    for run in runs:
        run_dir = Path(work) / task_label(run.config.task) / run.name
        if not (run_dir / "config.json").is_file():
            continue
        existing = record_path(root, run.config.task, run.name)
        if existing.exists() and _counts_for(read_record(existing), run):
            continue
        candidate = read_run(run_dir)
        if candidate.status in FINISHED and _counts_for(candidate, run):
            written.append(write_record(root, run_dir))
    return written


def _seed_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """`runs` in groups that differ only in the seed (plan order kept)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.name.rsplit("_seed=", 1)[0], []).append(run)
    return list(groups.values())


def train_missing(
    root: str | Path,
    work: str | Path,
    stages: Sequence[Stage] = STAGES,
    *,
    workers: int = 1,
    batch_runs: str = "auto",
    max_groups: int | None = None,
    log: Log | None = print,
) -> int:
    """Train the missing runs of `stages` in order (`sweep.sweep` in ``work/<task>``; a run interrupted earlier
    in the same work folder resumes), one group of seeds at a time when runs are batched, else one run at a
    time, recording each group as soon as it has finished. Returns the number of runs recorded. `max_groups`
    stops after that many groups."""
    from .sweep import sweep

    recorded = len(record_finished(root, work, [r for s in stages for r in s.runs()]))
    done_groups = 0
    for stage in stages:
        (p,), _, _ = progress(load_records(root), [stage])
        # Batched runs share one program and finish together; otherwise each run is recorded as it ends, so
        # that a stop of work loses at most the run in progress.
        groups = _seed_groups(p.missing) if batch_runs != "off" else [[r] for r in p.missing]
        for group in groups:
            if max_groups is not None and done_groups >= max_groups:
                return recorded
            if log is not None:
                log(f"stage {stage.key} ({stage.title}): {', '.join(r.name for r in group)}")
            sweep(
                Path(work) / task_label(stage.task),
                group,
                workers=workers,
                batch_runs=batch_runs,
                log=log,
                report=False,
            )
            new = record_finished(root, work, group)
            recorded += len(new)
            done_groups += 1
            if log is not None:
                log(f"recorded {plural(len(new), 'run')} in {root}")
    return recorded


# The report ----------------------------------------------------------------------------------------------

LEVEL_NAMES = SHORT_NAMES  # the column of a complexity level in the tables (n_poles: poles)


def _best(record: RunRecord) -> float:
    values = record.curve("test_loss")
    finite = values[np.isfinite(values)]
    return float(finite.min()) if finite.size else math.nan


def _spread(values: Sequence[float]) -> str:
    """``median [min, max]`` of the finite values (``-`` if none)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return "-"
    if v.size == 1:
        return f"{v[0]:.4g}"
    return f"{np.median(v):.4g} [{v.min():.4g}, {v.max():.4g}]"


def level_table(records: Sequence[RunRecord], methods: str = "RMCS") -> str:
    """The published comparison at a glance (clip none, lr 0.001): one row per complexity level, easy to hard, one
    column per method with its final test loss as ``median [min, max]`` over the seeds; the lowest median of a
    row in bold."""
    main = [r for r in records if r.settings().get("clip") == "none" and r.settings().get("lr") == 0.001]
    if not main:
        return "(no records)\n"
    task = main[0].config["task"]
    present = [m for m in methods if any(r.settings().get("method") == m for r in main)]
    rows = []
    for level in _ordered_levels(task, (_level(r) for r in main)):
        finals = {
            m: [_final(r) for r in main if _level(r) == level and r.settings().get("method") == m] for m in present
        }
        finite = {m: [x for x in v if math.isfinite(x)] for m, v in finals.items()}
        medians = {m: float(np.median(v)) for m, v in finite.items() if v}
        best = min(medians, key=lambda m: medians[m]) if medians else None
        row: dict[str, Any] = {LEVEL_NAMES.get(COMPLEXITY.get(task, ""), "level"): level}
        for m in present:
            cell = _spread(finals[m]) if finals[m] else "-"
            row[m] = f"**{cell}**" if m == best else cell
        row["seeds"] = "/".join(str(len(finals[m])) for m in present)
        rows.append(row)
    return markdown(list(rows[0]), rows)


def config_table(records: Sequence[RunRecord]) -> str:
    """Per complexity level and method (and clipping, learning rate where they vary): runs, final and best test
    loss as ``median [min, max]`` over the seeds, seconds per epoch (median), as a Markdown table."""
    if not records:
        return "(no records)\n"
    task = records[0].config["task"]
    extra = [k for k in ("clip", "lr") if len({r.settings().get(k) for r in records}) > 1]
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for r in records:
        s = r.settings()
        groups.setdefault((_level(r), *(s.get(k) for k in extra), s.get("method")), []).append(r)
    level_order = _ordered_levels(task, (k[0] for k in groups))
    rows = []
    for key in sorted(
        groups,
        key=lambda k: (level_order.index(k[0]), *map(str, k[1:-1]), "RMCSN".find(str(k[-1]))),
    ):
        members = groups[key]
        times = np.asarray([x for r in members for x in r.curve("epoch_time") if math.isfinite(x)])
        rows.append(
            {
                LEVEL_NAMES.get(COMPLEXITY.get(task, ""), "level"): key[0],
                **dict(zip(extra, key[1:-1])),
                "method": key[-1],
                "runs": f"{sum(r.status == 'complete' for r in members)} complete"
                + (
                    f", {sum(r.status == 'diverged' for r in members)} diverged"
                    if any(r.status == "diverged" for r in members)
                    else ""
                ),
                "seeds": ",".join(str(r.settings().get("seed")) for r in members),
                "final test loss": _spread([_final(r) for r in members]),
                "best test loss": _spread([_best(r) for r in members]),
                "s per epoch": f"{np.median(times):.3g}" if times.size else "-",
            }
        )
    return markdown(list(rows[0]), rows)


def ratio_table(records: Sequence[RunRecord], numerator: str = "R", denominator: str = "C") -> str:
    """The claim "the more so as the task gets harder", per complexity level (clip none, lr 0.001): the ratio of
    R's to C's median final test loss, the same seed's ratios (same data and initialisation) as ``median
    [min, max]``, and whether the ratio of medians grows from each level to the next harder one."""
    if not records:
        return "(no records)\n"
    task = records[0].config["task"]
    main = [r for r in records if r.settings().get("clip") == "none" and r.settings().get("lr") == 0.001]
    rows = []
    previous = None
    for level in _ordered_levels(task, (_level(r) for r in main)):
        at = {
            m: {r.settings()["seed"]: _final(r) for r in main if _level(r) == level and r.settings()["method"] == m}
            for m in (numerator, denominator)
        }
        num, den = at[numerator], at[denominator]
        if not num or not den:
            continue
        ratio = float(np.median(list(num.values())) / np.median(list(den.values())))
        paired = [num[s] / den[s] for s in sorted(set(num) & set(den))]
        rows.append(
            {
                LEVEL_NAMES.get(COMPLEXITY.get(task, ""), "level"): level,
                f"{numerator} final (median)": f"{np.median(list(num.values())):.4g}",
                f"{denominator} final (median)": f"{np.median(list(den.values())):.4g}",
                f"{numerator}/{denominator} of medians": f"{ratio:.3g}",
                f"{numerator}/{denominator} per seed": _spread(paired),
                "seeds": f"{len(num)} / {len(den)}",
                "grows": "-" if previous is None else ("yes" if ratio > previous else "no"),
            }
        )
        previous = ratio
    return markdown(list(rows[0]), rows) if rows else "(no level has both methods)\n"


def lr_table(records: Sequence[RunRecord]) -> str:
    """Final test loss of R and C at every learning rate recorded, at the complexity level(s) where several
    learning rates were run: ``median [min, max]`` over seeds."""
    rates = {r.settings().get("lr") for r in records}
    levels = {_level(r) for r in records if r.settings().get("lr") != 0.001}
    rows = []
    for level in sorted(levels, key=str):
        for method in ("R", "C"):
            row: dict[str, Any] = {"level": level, "method": method}
            for lr in sorted(x for x in rates if x is not None):
                members = [
                    r
                    for r in records
                    if _level(r) == level
                    and r.settings().get("method") == method
                    and r.settings().get("lr") == lr
                    and r.settings().get("clip") == "none"
                ]
                row[f"lr {lr:g}"] = _spread([_final(r) for r in members]) if members else "-"
            rows.append(row)
    return markdown(list(rows[0]), rows) if rows else "(no learning-rate runs recorded)\n"


def _seeds_per_clip(records: Sequence[RunRecord]) -> str:
    """Over how many seeds each clipping mode's lines are: ``median, min-max over seeds: none 3, value 1-3``."""
    parts = []
    present = {r.settings().get("clip") for r in records}
    for clip in [c for c in ("none", "value", "norm") if c in present] + sorted(
        map(str, present - {"none", "value", "norm"})
    ):
        seeds: dict[tuple[Any, Any], set[Any]] = {}
        for r in records:
            if r.settings().get("clip") == clip:
                seeds.setdefault((_level(r), r.settings().get("method")), set()).add(r.settings().get("seed"))
        sizes = sorted({len(v) for v in seeds.values()})
        parts.append(f"{clip} {sizes[0]}" + (f"-{sizes[-1]}" if len(sizes) > 1 else ""))
    return "median, min-max over seeds: " + ", ".join(parts)


def write_pages(
    root: str | Path,
    figures: str | Path,
    tables: str | Path,
    stages: Sequence[Stage] = STAGES,
    *,
    log: Log | None = print,
) -> tuple[list[Path], Path]:
    """Every figure and table of the reproduction report from the records under `root`: one figure per task
    (clip none, lr 0.001; the published layout) and one per task with all clipping modes where they were run,
    into `figures` (``repro_<task>.png``); the tables into the Markdown file `tables`. Unreadable records are
    listed in the tables' header and left out. The two kinds of evidence (the paper's seed under three clipping
    modes, our three seeds unclipped) and the regret of each choice come from `evidence`. Returns the figures and
    the tables' path."""
    records = load_records(root)
    progressed, unreadable, unmatched = progress(records, stages)
    good = [r for p in progressed for r in p.recorded.values()]
    good = list({(r.config["task"], r.name): r for r in good}.values())
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lines = [
        "# Reproduction: the records, tables",
        "",
        f"<!-- Generated by `stablebptt reproduce report` from the records in {Path(root).as_posix()};"
        " do not edit. -->",
        "",
        f"Every table below is computed from the committed records alone (`{Path(root).as_posix()}/<task>/*.json.gz`,"
        " one per finished run); the figures are in [the report](reproduction.md). Final test loss: the last"
        " epoch's (the last finite one for a run that diverged); values are `median [min, max]` over the seeds"
        " listed.",
        "",
        "## Records",
        "",
        markdown(
            ["stage", "what", "planned", "recorded", "missing"],
            [
                {
                    "stage": p.stage.key,
                    "what": p.stage.title,
                    "planned": len(p.planned),
                    "recorded": len(p.recorded),
                    "missing": len(p.missing),
                }
                for p in progressed
            ],
        ),
    ]
    if unreadable or unmatched:
        lines += [
            f"Not counted: {plural(len(unreadable), 'unreadable record')}"
            + "".join(f"; {r.problem}" for r in unreadable[:5])
            + f"; {plural(len(unmatched), 'record')} of no planned run"
            + "".join(f"; {r.config.get('task')}/{r.name}" for r in unmatched[:5])
            + ".",
            "",
        ]
    lines += [
        "## Two kinds of evidence",
        "",
        "The paper's figures show one seed (42) under three clipping modes; the verdicts of the report rest on"
        " three seeds (42, 43, 44) without clipping. Per kind, at the paper's 11 levels: the settings (level,"
        " clipping mode, seed) where C's final test loss is below R's of the same seed, and the other way round,"
        " and how often each method ends best (where all four are recorded). Per level: the tables *R/C and the"
        " best method per clipping mode* below.",
        "",
        evidence.evidence_table(good),
    ]
    for task in PAPER_TASKS:
        task_records = [r for r in good if r.config.get("task") == task]
        main = [r for r in task_records if r.settings().get("clip") == "none" and r.settings().get("lr") == 0.001]
        if not main:
            continue
        name = {"quantum": "Quantum control", "cartpole": "Cart pole", "repulsion": "Guidance by repulsion"}[task]
        seeds = len({r.settings().get("seed") for r in main})
        path = figures / f"repro_{task}.png"
        plot_sweep(main, path, window=30, title=f"{task}: test loss, no clipping (median over {seeds} seeds, min-max)")
        written.append(path)
        lines += [f"## {name}", "", "### Final test loss per complexity level (no clipping, lr 0.001)", ""]
        lines += [level_table(main), "### No clipping, learning rate 0.001", "", config_table(main)]
        lines += ["### R against C per complexity level (the more so as the task gets harder?)", "", ratio_table(main)]
        clipped = [r for r in task_records if r.settings().get("lr") == 0.001]
        if len({r.settings().get("clip") for r in clipped}) > 1:
            path = figures / f"repro_{task}_clip.png"
            plot_sweep(
                clipped, path, window=30, title=f"{task}: test loss by clipping mode ({_seeds_per_clip(clipped)})"
            )
            written.append(path)
            lines += [
                "### R/C and the best method per clipping mode",
                "",
                "R's final test loss over C's of the same seed (below 1, in bold: R ahead) and the method with the"
                " lowest final test loss, per clipping mode: seed 42 is the paper's grid, seeds 43 and 44 ours"
                " (`-`: not recorded yet).",
                "",
                evidence.clip_table(clipped),
                "### Every clipping mode",
                "",
                config_table([r for r in clipped if r.settings().get("clip") != "none"]),
            ]
        rates = [r for r in task_records if r.settings().get("clip") == "none"]
        if len({r.settings().get("lr") for r in rates}) > 1:
            lines += ["### Learning rate", "", lr_table(rates)]
    lines += evidence.regret_section(good)
    tables = Path(tables)
    tables.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(tables, "\n".join(lines).rstrip("\n").encode() + b"\n")
    if log is not None:
        counted = sum(len(p.recorded) for p in progressed)
        log(
            f"{plural(counted, 'record')} counted of {sum(len(p.planned) for p in progressed)} planned"
            + (
                f"; not counted: {len(unreadable)} unreadable, {len(unmatched)} of no planned run"
                if unreadable or unmatched
                else ""
            )
            + f"; figures: {', '.join(str(p) for p in written)}; tables: {tables}"
        )
    return written, tables


def records_size(root: str | Path) -> int:
    """Bytes of all records under `root`."""
    return sum(p.stat().st_size for p in Path(root).glob("*/*.json.gz")) if Path(root).is_dir() else 0


def describe(stages: Sequence[Progress]) -> list[dict[str, Any]]:
    """Rows for a status table: stage, what, planned, recorded, missing, next (the first missing run)."""
    return [
        {
            "stage": p.stage.key,
            "what": p.stage.title,
            "planned": len(p.planned),
            "recorded": len(p.recorded),
            "missing": len(p.missing),
            "next": p.missing[0].name if p.missing else "",
        }
        for p in stages
    ]


__all__ = [
    "EPOCHS",
    "SEEDS",
    "STAGES",
    "Progress",
    "Stage",
    "config_table",
    "describe",
    "load_records",
    "lr_table",
    "progress",
    "ratio_table",
    "read_record",
    "record_finished",
    "record_path",
    "records_size",
    "stage_named",
    "train_missing",
    "write_pages",
    "write_record",
]
