"""Realistic-looking prediction logs of a sentiment model, with drift injected on request.

Used by ``make demo``, the benchmarks and the end-to-end tests. Deterministic for a given seed.

Clean traffic: short product reviews from a fixed vocabulary, confident predictions, ~15 ms latency.
Drifted traffic (events at index >= ``drift_after``): longer texts with vocabulary the model never saw
(code-switched Spanish/emoji/product codes), lower confidence, and ~2x latency: what a new market or a
scraping bug looks like from the model's side.
"""

from __future__ import annotations

import heapq

import zlib
from collections.abc import Iterator

import numpy as np
import orjson

__all__ = ["generate_events", "write_events", "POSITIVE", "NEGATIVE"]

POSITIVE = ("great", "excellent", "love", "perfect", "amazing", "fast", "reliable", "happy", "recommend", "solid")
NEGATIVE = ("terrible", "broken", "slow", "refund", "awful", "disappointed", "poor", "cheap", "useless", "returned")
_NOUNS = ("phone", "battery", "screen", "delivery", "price", "case", "charger", "camera", "app", "headphones",
          "keyboard", "support", "packaging", "speaker", "cable")  # fmt: skip
_FILLER = ("the", "this", "it", "was", "is", "really", "and", "but", "very", "my", "for", "with", "after", "a", "so")
_UNSEEN = ("muy", "bueno", "pero", "llegó", "tarde", "envío", "precio", "calidad", "también", "nunca",
           "SKU-88213", "XR7", "🔥", "👍", "vale", "genial", "roto", "devolución")  # fmt: skip


def _sentence(rng: np.random.Generator, sentiment_words, n_words: int, unseen_share: float) -> str:
    words = []
    for _ in range(n_words):
        r = rng.random()
        if r < unseen_share:
            words.append(_UNSEEN[rng.integers(len(_UNSEEN))])
        elif r < unseen_share + 0.25:
            words.append(sentiment_words[rng.integers(len(sentiment_words))])
        elif r < unseen_share + 0.5:
            words.append(_NOUNS[rng.integers(len(_NOUNS))])
        else:
            words.append(_FILLER[rng.integers(len(_FILLER))])
    text = " ".join(words)
    return text[0].upper() + text[1:] + (".", "!", "")[rng.integers(3)]


def generate_events(
    n: int,
    *,
    seed: int = 0,
    start_ms: int = 1_764_000_000_000,
    rate_per_s: float = 20.0,
    drift_after: int | None = None,
    model: str = "sentiment",
    version: str = "1",
    label_share: float = 0.0,
    error_share: float = 0.002,
    variants: dict[str, float] | None = None,
    shadow_share: float = 0.0,
    embedding_dim: int = 0,
    segments: dict[str, float] | None = None,
    drift_segments: tuple[str, ...] | None = None,
    label_event_share: float = 0.0,
    label_delay_ms: tuple[int, int] = (500, 5_000),
) -> Iterator[dict]:
    """Yield ``n`` event dicts (docs/events.md) with event times ``1/rate_per_s`` apart on average.

    ``variants`` ({name: share}) assigns each event a ``variant`` at random with those shares (an A/B split);
    ``shadow_share`` of the successful predictions are followed by their shadow model's event (same
    ``request_id``, ``variant: "shadow"``, up to 200 ms later, 3% different predictions, other confidence and
    latency), which is not counted in ``n``. Both draw from their own generators, so the served events are
    the same with and without them. ``embedding_dim`` > 0 adds an ``embedding`` field: the normalised mean of
    fixed pseudo-random word vectors (a stand-in for the served model's pooled output; deterministic, and
    moved by the drifted texts' unseen vocabulary). ``segments`` ({name: share}) gives each event a
    ``segment`` drawn with those shares from its own generator; with ``drift_segments`` only the events of
    those segments drift after ``drift_after``.
    moved by the drifted texts' unseen vocabulary). ``label_event_share`` of the events get a label event
    (``kind: "label"``, docs/events.md) a uniform ``label_delay_ms`` range later, yielded in event-time order
    among the rest (and any still due at the end), not counted in ``n``; its own generator too.
    """
    rng = np.random.default_rng(seed)
    split_rng = np.random.default_rng([seed, 1])
    shadow_rng = np.random.default_rng([seed, 2])
    label_rng = np.random.default_rng([seed, 4])  # [seed, 3] draws the segments
    labels_due: list[tuple[int, int, dict]] = []  # (ts, sequence, label event), a heap
    names = list(variants) if variants else []
    shares = np.asarray([variants[v] for v in names], dtype=np.float64) if variants else None
    segment_rng = np.random.default_rng([seed, 3])
    segment_names = list(segments) if segments else []
    segment_p = np.asarray([segments[s] for s in segment_names], dtype=np.float64) if segments else None
    ts = float(start_ms)
    step_ms = 1000.0 / rate_per_s
    for i in range(n):
        segment = segment_names[int(segment_rng.choice(len(segment_names), p=segment_p / segment_p.sum()))] if segments else None
        drifted = drift_after is not None and i >= drift_after and (drift_segments is None or segment in drift_segments)
        ts += rng.exponential(step_ms)
        true_pos = rng.random() < 0.55
        words = POSITIVE if true_pos else NEGATIVE
        if drifted:
            n_words = int(rng.integers(18, 60))
            text = _sentence(rng, words, n_words, unseen_share=0.35)
            margin = rng.beta(1.5, 3.0) * 0.5  # closer to 0.5: the model is unsure
            latency = float(rng.lognormal(np.log(30.0), 0.35))
        else:
            n_words = int(rng.integers(4, 22))
            text = _sentence(rng, words, n_words, unseen_share=0.0)
            margin = 0.5 - rng.beta(1.2, 8.0) * 0.5  # mostly confident
            latency = float(rng.lognormal(np.log(15.0), 0.3))
        p_true = 0.5 + margin
        p_pos = p_true if true_pos else 1.0 - p_true
        pred = "positive" if p_pos >= 0.5 else "negative"
        event = {
            "ts": int(ts),
            "model": model,
            "version": version,
            "request_id": f"r{seed}-{i}",
            "text": text,
            "prediction": pred,
            "probabilities": {"positive": round(p_pos, 6), "negative": round(1.0 - p_pos, 6)},
            "latency_ms": round(latency, 3),
        }
        if rng.random() < error_share:
            event.pop("prediction")
            event.pop("probabilities")
            event["error"] = "timeout"
        elif label_share and rng.random() < label_share:
            event["label"] = "positive" if true_pos else "negative"
        if embedding_dim:
            event["embedding"] = _embedding(text, embedding_dim)
        if segment is not None:
            event["segment"] = segment
        if names:
            event["variant"] = names[int(split_rng.choice(len(names), p=shares / shares.sum()))]
        # Built before the served event is yielded: a consumer may change it (live traffic restamps ts).
        shadow = None
        if shadow_share and "prediction" in event and shadow_rng.random() < shadow_share:
            shadow = _shadow_of(event, shadow_rng)
        while labels_due and labels_due[0][0] <= event["ts"]:
            yield heapq.heappop(labels_due)[2]
        if label_event_share and label_rng.random() < label_event_share:
            due = int(ts) + int(label_rng.integers(label_delay_ms[0], label_delay_ms[1] + 1))
            heapq.heappush(labels_due, (due, i, {"kind": "label", "ts": due, "model": model, "version": version,
                                                 "request_id": event["request_id"],
                                                 "label": "positive" if true_pos else "negative"}))
        yield event
        if shadow is not None:
            yield shadow
    while labels_due:
        yield heapq.heappop(labels_due)[2]


_WORD_VECTORS: dict[tuple[str, int], np.ndarray] = {}


def _embedding(text: str, dim: int) -> list[float]:
    """A text's stand-in embedding: the normalised mean of its words' fixed vectors, rounded for the log."""
    vectors = []
    for word in text.lower().split():
        v = _WORD_VECTORS.get((word, dim))
        if v is None:
            v = _WORD_VECTORS[(word, dim)] = np.random.default_rng(zlib.crc32(word.encode())).standard_normal(dim)
        vectors.append(v)
    mean = np.mean(vectors, axis=0) if vectors else np.zeros(dim)
    norm = float(np.linalg.norm(mean)) or 1.0
    return [round(float(x), 4) for x in mean / norm]


def _shadow_of(event: dict, rng: np.random.Generator) -> dict:
    """The shadow model's event for a served one: same request, a slightly different model."""
    p_pos = float(np.clip(event["probabilities"]["positive"] + rng.normal(0.0, 0.03), 0.0, 1.0))
    if rng.random() < 0.03:
        p_pos = 1.0 - p_pos  # disagrees
    shadow = dict(event, ts=event["ts"] + int(rng.integers(0, 200)), variant="shadow",
                  prediction="positive" if p_pos >= 0.5 else "negative",
                  probabilities={"positive": round(p_pos, 6), "negative": round(1.0 - p_pos, 6)},
                  latency_ms=round(event["latency_ms"] * float(rng.uniform(1.1, 1.5)), 3))
    shadow.pop("label", None)
    return shadow


def write_events(path, events) -> int:
    """Write events as JSONL; return how many."""
    n = 0
    with open(path, "wb") as f:
        for e in events:
            f.write(orjson.dumps(e) + b"\n")
            n += 1
    return n
