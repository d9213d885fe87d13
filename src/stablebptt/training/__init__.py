"""Training loop, optimizers and run folders."""

from .optim import CLIP_MODES, OPTIMIZERS, make_optimizer
from .train import METRICS, Data, TrainResult, TrainState, evaluate, make_data, make_epoch, train

__all__ = [
    "CLIP_MODES", "Data", "METRICS", "OPTIMIZERS", "TrainResult", "TrainState", "evaluate", "make_data",
    "make_epoch", "make_optimizer", "train",
]
