"""Core of the method: rollout, gradient-flow modes and the combined update.

The names below are imported on first use, so that `stablebptt.core.checks` (errors and argument checks) and
`stablebptt.core.methods` can be used without importing JAX (the command line's `status` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

if TYPE_CHECKING:
    from .checks import BadInput, BadType, check_backward, check_param_vjp, check_remat, check_truncation
    from .combination import combine, combine_stats, combined_update, sign_agreement, tree_norm
    from .gradients import value_and_grad, value_and_grads
    from .methods import (
        COMBINED,
        METHODS,
        MODIFIED,
        NETWORK,
        REGULAR,
        RULES,
        STOPPED,
        Method,
        as_method,
        canonical_method,
    )
    from .unroll import rollout

_HOME = {
    "checks": ("BadInput", "BadType", "check_backward", "check_param_vjp", "check_remat", "check_truncation"),
    "combination": ("combine", "combine_stats", "combined_update", "sign_agreement", "tree_norm"),
    "gradients": ("value_and_grad", "value_and_grads"),
    "methods": (
        "COMBINED",
        "METHODS",
        "MODIFIED",
        "NETWORK",
        "REGULAR",
        "RULES",
        "STOPPED",
        "Method",
        "as_method",
        "canonical_method",
    ),
    "unroll": ("rollout",),
}
__getattr__, __dir__ = lazy_names(__name__, globals(), _HOME)

__all__ = [
    "COMBINED",
    "METHODS",
    "MODIFIED",
    "NETWORK",
    "REGULAR",
    "RULES",
    "STOPPED",
    "BadInput",
    "BadType",
    "Method",
    "as_method",
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
