"""`core.methods`: the gradient rules as objects; strings parsed to them once; a rule of one's own is one
subclass, checked when it is built and differentiated like the built-in ones (against the naive unroll)."""

from __future__ import annotations

import dataclasses
import pathlib
import re

import jax
import pytest
from systems import assert_trees_close, toy_controller, toy_loss, toy_naive_loss, toy_step

import stablebptt as sb
from stablebptt.core import COMBINED, METHODS, REGULAR, RULES, Method, as_method, canonical_method
from stablebptt.core.checks import BadInput
from stablebptt.core.methods import SignCombined

HORIZON = 6


@pytest.mark.parametrize(("given", "letter"), [("C", "C"), ("combined", "C"), ("R", "R"), ("network", "N")])
def test_strings_are_parsed_to_the_rule_objects(given, letter):
    assert as_method(given) is RULES[letter]
    assert canonical_method(given) == letter == str(RULES[letter])
    assert as_method(RULES[letter]) is RULES[letter]


def test_the_rules_say_what_they_need():
    assert METHODS == ("R", "M", "S", "N", "C")
    assert COMBINED.modes == ("M", "R") and COMBINED.combines and "kept_fraction" in COMBINED.stats
    assert [RULES[m].modes for m in "RMSN"] == [("R",), ("M",), ("S",), ("N",)]
    assert not any(RULES[m].combines for m in "RMSN")
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGULAR.modes = ("M",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: as_method("Z"), r"unknown method 'Z'; allowed: R, M, S, N, C \(or regular, modified"),
        (lambda: Method("X", "x", ("R", "M")), r"method X: a single-mode rule has one mode"),
        (lambda: Method("X", "x", ("Q",)), r"method X: modes must be some of R, M, S, N, got \('Q',\)"),
        (lambda: Method("X", "x", ()), r"method X: modes must be some of"),
        (lambda: SignCombined("X", "x", modes=("R", "M")), r"the sign test combines modes \('M', 'R'\)"),
    ],
)
def test_an_invalid_rule_fails_when_it_is_built(build, message):
    with pytest.raises(BadInput, match=message):
        build()


@dataclasses.dataclass(frozen=True)
class Mean(Method):
    """A rule of one's own: the mean of g_M and g_R."""

    modes: tuple[str, ...] = ("M", "R")

    def update(self, grads):
        g_m, g_r = grads
        mean = jax.tree.map(lambda a, b: (a + b) / 2, g_m, g_r)
        return mean, {"grad_norm": sb.core.tree_norm(mean)}


@pytest.fixture
def toy(x64):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    params = {"w1": jax.random.normal(k1, (2, 5)), "b1": jax.numpy.zeros(5), "w2": 6.0 * jax.random.normal(k2, (5, 1))}
    return params, jax.random.normal(k3, (4, 2))


@pytest.mark.parametrize("backward", ["joint", "two_pass"])
def test_a_rule_of_ones_own_is_differentiated_like_the_built_in_ones(toy, backward):
    params, x0 = toy
    rule = Mean("A", "average")
    value, update, info = jax.jit(
        sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, rule, backward=backward)
    )(params, x0)
    g_m = jax.grad(toy_naive_loss)(params, x0, "M", HORIZON)
    g_r = jax.grad(toy_naive_loss)(params, x0, "R", HORIZON)
    assert_trees_close(update, jax.tree.map(lambda a, b: (a + b) / 2, g_m, g_r))
    assert float(value) == pytest.approx(float(toy_naive_loss(params, x0, "R", HORIZON)), rel=1e-12)
    assert set(info) == {"grad_norm"}
    with pytest.raises(BadInput, match="method A needs backward='joint' or 'two_pass' \\(it combines 2 modes\\)"):
        sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, rule, backward="autodiff")


def test_no_method_letter_is_tested_outside_the_module_that_defines_the_rules():
    """The rules' behaviour is declared once: no ``== "C"`` (or ``"C" in``) in the library outside core.methods."""
    src = pathlib.Path(sb.__file__).parent
    pattern = re.compile(r"""(==|!=)\s*["'][RMSNC]["']|["'][RMSNC]["']\s+(not\s+)?in\b""")
    found = [
        f"{path.relative_to(src)}:{i}: {line.strip()}"
        for path in sorted(src.rglob("*.py"))
        if path.name != "methods.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)
