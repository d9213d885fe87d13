"""Grids of runs: the product of lists of settings, the published grids, and a folder name per run.

A grid is a mapping from a setting's name (a field of the task such as ``n_poles`` or a training setting
such as ``method``) to the list of its values; every setting not in the mapping keeps its default. A built-in
task records the settings of its command-line options in every run's config; other fields of the task (and
every field of a task of your own, ``module.path:Name``) are recorded only when the grid gives them. Run
folders are named from the settings that identify them (method, the task's complexity setting, clipping,
seed, and every other setting that differs from its default), so that extending a grid later keeps the names
of runs already done: ``method=C_poles=2_clip=none_seed=42``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..tasks import task_fields
from ..training.run import run_config

# Training settings a sweep can vary, with the defaults of `stablebptt train`.
TRAIN_DEFAULTS: dict[str, Any] = {
    "method": "C", "epochs": 1000, "batch_size": 8, "lr": 1e-3, "optimizer": "adam", "clip": "none",
    "clip_value": 1.0, "seed": 42,
}
# Further training settings, written into a run's config only when a grid gives them (so that configs of
# runs made before they existed keep their hash).
OPTIONAL_TRAIN_DEFAULTS: dict[str, Any] = {"n_train": 256, "n_test": 256, "skip_nonfinite": False}

# The setting each task's paper figure has one panel per value of (method.md §2-§4).
COMPLEXITY = {"cartpole": "n_poles", "repulsion": "rc", "quantum": "target", "mjx-cartpole": "n_poles"}
# Settings whose smaller values make the task harder (panels are drawn from easy to hard).
HARDER_WHEN_SMALLER = ("rc",)

# The published grids (method.md §2-§5); seed 42 and 1000 epochs as published.
PAPER_GRIDS: dict[str, dict[str, list]] = {
    "cartpole": {"n_poles": [1, 2, 3, 4], "method": ["R", "M", "C", "S"], "clip": ["none", "value", "norm"]},
    "repulsion": {"rc": [1.0, 0.1, 0.01, 0.001], "method": ["R", "M", "C", "S"]},
    "quantum": {"target": [3, 4, 5], "method": ["R", "M", "C", "S"]},
}

_ALWAYS_NAMED = ("method", "clip", "seed")


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its folder name and its full config (as `run_config` builds it)."""

    name: str
    config: dict

    @property
    def batch_key(self) -> str:
        """Runs with the same key differ only in seed or learning rate and can be trained together."""
        train = {k: v for k, v in self.config["train"].items() if k not in ("seed", "lr")}
        return repr((self.config["task"], sorted(self.config["task_settings"].items()), sorted(train.items()),
                     self.config["x64"]))


def task_defaults(task: str) -> dict[str, Any]:
    """The task settings every run's config records, with their defaults: those of a built-in task's CLI
    options; none for a task of your own (``module.path:Name``)."""
    from ..cli.options import TASK_OPTIONS

    if task in TASK_OPTIONS:
        return {o.name: o.default for o in TASK_OPTIONS[task]}
    task_fields(task)  # one line for an unknown task or a spec that does not resolve
    return {}


def _short_names(task: str) -> dict[str, str]:
    """Names of task settings in folder names (``n_poles`` -> ``poles``, from the CLI flag); others as is."""
    from ..cli.options import TASK_OPTIONS

    return {o.name: o.flag.lstrip("-").replace("-", "_") for o in TASK_OPTIONS.get(task, ())}


def paper_grid(task: str) -> dict[str, list]:
    """The published grid of `task` (a copy)."""
    if task not in PAPER_GRIDS:
        raise ValueError(f"no published grid for task {task!r}; known: {', '.join(PAPER_GRIDS)}")
    return {k: list(v) for k, v in PAPER_GRIDS[task].items()}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)
    except Exception:  # noqa: BLE001 - e.g. an array default: not comparable to a JSON value
        return True


def run_name(task: str, task_settings: Mapping[str, Any], train: Mapping[str, Any], x64: bool = False, *,
             defaults: Mapping[str, Any] | None = None) -> str:
    """Folder name of a run: ``key=value`` parts joined by ``_`` (see the module docstring). `defaults`: the
    task's field defaults with those of its CLI options (found from `task` when None)."""
    defaults = {**task_fields(task), **task_defaults(task)} if defaults is None else defaults
    short = _short_names(task)
    complexity = COMPLEXITY.get(task)
    parts = [f"method={train['method']}"]
    for k, v in task_settings.items():
        if k == complexity or _differs(v, defaults.get(k)):
            parts.append(f"{short.get(k, k)}={_format(v)}")
    parts.append(f"clip={train['clip']}")
    for k, v in train.items():
        if k not in _ALWAYS_NAMED and k != "epochs" and v != {**TRAIN_DEFAULTS, **OPTIONAL_TRAIN_DEFAULTS}[k]:
            parts.append(f"{k}={_format(v)}")
    parts.append(f"seed={train['seed']}")
    if x64:
        parts.append("x64")
    return "_".join(p.replace("/", "-").replace(" ", "") for p in parts)


def expand(task: str, grid: Mapping[str, Sequence[Any]], *, x64: bool = False, checkpoint_every: int = 1
           ) -> list[Run]:
    """All runs of the product of `grid` (setting -> values), task settings first, seeds last.

    Raises:
        ValueError: for an unknown setting, an empty list of values, or two runs with the same name.
    """
    recorded = task_defaults(task)
    defaults = {**task_fields(task), **recorded}
    fields = [*recorded, *(k for k in defaults if k not in recorded)]
    train_defaults = {**TRAIN_DEFAULTS, **{k: v for k, v in OPTIONAL_TRAIN_DEFAULTS.items() if k in grid}}
    unknown = set(grid) - set(fields) - set(TRAIN_DEFAULTS) - set(OPTIONAL_TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings for {task}: {', '.join(sorted(unknown))}; allowed: "
                         f"{', '.join([*fields, *TRAIN_DEFAULTS, *OPTIONAL_TRAIN_DEFAULTS])}")
    for k, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"no values given for {k}")
    # Order of the product: task settings, then training settings, seed varying fastest.
    keys = [k for k in fields if k in grid] + [k for k in train_defaults if k in grid and k != "seed"]
    keys += ["seed"] if "seed" in grid else []
    runs, seen = [], set()
    for values in itertools.product(*(_unique(grid[k]) for k in keys)):
        chosen = dict(zip(keys, values))
        task_settings = {**recorded, **{k: chosen[k] for k in fields if k in chosen}}
        train = {k: chosen.get(k, v) for k, v in train_defaults.items()}
        name = run_name(task, task_settings, train, x64, defaults=defaults)
        if name in seen:
            raise ValueError(f"two runs of the grid would share the folder {name}")
        seen.add(name)
        runs.append(Run(name, run_config(task, task_settings, x64=x64, checkpoint_every=checkpoint_every, **train)))
    return runs


def _unique(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out
