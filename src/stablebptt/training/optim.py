"""Optimizers, clipping and learning-rate schedules: the published code's (Keras defaults, constant learning
rate; docs/concepts.md, training protocol) and what other recipes use (Brax's APG: Adam's betas (0.7, 0.95), an
exponentially decaying learning rate, clipping by global norm and by value)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..core.checks import check_choice, check_positive_number

KERAS_EPS = 1e-7
# none; value: each entry to [-clip_value, clip_value]; norm: global norm to clip_value; both: global norm to
# clip_norm, then each entry to clip_value (Brax's APG: optax.clip after its own global-norm clip)
CLIP_MODES = ("none", "value", "norm", "both")
PAPER_CLIP_MODES = ("none", "value", "norm")  # the paper's grid
# Learning-rate schedules over update counts (`learning_rate`), each optionally after a linear warmup.
SCHEDULES = ("constant", "exponential", "cosine", "linear")
DECAYING = ("cosine", "linear")  # over `decay_steps` updates, by default the whole run (its length matters)
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


def keras_adam(
    lr: Any, *, keras: Any = True, b1: float = 0.9, b2: float = 0.999, eps: float = KERAS_EPS
) -> optax.GradientTransformation:
    """Adam (by default with Keras' defaults b1 0.9, b2 0.999, eps 1e-7) with Keras' placement of epsilon, or
    optax's where `keras` is False (see `scale_by_keras_adam`); `lr` a number, a traced array or a schedule."""
    return optax.chain(scale_by_keras_adam(b1, b2, eps, keras=keras), optax.scale_by_learning_rate(lr))


def learning_rate(
    lr: Any,
    schedule: str = "constant",
    *,
    decay_rate: float = 0.997,
    transition_steps: int = 1,
    warmup_steps: int = 0,
    decay_steps: int = 1,
    final_lr_fraction: float = 0.0,
) -> optax.ScalarOrSchedule:
    """The learning rate `lr` (a number or a traced array) as Optax schedules it over update counts.

    - "constant": `lr` itself (then the program is the one of a plain number);
    - "exponential": ``lr * decay_rate ** (count / transition_steps)`` (`optax.exponential_decay`; Brax's APG
      uses decay_rate 0.997 per update);
    - "cosine": from `lr` down to ``final_lr_fraction * lr`` over `decay_steps` updates
      (`optax.cosine_decay_schedule`);
    - "linear": the same, along a straight line (`optax.linear_schedule`; DiffRL's SHAC decays to 1e-5 so).

    With ``warmup_steps > 0`` the rate first rises linearly from 0 to `lr` over that many updates, and the
    schedule starts after it (`optax.join_schedules`). Arguments are not checked here (`TrainSettings` does).
    """
    if schedule == "constant" and not warmup_steps:
        return lr
    main = {
        "constant": lambda: optax.constant_schedule(lr),
        "exponential": lambda: optax.exponential_decay(lr, transition_steps, decay_rate),
        "cosine": lambda: optax.cosine_decay_schedule(lr, decay_steps, alpha=final_lr_fraction),
        "linear": lambda: optax.linear_schedule(lr, final_lr_fraction * lr, decay_steps),
    }[schedule]()
    if not warmup_steps:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), main], [warmup_steps])


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
    name: str = "adam",
    lr: float = 1e-3,
    clip: str = "none",
    clip_value: float = 1.0,
    adam_eps: str = "keras",
    *,
    clip_norm: float = 1.0,
) -> optax.GradientTransformation:
    """Clipping of the update (``none``, ``value``: each entry to [-v, v], ``norm``: global norm to v,
    ``both``: global norm to `clip_norm`, then each entry to v), then the named optimizer with learning rate
    `lr`; for Adam, `adam_eps` is where epsilon is added (one of `ADAM_EPS_FORMS`). Every argument is checked.
    For schedules and Adam's betas, see `TrainSettings` (`TrainSettings.optimizer`)."""
    check_choice("optimizer", name, tuple(OPTIMIZERS))
    check_choice("clip mode", clip, CLIP_MODES)
    check_choice("adam eps form", adam_eps, ADAM_EPS_FORMS)
    check_positive_number("learning rate", lr)
    check_positive_number("clip value", clip_value)
    check_positive_number("clip norm", clip_norm)
    return optimizer(name, lr, clip, clip_value, adam_eps, clip_norm=clip_norm)


def clipping(mode: str | jax.Array, value: Any, norm: Any = 1.0) -> optax.GradientTransformation:
    """Clipping of the update by `mode`, one of `CLIP_MODES` or a traced index into it (one per run of a batch
    of runs: then every mode is computed and the run's is selected). `value` and `norm` may be traced."""
    by_norm, by_value = optax.clip_by_global_norm(norm), optax.clip(value)

    def both(updates: optax.Updates, params: optax.Params | None = None) -> optax.Updates:
        clipped = by_norm.update(updates, optax.EmptyState())[0]
        return by_value.update(clipped, optax.EmptyState())[0]

    # every mode is stateless with an EmptyState, so that the optimizer state has one structure whatever the mode
    # (a run of a batched group and the same run alone read each other's checkpoints)
    modes = {
        "none": optax.identity,
        "value": lambda: optax.clip(value),
        "norm": lambda: optax.clip_by_global_norm(value),
        "both": lambda: optax.stateless(both),
    }
    if isinstance(mode, str):
        return modes[mode]()
    candidates = [modes[m]() for m in CLIP_MODES]

    def update_fn(
        updates: optax.Updates, state: optax.OptState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, optax.OptState]:
        del params
        clipped = [tx.update(updates, optax.EmptyState())[0] for tx in candidates]
        return jax.tree.map(lambda *xs: jnp.stack(xs)[mode], *clipped), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def optimizer(
    name: str,
    lr: Any,
    clip: str | jax.Array,
    clip_value: Any,
    adam_eps: str | jax.Array = "keras",
    *,
    clip_norm: Any = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = KERAS_EPS,
) -> optax.GradientTransformation:
    """`make_optimizer` without the checks, for settings checked already. `lr` is a number, a traced array or
    a schedule (`learning_rate`); `clip` a mode or a traced index (`clipping`); `adam_eps` a form of
    `ADAM_EPS_FORMS` or a traced bool (True: Keras'); `b1`, `b2`, `eps` are Adam's (ignored by the others)."""
    clip_tx = clipping(clip, clip_value, clip_norm)
    keras = adam_eps == "keras" if isinstance(adam_eps, str) else adam_eps
    if name == "adam" and not (isinstance(keras, bool) and not keras):
        return optax.chain(clip_tx, keras_adam(lr, keras=keras, b1=b1, b2=b2, eps=eps))
    if name == "adam":
        return optax.chain(clip_tx, optax.adam(lr, b1=b1, b2=b2, eps=eps))
    return optax.chain(clip_tx, OPTIMIZERS[name](lr))
