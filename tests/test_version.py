"""The version number is written once (`stablebptt.__version__`) and the changelog has an entry for it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import stablebptt

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_written_in_one_place():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "stablebptt.__version__"}
    assert importlib.metadata.version("stablebptt") == stablebptt.__version__
    assignments = [
        p for p in (ROOT / "src").rglob("*.py") if re.search(r"^__version__\s*=", p.read_text(), re.MULTILINE)
    ]
    assert assignments == [ROOT / "src" / "stablebptt" / "__init__.py"]


def test_the_changelog_has_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## (\S+)", changelog, flags=re.MULTILINE)
    assert stablebptt.__version__ in versions, versions
    assert versions[-1] == "0.1.0"
