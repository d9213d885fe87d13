"""The task interface every control problem implements."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax

PyTree = Any


class Task(eqx.Module):
    """A differentiable control problem: simulator, loss, data and a default controller.

    Subclasses are immutable (Equinox modules whose fields are static settings). Shapes are batched:
    the task decides the batch axis, the core library never assumes one.
    """

    name: eqx.AbstractClassVar[str]
    horizon: eqx.AbstractVar[int]

    @abc.abstractmethod
    def step(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """One simulator step on a batch of states and controls."""

    @abc.abstractmethod
    def loss(self, states: jax.Array, controls: jax.Array) -> jax.Array:
        """Scalar loss of a time-major trajectory ``states (horizon + 1, batch, ...)``, ``controls (horizon, batch, ...)``."""

    @abc.abstractmethod
    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """`n` initial states drawn per method.md, shape ``(n, ...)``."""

    @abc.abstractmethod
    def init_controller(self, key: jax.Array) -> PyTree:
        """Parameters of the default controller (an Equinox module or any pytree)."""

    @abc.abstractmethod
    def controller(self, params: PyTree, x: jax.Array) -> jax.Array:
        """Controls for a batch of states."""

    def config(self) -> dict[str, Any]:
        """The task's settings as JSON-ready values (to rebuild it with ``type(task)(**config)``)."""
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
