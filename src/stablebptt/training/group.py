"""Groups: runs that share array shapes trained together as ONE compiled program, `jax.vmap`ped over the runs.

The members of a group may differ in everything that does not change a shape or the program's structure:
the gradient rule (R, M, S, N, C, C with another non-finite policy, a rule of one's own: one joint reverse sweep
computes the adjoints of every mode the group needs and each run selects its rule's update, `Choice`), the
clipping mode and threshold, the learning rate, the seed, Adam's epsilon form, and task settings that are plain
numbers and that the task's code can take
as traced values, fields of the task's pytree rather than static ones (repulsion's ``rc``, quantum's ``target``;
see `traceable_fields`). They must share the task's
other settings and every other training setting (`shared_key`).

Each member computes every mode its group needs, so a mixed group costs more per run than a group of one
method; on an accelerator it is one program for hundreds of runs, on a CPU it rarely pays (see
`runs.batch.plan_groups`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.tree_util import PyTreeDef

from ..core.checks import BadInput
from ..core.methods import Info, Method, Mode
from ..tasks import Task
from .epoch import Data, evaluate, make_epoch
from .optim import CLIP_MODES
from .protocols import as_protocol
from .settings import TrainSettings

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

    rule: jax.Array  # index into `GroupSpec.rules`
    clip: jax.Array  # index into `optim.CLIP_MODES`
    clip_value: jax.Array
    lr: jax.Array
    keras: jax.Array  # bool: Adam's Keras epsilon form
    task_values: dict[str, jax.Array]  # the task settings that vary within the group


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """What a group program is built from: the rules of its members (`TrainSettings.rule`, the order of
    `Knobs.rule`), the settings they share (those of any member), and the task fields that vary between
    members."""

    rules: tuple[Method, ...]
    settings: TrainSettings
    varying: tuple[str, ...] = ()

    def knobs(self, settings: TrainSettings, task_values: Mapping[str, Any] | None = None) -> Knobs:
        """A member's `Knobs` (its settings must share `shared_key` with the group's)."""
        if shared_key(settings) != shared_key(self.settings) or settings.rule not in self.rules:
            raise BadInput(f"run settings {settings.values()} do not fit this group of {self.rules} runs")
        dtype = jnp.result_type(float)
        values = dict(task_values or {})
        return Knobs(
            rule=jnp.asarray(self.rules.index(settings.rule), jnp.int32),
            clip=jnp.asarray(CLIP_MODES.index(settings.clip), jnp.int32),
            clip_value=jnp.asarray(settings.clip_value, dtype),
            lr=jnp.asarray(settings.lr, dtype),
            keras=jnp.asarray(settings.adam_eps == "keras"),
            task_values={k: jnp.asarray(values[k], dtype) for k in self.varying},
        )

    def rule(self, index: jax.Array) -> Method:
        """The rule of the member whose `Knobs.rule` is `index`: the group's one rule, or a `Choice`."""
        return self.rules[0] if len(self.rules) == 1 else Choice.of(self.rules, index)


def _pick(index: jax.Array, trees: Sequence[PyTree]) -> PyTree:
    """``trees[index]`` for a traced index (the trees share one structure)."""
    if len(trees) == 1:
        return trees[0]
    return jax.tree.map(lambda *xs: jnp.stack(xs)[index], *trees)


@dataclasses.dataclass(frozen=True)
class Choice(Method):
    """The rule of one member of a group of several rules: every rule's update from one joint sweep over the
    modes they need, and the member's selected by `index` (a traced int32 scalar into `rules`). Its info has
    every rule's statistics (the member's own where it declares them, zeros elsewhere); its policy and its
    columns are the member's rule's (the other rules' columns NaN). Made by `GroupSpec.rule` inside a traced
    function only."""

    rules: tuple[Method, ...] = ()
    index: Any = None

    __eq__ = object.__eq__  # holds a traced index: compared and hashed by identity
    __hash__ = object.__hash__

    @classmethod
    def of(cls, rules: Sequence[Method], index: jax.Array) -> Choice:
        modes = tuple(dict.fromkeys(mode for rule in rules for mode in rule.modes))
        return cls("*", "group member", modes, rules=tuple(rules), index=index)

    def update(self, grads: Sequence[PyTree]) -> tuple[PyTree, Info]:
        by_mode: dict[Mode, PyTree] = dict(zip(self.modes, grads, strict=True))
        updates, infos = zip(*(r.update([by_mode[m] for m in r.modes]) for r in self.rules), strict=True)
        names = dict.fromkeys(k for info in infos for k in info)
        like = {k: next(info[k] for info in infos if k in info) for k in names}
        info = _pick(self.index, [{k: info.get(k, jnp.zeros_like(like[k])) for k in names} for info in infos])
        return _pick(self.index, list(updates)), info

    def accepts(self, info: Info) -> jax.Array:
        return _pick(self.index, [r.accepts(info) for r in self.rules])

    def aggregate(self, infos: Mapping[str, jax.Array], used: jax.Array) -> dict[str, jax.Array]:
        out: dict[str, jax.Array] = {}
        for i, rule in enumerate(self.rules):
            for name, value in rule.aggregate(infos, used).items():
                out[name] = jnp.where(self.index == i, value, out.get(name, jnp.full_like(value, jnp.nan)))
        return out


def with_values(task: Task, values: Mapping[str, Any]) -> Task:
    """`task` with its fields `values` holding (possibly traced) numbers instead of their settings, by
    `eqx.tree_at`: only a field that is a leaf of the task's pytree (not ``eqx.field(static=True)``) can hold a
    traced value (repulsion's ``rc``, quantum's ``target``); another raises `ValueError`."""
    if not values:
        return task
    names = tuple(values)
    return eqx.tree_at(lambda t: tuple(getattr(t, n) for n in names), task, tuple(values[n] for n in names))


def traceable_fields(task: Task, fields: Sequence[str], params: PyTree, x0: PyTree) -> tuple[str, ...]:
    """Those of `fields` (task settings that are plain numbers) with which the task's step, controller and loss
    can be traced when the field holds a traced array: a rollout of `params` from `x0` is traced (not run) for
    each. A static field (`with_values`), or one used for a shape or in Python control flow, fails and must be
    equal within a group."""
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


def group_optimizer(settings: TrainSettings, knobs: Knobs) -> optax.GradientTransformation:
    """The optimizer of one member (the group's optimizer, with the member's clipping, learning rate and Adam
    epsilon form as traced values); its state has the structure of `TrainSettings.transform`'s."""
    return settings.transform(lr=knobs.lr, clip=knobs.clip, clip_value=knobs.clip_value, keras=knobs.keras)


def group_program(
    task: Task, spec: GroupSpec, static: PyTree
) -> Callable[[Knobs, Any, Data], tuple[Any, dict[str, jax.Array]]]:
    """One epoch (`epoch.make_epoch`, by the group's protocol) for every member of a group:
    ``(knobs, states, data) -> (states, metrics)``, a `jax.vmap` over the leading (run) axis of every argument:
    each member's rule (`GroupSpec.rule`), optimizer and task values are its own. `static` is the non-array
    part of the parameters (shared)."""
    settings = spec.settings
    if len(spec.rules) > 1 and settings.backward == "autodiff":
        settings = settings.replace(backward="joint")  # several rules share one joint reverse sweep
    protocol = as_protocol(settings.protocol)

    def one_epoch(knobs: Knobs, state: Any, data: Data) -> tuple[Any, dict[str, jax.Array]]:
        member = with_values(task, knobs.task_values)
        tx = group_optimizer(settings, knobs)
        return make_epoch(member, settings, static, protocol=protocol, rule=spec.rule(knobs.rule), tx=tx)(state, data)

    return jax.vmap(one_epoch)


def restructure(state: PyTree, like: State) -> State:
    """`state`'s leaves in the structure of `like` (e.g. optax's Adam state as the group's Adam state: both
    hold count, mu, nu in that order)."""
    leaves = jax.tree.leaves(state)
    want: PyTreeDef = jax.tree.structure(like)
    if len(leaves) != want.num_leaves:
        raise BadInput(f"a training state with {len(leaves)} arrays does not fit a group's {want.num_leaves}")
    return jax.tree.unflatten(want, leaves)
