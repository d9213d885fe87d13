"""One epoch of the dataset protocol (the paper's): updates on mini-batches of fixed initial states in a fixed
order, then the losses on the training and test sets; and the parts every protocol shares (`apply_update`,
`epoch_metrics`, the data). `train` runs these epochs; `stream` is the other protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from ..core import as_method, rollout, trees, value_and_grad
from ..core.checks import BadInput, BadType
from ..core.gradients import ValueAndGrad
from ..tasks import Task

PyTree = Any
# One epoch: (state, data) -> (state, metrics), the metrics scalars
Epoch = Callable[["TrainState", "Data"], tuple["TrainState", dict[str, jax.Array]]]


class Data(NamedTuple):
    """Initial states, pytrees as `Task.sample` returns them: every leaf of `train` has leading axis
    ``n_train``, every leaf of `test` ``n_test``."""

    train: PyTree
    test: PyTree


class TrainState(NamedTuple):
    """What changes from epoch to epoch: the differentiable parameters and the optimizer state."""

    params: PyTree
    opt_state: optax.OptState


def make_data(task: Task, key: jax.Array, n_train: int = 256, n_test: int = 256) -> Data:
    """``n_train`` and ``n_test`` initial states from `task.sample`; an error it raises, or a result that is not
    a pytree of arrays, is a one-line `BadInput` naming it."""
    key_train, key_test = jax.random.split(key)
    return Data(sample_states(task, key_train, n_train), sample_states(task, key_test, n_test))


def sample_states(task: Task, key: jax.Array, n: int) -> PyTree:
    """``task.sample(key, n)``, checked to be a pytree of arrays (`SimulatorFault` if it raises, `BadType` for a
    leaf that is not an array, e.g. a list of numbers)."""
    what = f"{type(task).__name__}.sample(key, {n})"
    states = trees.guard("sampler", task.sample, lambda key, n: f"called as {what}")(key, n)
    leaves = jax.tree_util.tree_flatten_with_path(states)[0]
    if not leaves:
        raise BadInput(
            f"{what} returned no arrays (got {states!r:.100}); allowed: a pytree of arrays with leading axis {n}"
        )
    for path, leaf in leaves:
        if not isinstance(leaf, jax.Array | np.ndarray):
            where = jax.tree_util.keystr(path) or "the root"
            raise BadType(
                f"{what} returned a leaf at {where} that is not an array ({type(leaf).__name__}); "
                f"allowed: a pytree of arrays with leading axis {n} (e.g. jnp.asarray(...))"
            )
    return states


def user_loss(task: Task) -> Callable[[PyTree, PyTree], jax.Array]:
    """`task.loss` wrapped so that an error it raises is a one-line `SimulatorFault` naming it (trace time
    only)."""
    return trees.guard("loss", task.loss, trees.loss_inputs)


def check_data(task: Task, data: Data, n_train: int, n_test: int) -> None:
    """Every leaf of the sampled states must have the requested number of states on its leading axis."""
    for part, n in (("train", n_train), ("test", n_test)):
        what = f"{type(task).__name__}.sample(key, {n})"
        size = trees.leading_size(getattr(data, part), what)
        if size != n:
            raise BadInput(
                f"{what} returned {size} states on the leading axis instead of {n}; "
                f"got {trees.describe(getattr(data, part))}"
            )


def minibatches(states: PyTree, batch_size: int) -> PyTree:
    """The first ``n // batch_size * batch_size`` states as ``(n // batch_size, batch_size, ...)`` per leaf."""
    n_batches = trees.leading_size(states, "the training states") // batch_size
    return jax.tree.map(lambda a: a[: n_batches * batch_size].reshape(n_batches, batch_size, *a.shape[1:]), states)


def evaluate(task: Task, params: PyTree, x0: PyTree) -> jax.Array:
    """The task's loss of `params` on the initial states `x0`, all at once."""
    states, controls = rollout(task.step, task.controller, params, x0, task.horizon)
    return user_loss(task)(states, controls)


def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` where `mask` (NaN when nothing is masked in)."""
    return jnp.sum(jnp.where(mask, values, 0)) / jnp.sum(mask)


def make_epoch(
    task: Task,
    method: str,
    tx: optax.GradientTransformation,
    static: PyTree,
    batch_size: int,
    *,
    skip_nonfinite: bool = False,
    regular_nonfinite: str = "zero",
    **gradient_options: Any,
) -> Epoch:
    """A pure function for one epoch: updates on mini-batches in fixed order (a `lax.scan`, no host round
    trips), then the loss on the whole training and test sets. `static` holds the non-array part of the
    parameters. Remainder states that do not fill a mini-batch are not used for updates.

    The metrics include ``nonfinite``, the number of updates whose loss, update, new parameters or (for C)
    g_M were not finite, or (for C with ``regular_nonfinite="stop"``) g_R; ``regular_nonfinite``, for C, the
    number of entries of g_R that were not finite, summed over the epoch's updates (with "zero" they count as
    disagreement and the run goes on); ``grad_size``, the squared L2 norm of the update averaged over the
    epoch's updates (the published ``grad_size``). With `skip_nonfinite` updates that are not finite leave
    parameters and optimizer state unchanged (like `optax.apply_if_finite`) and are left out of the epoch's
    means.
    """
    vg = value_and_grad(user_loss(task), task.step, task.controller, task.horizon, method, **gradient_options)
    combined = as_method(method).combines
    return epoch_program(
        task,
        vg,
        tx,
        static,
        batch_size,
        skip_nonfinite=skip_nonfinite,
        combined=combined,
        stop_regular=regular_nonfinite == "stop",
    )


def epoch_program(
    task: Task,
    vg: ValueAndGrad,
    tx: optax.GradientTransformation,
    static: PyTree,
    batch_size: int,
    *,
    skip_nonfinite: bool,
    combined: bool | jax.Array,
    stop_regular: bool | jax.Array,
) -> Epoch:
    """`make_epoch` for an update function `vg` (``(params, x0) -> (value, update, info)`` as
    `core.value_and_grad` returns it). `combined` and `stop_regular` may be traced booleans (one per run of a
    batch of runs with different methods): the C diagnostics in `info` (``cosine``, ``kept_fraction``,
    ``regular_nonfinite``, ``modified_finite``) are used only where `combined`. After each optimizer step the
    parameters go through `Task.observe` where the task defines it."""

    def update(
        state: TrainState, batch: PyTree
    ) -> tuple[TrainState, tuple[jax.Array, dict[str, jax.Array], jax.Array]]:
        value, grads, info = vg(eqx.combine(state.params, static), batch)
        new, ok = apply_update(
            task, tx, static, state, batch, value, grads, info, skip_nonfinite, combined=combined, stop=stop_regular
        )
        return new, (value, info, ok)

    def epoch(state: TrainState, data: Data) -> tuple[TrainState, dict[str, jax.Array]]:
        state, (values, infos, ok) = jax.lax.scan(update, state, minibatches(data.train, batch_size))
        params = eqx.combine(state.params, static)
        return state, epoch_metrics(task, params, data, values, infos, ok, skip_nonfinite, combined)

    return epoch


def apply_update(
    task: Task,
    tx: optax.GradientTransformation,
    static: PyTree,
    state: TrainState,
    batch: PyTree,
    value: jax.Array,
    grads: PyTree,
    info: dict[str, jax.Array],
    skip_nonfinite: bool,
    *,
    combined: bool | jax.Array,
    stop: bool | jax.Array,
) -> tuple[TrainState, jax.Array]:
    """One optimizer step from an update (`core.value_and_grad`'s ``(value, grads, info)`` on the initial states
    `batch`), then `Task.observe` where the task defines it. Returns the new state and whether the step was
    finite (for C also g_M, and g_R where `stop`); with `skip_nonfinite` a step that was not leaves `state`
    unchanged."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if type(task).observe is not Task.observe:  # a task's own non-gradient update after each step
        params = eqx.partition(task.observe(eqx.combine(params, static), batch), eqx.is_inexact_array)[0]
    ok = _all_finite((value, grads, params, info["grad_norm"]))
    if "modified_finite" in info:
        bad_regular = stop & (info["regular_nonfinite"] > 0)
        ok = ok & ~(combined & (~info["modified_finite"] | bad_regular))
    new = TrainState(params, opt_state)
    if skip_nonfinite:
        new = otu.tree_where(ok, new, state)
    return new, ok


def epoch_metrics(
    task: Task,
    params: PyTree,
    data: Data,
    values: jax.Array,
    infos: dict[str, jax.Array],
    ok: jax.Array,
    skip_nonfinite: bool,
    combined: bool | jax.Array,
) -> dict[str, jax.Array]:
    """An epoch's metrics (`METRICS`, without epoch and epoch_time, plus ``nonfinite``) from its updates'
    losses, infos and finiteness (each with the updates on the leading axis) and the losses of `params` on
    the training and test states."""
    used = ok if skip_nonfinite else jnp.ones_like(ok)
    nan = jnp.full((), jnp.nan, values.dtype)
    c_stats = dict.fromkeys(("cosine", "kept_fraction", "regular_nonfinite"), nan)
    if "cosine" in infos:  # C's diagnostics, for the runs that are C
        c_stats = {
            "cosine": _masked_mean(infos["cosine"], used),
            "kept_fraction": _masked_mean(infos["kept_fraction"], used),
            "regular_nonfinite": jnp.sum(infos["regular_nonfinite"]).astype(values.dtype),
        }
        c_stats = {k: jnp.where(combined, v, nan) for k, v in c_stats.items()}
    return {
        "loss": _masked_mean(values, used),
        "train_loss": evaluate(task, params, data.train),
        "test_loss": evaluate(task, params, data.test),
        "grad_norm": _masked_mean(infos["grad_norm"], used),
        "grad_size": _masked_mean(infos["grad_norm"] ** 2, used),
        **c_stats,
        "nonfinite": jnp.sum(~ok),
        "skipped": jnp.sum(~used),
    }
