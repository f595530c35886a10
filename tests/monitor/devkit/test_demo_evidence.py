"""The demo's subject change (restaurant -> phone reviews, same lengths and words the reference held): the
evidence of the first flagged window names phone words as rising, restaurant words as falling."""

from __future__ import annotations

import json
from itertools import islice

from monitor.config import load_config
from monitor.devkit.demo_traffic import DemoEncoder, demo_events
from monitor.devkit.synth.encoder import SUBJECTS
from monitor.devkit.synth.traffic import write_events
from monitor.jobs.profile_builder import build_profile
from monitor.pipeline import Pipeline, Record


def _word(token: str) -> str:
    return token.rstrip(",.!")


def test_rising_tokens_of_the_first_flagged_window_are_phone_words(tmp_path):
    encoder = DemoEncoder(tmp_path / "encoder")
    write_events(tmp_path / "ref.jsonl", islice(demo_events(encoder, phase="clean", seed=3), 3000))
    profile, _ = build_profile(str(tmp_path / "ref.jsonl"))
    clean = list(islice(demo_events(encoder, phase="clean", seed=4), 2400))
    subject = list(islice(demo_events(encoder, phase="subject", seed=5), 2400))
    shift = clean[-1]["ts"] + 50 - subject[0]["ts"]
    subject_ms = clean[-1]["ts"] + 50
    events = clean + [dict(e, ts=e["ts"] + shift) for e in subject]
    records = [Record(json.dumps(e).encode(), f"nlpmon.events/0@{i}") for i, e in enumerate(events)]
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.size_seconds": 60, "window.min_events": 100,
                                            "window.lateness_seconds": 5, "window.max_future_seconds": 1e9})
    p = Pipeline(config, profiles={profile.model: profile})
    results = [r for lo in range(0, len(records), 1000) for r in p.process(records[lo : lo + 1000]).windows]
    results += list(p.flush().windows)
    flagged = [r for r in results if r.drifted and r.window_end_ms > subject_ms]
    assert flagged, [(r.window_start_ms, r.drifted) for r in results]
    evidence = flagged[0].evidence
    rising = [_word(t.token) for t in evidence.tokens_rising[:5]]
    falling = [_word(t.token) for t in evidence.tokens_falling[:5]]
    assert rising and set(rising) <= set(SUBJECTS["phone"]), rising
    assert falling and set(falling) <= set(SUBJECTS["restaurant"]), falling
    assert evidence.exemplar_score == "embedding" and len(evidence.exemplars) == 10
    assert 0 < len(evidence.embedding_points) <= 200
