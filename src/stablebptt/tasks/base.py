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
        """One simulator step ``x_{n+1} = S(x_n, c_n)`` on a batch of states and controls.

        Args:
            x: the states x_n, each leaf ``(batch, ...)``.
            c: the controls c_n from `controller`, each leaf ``(batch, ...)``.

        Returns:
            The states x_{n+1}: `x`'s structure, shapes and dtypes.
        """

    @abc.abstractmethod
    def loss(self, states: PyTree, controls: PyTree) -> jax.Array:
        """Loss of a batch of time-major trajectories, as returned by `stablebptt.rollout`.

        Args:
            states: each leaf ``(horizon + 1, batch, ...)``; ``states[0]`` holds the initial states.
            controls: each leaf ``(horizon, batch, ...)``.

        Returns:
            A scalar (shape ``()``), averaged over the batch.
        """

    @abc.abstractmethod
    def sample(self, key: jax.Array, n: int) -> PyTree:
        """Draw initial states.

        Args:
            key: a JAX PRNG key.
            n: how many states.

        Returns:
            A state pytree whose every leaf has leading axis `n`: ``(n, ...)``.
        """

    @abc.abstractmethod
    def init_controller(self, key: jax.Array) -> PyTree:
        """Parameters of the default controller (an Equinox module or any pytree), initialised from `key`."""

    @abc.abstractmethod
    def controller(self, params: PyTree, x: PyTree) -> PyTree:
        """Controls for a batch of states.

        Args:
            params: the controller's parameters, as from `init_controller`.
            x: the states, each leaf ``(batch, ...)``.

        Returns:
            The controls, any pytree with a floating-point leaf, each leaf ``(batch, ...)``.
        """

    def observe(self, params: PyTree, x0: PyTree) -> PyTree:
        """Parameters after a non-gradient change that training makes after each optimizer step, from the
        mini-batch's initial states `x0` (each leaf ``(batch, ...)``; e.g. running statistics of observations).
        Returns `params`' structure. The default changes nothing and costs nothing (training skips it)."""
        del x0
        return params

    def config(self) -> dict[str, Any]:
        """The task's settings as JSON-ready values (to rebuild it with ``type(task)(**config)``)."""
        import dataclasses

        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
