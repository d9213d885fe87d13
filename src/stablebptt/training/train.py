"""Training a task's controller with any gradient-flow mode: one compiled program per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core import canonical_method, rollout, value_and_grad
from ..tasks import Task
from ..tasks.validate import check_positive_int
from .optim import make_optimizer

PyTree = Any
METRICS = ("epoch", "loss", "train_loss", "test_loss", "grad_norm", "cosine", "kept_fraction", "epoch_time")
ProgressFn = Callable[[int, dict[str, float]], None]


class Data(NamedTuple):
    """Initial states: `train` ``(n_train, ...)`` and `test` ``(n_test, ...)``."""

    train: jax.Array
    test: jax.Array


class TrainState(NamedTuple):
    """What changes from epoch to epoch: the differentiable parameters and the optimizer state."""

    params: PyTree
    opt_state: optax.OptState


class TrainResult(NamedTuple):
    params: PyTree
    metrics: list[dict[str, float]]


def make_data(task: Task, key: jax.Array, n_train: int = 256, n_test: int = 256) -> Data:
    key_train, key_test = jax.random.split(key)
    return Data(task.sample(key_train, n_train), task.sample(key_test, n_test))


def evaluate(task: Task, params: PyTree, x0: jax.Array) -> jax.Array:
    """The task's loss of `params` on the initial states `x0`, all at once."""
    states, controls = rollout(task.step, task.controller, params, x0, task.horizon)
    return task.loss(states, controls)


def make_epoch(
    task: Task,
    method: str,
    tx: optax.GradientTransformation,
    static: PyTree,
    batch_size: int,
    **gradient_options: Any,
) -> Callable[[TrainState, Data], tuple[TrainState, dict[str, jax.Array]]]:
    """A pure function for one epoch: updates on mini-batches in fixed order (a `lax.scan`, no host round
    trips), then the loss on the whole training and test sets. `static` holds the non-array part of the
    parameters. Remainder states that do not fill a mini-batch are not used for updates."""
    vg = value_and_grad(task.loss, task.step, task.controller, task.horizon, method, **gradient_options)
    combined = canonical_method(method) == "C"

    def update(state: TrainState, batch: jax.Array):
        value, grads, info = vg(eqx.combine(state.params, static), batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state), (value, info)

    def epoch(state: TrainState, data: Data):
        n_batches = data.train.shape[0] // batch_size
        batches = data.train[: n_batches * batch_size].reshape(n_batches, batch_size, *data.train.shape[1:])
        state, (values, infos) = jax.lax.scan(update, state, batches)
        params = eqx.combine(state.params, static)
        nan = jnp.full((), jnp.nan, values.dtype)
        metrics = {
            "loss": jnp.mean(values),
            "train_loss": evaluate(task, params, data.train),
            "test_loss": evaluate(task, params, data.test),
            "grad_norm": jnp.mean(infos["grad_norm"]),
            "cosine": jnp.mean(infos["cosine"]) if combined else nan,
            "kept_fraction": jnp.mean(infos["kept_fraction"]) if combined else nan,
        }
        return state, metrics

    return epoch


def train(
    task: Task,
    method: str = "C",
    *,
    epochs: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-3,
    optimizer: str = "adam",
    clip: str = "none",
    clip_value: float = 1.0,
    seed: int = 42,
    n_train: int = 256,
    n_test: int = 256,
    params: PyTree | None = None,
    progress_fn: ProgressFn | None = None,
    **gradient_options: Any,
) -> TrainResult:
    """Train the task's controller with `method` and return the parameters and per-epoch metrics.

    Data and initialisation come from `seed` (the same for every method, so runs are comparable). Each epoch
    runs ``n_train // batch_size`` updates in a fixed order, then evaluates on the train and test sets.

    Args:
        task: the control problem.
        method: R, M, S, N or C.
        epochs, batch_size, lr, optimizer, clip, clip_value, seed, n_train, n_test: the protocol of method.md §5.
        params: start from these parameters instead of the task's default controller.
        progress_fn: called after each epoch as ``progress_fn(epoch, metrics)``.
        **gradient_options: passed to `value_and_grad` (``backward``, ``truncation``).

    Returns:
        ``TrainResult(params, metrics)``; `metrics` has one dict per epoch with the keys of `METRICS`
        (cosine and kept_fraction are NaN for methods other than C; epoch_time in seconds).
    """
    canonical_method(method)
    check_positive_int("epochs", epochs)
    check_positive_int("batch size", batch_size)
    check_positive_int("n_train", n_train)
    check_positive_int("n_test", n_test)
    if batch_size > n_train:
        raise ValueError(f"batch size {batch_size} is larger than the training set ({n_train} states)")
    tx = make_optimizer(optimizer, lr, clip, clip_value)
    key_data, key_init = jax.random.split(jax.random.PRNGKey(seed))
    data = make_data(task, key_data, n_train, n_test)
    if params is None:
        params = task.init_controller(key_init)
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    state = TrainState(diff, tx.init(diff))
    epoch_fn = jax.jit(make_epoch(task, method, tx, static, batch_size, **gradient_options))

    metrics: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        state, values = epoch_fn(state, data)
        row = {"epoch": epoch, **{k: float(v) for k, v in jax.device_get(values).items()}}
        row["epoch_time"] = time.perf_counter() - start
        metrics.append(row)
        if progress_fn is not None:
            progress_fn(epoch, row)
    return TrainResult(eqx.combine(state.params, static), metrics)


def finite(row: dict[str, float]) -> bool:
    return bool(np.isfinite(row["loss"]) and np.isfinite(row["grad_norm"]))
