"""The Python examples of the README run as written and show what they claim: the printed loss falls."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_example_runs_and_its_loss_falls(index, monkeypatch):
    block = python_blocks()[index]
    module = types.ModuleType(f"readme_block_{index + 1}")  # a real module, as a user's file would be
    monkeypatch.setitem(sys.modules, module.__name__, module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, f"README.md python block {index + 1}", "exec"), module.__dict__)
    losses = [float(v) for v in re.findall(r"loss ([0-9.eE+-]+)", out.getvalue())]
    if "print" in block and "loss" in block:
        assert len(losses) >= 2, out.getvalue()
        assert losses[-1] < 0.5 * losses[0], out.getvalue()
    for task_class in [v for v in module.__dict__.values() if isinstance(v, type) and v.__module__ == module.__name__]:
        from stablebptt.tasks import Task
        from stablebptt.training import train

        assert issubclass(task_class, Task)
        result = train(task_class(), "C", epochs=5, n_train=32, n_test=16, lr=1e-2)
        assert result.metrics[-1]["test_loss"] < 0.5 * result.metrics[0]["test_loss"]
