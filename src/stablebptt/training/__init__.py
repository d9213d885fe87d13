"""Training: the settings of a run, the train loop (one compiled program per epoch) and optimizers. Pure
JAX; run folders on disk are `stablebptt.runs`."""

from .epoch import Data, Dataset, Protocol, TrainState, UpdateStep, evaluate, make_data, make_epoch, metric_names
from .optim import CLIP_MODES, OPTIMIZERS, make_optimizer
from .settings import TrainSettings
from .stream import Stream
from .train import METRICS, SKIPPED_LIMIT, Trainer, TrainResult, train

__all__ = [
    "CLIP_MODES",
    "METRICS",
    "OPTIMIZERS",
    "SKIPPED_LIMIT",
    "Data",
    "Dataset",
    "Protocol",
    "Stream",
    "TrainResult",
    "TrainSettings",
    "TrainState",
    "Trainer",
    "UpdateStep",
    "evaluate",
    "make_data",
    "make_epoch",
    "make_optimizer",
    "metric_names",
    "train",
]
