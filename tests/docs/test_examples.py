"""Every Python example of the README and the documentation site runs as written and asserts what its text claims.

Conventions (tests/README.md repeats them for writers):
- every fenced block tagged ``python`` in README.md and docs/**/*.md is an example;
- each block runs alone, in a fresh module namespace, with the working directory set to a temporary folder shared
  by the blocks of its page (first on ``sys.path``);
- a block whose first line is a comment naming a file (``# mytasks.py``) is also written to that file first, so a
  later block of the page can import it;
- an HTML comment on the line above the fence sets options: ``<!-- example: slow -->`` (only with --runslow),
  ``<!-- example: requires brax -->`` (skipped where the module is not installed), or both, comma-separated.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL
)
_OPTIONS = re.compile(r"<!--\s*example:\s*(?P<options>.*?)\s*-->\s*$")
_FILE = re.compile(r"#\s*(?P<name>[\w./-]+\.py)\s*$")


@dataclasses.dataclass(frozen=True)
class Example:
    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    slow: bool = False
    requires: tuple[str, ...] = ()

    @property
    def file(self) -> str | None:
        """The file the block is written to, if its first line names one."""
        first = self.code.split("\n", 1)[0]
        match = _FILE.fullmatch(first.strip())
        return match["name"] if match else None

    def __str__(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def examples(text: str, page: Path) -> list[Example]:
    """The ``python`` blocks of a Markdown text, in order, with their options."""
    found = []
    for match in _FENCE.finditer(text):
        if match["info"].strip().split(" ", 1)[0] != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        options = _OPTIONS.search(before)
        slow, requires = False, []
        for option in options["options"].split(",") if options else []:
            words = option.split()
            if words == ["slow"]:
                slow = True
            elif len(words) == 2 and words[0] == "requires":
                requires.append(words[1])
            else:
                raise ValueError(f"{page}:{line - 1}: unknown example option {option.strip()!r}")
        indent = len(match["indent"])
        code = "\n".join(row[indent:] for row in match["body"].split("\n"))
        found.append(Example(page, line, code, slow, tuple(requires)))
    return found


ALL = [example for page in PAGES for example in examples(page.read_text(), page)]


def run(example: Example, folder: Path) -> types.ModuleType:
    """Execute one example in `folder` (cwd and first on sys.path) as a module of its own; returns the module."""
    if example.file is not None:
        (folder / example.file).write_text(example.code)
    module = types.ModuleType(f"example_{example.page.stem}_{example.line}")
    module.__file__ = str(folder / (example.file or f"{module.__name__}.py"))
    before, x64 = set(sys.modules), jax.config.jax_enable_x64
    sys.modules[module.__name__] = module  # dataclasses and Equinox look their module up
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.syspath_prepend(str(folder))
        try:
            exec(compile(example.code, str(example), "exec"), module.__dict__)
        finally:
            for name in set(sys.modules) - before:  # the page's own modules: imported afresh by the next block
                if name == module.__name__ or str(getattr(sys.modules[name], "__file__", "")).startswith(str(folder)):
                    del sys.modules[name]
            jax.config.update("jax_enable_x64", x64)
    return module


def _marks(example: Example) -> list[pytest.MarkDecorator]:
    return [pytest.mark.slow] if example.slow else []


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One working folder per page, shared by its blocks in order."""
    made: dict[Path, Path] = {}

    def folder(page: Path) -> Path:
        if page not in made:
            made[page] = tmp_path_factory.mktemp(page.stem)
        return made[page]

    return folder


@pytest.mark.parametrize("example", [pytest.param(e, id=str(e), marks=_marks(e)) for e in ALL])
def test_example(example: Example, folders):
    for module in example.requires:
        pytest.importorskip(module)
    run(example, folders(example.page))


def test_every_python_fence_is_found():
    """A ``python`` fence the pattern missed (odd indentation, a missing close) would go untested."""
    for page in PAGES:
        text = page.read_text()
        opened = len(re.findall(r"^[ \t]*```python\b", text, flags=re.MULTILINE))
        assert opened == len(examples(text, page)), f"{page}: {opened} python fences, {len(examples(text, page))} read"
    assert any(e.page.name == "README.md" for e in ALL)


def test_a_broken_example_fails_and_options_are_read(tmp_path):
    """The runner is not vacuous: a false claim raises, a file block is importable by the next, options parse."""
    page = tmp_path / "page.md"
    text = (
        "Text.\n\n```python\n# helper.py\nVALUE = 3\n```\n\n"
        "<!-- example: slow, requires brax -->\n```python\nfrom helper import VALUE\n\nassert VALUE == 4\n```\n\n"
        "- a list item:\n\n    ```python\n    x = 1\n    ```\n\n```bash\nexit 1\n```\n"
    )
    page.write_text(text)
    first, second, third = examples(text, page)
    assert (first.file, first.slow, second.slow, second.requires, third.code) == (
        "helper.py",
        False,
        True,
        ("brax",),
        "x = 1\n",
    )
    run(first, tmp_path)
    with pytest.raises(AssertionError):
        run(second, tmp_path)
    assert "helper" not in sys.modules
    with pytest.raises(ValueError, match="unknown example option"):
        examples("<!-- example: fast -->\n```python\npass\n```\n", page)
