"""Render every command's ``--help`` as one Markdown page.

Run ``python -m floodwatch.cli.reference > docs/cli-reference.md``.

``tests/cli/test_reference.py`` fails when the page drifts from the real
help, so the reference is never out of date.
"""

from __future__ import annotations

import argparse
import os
import sys

from floodwatch.cli.main import build_parser

WIDTH = "100"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public way to list subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal: fix it so the page is stable
    try:
        parser = build_parser()
        parts = ["# Command-line reference", "",
                 "Generated from the real `--help` by "
                 "`python -m floodwatch.cli.reference > docs/cli-reference.md`.", "",
                 "## floodwatch", "", "```", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subparsers(parser).items():
            parts += [f"## floodwatch {name}", "", "```", sub.format_help().rstrip(), "```", ""]
            for subname, subsub in _subparsers(sub).items():
                parts += [f"### floodwatch {name} {subname}", "", "```", subsub.format_help().rstrip(), "```", ""]
        return "\n".join(parts)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    sys.stdout.write(render())
