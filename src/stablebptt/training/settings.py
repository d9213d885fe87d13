"""The settings of a training run, declared once: names, defaults and checks (docs/concepts.md, training protocol).

`TrainSettings` is frozen and checked completely when it is made, so that code that receives one (the
trainer, the run folders, the command line) never checks a setting again.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import optax

from ..core import as_backward, as_method, check_backward, check_remat, check_truncation
from ..core.checks import BadArgument, BadInput, BadType, check_choice, check_positive_int
from ..core.methods import REGULAR_NONFINITE, Method, SignCombined
from ..core.strategies import BACKWARDS, Backward, Remat
from ..core.unroll import check_unroll
from .optim import ADAM_EPS_FORMS, CLIP_MODES, DECAYING, KERAS_EPS, OPTIMIZERS, SCHEDULES, learning_rate, optimizer

# Settings passed on to `core.value_and_grad`.
GRADIENT_FIELDS = ("backward", "truncation", "remat", "unroll")
PROTOCOLS = ("dataset", "stream", "shac")  # the names of `training.protocols.PROTOCOL_OBJECTS`
# The SHAC protocol's own settings (DiffRL's values for its smaller tasks; `training.shac`), refused elsewhere.
SHAC_FIELDS = (
    "gamma",
    "lam",
    "critic_lr",
    "critic_schedule",
    "critic_iterations",
    "critic_batches",
    "target_alpha",
    "critic_normalize",
    "critic_network",
    "critic_order",
    "episode_restart",
)
CRITIC_SCHEDULES = ("constant", "linear")
CRITIC_NETWORKS = ("mlp", "diffrl")  # `training.shac.critic_net`
CRITIC_ORDERS = ("shuffled", "steps")  # `training.shac` fits the critic on a window's samples in this order
EPISODE_RESTARTS = ("window", "step")  # where the SHAC protocol restarts an episode of a task that does not reset
KEY_SCHEMES = ("stablebptt", "apg")  # how a stream run's seed becomes its keys (`training.stream.apg_keys`)


# How a setting is given as text (on the command line): a kind the command line has a parser for, or the tuple
# of allowed values; with its help (``$name`` naming another setting, shown as the command line spells it) and
# the placeholder of its value. Declared once, on the field (`_setting`); the command line's options are made
# from these (`cli.options.TRAIN_OPTIONS`).
KINDS = (
    "method",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "optional_positive_int",
    "remat",
    "switch",
)


def _setting(default: Any, kind: str | tuple[str, ...], help: str, metavar: str | None = None) -> Any:
    """A `TrainSettings` field: its default, and in its metadata how it is given as text (`KINDS` or the allowed
    values), its help and its value's placeholder."""
    assert kind in KINDS or isinstance(kind, tuple), kind
    return dataclasses.field(default=default, metadata={"kind": kind, "help": help, "metavar": metavar})


def _check_switch(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadType(f"{name} must be True or False, got {value!r}")
    return value


def _check_in(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """`value` as a float if it is a real number in the interval from `low` to `high` (open where said; `high`
    may be infinite); the error names the setting `name` (its flag on the command line)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        what = (
            "a positive finite number"
            if (low, low_open, high) == (0.0, True, math.inf)
            else f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        )
        raise BadArgument(f"${name} must be {what}, got {value!r}", **{name: None})
    return float(value)


def _check_count(name: str, value: Any, least: int = 0) -> int:
    """`value` as an int if it is an integer >= `least` (not a bool); the error names the setting `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        what = "a non-negative integer" if least == 0 else "a positive integer"
        raise BadArgument(f"${name} must be {what}, got {value!r}", **{name: None})
    return int(value)


def _check_positive_finite(name: str, value: Any) -> float:
    # typeshed's numbers.Real declares __lt__ and __le__ but no __gt__, so mypy rejects `value > 0`:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:  # type: ignore[operator]
        raise BadInput(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise BadInput(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How a controller is trained: the protocol of docs/concepts.md, training protocol and the options of the gradient.

    Attributes:
        method: the gradient rule: R, M, S, N or C (a letter in either case, or regular, modified, stopped,
            network, combined), a `core.Method` (a rule of your own too), or ``module.path:Name`` naming one;
            stored as its spelling (`core.Method.spelling`: the paper letter, or ``module.path:Name``). The
            rule itself, with its non-finite policy, is `rule`.
        epochs: passes over the training set.
        batch_size: initial states per update; at most `n_train`.
        lr: learning rate.
        optimizer: one of `optim.OPTIMIZERS` (Keras defaults).
        clip: clipping of the update: none, value (each entry to [-clip_value, clip_value]), norm (global norm
            to clip_value), both (global norm to `clip_norm`, then each entry to clip_value, as Brax's APG).
        clip_value: the clipping threshold.
        seed: data and initialisation seed, an integer in [0, 2**32).
        n_train, n_test: initial states sampled for training and for the test loss.
        skip_nonfinite: skip updates with a non-finite loss, gradient or result instead of stopping the run.
        backward, truncation, remat, unroll: passed to `core.value_and_grad` (remat: None, "sqrt", "states" or a
            segment length K; recompute the forward pass in segments to save memory). Strategy objects
            (`core.Joint()`, `core.Segments(4)`) are stored as their spellings, so configs and their hashes do
            not depend on how an option was given.
        adam_eps: where Adam adds epsilon: "keras" (to the raw square root of v, as the published code;
            the default) or "optax" (to the bias-corrected one, `optax.adam`). See `optim.scale_by_keras_adam`.
        regular_nonfinite: for C, its non-finite policy (`core.SignCombined.regular_nonfinite`, recorded as a
            setting of its own), what a non-finite entry of g_R does: "zero" (it counts as disagreement, the
            update is 0 there and the run goes on, as the published code; counted per epoch in the metric
            ``regular_nonfinite``; the default) or "stop" (the run stops as diverged). A non-finite g_M, loss or
            update always stops the run (unless `skip_nonfinite`).
        schedule: the learning rate over updates (`optim.learning_rate`): "constant" (the paper's),
            "exponential" (``lr * decay_rate ** (update / transition_steps)``), "cosine" or "linear" (down to
            ``final_lr_fraction * lr`` over `decay_steps` updates; None: the run's updates after the warmup);
            each after a linear warmup of `warmup_steps` updates from 0 (0: none).
        decay_rate, transition_steps, warmup_steps, decay_steps, final_lr_fraction: the schedule's parameters.
        adam_b1, adam_b2, adam_epsilon: Adam's betas and epsilon (Keras' defaults 0.9, 0.999, 1e-7; Brax's APG
            uses betas 0.7, 0.95); other optimizers keep their own.
        clip_norm: the global-norm threshold of clip "both".
        protocol: how updates see the simulator (`training.stream`): "dataset" (the paper's: every update
            unrolls the task's horizon from a mini-batch of fixed initial states; epochs pass over them) or
            "stream" (as Brax's APG: `batch_size` environments run on; each update unrolls `window` steps from
            where the previous one stopped, and an environment whose episode reached `episode_length` steps
            starts a new one, from a fresh `Task.sample`, at the next window; an epoch is
            ``n_train // batch_size`` updates, as in the dataset protocol, and the losses of an epoch's end are
            those of the dataset protocol, over the task's horizon).
        window, episode_length: the stream protocol's steps per update and per episode (None: the task's
            horizon); not used by the dataset protocol. A task that resets its episodes itself (`Task.resets`,
            e.g. `BraxTask` with `auto_reset`) refuses the protocol's `episode_length`.
        key_scheme: how the stream protocol draws the network's initialisation, the first environments, their
            clocks and the key it carries from `seed`: "stablebptt" (its own) or "apg" (as Brax's
            ``apg.train(seed=seed)`` does: with `BraxTask`'s APG network, the same initial network,
            environments and action noise; `training.stream.apg_keys`). The data of the epochs' losses come
            from the seed either way.
        gamma, lam, critic_lr, critic_schedule, critic_iterations, critic_batches, target_alpha,
        critic_normalize, critic_network, critic_order: the SHAC protocol's critic (`training.shac`); refused
            with another protocol.
            `critic_schedule` "linear" is DiffRL's decay of the critic's learning rate over the run (to 1e-5,
            one step per actor update; `training.shac.critic_learning_rate`). `critic_normalize` standardises
            the critic's inputs (the task's `critic_input`) by their running mean and variance (DiffRL's
            ``obs_rms``, with Brax's statistics, `nn.Normalizer`); the actor's inputs are the task's own (e.g.
            ``BraxTask(normalize_observations=True)``). `critic_network` "diffrl" is DiffRL's ``CriticMLP``
            (a LayerNorm after each hidden ELU layer, orthogonal kernels), "mlp" the same widths without the
            LayerNorms and with Glorot kernels. `critic_order` "steps" cuts a window's samples, in step order,
            into the same contiguous minibatches in every pass (DiffRL's ``CriticDataset``, never shuffled);
            "shuffled" draws them anew each pass. `episode_restart`, for a task that does not reset itself: "window"
            (the stream protocol's) restarts an episode that reached `episode_length` steps at the next window's
            start, so that it runs on to the first window end at or after its length (with windows of 32 and
            episodes of 100, 128 steps); "step" restarts it at the step it reaches its length, inside the window,
            as DiffRL's environments reset themselves (`training.shac.Restarting`).
    """

    method: str | Method = _setting(
        "C",
        "method",
        "R, M, S, N or C (either case), or module.path:Name, a gradient rule of your own (a stablebptt.core.Method "
        "instance or subclass, imported with the current directory first on the Python path)",
    )
    epochs: int = _setting(1000, "positive_int", "epochs")
    batch_size: int = _setting(8, "positive_int", "mini-batch size")
    lr: float = _setting(1e-3, "positive_float", "learning rate")
    optimizer: str = _setting("adam", tuple(OPTIMIZERS), f"{', '.join(OPTIMIZERS)} (Keras eps)")
    clip: str = _setting(
        "none",
        CLIP_MODES,
        "clipping of the update: none, value (each entry), norm (global norm), both (global norm to $clip_norm, "
        "then each entry to $clip_value, as Brax's APG)",
    )
    clip_value: float = _setting(1.0, "positive_float", "clipping threshold (value and norm; value of both)")
    seed: int = _setting(42, "nonnegative_int", "data and initialisation seed")
    n_train: int = _setting(256, "positive_int", "training initial states")
    n_test: int = _setting(256, "positive_int", "test initial states")
    skip_nonfinite: bool = _setting(
        False,
        "switch",
        "skip updates with a NaN/inf loss or gradient instead of stopping the run as diverged (counted in "
        "metrics.csv's skipped; a run that skips more than half of its updates, or all of an epoch's, ends as "
        "diverged)",
    )
    backward: str | Backward = _setting("auto", BACKWARDS, f"backward pass: {', '.join(BACKWARDS)}")
    truncation: int | None = _setting(
        None,
        "positive_int",
        "cut all gradient flow along time every K steps (truncated BPTT; K below the horizon, else nothing is cut)",
        "K",
    )
    remat: int | str | Remat | None = _setting(
        None,
        "remat",
        "memory for long horizons: recompute the forward pass in segments of sqrt(horizon) steps, 1 step "
        "(states), or K steps (K below the horizon) during the backward pass; a run estimated not to fit in "
        "memory is refused before it starts",
        "none|sqrt|states|K",
    )
    unroll: int = _setting(
        1,
        "positive_int",
        "steps per iteration of the compiled loops over time (lax.scan's unroll): the same numbers, a larger "
        "program; a few steps can run faster where each step is small (benchmarks/arithmetic.py)",
        "K",
    )
    adam_eps: str = _setting(
        "keras",
        ADAM_EPS_FORMS,
        "where Adam adds epsilon: keras (to sqrt(v), as the published code) or optax (to the bias-corrected sqrt(v))",
    )
    regular_nonfinite: str = _setting(
        "zero",
        REGULAR_NONFINITE,
        "C only: a non-finite entry of g_R counts as disagreement, update 0 there (zero, as published) or "
        "stops the run as diverged (stop)",
    )
    schedule: str = _setting(
        "constant",
        SCHEDULES,
        "learning rate over updates: constant (the paper's), exponential (lr * decay-rate^(update / "
        "transition-steps), Brax's APG: 0.997 per update), cosine or linear (to final-lr-fraction * lr over "
        "decay-steps updates; DiffRL's SHAC: linear), each after $warmup_steps",
    )
    decay_rate: float = _setting(0.997, "positive_float", "exponential schedule: factor per transition")
    transition_steps: int = _setting(1, "positive_int", "exponential schedule: updates per factor")
    warmup_steps: int = _setting(0, "nonnegative_int", "linear warmup from 0 over this many updates")
    decay_steps: int | None = _setting(
        None,
        "optional_positive_int",
        "cosine and linear schedules: updates to decay over (none: the run's updates after the warmup)",
        "N|none",
    )
    final_lr_fraction: float = _setting(0.0, "nonnegative_float", "cosine and linear schedules: final lr / lr")
    adam_b1: float = _setting(0.9, "nonnegative_float", "Adam's beta 1 (Keras 0.9; Brax's APG 0.7)")
    adam_b2: float = _setting(0.999, "nonnegative_float", "Adam's beta 2 (Keras 0.999; Brax's APG 0.95)")
    adam_epsilon: float = _setting(KERAS_EPS, "positive_float", "Adam's epsilon (see $adam_eps for where)")
    clip_norm: float = _setting(1.0, "positive_float", "global-norm threshold of clip both")
    protocol: str = _setting(
        "dataset",
        PROTOCOLS,
        "dataset (the paper's: each update unrolls the horizon from fixed initial states), stream (as Brax's "
        "APG: environments run on, each update unrolls $window steps from where the last one stopped, episodes "
        "of $episode_length steps restart from fresh states) or shac (the stream's windows plus a learned critic's "
        "value at each window's end, SHAC as DiffRL's shac.py: $gamma, $lam, $critic_lr, ...)",
    )
    window: int | None = _setting(None, "optional_positive_int", "stream: steps per update (none: the horizon)", "K")
    episode_length: int | None = _setting(
        None, "optional_positive_int", "stream: steps of an episode (none: the horizon)", "N"
    )
    key_scheme: str = _setting(
        "stablebptt",
        KEY_SCHEMES,
        "stream: how the seed becomes the run's keys: stablebptt's own, or apg (as Brax's apg.train(seed=...): "
        "with brax:NAME --set network=apg, its initial network, environments and action noise)",
    )
    gamma: float = _setting(0.99, "nonnegative_float", "shac: the discount of rewards, in [0, 1] (DiffRL's 0.99)")
    lam: float = _setting(0.95, "nonnegative_float", "shac: the critic's TD-lambda, in [0, 1] (DiffRL's 0.95)")
    critic_lr: float = _setting(1e-3, "positive_float", "shac: the critic's learning rate (Adam, betas 0.7, 0.95)")
    critic_schedule: str = _setting(
        "constant",
        CRITIC_SCHEDULES,
        "shac: the critic's learning rate over the run: constant, or linear (DiffRL's: from --critic-lr towards "
        "1e-5, one step per actor update)",
    )
    critic_iterations: int = _setting(16, "positive_int", "shac: passes over a window's samples per update (16)")
    critic_batches: int = _setting(4, "positive_int", "shac: minibatches of a pass over a window's samples (4)")
    target_alpha: float = _setting(
        0.2, "nonnegative_float", "shac: the target critic keeps this share of itself per update (DiffRL's 0.2)"
    )
    critic_normalize: bool = _setting(
        False,
        "switch",
        "shac: standardise the critic's inputs by their running mean and variance, frozen within each window "
        "(DiffRL's obs_rms; the actor's inputs are the task's own)",
    )
    critic_network: str = _setting(
        "mlp",
        CRITIC_NETWORKS,
        "shac: the critic's network: mlp (64x64 ELU, Glorot kernels) or diffrl (DiffRL's CriticMLP: a LayerNorm "
        "after each hidden ELU layer, orthogonal kernels)",
    )
    critic_order: str = _setting(
        "shuffled",
        CRITIC_ORDERS,
        "shac: the critic's minibatches: shuffled anew each pass, or steps (DiffRL's: a window's samples in step "
        "order, cut into the same contiguous minibatches every pass)",
    )
    episode_restart: str = _setting(
        "window",
        EPISODE_RESTARTS,
        "shac, a task that does not reset itself: restart an episode that reached $episode_length steps at the next "
        "window (window, the stream protocol's: it runs on to that window's end) or at that step (step, inside the "
        "window, as DiffRL's environments)",
    )

    def __post_init__(self) -> None:
        rule = as_method(self.method)
        nonfinite = self.regular_nonfinite
        if isinstance(rule, SignCombined) and rule.regular_nonfinite != "zero" and nonfinite == "zero":
            nonfinite = rule.regular_nonfinite  # a rule given with its policy
        converted = {
            "method": _spelling(rule),
            "epochs": check_positive_int("epochs", self.epochs),
            "batch_size": check_positive_int("batch size", self.batch_size),
            "n_train": check_positive_int("n_train", self.n_train),
            "n_test": check_positive_int("n_test", self.n_test),
            "lr": _check_positive_finite("learning rate", self.lr),
            "optimizer": check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS)),
            "clip": check_choice("clip mode", self.clip, CLIP_MODES),
            "clip_value": _check_positive_finite("clip value", self.clip_value),
            "backward": check_backward(self.backward),
            "truncation": check_truncation(self.truncation),
            "remat": check_remat(self.remat),
            "unroll": check_unroll(self.unroll),
            "adam_eps": check_choice("adam eps form", self.adam_eps, ADAM_EPS_FORMS),
            "regular_nonfinite": check_choice("regular_nonfinite", nonfinite, REGULAR_NONFINITE),
            "schedule": check_choice("schedule", self.schedule, SCHEDULES),
            "decay_rate": _check_in("decay_rate", self.decay_rate, 0.0, 1.0, low_open=True),
            "transition_steps": _check_count("transition_steps", self.transition_steps, 1),
            "warmup_steps": _check_count("warmup_steps", self.warmup_steps),
            "decay_steps": None if self.decay_steps is None else _check_count("decay_steps", self.decay_steps, 1),
            "final_lr_fraction": _check_in("final_lr_fraction", self.final_lr_fraction, 0.0, 1.0),
            "adam_b1": _check_in("adam_b1", self.adam_b1, 0.0, 1.0, high_open=True),
            "adam_b2": _check_in("adam_b2", self.adam_b2, 0.0, 1.0, high_open=True),
            "adam_epsilon": _check_in("adam_epsilon", self.adam_epsilon, 0.0, math.inf, low_open=True),
            "clip_norm": _check_in("clip_norm", self.clip_norm, 0.0, math.inf, low_open=True),
            "protocol": check_choice("protocol", self.protocol, PROTOCOLS),
            "window": None if self.window is None else _check_count("window", self.window, 1),
            "episode_length": None
            if self.episode_length is None
            else _check_count("episode_length", self.episode_length, 1),
            "key_scheme": check_choice("key scheme", self.key_scheme, KEY_SCHEMES),
            "gamma": _check_in("gamma", self.gamma, 0.0, 1.0),
            "lam": _check_in("lam", self.lam, 0.0, 1.0),
            "critic_lr": _check_in("critic_lr", self.critic_lr, 0.0, math.inf, low_open=True),
            "critic_schedule": check_choice("critic schedule", self.critic_schedule, CRITIC_SCHEDULES),
            "critic_iterations": _check_count("critic_iterations", self.critic_iterations, 1),
            "critic_batches": _check_count("critic_batches", self.critic_batches, 1),
            "target_alpha": _check_in("target_alpha", self.target_alpha, 0.0, 1.0),
            "critic_normalize": _check_switch("critic_normalize", self.critic_normalize),
            "critic_network": check_choice("critic network", self.critic_network, CRITIC_NETWORKS),
            "critic_order": check_choice("critic order", self.critic_order, CRITIC_ORDERS),
            "episode_restart": check_choice("episode restart", self.episode_restart, EPISODE_RESTARTS),
        }
        _refuse_unused(converted)
        if converted["protocol"] != "shac":
            given = [name for name in SHAC_FIELDS if converted[name] != DEFAULT_SHAC[name]]
            if given:
                whose = "SHAC protocol" if given[0] == "episode_restart" else "SHAC protocol's critic"
                raise BadArgument(
                    f"${given[0]} is a setting of the {whose}; give $protocol or leave it out",
                    **{given[0]: None},
                    protocol="shac",
                )
        if converted["protocol"] == "dataset":
            given = [name for name in ("window", "episode_length") if converted[name] is not None]
            if converted["key_scheme"] != "stablebptt":
                raise BadArgument(
                    "$key_scheme draws the keys of the stream protocol; give $protocol or leave it out",
                    key_scheme="apg",
                    protocol="stream",
                )
            if given:
                raise BadArgument(
                    f"${given[0]} applies to the stream protocol only; give $protocol or leave it out",
                    **{given[0]: None},
                    protocol="stream",
                )
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
            raise BadInput(f"seed must be an integer in [0, 2**32), got {seed!r}")
        converted["seed"] = int(seed)
        if not isinstance(self.skip_nonfinite, bool):
            raise BadType(f"skip_nonfinite must be True or False, got {self.skip_nonfinite!r}")

        if converted["batch_size"] > converted["n_train"]:
            raise BadInput(
                f"batch size {self.batch_size} is larger than the training set ({self.n_train} states); "
                f"allowed: 1..{self.n_train}"
            )
        # a backward that cannot differentiate this method or truncation fails here, not when training starts
        if isinstance(rule, SignCombined):
            rule = dataclasses.replace(rule, regular_nonfinite=converted["regular_nonfinite"])
        as_backward(converted["backward"]).check(rule, converted["truncation"])
        for name, value in converted.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_rule", rule)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its values (a rule by its spelling), so that a process that unpickles it (a sweep's worker)
        imports a rule of one's own as the command line does, with the current directory first on the path."""
        return (from_mapping, (self.values(),))

    @property
    def rule(self) -> Method:
        """The gradient rule (`core.Method`), with C's non-finite policy `regular_nonfinite`."""
        rule: Method = self._rule  # type: ignore[attr-defined]
        return rule

    @property
    def updates(self) -> int:
        """Updates of the whole run: epochs x (n_train // batch_size)."""
        return self.epochs * (self.n_train // self.batch_size)

    @property
    def schedule_needs_epochs(self) -> bool:
        """Whether the learning rate at an update depends on the number of epochs (a decaying schedule over the
        whole run, the actor's or, under SHAC, the critic's)."""
        critic = self.protocol == "shac" and self.critic_schedule != "constant"
        return (self.schedule in DECAYING and self.decay_steps is None) or critic

    def learning_rate(self, lr: Any = None) -> Any:
        """The learning rate as `optim.learning_rate` schedules it; `lr` (e.g. a traced array, one per run of a
        group) replaces ``self.lr``."""
        decay_steps = self.decay_steps or max(1, self.updates - self.warmup_steps)
        return learning_rate(
            self.lr if lr is None else lr,
            self.schedule,
            decay_rate=self.decay_rate,
            transition_steps=self.transition_steps,
            warmup_steps=self.warmup_steps,
            decay_steps=decay_steps,
            final_lr_fraction=self.final_lr_fraction,
        )

    def transform(
        self, *, lr: Any = None, clip: Any = None, clip_value: Any = None, keras: Any = None
    ) -> optax.GradientTransformation:
        """The Optax transformation these settings train with: clipping, then the optimizer with the scheduled
        learning rate. The keyword arguments (traced values, one per run of a `jax.vmap`ped group: a learning
        rate, an index into `optim.CLIP_MODES`, a threshold, a bool for Keras' epsilon form) replace the
        settings' own."""
        return optimizer(
            self.optimizer,
            self.learning_rate(lr),
            self.clip if clip is None else clip,
            self.clip_value if clip_value is None else clip_value,
            self.adam_eps if keras is None else keras,
            clip_norm=self.clip_norm,
            b1=self.adam_b1,
            b2=self.adam_b2,
            eps=self.adam_epsilon,
        )

    @property
    def gradient_options(self) -> dict[str, Any]:
        """The keyword arguments of `core.value_and_grad` (besides the method)."""
        return {name: getattr(self, name) for name in GRADIENT_FIELDS}

    def replace(self, **changes: Any) -> TrainSettings:
        """A copy with `changes` (checked like a new one); the rule is kept as an object (a rule of one's own need
        not be importable), its non-finite policy as the setting `regular_nonfinite`."""
        rule = self.rule
        if isinstance(rule, SignCombined):
            rule = dataclasses.replace(rule, regular_nonfinite="zero")
        return from_mapping({**self.values(), "method": rule, **changes})

    def values(self) -> dict[str, Any]:
        """Every setting by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# Settings that only one kind of schedule reads, with their defaults: given otherwise they would do nothing.
SCHEDULE_FIELDS = {
    "decay_steps": (DECAYING, None),
    "final_lr_fraction": (DECAYING, 0.0),
    "decay_rate": (("exponential",), 0.997),
    "transition_steps": (("exponential",), 1),
}


def _refuse_unused(converted: dict[str, Any]) -> None:
    """Refuse a schedule's setting given with another schedule, and a warmup as long as the run: each would do
    nothing (or train the whole run at a learning rate near 0) and still be recorded."""
    for name, (schedules, default) in SCHEDULE_FIELDS.items():
        if converted[name] != default and converted["schedule"] not in schedules:
            raise BadArgument(
                f"${name} is read by the {' and '.join(schedules)} schedule{'s' if len(schedules) > 1 else ''} only; "
                "give $schedule or leave it out",
                **{name: None},
                schedule=schedules[0],
            )
    updates = converted["epochs"] * (converted["n_train"] // converted["batch_size"])
    if converted["warmup_steps"] > 0 and converted["warmup_steps"] >= updates:
        raise BadArgument(
            f"$warmup_steps is as long as the run ({updates} updates), which would train at a learning rate near "
            "0 throughout; give a shorter warmup or more $epochs",
            warmup_steps=converted["warmup_steps"],
            epochs=None,
        )


def _spelling(rule: Method) -> str:
    """The rule's spelling; a rule that cannot be recorded (defined in ``__main__``) is kept by its class's name
    for training in memory, and refused where a run is recorded (`runs.config.RunConfig`)."""
    try:
        return rule.spelling
    except BadInput:
        return f"{type(rule).__module__}:{type(rule).__qualname__}"


FIELDS = tuple(f.name for f in dataclasses.fields(TrainSettings))
DEFAULT_SHAC = {f.name: f.default for f in dataclasses.fields(TrainSettings) if f.name in SHAC_FIELDS}
DEFAULTS = TrainSettings()


def from_mapping(settings: Mapping[str, Any]) -> TrainSettings:
    """`TrainSettings` from a mapping of setting names, refusing names that are not settings."""
    if not isinstance(settings, Mapping):
        raise BadType(f"training settings must be a mapping of names to values, got {type(settings).__name__}")
    settings = dict(settings)
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise BadInput(f"unknown training settings: {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    return TrainSettings(**settings)
