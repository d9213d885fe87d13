"""MkDocs hook: the command-line reference (docs/cli.md) generated from the argparse parsers.


`on_page_markdown` replaces the marker ``<!-- cli-reference -->`` in cli.md with Markdown built from
`stablebptt.cli.commands.build_parser()`: for every command its help, description, usage and a table of its
options (help text and default); for train, compare and sweep one section per task parser (the task's own
settings, the training options, the command's options). So the page cannot drift from ``stablebptt --help``.

It reads the parsers through argparse's public formatting (`format_usage`) and, for the option list, the
parsers' ``_actions``, ``_action_groups`` and the sub-parser ``choices``. After generating, it checks that
every command, task and option string of every parser appears in the page, and fails the build if one is
missing.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

MARKER = "<!-- cli-reference -->"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IN_HELP = re.compile(r"\s*\(default: (?P<value>.*)\)\s*$", re.DOTALL)


def _parser() -> argparse.ArgumentParser:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from stablebptt.cli.commands import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> tuple[argparse._SubParsersAction | None, dict[str, str]]:
    """The sub-parsers action of `parser` (or None) and the help of each choice."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return action, helps
    return None, {}


def _cell(text: str) -> str:
    """Text for a Markdown table cell: HTML-escaped, pipes and newlines neutralised, `code` kept."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return text.replace("|", "&#124;")


def _code(text: str) -> str:
    return f"<code>{_cell(text)}</code>"


def _option_name(action: argparse.Action) -> str:
    names = ", ".join(action.option_strings) if action.option_strings else (action.metavar or action.dest)
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or action.dest.upper()
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        names = f"{names} {metavar}" if action.nargs != "?" else f"{names} [{metavar}]"
    return names


def _help_and_default(action: argparse.Action) -> tuple[str, str]:
    text = action.help or ""
    hidden = text == argparse.SUPPRESS
    if hidden:
        text = "deprecated alias, accepted but hidden from `--help`"
    text = text % {"default": action.default, "prog": "stablebptt"} if "%(" in text else text
    default = ""
    match = DEFAULT_IN_HELP.search(text)
    if match:
        default, text = match.group("value"), text[: match.start()]
    elif action.default not in (None, False, argparse.SUPPRESS, []) and action.nargs != 0:
        default = str(action.default)
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text = f"{text} (one of: {', '.join(map(str, action.choices))})"
    if action.required and action.option_strings:
        text = f"{text} (required)"
    return text, default


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    groups = [g for g in parser._action_groups if g.title != "options"]
    groups += [g for g in parser._action_groups if g.title == "options"]  # the command's own options last
    for group in groups:
        actions = [
            a for a in group._group_actions if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))
        ]
        if not actions:
            continue
        title = group.title or "options"
        lines += ["", f"**{title[0].upper() + title[1:]}**", "", "| option | description | default |", "|---|---|---|"]
        for action in actions:
            text, default = _help_and_default(action)
            lines.append(f"| {_code(_option_name(action))} | {_cell(text)} | {_code(default) if default else ''} |")
    return lines


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    usage = parser.format_usage().strip()
    usage = re.sub(r"^usage:\s*", "", usage)
    return ["```text", usage, "```"]


def _section(parser: argparse.ArgumentParser, title: str, help_text: str, level: int) -> list[str]:
    lines = ["", f"{'#' * level} `{title}`", ""]
    if help_text:
        lines += [help_text[0].upper() + help_text[1:] + ".", ""]
    if parser.description and parser.description != help_text:
        lines += [parser.description, ""]
    lines += _usage(parser)
    lines += _options_table(parser)
    _check_section(parser, "\n".join(lines), title)
    return lines


def _check_section(parser: argparse.ArgumentParser, section: str, title: str) -> None:
    """Every option string of `parser` must appear in its own section."""
    for action in parser._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help") and f"{option}" not in section:
                raise PluginError(f"cli hook: option {option} of `{title}` missing from its section")


def generate(parser: argparse.ArgumentParser) -> str:
    commands, helps = _subcommands(parser)
    assert commands is not None
    lines = [
        "## Commands",
        "",
        "| command | what it does |",
        "|---|---|",
        *(f"| [`stablebptt {name}`](#stablebptt-{name}) | {_cell(helps.get(name, ''))} |" for name in commands.choices),
        "",
        "## `stablebptt`",
        "",
        parser.description or "",
        "",
        *_usage(parser),
        *_options_table(parser),
    ]
    _check_section(parser, "\n".join(lines), "stablebptt")
    if parser.epilog:
        lines += ["", parser.epilog]
    for name, sub in commands.choices.items():
        lines += _section(sub, f"stablebptt {name}", helps.get(name, ""), 2)
        tasks, task_helps = _subcommands(sub)
        if tasks is None:
            continue
        if sub.epilog:
            lines += ["", sub.epilog]
        lines += [
            "",
            "Each TASK has its own parser: its own settings first, then the options every task shares.",
            "",
            "| TASK | what it is |",
            "|---|---|",
        ]
        lines += [f"| `{t}` | {_cell(task_helps.get(t, ''))} |" for t in tasks.choices]
        for task, task_parser in tasks.choices.items():
            lines += _section(task_parser, f"stablebptt {name} {task}", "", 3)
    return "\n".join(lines) + "\n"


def _check(parser: argparse.ArgumentParser, text: str, where: str = "stablebptt") -> None:
    """Every command, task and option string of every parser must appear in `text`."""
    commands, _ = _subcommands(parser)
    for action in parser._actions:
        for option in action.option_strings:
            if option not in text:
                raise PluginError(f"cli hook: option {option} of `{where}` missing from the generated page")
    if commands is not None:
        for name, sub in commands.choices.items():
            if f"`{where} {name}`" not in text:
                raise PluginError(f"cli hook: `{where} {name}` missing from the generated page")
            _check(sub, text, f"{where} {name}")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    parser = _parser()
    generated = generate(parser)
    _check(parser, generated)
    return markdown.replace(MARKER, generated)
