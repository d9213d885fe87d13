"""`remat=` gives the same update as storing everything, for every method and backward (float64), and bounds the
compiled program's memory; `checkpoint=`, its old name, is gone (0.4.0)."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
import pytest
from systems import assert_close
from systems import toy_controller as controller
from systems import toy_loss as loss
from systems import toy_step as step

import stablebptt as sb
from stablebptt.core.strategies import as_remat

HORIZON = 10


CASES = [
    (m, b) if (m, b) == ("R", "joint") else pytest.param(m, b, marks=pytest.mark.slow)  # the rest: .ci/run
    for m in "RMSN"
    for b in ("autodiff", "joint")
] + [("C", "joint"), pytest.param("C", "two_pass", marks=pytest.mark.slow)]


@pytest.mark.parametrize("method,backward", CASES)
def test_remat_equals_stored(problem, method, backward):
    params, x0 = problem
    reference = jax.jit(sb.value_and_grad(loss, step, controller, HORIZON, method, backward=backward))(params, x0)
    # "sqrt" is 4 here (two segments of 4 after a remainder of 2), "states" 1, 5 divides the horizon, a segment
    # longer than the horizon is one segment.
    options = [{"remat": c} for c in ("sqrt", "states", 5, HORIZON + 4)]
    if backward != "autodiff":  # both ways of forming the parameter gradient
        options += [{"remat": c, "param_vjp": "per_step"} for c in (None, "sqrt")]
    for option in options:
        value, update, info = jax.jit(
            sb.value_and_grad(loss, step, controller, HORIZON, method, backward=backward, **option)
        )(params, x0)
        np.testing.assert_allclose(value, reference[0], rtol=1e-12)
        assert_close(update, reference[1])
        assert_close(info, reference[2])


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_remat_cartpole_with_equinox_controller(x64, key):
    task = sb.tasks.CartPole(n_poles=2, horizon=12, loss_mode="continuous", zero_final_kernel=False, hidden=(8, 8))
    params = task.init_controller(key)
    x0 = task.sample(key, 3)
    vg = eqx.filter_jit(
        lambda p, x, c: sb.value_and_grad(task.loss, task.step, task.controller, task.horizon, "C", remat=c)(p, x)
    )
    reference = vg(params, x0, None)
    for remat in ("sqrt", "states", 5):
        assert_close(vg(params, x0, remat)[1], reference[1])


@pytest.mark.parametrize(
    "value,horizon,expected",
    [
        (None, 100, None),
        (False, 100, None),
        ("none", 100, None),
        ("sqrt", 100, 10),
        ("sqrt", 101, 11),
        ("sqrt", 1, 1),
        ("states", 100, 1),
        (7, 100, 7),
        ("7", 100, 7),
        (500, 100, 100),
    ],
)
def test_remat_segments(value, horizon, expected):
    assert as_remat(value).segment(horizon) == expected


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "half", "", "0"])
def test_bad_remat_is_bad_input(bad):
    with pytest.raises(sb.BadInput, match="^remat must be None, 'none', 'sqrt', 'states' or a positive segment"):
        sb.value_and_grad(loss, step, controller, HORIZON, "C", remat=bad)


@pytest.mark.parametrize("method", [pytest.param("R", marks=pytest.mark.slow), "C"])
def test_remat_bounds_compiled_memory(key, method):
    """XLA's own account of the temporary buffers: with "sqrt", 16x the horizon costs far less than 16x the
    memory of storing everything (which stores the network's activations at every step)."""
    task = sb.tasks.CartPole(n_poles=2, horizon=64)
    params = task.init_controller(key)
    x0 = task.sample(key, 8)

    def temp_bytes(horizon, remat):
        vg = sb.value_and_grad(task.loss, task.step, task.controller, horizon, method, remat=remat)
        compiled = jax.jit(vg).lower(params, x0).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    stored, short, long = temp_bytes(1024, None), temp_bytes(64, "sqrt"), temp_bytes(1024, "sqrt")
    assert long < 0.25 * stored
    assert long < 8 * short


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, None),
        (False, None),
        ("none", None),
        ("sqrt", "sqrt"),
        ("states", "states"),
        (4, 4),
        ("4", 4),
        (" 12 ", 12),
        (np.int64(3), 3),
    ],
)
def test_check_remat_normalises(value, expected):
    assert sb.core.check_remat(value) == expected


@pytest.mark.parametrize("bad", [0, -1, "abc", 1.5, True, "", "0", "-2", "²", [4]])
def test_check_remat_refuses(bad):
    with pytest.raises(sb.BadInput, match=r"^remat must be .*, got "):
        sb.core.check_remat(bad)


def test_the_removed_checkpoint_argument_is_refused():
    with pytest.raises(TypeError, match="checkpoint"):
        sb.value_and_grad(loss, step, controller, HORIZON, "C", checkpoint="sqrt")  # type: ignore[call-arg]
