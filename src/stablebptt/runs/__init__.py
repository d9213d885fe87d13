"""Run folders: the typed run configuration, the folder format and its only writer (`RunFolder`), run
checkpoints, the folder lock, atomic writes and fault points for tests.

    config = RunConfig.create("cartpole", {"n_poles": 2}, method="C", epochs=100)
    result = RunFolder("runs/c").start(config).run()    # a new run
    RunFolder("runs/c").resume(epochs=200).run()         # extend it (after a kill: resume())
"""

from .batch import default_batching, ensure_batch, plan_groups
from .checkpoint import BadCheckpoint, Checkpoint, load_checkpoint, read_header, save_checkpoint
from .config import RunConfig, config_hash, same_run
from .folder import CHECKPOINT, FIGURE, STATUS, RunFolder, Session, use_precision
from .io import CONFIG, METRICS_CSV, PARAMS
from .lock import RunLocked

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "FIGURE",
    "METRICS_CSV",
    "PARAMS",
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
    "same_run",
    "save_checkpoint",
    "use_precision",
]
