"""The reference side of shifted tokens (docs/evidence.md): how many reference events hold each token.

Exact document counts over the whole reference file, in memory during the build only (like the oov_rate
vocabulary's word counts); the profile keeps the tokens held by at least ``min_events`` events (the privacy
floor), at most :data:`MAX_PROFILE_TOKENS` of them, most frequent first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


__all__ = ["ReferenceTokens", "MAX_PROFILE_TOKENS"]

MAX_PROFILE_TOKENS = 20_000


class ReferenceTokens:
    """Document counts of the reference texts' tokens: the served tokenizer's ids, else lower-cased words."""

    def __init__(self, min_events: int):
        self.min_events = int(min_events)
        self.events = 0  # events with text
        self.words: Counter[str] = Counter()
        self.ids = np.zeros(0, dtype=np.int64)

    def add(self, texts: Sequence[str | None], tokenizer=None) -> None:
        present = [t for t in texts if t is not None]
        self.events += len(present)
        if not present:
            return
        if tokenizer is None:
            # the same words as the windows' (monitor/windowing/evidence.py): each once per event
            for words in map(set, map(str.split, map(str.lower, present))):
                self.words.update(words)
            return
        ids, _ = tokenizer.distinct_token_ids(present)  # each token once per event
        counts = np.bincount(ids, minlength=self.ids.size)
        counts[: self.ids.size] += self.ids
        self.ids = counts

    def finish(self, tokenizer=None) -> dict | None:
        """The profile's ``tokens`` (reference.Profile), or None without any text."""
        if self.events == 0:
            return None
        if tokenizer is None:
            counts = dict(self.words)
        else:
            ids = np.flatnonzero(self.ids)
            counts = {}
            for name, c in zip(tokenizer.tokens(ids.tolist()), self.ids[ids].tolist()):
                counts[name] = counts.get(name, 0) + c
        kept = sorted(((t, c) for t, c in counts.items() if c >= self.min_events), key=lambda tc: (-tc[1], tc[0]))
        return {"source": "tokenizer" if tokenizer is not None else "words", "min_events": self.min_events,
                "events": self.events, "counts": dict(kept[:MAX_PROFILE_TOKENS])}
