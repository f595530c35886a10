"""The ``window closed`` log line: segment when the result has one, every drifted test named (probabilities and
embedding included), never input text."""

from __future__ import annotations

import dataclasses
import logging

from detectors.embedding import EmbeddingDriftResult, MultivariateDrift
from detectors.probabilities import ProbabilityDriftResult
from monitor.runtime.result_log import drifted_tests, log_window
from tests.factories import NAN, confidence_shift, feature, window

T0 = 1_764_000_000_000


def _fields(caplog) -> dict:
    (record,) = [r for r in caplog.records if r.getMessage() == "window closed"]
    return {"level": record.levelno, **record.fields}


def _drifted_window(**kw):
    base = window(T0, T0 + 60_000, features=[feature("length", 0.3, 1e-6, 1e-5, True), feature("oov_rate", 0.01, 0.9, 0.9, False)],
                  confidence=confidence_shift(False, 0.01, 0.8), **kw)
    probabilities = ProbabilityDriftResult(drifted=True, correction="bh", alpha=0.01, min_effect=0.1, classes=(
        feature("positive", 0.4, 1e-7, 1e-6, True), feature("negative", 0.02, 0.7, 0.7, False)))
    mmd = MultivariateDrift(test="mmd", statistic=0.2, p_value=0.001, p_value_adjusted=0.002, threshold=0.01, drifted=True,
                            permutations=200, bandwidth=1.0, window_n=50, reference_n=500)
    embedding = EmbeddingDriftResult(drifted=True, correction="bh", alpha=0.01, min_effect=0.1, drifted_share=0.5,
                                     components=(feature("pc1", 0.5, 1e-8, 1e-7, True), feature("pc2", 0.0, 1.0, 1.0, False)),
                                     multivariate=mmd, window_n=50, reference_n=500)
    drift = dataclasses.replace(base.drift, probabilities=probabilities, embedding=embedding)
    return dataclasses.replace(base, drift=drift, drifted=True)


def test_window_closed_names_probability_and_embedding_drift_and_the_segment(caplog):
    caplog.set_level(logging.INFO, logger="nlpmon")
    log_window(_drifted_window(segment="mobile"))
    f = _fields(caplog)
    assert f["level"] == logging.WARNING and f["segment"] == "mobile" and f["drifted"] is True
    assert f["drifted_tests"] == "embedding:mmd,embedding:pc1,input:length,probabilities:positive"


def test_window_closed_without_segment_has_no_segment_field(caplog):
    caplog.set_level(logging.INFO, logger="nlpmon")
    log_window(window(T0, T0 + 60_000, features=[feature("length", 0.01, 0.9, 0.9, False)]))
    f = _fields(caplog)
    assert "segment" not in f and f["drifted_tests"] == "-" and f["level"] == logging.INFO


def test_drifted_tests_names_a_detector_that_drifted_as_a_whole():
    w = _drifted_window()
    whole = dataclasses.replace(w.drift.embedding, components=(), multivariate=None)
    assert drifted_tests(dataclasses.replace(w.drift, embedding=whole)) == ["embedding", "input:length", "probabilities:positive"]
    assert drifted_tests(dataclasses.replace(w.drift, confidence=confidence_shift(True, 0.3, NAN)))[0] == "confidence"
