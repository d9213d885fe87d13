"""Controller networks with the published initialisation (Glorot-uniform kernels, zero biases)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp


def glorot_linear(in_size: int, out_size: int, *, key: jax.Array, zero_kernel: bool = False) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` with a Glorot-uniform (or zero) kernel and a zero bias."""
    layer = eqx.nn.Linear(in_size, out_size, key=key)
    limit = jnp.sqrt(6.0 / (in_size + out_size))
    weight = jax.random.uniform(key, (out_size, in_size), minval=-limit, maxval=limit)
    if zero_kernel:
        weight = jnp.zeros_like(weight)
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, jnp.zeros((out_size,))))


class MLP(eqx.Module):
    """Dense network on a flattened input: hidden tanh layers, linear output.

    Maps one unbatched input of any shape to a vector of `out_size` (vmap it over a batch).
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden: Sequence[int] = (100, 100),
        *,
        key: jax.Array,
        zero_final_kernel: bool = True,
        activation: Callable[[jax.Array], jax.Array] = jnp.tanh,
    ):
        sizes = (in_size, *hidden, out_size)
        keys = jax.random.split(key, len(sizes) - 1)
        last = len(sizes) - 2
        self.layers = tuple(
            glorot_linear(a, b, key=k, zero_kernel=zero_final_kernel and i == last)
            for i, (a, b, k) in enumerate(zip(sizes[:-1], sizes[1:], keys))
        )
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jnp.ravel(x)
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)
