"""The Examples blocks of the detectors run and say what they print."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["detectors.ks", "detectors.confidence", "detectors.classes", "detectors.correction",
           "detectors.latency", "detectors.ab", "detectors.sequential", "monitor.ab.shadow",
           "detectors.embedding", "detectors.probabilities", "detectors.vocabulary"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, extraglobs={"np": importlib.import_module("numpy")})
    assert attempted > 0
    assert failed == 0
