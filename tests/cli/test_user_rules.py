"""Gradient rules of your own (``module.path:Name``), written in one module outside the package: trained from
the command line, in a batched sweep group beside a built-in rule and by `train(...)`, recorded by import path
and resumed; a rule whose update does not fit the parameters is refused in one line, and so is one that cannot
be recorded."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import uuid
from pathlib import Path

import jax
import numpy as np
import pytest

from stablebptt.cli.main import main
from stablebptt.core import BadInput, Method, as_method
from stablebptt.runs import RunConfig
from stablebptt.runs.io import read_csv
from stablebptt.training import TrainSettings, train

RULE_MODULE = '''
"""A rule outside the package: half of g_M + half of g_R, and the share of entries where they agree."""
import dataclasses

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from stablebptt.core import Column, Method


@dataclasses.dataclass(frozen=True)
class Blend(Method):
    letter: str = "B"
    name: str = "blend"
    modes: tuple = ("M", "R")
    columns: tuple = (Column("agree"),)
    colour: str = "tab:brown"

    def update(self, grads):
        g_m, g_r = grads
        mean = jax.tree.map(lambda a, b: (a + b) / 2, g_m, g_r)
        same = sum(jnp.sum(jnp.sign(a) == jnp.sign(b)) for a, b in zip(jax.tree.leaves(g_m), jax.tree.leaves(g_r)))
        size = sum(a.size for a in jax.tree.leaves(g_m))
        return mean, {"grad_norm": otu.tree_norm(mean), "agree": same / size}


@dataclasses.dataclass(frozen=True)
class Wrong(Method):
    letter: str = "W"
    name: str = "wrong"
    modes: tuple = ("R",)

    def update(self, grads):
        (g,) = grads
        first = jax.tree.leaves(g)[0]
        return jax.tree.map(lambda a: a[None] if a is first else a, g), {"grad_norm": otu.tree_norm(g)}


HALF_BLEND = Blend(letter="H", name="half blend")
'''
SMALL = ["--poles", "1", "--horizon", "20", "--epochs", "2", "--n-train", "16", "--n-test", "16"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder holding the rule module under a fresh name, the current directory; returns (folder, module)."""
    name = f"userrule_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / f"{name}.py").write_text(RULE_MODULE)
    monkeypatch.chdir(folder)
    yield folder, name
    sys.modules.pop(name, None)


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def _one_line_error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_train_records_the_rule_by_import_path_and_resume_imports_it_again(project, capsys):
    folder, name = project
    assert main(["train", "cartpole", "--method", f"{name}:Blend", *SMALL, "--out", "run"]) == 0
    run = folder / "run"
    assert _config(run)["train"]["method"] == f"{name}:Blend"
    rows = read_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 < r["agree"] <= 1 for r in rows)  # the rule's own column, aggregated per epoch
    assert all(math.isnan(r["cosine"]) for r in rows)  # C's columns: NaN for another rule
    sys.modules.pop(name)  # a new process: the rule is imported again from its recorded path
    assert main(["resume", "run", "--epochs", "3"]) == 0
    assert [int(r["epoch"]) for r in read_csv(run / "metrics.csv")] == [1, 2, 3]
    assert f"{name}.py" in sys.modules[name].__file__


def test_a_module_level_instance_is_a_rule_too(project):
    _, name = project
    rule = as_method(f"{name}:HALF_BLEND")
    assert (rule.letter, rule.spelling) == ("H", f"{name}:HALF_BLEND")
    assert TrainSettings(method=f"{name}:HALF_BLEND").rule == rule


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_a_rule_of_ones_own_trains_in_a_batched_group_beside_a_builtin_one(project):
    folder, name = project
    common = ["--methods", f"R,{name}:Blend", "--seeds", "0", *SMALL]
    # in a worker process, which imports the rule from the current directory when it unpickles the settings
    assert main(["sweep", "cartpole", *common, "--workers", "2", "--batch-runs", "on", "--out", "group"]) == 0
    assert main(["sweep", "cartpole", *common, "--workers", "1", "--batch-runs", "off", "--out", "alone"]) == 0
    runs = sorted(p.parent.name for p in (folder / "group").glob("*/metrics.csv"))
    assert len(runs) == 2 and any(name in r for r in runs)
    for run in runs:  # one program for both rules gives what each run gives alone
        grouped, alone = (
            read_csv(folder / "group" / run / "metrics.csv"),
            read_csv(folder / "alone" / run / "metrics.csv"),
        )
        np.testing.assert_allclose([r["test_loss"] for r in grouped], [r["test_loss"] for r in alone], rtol=1e-4)
    blend = next(r for r in runs if name in r)
    assert all(0 < r["agree"] <= 1 for r in read_csv(folder / "group" / blend / "metrics.csv"))


def test_settings_with_a_rule_of_ones_own_travel_to_another_process_by_import_path(project):
    """A sweep's worker unpickles the settings before any of its code runs: they travel as their values, the
    rule as its spelling, imported again (current directory first), never as a pickled class."""
    import pickle

    _, name = project
    settings = TrainSettings(method=f"{name}:Blend", lr=0.01)
    payload = pickle.dumps(settings)
    assert name.encode() in payload and b"Blend" in payload
    sys.modules.pop(name)  # as in a fresh process
    again = pickle.loads(payload)
    assert again == settings and again.rule == as_method(f"{name}:Blend")


def test_train_takes_a_rule_object(project):
    _, name = project
    from stablebptt.tasks import CartPole

    rule = as_method(f"{name}:Blend")
    result = train(CartPole(n_poles=1, horizon=20), rule, epochs=2, n_train=16, n_test=16)
    assert result.status == "complete" and all(0 < row["agree"] <= 1 for row in result.metrics)


def test_a_rule_whose_update_does_not_fit_is_refused_in_one_line(project, capsys):
    _, name = project
    err = _one_line_error(capsys, ["train", "cartpole", "--method", f"{name}:Wrong", *SMALL, "--out", "run"])
    assert "method W: its update at " in err and "Wrong.update must return the parameters' shapes" in err
    assert not (Path("run") / "metrics.csv").exists() or len(read_csv(Path("run") / "metrics.csv")) == 0


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("{name}:Nothing", "holds nothing as Nothing"),
        ("nosuchmodule_xyz:Blend", "module 'nosuchmodule_xyz' not found"),
        ("X", "unknown method 'X'"),
        ("{name}:dataclasses", "holds a module as dataclasses"),
    ],
)
def test_bad_rule_specs_are_one_line_exit_2(project, capsys, spec, words):
    _, name = project
    err = _one_line_error(capsys, ["train", "cartpole", "--method", spec.format(name=name), *SMALL])
    assert words in err, err
    assert not Path("runs").exists()


@dataclasses.dataclass(frozen=True)
class Local(Method):
    """A rule that a run cannot record: made with arguments nothing holds."""


def test_a_rule_that_cannot_be_recorded_trains_in_memory_but_is_refused_for_a_run():
    rule = Local("L", "local", ("R",))
    assert TrainSettings(method=rule).rule is rule  # train(task, rule) works in memory
    with pytest.raises(BadInput, match=r"^method L \(Local\) cannot be recorded: define it at module level"):
        RunConfig.create("cartpole", {"n_poles": 1}, method=rule)


def test_the_update_check_runs_where_the_rule_is_first_traced(project):
    """`value_and_grad` checks the update at trace time: a shape error never reaches Optax's broadcasting."""
    _, name = project
    from stablebptt.tasks import CartPole

    task = CartPole(n_poles=1, horizon=5)
    params = task.init_controller(jax.random.PRNGKey(0))
    x0 = task.sample(jax.random.PRNGKey(1), 4)
    import stablebptt as sb

    vg = sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, f"{name}:Wrong")
    with pytest.raises(BadInput, match=r"^method W: its update at "):
        jax.eval_shape(vg, params, x0)
