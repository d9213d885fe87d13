"""Controller networks with the published initialisation (Glorot-uniform kernels, zero biases), DiffRL's critic
(`NormedMLP`) and running statistics of inputs (`Normalizer`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .core.checks import BadInput


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

    Maps one unbatched input of any shape ``(...)`` with `in_size` entries to a vector ``(out_size,)`` (vmap it
    over a batch: ``(batch, ...) -> (batch, out_size)``).
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
    ) -> None:
        """Glorot-uniform kernels, zero biases.

        Args:
            in_size: number of entries of one input (the size of its flattened shape).
            out_size: length of the output vector.
            hidden: widths of the hidden layers.
            key: a JAX PRNG key for the kernels.
            zero_final_kernel: start the output layer's kernel at zero (the published runs' choice).
            activation: the elementwise activation of the hidden layers.
        """
        sizes = (in_size, *hidden, out_size)
        keys = jax.random.split(key, len(sizes) - 1)
        last = len(sizes) - 2
        self.layers = tuple(
            glorot_linear(a, b, key=k, zero_kernel=zero_final_kernel and i == last)
            for i, (a, b, k) in enumerate(zip(sizes[:-1], sizes[1:], keys))
        )
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(...) -> (out_size,)`` for one input with `in_size` entries."""
        h = jnp.ravel(x)
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)


class NormedMLP(eqx.Module):
    """Dense network with a LayerNorm after each hidden layer's activation (``Linear -> activation -> LayerNorm``),
    linear output: DiffRL's ``CriticMLP``. Orthogonal kernels scaled by `gain` (``nn.init.orthogonal_``), zero
    biases, LayerNorms starting at scale 1 and offset 0 (eps 1e-5, PyTorch's).

    Maps one unbatched input of any shape ``(...)`` with `in_size` entries to ``(out_size,)``.
    """

    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.LayerNorm, ...]
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden: Sequence[int] = (64, 64),
        *,
        key: jax.Array,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.elu,
        gain: float = 2.0**0.5,
    ) -> None:
        sizes = (in_size, *hidden, out_size)
        keys = jax.random.split(key, len(sizes) - 1)
        orthogonal = jax.nn.initializers.orthogonal(scale=gain)

        def linear(a: int, b: int, k: jax.Array) -> eqx.nn.Linear:
            layer = eqx.nn.Linear(a, b, key=k)
            return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (orthogonal(k, (b, a)), jnp.zeros((b,))))

        self.layers = tuple(linear(a, b, k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.norms = tuple(eqx.nn.LayerNorm(width, eps=1e-5) for width in hidden)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(...) -> (out_size,)`` for one input with `in_size` entries."""
        h = jnp.ravel(x)
        for layer, norm in zip(self.layers[:-1], self.norms):
            h = norm(self.activation(layer(h)))
        return self.layers[-1](h)


def glorot_conv(
    num_spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: Sequence[int],
    stride: int,
    *,
    key: jax.Array,
) -> eqx.nn.Conv:
    """An `eqx.nn.Conv` (valid padding) with a Glorot-uniform kernel and a zero bias, as Keras initialises it:
    ``fan_in = in_channels * prod(kernel)``, ``fan_out = out_channels * prod(kernel)``."""
    kernel_size = tuple(kernel_size)
    layer = eqx.nn.Conv(num_spatial_dims, in_channels, out_channels, kernel_size, stride=stride, key=key)
    receptive = 1
    for k in kernel_size:
        receptive *= k
    limit = jnp.sqrt(6.0 / ((in_channels + out_channels) * receptive))
    weight = jax.random.uniform(key, layer.weight.shape, minval=-limit, maxval=limit)
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, jnp.zeros_like(_bias(layer))))


class CNN(eqx.Module):
    """The quantum-control controller of docs/tasks.md, quantum on one unbatched state ``(n_points, 2)``.

    The state is seen as an image ``(n_points, 2, 1)``: a 2-D convolution with `filters` filters, kernel
    (3, 2), stride 2, tanh, gives ``(15, filters)`` for 32 points; a 1-D convolution with `filters` filters,
    kernel 3, stride 2, tanh; flatten (position-major, as Keras); a dense layer to `out_size` outputs with
    bias. Valid padding everywhere; Glorot-uniform kernels, zero biases. For 32 points, 60 filters and one
    output it has 11,701 parameters.
    """

    conv2d: eqx.nn.Conv
    conv1d: eqx.nn.Conv
    dense: eqx.nn.Linear

    def __init__(self, n_points: int = 32, out_size: int = 1, filters: int = 60, *, key: jax.Array) -> None:
        h1 = (n_points - 3) // 2 + 1
        h2 = (h1 - 3) // 2 + 1
        if h2 < 1:
            raise BadInput(f"the CNN needs at least 7 points, got {n_points}")
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv2d = glorot_conv(2, 1, filters, (3, 2), 2, key=k1)
        self.conv1d = glorot_conv(1, filters, filters, (3,), 2, key=k2)
        self.dense = glorot_linear(h2 * filters, out_size, key=k3)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(n_points, 2) -> (out_size,)`` for one state."""
        # Both convolutions as row blocks times kernel slices (`_strided_conv`): the same numbers as calling the
        # `eqx.nn.Conv` layers (see `reference`), several times faster on a CPU for these tiny images.
        w2 = jnp.swapaxes(self.conv2d.weight[:, 0], 1, 2)  # (filters, 2, 3): the image's 2 columns as channels
        h = jnp.tanh(_strided_conv(x, w2, 2) + _bias(self.conv2d)[:, 0, 0])
        h = jnp.tanh(_strided_conv(h, self.conv1d.weight, 2) + _bias(self.conv1d)[:, 0])
        return self.dense(jnp.ravel(h))

    def reference(self, x: jax.Array) -> jax.Array:
        """The same function through the `eqx.nn.Conv` layers themselves (slower; for tests)."""
        h = jnp.tanh(self.conv2d(x[None]))  # (filters, h1, 1)
        h = jnp.tanh(self.conv1d(h[..., 0]))  # (filters, h2)
        return self.dense(jnp.ravel(h.T))


def _bias(layer: eqx.nn.Conv) -> jax.Array:
    """The bias of a convolution built with one (Equinox types it as optional)."""
    if layer.bias is None:
        raise ValueError("the convolution has no bias")
    return layer.bias


def _strided_conv(h: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """Valid 1-D convolution along the rows: ``h (n, c)``, kernel ``w (f, c, k)`` -> ``(m, f)``, ``m = (n - k) //
    stride + 1``, without bias.

    The rows are regrouped in blocks of `stride` (a reshape, no copy: ``(n', stride * c)``), so output row ``p``
    is ``sum_j block[p + j] @ W_j`` over the ``ceil(k / stride)`` blocks a window touches: a few matrix products
    on contiguous rows instead of a patch matrix that repeats and transposes every input row (on a CPU the copy
    that builds it cost more than the products).
    """
    n, c = h.shape
    k = w.shape[-1]
    m = (n - k) // stride + 1
    touched = -(-k // stride)  # blocks a window touches
    rows = stride * (m + touched - 1)  # rows the blocks cover: pad the last, or drop rows no window reads
    h = jnp.pad(h, ((0, rows - n), (0, 0))) if rows > n else h[:rows]
    blocks = h.reshape(m + touched - 1, stride * c)
    out = None
    for j in range(touched):
        taps = range(j * stride, min(k, (j + 1) * stride))
        kernel = jnp.concatenate([w[:, :, t] for t in taps], axis=1).T  # (len(taps) * c, f)
        term = blocks[j : j + m, : len(taps) * c] @ kernel
        out = term if out is None else out + term
    assert out is not None
    return out


NORMALIZER_STD_RANGE = (1e-6, 1e6)  # the clip of Brax's running_statistics.normalize


class Normalizer(eqx.Module):
    """Running mean and variance of observations ``(obs_size,)``, as Brax's `running_statistics`
    (``init_state``, ``update``, ``normalize``; tests/test_nn.py holds it to Brax's): inputs are standardised with
    them, the standard deviation clipped to `NORMALIZER_STD_RANGE`, and gradients never flow into them (they change
    only through `update`). Written here rather than taken from Brax, which is an optional extra that brings
    MuJoCo and Flax, for a merge of ten lines.

    `count` starts at 0: the first batch sets the statistics (Brax's; DiffRL's ``RunningMeanStd`` starts from a
    count of 1e-4 at mean 0 and variance 1, which differs after the first batch by about 1e-4 of a batch's
    weight)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def empty(cls, size: int) -> Normalizer:
        return cls(jnp.zeros((size,)), jnp.ones((size,)), jnp.zeros(()))

    def __call__(self, obs: jax.Array) -> jax.Array:
        mean, var = jax.lax.stop_gradient((self.mean, self.var))
        return (obs - mean) / jnp.clip(jnp.sqrt(var), *NORMALIZER_STD_RANGE)

    def update(self, batch: jax.Array) -> Normalizer:
        """The statistics with the observations `batch` ``(n, obs_size)`` added: Welford's update in the form of
        Brax's ``running_statistics.update`` (sums of the differences to the old and the new mean), which keeps a
        constant feature's mean exact where a merge of the batch's own mean would round it (then amplified by the
        standard deviation's floor)."""
        batch = jax.lax.stop_gradient(batch).reshape(-1, self.mean.shape[0])
        total = self.count + batch.shape[0]
        to_old = batch - self.mean
        mean = self.mean + jnp.sum(to_old, axis=0) / total
        summed = self.var * self.count + jnp.sum(to_old * (batch - mean), axis=0)
        return Normalizer(mean, jnp.maximum(summed, 0.0) / total, total)
