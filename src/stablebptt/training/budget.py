"""The memory an epoch needs, estimated from shapes before anything is compiled, and notes on options that do
nothing.

A long horizon without ``remat`` makes XLA ask for more memory than the machine has (``--horizon 10000000``
asks for 381 GB), and that is found only after seconds of compiling, with a run folder made. `check_memory`
refuses such a run in one line, in well under a second: `estimate` traces one step of the task with
`jax.eval_shape` (no compilation, no arrays) and counts what an epoch's program must hold at least:

- an update stores, per step of the horizon, the mini-batch's states and controls and their loss cotangents
  (``2 (s + c)``), and the values the reverse pass needs from one step of controller and simulator (``r``: the
  leaves of their VJP closure, the parameters excluded). Without rematerialisation that is ``H (r + 2 (s + c))``;
  with segments of K steps (``remat``, see `core.strategies.Remat.segment`) ``H 2 (s + c) + K r``;
- the epoch's losses on the training and test sets store the states of a whole rollout of the larger set,
  ``(H + 1) s_eval``;
- the data, the parameters, their update and the optimizer state, for the whole epoch.

The estimate is the last term plus the larger of the first two: a lower bound (XLA holds more: measured on the
CPU for cartpole, 1.8 to 3 times as much, see `tests/training/test_budget.py`), so that a run that fits is
never refused. It is compared with the memory of the device the run will use: the accelerator's
``bytes_limit``, or the machine's physical memory for the CPU.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core import trees
from ..core.checks import Argument, BadArgument, plural
from ..core.strategies import SqrtRemat, StatesRemat, as_remat
from ..tasks import Task
from .settings import TrainSettings

PyTree = Any
GB = 1e9
# The dtypes that float64 mode (``x64``) widens, and their widths in each mode.
_WIDTHS = {"float32": (4, 8), "float64": (4, 8), "complex64": (8, 16), "complex128": (8, 16)}


class Sizes(NamedTuple):
    """Bytes of the values an epoch stores, from their shapes (see the module docstring)."""

    state: int  # one mini-batch of states
    control: int  # its controls
    residual: int  # what the reverse pass keeps of one step of controller and simulator (parameters excluded)
    eval_state: int  # the states of the larger of the training and test sets
    fixed: int  # data, parameters, update and optimizer state

    def update(self, horizon: int, segment: int | None) -> int:
        """At least what one update stores at `horizon` with rematerialisation segments of `segment` steps
        (None: none)."""
        trajectory = 2 * horizon * (self.state + self.control)  # states, controls and their cotangents
        steps = horizon if segment is None else min(segment, horizon)
        return trajectory + steps * self.residual

    def evaluation(self, horizon: int) -> int:
        """At least what the loss of the larger data set stores: its states at every step."""
        return (horizon + 1) * self.eval_state

    def total(self, horizon: int, segment: int | None) -> int:
        return self.fixed + max(self.update(horizon, segment), self.evaluation(horizon))


class Estimate(NamedTuple):
    """Bytes an epoch needs at least (`total`), and its parts."""

    update: int
    evaluation: int
    fixed: int

    @property
    def total(self) -> int:
        return self.fixed + max(self.update, self.evaluation)


def _nbytes(tree: PyTree, x64: bool) -> int:
    total = 0
    for leaf in jax.tree.leaves(tree):
        dtype = jnp.dtype(leaf.dtype)
        width = _WIDTHS[dtype.name][x64] if dtype.name in _WIDTHS else dtype.itemsize
        total += math.prod(leaf.shape) * width
    return total


def _is_float(leaf: Any) -> bool:
    """An inexact array or the shape of one (`eqx.filter_eval_shape` gives `jax.ShapeDtypeStruct`s)."""
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jnp.issubdtype(leaf.dtype, jnp.inexact)
    return eqx.is_inexact_array(leaf)


def sizes(task: Task, settings: TrainSettings, *, x64: bool = False) -> Sizes:
    """The `Sizes` of `task` trained with `settings` (float widths of float64 mode with `x64`), from shapes
    only: `jax.eval_shape` of sampling, initialisation and one step's VJP; nothing is compiled or allocated.
    An error of the task's own functions propagates."""
    key = jax.random.PRNGKey(0)
    params = eqx.filter_eval_shape(task.init_controller, key)
    diff, static = eqx.partition(params, _is_float)

    batch = jax.eval_shape(lambda k: task.sample(k, settings.batch_size), key)
    state = _nbytes(batch, x64)
    per_state = state / settings.batch_size  # every leaf of a task's states has one entry per state

    def one_step(d: PyTree, x: PyTree) -> tuple[PyTree, list[jax.Array]]:
        """The control and the per-step leaves of the VJP of one step with respect to the parameters and the
        state's floating-point leaves (leaves that are the parameters themselves are left out, as the adjoint
        sweep hoists them)."""
        x_f, x_i = trees.split(x)

        def f(d: PyTree, x_f: PyTree) -> tuple[PyTree, PyTree]:
            x = trees.merge(x_f, x_i)
            c = task.controller(eqx.combine(d, static), x)
            return trees.split(task.step(x, c))[0], c

        _, vjp, control = jax.vjp(f, d, x_f, has_aux=True)
        invariant = {id(leaf) for leaf in jax.tree.leaves(d)}
        return control, [leaf for leaf in jax.tree.leaves(vjp) if id(leaf) not in invariant]

    control, residual = jax.eval_shape(one_step, diff, batch)
    tx = settings.transform()
    opt_state = jax.eval_shape(tx.init, diff)
    data = round(per_state * (settings.n_train + settings.n_test))
    return Sizes(
        state=state,
        control=_nbytes(control, x64),
        residual=_nbytes(residual, x64),
        eval_state=round(per_state * max(settings.n_train, settings.n_test)),
        fixed=data + 2 * _nbytes(diff, x64) + _nbytes(opt_state, x64),
    )


def estimate(task: Task, settings: TrainSettings, *, x64: bool = False) -> Estimate:
    """At least the bytes one epoch of `task` with `settings` holds (see the module docstring)."""
    size = sizes(task, settings, x64=x64)
    segment = as_remat(settings.remat).segment(task.horizon)
    return Estimate(size.update(task.horizon, segment), size.evaluation(task.horizon), size.fixed)


def memory_limit() -> tuple[int, str] | None:
    """``(bytes, what)``: the memory of JAX's default device (its ``bytes_limit``), or for the CPU the machine's
    physical memory; None where neither is known."""
    try:
        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.platform.upper()} memory"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return (int(total), "physical memory") if total > 0 else None


def _gb(n: float) -> str:
    value = n / GB
    return f"{value:.3g} GB" if value < 100 else f"{value:,.0f} GB"


def _largest_horizon(size: Sizes, remat: Any, limit: int, horizon: int) -> int:
    """The largest horizon below `horizon` whose estimate with `remat` fits in `limit` (0 if none)."""
    low, high = 0, horizon  # fits(low) (0 by convention), not fits(high)
    while high - low > 1:
        mid = (low + high) // 2
        if size.total(mid, as_remat(remat).segment(mid)) <= limit:
            low = mid
        else:
            high = mid
    return low


def _refusal(task: Task, settings: TrainSettings, size: Sizes, limit: int, where: str) -> BadArgument:
    """Why a run of `task` with `settings` cannot fit in `limit` bytes, and which arguments would make it fit."""
    horizon = task.horizon
    segment = as_remat(settings.remat).segment(horizon)
    update, evaluation = size.update(horizon, segment), size.evaluation(horizon)
    current = Argument("remat", settings.remat)
    remat = "" if segment is None else " with $current"
    head = (
        f"horizon {horizon}{remat} needs at least {_gb(size.total(horizon, segment))} of memory (estimated: "
        f"{_gb(update)} for an update, {_gb(evaluation)} for the loss of "
        f"{max(settings.n_train, settings.n_test)} states), more than the {_gb(limit)} of {where}"
    )
    names = {"current": current, "horizon": None, "batch_size": None, "n_train": None, "n_test": None}
    for strategy in (SqrtRemat(), StatesRemat()):  # a remat that saves more than the current one and fits
        option, seg = strategy.spelling, strategy.segment(horizon)
        if (segment is None or seg < segment) and size.total(horizon, seg) <= limit:
            return BadArgument(
                f"{head}; use $remat (at least {_gb(size.total(horizon, seg))}) or a smaller $horizon or $batch_size",
                remat=option,
                **names,
            )
    best = settings.remat if segment is not None and segment <= SqrtRemat().segment(horizon) else "sqrt"
    segment = as_remat(best).segment(horizon)
    largest = _largest_horizon(size, best, limit, horizon)
    smaller = f"$horizon (at most about {_round_down(largest):,})" if largest else "$horizon"
    if size.evaluation(horizon) > limit:
        smaller += " or $n_train/$n_test"
    elif size.update(horizon, segment) > limit:
        smaller += " or $batch_size"
    if best == settings.remat:
        return BadArgument(f"{head}; use a smaller {smaller}", **names)
    return BadArgument(
        f"{head}; even with $remat it needs {_gb(size.total(horizon, segment))}: use a smaller {smaller}",
        remat=best,
        **names,
    )


def _round_down(n: int) -> int:
    """`n` rounded down to two significant digits."""
    scale = 10 ** max(len(str(n)) - 2, 0)
    return n // scale * scale


def check_memory(
    task: Task, settings: TrainSettings, *, x64: bool = False, limit: int | None = None, where: str | None = None
) -> None:
    """Refuse a run whose epoch cannot fit in memory, before anything is compiled or created.

    Args:
        task: the run's task.
        settings: the run's training settings.
        x64: whether it computes in float64.
        limit: bytes available (default: `memory_limit`, the memory of JAX's default device).
        where: what `limit` is, for the message.

    Raises:
        BadInput: one line with the estimate and the limit, suggesting ``--remat sqrt`` (or, with it, a smaller
            horizon or data set), when `estimate` exceeds the limit. A task whose functions fail when traced is
            not refused here: training reports that with its own message.
    """
    if limit is None:
        found = memory_limit()
        if found is None:
            return
        limit, machine = found
        where = where or machine
    try:
        size = sizes(task, settings, x64=x64)
    except Exception:  # noqa: BLE001 - the task's own error, reported by training with its own message
        return
    if size.total(task.horizon, as_remat(settings.remat).segment(task.horizon)) > limit:
        raise _refusal(task, settings, size, limit, where or "memory")


def notes(task: Task, settings: TrainSettings) -> list[str]:
    """One line for each gradient option that has no effect at the task's horizon: a truncation that is not
    below the horizon (it cuts nothing: full backpropagation through time), and a rematerialisation segment
    that is not (the one segment is the whole rollout: no memory saved)."""
    horizon = task.horizon
    below = f"; use a K below {horizon}" if horizon > 1 else ""
    found = []
    if settings.truncation is not None and settings.truncation >= horizon:
        found.append(
            f"truncation {settings.truncation} has no effect at horizon {horizon}: it cuts the gradient "
            f"every {settings.truncation} steps, so nothing is cut (full BPTT){below}"
        )
    segment = as_remat(settings.remat).segment(horizon)
    if segment is not None and segment >= horizon:
        what = (
            f"remat {settings.remat}"
            if isinstance(settings.remat, int)
            else f"remat {settings.remat} (segments of {plural(segment, 'step')})"
        )
        found.append(
            f"{what} has no effect at horizon {horizon}: the one segment is the whole rollout, so no "
            f"memory is saved{below}"
        )
    return found
