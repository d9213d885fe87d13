"""Grids of runs: the product of lists of settings, the published grids, and a folder name per run.

A grid is a mapping from a setting's name (a field of the task such as ``n_poles`` or a training setting
such as ``method``, any field of `TrainSettings`) to the list of its values; every setting not in the mapping
keeps its default. A built-in task records its main settings (`tasks.TASK_OPTIONS`) in every run's config;
other fields of the task (and
every field of a task of your own, ``module.path:Name``) are recorded only when the grid gives them. Run
folders are named from the settings that identify them (method, the task's complexity setting, clipping,
seed, and every other setting that differs from its default), so that extending a grid later keeps the names
of runs already done: ``method=C_poles=2_clip=none_seed=42``. A name whose settings run past
`MAX_SETTINGS_CHARS` keeps their start and ends in ``_h=`` and a hash of them, then the seed (a file name has
255 bytes at most); the full settings are in the run's config.json.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.checks import BadInput
from ..runs import RunConfig
from ..runs.config import ADDED
from ..tasks import TASKS, recorded_settings, task_fields, task_options
from ..training.optim import PAPER_CLIP_MODES
from ..training.settings import DEFAULTS, FIELDS

# What each built-in task declares (`tasks.Task`): the setting that makes it harder, and whether smaller values are
# harder (panels go from easy to hard).
COMPLEXITY: dict[str, str] = {name: cls.complexity for name, cls in TASKS.items() if cls.complexity}
HARDER_WHEN_SMALLER: tuple[str, ...] = tuple(
    dict.fromkeys(cls.complexity for cls in TASKS.values() if cls.complexity and cls.harder_when_smaller)
)


@dataclass(frozen=True)
class Published:
    """What the paper published of a task: the values of its settings in the figures (`grid`; the methods and
    clipping modes are the paper's for every task, seed 42 and 1000 epochs as published; docs/tasks.md and
    docs/concepts.md, training protocol) and the y-range of its test-loss figure (`ylim`)."""

    grid: Mapping[str, Sequence[Any]]
    ylim: tuple[float, float]


PAPER: dict[str, Published] = {
    "cartpole": Published({"n_poles": (1, 2, 3, 4)}, (1e-6, 3.0)),
    "repulsion": Published({"rc": (1.0, 0.1, 0.01, 0.001)}, (0.4, 6.0)),
    "quantum": Published({"target": (3, 4, 5)}, (16.5, 135.0)),
}
PAPER_METHODS = ["R", "M", "C", "S"]
PAPER_GRIDS: dict[str, dict[str, list[Any]]] = {
    name: {**{k: list(v) for k, v in paper.grid.items()}, "method": PAPER_METHODS, "clip": list(PAPER_CLIP_MODES)}
    for name, paper in PAPER.items()
}

_ALWAYS_NAMED = ("method", "clip", "seed")
# A run's settings in its folder name, at most: longer ones keep their first characters and end in ``_h=`` and 12
# hex digits of their SHA-256 (the seed and x64 follow), so that a record's file name stays under 255 bytes.
MAX_SETTINGS_CHARS = 225


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its folder name and its configuration."""

    name: str
    config: RunConfig


def _short_names(task: str) -> dict[str, str]:
    """Names of task settings in folder names (``n_poles`` -> ``poles``); others as they are."""
    return {o.name: o.short for o in task_options(task)}


def paper_grid(task: str) -> dict[str, list[Any]]:
    """The published grid of `task` (a copy)."""
    if task not in PAPER_GRIDS:
        raise BadInput(f"no published grid for task {task!r}; known: {', '.join(PAPER_GRIDS)}")
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


def run_name(
    task: str,
    task_settings: Mapping[str, Any],
    train: Mapping[str, Any],
    x64: bool = False,
    *,
    defaults: Mapping[str, Any] | None = None,
    varied: Collection[str] = (),
) -> str:
    """Folder name of a run: ``key=value`` parts joined by ``_`` (see the module docstring). `train` holds
    training settings by name (`TrainSettings` fields; missing ones are at their defaults); `defaults`: the
    task's field defaults (found from `task` when None). A training setting added after the first release
    (`runs.config.ADDED`) at the value that means the earlier behaviour is named only when it is in
    `varied` (settings with several values in the grid), so that a sweep written by an earlier version keeps
    its folder names when it is continued with the earlier behaviour."""
    defaults = task_fields(task) if defaults is None else defaults
    train = {**DEFAULTS.values(), **train}
    short = _short_names(task)
    complexity = COMPLEXITY.get(task)
    parts = [f"method={train['method']}"]
    for k, v in task_settings.items():
        if k == complexity or _differs(v, defaults.get(k)):
            parts.append(f"{short.get(k, k)}={_format(v)}")
    parts.append(f"clip={train['clip']}")
    for k, v in train.items():
        if k in ADDED and v == ADDED[k] and k not in varied:
            continue
        if k not in _ALWAYS_NAMED and k != "epochs" and v != getattr(DEFAULTS, k):
            parts.append(f"{k}={_format(v)}")
    settings = "_".join(p.replace("/", "-").replace(" ", "") for p in parts)
    if len(settings) > MAX_SETTINGS_CHARS:  # a folder name may have 255 bytes: keep the start, name the rest by hash
        digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
        settings = f"{settings[: MAX_SETTINGS_CHARS - 16]}_h={digest}"
    return f"{settings}_seed={train['seed']}" + ("_x64" if x64 else "")


def unnamed_defaults(task: str, task_settings: Mapping[str, Sequence[Any]]) -> list[str]:
    """The task settings of a grid given only at their default value (the complexity axis aside): run names
    leave them out (so that extending a grid keeps its names), which a note should say."""
    defaults = task_fields(task)
    complexity = COMPLEXITY.get(task)
    return [
        f"{k}={_format(values[0])}"
        for k, values in task_settings.items()
        if k != complexity and len(values) == 1 and k in defaults and not _differs(values[0], defaults[k])
    ]


def expand(
    task: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    x64: bool = False,
    checkpoint_every: int = 1,
    snapshot_every: int | None = None,
) -> list[Run]:
    """All runs of the product of `grid` (setting -> values), task settings first, seeds last. Every run's
    configuration is made (and so checked) here.

    Raises:
        BadInput: for an unknown setting, an empty list of values, a bad value, or two runs with the same name.
    """
    recorded = recorded_settings(task)
    defaults = task_fields(task)
    fields = [*recorded, *(k for k in defaults if k not in recorded)]
    unknown = set(grid) - set(fields) - set(FIELDS)
    if unknown:
        raise BadInput(
            f"unknown settings for {task}: {', '.join(sorted(unknown))}; allowed: {', '.join([*fields, *FIELDS])}"
        )
    for k, values in grid.items():
        if len(values) == 0:
            raise BadInput(f"no values given for {k}")
    # Order of the product: task settings, then training settings, seed varying fastest.
    keys = [k for k in fields if k in grid] + [k for k in FIELDS if k in grid and k != "seed"]
    keys += ["seed"] if "seed" in grid else []
    varied = {k for k in keys if len(_unique(grid[k])) > 1}
    runs, seen = [], set()
    for values in itertools.product(*(_unique(grid[k]) for k in keys)):
        chosen = dict(zip(keys, values))
        task_settings = {**recorded, **{k: chosen[k] for k in fields if k in chosen}}
        config = RunConfig.create(
            task,
            task_settings,
            x64=x64,
            checkpoint_every=checkpoint_every,
            snapshot_every=snapshot_every,
            **{k: v for k, v in chosen.items() if k in FIELDS},
        )
        name = run_name(task, task_settings, config.train.values(), x64, defaults=defaults, varied=varied)
        if name in seen:
            raise BadInput(f"two runs of the grid would share the folder {name}")
        seen.add(name)
        runs.append(Run(name, config))
    return runs


def _unique(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out
