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
from stablebptt.core import COMBINED, METHODS, REGULAR, RULES, Method, as_method, as_mode, canonical_method
from stablebptt.core.checks import BadInput
from stablebptt.core.methods import MODE_M, MODE_R, Column, Mode, SignCombined

HORIZON = 6


@pytest.mark.parametrize(
    ("given", "letter"),
    [("C", "C"), ("c", "C"), ("combined", "C"), ("Combined", "C"), ("R", "R"), ("network", "N"), (" m ", "M")],
)
def test_strings_are_parsed_to_the_rule_objects(given, letter):
    assert as_method(given) is RULES[letter]
    assert canonical_method(given) == letter == str(RULES[letter])
    assert as_method(RULES[letter]) is RULES[letter]


def test_the_rules_say_what_they_need():
    assert METHODS == ("R", "M", "S", "N", "C")
    assert COMBINED.modes == (MODE_M, MODE_R) and COMBINED.combines
    assert [c.name for c in COMBINED.columns] == ["cosine", "kept_fraction", "regular_nonfinite"]
    assert [str(m) for r in "RMSN" for m in RULES[r].modes] == ["R", "M", "S", "N"]
    # the paths each mode keeps: (through the network's input, through the simulator's state)
    paths = {m: (as_mode(m).network, as_mode(m).simulator) for m in "RMSN"}
    assert paths == {"R": (True, True), "M": (False, True), "S": (False, False), "N": (True, False)}
    assert not any(RULES[m].combines for m in "RMSN")
    assert len({RULES[m].colour for m in METHODS}) == 5 and COMBINED.label == "C combined"
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGULAR.modes = ("M",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: as_method("Z"), r"unknown method 'Z'; allowed: R, M, S, N, C \(or regular, modified"),
        (lambda: as_method(""), r"unknown method ''; allowed"),
        (lambda: as_method(3), r"unknown method 3; allowed"),
        (lambda: as_mode("C"), r"unknown gradient-flow mode 'C'; allowed: R, M, S, N"),
        (lambda: Method("X", "x", ("R", "M")), r"method X: a single-mode rule has one mode"),
        (lambda: Method("X", "x", ("Q",)), r"method X: modes must be some of R, M, S, N, got \('Q',\)"),
        (lambda: Method("X", "x", ()), r"method X: modes must be some of"),
        (lambda: Method("X", "x", "R"), r"method X: modes must be some of"),
        (lambda: Method("X", "x", ("R",), columns=(3,)), r"method X: columns must be Column objects or names"),
        (lambda: Column("c", "max"), r"column c: reduce must be 'mean' or 'sum'"),
        (lambda: SignCombined("X", "x", modes=("R", "M")), r"the sign test combines modes \('M', 'R'\)"),
        (lambda: SignCombined("X", "x", regular_nonfinite="skip"), r"regular_nonfinite must be one of zero, stop"),
        (lambda: as_method("nosuchmodule_xyz:Rule"), r"module 'nosuchmodule_xyz' not found"),
        (lambda: as_method("math:pi"), r"method math:pi: math holds a float as pi; allowed: a Method"),
        (lambda: as_method("math:nothing"), r"method math:nothing: math holds nothing as nothing"),
        (lambda: as_method("a b:c"), r"method 'a b:c' is not module.path:Name"),
    ],
)
def test_an_invalid_rule_fails_when_it_is_built(build, message):
    with pytest.raises(BadInput, match=message):
        build()


@dataclasses.dataclass(frozen=True)
class Mean(Method):
    """A rule of one's own: the mean of g_M and g_R."""

    modes: tuple[Mode, ...] = ("M", "R")  # type: ignore[assignment]  # letters are parsed to modes

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


def test_a_mode_is_a_typed_pair_and_no_lookup_falls_back():
    assert as_mode("m") is MODE_M and as_mode(MODE_R) is MODE_R
    assert Method("X", "x", ("M",)).modes == (MODE_M,)  # letters are parsed once, when the rule is built
    source = (pathlib.Path(sb.__file__).parent / "core").rglob("*.py")
    assert not any("PATHS" in path.read_text() for path in source)


@dataclasses.dataclass(frozen=True)
class Half(Method):
    """A rule of one's own with a column: half of g_R, and the share of its entries above zero."""

    letter: str = "H"
    name: str = "half"
    modes: tuple[Mode, ...] = (MODE_R,)
    columns: tuple[Column, ...] = (Column("positive"), Column("count", "sum"))

    def update(self, grads):
        (g,) = grads
        half = jax.tree.map(lambda a: a / 2, g)
        leaves = jax.tree.leaves(half)
        positive = sum(jax.numpy.sum(a > 0) for a in leaves) / sum(a.size for a in leaves)
        return half, {"grad_norm": sb.core.tree_norm(half), "positive": positive, "count": jax.numpy.ones(())}


@dataclasses.dataclass(frozen=True)
class Flat(Method):
    """A rule of one's own whose update has the wrong shape (the first leaf flattened)."""

    letter: str = "F"
    name: str = "flat"
    modes: tuple[Mode, ...] = (MODE_R,)

    def update(self, grads):
        (g,) = grads
        return {**g, "w1": g["w1"].reshape(1, -1)}, {"grad_norm": sb.core.tree_norm(g)}


@dataclasses.dataclass(frozen=True)
class Dropped(Flat):
    """... and one whose update has another tree structure."""

    def update(self, grads):
        (g,) = grads
        return {"w1": g["w1"]}, {"grad_norm": sb.core.tree_norm(g)}


def test_a_rule_of_ones_own_declares_its_columns_and_their_aggregation(toy):
    params, x0 = toy
    _, update, info = sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, Half())(params, x0)
    assert set(info) == {"grad_norm", "positive", "count"}
    g_r = jax.grad(toy_naive_loss)(params, x0, "R", HORIZON)
    assert_trees_close(update, jax.tree.map(lambda a: a / 2, g_r))
    infos = {"positive": jax.numpy.array([0.2, 0.4, 0.9]), "count": jax.numpy.array([1.0, 1.0, 1.0])}
    used = jax.numpy.array([True, True, False])
    out = Half().aggregate(infos, used)
    assert float(out["positive"]) == pytest.approx(0.3) and float(out["count"]) == 3.0


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Flat(), r"^method F: its update at \['w1'\] is float64\[1, 10\], the parameter is float64\[2, 5\]; Flat"),
        (Dropped(), r"^method F: its update has the tree structure .*; Dropped.update must return one leaf per"),
    ],
)
def test_a_rule_whose_update_does_not_fit_the_parameters_is_refused_in_one_line(toy, rule, message):
    params, x0 = toy
    with pytest.raises(BadInput, match=message) as caught:
        jax.jit(sb.value_and_grad(toy_loss, toy_step, toy_controller, HORIZON, rule))(params, x0)
    assert "\n" not in str(caught.value)


def test_c_owns_its_non_finite_policy():
    nan = {"modified_finite": jax.numpy.array(True), "regular_nonfinite": jax.numpy.array(3)}
    assert bool(COMBINED.accepts(nan))  # "zero": a non-finite g_R entry is disagreement, the run goes on
    assert not bool(dataclasses.replace(COMBINED, regular_nonfinite="stop").accepts(nan))
    assert not bool(COMBINED.accepts({**nan, "modified_finite": jax.numpy.array(False)}))
    assert bool(REGULAR.accepts({}))


def test_a_rule_is_spelled_by_its_letter_or_its_import_path():
    assert [RULES[m].spelling for m in METHODS] == list(METHODS)
    assert dataclasses.replace(COMBINED, regular_nonfinite="stop").spelling == "C"  # the policy is its own setting
    assert Half().spelling == f"{__name__}:Half"  # the class, whose defaults make the rule
    assert as_method(f"{__name__}:Half") == Half() and canonical_method(Half()) == f"{__name__}:Half"
    assert as_method(f"{__name__}:MEAN") is MEAN and MEAN.spelling == f"{__name__}:MEAN"  # an instance
    with pytest.raises(BadInput, match=r"^method Z \(Mean\) cannot be recorded: define it at module level"):
        _ = Mean("Z", "unnamed").spelling


MEAN = Mean("A", "average")
