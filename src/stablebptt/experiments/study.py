"""The remedies for exploding gradients compared on the same simulators (issue 43): SHAC's study.

Its runs are kept as the reproduction campaign keeps its own (`campaign`: one compact record per finished run,
trained in the background across stops of work, resumed where they stopped), under ``results/shac``:
``stablebptt reproduce run --study shac``.

Fairness, as the study promises it:

- **equal environment steps**: the paper's loop unrolls its task's horizon from 8 states, 32 updates an epoch,
  1000 epochs; a SHAC epoch is ``n_train // batch_size`` updates of `batch_size` environments for `window`
  steps. `shac_epochs` gives the SHAC epochs of as many environment steps as the paper's 1000 epochs, so that the
  committed records of the paper's loop (`campaign`) are compared at the same budget;
- **published hyperparameters, not tuned on reported seeds**: DiffRL's SHAC recipe (`training.shac.diffrl_recipe`)
  with DiffRL's cart-pole learning rates (actor 1e-2, critic 1e-3) and its 64 cart-pole environments; the
  paper's loop keeps the paper's settings;
- **the same three seeds** (42, 43, 44) as the campaign, reported with their spread;
- **loop-equal rules**: R and C under the same SHAC loop, everything else equal.
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.checks import BadInput, plural
from ..core.methods import METHOD_COLORS, as_method
from ..runs.io import atomic_write_bytes, read_json
from ..tasks import make_task
from ..training.settings import FIELDS, TrainSettings
from ..training.shac import diffrl_recipe
from . import evidence
from .apg import APG_OPTIMIZER
from .campaign import (
    LEVEL_NAMES,
    PAPER_TASKS,
    SEEDS,
    Log,
    Stage,
    _level,
    _spread,
    load_records,
    progress,
    stage_named,
)
from .grid import COMPLEXITY
from .report import RunRecord, markdown, smooth

PAPER_EPOCHS, PAPER_BATCH, PAPER_UPDATES = 1000, 8, 32  # the paper's loop, as the campaign trains it
SHAC_BATCH, SHAC_TRAIN = 64, 256  # DiffRL's 64 cart-pole environments; 4 updates an epoch


def shac_epochs(task: str, window: int = 32, batch_size: int = SHAC_BATCH, n_train: int = SHAC_TRAIN) -> int:
    """SHAC epochs of as many environment steps as the paper's 1000 epochs of `task` (rounded up)."""
    horizon = make_task(task).horizon
    paper = PAPER_EPOCHS * PAPER_UPDATES * PAPER_BATCH * horizon
    per_epoch = (n_train // batch_size) * batch_size * window
    return -(-paper // per_epoch)


# The critic the stages recorded before DiffRL's critic network and minibatch order existed here trained (the
# `TrainSettings` defaults): a plain 64x64 ELU MLP on shuffled minibatches. Their runs keep it, so that they stay
# the runs recorded.
RECORDED_CRITIC = {"critic_network": "mlp", "critic_order": "shuffled"}


def _shac_grid(task: str, levels: dict[str, list[Any]], *, diffrl_critic: bool = False) -> dict[str, list[Any]]:
    """The runs of a SHAC stage: R and C on the campaign's seeds, DiffRL's recipe at its cart-pole rates; without
    `diffrl_critic`, a plain critic (a constant learning rate, raw inputs, `RECORDED_CRITIC`: the first stages'
    runs were recorded before DiffRL's decay, normalisation, network and minibatch order existed here)."""
    plain = {} if diffrl_critic else {"critic_schedule": "constant", "critic_normalize": False, **RECORDED_CRITIC}
    settings = diffrl_recipe(lr=1e-2, critic_lr=1e-3, batch_size=SHAC_BATCH, n_train=SHAC_TRAIN, **plain)
    return {**levels, "method": ["R", "C"], "seed": list(SEEDS), **{k: [v] for k, v in settings.items()}}


# the recipes, as the tables name them
PAPER_LOOP, APG, SHAC, SHAC_CRITIC = "paper loop", "APG's recipe", "SHAC", "SHAC, DiffRL in full"
SHAC_EPISODES = "SHAC, episodes of the horizon"  # episode_restart="step": as DiffRL's environments end them
APG_LRS = (1e-4, 1e-3, 1e-2)  # APG's recipe: its learning rate chosen from these on TUNE_SEED
TUNE_SEED = 100  # not reported: it only chooses
APG_WINDOWS = 4  # windows of an episode (the paper's horizon) under APG's recipe
APG_DECAY_OVER_RUN = 0.997**300  # APG's learning-rate decay over its 300 updates, stretched to the run


def apg_settings(task: str, epochs: int = PAPER_EPOCHS) -> dict[str, Any]:
    """Brax APG's recipe on a paper task (docs/brax.md; `benchmarks/recipes_paper_tasks.py`) as `TrainSettings`
    fields but the learning rate: the stream protocol with 8 environments (the paper's batch) running on, each
    update unrolling a quarter of the task's horizon from where the last stopped, an episode of the horizon
    restarting from a fresh `Task.sample`; Adam with betas (0.7, 0.95) and optax's epsilon 1e-8, every gradient
    entry clipped to 1, the learning rate decaying exponentially to 0.406 of its start over the run. An epoch is
    128 updates: as many environment steps as the paper's epoch of 32 whole-horizon updates."""
    horizon = make_task(task).horizon
    if horizon % APG_WINDOWS:
        raise BadInput(f"{task}'s horizon {horizon} is not a multiple of {APG_WINDOWS}, the windows of an episode")
    updates = PAPER_UPDATES * APG_WINDOWS
    return {
        "protocol": "stream",
        "window": horizon // APG_WINDOWS,
        "episode_length": horizon,
        "n_train": PAPER_BATCH * updates,  # an epoch is n_train // batch_size updates (batch_size: 8, the default)
        "adam_b1": 0.7,
        "adam_b2": 0.95,
        "adam_eps": "optax",
        "adam_epsilon": 1e-8,
        "clip": "value",
        "clip_value": 1.0,
        "schedule": "exponential",
        "decay_rate": APG_DECAY_OVER_RUN,
        "transition_steps": epochs * updates,
    }


def _apg_grid(task: str, levels: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """APG's recipe with R on every learning rate of `APG_LRS`, for the tuning seed and the reported ones: the
    report takes the reported seeds at the rate that did best on the tuning seed."""
    grid = {**levels, "method": ["R"], "lr": list(APG_LRS), "seed": [TUNE_SEED, *SEEDS]}
    return {**grid, **{k: [v] for k, v in apg_settings(task).items()}}


# The Brax part: each environment under APG's recipe with R and under SHAC with R, M and C, the same task for both
# (APG's network and sampled actions, Brax's training wrapper restarting episodes of `BRAX_EPISODE` steps, APG's
# objective: the test loss is minus the mean reward per step over an episode from the same test states), the same
# environments running on, windows of the same length and the same environment steps. Sized for about 10 CPU-hours
# on one core (a SHAC update of 16 hopper environments for 32 steps took about 1 s on a shared core, compiling
# its epoch 5 minutes): 75 epochs of 8 updates of 16 environments for 32 steps, 307,200 environment steps a run,
# about 2 % of DiffRL's budget for hopper (256 environments, 2000 epochs of 32 steps).
BRAX_ENVS = ("inverted_double_pendulum", "hopper", "halfcheetah")
BRAX_EPISODE, BRAX_ENVIRONMENTS, BRAX_WINDOW, BRAX_UPDATES, BRAX_EPOCHS = 100, 16, 32, 8, 75
BRAX_TASK: dict[str, Any] = {
    "backend": "mjx",
    "horizon": BRAX_EPISODE,
    "auto_reset": BRAX_EPISODE,
    "network": "apg",
    "actions": "sampled",
    "objective": "apg",
}
# DiffRL's learning rates (actor, critic) per environment: its hopper's and its cheetah's; it has no double
# pendulum, which takes its cart pole's (the closest of its tasks: balancing poles on a cart)
BRAX_SHAC_RATES = {"inverted_double_pendulum": (1e-2, 1e-3), "hopper": (2e-3, 2e-4), "halfcheetah": (2e-3, 2e-3)}
BRAX_APG_LR = 1e-4  # apg.train's default, and the best stream-R rate of the APG study (docs/brax.md, seeds 0-2)
BRAX_METHODS = ("R", "M", "C")
BASELINE = BRAX_METHODS[0]  # the rule the others are compared with inside SHAC's windows on Brax: SHAC as published


PPO_ENVS = ("inverted_double_pendulum",)  # Brax's PPO as the reference (experiments.ppo): one environment, as asked
PPO_FOLDER = "ppo"  # under the study's records: its own JSON files, not run records (`load_records` reads *.json.gz)


def ppo_record_path(root: str | Path, env: str, seed: int) -> Path:
    """Where the PPO reference of `env` and `seed` is recorded under the study's records `root`."""
    return Path(root) / PPO_FOLDER / f"{env}_seed={seed}.json"


def ppo_references(root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every PPO record under `root` (`experiments.ppo`), and one line per file that could not be read (not
    counted)."""
    found, problems = [], []
    for path in sorted((Path(root) / PPO_FOLDER).glob("*.json")):
        try:
            record = read_json(path)
            float(record["final"]["test_loss"]), float(record["budget_s"]), record["env"], int(record["seed"])
            found.append(record)
        except (BadInput, KeyError, TypeError, ValueError) as e:
            problems.append(f"{path}: {type(e).__name__}: {e}")
    return found, problems


def brax_steps() -> int:
    """Environment steps of one run of the Brax part."""
    return BRAX_EPOCHS * BRAX_UPDATES * BRAX_ENVIRONMENTS * BRAX_WINDOW


def _brax_grid(env: str, recipe: str) -> dict[str, list[Any]]:
    """The runs of `env` under `recipe` (APG or SHAC) in the Brax part, on the campaign's seeds."""
    common = {
        "batch_size": BRAX_ENVIRONMENTS,
        "n_train": BRAX_ENVIRONMENTS * BRAX_UPDATES,
        "n_test": BRAX_ENVIRONMENTS,
        "window": BRAX_WINDOW,
    }
    if recipe == APG:
        settings = {
            **APG_OPTIMIZER,
            **common,
            "lr": BRAX_APG_LR,
            "protocol": "stream",
            "key_scheme": "apg",
            "skip_nonfinite": False,
        }
        methods = ["R"]
    else:
        lr, critic_lr = BRAX_SHAC_RATES[env]
        settings = diffrl_recipe(lr=lr, critic_lr=critic_lr, **common, **RECORDED_CRITIC)
        methods = list(BRAX_METHODS)
    return {**{k: [v] for k, v in BRAX_TASK.items()}, "method": methods, "seed": list(SEEDS)} | {
        k: [v] for k, v in settings.items()
    }


def _brax_stages() -> tuple[Stage, ...]:
    stages = []
    for env in BRAX_ENVS:
        for key, recipe, what in (("apg", APG, "APG's recipe with R"), ("shac", SHAC, "SHAC with R, M and C")):
            stages.append(
                Stage(
                    f"{key}-brax-{env.replace('_', '-')}",
                    f"{what}, Brax {env} (MJX), {brax_steps():,} environment steps",
                    f"brax:{env}",
                    _brax_grid(env, recipe),
                    epochs=BRAX_EPOCHS,
                )
            )
    return tuple(stages)


STUDY_STAGES: tuple[Stage, ...] = (
    Stage(
        "shac-cartpole",
        "SHAC with R and C, cart pole 2, 4 and 6 poles, the paper's budget",
        "cartpole",
        _shac_grid("cartpole", {"n_poles": [2, 4, 6]}),
        epochs=shac_epochs("cartpole"),
    ),
    Stage(
        "shac-repulsion",
        "SHAC with R and C, repulsion rc 0.001, the paper's budget",
        "repulsion",
        _shac_grid("repulsion", {"rc": [0.001]}),
        epochs=shac_epochs("repulsion"),
    ),
    Stage(
        "apg-cartpole",
        "APG's recipe with R, cart pole 2, 4 and 6 poles, the paper's budget, 3 learning rates",
        "cartpole",
        _apg_grid("cartpole", {"n_poles": [2, 4, 6]}),
    ),
    Stage(
        "apg-repulsion",
        "APG's recipe with R, repulsion rc 0.001, the paper's budget, 3 learning rates",
        "repulsion",
        _apg_grid("repulsion", {"rc": [0.001]}),
    ),
    *(
        Stage(
            f"shac-episodes-{task}",
            f"SHAC with R and C, episodes ending at the horizon inside the window (as DiffRL's environments), {what}",
            task,
            {**_shac_grid(task, levels), "episode_restart": ["step"]},
            epochs=shac_epochs(task),
        )
        for task, levels, what in (
            ("cartpole", {"n_poles": [2, 4, 6]}, "cart pole 2, 4 and 6 poles"),
            ("repulsion", {"rc": [0.001]}, "repulsion rc 0.001"),
        )
    ),
    Stage(
        "shac-critic",
        "SHAC with R and C, DiffRL in full: its critic (its network, standardised inputs, decaying rate, minibatches "
        "in order) and episodes ending at the horizon inside the window, cart pole 2 poles",
        "cartpole",
        {**_shac_grid("cartpole", {"n_poles": [2]}, diffrl_critic=True), "episode_restart": ["step"]},
        epochs=shac_epochs("cartpole"),
    ),
    *_brax_stages(),
)


# ------------------------------------------------------------------------------------------------ the report

PAPER_LOOP_STAGES = ("b", "c", "f1")  # the campaign's stages of the paper's loop at the study's levels (no clipping)
STUDY_METHODS = ("R", "M", "C")  # the table's columns; the paper's loop counts its R and C
PAPER_LOOP_METHODS = ("R", "C")
STAGE_RECIPES = {
    "shac-cartpole": SHAC,
    "shac-repulsion": SHAC,
    "apg-cartpole": APG,
    "apg-repulsion": APG,
    "shac-critic": SHAC_CRITIC,
    "shac-episodes-cartpole": SHAC_EPISODES,
    "shac-episodes-repulsion": SHAC_EPISODES,
    **{s.key: APG if s.key.startswith("apg-") else SHAC for s in STUDY_STAGES if "-brax-" in s.key},
}
RECIPE_STYLES: dict[str, Any] = {  # matplotlib line styles
    PAPER_LOOP: "-",
    APG: "-.",
    SHAC: "--",
    SHAC_CRITIC: ":",
    SHAC_EPISODES: (0, (5, 1, 1, 1, 1, 1)),
}


def env_steps_per_epoch(config: Mapping[str, Any]) -> int:
    """Environment steps of one epoch of the run of `config` (a record's JSON config): ``n_train`` states
    unrolled over the horizon in the paper's loop (dataset protocol); ``n_train // batch_size`` windows of
    ``batch_size`` environments for ``window`` steps under SHAC and the stream protocol."""
    train = config.get("train", {})
    settings = TrainSettings(**{k: v for k, v in train.items() if k in FIELDS})
    if settings.protocol in ("shac", "stream"):
        return (settings.n_train // settings.batch_size) * settings.batch_size * int(train["window"])
    task = make_task(config["task"], **config.get("task_settings", {}))
    return settings.n_train * task.horizon


@dataclass
class Cell:
    """The records of one recipe and rule at one level of a task."""

    task: str
    level: Any
    recipe: str
    method: str
    records: list[RunRecord]
    note: str = ""  # how the records were chosen (APG's recipe: the learning rate and the seed it was chosen on)

    def finals(self) -> list[float]:
        return [final_loss(r) for r in self.records]

    def median(self) -> float:
        finite = [x for x in self.finals() if math.isfinite(x)]
        return float(np.median(finite)) if finite else math.nan

    def diverged(self) -> int:
        """How many of the records ended diverged (a non-finite update stopped the run)."""
        return sum(r.status == "diverged" for r in self.records)

    def wall_hours(self) -> list[float]:
        return [float(np.nansum(r.curve("epoch_time"))) / 3600 for r in self.records]


def study_cells(shac_root: str | Path, paper_root: str | Path) -> tuple[list[Cell], list[RunRecord]]:
    """Every (task, level, recipe, rule) of the study with its counted records, level by level: the paper loop's
    from the campaign's records in `paper_root` (stages b, c and f1: no clipping, learning rate 1e-3, the same
    seeds), then each SHAC recipe with a stage at that level (`STAGE_RECIPES`) from `shac_root`; and the records
    that could not be counted (unreadable, or of no planned run), which the page lists. A recipe has a cell per
    rule it plans (APG's: R only); APG's recipe counts the reported seeds at the learning rate of `APG_LRS` whose
    run on `TUNE_SEED` ended lowest, and none until that seed's runs are all recorded."""
    shac, bad_shac, odd_shac = progress(load_records(shac_root), STUDY_STAGES)
    paper, bad_paper, _ = progress(load_records(paper_root), stage_named(PAPER_LOOP_STAGES))
    levels: dict[tuple[str, Any], list[str]] = {}
    for stage in STUDY_STAGES:
        for level in stage.grid.get(COMPLEXITY.get(stage.task, ""), [None]):
            recipes = levels.setdefault((stage.task, level), [PAPER_LOOP] if stage.task in PAPER_TASKS else [])
            recipes += [STAGE_RECIPES[stage.key]] if STAGE_RECIPES[stage.key] not in recipes else []
    cells = []
    for (task, level), recipes in levels.items():
        for recipe in recipes:
            records = [
                r
                for p in (paper if recipe == PAPER_LOOP else [p for p in shac if STAGE_RECIPES[p.stage.key] == recipe])
                for r in p.recorded.values()
                if p.stage.task == task and _level(r) == level
            ]
            note = ""
            if recipe == APG and task in PAPER_TASKS:
                records, note = _at_chosen_lr(records)
            elif recipe == APG:
                note = f"lr {BRAX_APG_LR:g}"
            planned = {
                m for p in STUDY_STAGES if STAGE_RECIPES[p.key] == recipe and p.task == task for m in p.grid["method"]
            }
            for method in PAPER_LOOP_METHODS if recipe == PAPER_LOOP else [m for m in STUDY_METHODS if m in planned]:
                chosen = [r for r in records if r.settings().get("method") == method]
                cells.append(Cell(task, level, recipe, method, chosen, note))
    return cells, [*bad_shac, *odd_shac, *bad_paper]


def _at_chosen_lr(records: Sequence[RunRecord]) -> tuple[list[RunRecord], str]:
    """The records of the reported seeds at the learning rate whose `TUNE_SEED` run ended lowest, and a note
    naming it; none (and the note says so) until every rate's tuning run is recorded."""
    tuning = {r.settings().get("lr"): final_loss(r) for r in records if r.settings().get("seed") == TUNE_SEED}
    if len(tuning) < len(APG_LRS):
        return [], f"learning rate: {plural(len(tuning), 'tuning run')} of {len(APG_LRS)} recorded"
    lr = min(tuning, key=lambda k: tuning[k] if math.isfinite(tuning[k]) else math.inf)
    chosen = [r for r in records if r.settings().get("lr") == lr and r.settings().get("seed") in SEEDS]
    return chosen, f"lr {lr:g}, chosen on seed {TUNE_SEED}"


def final_loss(record: RunRecord) -> float:
    """The last finite test loss of a record (NaN if none)."""
    values = record.curve("test_loss")
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def _level_name(task: str, level: Any) -> str:
    """``2 poles``, ``rc 0.001``: a level as the tables name it ("-" for a task without levels)."""
    if level is None:
        return "-"
    name = LEVEL_NAMES.get(COMPLEXITY[task], "level")
    return f"{level} {name}" if name == "poles" else f"{name} {level}"


def study_table(cells: Sequence[Cell]) -> str:
    """One row per level and recipe: each rule's final test loss, ``median [min, max]`` over the seeds recorded
    (a diverged run's last finite one, and how many diverged; "-": the recipe does not plan the rule), the
    environment steps a run plans, and the wall hours of a run (per-run share of its group, median); a recipe's
    note (APG's learning rate) follows its name."""
    rows = []
    for (task, level, recipe), group in itertools.groupby(cells, key=lambda c: (c.task, c.level, c.recipe)):
        by_rule = {c.method: c for c in group}
        some = next((r for c in by_rule.values() for r in c.records), None)
        steps = env_steps_per_epoch(some.config) * (some.epochs or 0) if some is not None else None  # as planned
        note = next((c.note for c in by_rule.values() if c.note), "")
        row: dict[str, Any] = {"task": task, "level": _level_name(task, level)}
        row["recipe"] = f"{recipe} ({note})" if note else recipe
        for method in STUDY_METHODS:
            cell = by_rule.get(method)
            row[method] = "-" if cell is None else _spread(cell.finals()) if cell.records else "not run yet"
            if cell is not None and cell.diverged():
                row[method] += f" ({cell.diverged()} diverged)"
        row["seeds"] = "/".join(str(len(by_rule[m].records)) if m in by_rule else "-" for m in STUDY_METHODS)
        row["env steps"] = f"{steps:.3g}" if steps else "-"
        hours = [h for c in by_rule.values() for h in c.wall_hours()]
        row["wall h"] = f"{np.median(hours):.2f}" if hours else "-"
        rows.append(row)
    return markdown(list(rows[0]), rows) if rows else "(no records)\n"


def verdicts(cells: Sequence[Cell]) -> list[str]:
    """The study's questions answered per level, in sentences whose every number is computed here: does SHAC
    (its better rule) beat the paper's C, and does C help inside SHAC's windows. A level without every record it
    needs says what it lacks."""
    lines = []
    find = {(c.task, c.level, c.recipe, c.method): c for c in cells}
    for task, level in dict.fromkeys((c.task, c.level) for c in cells):
        if task not in PAPER_TASKS:
            lines.append(_brax_verdict(find, task, level))
            continue
        name = f"{task}, {_level_name(task, level)}"
        paper_c, shac_r, shac_c = (
            find[(task, level, recipe, method)] for recipe, method in ((PAPER_LOOP, "C"), (SHAC, "R"), (SHAC, "C"))
        )
        missing = [f"{c.recipe} {c.method}" for c in (paper_c, shac_r, shac_c) if not c.records]
        diverged = "".join(
            f" SHAC with {c.method} diverged in {c.diverged()} of {plural(len(c.records), 'run')} (a non-finite "
            "update; the loss shown is the last finite one)."
            for c in (shac_r, shac_c)
            if c.diverged()
        )
        if missing:
            lines.append(f"- **{name}**: not answered yet (no records of {', '.join(missing)}).{diverged}")
            continue
        best = min((shac_r, shac_c), key=lambda c: c.median())
        ratio = best.median() / paper_c.median()
        beats = "beats" if ratio < 1 else "does not beat"
        inside = shac_c.median() / shac_r.median()
        helps = "helps" if inside < 1 else "does not help"
        seeds_c = sum(a < b for a, b in itertools.product(shac_c.finals(), shac_r.finals()))
        pairs = len(shac_c.finals()) * len(shac_r.finals())
        lines.append(
            f"- **{name}**: SHAC (best rule: {best.method}, median {best.median():.3g}) {beats} the paper's loop "
            f"with C (median {paper_c.median():.3g}): {ratio:.3g} times its loss. Inside SHAC's windows C "
            f"{helps}: its median is {inside:.3g} times R's ({seeds_c} of {pairs} seed pairs lower)."
            + diverged
            + _apg_verdict(find, task, level, best, paper_c)
            + _critic_verdict(find, task, level, best, paper_c)
        )
    return lines


def _brax_verdict(find: Mapping[tuple[str, Any, str, str], Cell], task: str, level: Any) -> str:
    """The Brax part's questions for one environment, in mean reward per step (minus the test loss; higher is
    better): does SHAC (its best rule) beat APG's recipe with R, and do C and M help inside SHAC's windows."""
    apg = find.get((task, level, APG, "R"))
    shac = {m: find[(task, level, SHAC, m)] for m in BRAX_METHODS if (task, level, SHAC, m) in find}
    cells = [c for c in (apg, *shac.values()) if c is not None]
    diverged = "".join(
        f" {c.recipe} with {c.method} diverged in {c.diverged()} of {plural(len(c.records), 'run')}."
        for c in cells
        if c.diverged()
    )
    missing = [f"{c.recipe} {c.method}" for c in cells if not c.records]
    if missing or apg is None or BASELINE not in shac:
        lacking = ", ".join(missing) or "a stage of both recipes"
        return f"- **{task}**: not answered yet (no records of {lacking}).{diverged}"

    def reward(cell: Cell) -> float:
        return -cell.median()

    best = max(shac.values(), key=reward)
    beats = "beats" if reward(best) > reward(apg) else "does not beat"
    others = []
    for method in (m for m in shac if m != BASELINE):
        above = sum(a < b for a, b in itertools.product(shac[method].finals(), shac[BASELINE].finals()))
        pairs = len(shac[method].finals()) * len(shac[BASELINE].finals())
        others.append(f"{method} {reward(shac[method]):.3g} ({above} of {pairs} seed pairs above {BASELINE})")
    first = float(np.median([-r.curve("test_loss")[0] for r in best.records]))
    runs = [r for c in shac.values() for r in c.records]
    stable = sum(r.status != "diverged" for r in runs)
    unstable = (  # a diverged run counts at its last finite epoch: say so where the best rule's median has one
        f"; {best.diverged()} of its {plural(len(best.records), 'run')} diverged, each read at its last finite epoch"
        if best.diverged()
        else ""
    )
    return (
        f"- **{task}** (mean reward per step over an episode, median over seeds; higher is better): SHAC (best "
        f"rule: {best.method}, {reward(best):.3g}{unstable}) {beats} APG's recipe with R ({reward(apg):.3g}). "
        f"Inside SHAC's windows, against {BASELINE}'s {reward(shac[BASELINE]):.3g}: {'; '.join(others)}. "
        f"SHAC trained to the end in {stable} of {plural(len(runs), 'run')}; its best rule went from {first:.3g} "
        f"after the first epoch to {reward(best):.3g}." + diverged
    )


def _apg_verdict(
    find: Mapping[tuple[str, Any, str, str], Cell], task: str, level: Any, best: Cell, paper_c: Cell
) -> str:
    """The sentence on APG's recipe with R at a level where the study has a stage of it ('' where it has none)."""
    cell = find.get((task, level, APG, "R"))
    if cell is None:
        return ""
    if not cell.records:
        return f" APG's recipe with R: not answered yet ({cell.note})."
    return (
        f" APG's recipe with R ({cell.note}) reaches median {cell.median():.3g}: "
        f"{cell.median() / paper_c.median():.3g} times the paper's C and {cell.median() / best.median():.3g} times "
        "SHAC's best."
    )


VARIANTS = {  # SHAC's variants at the paper's levels, as the verdicts say them: each against the best of a recipe
    SHAC_EPISODES: ("With episodes that end at the horizon, inside the window", SHAC, "first stages'"),
    SHAC_CRITIC: (
        "With DiffRL's critic as well (its network, inputs standardised, learning rate decaying, minibatches in order)",
        SHAC_EPISODES,
        "plain critic's",
    ),
}


def _critic_verdict(
    find: Mapping[tuple[str, Any, str, str], Cell], task: str, level: Any, best: Cell, paper_c: Cell
) -> str:
    """The sentences on SHAC's variants (`VARIANTS`) at a level where the study has a stage of them ('' for a
    variant without one): each variant's better rule against the best rule of the recipe it varies (`best`, the
    first stages' SHAC, for episodes of the horizon) and against the paper's C."""

    def better_of(recipe: str) -> Cell | None:
        cells = [find.get((task, level, recipe, m)) for m in PAPER_LOOP_METHODS]
        found = [c for c in cells if c is not None]
        if len(found) < len(cells) or not all(c.records for c in found):
            return None
        return min(found, key=lambda c: c.median())

    said = ""
    for recipe, (variant, base, against) in VARIANTS.items():
        if all(find.get((task, level, recipe, m)) is None for m in PAPER_LOOP_METHODS):
            continue
        better = better_of(recipe)
        if better is None:
            said += f" {variant}: not answered yet."
            continue
        baseline = best if base == SHAC else better_of(base)
        than = (
            f"{better.median() / baseline.median():.3g} times the {against} best"
            if baseline is not None
            else f"the {against} best not recorded yet"
        )
        said += (
            f" {variant}, SHAC's better rule is {better.method} (median {better.median():.3g}): {than} and "
            f"{better.median() / paper_c.median():.3g} times the paper's C."
        )
    return said


def _recipe_of(record: RunRecord) -> str:
    """The recipe a record of the study or of the paper's loop was trained with (`STAGE_RECIPES`' names)."""
    train = record.config.get("train", {})
    protocol = train.get("protocol", "dataset")
    if protocol == "stream":
        return APG
    if protocol == "shac" and train.get("critic_normalize"):
        return SHAC_CRITIC
    if protocol == "shac":
        return SHAC_EPISODES if train.get("episode_restart") == "step" else SHAC
    return PAPER_LOOP


def _recipe_choice(recipe: str, method: str, lrs: Mapping[tuple[str, Any], Any] | None = None) -> evidence.Choice:
    """Always `recipe` with `method` (APG's recipe: at the rate `lrs` chose for the level, on `TUNE_SEED`)."""

    def final(cell: evidence.Cell) -> float | None:
        found = [
            o
            for o in cell.runs
            if o.method == method
            and _recipe_of(o.record) == recipe
            and (lrs is None or o.lr == lrs.get((cell.task, cell.level)))
        ]
        return found[0].final if found else None

    return evidence.Choice(f"{recipe}, {method}" + (" (lr chosen on seed 100)" if lrs is not None else ""), final)


def study_regrets(shac_root: str | Path, paper_root: str | Path) -> tuple[list[evidence.Cell], list[evidence.Choice]]:
    """The "which to use" cells of the paper's tasks at the study's levels and seeds, with every run of the
    paper's loop (R, C) and of the study's recipes recorded there (Brax and the tuning seed left out), and one
    choice per recipe and rule: the rows `evidence.regret_table` gives the reproduction's regret table."""
    cells, _ = study_cells(shac_root, paper_root)
    records = {id(r): r for c in cells if c.task in PAPER_TASKS for r in c.records}
    apg_all = [r for r in load_records(shac_root) if _recipe_of(r) == APG]
    lrs = {}
    for task, level in {(c.task, c.level) for c in cells if c.task in PAPER_TASKS and c.recipe == APG}:
        chosen, _ = _at_chosen_lr([r for r in apg_all if r.config.get("task") == task and _level(r) == level])
        lrs[(task, level)] = chosen[0].settings().get("lr") if chosen else None
    choices = [
        *(_recipe_choice(PAPER_LOOP, m) for m in PAPER_LOOP_METHODS),
        *(_recipe_choice(SHAC, m) for m in PAPER_LOOP_METHODS),
        *(_recipe_choice(SHAC_CRITIC, m) for m in PAPER_LOOP_METHODS),
        *(_recipe_choice(SHAC_EPISODES, m) for m in PAPER_LOOP_METHODS),
        _recipe_choice(APG, "R", lrs),
    ]
    return evidence.cells(list(records.values())), choices


def ppo_rows(references: Sequence[Mapping[str, Any]]) -> str:
    """The PPO references' table: per environment, the seeds, the budget, the environment steps reached and the mean
    reward per step (minus the final test loss) as ``median [min, max]``, and ppo.train's time beyond training
    (initialising and compiling; short where the command line's compilation cache already held the programs)."""
    rows = []
    for env, group in itertools.groupby(sorted(references, key=lambda r: r["env"]), key=lambda r: r["env"]):
        found = list(group)
        rows.append(
            {
                "environment": env,
                "seeds": ", ".join(str(r["seed"]) for r in sorted(found, key=lambda r: r["seed"])),
                "training s (budget)": f"{np.median([r['budget_s'] for r in found]):.1f}",
                "env steps": _spread([float(r["final"]["env_steps"]) for r in found]),
                "reward per step": _spread([-float(r["final"]["test_loss"]) for r in found]),
                "setup s": f"{np.median([r.get('compile_s', math.nan) for r in found]):.0f}",
            }
        )
    return markdown(list(rows[0]), rows) if rows else "(no PPO records yet: `stablebptt reproduce ppo --study shac`)\n"


def ppo_verdicts(cells: Sequence[Cell], references: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per environment with PPO records: PPO at SHAC's training time against SHAC's best rule and APG's recipe, in
    mean reward per step (median over the seeds), with SHAC's seed pairs above PPO counted."""
    lines = []
    for env in sorted({r["env"] for r in references}):
        found = [r for r in references if r["env"] == env]
        ppo = [-float(r["final"]["test_loss"]) for r in found]
        steps = float(np.median([r["final"]["env_steps"] for r in found]))
        shac = [c for c in cells if c.task == f"brax:{env}" and c.recipe == SHAC and c.records]
        apg = next((c for c in cells if c.task == f"brax:{env}" and c.recipe == APG and c.records), None)
        head = (
            f"- **{env}**: Brax's PPO, given the median training time of SHAC with R "
            f"({np.median([r['budget_s'] for r in found]):.1f} s, compilation excluded on both sides), took "
            f"{steps:,.0f} environment steps ({steps / brax_steps():.3g} times a SHAC run's) and reaches "
            f"{np.median(ppo):.3g} reward per step ({plural(len(ppo), 'seed')}, {_spread(ppo)})"
        )
        if not shac:
            lines.append(head + "; no SHAC records to compare with yet.")
            continue
        best = max(shac, key=lambda c: -c.median())
        above = sum(-a > b for a, b in itertools.product(best.finals(), ppo))
        beats = "above" if -best.median() > np.median(ppo) else "not above"
        lines.append(
            head + f". SHAC's best rule ({best.method}, {-best.median():.3g}) is {beats} it: {above} of "
            f"{len(best.finals()) * len(ppo)} seed pairs above PPO"
            + (f"; APG's recipe with R: {-apg.median():.3g}." if apg is not None else ".")
        )
    return lines


def seed_curves(records: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(steps (E,), curves (seeds, E))``: the test loss of each record against environment steps, over the longest
    record's E epochs; a run that stopped early (diverged) is NaN after its last epoch, so that the median and the
    band go on over the runs still training instead of ending where the first run stopped."""
    length = max(len(r.rows) for r in records)
    curves = np.full((len(records), length), np.nan)
    for row, record in zip(curves, records, strict=True):
        row[: len(record.rows)] = record.curve("test_loss")
    return np.arange(1, length + 1) * env_steps_per_epoch(records[0].config), curves


SMOOTHING = 100  # the figure's curves are running means over this fraction (1/100) of a run's epochs


def plot_study(cells: Sequence[Cell], path: str | Path, references: Sequence[Mapping[str, Any]] = ()) -> None:
    """One panel per level: the test loss against environment steps, median over the seeds and min-max band, of
    each recipe (the paper's loop solid, SHAC dashed, SHAC in full as DiffRL dotted, SHAC with episodes of the
    horizon dash-dotted) and rule (the rule's
    colour), on a log scale, each seed's curve a trailing mean over 1 % of its epochs (`SMOOTHING`), a diverged run
    counted until it stopped and its last finite value marked with an x;
    a Brax environment's panel in reward per step, with Brax's PPO at SHAC's training time
    (`references`) as a grey horizontal line (its median; it takes more environment steps than the axis shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys((c.task, c.level) for c in cells))
    columns = min(4, len(levels))
    rows = -(-len(levels) // columns)
    fig, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    for ax in grid.flat[len(levels) :]:
        ax.set_visible(False)
    for ax, (task, level) in zip(grid.flat, levels, strict=False):
        paper = task in PAPER_TASKS  # the paper's loss on a log scale; a Brax task's reward per step (-loss)
        for cell in (c for c in cells if (c.task, c.level) == (task, level) and c.records):
            steps, curves = seed_curves(cell.records)
            window = max(1, curves.shape[1] // SMOOTHING)  # 1 % of the run: 31 of SHAC's 3125 epochs; Brax's 75: none
            curves = np.stack([np.where(np.isnan(c), np.nan, smooth(c, window)) for c in curves])
            curves *= 1 if paper else -1
            style = RECIPE_STYLES[cell.recipe]
            colour = METHOD_COLORS[cell.method]
            label = f"{cell.recipe}, {as_method(cell.method).label} ({len(cell.records)} seeds)"
            with warnings.catch_warnings():  # a step where no run has a finite loss is a gap in the line
                warnings.simplefilter("ignore", RuntimeWarning)
                middle, low, high = (f(curves, axis=0) for f in (np.nanmedian, np.nanmin, np.nanmax))
            ax.plot(steps, middle, ls=style, color=colour, label=label, lw=1.2)
            if len(cell.records) > 1:
                ax.fill_between(steps, low, high, color=colour, alpha=0.12)
            for row, record in zip(curves, cell.records, strict=True):
                finite = np.flatnonzero(np.isfinite(row))
                if record.status == "diverged" and finite.size:
                    ax.plot(steps[finite[-1]], row[finite[-1]], "x", color=colour, ms=6, mew=1.5)
        ppo = [-float(r["final"]["test_loss"]) for r in references if f"brax:{r['env']}" == task]
        if ppo and not paper:
            ax.axhline(
                np.median(ppo),
                color="0.45",
                ls=(0, (6, 2)),
                lw=1.2,
                label=f"Brax PPO, same training time ({len(ppo)} seeds)",
            )
        ax.set_yscale("log" if paper else "linear")
        ax.set_title(f"{task}, {_level_name(task, level)}" if paper else f"{task} (MJX)")
        ax.set_xlabel("environment steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))  # 3e5 as 3 and x1e5, not 300000 colliding
        ax.set_ylabel("test loss (the paper's, full horizon)" if paper else "mean reward per step (test)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, framealpha=0.5)  # see-through: the cart-pole panels have no free corner
        else:
            ax.text(0.5, 0.5, "no records yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_study_pages(
    shac_root: str | Path, paper_root: str | Path, figures: str | Path, tables: str | Path, *, log: Log | None = print
) -> tuple[Path, Path]:
    """The study's figure (``recipes_study.png`` in `figures`) and its generated page of tables and verdicts (the
    Markdown file `tables`), from the committed records alone. Returns both paths."""
    cells, uncounted = study_cells(shac_root, paper_root)
    references, unread = ppo_references(shac_root)
    figure = Path(figures) / "recipes_study.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_study(cells, figure, references)
    lines = [
        "# Remedies compared: the records",
        "",
        "<!-- Generated by `stablebptt reproduce report --study shac` from the records in "
        f"{Path(shac_root).as_posix()} and {Path(paper_root).as_posix()}; do not edit. -->",
        "",
        "Computed from the committed records alone; how the study is set up, and what it does not yet cover, is in "
        "[Remedies compared](recipes.md). Final test loss: the paper's loss over the full horizon from the same 256 "
        "test states, the last epoch's; values are `median [min, max]` over the seeds recorded (R/C). The paper's "
        "loop and SHAC see the same number of environment steps; wall hours are per run, on one shared CPU core "
        "(the per-run share of a batched group of seeds), recorded in different sessions: indicative only.",
        "",
        "## Final test loss",
        "",
        study_table(cells),
        "## The questions, answered where the records allow",
        "",
        *verdicts(cells),
        "",
        "## Brax's PPO at SHAC's training time",
        "",
        "The reference users quote, as Brax ships it (`stablebptt reproduce ppo --study shac`, "
        "`stablebptt.experiments.ppo`): Brax's settings for the environment at smaller sizes per step, trained for "
        "the median training time of SHAC with R on the same core, compilation excluded on both sides, and scored "
        "as every run here: the deterministic policy from the same 16 test states. Reward per step: `median [min, "
        "max]` over the seeds; environment steps are PPO's own, at the last evaluation within the budget; setup: "
        "ppo.train's time beyond training (compiling, short where the compilation cache held the programs).",
        "",
        ppo_rows(references),
        *ppo_verdicts(cells, references),
        "",
        "## Which to use: the recipes' regret",
        "",
        "As on the reproduction's records page (its section \"Which to use\"), at the study's levels of the paper's "
        "tasks: a **cell** is one level and one reported seed; the **regret** of a choice is its final test loss "
        "over the lowest of every run of the study and of the paper's loop recorded in that cell. A choice is "
        "counted only in the cells where it was recorded.",
        "",
        evidence.regret_table(*study_regrets(shac_root, paper_root)),
        "",
        f"![test loss against environment steps](figures/{figure.name})",
        "",
        "The figure: per recipe and rule, the median over the seeds (line) and their range (band) against "
        "environment steps, each seed's test loss a trailing mean over 1 % of its epochs (31 of SHAC's 3125 on the "
        "paper's tasks, 10 of the paper's loop's 1000; none on Brax's 75); a run that diverged counts until it "
        "stopped, its last finite value marked with an x.",
        "",
    ]
    if uncounted:
        lines += [f"Not counted: {plural(len(uncounted), 'record')} (unreadable, or of no planned run).", ""]
    if unread:
        lines += [f"Not counted: {plural(len(unread), 'PPO record')} that could not be read.", ""]
        for problem in unread:
            (log or print)(f"not counted, unreadable: {problem}")
    tables = Path(tables)
    tables.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(tables, "\n".join(lines).rstrip("\n").encode() + b"\n")
    if log is not None:
        counted = sum(len(c.records) for c in cells if c.recipe != PAPER_LOOP)
        log(f"{plural(counted, 'SHAC record')} counted; figure: {figure}; tables: {tables}")
    return figure, tables
