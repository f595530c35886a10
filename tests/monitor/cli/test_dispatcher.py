"""``monitor.cli.main`` is the dispatcher only: the subcommand modules import what they share from ``common``
(and ``table``), never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.cli.main import COMMANDS

CLI = Path(__file__).resolve().parents[3] / "monitor" / "cli"
SHARED = {"monitor.cli.common", "monitor.cli.table"}


def _cli_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("monitor.cli"):
            found |= {node.module} if node.module != "monitor.cli" else {f"monitor.cli.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("monitor.cli")}
    return found


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.__name__)
def test_a_subcommand_module_imports_only_what_they_share(module):
    assert _cli_imports(Path(module.__file__)) <= SHARED


def test_the_dispatcher_registers_every_subcommand_in_help_order():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == ["replay", "run", "check-config", "reference", "compare", "history", "examples", "report", "ab", "reeval", "quantize", "db", "sample"]
