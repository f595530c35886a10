"""Fixtures of the Kafka sidecar tests."""

import pytest

from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.ingest.profile_builder import build_profile
from monitor.ingest.reference import save_profile


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    d = tmp_path_factory.mktemp("profile")
    write_events(d / "ref.jsonl", generate_events(3000, seed=99, rate_per_s=20))
    p, _ = build_profile(str(d / "ref.jsonl"))
    save_profile(p, d / "profile.json")
    return d / "profile.json"
