"""Two kinds of evidence, and which method to use, from the reproduction campaign's records alone.

The paper's figures show **one seed (42) under three clipping modes** (its scripts fix the seed and its plot
scripts draw the modes none, value and norm in one panel); the campaign's verdicts rest on **three seeds
(42, 43, 44) under one mode** (none). `clip_table` puts both side by side per complexity level and clipping
mode; `evidence_table` counts, for each kind of evidence, where C ends below R and which method ends best.

`regrets` answers "which to use" from the same records: per cell (task, complexity level, seed), the regret of a
`Choice` is its final test loss over the best final test loss of every run recorded in that cell (every method,
clipping mode and learning rate), both floored at `FLOOR`. A choice is data (a label and a function of the
cell), so a later comparison adds its rows by adding choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.checks import plural
from .grid import COMPLEXITY, HARDER_WHEN_SMALLER, PAPER
from .report import RunRecord, markdown

PUBLISHED_SEED = 42  # the seed the published scripts fix
PUBLISHED_LR = 0.001
CLIPS = ("none", "value", "norm")
METHODS = "RMCS"
FLOOR = float(np.finfo(np.float32).eps)  # 1.19e-7: the float32 resolution of a loss near 0 (cart pole: 1 - cos)


def level_of(record: RunRecord) -> Any:
    """The record's complexity level (``n_poles``, ``target``, ``rc``; None for a task without one)."""
    return record.config.get("task_settings", {}).get(COMPLEXITY.get(record.config.get("task", ""), ""))


def final_loss(record: RunRecord, key: str = "test_loss") -> float:
    """The last finite value of `key` (the last epoch's, or the last before a run diverged; NaN if none)."""
    values = record.curve(key)
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def ordered_levels(task: str, levels: Iterable[Any]) -> list[Any]:
    """Complexity levels from easy to hard."""
    return sorted(set(levels), reverse=COMPLEXITY.get(task) in HARDER_WHEN_SMALLER)


@dataclass(frozen=True)
class Outcome:
    """One recorded run, reduced to what the comparisons need."""

    task: str
    level: float
    method: str
    clip: str
    lr: float
    seed: int
    final: float  # the last finite test loss (`final_loss`)
    record: RunRecord

    def test_loss_at(self, epoch: int) -> float:
        """The test loss after `epoch` (NaN if the run has no such epoch)."""
        epochs = self.record.curve("epoch")
        at = np.flatnonzero(epochs == epoch)
        return float(self.record.curve("test_loss")[at[0]]) if at.size else math.nan


def outcomes(records: Sequence[RunRecord]) -> list[Outcome]:
    """The records as `Outcome`s (records of no complexity level or with no finite test loss left out)."""
    out = []
    for r in records:
        s, level = r.settings(), level_of(r)
        final = final_loss(r)
        if level is None or not math.isfinite(final):
            continue
        out.append(Outcome(r.config["task"], level, s["method"], s["clip"], s["lr"], s["seed"], final, r))
    return out


def where(task: str, level: float) -> str:
    """A complexity level in words: ``cart pole 2 poles``, ``quantum target 3``, ``repulsion rc 0.01``."""
    if task == "cartpole":
        return f"cart pole {level} pole{'s' if level != 1 else ''}"
    if task == "quantum":
        return f"quantum target {level}"
    return f"{task} {COMPLEXITY.get(task, 'level')} {level:g}"


def paper_levels(runs: Sequence[Outcome]) -> list[Outcome]:
    """The outcomes at the paper's complexity levels (`grid.PAPER`) of its three tasks."""
    return [o for o in runs if o.task in PAPER and o.level in PAPER[o.task].grid[COMPLEXITY[o.task]]]


def _pick(runs: Sequence[Outcome], method: str, clip: str = "none", lr: float = PUBLISHED_LR) -> Outcome | None:
    found = [o for o in runs if o.method == method and o.clip == clip and o.lr == lr]
    return found[0] if found else None


def _best_method(runs: Sequence[Outcome], clip: str, methods: str = METHODS) -> str | None:
    """The method with the lowest final loss among `runs` (one seed) with clipping `clip`, if all are recorded."""
    finals = {m: o.final for m in methods if (o := _pick(runs, m, clip)) is not None}
    return min(finals, key=lambda m: finals[m]) if len(finals) == len(methods) else None


# Two kinds of evidence -----------------------------------------------------------------------------------


def _ratio(runs: Sequence[Outcome], clip: str) -> float | None:
    r, c = _pick(runs, "R", clip), _pick(runs, "C", clip)
    return None if r is None or c is None else max(r.final, FLOOR) / max(c.final, FLOOR)


def _ratio_cell(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"**{ratio:.3g}**" if ratio < 1 else f"{ratio:.3g}"


def clip_table(records: Sequence[RunRecord], published_seed: int = PUBLISHED_SEED) -> str:
    """Per complexity level (of one task, easy to hard) and clipping mode: R's final test loss over C's (below
    1 in bold: R ahead) and the method that ends best, for the published seed (the paper's grid) and for each
    other seed (ours: ``-`` where not recorded yet). Only levels with clipped runs; learning rate 0.001."""
    runs = [o for o in outcomes(records) if o.lr == PUBLISHED_LR]
    if not runs:
        return "(no records)\n"
    task = runs[0].task
    levels = ordered_levels(task, (o.level for o in runs if o.clip != "none"))
    seeds = sorted({o.seed for o in runs} | {published_seed})
    others = [s for s in seeds if s != published_seed]
    label = f"seeds {', '.join(map(str, others))}"
    rows = []
    for level in levels:
        by_seed = {s: [o for o in runs if o.level == level and o.seed == s] for s in seeds}
        for clip in CLIPS:
            rows.append(
                {
                    "level": where(task, level),
                    "clip": clip,
                    f"seed {published_seed}: R/C": _ratio_cell(_ratio(by_seed[published_seed], clip)),
                    f"seed {published_seed}: best": _best_method(by_seed[published_seed], clip) or "-",
                    f"{label}: R/C": ", ".join(_ratio_cell(_ratio(by_seed[s], clip)) for s in others),
                    f"{label}: best": ", ".join(_best_method(by_seed[s], clip) or "-" for s in others),
                }
            )
    return markdown(list(rows[0]), rows) if rows else "(no clipped runs recorded)\n"


@dataclass(frozen=True)
class Evidence:
    """A kind of evidence: the settings (task, level, clipping mode, seed) with these clipping modes, at the
    paper's levels and learning rate 0.001, and the seeds: the published one, the others, or all (of the seeds
    the records hold)."""

    label: str
    clips: tuple[str, ...]
    seeds: str  # "published", "others" or "all"

    def seeds_of(self, runs: Sequence[Outcome]) -> list[int]:
        every = sorted({o.seed for o in runs} | {PUBLISHED_SEED})
        chosen = {"published": [PUBLISHED_SEED], "others": [s for s in every if s != PUBLISHED_SEED], "all": every}
        return chosen[self.seeds]


EVIDENCE = (
    Evidence("the paper's figures: seed 42, clip none, value, norm", CLIPS, "published"),
    Evidence("our verdicts (§1-§4): clip none, seeds 42, 43, 44", CLIPS[:1], "all"),
    Evidence("seed 42, clipped (stage e1)", CLIPS[1:], "published"),
    Evidence("seeds 43, 44, clipped (stage e2)", CLIPS[1:], "others"),
)


@dataclass(frozen=True)
class Tally:
    """What one kind of evidence says: settings planned, those with R and C, where each ends lower, and how
    often each method ends best (among settings with all four recorded)."""

    planned: int
    compared: int
    c_ahead: int
    r_ahead: int
    best: dict[str, int]


def tally(records: Sequence[RunRecord], evidence: Evidence) -> Tally:
    runs = [o for o in paper_levels(outcomes(records)) if o.lr == PUBLISHED_LR]
    settings = [
        (task, level, clip, seed)
        for task in PAPER
        for level in PAPER[task].grid[COMPLEXITY[task]]
        for clip in evidence.clips
        for seed in evidence.seeds_of(runs)
    ]
    compared = c_ahead = 0
    best = dict.fromkeys(METHODS, 0)
    for task, level, clip, seed in settings:
        here = [o for o in runs if (o.task, o.level, o.seed) == (task, level, seed)]
        ratio = _ratio(here, clip)
        if ratio is not None:
            compared += 1
            c_ahead += ratio > 1
        if (m := _best_method(here, clip)) is not None:
            best[m] += 1
    return Tally(len(settings), compared, c_ahead, compared - c_ahead, best)


def evidence_table(records: Sequence[RunRecord], kinds: Sequence[Evidence] = EVIDENCE) -> str:
    """One row per kind of evidence (`EVIDENCE`) at the paper's 11 levels: settings recorded, where C ends
    below R and where R ends below C (final test loss of the same seed and clipping mode), and how often each
    method ends best."""
    rows = []
    for kind in kinds:
        t = tally(records, kind)
        rows.append(
            {
                "evidence": kind.label,
                "settings with R and C": f"{t.compared} of {t.planned}",
                "C below R": t.c_ahead,
                "R below C": t.r_ahead,
                "best: " + " / ".join(METHODS): " / ".join(str(t.best[m]) for m in METHODS),
            }
        )
    return markdown(list(rows[0]), rows)


# Which to use --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A task's complexity level and one seed: the runs recorded there (`runs`), and at that level with any
    seed (`level_runs`, for choices made over the seeds, such as a learning rate)."""

    task: str
    level: float
    seed: int
    runs: tuple[Outcome, ...]
    level_runs: tuple[Outcome, ...]

    @property
    def best(self) -> float:
        return min(o.final for o in self.runs)

    def __str__(self) -> str:
        return f"{where(self.task, self.level)}, seed {self.seed}"


@dataclass(frozen=True)
class Choice:
    """A rule for what to train: `final` gives its final test loss in a cell, None where it was not recorded."""

    label: str
    final: Callable[[Cell], float | None]


def fixed(method: str, clip: str = "none", lr: float = PUBLISHED_LR, label: str | None = None) -> Choice:
    """Always `method` with clipping `clip` at learning rate `lr`."""

    def final(cell: Cell) -> float | None:
        o = _pick(cell.runs, method, clip, lr)
        return None if o is None else o.final

    clipped = "" if clip == "none" else f", clipped by {clip}"
    return Choice(label or f"always {method}{clipped}", final)


def tuned_lr(method: str) -> Choice:
    """`method` (no clipping) at the learning rate with the lowest median final test loss over the seeds of the
    level: chosen on the same seeds it is scored on (optimistic). Only where several rates were recorded."""

    def final(cell: Cell) -> float | None:
        runs = [o for o in cell.level_runs if o.method == method and o.clip == "none"]
        rates = sorted({o.lr for o in runs})
        if len(rates) < 2:
            return None
        best = min(rates, key=lambda lr: float(np.median([o.final for o in runs if o.lr == lr])))
        o = _pick(cell.runs, method, "none", best)
        return None if o is None else o.final

    return Choice(f"{method} at its best learning rate", final)


def pilot(epochs: int, methods: str = METHODS) -> Choice:
    """The method (no clipping, lr 0.001) with the lowest test loss after `epochs` epochs of the same runs, then
    trained to the end (a pilot of `epochs` epochs per method; ties go to the earlier of `methods`)."""

    def final(cell: Cell) -> float | None:
        candidates = [o for m in methods if (o := _pick(cell.runs, m)) is not None]
        at = [(o.test_loss_at(epochs), i) for i, o in enumerate(candidates)]
        at = [(v, i) for v, i in at if math.isfinite(v)]
        return candidates[min(at)[1]].final if at else None

    return Choice(f"pilot: best after {epochs} epochs", final)


CHOICES: tuple[Choice, ...] = (
    *(fixed(m) for m in "RMSC"),
    tuned_lr("R"),
    tuned_lr("C"),
    fixed("C", "value"),
    fixed("C", "norm"),
    *(pilot(k) for k in (50, 100, 250)),
)


def cells(records: Sequence[RunRecord]) -> list[Cell]:
    """Every (task, level, seed) with a run recorded, the paper's tasks first, levels easy to hard."""
    runs = outcomes(records)
    out = []
    tasks = [t for t in PAPER if any(o.task == t for o in runs)]  # the paper's tasks first
    tasks += sorted({o.task for o in runs} - set(tasks))
    for task in tasks:
        for level in ordered_levels(task, (o.level for o in runs if o.task == task)):
            at_level = tuple(o for o in runs if o.task == task and o.level == level)
            for seed in sorted({o.seed for o in at_level}):
                cell_runs = tuple(o for o in at_level if o.seed == seed)
                out.append(Cell(task, level, seed, cell_runs, at_level))
    return out


def regret(final: float, best: float) -> float:
    """A final test loss over the best one, both floored at `FLOOR`."""
    return max(final, FLOOR) / max(best, FLOOR)


def regrets(cells: Sequence[Cell], choice: Choice) -> list[tuple[Cell, float]]:
    """The choice's regret in every cell where it was recorded."""
    out = []
    for cell in cells:
        final = choice.final(cell)
        if final is not None:
            out.append((cell, regret(final, cell.best)))
    return out


@dataclass(frozen=True)
class Summary:
    """A choice's regrets over the cells where it was recorded: how many, the median, the worst and where, the
    worst at any other complexity level (is the worst one level's outlier?), and the cells where it was best."""

    cells: int
    median: float
    worst: tuple[Cell, float]
    worst_elsewhere: tuple[Cell, float] | None
    best_in: int


def summary(cells: Sequence[Cell], choice: Choice) -> Summary | None:
    found = regrets(cells, choice)
    if not found:
        return None
    worst = max(found, key=lambda x: x[1])
    others = [x for x in found if (x[0].task, x[0].level) != (worst[0].task, worst[0].level)]
    return Summary(
        len(found),
        float(np.median([r for _, r in found])),
        worst,
        max(others, key=lambda x: x[1]) if others else None,
        sum(r == 1 for _, r in found),
    )


def regret_table(cells: Sequence[Cell], choices: Sequence[Choice] = CHOICES) -> str:
    """One row per choice (`summary`): the cells where it was recorded (of all), its median and worst regret
    and where, its worst at any other level, and in how many cells it was the best run (regret 1)."""
    rows = []
    for choice in choices:
        s = summary(cells, choice)
        elsewhere = s.worst_elsewhere if s else None
        rows.append(
            {
                "choice": choice.label,
                "cells": f"{s.cells if s else 0} of {len(cells)}",
                "median regret": f"{s.median:.3g}" if s else "-",
                "worst regret": f"{s.worst[1]:.3g} ({s.worst[0]})" if s else "-",
                "worst at another level": f"{elsewhere[1]:.3g} ({elsewhere[0]})" if elsewhere else "-",
                "best run in": plural(s.best_in, "cell") if s else "-",
            }
        )
    return markdown(list(rows[0]), rows) if rows else "(no choices)\n"


def regret_section(records: Sequence[RunRecord], choices: Sequence[Choice] = CHOICES) -> list[str]:
    """The Markdown lines of the records page's "Which to use" section."""
    every = cells(records)
    paper = cells([o.record for o in paper_levels(outcomes(records))])
    clipped = sum(any(o.clip != "none" for o in c.runs) for c in paper)
    return [
        "## Which to use: the regret of each choice",
        "",
        "A **cell** is one complexity level of a task and one seed. In each cell, the **regret** of a choice is"
        " its final test loss divided by the lowest final test loss of every run recorded in that cell (every"
        " method, clipping mode and learning rate); losses below float32's resolution"
        f" ({FLOOR:.3g}) count as {FLOOR:.3g}. A regret of 1 means the choice was the best run there. *always X*:"
        " method X, no clipping, learning rate 0.001. *X at its best learning rate*: X without clipping at the"
        " rate (1e-4, 1e-3 or 1e-2) with the lowest median final loss over the three seeds of that level, chosen"
        " on the seeds it is scored on, so optimistic; recorded only where several rates were run (stage d:"
        " cart pole 2 poles, repulsion rc 0.001). *clipped by value / norm*: seed 42 at every level (stage e1),"
        " seeds 43 and 44 as stage e2 records them. *pilot*: of R, M, C and S (no clipping), the one with the"
        " lowest test loss after K epochs of the same runs, then its final loss (a pilot costs 4 K epochs)."
        " A diverged run counts with its last finite test loss. `cells` says where a choice has a record; the"
        " rest are left out of its median and worst, not counted as wins or losses.",
        "",
        f"### The paper's levels ({len(paper)} cells)",
        "",
        f"The reference includes clipped runs in {clipped} of the {len(paper)} cells (seed 42, and the stage e2"
        " runs recorded so far); in the others it is the best of the unclipped runs, so a regret there can only"
        " grow as stage e2 adds runs.",
        "",
        regret_table(paper, choices),
        f"### Every level, with those beyond the paper ({len(every)} cells)",
        "",
        "Stage f adds cart pole 5 and 6 poles (R, M, C; no S) and quantum target 6 (R and C, seed 42).",
        "",
        regret_table(every, choices),
    ]


__all__ = [
    "CHOICES",
    "EVIDENCE",
    "FLOOR",
    "Cell",
    "Choice",
    "Evidence",
    "Outcome",
    "Summary",
    "Tally",
    "cells",
    "clip_table",
    "evidence_table",
    "fixed",
    "outcomes",
    "paper_levels",
    "pilot",
    "regret",
    "regret_section",
    "regret_table",
    "regrets",
    "summary",
    "tally",
    "tuned_lr",
    "where",
]
