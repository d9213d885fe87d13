"""Checkpoints of a run: one file, a JSON header line followed by the training state's leaves.

The header holds a format tag, the task name, a hash of the run's configuration (without the number of
epochs, so a run can be extended), the epoch, the metrics so far, and the length and SHA-256 of the payload.
The payload is ``eqx.tree_serialise_leaves`` of ``(key, TrainState)`` and is read back into a template built
from the configuration. A truncated, corrupted or foreign file is refused with one `ValueError` line and never
modified.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax

from .faults import fault_point
from .io import atomic_write_bytes
from .train import TrainState

FORMAT = "stablebptt-checkpoint/1"
# Left out of the hash: settings that do not change what an epoch computes (``task_path``: where a task's
# module was found, so that moving a project keeps its checkpoints).
UNHASHED_TOP = ("version", "checkpoint_every", "task_path")
UNHASHED_TRAIN = ("epochs",)


class Checkpoint(NamedTuple):
    """The state after `epoch` epochs, the PRNG key the run's randomness comes from, and metrics so far."""

    epoch: int
    state: TrainState
    key: jax.Array
    metrics: list[dict[str, float]]


def config_hash(config: dict) -> str:
    """SHA-256 of the configuration, leaving out the number of epochs, the version, checkpoint frequency and
    the folder of the task's module."""
    from .run import TRAIN_DEFAULTS  # settings left at their defaults hash like settings spelled out

    core = {k: v for k, v in config.items() if k not in UNHASHED_TOP}
    train = {**TRAIN_DEFAULTS, **config.get("train", {})}
    core["train"] = {k: v for k, v in train.items() if k not in UNHASHED_TRAIN}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def save_checkpoint(path: str | Path, config: dict, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` atomically (temporary file, fsync, rename) for the run of `config`."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (checkpoint.key, checkpoint.state))
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "task": config["task"],
        "config_hash": config_hash(config),
        "epoch": int(checkpoint.epoch),
        "metrics": checkpoint.metrics,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    data = json.dumps(header, sort_keys=True).encode() + b"\n" + payload
    atomic_write_bytes(path, data, halfway=lambda: fault_point("checkpoint", checkpoint.epoch))


def read_header(path: str | Path) -> tuple[dict, bytes]:
    """The header and payload of a checkpoint file, checked against the format, length and checksum."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist") from None
    bad = f"checkpoint {path} is not a valid stablebptt checkpoint"
    line, sep, payload = data.partition(b"\n")
    try:
        header = json.loads(line.decode()) if sep else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{bad} (no {FORMAT} header); it was left untouched")
    expected = header.get("payload_bytes")
    if len(payload) != expected:
        raise ValueError(f"{bad}: truncated or padded ({len(payload)} payload bytes, expected {expected}); "
                         "it was left untouched")
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ValueError(f"{bad}: checksum mismatch (corrupted); it was left untouched")
    return header, payload


def load_checkpoint(path: str | Path, config: dict, template: tuple[jax.Array, TrainState]) -> Checkpoint:
    """Read the checkpoint at `path` of the run of `config`, into `template` ``(key, TrainState)``.

    Raises:
        ValueError: if the file is missing, truncated, corrupted, of another format, task or configuration,
            or does not fit the template; the file is left as it is.
    """
    header, payload = read_header(path)
    if header.get("task") != config["task"]:
        raise ValueError(f"checkpoint {path} belongs to task {header.get('task')!r}, not {config['task']!r}; "
                         "it was left untouched")
    if header.get("config_hash") != config_hash(config):
        raise ValueError(f"checkpoint {path} was written for a different configuration than "
                         f"{Path(path).parent / 'config.json'}; it was left untouched")
    try:
        key, state = eqx.tree_deserialise_leaves(io.BytesIO(payload), template)
    except Exception as e:  # numpy/equinox raise several types on bad bytes
        raise ValueError(f"checkpoint {path} does not fit this run's parameters ({type(e).__name__}); "
                         "it was left untouched") from None
    epoch, metrics = header.get("epoch"), header.get("metrics")
    if not isinstance(epoch, int) or not isinstance(metrics, list) or len(metrics) != epoch:
        raise ValueError(f"checkpoint {path} has an inconsistent header (epoch {epoch!r}); it was left untouched")
    return Checkpoint(epoch, state, key, metrics)
