"""``stablebptt diagnose``: where a task's gradients explode or vanish, and whether C is likely to help.

`diagnose_task` measures `core.diagnostics.gradient_diagnostics` for a task (its initial controller or given
parameters, a batch of its initial states) and returns the numbers as NumPy arrays with the growth rates they
imply; `reading` says in plain words what they mean; `write_diagnosis` writes the figure, the table (CSV and
Markdown) and the JSON. docs/diagnose.md holds the measures of the built-in tasks against what training found.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..core.checks import BadInput, check_positive_int
from ..core.diagnostics import MODES, check_horizons, gradient_diagnostics, horizon_ladder
from ..core.methods import METHOD_COLORS
from ..runs.io import CONFIG, atomic_write_bytes, write_json
from ..runs.state import not_a_run
from ..tasks import TASKS, Task

SCHEMA = "stablebptt-diagnosis/1"
CURVES = ("R", "M", "S", "N", "C")
CHANCE = 0.5  # the share of entries two unrelated gradients agree on in sign
FEEDBACK = 100.0  # how much more than the simulator alone (or than M) counts as the feedback exploding


def draw(task: Task, batch: int = 16, seed: int = 0) -> tuple[Any, Any]:
    """``(params, x0)``: the task's initial controller and `batch` initial states, drawn from `seed` as
    `diagnose_task` draws them."""
    batch = check_positive_int("batch", batch)
    key_data, key_init, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    return eqx.filter_jit(task.init_controller)(key_init), eqx.filter_jit(task.sample)(key_data, batch)


def to_float64(tree: Any) -> Any:
    """`tree` with its float32 arrays cast to float64 (under ``jax_enable_x64``): the same values, measured in
    double precision."""
    return jax.tree.map(lambda a: a.astype(np.float64) if eqx.is_array(a) and a.dtype == np.float32 else a, tree)


def diagnose_task(
    task: Task,
    params: Any = None,
    x0: Any = None,
    *,
    batch: int = 16,
    seed: int = 0,
    horizons: Sequence[int] | None = None,
    directions: int = 4,
    compiled: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """The diagnostics of `task` for the controller `params` and the initial states `x0` (None: `draw`'s, `batch`
    states from `seed`), on the ladder `horizons` (None: `horizon_ladder` of the task's horizon). Returns a
    JSON-ready dict: the measures as lists (`core.diagnostics.Diagnostics`' fields), the growth per step fitted
    to them (`growth`), the precision, and the seconds spent compiling and running. `compiled`: a dict the caller
    keeps to measure several controllers of one task with one compiled program (e.g. the snapshots of a run);
    ``compile_s`` is 0 where it served."""
    directions = check_positive_int("directions", directions)
    ladder = horizon_ladder(task.horizon) if horizons is None else check_horizons(horizons)
    drawn_params, drawn_x0 = draw(task, batch, seed) if params is None or x0 is None else (None, None)
    params = drawn_params if params is None else params
    x0 = drawn_x0 if x0 is None else x0
    batch = int(jax.tree.leaves(x0)[0].shape[0])
    key_dirs = jax.random.split(jax.random.PRNGKey(seed), 3)[2]

    @eqx.filter_jit
    def measure(p: Any, x: Any, key: jax.Array) -> Any:
        return gradient_diagnostics(task.loss, task.step, task.controller, p, x, ladder, key, directions=directions)

    shapes = jax.tree.map(lambda a: (a.shape, a.dtype) if hasattr(a, "shape") else a, (params, x0))
    # The tree structure itself, not its string: MJX's Data prints its static arrays by address, a new one each time.
    signature = (id(task), tuple(ladder), directions, jax.tree.structure(shapes), tuple(jax.tree.leaves(shapes)))
    program, compile_s = None if compiled is None else compiled.get(signature), 0.0
    if program is None:
        begin = time.perf_counter()
        try:
            program = measure.lower(params, x0, key_dirs).compile()  # type: ignore[attr-defined]
        except TypeError as error:
            if "custom_vjp" not in str(error):
                raise
            raise BadInput(
                f"diagnose cannot measure task {task.name}: its step holds a custom VJP (e.g. PhiFlow's pressure "
                "solve), which has no forward-mode derivative for the perturbation growth; train and compare it instead"
            ) from error
        compile_s = time.perf_counter() - begin
        if compiled is not None:
            compiled[signature] = program
    begin = time.perf_counter()
    result = jax.block_until_ready(program(params, x0, key_dirs))
    run_s = time.perf_counter() - begin
    numbers = jax.tree.map(lambda a: np.asarray(a, np.float64), result._asdict())
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "task": type(task).__name__,
        "task_settings": task.config(),
        "batch": batch,
        "seed": seed,
        "directions": directions,
        "precision": "float64" if jax.config.jax_enable_x64 else "float32",  # type: ignore[attr-defined]
        "horizons": [int(h) for h in numbers["horizons"]],
        "loss": numbers["loss"].tolist(),
        "grad_norm": {m: numbers["grad_norm"][m].tolist() for m in CURVES},
        "cosine": numbers["cosine"].tolist(),
        "kept": numbers["kept"].tolist(),
        "step_norm": {m: numbers["step_norm"][m].tolist() for m in ("R", "M")},
        "closed_loop": numbers["closed_loop"].tolist(),
        "open_loop": numbers["open_loop"].tolist(),
        "compile_s": compile_s,
        "run_s": run_s,
    }
    out["growth"] = {
        **{m: growth_per_step(out["horizons"], out["grad_norm"][m]) for m in CURVES},
        "closed_loop": growth_per_step(range(len(out["closed_loop"])), out["closed_loop"]),
        "open_loop": growth_per_step(range(len(out["open_loop"])), out["open_loop"]),
    }
    return out


def growth_per_step(steps: Sequence[int], norms: Sequence[float]) -> float:
    """The factor per step of a geometric fit (least squares of log norm against step) to the finite, non-zero
    `norms`; NaN with fewer than two such points."""
    pairs = [(s, math.log(n)) for s, n in zip(steps, norms, strict=True) if math.isfinite(n) and n > 0]
    if len(pairs) < 2:
        return math.nan
    s, y = np.array(pairs).T
    slope = np.polyfit(s, y, 1)[0]
    return float(math.exp(slope))


def _span(first: float, last: float) -> str:
    """`last / first` as a factor in words ("1e+15 times", "1e-03 times", "the same")."""
    if not (math.isfinite(first) and math.isfinite(last)) or first <= 0 or last <= 0:
        return "to a non-finite or zero value"
    ratio = last / first
    return "about the same" if 0.5 < ratio < 2 else f"{ratio:.0e} times"


def reading(result: dict[str, Any]) -> list[str]:
    """The diagnosis in plain words: a few sentences, each about one measure, then what they suggest for C
    (a heuristic: training decides)."""
    h = result["horizons"]
    g = result["grad_norm"]
    lines = []
    first = next((i for i, v in enumerate(g["R"]) if math.isfinite(v) and v > 0), None)
    if first is None:
        lines.append("R's gradient is zero (or not finite) at every horizon: nothing to measure along the horizon.")
    elif first < len(h) - 1:
        since = "" if first == 0 else " (the first with a non-zero gradient)"
        lines.append(
            f"From horizon {h[first]}{since} to {h[-1]}, R's gradient norm changes "
            f"{_span(g['R'][first], g['R'][-1])} ({result['growth']['R']:.3g}x per step), M's "
            f"{_span(g['M'][first], g['M'][-1])} ({result['growth']['M']:.3g}x per step)."
        )
    closed, opened = result["closed_loop"], result["open_loop"]
    lines.append(
        f"A perturbation of the initial state grows {_span(closed[0], closed[-1])} over {len(closed) - 1} steps "
        f"through simulator and controller ({result['growth']['closed_loop']:.3g}x per step), "
        f"{_span(opened[0], opened[-1])} through the simulator alone ({result['growth']['open_loop']:.3g}x)."
    )
    explodes, at_h = _last_ratio(g["R"], g["M"], h)
    feedback, at_step = _last_ratio(closed, opened, list(range(len(closed))))
    # The simulator alone explodes: M (the physics path only) and the open loop are not finite at the end.
    physics = not (math.isfinite(g["M"][-1]) and math.isfinite(opened[-1]))
    if physics:
        lines.append(
            "The simulator itself explodes over this horizon: M's gradient (the physics path alone) or a perturbation "
            "through the simulator alone is not finite at the end, so C, which takes M's entries, cannot repair it."
        )
    if feedback > FEEDBACK:
        lines.append(
            f"The feedback through the controller amplifies perturbations {feedback:.0e} times more than the "
            "simulator alone does"
            + ("" if at_step == len(closed) - 1 else f" (at step {at_step}, the last where both are finite)")
            + ": the closed loop explodes."
        )
    at = "at the longest horizon" if at_h == h[-1] else f"at horizon {at_h}, the last where both are finite"
    if explodes > FEEDBACK:
        lines.append(f"R's gradient is {explodes:.0e} times M's {at}.")
    elif explodes < 1 / FEEDBACK:
        lines.append(f"R's gradient is far smaller than M's {at}: the feedback damps it.")
    cos, kept = result["cosine"][-1], result["kept"][-1]
    carries = "carries much of" if cos > 0.5 else "carries some of" if cos > 0.1 else "carries little of"
    kept_note = " (chance)" if abs(kept - CHANCE) < 0.05 else ""
    lines.append(
        f"At horizon {h[-1]}, cos(g_M, g_R) = {cos:.2f} and the sign test keeps {kept:.0%} of M's entries"
        f"{kept_note}: M {carries} R's direction."
    )
    if not all(math.isfinite(v) for v in g["R"]):
        lines.append("R's gradient is not finite at some horizons: plain BPTT cannot train there without clipping.")
    unstable = explodes > FEEDBACK or feedback > FEEDBACK
    if physics:
        verdict = (
            "the physics explodes over this horizon, for M as for R: C cannot help; train on shorter windows "
            "(--protocol stream, truncation) or clip."
        )
    elif unstable and cos > 0.1:
        verdict = "C is likely to help: the feedback explodes while M stays moderate and still points R's way."
    elif unstable:
        verdict = "the feedback explodes, but M points elsewhere: C keeps little; expect C close to M."
    elif cos > 0.5:
        verdict = "R does not explode and M agrees with it: C is likely to track R (a tie)."
    else:
        verdict = "R does not explode and M points elsewhere: C has little to add and may lose to R."
    lines.append(f"Suggestion (a heuristic; training decides): {verdict}")
    return lines


def _last_ratio(a: Sequence[float], b: Sequence[float], at: Sequence[Any]) -> tuple[float, Any]:
    """``a / b`` at the last index where both are finite and positive, and that index's label in `at`; (1, the
    last label) where there is none (nothing to compare)."""
    for i in reversed(range(len(a))):
        if all(math.isfinite(v) and v > 0 for v in (a[i], b[i])):
            return a[i] / b[i], at[i]
    return 1.0, at[-1]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per horizon: the norms of every mode, the cosine and the share kept."""
    rows = []
    for i, h in enumerate(result["horizons"]):
        norms = [f"{result['grad_norm'][m][i]:.4g}" for m in CURVES]
        rows.append(
            [str(h), f"{result['loss'][i]:.5g}", *norms, f"{result['cosine'][i]:.3f}", f"{result['kept'][i]:.3f}"]
        )
    return rows


HEADER = ["horizon", "loss", *(f"|g_{m}|" for m in CURVES), "cos(g_M, g_R)", "kept"]


Stage = tuple[str, Any]  # (label, controller parameters): what one diagnosis measures
Log = Callable[[str], None]


def run_stages(run_dir: str | os.PathLike[str], *, log: Log | None = None) -> tuple[list[Stage], Task, str]:
    """``(stages, task, title)`` of a run folder: its initial controller (the run's epoch-0 parameters, drawn from
    its seed under its key scheme, `training.train.initial_params`), the snapshots it kept along training
    (``snapshot_every``) and its trained one (`animate.load_run`; `log` says where those come from).

    Raises:
        BadInput: for a path that is not a run folder, naming what it is.
    """
    from ..runs import RunFolder, snapshots
    from ..runs.io import load_params
    from ..training.train import initial_params
    from .animate import load_run

    path = Path(run_dir)
    if not path.exists() and len(path.parts) == 1 and ":" not in str(path):  # a name: a mistyped task, perhaps
        raise BadInput(
            f"no task and no folder named {path}; give a TASK ({', '.join(TASKS)}, or module.path:Name) "
            "or a folder written by train"
        )
    if not (path / CONFIG).is_file():
        raise not_a_run(path, "give a TASK or a folder written by train")
    config, task, trained = load_run(path, log=log)
    initial = initial_params(task, config.train)
    title = f"{path.name} ({config.task}, method {config.train.method})"
    kept = snapshots(path)
    done = int((RunFolder(path).status() or {}).get("epoch") or 0)
    along = [(f"epoch {epoch}", load_params(file, initial)) for epoch, file in kept if epoch != done]
    return [("initial", initial), *along, (f"trained, epoch {done}" if kept else "trained", trained)], task, title


def diagnose_stages(
    task: Task,
    stages: Sequence[Stage],
    *,
    batch: int = 16,
    seed: int = 0,
    horizons: Sequence[int] | None = None,
    directions: int = 4,
    precisions: Sequence[str] = ("32",),
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """`diagnose_task` of every stage's controller in every precision (``"32"``, ``"64"``), each under
    `jax.enable_x64` as a context (the process's precision is left as it was), on `batch` states drawn from
    `seed`. One compiled program serves every controller of a precision. Each result is labelled with its stage
    and precision and passed to `on_result` as it is measured."""
    x0 = draw(task, batch, seed)[1]
    results: list[dict[str, Any]] = []
    compiled: dict[Any, Any] = {}
    for precision in precisions:
        with jax.enable_x64(precision == "64"):
            for stage, drawn in stages:
                params, x = (to_float64(drawn), to_float64(x0)) if precision == "64" else (drawn, x0)
                result = diagnose_task(
                    task, params, x, seed=seed, horizons=horizons, directions=directions, compiled=compiled
                )
                result["label"] = ", ".join(p for p in (stage, result["precision"]) if p)
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


def write_diagnosis(results: Sequence[dict[str, Any]], out: Path, title: str) -> list[Path]:
    """``diagnosis.json`` (every result), ``diagnosis.csv`` and ``diagnosis.md`` (the table of each precision,
    with the reading), ``diagnosis.png`` (one panel per measure, each precision in its own line style) in the
    folder `out`. Returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "diagnosis.json", out / "diagnosis.csv", out / "diagnosis.md", out / "diagnosis.png"]
    write_json(paths[0], {"schema": SCHEMA, "title": title, "results": list(results)})
    csv_lines = [",".join(["measured", *HEADER])]
    md = [f"# Diagnosis: {title}", ""]
    for r in results:
        csv_lines += [",".join([_label(r), *row]) for row in table_rows(r)]
        md += [f"## {_label(r)}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        md += ["| " + " | ".join(row) + " |" for row in table_rows(r)]
        md += ["", *(f"- {line}" for line in reading(r)), ""]
    atomic_write_bytes(paths[1], ("\n".join(csv_lines) + "\n").encode())
    atomic_write_bytes(paths[2], ("\n".join(md) + "\n").encode())
    _figure(results, paths[3], title)
    if len(results) > 2 * len({r["precision"] for r in results}):  # a run's snapshots: the measures along training
        paths.append(out / "diagnosis_along.png")
        _along_figure(results, paths[-1], title)
    return paths


def _along_figure(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """The measures at the longest horizon for each controller measured (a run's initial, snapshot and trained
    ones, in that order), one line per precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for precision, ls in zip(sorted({r["precision"] for r in results}), ("-", "--")):
        rs = [r for r in results if r["precision"] == precision]
        names = [str(r.get("label", "")).replace(f", {precision}", "") for r in rs]
        x = np.arange(len(rs))
        for m, colour in ((m, METHOD_COLORS[m]) for m in ("R", "M")):
            axes[0].plot(
                x,
                _positive([r["grad_norm"][m][-1] for r in rs]),
                ls,
                marker="o",
                color=colour,
                label=f"|g_{m}| ({precision})",
            )
            axes[1].plot(x, [r["growth"][m] for r in rs], ls, marker="o", color=colour, label=f"{m} ({precision})")
        axes[2].plot(x, [r["cosine"][-1] for r in rs], ls, marker="o", color="black", label=f"cos ({precision})")
        axes[2].plot(
            x, [r["kept"][-1] for r in rs], ls, marker="s", color=METHOD_COLORS["C"], label=f"kept ({precision})"
        )
        for ax in axes:
            ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    axes[0].set(yscale="log", ylabel="gradient norm at the longest horizon", title="gradient norm along training")
    axes[1].set(ylabel="growth per step (fitted over the ladder)", title="growth along training")
    axes[1].axhline(1, color="0.6", lw=0.8)
    axes[2].set(ylim=(-1.05, 1.05), title="does M point R's way? (longest horizon)")
    axes[2].axhline(CHANCE, color="0.6", lw=0.8, ls=":")
    _finish(fig, axes, path, title)


def _figure(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = METHOD_COLORS  # the rules' own colours, as in every figure of the project
    styles = ("-", "--", ":", "-.")
    # A run's snapshots would make every panel unreadable: here its initial and trained controllers only, the
    # snapshots in diagnosis_along.png.
    shown = [r for r in results if not _label(r).startswith("epoch ")]
    if len(shown) < len(results):
        title = f"{title}: initial and trained (every snapshot: diagnosis_along.png)"
    results = shown
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for i, r in enumerate(results):
        ls = styles[i % len(styles)]
        tag = f" ({_label(r)})" if len(results) > 1 else ""
        h = np.array(r["horizons"])
        for m in CURVES:
            axes[0].plot(h, _positive(r["grad_norm"][m]), ls, marker="o", ms=3, color=colours[m], label=f"{m}{tag}")
        for m in ("R", "M"):
            t = np.arange(len(r["step_norm"][m]))
            axes[1].plot(t, _positive(r["step_norm"][m]), ls, color=colours[m], label=f"{m}{tag}")
        t = np.arange(len(r["closed_loop"]))
        axes[2].plot(t, _positive(r["closed_loop"]), ls, color="tab:cyan", label=f"closed loop{tag}")
        axes[2].plot(t, _positive(r["open_loop"]), ls, color="tab:brown", label=f"simulator alone{tag}")
        axes[3].plot(h, r["cosine"], ls, marker="o", ms=3, color="black", label=f"cos(g_M, g_R){tag}")
        axes[3].plot(h, r["kept"], ls, marker="s", ms=3, color=colours["C"], label=f"share kept by C{tag}")
    axes[0].set(xscale="log", yscale="log", xlabel="horizon", ylabel="gradient norm", title="gradient norm vs horizon")
    axes[1].set(yscale="log", xlabel="time step t", ylabel="norm of step t's contribution")
    axes[1].set_title("contributions at the longest horizon")
    axes[2].set(yscale="log", xlabel="time step t", ylabel="|δx_t| / |δx_0|", title="perturbation growth")
    axes[3].set(xscale="log", xlabel="horizon", ylim=(-1.05, 1.05), title="does M point R's way?")
    axes[3].axhline(CHANCE, color="0.6", lw=0.8, ls=":")
    axes[3].axhline(0, color="0.6", lw=0.8)
    _finish(fig, axes, path, title)


def _finish(fig: Any, axes: Any, path: Path, title: str) -> None:
    """Grid and legend on every panel, the title, and the figure written to `path` and closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(result: dict[str, Any]) -> str:
    """What a result measured: its ``label`` (e.g. "trained, float64") or its precision."""
    return str(result.get("label") or result["precision"])


def _positive(values: Sequence[float]) -> np.ndarray:
    """NaN where a value cannot be drawn on a log scale (zero, negative, not finite)."""
    a = np.asarray(values, float)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


__all__ = ["MODES", "diagnose_task", "growth_per_step", "reading", "write_diagnosis"]
