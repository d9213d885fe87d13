"""Figures and summary tables of a sweep folder, finished or still running.

`write_report(sweep_dir)` reads every run folder (``config.json``, ``status.json``, ``metrics.csv``, any of
them possibly missing or partial) and the runs planned in ``sweep.json``, and writes:

- ``sweep.png``: the paper-style figure, one panel per complexity level (poles, rc, target), smoothed test loss
  over epochs on a log axis, one colour per method (R, M, C, S), one line style per clipping mode, median over
  seeds with a min-max band where there are several (``sweep-clip=MODE.png`` per mode as well when several);
- ``summary.csv`` / ``summary.md``: status, epochs done, final and best test loss per run, and per
  configuration (runs differing only in seed) the median, min and max over seeds.

A run whose files cannot be read (a corrupt ``config.json``, ``status.json`` or ``metrics.csv``) is
``unreadable``: listed with the reason, counted as such, and left out of every statistic and figure.
`write_report` refuses a sweep with unreadable runs (writing nothing) unless `allow_partial`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from ..core.checks import BadArgument, BadInput, first_line, plural
from ..runs.io import CONFIG, METRICS_CSV, atomic_write_bytes, check_names, read_csv, read_json
from ..runs.state import MANIFEST, STATES, read_status

LINESTYLES = {"none": "-", "value": "--", "norm": ":"}
# The published figures (docs/reproduction.md): a 30-epoch trailing mean padded with the first value, and these
# y-limits.
PUBLISHED_WINDOW = 30
RUN_COLUMNS = (
    "status",
    "epochs_done",
    "epochs",
    "final_test_loss",
    "best_test_loss",
    "best_epoch",
    "final_train_loss",
    "seconds_per_epoch",
)
CONFIG_COLUMNS = (
    "runs",
    "complete",
    "diverged",
    "failed",
    "unreadable",
    "epochs_done",
    "final_test_median",
    "final_test_min",
    "final_test_max",
    "best_test_median",
    "best_test_min",
)
# Every state a run of a sweep can be in (RunRecord.status), in the order summaries list them.


class Unreadable(BadArgument):
    """Runs of a sweep whose files cannot be read."""


@dataclass
class RunRecord:
    """What a run folder holds right now. `status`: one of `STATES`: complete, running, interrupted (its
    writer is gone: rerun the sweep or resume it), diverged, failed, unreadable (`problem` says why) or pending
    (not started). `epoch`: epochs done as its status.json records them (None if it has none)."""

    name: str
    config: dict[str, Any]
    status: str
    rows: list[dict[str, float]] = field(default_factory=list)
    problem: str = ""
    epoch: int | None = None
    message: str = ""
    provenance: list[Any] | None = None  # a record's (`runs.provenance`); None for a run folder read as is

    def settings(self) -> dict[str, Any]:
        train = {k: v for k, v in self.config.get("train", {}).items() if k != "epochs"}
        return {**self.config.get("task_settings", {}), **train}

    @property
    def epochs(self) -> int | None:
        return self.config.get("train", {}).get("epochs")

    def curve(self, key: str = "test_loss") -> np.ndarray:
        return np.asarray([r.get(key, math.nan) for r in self.rows], dtype=float)


def load_runs(sweep_dir: str | Path) -> list[RunRecord]:
    """Every run of the sweep: folders with a config.json and the runs planned in sweep.json."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise BadInput(f"{sweep_dir} is not a folder")
    planned: dict[str, dict[str, Any]] = {}
    manifest = sweep_dir / MANIFEST
    if manifest.exists():
        planned = dict(read_json(manifest).get("runs", {}))
    records = {
        path.name: read_run(path, planned.get(path.name))
        for path in sorted(p for p in sweep_dir.iterdir() if (p / CONFIG).is_file())
    }
    for name, config in planned.items():
        if name not in records:
            records[name] = RunRecord(name, config, "pending")
    if not records:
        raise BadInput(f"{sweep_dir} holds no runs (no sweep.json and no run folders with a config.json)")
    return [records[k] for k in sorted(records, key=lambda n: _sort_key(records[n]))]


def read_run(path: str | Path, planned: dict[str, Any] | None = None) -> RunRecord:
    """What the run folder at `path` holds (`planned`: its configuration in the sweep's sweep.json, used when
    its own config.json cannot be read); a file that cannot be read makes it ``unreadable``, never an error."""
    path = Path(path)
    try:
        config = read_json(path / CONFIG)
        if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
            raise BadInput(f"{path / CONFIG} is not a stablebptt run config")
        record = read_status(path)
        rows = _rows(path / METRICS_CSV)
    except (BadInput, OSError) as e:
        problem = _one_line(e).replace(f"{path}{os.sep}", "")  # the run is named in the row
        return RunRecord(path.name, planned or {}, "unreadable", problem=problem)
    if record is None:
        return RunRecord(path.name, config, "running" if rows else "pending", rows)
    epoch = record.get("epoch")
    return RunRecord(
        path.name,
        config,
        record["status"],
        rows,
        epoch=epoch if isinstance(epoch, int) else None,
        message=str(record.get("message", "")),
    )


def _one_line(error: BaseException) -> str:
    return f"{error.filename}: {error.strerror}" if isinstance(error, OSError) else first_line(error)


def _rows(path: Path) -> list[dict[str, float]]:
    """The rows of a run's metrics.csv (none if it has none yet); `BadInput` if it cannot be read."""
    if not path.exists():
        return []
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        rows = read_csv(path)
    except (ValueError, TypeError, csv.Error) as e:
        raise BadInput(f"{path} cannot be read as metrics ({_one_line(e)})") from None
    if not {"epoch", "test_loss"} <= set(header):
        raise BadInput(f"{path} cannot be read as metrics (its header has no epoch and test_loss columns)")
    if any(None in r for r in rows):
        raise BadInput(f"{path} cannot be read as metrics (a row has more cells than the header)")
    seen, unique = set(), []
    for r in rows:  # a row per epoch (a file written by an older version may repeat one)
        if r.get("epoch") not in seen:
            seen.add(r.get("epoch"))
            unique.append(r)
    return unique


def _sort_key(run: RunRecord) -> tuple[str, ...]:
    return tuple(str(v) if not isinstance(v, (int, float)) else f"{v:020.10f}" for v in run.settings().values())


def varying(runs: Sequence[RunRecord]) -> list[str]:
    """The settings whose value differs between runs, in config order."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.settings() if k not in keys]
    return [k for k in keys if len({repr(r.settings().get(k)) for r in runs}) > 1]


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def run_summary(run: RunRecord) -> dict[str, Any]:
    test = run.curve("test_loss")
    finite = np.isfinite(test)
    row: dict[str, Any] = {"status": run.status, "epochs_done": int(finite.sum()), "epochs": run.epochs}
    if finite.any():
        last = np.flatnonzero(finite)[-1]
        best = int(np.nanargmin(np.where(finite, test, np.nan)))
        times = _finite(run.curve("epoch_time"))
        row.update(
            final_test_loss=float(test[last]),
            best_test_loss=float(test[best]),
            best_epoch=int(run.rows[best].get("epoch", best + 1)),
            final_train_loss=float(run.rows[last].get("train_loss", math.nan)),
            seconds_per_epoch=float(np.median(times)) if times.size else math.nan,
        )
    return row


def summaries(runs: Sequence[RunRecord]) -> tuple[list[str], list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """Per-run and per-configuration rows, with the setting columns of each."""
    keys = varying(runs)
    per_run = [
        {
            "run": r.name,
            **{k: r.settings().get(k) for k in keys},
            **run_summary(r),
            **({"problem": r.problem} if r.problem else {}),
        }
        for r in runs
    ]
    config_keys = [k for k in keys if k != "seed"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in per_run:
        groups.setdefault(tuple(repr(row[k]) for k in config_keys), []).append(row)
    per_config = []
    for rows in groups.values():
        final = np.asarray([r.get("final_test_loss", math.nan) for r in rows], dtype=float)
        best = np.asarray([r.get("best_test_loss", math.nan) for r in rows], dtype=float)
        per_config.append(
            {
                **{k: rows[0][k] for k in config_keys},
                "runs": len(rows),
                "complete": sum(r["status"] == "complete" for r in rows),
                "diverged": sum(r["status"] == "diverged" for r in rows),
                "failed": sum(r["status"] == "failed" for r in rows),
                "unreadable": sum(r["status"] == "unreadable" for r in rows),
                "epochs_done": min(r["epochs_done"] for r in rows),
                "final_test_median": _stat(np.median, final),
                "final_test_min": _stat(np.min, final),
                "final_test_max": _stat(np.max, final),
                "best_test_median": _stat(np.median, best),
                "best_test_min": _stat(np.min, best),
            }
        )
    run_columns = ["run", *keys, *RUN_COLUMNS, *(["problem"] if any(r.problem for r in runs) else [])]
    return run_columns, per_run, [*config_keys, *CONFIG_COLUMNS], per_config


def _stat(fn: Callable[[np.ndarray], Any], values: np.ndarray) -> float:
    values = _finite(values)
    return float(fn(values)) if values.size else math.nan


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_csv_cell(r.get(c)) for c in columns])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value) if isinstance(value, float) else value


def markdown(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(runs: Sequence[RunRecord], out: Path, title: str = "") -> None:
    run_columns, per_run, config_columns, per_config = summaries(runs)
    atomic_write_bytes(out / "summary.csv", _csv(run_columns, per_run).encode())
    text = [
        f"# {title or 'Sweep summary'}",
        "",
        count_line(runs) + ".",
        "",
        "## Per configuration (over seeds)",
        "",
        markdown(config_columns, per_config),
        "## Per run",
        "",
        markdown(run_columns, per_run),
    ]
    atomic_write_bytes(out / "summary.md", "\n".join(text).encode())


def load_folder(path: str | Path) -> list[RunRecord]:
    """The runs of a run folder (one) or of a sweep or comparison folder (`load_runs`)."""
    path = Path(path)
    if path.is_dir() and (path / CONFIG).is_file():
        return [read_run(path)]
    if path.is_dir() and not (path / MANIFEST).exists() and not any((p / CONFIG).is_file() for p in path.iterdir()):
        raise BadInput(f"{path} holds no stablebptt run: give a run folder, or a sweep or comparison folder")
    return load_runs(path)


def status_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run, ordered by state (`STATES`) then name: ``run``, ``state``, ``epochs_done``,
    ``epochs``, ``last_test_loss`` (the last finite one; NaN if none) and ``note`` (why it is unreadable,
    failed or interrupted)."""
    rows = []
    for r in runs:
        test = _finite(r.curve("test_loss"))
        done = len(r.rows) - (r.status == "diverged" and bool(r.rows))  # its last row is the epoch that diverged
        rows.append(
            {
                "run": r.name,
                "state": r.status,
                "epochs_done": done,
                "epochs": r.epochs,
                "last_test_loss": float(test[-1]) if test.size else math.nan,
                "note": r.problem or (r.message if r.status in ("failed", "interrupted", "diverged") else ""),
            }
        )
    return sorted(rows, key=lambda row: (STATES.index(row["state"]), row["run"]))


def count_line(runs: Sequence[RunRecord]) -> str:
    """``4 runs: 3 complete, 1 unreadable``: the runs by state (in `STATES` order)."""
    counts = {s: sum(r.status == s for r in runs) for s in STATES}
    return f"{plural(len(runs), 'run')}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def smooth(values: np.ndarray, window: int, *, pad_first: bool = True) -> np.ndarray:
    """Trailing running mean over `window` epochs (NaNs ignored; NaN where none is finite). With `pad_first`
    (the published plots) the first ``window - 1`` epochs are averaged with copies of the first value, so that
    every point is a mean over `window` values; without, over the epochs there are."""
    if window <= 1 or values.size == 0:
        return values
    if pad_first:
        return smooth(np.concatenate([np.full(window - 1, values[0]), values]), window, pad_first=False)[window - 1 :]
    finite = np.isfinite(values)
    sums = np.cumsum(np.where(finite, values, 0.0))
    counts = np.cumsum(finite)
    lo = np.maximum(np.arange(values.size) - window, -1)
    s = sums - np.where(lo >= 0, sums[np.maximum(lo, 0)], 0.0)
    c = counts - np.where(lo >= 0, counts[np.maximum(lo, 0)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _panel_key(task: str, runs: Sequence[RunRecord]) -> str | None:
    from .grid import COMPLEXITY  # here: reading runs (`stablebptt status`) does not need the tasks

    keys = varying(runs)
    key = COMPLEXITY.get(task)
    if key in keys:
        return key
    task_keys = [k for k in keys if k in runs[0].config.get("task_settings", {})]
    return task_keys[0] if task_keys else None


def default_window(epochs: int) -> int:
    """The smoothing window for runs of `epochs` epochs: the published 30 epochs, less for short runs (a tenth
    of them), so that a short sweep is not flattened."""
    return max(1, min(PUBLISHED_WINDOW, epochs // 10))


def plot_sweep(
    runs: Sequence[RunRecord],
    path: str | Path,
    *,
    key: str = "test_loss",
    window: int | None = None,
    title: str = "",
    ylim: tuple[float, float] | Literal["published"] | None = "published",
) -> None:
    """The paper-style figure of `runs` (see the module docstring). `window`: smoothing (default
    `default_window` of the longest run); `ylim`: the y-limits, "published" for the published ones of a
    built-in task when they hold every curve's median (else matplotlib's), None for matplotlib's."""
    import matplotlib.pyplot as plt

    from ..runs.plotting import method_style, save_figure
    from .grid import COMPLEXITY, HARDER_WHEN_SMALLER, PAPER

    runs = [r for r in runs if r.rows]
    if not runs:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.text(0.5, 0.5, "no epochs finished yet", ha="center", va="center")
        ax.set_axis_off()
        save_figure(fig, path)
        return
    task = runs[0].config.get("task", "")
    panel_key = _panel_key(task, runs)
    line_keys = sorted(
        (k for k in varying(runs) if k not in ("seed", panel_key)),
        key=lambda k: ("method", "clip").index(k) if k in ("method", "clip") else 2,
    )
    panels: dict[Any, list[RunRecord]] = {}
    for r in runs:
        panels.setdefault(r.settings().get(panel_key) if panel_key else None, []).append(r)
    longest = max(len(r.rows) for r in runs)
    window = window if window is not None else default_window(longest)
    if ylim == "published":
        ylim = PAPER[task].ylim if key == "test_loss" and task in PAPER else None
    lowest, highest = math.inf, -math.inf
    values = np.concatenate([np.ravel(r.curve(key)) for r in runs] or [np.zeros(0)])
    # a log scale unless some loss is negative (minus a reward); on it zeros (a float32 floor) are left out
    log = not np.any(values[np.isfinite(values)] < 0)
    n = len(panels)
    cols = min(n, 4)
    rows_n = math.ceil(n / cols)
    size = (6.0, 4.0) if n == 1 else (3.6 * cols, 3.0 * rows_n)
    fig, axes = plt.subplots(rows_n, cols, figsize=size, squeeze=False, sharex=True)
    for ax, (level, members) in zip(
        axes.flat, sorted(panels.items(), key=lambda kv: _order(kv[0]), reverse=panel_key in HARDER_WHEN_SMALLER)
    ):
        lines: dict[tuple[str, ...], list[RunRecord]] = {}
        for r in members:
            lines.setdefault(tuple(repr(r.settings().get(k)) for k in line_keys), []).append(r)
        for group in sorted(lines.values(), key=lambda g: _line_order(g[0].settings())):
            s = group[0].settings()
            curves = np.full((len(group), max(len(r.rows) for r in group)), np.nan)
            for i, r in enumerate(group):
                y = r.curve(key)
                curves[i, : y.size] = smooth(np.where(y > 0, y, np.nan) if log else y, window)
            x = np.arange(1, curves.shape[1] + 1)
            with np.errstate(all="ignore"), _quiet():
                median = np.nanmedian(curves, axis=0)
            finite = median[np.isfinite(median)]
            if finite.size:
                lowest, highest = min(lowest, float(finite.min())), max(highest, float(finite.max()))
            method: Any = s.get("method")
            clip: Any = s.get("clip")
            color = method_style(method)[0] if isinstance(method, str) else None
            label = " ".join(_label(k, s.get(k)) for k in line_keys) or str(s.get("method"))
            ax.plot(x, median, LINESTYLES.get(clip, "-"), color=color, label=label, lw=1.2)
            if len(group) > 1:
                with np.errstate(all="ignore"), _quiet():
                    ax.fill_between(
                        x, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), color=color, alpha=0.15, lw=0
                    )
        fixed = COMPLEXITY.get(task)
        if panel_key:
            ax.set_title(_label(panel_key, level))
        elif fixed is not None and fixed in members[0].config.get("task_settings", {}):
            ax.set_title(_label(fixed, members[0].config["task_settings"][fixed]))
        else:
            ax.set_title(task)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("epoch")
    for ax in axes.flat[:n]:
        ax.set_yscale("log" if log and lowest > 0 else "linear")  # linear for losses that are negative (-reward)
    if ylim is not None and ylim[0] <= lowest and highest <= ylim[1]:
        for ax in axes.flat[:n]:
            ax.set_ylim(*ylim)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    axes[0, 0].set_ylabel(key.replace("_", " ") + (f" (mean over {window} epochs)" if window > 1 else ""))
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    save_figure(fig, path)


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._w.__exit__(kind, error, traceback)


_METHOD_ORDER = "RMCSN"


def _line_order(settings: dict[str, Any]) -> tuple[int, int, str]:
    method = str(settings.get("method"))
    clip = str(settings.get("clip"))
    return (_METHOD_ORDER.find(method) % 10, list(LINESTYLES).index(clip) if clip in LINESTYLES else 9, repr(settings))


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _label(key: str, value: Any) -> str:
    """``poles=2`` for a setting (its short name, `tasks.SHORT_NAMES`), the rule's label for a method (``R
    regular``, `runs.plotting.method_style`)."""
    from ..tasks import SHORT_NAMES  # here: reading runs (`stablebptt status`) does not need the tasks

    if key == "method" and isinstance(value, str):
        from ..runs.plotting import method_style

        return method_style(value)[1]
    short = {**SHORT_NAMES, "method": ""}.get(key, key)
    value = f"{value:g}" if isinstance(value, float) else value
    return f"{value}" if not short else f"{short}={value}"


def write_report(
    sweep_dir: str | Path, out: str | Path | None = None, *, window: int | None = None, allow_partial: bool = False
) -> list[Path]:
    """Write ``summary.csv``, ``summary.md``, ``sweep.png`` (and one figure per clipping mode when there are
    several) for the sweep in `sweep_dir` into `out` (default: `sweep_dir`); returns the figure paths.

    Raises:
        BadInput: the sweep has unreadable runs (nothing is written; with `allow_partial` they are listed as
            unreadable and left out of the statistics and figures).
    """
    runs = load_runs(sweep_dir)
    unreadable = [r for r in runs if r.status == "unreadable"]
    if unreadable and not allow_partial:
        first = unreadable[0]
        more = f" (and {plural(len(unreadable) - 1, 'other run')})" if len(unreadable) > 1 else ""
        raise Unreadable(
            f"{plural(len(unreadable), 'run')} of {len(runs)} cannot be read: {first.name}: "
            f"{first.problem}{more}; nothing was written; pass $allow_partial to write the summary "
            "and figures without them",
            allow_partial=True,
        )
    out = Path(out) if out is not None else Path(sweep_dir)
    check_names(out)
    out.mkdir(parents=True, exist_ok=True)
    task = runs[0].config.get("task", "")
    write_summary(runs, out, title=f"Sweep {Path(sweep_dir).name} ({task})")
    figures = [out / "sweep.png"]
    seeds = len({r.settings().get("seed") for r in runs})
    over = f" (median over {seeds} seeds, min-max band)" if seeds > 1 else ""
    plot_sweep(runs, figures[0], window=window, title=f"{task}: test loss{over}")
    clips = sorted({clip for r in runs if (clip := r.settings().get("clip")) is not None})
    if len(clips) > 1:
        for clip in clips:
            figures.append(out / f"sweep-clip={clip}.png")
            plot_sweep(
                [r for r in runs if r.settings().get("clip") == clip],
                figures[-1],
                window=window,
                title=f"{task}: test loss, clip {clip}{over}",
            )
    return figures
