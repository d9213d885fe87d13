"""Figures of loss curves in the paper's style."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..core.checks import BadInput
from ..core.methods import METHOD_COLORS, as_method
from .io import atomic_write_bytes

# Curves of a rule without a colour of its own: colours no built-in rule has.
OTHER_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")

__all__ = ["METHOD_COLORS", "OTHER_COLORS", "loss_scale", "method_style", "plot_curves", "save_figure"]


def method_style(key: str) -> tuple[str | None, str]:
    """Colour and legend label of a curve keyed by a rule's spelling, as the rule declares them (``R``:
    ``("tab:blue", "R regular")``); a key that names no rule keeps its name, in matplotlib's next colour."""
    try:
        rule = as_method(key)
    except BadInput:
        return None, key
    return rule.colour, rule.label


def save_figure(fig: plt.Figure, path: str | os.PathLike[str]) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def loss_scale(values: np.ndarray) -> str:
    """ "log" when every finite value is positive (the paper's losses), else "linear" (e.g. minus a reward)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return "log" if finite.size == 0 or np.all(finite > 0) else "linear"


def plot_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    keys: Sequence[str] = ("test_loss",),
) -> None:
    """Loss over epochs on a log axis (linear where a loss is not positive, see `loss_scale`), one line per
    method (`curves[method][key]` lists values per epoch), in the rule's colour (a rule without one: one of
    `OTHER_COLORS`, the same for each of its keys). The first key is drawn solid, further keys dashed; a
    curve of one epoch is a marker."""
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = []
    for index, (method, series) in enumerate(curves.items()):
        color, name = method_style(method)
        for key, style in zip(keys, ("-", "--", ":")):
            y = np.asarray(series[key], dtype=float)
            if y.size == 0:
                continue
            drawn.append(y)
            ax.plot(
                np.arange(1, y.size + 1),
                y,
                style,
                color=color or OTHER_COLORS[index % len(OTHER_COLORS)],
                marker="o" if y.size == 1 else None,
                label=f"{name} {key.replace('_', ' ')}" if len(keys) > 1 else name,
            )
    ax.set_yscale(loss_scale(np.concatenate(drawn)) if drawn else "log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
