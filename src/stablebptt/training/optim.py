"""Optimizers and clipping of the published code, with Keras defaults (docs/concepts.md, training protocol)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..core.checks import check_choice, check_positive_number

KERAS_EPS = 1e-7
CLIP_MODES = ("none", "value", "norm")
# Where Adam adds epsilon: "keras" to the raw square root of v (the published code: an effective epsilon of
# eps / sqrt(1 - b2^t), 3e-6 at the first step), "optax" to the bias-corrected one (optax.adam).
ADAM_EPS_FORMS = ("keras", "optax")


class ScaleByAdamState(NamedTuple):
    """Step count and first and second moments (the layout of `optax.ScaleByAdamState`)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's own state does
    mu: Any
    nu: Any


def scale_by_keras_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = KERAS_EPS, *, keras: Any = True
) -> optax.GradientTransformation:
    """Adam's scaling as Keras computes it: ``m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t))``, which is
    ``lr_t * m / (sqrt(v) + eps)`` with ``lr_t = sqrt(1 - b2^t) / (1 - b1^t)``. With `keras` False (a bool or a
    traced one, e.g. one per run of a batch of runs) it is optax's form ``m_hat / (sqrt(v_hat) + eps)``."""

    def init_fn(params: optax.Params) -> ScaleByAdamState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update_fn(
        updates: optax.Updates, state: ScaleByAdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, ScaleByAdamState]:
        del params
        mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        count = jnp.asarray(optax.safe_increment(state.count))
        t = count.astype(jnp.float32)
        c1, c2 = 1 - b1**t, 1 - b2**t
        eps_t = jnp.where(keras, eps / jnp.sqrt(c2), eps)

        def scale(m: jax.Array, v: jax.Array) -> jax.Array:
            return (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + eps_t.astype(v.dtype))

        return jax.tree.map(scale, mu, nu), ScaleByAdamState(count, mu, nu)

    # Optax's protocol takes any state; this update is only ever given the state its own `init_fn` made.
    return optax.GradientTransformation(init_fn, update_fn)  # type: ignore[arg-type]


def keras_adam(lr: Any, *, keras: Any = True) -> optax.GradientTransformation:
    """Adam with Keras' defaults (b1 0.9, b2 0.999, eps 1e-7) and Keras' placement of epsilon (see
    `scale_by_keras_adam`)."""
    return optax.chain(scale_by_keras_adam(keras=keras), optax.scale_by_learning_rate(lr))


Optimizer = Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]  # learning rate -> optimizer


def _momentum(m: float) -> Optimizer:
    return lambda lr: optax.sgd(lr, momentum=m)


OPTIMIZERS: dict[str, Optimizer] = {
    "adam": lambda lr: optax.adam(lr, b1=0.9, b2=0.999, eps=KERAS_EPS),
    "sgd": optax.sgd,
    "momentum-0.8": _momentum(0.8),
    "momentum-0.9": _momentum(0.9),
    "momentum-0.95": _momentum(0.95),
    "adagrad": lambda lr: optax.adagrad(lr, initial_accumulator_value=0.1, eps=KERAS_EPS),
    "adadelta": lambda lr: optax.adadelta(lr, rho=0.95, eps=KERAS_EPS),
    "rmsprop": lambda lr: optax.rmsprop(lr, decay=0.9, eps=KERAS_EPS, eps_in_sqrt=False),
}


def make_optimizer(
    name: str = "adam", lr: float = 1e-3, clip: str = "none", clip_value: float = 1.0, adam_eps: str = "keras"
) -> optax.GradientTransformation:
    """Clipping of the update (``none``, ``value``: each entry to [-v, v], ``norm``: global norm to v), then
    the named optimizer with learning rate `lr`; for Adam, `adam_eps` is where epsilon is added (one of
    `ADAM_EPS_FORMS`). Every argument is checked."""
    check_choice("optimizer", name, tuple(OPTIMIZERS))
    check_choice("clip mode", clip, CLIP_MODES)
    check_choice("adam eps form", adam_eps, ADAM_EPS_FORMS)
    check_positive_number("learning rate", lr)
    check_positive_number("clip value", clip_value)
    return optimizer(name, lr, clip, clip_value, adam_eps)


def optimizer(name: str, lr: Any, clip: str, clip_value: Any, adam_eps: str = "keras") -> optax.GradientTransformation:
    """`make_optimizer` without the checks, for settings checked already; `lr` and `clip_value` may be traced
    arrays (one per run of a `jax.vmap`ped batch of runs)."""
    clipping = {
        "none": optax.identity,
        "value": lambda: optax.clip(clip_value),
        "norm": lambda: optax.clip_by_global_norm(clip_value),
    }[clip]()
    if name == "adam" and adam_eps == "keras":
        return optax.chain(clipping, keras_adam(lr))
    return optax.chain(clipping, OPTIMIZERS[name](lr))
