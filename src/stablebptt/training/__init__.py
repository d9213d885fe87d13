"""Training: the settings of a run, the train loop (one compiled program per epoch) and optimizers. Pure
JAX; run folders on disk are `stablebptt.runs`."""

from .optim import CLIP_MODES, OPTIMIZERS, make_optimizer
from .settings import TrainSettings
from .train import (
    METRICS,
    SKIPPED_LIMIT,
    Data,
    Trainer,
    TrainResult,
    TrainState,
    evaluate,
    make_data,
    make_epoch,
    train,
)

__all__ = [
    "CLIP_MODES",
    "METRICS",
    "OPTIMIZERS",
    "SKIPPED_LIMIT",
    "Data",
    "TrainResult",
    "TrainSettings",
    "TrainState",
    "Trainer",
    "evaluate",
    "make_data",
    "make_epoch",
    "make_optimizer",
    "train",
]
