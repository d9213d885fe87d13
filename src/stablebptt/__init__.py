"""stablebptt: stabilised backpropagation through time for controllers of differentiable simulators.

Implements Schnell & Thuerey, "Stabilizing Backpropagation Through Time to Learn Complex Physics" (ICLR 2024).
"""

from . import tasks
from .core import METHODS, BadInput, BadType, canonical_method, combine, rollout, sign_agreement, value_and_grad

__version__ = "0.2.0"

__all__ = [
    "METHODS",
    "BadInput",
    "BadType",
    "canonical_method",
    "combine",
    "rollout",
    "sign_agreement",
    "tasks",
    "value_and_grad",
]
