"""Turn a batch of validated events into per-event rows: latency, confidence, entropy, features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.confidence import entropy_bits
from detectors.text_features import TEXT_FEATURES, text_features
from monitor.ingest.events import Event
from monitor.ingest.reference import FeatureSet
from monitor.ingest.tokenizer import TokenizerFeaturizer

__all__ = ["BatchFeatures", "base_features", "event_rows", "entropies", "LENGTH_FEATURE"]

_WORD_COUNT = TEXT_FEATURES.index("word_count")


class BatchFeatures:
    """Text (and tokenizer) features of every event of a batch; NaN rows for events without text."""

    __slots__ = ("matrix", "lengths")

    def __init__(self, matrix: np.ndarray, lengths: np.ndarray):
        self.matrix = matrix
        # Input length for nlp_input_length_tokens: tokenizer tokens, or whitespace words without one.
        self.lengths = lengths


LENGTH_FEATURE = "token_count"


def base_features(events: Sequence[Event], features: FeatureSet, tokenizer: TokenizerFeaturizer | None) -> BatchFeatures:
    n = len(events)
    width = len(features.base_names)
    matrix = np.full((n, width), np.nan)
    with_text = [i for i, e in enumerate(events) if e.text is not None]
    if with_text:
        texts = [events[i].text for i in with_text]
        # Every event has a text in the common case: a slice assignment, not a fancy-indexed scatter.
        rows = slice(None) if len(with_text) == n else with_text
        matrix[rows, : len(TEXT_FEATURES)] = text_features(texts)
        if tokenizer is not None:
            matrix[rows, len(TEXT_FEATURES) :] = tokenizer.features(texts)
    length_col = len(TEXT_FEATURES) if tokenizer is not None else _WORD_COUNT
    return BatchFeatures(matrix, matrix[:, length_col])


def event_rows(events: Sequence[Event], base: np.ndarray, custom: tuple[str, ...]) -> np.ndarray:
    """Rows of ``latency_ms, confidence, base features..., custom features...`` (NaN = missing)."""
    k = len(events)
    rows = np.empty((k, 2 + base.shape[1] + len(custom)), dtype=np.float64)
    # np.array(..., dtype=float) maps None to NaN in C, much faster than a Python conditional per event.
    rows[:, 0] = np.array([e.latency_ms for e in events], dtype=np.float64)
    rows[:, 1] = np.array([None if e.error is not None else e.confidence for e in events], dtype=np.float64)
    rows[:, 2 : 2 + base.shape[1]] = base
    for j, name in enumerate(custom, start=2 + base.shape[1]):
        rows[:, j] = np.array([e.features.get(name) if e.features else None for e in events], dtype=np.float64)
    return rows


def entropies(events: Sequence[Event]) -> np.ndarray:
    """Entropy (bits) of each event's probabilities; NaN when it logged none (or failed)."""
    out = np.full(len(events), np.nan)
    by_width: dict[int, list[int]] = {}
    for i, e in enumerate(events):
        if e.probabilities is not None and e.error is None:
            by_width.setdefault(len(e.probabilities), []).append(i)
    for idx in by_width.values():
        out[idx] = entropy_bits(np.array([events[i].probabilities for i in idx], dtype=np.float64))
    return out
