"""Core of the method: rollout, gradient-flow modes and the combined update.

The names below are imported on first use, so that `stablebptt.core.checks` (errors and argument checks) and
`stablebptt.core.methods` can be used without importing JAX (the command line's `status` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

if TYPE_CHECKING:
    from .checks import BadInput, BadType, check_truncation
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
        Column,
        Method,
        Mode,
        SignCombined,
        as_method,
        as_mode,
        canonical_method,
    )
    from .strategies import (
        AutoBackward,
        Autodiff,
        AutoVJP,
        Backward,
        BatchedVJP,
        Joint,
        NoRemat,
        ParamVJP,
        PerStepVJP,
        Remat,
        Segments,
        SqrtRemat,
        StatesRemat,
        TwoPass,
        as_backward,
        as_param_vjp,
        as_remat,
        check_backward,
        check_param_vjp,
        check_remat,
    )
    from .unroll import rollout

_HOME = {
    "checks": ("BadInput", "BadType", "check_truncation"),
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
        "Column",
        "Method",
        "Mode",
        "SignCombined",
        "as_method",
        "as_mode",
        "canonical_method",
    ),
    "strategies": (
        "AutoBackward",
        "Autodiff",
        "AutoVJP",
        "Backward",
        "BatchedVJP",
        "Joint",
        "NoRemat",
        "ParamVJP",
        "PerStepVJP",
        "Remat",
        "Segments",
        "SqrtRemat",
        "StatesRemat",
        "TwoPass",
        "as_backward",
        "as_param_vjp",
        "as_remat",
        "check_backward",
        "check_param_vjp",
        "check_remat",
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
    "AutoBackward",
    "AutoVJP",
    "Autodiff",
    "Backward",
    "BadInput",
    "BadType",
    "BatchedVJP",
    "Column",
    "Joint",
    "Method",
    "Mode",
    "NoRemat",
    "ParamVJP",
    "PerStepVJP",
    "Remat",
    "Segments",
    "SignCombined",
    "SqrtRemat",
    "StatesRemat",
    "TwoPass",
    "as_backward",
    "as_method",
    "as_mode",
    "as_param_vjp",
    "as_remat",
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
