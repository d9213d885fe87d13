"""Core of the method: rollout, gradient-flow modes and the combined update."""

from .checks import BadInput, BadType, check_backward, check_param_vjp, check_remat, check_truncation
from .combine import combine, combine_stats, sign_agreement, tree_norm
from .gradients import combined_update, value_and_grad, value_and_grads
from .methods import METHODS, canonical_method
from .rollout import rollout

__all__ = [
    "METHODS",
    "BadInput",
    "BadType",
    "canonical_method",
    "check_backward",
    "check_param_vjp",
    "check_remat",
    "check_truncation",
    "combine",
    "combine_stats",
    "combined_update",
    "rollout",
    "sign_agreement",
    "tree_norm",
    "value_and_grad",
    "value_and_grads",
]
