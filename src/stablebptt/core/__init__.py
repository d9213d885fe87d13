"""Core of the method: rollout, gradient-flow modes and the combined update."""

from .combine import combine, combine_stats, sign_agreement, tree_norm
from .gradients import value_and_grad
from .methods import METHODS, canonical_method
from .rollout import rollout

__all__ = [
    "METHODS", "canonical_method", "combine", "combine_stats", "rollout", "sign_agreement", "tree_norm",
    "value_and_grad",
]
