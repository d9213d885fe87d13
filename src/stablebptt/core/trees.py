"""Pytree plumbing for states and controls: float / non-float split, time stacking, trace-time checks.

States and controls are any pytrees of arrays (a plain array, a dict of fields, `mjx.Data`). Their floating-point
leaves carry gradients; the other leaves (integer step counters, boolean flags) are carried through unchanged
and never get a cotangent. `split` puts `None` in place of the leaves of the other kind, so ``merge(*split(t))``
rebuilds `t` and tree maps over either part skip the holes.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import PyTreeDef

from .checks import BadInput, BadType, SimulatorFault, described

PyTree = Any
Binary = Callable[[PyTree, PyTree], PyTree]  # a step (x, c) -> x_next or a controller (params, x) -> c


def is_float(leaf: Any) -> bool:
    """Whether `leaf` is an array of a floating-point (or complex) dtype: the leaves that get gradients."""
    return eqx.is_inexact_array(leaf)


def split(tree: PyTree) -> tuple[PyTree, PyTree]:
    """``(floats, rest)``: the floating-point leaves, and the others; `None` in place of the leaves of the other."""
    return eqx.partition(tree, is_float)


def merge(floats: PyTree, rest: PyTree) -> PyTree:
    """Inverse of `split`."""
    return eqx.combine(floats, rest)


def as_arrays(tree: PyTree, what: str) -> PyTree:
    """Every leaf of `tree` as a JAX array (Python and NumPy numbers too); a one-line `BadType` otherwise."""

    def convert(path: jax.tree_util.KeyPath, leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array):
            return leaf
        try:
            return jnp.asarray(leaf)
        except TypeError:
            raise BadType(
                f"{what} has a leaf at {jax.tree_util.keystr(path) or 'the root'} that is not an "
                f"array ({type(leaf).__name__}); allowed: a pytree of arrays"
            ) from None

    leaves = jax.tree.leaves(tree)
    if type(tree) in (list, tuple) and len(leaves) > 1 and all(isinstance(x, int | float) for x in leaves):
        raise BadType(
            f"{what} is a Python {type(tree).__name__} of {len(leaves)} numbers, which JAX reads as a tree of "
            f"{len(leaves)} separate scalars, not as an array of states; give an array (jnp.asarray(...))"
        )
    return jax.tree_util.tree_map_with_path(convert, tree)


def at(tree: PyTree, index: Any) -> PyTree:
    """``leaf[index]`` for every leaf: e.g. ``at(states, n)`` is the state ``x_n`` (leaves ``(...)``) of
    time-major states (leaves ``(horizon + 1, ...)``)."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack trees of one structure leaf by leaf along a new leading axis: ``len(trees)`` leaves of shape
    ``(...)`` become one leaf of shape ``(len(trees), ...)``."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def prepend(first: PyTree, rest: PyTree) -> PyTree:
    """``concatenate([first[None], rest])`` leaf by leaf: `x0` in front of the stacked states ``x_1..x_H``.

    Args:
        first: the initial state, each leaf of shape ``(...)``.
        rest: the states after it, same structure, each leaf of shape ``(horizon, ...)``.

    Returns:
        The states, each leaf of shape ``(horizon + 1, ...)``.
    """
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0), first, rest)


def add(a: PyTree, b: PyTree) -> PyTree:
    """``a + b`` leaf by leaf (same structure, broadcastable shapes)."""
    return jax.tree.map(jnp.add, a, b)


def leading_size(tree: PyTree, what: str) -> int:
    """The common length of the leading axis of every leaf: the batch of a state whose leaves are ``(batch, ...)``.

    Raises:
        BadInput: if the leading axes differ, or a leaf is a scalar (the message starts with `what`).
    """
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    size = sizes.pop() if len(sizes) == 1 else None
    if size is None:
        shapes = describe(jax.tree.map(np.shape, tree, is_leaf=_is_array_like))
        raise BadInput(f"{what}: every leaf needs the same leading (batch) axis; got {shapes}")
    return size


def _is_array_like(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _signature(leaf: Any) -> str:
    shape = ",".join(str(d) for d in np.shape(leaf))
    dtype = getattr(leaf, "dtype", None)
    return f"{jnp.dtype(dtype).name if dtype is not None else type(leaf).__name__}[{shape}]"


def describe(tree: PyTree, limit: int = 400) -> str:
    """A short text of a tree's structure with each leaf as ``dtype[shape]``, on one line (cut at `limit`
    characters)."""
    text = " ".join(str(jax.tree.map(_signature, tree, is_leaf=_is_array_like)).split())
    return text if len(text) <= limit else text[: limit - 5] + " ...)"


def name_of(fn: Callable[..., Any]) -> str:
    """A readable name for a user function: ``Class.method`` for a method bound to an instance (Equinox modules
    included; the class of the instance, e.g. the task that was run, even where the method is inherited),
    else its qualified name."""
    while getattr(fn, "__wrapped__", None) is not None:  # our wrappers (`guard`, `checked_loss`) name the user's
        fn = fn.__wrapped__  # type: ignore[attr-defined]
    func, owner = getattr(fn, "__func__", fn), getattr(fn, "__self__", None)
    name = getattr(func, "__name__", None)
    if owner is not None and name and not isinstance(owner, type | types.ModuleType):
        return f"{type(owner).__name__}.{name}"
    return getattr(func, "__qualname__", None) or name or type(func).__name__


def fault_message(role: str, fn: Callable[..., Any], error: BaseException, inputs: str | None = None) -> str:
    """``the ROLE `NAME` raised TYPE: FIRST LINE (INPUTS)``: one line naming a user function that failed."""
    text = f"the {role} `{name_of(fn)}` raised {described(error)}"
    return f"{text} ({inputs})" if inputs else text


def guard(role: str, fn: Callable[..., Any], inputs: Callable[..., str] | None = None) -> Callable[..., Any]:
    """`fn` wrapped so that an exception it raises becomes a one-line `SimulatorFault` naming `role` and `fn`
    (e.g. ``the simulator step `Puck.step` raised RuntimeError: ...``), with ``inputs(*args)`` (a description of
    what it was given, e.g. by `describe`) in parentheses; the original error is chained as ``__cause__``.

    A `BadInput` (one of our checks, already one line) passes unchanged, and so does anything that is not an
    `Exception` (KeyboardInterrupt, SystemExit). Inside `jit` the wrapper runs when the function is traced, so it
    costs nothing at run time.
    """

    def guarded(*args: Any) -> Any:
        try:
            return fn(*args)
        except BadInput:
            raise
        except Exception as e:
            raise SimulatorFault(fault_message(role, fn, e, _inputs(inputs, args))) from e

    guarded.__wrapped__ = fn  # type: ignore[attr-defined]
    return guarded


def _inputs(inputs: Callable[..., str] | None, args: tuple[Any, ...]) -> str | None:
    if inputs is None:
        return None
    try:
        return inputs(*args)
    except Exception:  # noqa: BLE001 - a description is a courtesy: the error is what matters
        return None


def step_inputs(x: PyTree, c: PyTree) -> str:
    return f"its input: state {describe(x, 200)}, control {describe(c, 200)}"


def controller_inputs(params: PyTree, x: PyTree) -> str:
    return f"its input: {describe(x)}"


def loss_inputs(states: PyTree, controls: PyTree) -> str:
    return f"its input: states {describe(states, 200)}, controls {describe(controls, 200)}"


def check_step(step: Callable[..., Any], x: PyTree, x_next: PyTree) -> None:
    """At trace time: `step` must return a tree of `x`'s structure, shapes and dtypes (one `BadInput` else)."""
    expected: PyTreeDef = jax.tree.structure(x)
    got: PyTreeDef = jax.tree.structure(x_next)
    if expected != got:
        raise BadInput(
            f"the simulator step `{name_of(step)}` returned a state of another structure than it was "
            f"given: expected {describe(x)}, got {describe(x_next)}"
        )
    paths = jax.tree_util.tree_flatten_with_path(x)[0]
    for (path, a), b in zip(paths, jax.tree.leaves(x_next), strict=True):
        if np.shape(a) != np.shape(b) or jnp.result_type(a) != jnp.result_type(b):
            where = jax.tree_util.keystr(path) or "the state"
            raise BadInput(
                f"the simulator step `{name_of(step)}` changed {where} from {_signature(a)} to "
                f"{_signature(b)}; a step must return the shapes and dtypes it was given "
                f"(expected {describe(x)}, got {describe(x_next)})"
            )


def check_control(controller: Callable[..., Any], c: PyTree) -> None:
    """At trace time: the controller's output needs at least one floating-point leaf (one `BadInput` else)."""
    if not any(is_float(leaf) for leaf in jax.tree.leaves(c)):
        raise BadInput(
            f"the controller `{name_of(controller)}` returned no floating-point array "
            f"(got {describe(c)}); a control needs a float leaf for gradients to flow"
        )


def check_loss(loss: Callable[..., Any], value: Any) -> None:
    """At trace time: the loss must return one floating-point number, an array of shape ``()`` (one `BadInput`
    else; a loss of shape ``(batch,)`` with a forgotten mean would otherwise be differentiated as its sum)."""
    if not (isinstance(value, jax.Array | np.ndarray) and value.shape == () and is_float(value)):
        got = describe(value) if isinstance(value, jax.Array | np.ndarray) else type(value).__name__
        raise BadInput(
            f"the loss `{name_of(loss)}` returned {got}; it must return a scalar (shape ()) of floating-point "
            "type, e.g. a mean over the batch: jnp.mean(...)"
        )


def checked_loss(loss: Binary) -> Binary:
    """`loss` wrapped so that its value is checked whenever it is traced (`check_loss`)."""

    def scalar_loss(states: PyTree, controls: PyTree) -> Any:
        value = loss(states, controls)
        check_loss(loss, value)
        return value

    scalar_loss.__wrapped__ = loss  # type: ignore[attr-defined]
    return scalar_loss


def loss_with_extras(loss: Binary, has_aux: bool) -> Binary:
    """`loss` as ``(states, controls) -> (value, (aux, final_state))``, its value checked (`check_loss`):
    `aux` is the loss's second output with `has_aux` (the loss then returns ``(value, aux)``), else None;
    `final_state` is the last state of the trajectory (time-major `states`)."""

    def extended(states: PyTree, controls: PyTree) -> tuple[Any, tuple[Any, PyTree]]:
        out = loss(states, controls)
        if has_aux:
            if not (isinstance(out, tuple | list) and len(out) == 2):
                got = describe(out) if isinstance(out, jax.Array | np.ndarray) else type(out).__name__
                raise BadInput(
                    f"the loss `{name_of(loss)}` returned {got}; with has_aux=True it must return a pair (value, aux)"
                )
            value, aux = out
        else:
            value, aux = out, None
        check_loss(loss, value)
        return value, (aux, at(states, -1))

    extended.__wrapped__ = loss  # type: ignore[attr-defined]
    return extended


def checked(step: Binary, controller: Binary) -> tuple[Binary, Binary]:
    """`step` and `controller` wrapped so that their outputs are checked whenever they are traced, and so that
    an error they raise becomes a one-line `SimulatorFault` naming them (see `guard`).

    The checks are Python comparisons of shapes and dtypes: they run once per trace, before compilation, and
    cost nothing at run time.
    """
    call_step = guard("simulator step", step, step_inputs)
    call_controller = guard("controller", controller, controller_inputs)

    def checked_step(x: PyTree, c: PyTree) -> PyTree:
        x_next = call_step(x, c)
        check_step(step, x, x_next)
        return x_next

    def checked_controller(params: PyTree, x: PyTree) -> PyTree:
        c = call_controller(params, x)
        check_control(controller, c)
        return c

    return checked_step, checked_controller


def first_difference(
    got: PyTree, want: PyTree, names: tuple[str, str] = ("leaf", "other"), *, dtypes: bool = True
) -> str | None:
    """Where `got` differs from `want`, in words, or None: their tree structures (`None` leaves count as
    structure) ``has the tree structure PyTreeDef(...), the others PyTreeDef(...)``, else the first leaf of
    another shape (and dtype, if `dtypes`) ``at ['w1'] is float32[1, 10], the other is float32[2, 5]``; `names`
    are what a leaf of each tree is called."""
    is_none: Callable[[Any], bool] = lambda x: x is None  # noqa: E731
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got, is_leaf=is_none)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want, is_leaf=is_none)
    if got_def != want_def:  # type: ignore[operator]
        return f"has the tree structure {got_def}, the {names[1]}s {want_def}"
    for (path, g), (_, w) in zip(got_leaves, want_leaves, strict=True):
        if (g is None) != (w is None) or (
            g is not None
            and (np.shape(g), getattr(g, "dtype", None) if dtypes else None)
            != (np.shape(w), getattr(w, "dtype", None) if dtypes else None)
        ):
            where = jax.tree_util.keystr(path) or "the root"
            return f"at {where} is {_described_leaf(g, dtypes)}, the {names[1]} is {_described_leaf(w, dtypes)}"
    return None


def _described_leaf(x: Any, dtype: bool) -> str:
    if x is None:
        return "None"
    shape = list(np.shape(x))
    return f"{getattr(x, 'dtype', type(x).__name__) if dtype else 'shape '}{shape}"
