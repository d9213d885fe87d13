"""The strategy objects of `value_and_grad` (`core.strategies`): strings parse to them once, objects and strings
give the same gradient, configs record one spelling, and a combination that cannot work fails when it is built."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from systems import assert_close
from systems import toy_controller as controller
from systems import toy_loss as loss
from systems import toy_step as step

import stablebptt as sb
from stablebptt.core import strategies as st

HORIZON = 6


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        (st.as_backward, "auto", st.AutoBackward()),
        (st.as_backward, "autodiff", st.Autodiff()),
        (st.as_backward, "joint", st.Joint()),
        (st.as_backward, "two_pass", st.TwoPass()),
        (st.as_param_vjp, "auto", st.AutoVJP()),
        (st.as_param_vjp, "batched", st.BatchedVJP()),
        (st.as_param_vjp, "per_step", st.PerStepVJP()),
        (st.as_remat, None, st.NoRemat()),
        (st.as_remat, False, st.NoRemat()),
        (st.as_remat, "none", st.NoRemat()),
        (st.as_remat, "sqrt", st.SqrtRemat()),
        (st.as_remat, "states", st.StatesRemat()),
        (st.as_remat, 5, st.Segments(5)),
        (st.as_remat, "5", st.Segments(5)),
    ],
)
def test_strings_parse_to_strategies_and_objects_pass_through(parse, value, expected):
    parsed = parse(value)
    assert parsed == expected and type(parsed) is type(expected)
    assert parse(parsed) is parsed


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (st.as_backward, "sideways", r"^unknown backward 'sideways'; allowed: auto, autodiff, joint, two_pass \("),
        (st.as_backward, st.AutoVJP(), r"^unknown backward AutoVJP\("),
        (st.as_param_vjp, "dense", r"^unknown param_vjp 'dense'; allowed: auto, batched, per_step \("),
        (st.as_remat, "half", r"^remat must be None, 'none', 'sqrt', 'states' or a positive segment length"),
        (st.as_remat, np.zeros(3), r"^remat must be None"),
        (st.Segments, 0, r"^Segments\(length\) needs a positive integer, got 0$"),
        (st.Segments, True, r"^Segments\(length\) needs a positive integer, got True$"),
    ],
)
def test_bad_strategies_are_bad_input(parse, value, message):
    with pytest.raises(sb.BadInput, match=message):
        parse(value)


def test_the_config_spelling_is_the_same_whichever_way_an_option_is_given():
    assert sb.core.check_remat(st.Segments(4)) == sb.core.check_remat("4") == 4
    assert sb.core.check_remat(st.NoRemat()) is None and sb.core.check_remat("sqrt") == "sqrt"
    assert sb.core.check_backward(st.TwoPass()) == "two_pass" and sb.core.check_param_vjp(st.PerStepVJP()) == "per_step"


@pytest.mark.parametrize(
    ("remat", "horizon", "segment"),
    [
        (st.NoRemat(), 9, None),
        (st.SqrtRemat(), 9, 3),
        (st.SqrtRemat(), 10, 4),
        (st.StatesRemat(), 9, 1),
        (st.Segments(4), 9, 4),
        (st.Segments(40), 9, 9),
    ],
)
def test_remat_segments(remat, horizon, segment):
    assert remat.segment(horizon) == segment


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("C", {"backward": st.TwoPass(), "remat": st.SqrtRemat(), "param_vjp": st.PerStepVJP()}),
        ("C", {"backward": st.Joint(), "remat": st.Segments(4), "param_vjp": st.BatchedVJP()}),
        ("R", {"backward": st.Autodiff(), "remat": st.StatesRemat()}),
        ("M", {"backward": st.AutoBackward(), "param_vjp": st.AutoVJP(threshold=0.0)}),
    ],
)
def test_objects_give_the_gradient_their_names_give(problem, method, options):
    params, x0 = problem
    names = {k: v.spelling if hasattr(v, "spelling") else v for k, v in options.items()}
    by_object = jax.jit(sb.value_and_grad(loss, step, controller, HORIZON, method, **options))(params, x0)
    if isinstance(options.get("param_vjp"), st.AutoVJP):  # the threshold has no string: compare with its choice
        names["param_vjp"] = "per_step"
    by_name = jax.jit(sb.value_and_grad(loss, step, controller, HORIZON, method, **names))(params, x0)
    assert_close(by_object, by_name)


def test_auto_backward_resolves_from_the_method_and_the_chosen_vjp():
    auto = st.AutoBackward()
    assert auto.resolve(sb.core.COMBINED, None, st.PerStepVJP()) == st.Joint()
    assert auto.resolve(sb.core.REGULAR, None, st.BatchedVJP()) == st.Joint()
    assert auto.resolve(sb.core.REGULAR, None, st.PerStepVJP()) == st.Autodiff()
    assert auto.resolve(sb.core.REGULAR, 3, st.PerStepVJP()) == st.Joint()
    assert st.TwoPass().sweeps(("M", "R")) == (("M",), ("R",)) and st.Joint().sweeps(("M", "R")) == (("M", "R"),)


@pytest.mark.parametrize(
    ("method", "truncation", "message"),
    [
        ("C", None, r"^method C needs backward='joint' or 'two_pass' \(it combines 2 modes\)$"),
        ("R", 2, r"^truncation needs backward='joint' or 'two_pass'$"),
    ],
)
def test_an_impossible_combination_fails_when_built(method, truncation, message):
    with pytest.raises(sb.BadInput, match=message):
        sb.value_and_grad(loss, step, controller, HORIZON, method, backward=st.Autodiff(), truncation=truncation)
