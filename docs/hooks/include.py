"""MkDocs hook: include a file from outside docs/ into a page.

``<!-- include: PATH -->`` (PATH relative to the repository root) on a line of its own is replaced by the file's
Markdown, its links ``../docs/NAME`` (right where the file lives, e.g. benchmarks/README.md on GitHub) rewritten
to the pages of the site. ``<!-- include: PATH as LANG -->`` puts the file in a fenced code block of language
LANG instead: a script shown on a page, kept as a real file. Included code is not a page's own ``python``
example, so the documentation tests (tests/docs/test_examples.py) do not run it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r"^<!-- include: (?P<path>[\w./-]+)(?: as (?P<lang>\w+))? -->[ \t]*$", re.MULTILINE)


def _include(match: re.Match) -> str:
    path = ROOT / match["path"]
    if not path.is_file():
        raise PluginError(f"include hook: cannot include {match['path']}: no such file")
    text = path.read_text()
    if match["lang"]:
        return f"```{match['lang']}\n{text.rstrip()}\n```"
    return text.replace("](../docs/", "](")


def on_page_markdown(markdown: str, page, config, files) -> str:
    return INCLUDE.sub(_include, markdown)
