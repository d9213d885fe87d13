"""Checkpoints of a run: one file, a JSON header line followed by the training state's leaves.

The header holds a format tag, the task name, a hash of the run's configuration (without the number of
epochs, so a run can be extended), the epoch, the metrics so far, and the length and SHA-256 of the payload.
The payload is ``eqx.tree_serialise_leaves`` of ``(key, TrainState)`` and is read back into a template built
from the configuration. A truncated, corrupted or foreign file is refused with one `BadInput` line and never
modified.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, overload

import equinox as eqx
import jax

from ..core.checks import BadInput
from ..training.train import RunState
from .config import RunConfig, config_hash
from .faults import fault_point
from .io import atomic_write_bytes

FORMAT = "stablebptt-checkpoint/1"
Config = RunConfig | Mapping[str, Any]  # a configuration, or its JSON form as in the run's config.json


class BadCheckpoint(BadInput):
    """A checkpoint file that cannot be used for its run (missing, corrupt, or of another configuration); the
    file is left untouched."""


class Metrics(Sequence[dict[str, float]]):
    """A run's metric rows, a sequence that only grows (`append`) and keeps each row's JSON text from then: a
    checkpoint written after every epoch encodes one new row, not the whole history (at 8,000 epochs, 73 ms of
    JSON per epoch; benchmarks/run_files.py). A row is a value, not to be changed once appended."""

    def __init__(self, rows: Iterable[dict[str, float]] = ()) -> None:
        self._rows: list[dict[str, float]] = []
        self._text: list[str] = []
        for row in rows:
            self.append(row)

    def append(self, row: dict[str, float]) -> None:
        self._rows.append(row)
        self._text.append(json.dumps(row, sort_keys=True))

    @overload
    def __getitem__(self, index: int) -> dict[str, float]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, float]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, float] | list[dict[str, float]]:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __eq__(self, other: object) -> bool:
        return self._rows == (list(other) if isinstance(other, Metrics) else other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def to_json(self) -> str:
        """``json.dumps(list(self), sort_keys=True)``, from the kept texts."""
        return "[" + ", ".join(self._text) + "]"


class Checkpoint(NamedTuple):
    """The state after `epoch` epochs, the PRNG key the run's randomness comes from, and metrics so far."""

    epoch: int
    state: RunState
    key: jax.Array
    metrics: Sequence[dict[str, float]]


def _record(config: Config) -> Mapping[str, Any]:
    return config.to_json() if isinstance(config, RunConfig) else config


def save_checkpoint(path: str | Path, config: Config, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` atomically (temporary file, fsync, rename) for the run of `config`."""
    config = _record(config)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (checkpoint.key, checkpoint.state))
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "task": config["task"],
        "config_hash": config_hash(config),
        "epoch": int(checkpoint.epoch),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    metrics = checkpoint.metrics if isinstance(checkpoint.metrics, Metrics) else Metrics(checkpoint.metrics)
    line = json.dumps(header, sort_keys=True)[:-1] + ', "metrics": ' + metrics.to_json() + "}"  # one JSON object
    data = line.encode() + b"\n" + payload
    atomic_write_bytes(path, data, halfway=lambda: fault_point("checkpoint", checkpoint.epoch))


def read_header(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The header and payload of a checkpoint file, checked against the format, length and checksum."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadCheckpoint(f"checkpoint {path} does not exist") from None
    bad = f"checkpoint {path} is not a valid stablebptt checkpoint"
    line, sep, payload = data.partition(b"\n")
    try:
        header = json.loads(line.decode()) if sep else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadCheckpoint(f"{bad} (no {FORMAT} header); it was left untouched")
    expected = header.get("payload_bytes")
    if len(payload) != expected:
        raise BadCheckpoint(
            f"{bad}: truncated or padded ({len(payload)} payload bytes, expected {expected}); it was left untouched"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise BadCheckpoint(f"{bad}: checksum mismatch (corrupted); it was left untouched")
    return header, payload


def check_header(path: str | Path, config: Config) -> tuple[dict[str, Any], bytes]:
    """The header and payload of the checkpoint at `path`, checked (format, length, checksum) and belonging to
    the run of `config` (its task and configuration, whatever its number of epochs).

    Raises:
        BadCheckpoint: if not; the file is left as it is.
    """
    config = _record(config)
    header, payload = read_header(path)
    if header.get("task") != config["task"]:
        raise BadCheckpoint(
            f"checkpoint {path} belongs to task {header.get('task')!r}, not {config['task']!r}; it was left untouched"
        )
    if header.get("config_hash") != config_hash(config):
        raise BadCheckpoint(
            f"checkpoint {path} was written for a different configuration than "
            f"{Path(path).parent / 'config.json'}; it was left untouched"
        )
    return header, payload


def load_checkpoint(path: str | Path, config: Config, template: tuple[jax.Array, RunState]) -> Checkpoint:
    """Read the checkpoint at `path` of the run of `config`, into `template` ``(key, TrainState)``.

    Raises:
        BadCheckpoint: if the file is missing, truncated, corrupted, of another format, task or configuration,
            or does not fit the template; the file is left as it is.
    """
    header, payload = check_header(path, config)
    try:
        key, state = eqx.tree_deserialise_leaves(io.BytesIO(payload), template)
    except Exception as e:  # noqa: BLE001 -- numpy/equinox raise several types on bad bytes
        raise BadCheckpoint(
            f"checkpoint {path} does not fit this run's parameters ({type(e).__name__}); it was left untouched"
        ) from None
    epoch, metrics = header.get("epoch"), header.get("metrics")
    if not isinstance(epoch, int) or not isinstance(metrics, list) or len(metrics) != epoch:
        raise BadCheckpoint(f"checkpoint {path} has an inconsistent header (epoch {epoch!r}); it was left untouched")
    return Checkpoint(epoch, state, key, metrics)
