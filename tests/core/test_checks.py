"""`BadInput`: one exception class for a bad value given by the user, raised by the shared checks and by
representative sites of the core and the tasks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from systems import toy_controller as controller
from systems import toy_loss as loss
from systems import toy_step as step

import stablebptt as sb
from stablebptt.core import checks

HORIZON = 4


def test_bad_type_is_bad_input_and_type_error():
    assert issubclass(sb.BadType, sb.BadInput)
    assert issubclass(sb.BadType, TypeError) and issubclass(sb.BadType, ValueError)
    assert sb.core.BadInput is checks.BadInput and sb.core.BadType is checks.BadType
    for catch in (sb.BadInput, TypeError, ValueError):
        with pytest.raises(catch, match="^wrong$"):
            raise sb.BadType("wrong")
    assert not issubclass(sb.BadInput, TypeError)


@pytest.mark.parametrize(
    "check,value,message",
    [
        (lambda v: checks.check_positive_int("n_poles", v), 0, "^n_poles must be a positive integer, got 0$"),
        (lambda v: checks.check_positive_int("n_poles", v), True, "^n_poles must be a positive integer, got True$"),
        (lambda v: checks.check_positive_int("n_poles", v), 1.0, "^n_poles must be a positive integer, got 1.0$"),
        (lambda v: checks.check_positive_number("dt", v), float("nan"), "^dt must be a positive number, got nan$"),
        (lambda v: checks.check_positive_number("dt", v), "1", "^dt must be a positive number, got '1'$"),
        (
            lambda v: checks.check_choice("clip", v, ("none", "norm")),
            "max",
            "^unknown clip 'max'; allowed: none, norm$",
        ),
        (checks.check_truncation, 0, "^truncation must be None or a positive integer, got 0$"),
        (checks.check_truncation, "2", "^truncation must be None or a positive integer, got '2'$"),
    ],
)
def test_checks_raise_bad_input_naming_the_value(check, value, message):
    with pytest.raises(sb.BadInput, match=message):
        check(value)


def test_checks_return_the_normal_form():
    assert checks.check_positive_int("n", np.int64(3)) == 3 and type(checks.check_positive_int("n", 3)) is int
    assert checks.check_positive_number("dt", 2) == 2.0
    assert checks.check_choice("clip", "norm", ("none", "norm")) == "norm"
    assert checks.check_truncation(None) is None and checks.check_truncation(np.int32(5)) == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "X"}, "unknown method 'X'"),
        ({"backward": "sideways"}, "unknown backward 'sideways'; allowed: auto, autodiff, joint, two_pass"),
        ({"truncation": 0}, "truncation must be None or a positive integer, got 0"),
        ({"remat": "half"}, "remat must be None, 'none', 'sqrt', 'states' or a positive segment length, got 'half'"),
        ({"param_vjp": "dense"}, "unknown param_vjp 'dense'; allowed: auto, batched, per_step"),
        ({"method": "C", "backward": "autodiff"}, "method C needs backward='joint' or 'two_pass'"),
        ({"method": "R", "backward": "autodiff", "truncation": 2}, "truncation needs backward='joint' or 'two_pass'"),
    ],
)
def test_value_and_grad_options_are_bad_input(options, message):
    method = options.pop("method", "C")
    with pytest.raises(sb.BadInput, match=message):
        sb.value_and_grad(loss, step, controller, HORIZON, method, **options)


def test_unknown_method_is_bad_input():
    with pytest.raises(sb.BadInput, match="^unknown method 'X'; allowed: R, M, S, N, C"):
        sb.value_and_grad(loss, step, controller, HORIZON, "X")


def test_a_step_of_the_wrong_shape_is_bad_input():
    def widens(x, c):
        return jnp.concatenate([x, c[:, None]], axis=-1)

    vg = sb.value_and_grad(loss, widens, controller, HORIZON, "C")
    params = {"w1": jnp.ones((2, 5)), "b1": jnp.zeros(5), "w2": jnp.ones((5, 1))}
    pattern = r"^the simulator step `.*widens` changed the state from float\d+\[4,2\] to float\d+\[4,3\]"
    with pytest.raises(sb.BadInput, match=pattern):
        jax.eval_shape(vg, params, jnp.ones((4, 2)))


@pytest.mark.parametrize("method", ["R", "M", "S", "C", "N"])
@pytest.mark.parametrize("backward", ["auto", "autodiff", "two_pass"])
def test_a_loss_that_is_not_a_scalar_is_bad_input(method, backward):
    """A per-state loss with a forgotten mean would otherwise be differentiated as its sum (plain
    `jax.value_and_grad` refuses it too)."""
    if backward == "autodiff" and method == "C":
        return

    def per_state(states, controls):
        return jnp.sum(states[-1] ** 2, axis=-1)  # shape (batch,)

    def integer(states, controls):
        return jnp.sum(states[-1] > 0)

    params = {"w1": jnp.ones((2, 5)), "b1": jnp.zeros(5), "w2": jnp.ones((5, 1))}
    for bad, got in ((per_state, r"float\d+\[4\]"), (integer, r"int\d+\[\]")):
        vg = sb.value_and_grad(bad, step, controller, HORIZON, method, backward=backward)
        with pytest.raises(sb.BadInput, match=rf"^the loss `.*{bad.__name__}` returned {got}; it must return a scalar"):
            jax.eval_shape(vg, params, jnp.ones((4, 2)))
    from stablebptt.core import value_and_grads

    with pytest.raises(sb.BadInput, match="returned float"):
        jax.eval_shape(value_and_grads(per_state, step, controller, HORIZON, ("R", "M")), params, jnp.ones((4, 2)))


def test_a_non_array_initial_state_is_bad_type():
    params = {"w1": jnp.ones((2, 5)), "b1": jnp.zeros(5), "w2": jnp.ones((5, 1))}
    with pytest.raises(sb.BadType, match="initial state x0 has a leaf"):
        sb.rollout(step, controller, params, {"x": "cart"}, HORIZON)


def test_unknown_task_is_bad_input():
    with pytest.raises(sb.BadInput, match="^unknown task 'pendulum'; allowed: "):
        sb.tasks.make_task("pendulum")


def test_unknown_task_field_is_bad_input():
    from stablebptt.tasks.registry import UnknownField

    assert issubclass(UnknownField, sb.BadInput)
    with pytest.raises(UnknownField, match="^task cartpole has no field 'mass'"):
        sb.tasks.make_task("cartpole", mass=2.0)


@pytest.mark.parametrize(
    "task,settings,message",
    [
        ("cartpole", {"n_poles": 0}, "^n_poles must be a positive integer, got 0$"),
        ("cartpole", {"loss_mode": "sum"}, "^unknown loss_mode 'sum'; allowed: "),
        ("repulsion", {"rc": -1.0}, "^rc must be a non-negative number, got -1.0$"),
        ("quantum", {"target": 40}, "^target must be an eigenstate number from 1 to n_points=32, got 40$"),
    ],
)
def test_bad_task_field_is_bad_input(task, settings, message):
    with pytest.raises(sb.BadInput, match=message):
        sb.tasks.make_task(task, **settings)
    with pytest.raises(sb.BadInput, match=message):  # the task's own check, without the registry
        type(sb.tasks.make_task(task))(**settings)


def test_too_small_cnn_is_bad_input(key):
    with pytest.raises(sb.BadInput, match="^the CNN needs at least 7 points, got 5$"):
        sb.nn.CNN(n_points=5, key=key)


def test_a_bad_argument_speaks_python_to_python_and_flags_to_the_command_line(tmp_path):
    """The library names its arguments as Python writes them; the command line renders the same error with its
    flags (`cli.guard.cli_argument`); other `$` signs stay; across processes it travels as a plain BadInput."""
    import pickle

    from stablebptt.cli.guard import cli_argument, shown
    from stablebptt.core.checks import Action, Argument, BadArgument

    error = BadArgument(
        "$path: costs $$5 (a $note); pass $force or a smaller $lr than $now, or $hint",
        path=tmp_path / "run",
        force=True,
        lr=None,
        hint=Action("f", "f(x=1)", ("a b",), {"x": 1, "dry": False, "force": True}),
        now=Argument("lr", 0.5),
    )
    assert str(error) == (
        f"path='{tmp_path / 'run'}': costs $5 (a $note); pass force=True or a smaller lr than lr=0.5, or f(x=1)"
    )
    assert shown(error) == error.render(cli_argument)
    assert (
        shown(error)
        == f"--out {tmp_path / 'run'}: costs $5 (a $note); pass --force or a smaller --lr than --lr 0.5, or "
        "`stablebptt f a b --x 1 --force`"
    )
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is sb.BadInput and str(again) == str(error)


def test_run_folders_speak_python_to_python_callers(tmp_path):
    from stablebptt.runs import RunConfig, RunFolder

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    config = RunConfig.create("cartpole", {"n_poles": 1, "horizon": 5}, epochs=1)
    with pytest.raises(sb.BadInput, match=r"^path='.*mine': the folder is not empty and holds no stablebptt run"):
        RunFolder(tmp_path / "mine").start(config)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ValueError("bad\nmore"), "ValueError: bad"),
        (KeyError("k"), "KeyError: 'k'"),
        (RuntimeError(), "RuntimeError"),
        (ZeroDivisionError("  \n  division by zero"), "ZeroDivisionError: division by zero"),
    ],
)
def test_one_way_to_tell_a_failure_in_one_line(error, text):
    from stablebptt.core.checks import described

    assert described(error) == text
