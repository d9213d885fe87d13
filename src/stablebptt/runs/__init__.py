"""Run folders: the typed run configuration, the folder format and its only writer (`RunFolder`), run
checkpoints, the folder lock, atomic writes and fault points for tests.

    config = RunConfig.create("cartpole", {"n_poles": 2}, method="C", epochs=100)
    result = RunFolder("runs/c").start(config).run()    # a new run
    RunFolder("runs/c").resume(epochs=200).run()         # extend it (after a kill: resume())

The names below are imported on first use, so that reading a folder's state (`runs.state`, `stablebptt status`)
does not import JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_names

if TYPE_CHECKING:
    from .batch import default_batching, ensure_batch, plan_groups, train_sessions, train_together
    from .checkpoint import BadCheckpoint, Checkpoint, load_checkpoint, read_header, save_checkpoint
    from .config import RunConfig, config_hash, same_run
    from .folder import RunFolder, Session, use_precision
    from .io import CONFIG, METRICS_CSV, PARAMS
    from .lock import RunLocked
    from .state import CHECKPOINT, FIGURE, STATUS, read_record, read_status

_HOME = {
    "batch": (
        "default_batching",
        "ensure_batch",
        "plan_groups",
        "train_sessions",
        "train_together",
    ),
    "checkpoint": (
        "BadCheckpoint",
        "Checkpoint",
        "load_checkpoint",
        "read_header",
        "save_checkpoint",
    ),
    "config": (
        "RunConfig",
        "config_hash",
        "same_run",
    ),
    "folder": (
        "RunFolder",
        "Session",
        "use_precision",
    ),
    "io": (
        "CONFIG",
        "METRICS_CSV",
        "PARAMS",
        "SNAPSHOTS",
        "snapshots",
    ),
    "lock": ("RunLocked",),
    "state": (
        "CHECKPOINT",
        "FIGURE",
        "STATUS",
        "read_record",
        "read_status",
    ),
}
__getattr__, __dir__ = lazy_names(__name__, globals(), _HOME)

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "FIGURE",
    "METRICS_CSV",
    "PARAMS",
    "SNAPSHOTS",
    "STATUS",
    "BadCheckpoint",
    "Checkpoint",
    "RunConfig",
    "RunFolder",
    "RunLocked",
    "Session",
    "config_hash",
    "default_batching",
    "ensure_batch",
    "load_checkpoint",
    "plan_groups",
    "read_header",
    "read_record",
    "read_status",
    "same_run",
    "save_checkpoint",
    "snapshots",
    "train_sessions",
    "train_together",
    "use_precision",
]
