"""Optimizers and clipping of the published code, with Keras defaults (method.md §5)."""

from __future__ import annotations

from typing import Any

import optax

from ..core.checks import check_choice, check_positive_number

KERAS_EPS = 1e-7
CLIP_MODES = ("none", "value", "norm")


def _momentum(m: float):
    return lambda lr: optax.sgd(lr, momentum=m)


OPTIMIZERS = {
    "adam": lambda lr: optax.adam(lr, b1=0.9, b2=0.999, eps=KERAS_EPS),
    "sgd": lambda lr: optax.sgd(lr),
    "momentum-0.8": _momentum(0.8),
    "momentum-0.9": _momentum(0.9),
    "momentum-0.95": _momentum(0.95),
    "adagrad": lambda lr: optax.adagrad(lr, initial_accumulator_value=0.1, eps=KERAS_EPS),
    "adadelta": lambda lr: optax.adadelta(lr, rho=0.95, eps=KERAS_EPS),
    "rmsprop": lambda lr: optax.rmsprop(lr, decay=0.9, eps=KERAS_EPS, eps_in_sqrt=False),
}


def make_optimizer(
    name: str = "adam", lr: float = 1e-3, clip: str = "none", clip_value: float = 1.0
) -> optax.GradientTransformation:
    """Clipping of the update (``none``, ``value``: each entry to [-v, v], ``norm``: global norm to v), then
    the named optimizer with learning rate `lr`; every argument is checked."""
    check_choice("optimizer", name, tuple(OPTIMIZERS))
    check_choice("clip mode", clip, CLIP_MODES)
    check_positive_number("learning rate", lr)
    check_positive_number("clip value", clip_value)
    return optimizer(name, lr, clip, clip_value)


def optimizer(name: str, lr: Any, clip: str, clip_value: float) -> optax.GradientTransformation:
    """`make_optimizer` without the checks, for settings checked already; `lr` may be a traced array (one
    learning rate per run of a `jax.vmap`ped batch of runs)."""
    clipping = {
        "none": optax.identity,
        "value": lambda: optax.clip(clip_value),
        "norm": lambda: optax.clip_by_global_norm(clip_value),
    }[clip]()
    return optax.chain(clipping, OPTIMIZERS[name](lr))
