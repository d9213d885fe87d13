"""Faults in a user's own task: a step, controller, loss, sample or init_controller that raises (or is given
states of the wrong shape), a step that changes the state's structure, a sample that is not arrays, and a NaN at
a later epoch. Training raises one `BadInput` (a `SimulatorFault` for an error raised inside user code) whose
one-line message names the user's function; on the command line the run records it in status.json and exits 2
(3 for a divergence, keeping the last good epoch); a sweep records the run and goes on."""

from __future__ import annotations

import json
import re
import sys
import types
import uuid

import jax
import pytest

from stablebptt.cli.main import main
from stablebptt.core import trees
from stablebptt.core.checks import BadInput, BadType, SimulatorFault
from stablebptt.runs.checkpoint import read_header
from stablebptt.runs.io import read_csv
from stablebptt.training import train

TASK_MODULE = '''
"""Point masses pushed to the origin (horizon 5) and broken variants of it."""
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from stablebptt.tasks import Task


class Puck(Task):
    name: ClassVar[str] = "puck"
    horizon: int = eqx.field(static=True, default=5)
    dt: float = eqx.field(static=True, default=0.1)
    broken: int = eqx.field(static=True, default=0)

    def step(self, x, c):
        if self.broken:
            raise RuntimeError("broken simulator")
        vel = x["vel"] + self.dt * c["force"]
        return {"pos": x["pos"] + self.dt * vel, "vel": vel}

    def loss(self, states, controls):
        return jnp.mean(states["pos"][-1] ** 2)

    def sample(self, key, n):
        kp, kv = jax.random.split(key)
        return {"pos": jax.random.normal(kp, (n, 2)), "vel": 0.1 * jax.random.normal(kv, (n, 2))}

    def init_controller(self, key):
        return eqx.nn.MLP(4, 2, 8, 1, key=key)

    def controller(self, params, x):
        return {"force": jax.vmap(params)(jnp.concatenate([x["pos"], x["vel"]], axis=-1))}


class Raises(Puck):
    def step(self, x, c):
        raise RuntimeError("my simulator broke\\nsecond line")


class Shape(Puck):  # states the controller (4 inputs) cannot take
    def sample(self, key, n):
        return {"pos": jnp.zeros((n, 3)), "vel": jnp.zeros((n, 2))}


class LossRaises(Puck):
    def loss(self, states, controls):
        raise ZeroDivisionError("no loss today")


class SampleRaises(Puck):
    def sample(self, key, n):
        raise KeyError("pos")


class InitRaises(Puck):
    def init_controller(self, key):
        raise ValueError("no network")


class Structure(Puck):
    def step(self, x, c):
        y = super().step(x, c)
        return {**y, "extra": y["pos"]}


class Lists(Puck):
    def sample(self, key, n):
        return {"pos": [[0.0, 0.0]] * n, "vel": jnp.zeros((n, 2))}


class Interrupted(Puck):
    def sample(self, key, n):
        raise KeyboardInterrupt


class NaNAtEpoch3(Puck):
    """Finite for two epochs: the third update makes the controller's output NaN (a counter in the parameters,
    advanced by `observe` after each update; one update per epoch with 8 states in batches of 8)."""

    def init_controller(self, key):
        return {"net": eqx.nn.MLP(4, 2, 8, 1, key=key), "updates": jnp.zeros(())}

    def controller(self, params, x):
        force = jax.vmap(params["net"])(jnp.concatenate([x["pos"], x["vel"]], axis=-1))
        return {"force": jnp.where(params["updates"] >= 3, jnp.nan, force)}

    def observe(self, params, x0):
        return {**params, "updates": params["updates"] + 1}
'''
_module = sys.modules.setdefault("user_fault_tasks", types.ModuleType("user_fault_tasks"))  # the CLI's code
exec(compile(TASK_MODULE, "user_fault_tasks.py", "exec"), _module.__dict__)
TASKS = _module.__dict__

TINY = {"epochs": 2, "n_train": 8, "n_test": 8, "batch_size": 8}
CLI_TINY = ["--n-train", "8", "--n-test", "8", "--batch-size", "8", "--method", "R"]


def _fails(name: str, error: type = SimulatorFault, method: str = "R") -> BadInput:
    with pytest.raises(error) as info:
        train(TASKS[name](), method, **TINY)
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


def test_a_step_that_raises_is_named_with_its_error_chained():
    e = _fails("Raises")
    assert str(e).startswith(
        "the simulator step `Raises.step` raised RuntimeError: my simulator broke (its input: state {'pos': 'float"
    ), e
    assert isinstance(e.__cause__, RuntimeError) and "second line" in str(e.__cause__)


def test_a_controller_given_wrong_shaped_states_names_them():
    e = _fails("Shape", method="C")
    assert str(e).startswith("the controller `Shape.controller` raised TypeError: dot_general requires"), e
    assert re.search(r"\(its input: \{'pos': 'float\d+\[8,3\]', 'vel': 'float\d+\[8,2\]'\}\)$", str(e)), e


@pytest.mark.parametrize(
    "name,words",
    [
        ("LossRaises", "the loss `LossRaises.loss` raised ZeroDivisionError: no loss today (its input: states {"),
        (
            "SampleRaises",
            "the sampler `SampleRaises.sample` raised KeyError: 'pos' (called as SampleRaises.sample(key, 8))",
        ),
        ("InitRaises", "the controller initialiser `InitRaises.init_controller` raised ValueError: no network"),
    ],
)
def test_loss_sample_and_init_controller_that_raise_are_named(name, words):
    e = _fails(name)
    assert str(e).startswith(words), e
    assert e.__cause__ is not None


def test_our_own_checks_pass_unwrapped():
    e = _fails("Structure", BadInput)
    assert type(e) is BadInput and e.__cause__ is None
    assert str(e).startswith("the simulator step `Structure.step` returned a state of another structure"), e
    e = _fails("Lists", BadType)
    assert str(e).startswith("Lists.sample(key, 8) returned a leaf at ['pos'][0][0] that is not an array (float)"), e


def test_keyboard_interrupt_is_not_caught():
    with pytest.raises(KeyboardInterrupt):
        train(TASKS["Interrupted"](), "R", **TINY)


def test_guard_names_and_passes_bad_input():
    task = TASKS["Shape"]()
    assert trees.name_of(task.controller) == "Shape.controller"  # the task run, though Puck defines it
    assert trees.name_of(TASKS["Puck"].step) == "Puck.step" and trees.name_of(len) == "len"

    def checks(x):
        raise BadInput("already one line")

    with pytest.raises(BadInput, match="^already one line$") as info:
        trees.guard("loss", checks)(1)
    assert type(info.value) is BadInput and str(info.value) == "already one line"

    def boom():
        raise ValueError()

    with pytest.raises(SimulatorFault, match=r"^the loss `.*boom` raised ValueError$"):
        trees.guard("loss", boom)()
    # At trace time only: the compiled program is the same as without the wrapper.
    f = jax.jit(trees.guard("loss", lambda x: x * 2, trees.loss_inputs))
    assert float(f(2.0)) == 4.0


# ------------------------------------------------------------------------------------------ the command line


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The task module under a fresh name in the current folder; returns its name."""
    name = f"faulty_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASK_MODULE)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def test_train_records_a_fault_in_status_and_exits_2_with_one_line(project, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", f"{project}:Raises", "--epochs", "2", "--out", str(out), *CLI_TINY]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    prefix = "stablebptt train: error: the simulator step `Raises.step` raised RuntimeError: my simulator broke ("
    assert lines[0].startswith(prefix), err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["message"].endswith(lines[0].removeprefix("stablebptt train: error: ")), status
    assert (out / "config.json").exists()


def test_a_nan_at_a_later_epoch_keeps_the_last_good_epoch(project, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", f"{project}:NaNAtEpoch3", "--epochs", "3", "--out", str(out), *CLI_TINY]) == 3
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "diverged" and status["diverged_epoch"] == 3 and status["checkpoint_epoch"] == 2
    assert read_header(out / "checkpoint.eqx")[0]["epoch"] == 2
    rows = {int(r["epoch"]): float(r["loss"]) for r in read_csv(out / "metrics.csv")}
    assert {1, 2} <= set(rows) and all(rows[e] == rows[e] for e in (1, 2))  # the good epochs, finite


@pytest.mark.parametrize("batching", ["off", "on"])
def test_a_sweep_records_the_faulty_run_and_goes_on(project, tmp_path, capsys, batching):
    assert (
        main(
            [
                "sweep",
                f"{project}:Puck",
                "--set",
                "broken=0,1",
                "--epochs",
                "1",
                *CLI_TINY[:-2],
                "--workers",
                "1",
                "--batch-runs",
                batching,
                "--out",
                "sw",
            ]
        )
        == 1
    )
    status = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "sw").glob("*/status.json")}
    assert sorted(s["status"] for s in status.values()) == ["complete", "failed"], status
    failed = next(s for s in status.values() if s["status"] == "failed")
    assert "the simulator step `Puck.step` raised RuntimeError: broken simulator" in failed["message"], failed
