"""The demo's traffic in three phases, each event with the served model's embedding of its text.

``clean``
    Review texts of the devkit's two-subject corpus (:func:`monitor.devkit.synth.encoder.make_subject_texts`):
    mostly restaurant reviews, :data:`PHONE_SHARE` of them phone reviews. The reference is built from it.
``subject``
    Phone reviews only: the same lengths, style and punctuation (the two subjects' words are paired by
    length), and words the reference already held (its phone share), so neither the shape features nor
    ``oov_rate`` move. Only what the texts are about changed, which only the embedding test sees.
``drift``
    :func:`monitor.devkit.synth.traffic.generate_events`' drifted traffic: longer texts with unseen words,
    lower confidence, slower. Every detector sees it.

Predictions, probabilities and latencies of ``clean`` and ``subject`` come from the clean traffic generator
(the model does not change), and each text's ``embedding`` from the devkit's tiny ONNX encoder, run in
chunks as the events are drawn: what a serving app logging its model's pooled output sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from monitor.devkit.synth.encoder import build_tiny_encoder, make_subject_texts
from monitor.devkit.synth.traffic import generate_events

__all__ = ["PHASES", "PHONE_SHARE", "DemoEncoder", "demo_events"]

PHASES = ("clean", "subject", "drift")
PHONE_SHARE = 0.15  # of the clean (and reference) traffic: enough for the vocabulary to know every phone word
_CHUNK = 256


class DemoEncoder:
    """The devkit's tiny ONNX encoder, built under ``out_dir`` (a few seconds), and its 2-D pooled output."""

    def __init__(self, out_dir: Path | str, seed: int = 0):
        from monitor.onnx.encoder import OnnxEncoder

        built = build_tiny_encoder(out_dir, seed=seed)
        self.dim = built.dim
        self._encoder = OnnxEncoder(built.model_path, built.tokenizer_dir, output=built.pooled_output,
                                    provider="cpu", batch_size=64, intra_op_threads=1)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._encoder.embed(texts)


def demo_events(encoder: DemoEncoder, *, phase: str, seed: int, rate_per_s: float = 20.0) -> Iterator[dict]:
    """Yield events (docs/events.md) of ``phase`` forever, each with an ``embedding``; deterministic per seed."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    meta = generate_events(10**12, seed=seed, rate_per_s=rate_per_s, drift_after=0 if phase == "drift" else None)
    pick = np.random.default_rng([seed, 7])
    share = 1.0 if phase == "subject" else PHONE_SHARE
    chunk = 0
    while True:
        events = [next(meta) for _ in range(_CHUNK)]
        if phase != "drift":
            texts = {s: make_subject_texts(_CHUNK, s, seed=seed * 100_003 + 2 * chunk + k)
                     for k, s in enumerate(("restaurant", "phone"))}
            phone = pick.random(_CHUNK) < share
            for i, e in enumerate(events):
                e["text"] = texts["phone" if phone[i] else "restaurant"][i]
        vectors = encoder.embed([e["text"] for e in events])
        for e, v in zip(events, vectors.tolist()):
            e["embedding"] = v  # float32 values, exact as JSON doubles
            yield e
        chunk += 1
