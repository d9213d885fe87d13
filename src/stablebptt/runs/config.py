"""The configuration of a run: everything needed to rerun it, typed, frozen and checked once.

On disk it is ``config.json``::

    {"task": "cartpole", "task_settings": {"n_poles": 2, ...}, "train": {"method": "C", ...},
     "x64": false, "checkpoint_every": 1, "version": "0.2.0"}

with ``task_path`` added for a task of your own (``module.path:Name``): the folder its module was imported
from, so that the run can be resumed from any current directory. `config_hash` identifies a run: it leaves out
what does not change what an epoch computes (the number of epochs, so that a run can be extended; the
version; the checkpoint frequency; ``task_path``) and fills training settings left out with their defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..core import value_and_grad
from ..core.checks import BadInput, BadType, check_positive_int
from ..tasks import Task, is_builtin, load_task, module_root, recorded_settings
from ..training.optim import DECAYING, KERAS_EPS
from ..training.settings import DEFAULTS, FIELDS, TrainSettings, from_mapping
from ..training.shac import check_shac
from ..training.stream import check_window

# The history of the format, in one place (the writer and the reader of a run's configuration; nothing else knows
# old spellings or old defaults). Training settings added after the first release, with the value that means
# what runs did before they existed: a run's JSON records them only where they differ from that value, so the
# JSON (and hash) of a run that behaves as before is the same as before, and a ``config.json`` without them
# reads as the earlier behaviour.
ADDED = {"adam_eps": "optax", "regular_nonfinite": "stop"}  # added in 0.2.0 (also left out of the hash there)
ADDED_0_3 = {  # added after 0.2.0 (recipes other than the paper's, e.g. Brax's APG); defaults = earlier behaviour
    "schedule": "constant",
    "decay_rate": 0.997,
    "transition_steps": 1,
    "warmup_steps": 0,
    "decay_steps": None,
    "final_lr_fraction": 0.0,
    "adam_b1": 0.9,
    "adam_b2": 0.999,
    "adam_epsilon": KERAS_EPS,
    "clip_norm": 1.0,
    "protocol": "dataset",
    "window": None,
    "episode_length": None,
    "key_scheme": "stablebptt",
    # the SHAC protocol's (issue 43)
    "gamma": 0.99,
    "lam": 0.95,
    "critic_lr": 1e-3,
    "critic_schedule": "constant",
    "critic_iterations": 16,
    "critic_batches": 4,
    "target_alpha": 0.2,
    "critic_normalize": False,
    "critic_network": "mlp",
    "critic_order": "shuffled",
    "episode_restart": "window",
    "unroll": 1,  # issue 46: steps per iteration of the loops over time (the same numbers)
}
EARLIER = {"backward": "auto", "truncation": None, "remat": None, **ADDED, **ADDED_0_3}
LEGACY_NAMES = {"checkpoint": "remat"}  # earlier names of training settings (read, never written)


def train_to_json(settings: TrainSettings) -> dict[str, Any]:
    """A run's training settings as JSON values; those added after the first release (`EARLIER`) only where
    they differ from the value that means the earlier behaviour."""
    return {k: v for k, v in settings.values().items() if k not in EARLIER or v != EARLIER[k]}


def train_from_json(record: Any) -> TrainSettings:
    """Training settings from `train_to_json`'s dict (a ``config.json``'s ``train``, of this version or an earlier
    one): missing settings of `EARLIER` mean the earlier behaviour, other missing ones take their defaults;
    `LEGACY_NAMES` are read by their new names.

    Raises:
        BadInput: for a record that is not a mapping, an unknown setting or a bad value.
    """
    if not isinstance(record, Mapping):
        raise BadType(f"training settings must be a mapping of names to values, got {type(record).__name__}")
    record = dict(record)
    for old, new in LEGACY_NAMES.items():
        if old in record:
            if new in record:
                raise BadInput(f"training settings give both {old!r} and its new name {new!r}; keep {new!r}")
            record[new] = record.pop(old)
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise BadInput(f"unknown training settings: {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    return from_mapping({**{k: v for k, v in EARLIER.items() if k not in record}, **record})


TOP_KEYS = ("task", "task_settings", "task_path", "train", "x64", "checkpoint_every", "snapshot_every", "version")
UNHASHED_TOP = ("version", "checkpoint_every", "snapshot_every", "task_path")
UNHASHED_TRAIN = ("epochs",)
# Names in the hashed form (kept from the first format, so that hashes of older runs stay the same).
HASH_NAMES = {"remat": "checkpoint"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: the task (a built-in name or ``module.path:Name``) and its settings (for a built-in task its
    main settings, `tasks.TASK_OPTIONS`, are always recorded: those not given at their defaults), the training
    settings, the precision and how often the run's checkpoint is written (every `checkpoint_every` epochs).
    `snapshot_every`: also keep the controller's parameters every that many epochs, each in its own file
    (``snapshots/epoch-NNNNNN.eqx``; `stablebptt diagnose RUN_DIR` measures the gradients at each); None: none.

    Everything is checked when a `RunConfig` is made, the task included (it is built once, which checks its
    settings and the gradient options against its horizon): a bad value is one `BadInput` naming it.
    """

    task: str
    task_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainSettings = DEFAULTS
    x64: bool = False
    checkpoint_every: int = 1
    task_path: str | None = None
    version: str = __version__
    snapshot_every: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, str):
            raise BadType(f"task must be a task name or module.path:Name, got {self.task!r}")
        if not isinstance(self.task_settings, Mapping) or not all(isinstance(k, str) for k in self.task_settings):
            raise BadType(f"task_settings must map field names to values, got {self.task_settings!r}")
        # A built-in task's main settings are always recorded (left out: their defaults, the task's own).
        object.__setattr__(
            self,
            "task_settings",
            {**(recorded_settings(self.task) if is_builtin(self.task) else {}), **self.task_settings},
        )
        if not isinstance(self.train, TrainSettings):
            raise BadType(f"train must be a TrainSettings, got {type(self.train).__name__}")
        if not isinstance(self.x64, bool):
            raise BadType(f"x64 must be True or False, got {self.x64!r}")
        check_positive_int("checkpoint_every", self.checkpoint_every)
        if self.snapshot_every is not None:
            check_positive_int("snapshot_every", self.snapshot_every)
        if self.task_path is not None and not isinstance(self.task_path, str):
            raise BadType(f"task_path must be a folder name, got {self.task_path!r}")
        if not isinstance(self.version, str):
            raise BadType(f"version must be a string, got {self.version!r}")
        if self.task_path is None and not is_builtin(self.task) and ":" in self.task:
            object.__setattr__(self, "task_path", module_root(self.task))
        _ = self.train.rule.spelling  # a rule of one's own must be importable to be recorded (and resumed)
        task = self.make_task()
        value_and_grad(
            task.loss, task.step, task.controller, task.horizon, self.train.rule, **self.train.gradient_options
        )  # builds nothing; checks the options against the task
        if self.train.protocol == "shac":
            check_shac(task, self.train)  # before any folder or progress bar
        elif self.train.protocol == "stream" and not task.resets:
            check_window(task, self.train)

    @classmethod
    def create(
        cls,
        task: str,
        task_settings: Mapping[str, Any] | None = None,
        *,
        x64: bool = False,
        checkpoint_every: int = 1,
        snapshot_every: int | None = None,
        **train: Any,
    ) -> RunConfig:
        """A configuration from keyword training settings (any field of `TrainSettings`)."""
        from ..training.settings import from_mapping

        return cls(
            task, dict(task_settings or {}), from_mapping(train), x64, checkpoint_every, snapshot_every=snapshot_every
        )

    def make_task(self) -> Task:
        """The task (its module found through `task_path` when it is not on the Python path)."""
        return load_task(self.task, self.task_settings, path=self.task_path)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` to top-level fields; ``epochs=N`` (or any training setting) changes `train`."""
        train = {k: changes.pop(k) for k in list(changes) if k not in TOP_KEYS}
        if train:
            changes["train"] = changes.get("train", self.train).replace(**train)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        record = {"task": self.task, "task_settings": dict(self.task_settings)}
        if self.task_path is not None:
            record["task_path"] = self.task_path
        return {
            **record,
            "train": train_to_json(self.train),
            "x64": self.x64,
            "checkpoint_every": self.checkpoint_every,
            **({} if self.snapshot_every is None else {"snapshot_every": self.snapshot_every}),
            "version": self.version,
        }

    @classmethod
    def from_json(cls, record: Any) -> RunConfig:
        """The configuration of a ``config.json`` (of this version or an earlier one)."""
        if not isinstance(record, Mapping) or not {"task", "task_settings", "train"} <= set(record):
            raise BadInput("not a stablebptt run configuration (needs task, task_settings, train)")
        unknown = sorted(set(record) - set(TOP_KEYS))
        if unknown:
            raise BadInput(f"unknown run configuration keys: {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}")
        if not isinstance(record["train"], Mapping):
            raise BadType(f"train must be a mapping of training settings, got {record['train']!r}")
        fields = {
            k: record[k] for k in ("x64", "checkpoint_every", "snapshot_every", "task_path", "version") if k in record
        }
        return cls(record["task"], record["task_settings"], train_from_json(record["train"]), **fields)

    def hash(self) -> str:
        """SHA-256 identifying the run (see `config_hash`)."""
        return config_hash(self.to_json())


def config_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of a run configuration in its JSON form (`RunConfig.to_json` or a ``config.json`` as read),
    leaving out the number of epochs (unless a cosine schedule spans the run: `TrainSettings.schedule_needs_epochs`),
    the version, the checkpoint frequency and ``task_path``; training
    settings left out count as their defaults, or for those of `EARLIER` as their earlier
    behaviour; settings added in 0.2.0 (`ADDED`) at their earlier behaviour are left out (so a
    ``config.json`` written by earlier versions hashes as it did)."""
    core = {k: v for k, v in record.items() if k not in UNHASHED_TOP}
    filled = {k: v for k, v in train_to_json(DEFAULTS).items() if k not in EARLIER}
    train = {**filled, **record.get("train", {})}
    # a cosine schedule over the whole run changes with its length: there the epochs are part of the run
    spans_run = train.get("schedule") in DECAYING and train.get("decay_steps") is None
    core["train"] = {
        HASH_NAMES.get(k, k): v
        for k, v in train.items()
        if (k not in UNHASHED_TRAIN or spans_run) and not (k in ADDED and v == ADDED[k])
    }
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=_json_default).encode()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"not a JSON value: {value!r}")


def same_run(record: Mapping[str, Any], config: RunConfig) -> bool:
    """Whether a ``config.json`` as read describes the run of `config` (the number of epochs may differ)."""
    if config_hash(record) == config.hash():
        return True
    try:
        return RunConfig.from_json(record).hash() == config.hash()  # written by an earlier version
    except (BadInput, ImportError):
        return False
