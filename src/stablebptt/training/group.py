"""Groups: runs that share array shapes trained together as ONE compiled program, `jax.vmap`ped over the runs.

The members of a group may differ in everything that does not change a shape or the program's structure:
the method (R, M, S, N, C: one joint reverse sweep computes the adjoints of every mode the group needs and each
run selects its update), the clipping mode and threshold, the learning rate, the seed, Adam's epsilon form,
what C does with a non-finite g_R, and task settings that are plain numbers and that the task's code can take
as traced values (repulsion's ``rc``, quantum's ``target``; see `traceable_fields`). They must share the task's
other settings and every other training setting (`shared_key`).

Each member computes every mode its group needs, so a mixed group costs more per run than a group of one
method; on an accelerator it is one program for hundreds of runs, on a CPU it rarely pays (see
`runs.batch.plan_groups`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import optax
from jax.tree_util import PyTreeDef

from ..core import as_method, value_and_grad, value_and_grads
from ..core.checks import BadInput
from ..core.gradients import ValueAndGrad
from ..tasks import Task
from .optim import CLIP_MODES
from .settings import TrainSettings
from .stream import stream_program, window_length
from .train import Data, epoch_program, evaluate, user_loss

PyTree = Any
State = TypeVar("State")
# Training settings in which the members of a group may differ (all others are shared).
GROUP_VARYING = ("method", "clip", "clip_value", "lr", "seed", "adam_eps", "regular_nonfinite", "epochs")


def shared_key(settings: TrainSettings) -> tuple[tuple[str, Any], ...]:
    """The training settings every member of a group shares (as a hashable key): all but `GROUP_VARYING`, and
    the number of epochs too where the learning-rate schedule depends on it."""
    varying = set(GROUP_VARYING) - ({"epochs"} if settings.schedule_needs_epochs else set())
    return tuple((k, v) for k, v in settings.values().items() if k not in varying)


class Knobs(NamedTuple):
    """One run's settings as arrays (leading run axis when stacked): what its group program reads per run."""

    method: jax.Array  # index into `GroupSpec.methods`
    clip: jax.Array  # index into `optim.CLIP_MODES`
    clip_value: jax.Array
    lr: jax.Array
    keras: jax.Array  # bool: Adam's Keras epsilon form
    stop_regular: jax.Array  # bool: C stops on a non-finite g_R
    task_values: dict[str, jax.Array]  # the task settings that vary within the group


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """What a group program is built from: the methods of its members (the order of `Knobs.method`), the
    settings they share (those of any member), and the task fields that vary between members."""

    methods: tuple[str, ...]
    settings: TrainSettings
    varying: tuple[str, ...] = ()

    def knobs(self, settings: TrainSettings, task_values: Mapping[str, Any] | None = None) -> Knobs:
        """A member's `Knobs` (its settings must share `shared_key` with the group's)."""
        if shared_key(settings) != shared_key(self.settings) or settings.method not in self.methods:
            raise BadInput(f"run settings {settings.values()} do not fit this group of {self.methods} runs")
        dtype = jnp.result_type(float)
        values = dict(task_values or {})
        return Knobs(
            method=jnp.asarray(self.methods.index(settings.method), jnp.int32),
            clip=jnp.asarray(CLIP_MODES.index(settings.clip), jnp.int32),
            clip_value=jnp.asarray(settings.clip_value, dtype),
            lr=jnp.asarray(settings.lr, dtype),
            keras=jnp.asarray(settings.adam_eps == "keras"),
            stop_regular=jnp.asarray(settings.regular_nonfinite == "stop"),
            task_values={k: jnp.asarray(values[k], dtype) for k in self.varying},
        )


def with_values(task: Task, values: Mapping[str, Any]) -> Task:
    """A copy of `task` whose fields `values` hold (possibly traced) numbers instead of their settings; used
    inside a traced function only (the copy is not checked and not hashable)."""
    if not values:
        return task
    new = copy.copy(task)
    for name, value in values.items():
        object.__setattr__(new, name, value)
    return new


def traceable_fields(task: Task, fields: Sequence[str], params: PyTree, x0: PyTree) -> tuple[str, ...]:
    """Those of `fields` (task settings that are plain numbers) with which the task's step, controller and loss
    can be traced when the field holds a traced array: a rollout of `params` from `x0` is traced (not run) for
    each. A field used for a shape or in Python control flow fails and must be equal within a group."""
    ok = []
    for name in fields:

        def run(value: jax.Array, name: str = name) -> jax.Array:
            return evaluate(with_values(task, {name: value}), params, x0)

        try:
            jax.eval_shape(run, jnp.zeros((), jnp.result_type(float)))
        except Exception:  # noqa: BLE001 - any tracing failure: the field cannot vary within a group
            continue
        ok.append(name)
    return tuple(ok)


def _pick(index: jax.Array, trees: Sequence[PyTree]) -> PyTree:
    """``trees[index]`` for a traced index (the trees share one structure)."""
    if len(trees) == 1:
        return trees[0]
    return jax.tree.map(lambda *xs: jnp.stack(xs)[index], *trees)


def group_update(task: Task, spec: GroupSpec, method: jax.Array) -> ValueAndGrad:
    """``(params, x0) -> (value, update, info)`` of `core.value_and_grad` for the run whose method is
    ``spec.methods[method]``: one value_and_grad when the group has one method, else one joint reverse sweep
    over every mode the group needs (`core.value_and_grads`) and a selection. Under the stream protocol it
    unrolls one window and returns the last state as ``info["final_state"]``."""
    settings = spec.settings
    stream = settings.protocol == "stream"
    horizon = window_length(task, settings)[0] if stream else task.horizon
    if len(spec.methods) == 1:
        return value_and_grad(
            user_loss(task),
            task.step,
            task.controller,
            horizon,
            spec.methods[0],
            final_state=stream,
            **settings.gradient_options,
        )
    rules = [as_method(m) for m in spec.methods]
    modes = tuple(dict.fromkeys(mode for rule in rules for mode in rule.modes))
    grads_fn = value_and_grads(
        user_loss(task),
        task.step,
        task.controller,
        horizon,
        modes,
        truncation=settings.truncation,
        remat=settings.remat,
        final_state=True,
    )

    def vg(params: PyTree, x0: PyTree) -> tuple[jax.Array, PyTree, dict[str, jax.Array]]:
        value, grads, last = grads_fn(params, x0)
        updates, infos = zip(*(rule.update([grads[m] for m in rule.modes]) for rule in rules), strict=True)
        update = _pick(method, updates)
        # every member's info has every rule's statistics (a rule's own where it is the member's, else zeros)
        names = dict.fromkeys(k for info in infos for k in info)
        like = {k: next(info[k] for info in infos if k in info) for k in names}
        info = _pick(method, [{k: info.get(k, jnp.zeros_like(like[k])) for k in names} for info in infos])
        return value, update, {**info, "final_state": last} if stream else info

    return vg


def group_optimizer(settings: TrainSettings, knobs: Knobs) -> optax.GradientTransformation:
    """The optimizer of one member (the group's optimizer, with the member's clipping, learning rate and Adam
    epsilon form as traced values); its state has the structure of `TrainSettings.transform`'s."""
    return settings.transform(lr=knobs.lr, clip=knobs.clip, clip_value=knobs.clip_value, keras=knobs.keras)


def make_group_epoch(
    task: Task, spec: GroupSpec, static: PyTree
) -> Callable[[Knobs, Any, Data], tuple[Any, dict[str, jax.Array]]]:
    """One epoch of `make_epoch` (or of `stream.make_stream_epoch`, by the group's protocol) for every member of
    a group: ``(knobs, states, data) -> (states, metrics)``,
    a `jax.vmap` over the leading (run) axis of every argument. `static` is the non-array part of the
    parameters (shared)."""
    settings = spec.settings
    combines = jnp.asarray([as_method(m).combines for m in spec.methods])

    def one_epoch(knobs: Knobs, state: Any, data: Data) -> tuple[Any, dict[str, jax.Array]]:
        member = with_values(task, knobs.task_values)
        vg = group_update(member, spec, knobs.method)
        tx = group_optimizer(settings, knobs)
        if settings.protocol == "stream":
            updates = settings.n_train // settings.batch_size
            stream = stream_program(
                member,
                settings,
                vg,
                tx,
                static,
                updates,
                combined=combines[knobs.method],
                stop_regular=knobs.stop_regular,
            )
            return stream(state, data)
        epoch = epoch_program(
            member,
            vg,
            tx,
            static,
            settings.batch_size,
            skip_nonfinite=settings.skip_nonfinite,
            combined=combines[knobs.method],
            stop_regular=knobs.stop_regular,
        )
        return epoch(state, data)

    return jax.vmap(one_epoch)


def restructure(state: PyTree, like: State) -> State:
    """`state`'s leaves in the structure of `like` (e.g. optax's Adam state as the group's Adam state: both
    hold count, mu, nu in that order)."""
    leaves = jax.tree.leaves(state)
    want: PyTreeDef = jax.tree.structure(like)
    if len(leaves) != want.num_leaves:
        raise BadInput(f"a training state with {len(leaves)} arrays does not fit a group's {want.num_leaves}")
    return jax.tree.unflatten(want, leaves)
