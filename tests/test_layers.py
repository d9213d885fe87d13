"""The package's layers import downward only (core <- tasks <- training <- runs <- experiments <- cli), no
module imports itself through a circle, argparse lives only in cli/, and only runs/ writes run folders.
Read from the source with `ast` (function-level imports included), so nothing is imported here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stablebptt"
LAYERS = ("core", "tasks", "training", "runs", "experiments", "cli")
# Modules outside the layer packages: the facade and the entry point import freely; nn is part of the core;
# integrations/ (other libraries' simulators as tasks) is part of the tasks layer.
OUTSIDE = {
    "stablebptt": None,
    "stablebptt.__main__": None,
    "stablebptt.nn": "core",
    "stablebptt.integrations": "tasks",
    "stablebptt.integrations.brax": "tasks",
}  # adapters are tasks
# What only runs/ may use: writers of run-folder files and the names of those files.
RUN_FOLDER_WRITERS = {"save_checkpoint", "save_params", "RunLock", "fault_point", "Session"}
RUN_FOLDER_FILES = {"CONFIG", "STATUS", "METRICS_CSV", "PARAMS", "CHECKPOINT", "FIGURE", "LOCK"}
WRITES = {"write_json", "write_csv", "atomic_write_bytes", "save_figure", "plot_curves", "write_text", "write_bytes"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer(module: str) -> str | None:
    if module in OUTSIDE:
        return OUTSIDE[module]
    return module.split(".")[1]


def imports(module: str, path: Path) -> set[str]:
    """Every stablebptt module `module` imports (at any depth of its code)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("stablebptt")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("stablebptt"):
                known = modules()
                for alias in node.names:  # `from . import tasks` imports a module
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return found - {module}


GRAPH = {m: imports(m, p) for m, p in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_downward_only(module):
    own = layer(module)
    if own is None:
        return
    for target in GRAPH[module]:
        theirs = layer(target)
        if theirs is None:
            assert target == "stablebptt" and own in LAYERS[3:], f"{module} imports the package facade"
            continue
        assert LAYERS.index(theirs) <= LAYERS.index(own), f"{module} ({own}) imports {target} ({theirs})"


def test_no_import_circle():
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in GRAPH.get(m, ()):
            if t == "stablebptt" or t not in GRAPH:
                continue
            assert state.get(t) != 1, "import circle: " + " -> ".join([*path, m, t])
            if t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])


def _names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_argparse_only_in_cli_and_run_folders_written_only_by_runs(module):
    tree = ast.parse(modules()[module].read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    if layer(module) != "cli":
        assert "argparse" not in imported, f"{module} imports argparse"
    if layer(module) == "runs":
        return
    assert not imported & RUN_FOLDER_WRITERS, f"{module} imports {imported & RUN_FOLDER_WRITERS}"
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if func in WRITES:
            target = call.func.value if func in ("write_text", "write_bytes") else (call.args or [None])[0]
            named = _names(target) if target is not None else set()
            assert not named & RUN_FOLDER_FILES, f"{module} writes {named & RUN_FOLDER_FILES} of a run folder"


def test_the_checks_see_the_layers():
    """Guard: the graph is read (relative and function-level imports included)."""
    assert "stablebptt.runs.config" in GRAPH["stablebptt.runs.folder"]
    assert "stablebptt.training.train" in GRAPH["stablebptt.runs.batch"]
    assert "stablebptt.experiments.report" in GRAPH["stablebptt.cli.commands"]  # imported inside a function
    assert layer("stablebptt.nn") == "core" and len(GRAPH) > 30
