"""Runs that differ only in seed and learning rate, trained together as one compiled program.

`ensure_batch` is `RunFolder.ensure` for a group of runs: each folder is opened by its `RunFolder` (complete,
diverged and locked runs are skipped, unfinished ones continue from their checkpoints) and written only
through its `Session`, so batched runs leave exactly the files of runs trained one at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..training.train import Trainer, TrainState, make_batched_epoch
from .config import RunConfig
from .folder import RunFolder, Session, use_precision


class _Member(NamedTuple):
    run_dir: str
    session: Session
    trainer: Trainer
    state: TrainState
    start: int


def ensure_batch(run_dirs: Sequence[str], configs: Sequence[RunConfig]) -> dict[str, str]:
    """Bring the runs of `configs` (differing only in seed and learning rate) in `run_dirs` to an end with
    one `jax.vmap`ped epoch program; returns each folder's final status (complete, diverged, failed, locked).

    Runs at different epochs are batched separately. A member that diverges stops alone (its state is kept
    from the epoch before). Metrics equal those of separate runs up to float rounding; ``epoch_time`` is the
    batched epoch's time divided by the number of runs in it.

    Raises:
        BadInput: if a folder cannot be written or holds another run (see `RunFolder.ensure`).
    """
    statuses: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        sessions: list[tuple[str, Session]] = []
        for run_dir, config in zip(run_dirs, configs, strict=True):
            session = RunFolder(run_dir)._open(config)
            if isinstance(session, str):
                statuses[run_dir] = session
            else:
                sessions.append((run_dir, stack.enter_context(session)))
        if not sessions:
            return statuses
        first = sessions[0][1].config
        use_precision(first)
        task = first.make_task()
        members = []
        for run_dir, session in sessions:
            try:
                trainer = Trainer(task, session.config.train)
                state, start = session.begin(trainer)
            except Exception as e:  # noqa: BLE001 - e.g. a corrupt checkpoint: this run fails, the others go on
                session.fail(e)
                statuses[run_dir] = "failed"
                continue
            members.append(_Member(run_dir, session, trainer, state, start))
        unfinished = {m.run_dir for m in members}
        try:
            for start in sorted({m.start for m in members}):
                group = [m for m in members if m.start == start]
                for m, status in zip(group, _train_group(group, first)):
                    statuses[m.run_dir] = status
                    unfinished.discard(m.run_dir)
        except BaseException as e:
            for m in members:
                if m.run_dir in unfinished:
                    m.session.fail(e)
            raise
    return statuses


def _train_group(group: Sequence[_Member], first: RunConfig) -> list[str]:
    """Train members that start at the same epoch until each is complete or diverged."""
    static = group[0].trainer.static
    batched = jax.jit(make_batched_epoch(group[0].trainer.task, first.train, static))
    lrs = jnp.asarray([m.session.config.train.lr for m in group], dtype=jnp.result_type(float))
    states = _stack([m.state for m in group])
    data = _stack([m.trainer.data for m in group])
    compiled = batched.lower(lrs, states, data).compile()
    active = [m.start < m.session.epochs for m in group]
    diverged: dict[int, dict[str, Any]] = {}
    epoch = group[0].start
    while any(active):
        epoch += 1
        begin = time.perf_counter()
        new_states, values = compiled(lrs, states, data)
        values = jax.device_get(values)
        seconds = (time.perf_counter() - begin) / len(group)
        keep = [False] * len(group)
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
        mask = jnp.asarray(keep)
        states = jax.tree.map(
            lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new_states, states)
        for i, row in rows.items():
            group[i].session.record_epoch(epoch, _index(states, i), row)
    statuses = []
    for i, m in enumerate(group):
        m.session.finish(_index(states, i), len(m.session.rows), diverged.get(i))
        statuses.append("diverged" if i in diverged else "complete")
    return statuses


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _index(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)
