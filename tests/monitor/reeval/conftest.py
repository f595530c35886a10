"""Fixtures for the re-evaluation tests: one tiny real ONNX classifier (and its INT8 copy) per session."""

from __future__ import annotations

import argparse
import json

import pytest

# ``tiny`` (the default tiny classifier) comes from tests/conftest.py.


@pytest.fixture(scope="session")
def tiny_int8(tiny, tmp_path_factory):
    """A per-channel INT8 copy of ``tiny``."""
    from monitor.reeval.quantize import quantize_model

    return quantize_model(tiny.model_path, tmp_path_factory.mktemp("int8") / "model_int8.onnx").output


@pytest.fixture(scope="session")
def heldout_rows(tiny):
    return [json.loads(line) for line in tiny.heldout_path.read_text(encoding="utf-8").splitlines()]


def _parser() -> argparse.ArgumentParser:
    from monitor.cli.reeval import add_parsers

    parser = argparse.ArgumentParser(prog="nlpmon")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def nlpmon():
    """Run a subcommand through the real handlers: ``nlpmon("reeval", "--model", ...) -> exit code``."""

    def run(*argv: str) -> int:
        args = _parser().parse_args([str(a) for a in argv])
        return args.func(args)

    return run
