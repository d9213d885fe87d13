"""The task interface every control problem implements."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax

PyTree = Any


class Task(eqx.Module):
    """A differentiable control problem: simulator, loss, data and a default controller.

    Subclasses are immutable (Equinox modules whose fields are static settings). States and controls are any
    pytrees of arrays (an array, a dict of fields, `mjx.Data`); their floating-point leaves carry gradients,
    other leaves (counters, flags) are carried through. Shapes are batched: the task decides the batch axis
    inside `step`, `loss` and `controller`; training splits the states of `sample` into mini-batches along the
    leading axis of every leaf.
    """

    name: eqx.AbstractClassVar[str]
    horizon: eqx.AbstractVar[int]

    @abc.abstractmethod
    def step(self, x: PyTree, c: PyTree) -> PyTree:
        """One simulator step on a batch of states and controls; returns `x`'s structure, shapes and dtypes."""

    @abc.abstractmethod
    def loss(self, states: PyTree, controls: PyTree) -> jax.Array:
        """Scalar loss of a time-major trajectory: each leaf of `states` ``(horizon + 1, batch, ...)``, of
        `controls` ``(horizon, batch, ...)``."""

    @abc.abstractmethod
    def sample(self, key: jax.Array, n: int) -> PyTree:
        """`n` initial states: a state pytree whose every leaf has leading axis `n`."""

    @abc.abstractmethod
    def init_controller(self, key: jax.Array) -> PyTree:
        """Parameters of the default controller (an Equinox module or any pytree)."""

    @abc.abstractmethod
    def controller(self, params: PyTree, x: PyTree) -> PyTree:
        """Controls (any pytree with a floating-point leaf) for a batch of states."""

    def observe(self, params: PyTree, x0: PyTree) -> PyTree:
        """Parameters after a non-gradient change that training makes after each optimizer step, from the
        mini-batch's initial states `x0` (e.g. running statistics of observations). Returns `params`'
        structure. The default changes nothing and costs nothing (training skips it)."""
        del x0
        return params

    def config(self) -> dict[str, Any]:
        """The task's settings as JSON-ready values (to rebuild it with ``type(task)(**config)``)."""
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
