"""Loss figures: the axis scale follows the values (log for the paper's positive losses, linear for minus a
reward), and a figure of negative losses is written without matplotlib's log-scale warning."""

from __future__ import annotations

import warnings

import numpy as np

from stablebptt.runs.plotting import loss_scale, plot_curves


def test_scale_is_log_only_when_every_finite_value_is_positive():
    assert loss_scale(np.array([1e-3, 2.0, np.nan, np.inf])) == "log"
    assert loss_scale(np.array([-900.0, -100.0])) == "linear"
    assert loss_scale(np.array([0.0, 1.0])) == "linear"
    assert loss_scale(np.array([np.nan])) == "log"


def test_negative_losses_are_drawn_on_a_linear_axis(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Data has no positive values, and therefore cannot be log-scaled"
        plot_curves({"C": {"test_loss": [-100.0, -400.0, -900.0]}}, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_a_curve_is_styled_by_its_rule():
    """Colour and legend label come from the rule (`core.Method.colour`, `label`); a key that names no rule keeps
    its name; a rule without a colour is drawn in one no built-in rule has."""
    from stablebptt.core.methods import METHOD_COLORS
    from stablebptt.runs.plotting import OTHER_COLORS, method_style

    assert method_style("C") == ("tab:green", "C combined") and method_style("r") == ("tab:blue", "R regular")
    assert method_style("not a rule") == (None, "not a rule")
    assert not set(OTHER_COLORS) & set(METHOD_COLORS.values())
