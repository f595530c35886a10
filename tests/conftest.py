"""Shared fixtures: real servers (tests/fixtures/) and one tiny real tokenizer + ONNX model per session."""

import pytest

pytest_plugins = ["tests.fixtures.broker", "tests.fixtures.databases"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny real classifier: WordPiece tokenizer dir, model.onnx, config.json, heldout.jsonl (no network)."""
    from monitor.devkit.synth.model import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("tiny"), seed=0)
