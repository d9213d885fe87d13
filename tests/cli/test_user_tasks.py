"""Tasks of your own on the command line (``module.path:Name``) and ``--set``: train, resume from another
folder, compare, sweep, plot and animate a task with a dict state (and an integer leaf) written outside the
package; every bad spec or field is refused in one line, before any folder exists."""

from __future__ import annotations

import csv
import json
import sys
import uuid
from pathlib import Path

import pytest

from stablebptt.cli.main import main
from stablebptt.cli.options import setting, setting_list
from stablebptt.runs import RunConfig, config_hash
from stablebptt.runs.io import read_csv

TASK_MODULE = '''
"""A task outside the package: point masses pushed to the origin, a dict state with an integer step count."""
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from stablebptt.tasks import Task


class Puck(Task):
    """State {"pos": (n, 2), "vel": (n, 2), "count": (n,) int32}; control {"force": (n, 2)}."""

    name: ClassVar[str] = "puck"
    horizon: int = eqx.field(static=True, default=10)
    dt: float = eqx.field(static=True, default=0.1)
    hidden: int = eqx.field(static=True, default=8)

    def __check_init__(self):
        if isinstance(self.dt, bool) or not isinstance(self.dt, (int, float)) or not self.dt > 0:
            raise ValueError(f"dt must be a positive number, got {self.dt!r}")

    def step(self, x, c):
        vel = x["vel"] + self.dt * c["force"]
        return {"pos": x["pos"] + self.dt * vel, "vel": vel, "count": x["count"] + 1}

    def loss(self, states, controls):
        return jnp.mean(states["pos"][-1] ** 2) + 0.01 * jnp.mean(controls["force"] ** 2)

    def sample(self, key, n):
        kp, kv = jax.random.split(key)
        return {"pos": jax.random.normal(kp, (n, 2)), "vel": 0.1 * jax.random.normal(kv, (n, 2)),
                "count": jnp.zeros((n,), jnp.int32)}

    def init_controller(self, key):
        return eqx.nn.MLP(4, 2, self.hidden, 1, key=key)

    def controller(self, params, x):
        return {"force": jax.vmap(params)(jnp.concatenate([x["pos"], x["vel"]], axis=-1))}


class DrawnPuck(Puck):
    def draw(self, axes, states, controls):
        assert states["count"].dtype.kind == "i" and states["pos"].shape[1] == len(axes)
        dots = [ax.plot([], [], "o")[0] for ax in axes]

        def update(n):
            for i, dot in enumerate(dots):
                dot.set_data(states["pos"][n, i, :1], states["pos"][n, i, 1:])
            return dots

        return update


class WindowedPuck(Puck):
    window: int = eqx.field(static=True, default=3)  # also the name of a training setting


def slow_puck():
    return Puck(dt=0.05)


def needs_arguments(dt):
    return Puck(dt=dt)


def not_a_task():
    return 42


NUMBER = 3
'''
SMALL = ["--epochs", "2", "--n-train", "16", "--n-test", "16", "--batch-size", "8"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder holding a task module of a fresh name (so no test sees another's import), the current
    directory; returns (folder, module name)."""
    name = f"usertask_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / f"{name}.py").write_text(TASK_MODULE)
    (folder / f"broken_{name}.py").write_text("import numpy\nraise RuntimeError('no simulator here\\nmore')\n")
    (folder / f"missing_dep_{name}.py").write_text("import not_installed_anywhere_xyz\n")
    monkeypatch.chdir(folder)
    yield folder, name
    for module in (name, f"broken_{name}", f"missing_dep_{name}"):
        sys.modules.pop(module, None)


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def _epochs(run: Path) -> list[int]:
    return [int(r["epoch"]) for r in read_csv(run / "metrics.csv")]


def _refused(capsys, argv: list[str], *words: str) -> str:
    """Run the command line; it must exit with 2 and one error line on stderr holding `words`."""
    try:
        code = main(argv)
    except SystemExit as e:  # errors found by argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and "Traceback" not in err and "error" in err, err
    for word in words:
        assert word in err, (word, err)
    return err


def test_train_records_the_spec_and_resume_works_from_another_folder(project, capsys, monkeypatch, tmp_path):
    folder, name = project
    assert main(["train", f"{name}:Puck", "--set", "dt=0.2", "--set", "hidden=4", "--lr", "0.01", *SMALL]) == 0
    run = folder / "runs" / "Puck-C-seed42"  # the default folder: the class name, no ':' or '/'
    config = _config(run)
    assert config["task"] == f"{name}:Puck" and config["task_settings"] == {"dt": 0.2, "hidden": 4}
    assert config["task_path"] == str(folder)
    rows = read_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    capsys.readouterr()

    # From another folder, with the module forgotten: it is found again through task_path.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sys.modules.pop(name)
    assert main(["resume", str(run), "--epochs", "4"]) == 0
    assert _epochs(run) == [1, 2, 3, 4]
    assert Path(sys.modules[name].__file__).parent == folder
    assert config_hash(_config(run)) == config_hash(config)
    assert config_hash({**config, "task_path": "/moved"}) == config_hash(config)  # moving keeps checkpoints


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_factory_and_compare(project, capsys):
    folder, name = project
    assert (
        main(
            [
                "train",
                f"{name}:slow_puck",
                "--set",
                "hidden=4",
                "--epochs",
                "1",
                "--n-train",
                "16",
                "--n-test",
                "16",
                "--method",
                "R",
            ]
        )
        == 0
    )
    config = _config(folder / "runs" / "slow_puck-R-seed42")
    assert config["task"] == f"{name}:slow_puck" and config["task_settings"] == {"hidden": 4}
    assert (
        main(["compare", f"{name}:Puck", "--methods", "R,C", "--epochs", "1", "--n-train", "16", "--n-test", "16"]) == 0
    )
    out = folder / "runs" / "compare-Puck"  # 3 seeds by default, trained together per method (a dict state)
    assert [(r["method"], r["seeds"]) for r in _table(out / "compare.csv")] == [("R", "3"), ("C", "3")]
    assert _config(out / "C-seed44")["task_path"] == str(folder)
    assert _config(out / "C-seed44")["train"]["seed"] == 44


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_sweep_two_methods_two_seeds_and_plot(project, capsys):
    folder, name = project
    common = ["--methods", "R,C", "--seeds", "0,1", *SMALL, "--workers", "1", "--out", "sw"]
    assert main(["sweep", f"{name}:Puck", "--set", "dt=0.2", *common]) == 0
    runs = sorted(p.parent.name for p in (folder / "sw").glob("*/status.json"))
    assert runs == [f"method={m}_dt=0.2_clip=none_n_train=16_n_test=16_seed={s}" for m in "CR" for s in "01"]
    for run in runs:
        assert json.loads((folder / "sw" / run / "status.json").read_text())["status"] == "complete"
        assert _config(folder / "sw" / run)["task_settings"] == {"dt": 0.2}
    capsys.readouterr()
    assert main(["plot", "sw"]) == 0
    summary = _table(folder / "sw" / "summary.csv")
    assert len(summary) == 4 and {r["status"] for r in summary} == {"complete"}
    assert (folder / "sw" / "sweep.png").stat().st_size > 0

    # A list in --set grows the grid (dt=0.1 is the default: not in the names); --batch-runs trains the two
    # new seeds together and skips the complete runs.
    assert main(["sweep", f"{name}:Puck", "--set", "dt=0.1,0.2", "--batch-runs", *common[2:]]) == 0
    status = {p.parent.name: json.loads(p.read_text())["status"] for p in (folder / "sw").glob("*/status.json")}
    assert len(status) == 6 and set(status.values()) == {"complete"}
    assert _epochs(folder / "sw" / "method=C_clip=none_n_train=16_n_test=16_seed=1") == [1, 2]


@pytest.mark.slow
def test_sweep_workers_import_the_module_through_task_path(project, monkeypatch, tmp_path):
    """Spawned workers started in another folder find the module by the recorded task_path."""
    _folder, name = project
    from stablebptt.tasks import make_task

    make_task(f"{name}:Puck")  # imported here; the workers start where it is not on the path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["sweep", f"{name}:Puck", "--methods", "R,C", *SMALL, "--workers", "2", "--out", "sw"]) == 0
    assert (
        len([p for p in (elsewhere / "sw").glob("*/status.json") if json.loads(p.read_text())["status"] == "complete"])
        == 2
    )


def test_set_on_a_builtin_task_is_recorded_after_its_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "train",
                "cartpole",
                "--poles",
                "3",
                "--set",
                "duration=2.0",
                "--set",
                "n_poles=1",
                "--epochs",
                "1",
                "--horizon",
                "5",
                "--n-train",
                "16",
                "--n-test",
                "16",
            ]
        )
        == 0
    )
    config = _config(tmp_path / "runs" / "cartpole-C-seed42")
    assert config["task_settings"] == {"n_poles": 1, "loss_mode": "final", "horizon": 5, "duration": 2.0}
    assert "task_path" not in config


def test_animate_draws_a_dict_state_with_the_tasks_own_draw(project, capsys):
    """A user task draws itself with its draw method; one without it is refused in one line."""
    folder, name = project
    import equinox as eqx
    import jax

    from stablebptt.runs.io import save_params, write_json
    from stablebptt.tasks import make_task

    for cls in ("Puck", "DrawnPuck"):
        run = folder / cls
        run.mkdir()
        write_json(
            run / "config.json",
            RunConfig.create(f"{name}:{cls}", {"horizon": 6}, method="C", epochs=1, seed=0).to_json(),
        )
        _, key = jax.random.split(jax.random.PRNGKey(0))
        save_params(run / "params.eqx", eqx.filter_jit(make_task(f"{name}:{cls}").init_controller)(key))
    before = sorted(p.name for p in (folder / "Puck").iterdir())
    _refused(
        capsys,
        ["animate", "Puck"],
        f"{name}:Puck cannot draw itself",
        "define draw(axes, states, controls) on the Task",
    )
    assert sorted(p.name for p in (folder / "Puck").iterdir()) == before
    assert main(["animate", "DrawnPuck", "--samples", "2", "--frames", "3"]) == 0
    assert (folder / "DrawnPuck" / "animation.gif").stat().st_size > 0


BAD = [  # (arguments after the command, words of the error line)
    (["foo:"], ["'foo:'", "module.path:Name"]),
    ([":Puck"], ["':Puck'", "module.path:Name"]),
    (["a:b:c"], ["'a:b:c'", "module.path:Name"]),
    (["no_such_module_xyz:Puck"], ["'no_such_module_xyz' not found", "current directory"]),
    (["broken_{m}:Puck"], ["does not import", "RuntimeError: no simulator here"]),
    (["missing_dep_{m}:Puck"], ["does not import", "not_installed_anywhere_xyz"]),
    (["{m}:Pluck"], ["no attribute 'Pluck'", "Puck"]),
    (["{m}:NUMBER"], ["{m}:NUMBER is an int, not a Task"]),
    (["{m}:not_a_task"], ["returned an int, not a Task"]),
    (["{m}:needs_arguments"], ["needs arguments"]),
    (["{m}:Puck", "--set", "mass=2"], ["--set mass=", "no field 'mass'", "horizon, dt, hidden"]),
    (["{m}:Puck", "--set", "dt=-1"], ["dt must be a positive number, got -1"]),
    (["{m}:slow_puck", "--set", 'dt="fast"'], ["dt must be a positive number, got 'fast'"]),
    (["{m}:Puck", "--set", "dt"], ["--set", "NAME=VALUE", "'dt'"]),
    (["{m}:Puck", "--set", "=1"], ["--set", "NAME=VALUE"]),
    (["cartpole", "--set", "mass=2"], ["no field 'mass'", "n_poles"]),
    (["cartpole", "--set", "n_poles=0"], ["n_poles must be a positive integer"]),
    (["pendulum"], ["'pendulum'", "module.path:Name"]),
]


@pytest.mark.parametrize("command", ["train", "compare", "sweep"])
def test_bad_task_specs_and_settings_are_one_line_exit_2(project, capsys, command):
    folder, name = project
    before = sorted(p.name for p in folder.iterdir())
    for args, words in BAD:
        _refused(capsys, [command, *(a.format(m=name) for a in args)], *(w.format(m=name) for w in words))
        assert sorted(p.name for p in folder.iterdir()) == before, args  # no folder created


def test_a_value_of_another_type_than_the_field_is_refused_when_the_task_is_built(project, capsys):
    """Puck checks dt itself but not horizon or hidden: their declared types do (before anything is traced)."""
    _, name = project
    _refused(
        capsys,
        ["train", f"{name}:Puck", "--set", "horizon=0.5,1.0"],
        "horizon takes an integer, got '0.5,1.0'",
        f"several values are for a sweep: `stablebptt sweep {name}:Puck --set horizon=0.5,1.0`",
    )
    _refused(capsys, ["train", f"{name}:Puck", "--set", "hidden=true"], "hidden takes an integer, got True")
    _refused(capsys, ["compare", f"{name}:Puck", "--set", "dt=[0.1]"], "dt must be a positive number")


def test_a_sweep_refuses_a_task_field_named_like_a_training_setting(project, capsys):
    """In a sweep's grid task fields and training settings share one namespace: a field called `window` would be
    set as both (train and compare keep them apart)."""
    _, name = project
    _refused(
        capsys,
        ["sweep", f"{name}:WindowedPuck", "--set", "window=4"],
        "--set window=...: window is both a field of task",
        "a training setting",
    )


def test_train_help_names_module_path(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "module.path:Name" in out and "--set" in out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("horizon=50", ("horizon", 50)),
        ("dt=2.5", ("dt", 2.5)),
        ("on=true", ("on", True)),
        ("hidden=[64, 64]", ("hidden", [64, 64])),
        ("mode=final", ("mode", "final")),
        ("s=a=b", ("s", "a=b")),
        ("empty=", ("empty", "")),
    ],
)
def test_set_values_are_json_or_text(text, expected):
    assert setting(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("n=1,2", ("n", [1, 2])),
        ("n=[1,2]", ("n", [1, 2])),
        ("m=a,b", ("m", ["a", "b"])),
        ('m="a,b"', ("m", ["a,b"])),
        ("h=[[8,8],[16]]", ("h", [[8, 8], [16]])),
        ("x=0.5", ("x", [0.5])),
    ],
)
def test_sweep_set_values_are_lists(text, expected):
    assert setting_list(text) == expected
