"""Every command, group and argument of ``nlpmon`` says what it is for in ``--help``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from monitor.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("nlpmon",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))


@pytest.mark.parametrize("path", list(PARSERS), ids=" ".join)
def test_every_argument_and_subcommand_has_help(path):
    parser = PARSERS[path]
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if a.help is None or (isinstance(a.help, str) and not a.help.strip())]
    assert not missing, f"{' '.join(path)}: no help for {missing}"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {c.dest: c.help for c in action._choices_actions}
            assert all(listed.get(name) for name in action.choices), f"{' '.join(path)}: a subcommand without help"


@pytest.mark.parametrize("path", [p for p in PARSERS if len(p) > 1], ids=" ".join)
def test_every_command_page_has_a_description(path):
    assert PARSERS[path].description, f"{' '.join(path)} --help has no description"


@pytest.mark.parametrize("command, expected", [
    (["reference"], "SUBCOMMAND  what to do"), (["reference", "build"], "EVENTS.jsonl  prediction events"),
    (["ab"], "SUBCOMMAND  what to do"), (["history"], "--model NAME  the model whose windows"),
])
def test_group_pages_describe_their_subcommands(command, expected):
    out = subprocess.run([sys.executable, "-m", "monitor.cli", *command, "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "usage: nlpmon " + " ".join(command) in out
    assert expected.replace("  ", " ") in " ".join(out.split())  # the entry and its help, whitespace folded
