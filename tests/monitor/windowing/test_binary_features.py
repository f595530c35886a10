"""The window's input-drift test takes the 0/1 features as proportions (detect.min_proportion_delta)."""

from __future__ import annotations

import numpy as np

from detectors.text_features import BINARY_FEATURES, TEXT_FEATURES, TOKENIZER_FEATURES
from monitor.config import DetectConfig
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.windowing.evaluate import StreamDetectors


def test_binary_features_are_features_the_pipeline_computes():
    assert set(BINARY_FEATURES) <= set(TEXT_FEATURES + TOKENIZER_FEATURES)


def test_stream_detectors_test_empty_texts_as_a_proportion(tmp_path):
    write_events(tmp_path / "ref.jsonl", generate_events(1500, seed=3))
    profile, _ = build_profile(str(tmp_path / "ref.jsonl"))
    detectors = StreamDetectors(profile, DetectConfig(min_proportion_delta=0.03))
    assert detectors.input.binary == ("empty",)  # no tokenizer here, so no `truncated`
    assert detectors.input.min_proportion_delta == 0.03
    window = {name: np.asarray(profile.samples[name][:500], dtype=float) for name in profile.feature_names}
    window["empty"] = (np.arange(500) % 10 == 0).astype(float)  # 10% empty texts
    empty = next(f for f in detectors.input.test(window).features if f.feature == "empty")
    assert empty.test == "proportion" and empty.min_effect == 0.03 and empty.drifted
