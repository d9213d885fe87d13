"""Groups of runs trained together as one compiled program, each member in its own run folder.

`plan_groups` splits the runs of a sweep into groups that can share one program (`training.group`: same array
shapes; any mix of methods, clipping, learning rates, seeds, Adam's epsilon form and numeric task settings the
task can trace). `ensure_batch` is `RunFolder.ensure` for one group: each folder is opened by its `RunFolder`
(complete, diverged and locked runs are skipped, unfinished ones continue from their checkpoints) and written
only through its `Session`, so batched runs leave exactly the files of runs trained one at a time. With several
devices (GPUs, or CPU devices from ``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the run axis is
sharded across them.
"""

from __future__ import annotations

import contextlib
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..core.checks import BadArgument, BadInput
from ..core.methods import METHODS
from ..core.trees import stack
from ..training.group import GroupSpec, group_optimizer, group_program, restructure, shared_key, traceable_fields
from ..training.train import ProgressFn, RunState, Trainer, TrainResult
from .config import RunConfig
from .folder import RunFolder, Session, use_precision
from .state import interrupts_deferred

BATCH_MODES = ("auto", "on", "off")


class _Member(NamedTuple):
    slot: int
    session: Session
    trainer: Trainer
    state: RunState
    start: int
    progress: ProgressFn | None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _coarse_key(config: RunConfig) -> tuple[Any, ...]:
    """What runs must share to be in one group, numeric task settings aside."""
    settings = tuple(sorted((k, repr(v)) for k, v in config.task_settings.items() if not _is_number(v)))
    names = tuple(sorted(config.task_settings))
    return config.task, config.task_path, config.x64, names, settings, shared_key(config.train)


def batchable_fields(configs: Sequence[RunConfig]) -> tuple[str, ...]:
    """The numeric task settings that differ between `configs` and can vary within one group program (the
    task's code takes them as traced values; see `training.group.traceable_fields`). `configs` share
    `_coarse_key`."""
    first = configs[0]
    differing = [
        k for k, v in first.task_settings.items() if _is_number(v) and any(c.task_settings[k] != v for c in configs[1:])
    ]
    if not differing:
        return ()
    use_precision(first)
    key = jax.random.PRNGKey(0)

    def shapes(config: RunConfig) -> Any:
        task = config.make_task()
        out = eqx.filter_eval_shape(lambda k: (task.sample(k, 2), task.init_controller(k)), key)
        leaves, treedef = jax.tree.flatten(out)
        return treedef, [(x.shape, x.dtype) if hasattr(x, "shape") else repr(x) for x in leaves]

    try:
        reference = shapes(first)
    except Exception:  # noqa: BLE001 - a task that cannot be traced abstractly: no setting varies in a group
        return ()
    same_shapes = []
    for name in differing:  # a field that changes the data's or the controller's shapes cannot vary
        values = {repr(c.task_settings[name]): c for c in configs}
        try:
            if all(shapes(c) == reference for c in values.values()):
                same_shapes.append(name)
        except Exception:  # noqa: BLE001 - as above, for this setting
            continue
    task = first.make_task()
    return traceable_fields(task, same_shapes, task.init_controller(key), task.sample(key, 2))


def plan_groups(configs: Sequence[RunConfig], *, mixed: bool = True, max_size: int | None = None) -> list[list[int]]:
    """Indices of `configs` in groups that can be trained as one program each (in the order given).

    Args:
        configs: the runs.
        mixed: allow different methods in one group (each member then computes every mode the group needs,
            which pays on an accelerator; without, a group has one method).
        max_size: split groups into parts of at most this many runs (None: no limit).
    """
    coarse: dict[tuple[Any, ...], list[int]] = {}
    for i, config in enumerate(configs):
        coarse.setdefault(_coarse_key(config), []).append(i)
    groups: list[list[int]] = []
    for members in coarse.values():
        fixed = set(configs[members[0]].task_settings) - set(batchable_fields([configs[i] for i in members]))
        fine: dict[tuple[Any, ...], list[int]] = {}
        for i in members:
            c = configs[i]
            key = tuple(sorted((k, repr(v)) for k, v in c.task_settings.items() if k in fixed))
            fine.setdefault(key + (() if mixed else (c.train.method,)), []).append(i)
        for group in fine.values():
            size = max_size or len(group)
            groups.extend(group[j : j + size] for j in range(0, len(group), size))
    return groups


# On a CPU, groups of one method and at most this many runs (benchmarks/grid_throughput.py on 2 cores: groups of
# one method beat one process per run by 1.3x in steady epochs and 1.4x with compilation; mixed groups, whose
# members compute every mode of the group, were slower than either; 8 vmapped runs gained 1.0-1.2x per run over
# unbatched ones, 32 nothing).
CPU_GROUP_SIZE = 8


def default_batching(mode: str = "auto") -> tuple[bool, int | None] | None:
    """How a sweep is grouped on this machine: None (one process per run), or ``(mixed, max_size)`` for
    `plan_groups`. "on": one group per set of runs that share shapes. "auto": the same on an accelerator (one
    program for hundreds of runs); on a CPU groups of one method of at most `CPU_GROUP_SIZE` runs (measured, see
    `CPU_GROUP_SIZE` and benchmarks/README.md)."""
    if mode == "off":
        return None
    if mode == "on":
        return True, None
    if mode != "auto":
        raise BadArgument(f"$batch_runs: must be one of {', '.join(BATCH_MODES)}", batch_runs=mode)
    return (True, None) if jax.default_backend() != "cpu" else (False, CPU_GROUP_SIZE)


def ensure_batch(run_dirs: Sequence[str], configs: Sequence[RunConfig]) -> dict[str, str]:
    """Bring the runs of `configs` in `run_dirs` (one group of `plan_groups`) to an end with one `jax.vmap`ped
    epoch program; returns each folder's final status (complete, diverged, failed, locked).

    Runs at different epochs are batched separately. A member that diverges is frozen (its state is kept from
    the epoch before) and recorded; the others go on. Metrics equal those of separate runs up to float rounding;
    ``epoch_time`` is the batched epoch's time divided by the number of runs in it.

    Raises:
        BadInput: if the runs cannot share one program, a folder cannot be written or holds another run (see
            `RunFolder.ensure`).
    """
    _group_fields(list(configs))  # before any folder is touched
    statuses: dict[str, str] = {}
    with contextlib.ExitStack() as stack_:
        opened: list[tuple[str, Session]] = []
        for run_dir, config in zip(run_dirs, configs, strict=True):
            session = RunFolder(run_dir).open(config)
            if isinstance(session, str):
                statuses[run_dir] = session
            else:
                opened.append((run_dir, stack_.enter_context(session)))
        results = train_together([session for _, session in opened])
        for (run_dir, _), result in zip(opened, results, strict=True):
            statuses[run_dir] = result if isinstance(result, str) else result.status
    return statuses


def _group_fields(configs: Sequence[RunConfig]) -> tuple[str, ...]:
    """The task settings that vary within the group of `configs`; `BadInput` if they cannot share a program."""
    if len({_coarse_key(c) for c in configs}) > 1:
        raise BadInput(
            "these runs cannot be trained as one group: they differ in a setting that changes the "
            "program (see stablebptt.runs.plan_groups)"
        )
    varying = batchable_fields(configs) if len(configs) > 1 else ()
    fixed = [k for k in configs[0].task_settings if k not in varying]
    if any(c.task_settings[k] != configs[0].task_settings[k] for c in configs for k in fixed):
        raise BadInput(
            "these runs cannot be trained as one group: a task setting that differs between them is "
            "used for a shape or in Python control flow"
        )
    return varying


def train_together(
    sessions: Sequence[Session], progress: Callable[[Session], ProgressFn | None] | None = None
) -> list[TrainResult | str]:
    """Train opened sessions (one group of `plan_groups`, e.g. from `RunFolder.start`) with one `jax.vmap`ped
    epoch program, each from its own checkpoint; the batched counterpart of `Session.run`.

    `progress(session)` may return a progress callback ``fn(epoch, row)`` for that session's run. Returns, per
    session, its `TrainResult` (``status`` complete or diverged), or ``"failed"`` for a run that could not begin
    (e.g. a corrupt checkpoint: recorded in its folder, the others go on). An error while training is recorded
    in every unfinished folder and raised.

    Raises:
        BadInput: if the runs cannot share one program (nothing is trained or written).
    """
    results: dict[int, TrainResult | str] = {}
    if not sessions:
        return []
    varying = _group_fields([s.config for s in sessions])
    use_precision(sessions[0].config)
    members = []
    for i, session in enumerate(sessions):
        try:
            trainer = Trainer(session.config.make_task(), session.config.train)
            state, start = session.begin(trainer)
        except Exception as e:  # noqa: BLE001 - e.g. a corrupt checkpoint: this run fails, the others go on
            session.fail(e)
            results[i] = "failed"
            continue
        fn = progress(session) if progress is not None else None
        members.append(_Member(i, session, trainer, state, start, fn))
    unfinished = {m.slot for m in members}
    try:
        for start in sorted({m.start for m in members}):
            group = [m for m in members if m.start == start]
            for m, result in zip(group, _train_group(group, varying), strict=True):
                results[m.slot] = result
                unfinished.discard(m.slot)
    except BaseException as e:
        for m in members:
            if m.slot in unfinished:
                m.session.fail(e)
        raise
    return [results[i] for i in range(len(sessions))]


def train_sessions(
    sessions: Sequence[Session],
    *,
    batch_runs: str = "auto",
    progress: Callable[[Session], ProgressFn | None] | None = None,
) -> list[TrainResult | str]:
    """Train opened sessions (e.g. from `RunFolder.start`), each to its end: in groups of `plan_groups` with one
    program each (`train_together`) as `default_batching(batch_runs)` says, else one at a time (`Session.run`).
    Returns what `train_together` returns, per session in order."""
    batching = default_batching(batch_runs)
    configs = [s.config for s in sessions]
    groups = (
        [[i] for i in range(len(sessions))]
        if batching is None
        else plan_groups(configs, mixed=batching[0], max_size=batching[1])
    )
    results: dict[int, TrainResult | str] = {}
    for group in groups:
        members = [sessions[i] for i in group]
        if len(members) == 1:
            done: list[TrainResult | str] = [members[0].run(progress(members[0]) if progress else None)]
        else:
            done = train_together(members, progress)
        results.update(zip(group, done, strict=True))
    return [results[i] for i in range(len(sessions))]


def _shard(tree: Any, n: int) -> Any:
    """Put the run axis of every leaf across the first `n` devices."""
    mesh = Mesh(np.array(jax.devices()[:n]), ("runs",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("runs")))


def _train_group(group: Sequence[_Member], varying: tuple[str, ...]) -> list[TrainResult]:
    """Train members that start at the same epoch until each is complete or diverged."""
    settings = group[0].session.config.train
    rules = {g.session.config.train.rule for g in group}
    # the built-in rules in the paper's order (R, M, S, N, C), then rules of one's own
    order = {letter: i for i, letter in enumerate(METHODS)}
    spec = GroupSpec(
        tuple(sorted(rules, key=lambda r: (order.get(r.spelling, len(order)), repr(r)))), settings, varying
    )
    lead = group[0].trainer
    program = jax.jit(group_program(lead.task, spec, lead.static))
    knobs = [spec.knobs(m.session.config.train, {k: m.session.config.task_settings[k] for k in varying}) for m in group]
    # the group program's optimizer (traced clipping, rate, epsilon form) keeps its state in its own structure, e.g.
    # Keras' Adam state where a run alone keeps optax's (adam_eps="optax"): the same leaves, in the same order
    like = lead.initial._replace(opt_state=group_optimizer(spec.settings, knobs[0]).init(lead.initial.params))
    states = [restructure(m.state, like) for m in group]
    data = [m.trainer.data for m in group]
    devices = len(jax.devices())
    size = len(group)
    if devices > 1:  # pad the run axis to a multiple of the devices with copies of the first run (never recorded)
        pad = -size % devices
        knobs, states, data = knobs + knobs[:1] * pad, states + states[:1] * pad, data + data[:1] * pad
    knobs, states, data = stack(knobs), stack(states), stack(data)
    if devices > 1:
        knobs, states, data = _shard((knobs, states, data), devices)
    compiled = program.lower(knobs, states, data).compile()
    active = [m.start < m.session.epochs for m in group]
    diverged: dict[int, dict[str, Any]] = {}
    epoch = group[0].start
    while any(active):
        epoch += 1
        begin = time.perf_counter()
        new_states, values = compiled(knobs, states, data)
        values = jax.device_get(values)
        seconds = (time.perf_counter() - begin) / size
        keep = [False] * len(values["loss"])
        rows: dict[int, dict[str, float]] = {}
        for i, m in enumerate(group):
            if not active[i]:
                continue
            row = {"epoch": epoch, **{k: float(v[i]) for k, v in values.items()}, "epoch_time": seconds}
            if m.trainer.diverged(row):
                diverged[i] = {**row, "diverged": True}
                active[i] = False
                continue
            keep[i], rows[i] = True, row
            active[i] = epoch < m.session.epochs
        states = _keep(jnp.asarray(keep), new_states, states)
        if devices > 1:
            states = _shard(states, devices)
        with interrupts_deferred():  # an interrupt leaves every run of the group at the same epoch, to resume as one
            for i, row in rows.items():
                m = group[i]
                m.session.record_epoch(epoch, restructure(_index(states, i), m.trainer.initial), row, m.progress)
    results = []
    for i, m in enumerate(group):
        final = restructure(_index(states, i), m.trainer.initial)
        results.append(m.session.finish(final, len(m.session.rows), diverged.get(i), m.progress))
    return results


def _keep(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per run (leading axis), the `new` state where `mask`, else the `old` one (frozen)."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)


def _index(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)
