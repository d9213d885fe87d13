"""One training run written to a folder: config.json, metrics.csv (rewritten each epoch), params.eqx, loss.png."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .. import __version__
from ..tasks import make_task
from .io import CONFIG, METRICS_CSV, PARAMS, read_json, save_params, write_csv, write_json
from .train import METRICS, ProgressFn, TrainResult, train

TRAIN_KEYS = ("method", "epochs", "batch_size", "lr", "optimizer", "clip", "clip_value", "seed", "n_train", "n_test")


def run_config(task_name: str, task_settings: dict[str, Any], x64: bool = False, **train_settings: Any) -> dict:
    """Everything needed to rerun: the task and its settings, the training settings, precision, version."""
    unknown = set(train_settings) - set(TRAIN_KEYS)
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
    return {"task": task_name, "task_settings": dict(task_settings), "train": dict(train_settings),
            "x64": bool(x64), "version": __version__}


def prepare_run_dir(out: str | Path, config: dict, *, force: bool = False) -> Path:
    """Create `out` for a new run. A folder holding another run (a config.json) is refused unless `force`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; choose another path")
    if (out / CONFIG).exists():
        if not force:
            raise ValueError(f"--out {out} already holds a run; choose another folder or pass --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, config)
    return out


def train_to_dir(out: str | Path, config: dict, progress_fn: ProgressFn | None = None) -> TrainResult:
    """Train the run described by `config` (from `run_config`) and write its files into `out`."""
    from ..experiments.plotting import plot_curves

    out = Path(out)
    task = make_task(config["task"], **config["task_settings"])
    rows: list[dict[str, float]] = []

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        rows.append(row)
        write_csv(out / METRICS_CSV, METRICS, rows)
        if progress_fn is not None:
            progress_fn(epoch, row)

    result = train(task, progress_fn=on_epoch, **config["train"])
    save_params(out / PARAMS, result.params)
    curves = {config["train"]["method"]: {k: [r[k] for r in rows] for k in ("test_loss", "train_loss")}}
    plot_curves(curves, out / "loss.png", title=_title(config), keys=("test_loss", "train_loss"))
    return result


def load_config(run_dir: str | Path) -> dict:
    config = read_json(Path(run_dir) / CONFIG)
    if not isinstance(config, dict) or not {"task", "task_settings", "train"} <= set(config):
        raise ValueError(f"{Path(run_dir) / CONFIG} is not a stablebptt run config")
    return config


def _title(config: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in config["task_settings"].items())
    return f"{config['task']} ({settings}), method {config['train']['method']}"
