"""The ``oov_rate`` input feature: the reference side (``nlpmon reference build``) and the per-batch column.

``oov_rate`` is the share of a text's lower-cased words that the model's reference vocabulary never held
(:mod:`detectors.vocabulary`: keyed 32-bit hashes, at most ``MAX_WORDS`` of them, no readable word). It is
KS-tested like every other input feature, against reference values that must come from texts the
vocabulary was *not* built from (in-sample they would all be 0): the builder counts the words of four
reference texts out of five and keeps a seeded sample of the fifth, scored once the vocabulary is complete.

A profile without a vocabulary (built before this feature, or from events without text) simply has no
``oov_rate`` feature.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np

from detectors.text_features import BatchWords
from detectors.vocabulary import OOV_FEATURE, HashedVocabulary
from monitor.ingest.words import WordIds, split_words

__all__ = ["OOV_FEATURE", "VocabularyBuilder", "oov_column", "MAX_WORDS", "HOLDOUT_EVERY", "MIN_HELD_OUT"]

MAX_WORDS = 32768  # the false-positive rate is MAX_WORDS / 2**32 = 7.6e-6 (detectors/vocabulary.py)
HOLDOUT_EVERY = 5  # every fifth text with words is held out of the vocabulary to score the reference
MIN_HELD_OUT = 20  # fewer held-out texts than this: no oov_rate reference worth testing against
_SEED_SALT = 0x4F4F56  # "OOV": the held-out sample's generator differs from the other reservoirs'


class VocabularyBuilder:
    """Word counts of the vocabulary's share of the reference texts and a seeded sample of the held-out rest.

    The counts live in memory during the build only (one entry per distinct word); the profile gets hashes.
    """

    def __init__(self, cap: int, seed: int):
        self.cap = cap
        self.counts: Counter[str] = Counter()
        self.held: list[str] = []
        self.texts = 0  # texts seen (every HOLDOUT_EVERY-th, counting from the first, is held out)
        self.held_seen = 0
        self._rng = np.random.default_rng([seed, _SEED_SALT])

    def add(self, texts: Sequence[str | None]) -> None:
        for text in texts:
            if text is None:
                continue
            if self.texts % HOLDOUT_EVERY == 0:
                self._hold(text)
            else:
                self.counts.update(text.lower().split())
            self.texts += 1

    def _hold(self, text: str) -> None:
        # Reservoir sampling (algorithm R), seeded: the sample depends on the file only, not on batching.
        self.held_seen += 1
        if len(self.held) < self.cap:
            self.held.append(text)
        else:
            j = int(self._rng.integers(self.held_seen))
            if j < self.cap:
                self.held[j] = text

    def finish(self, key: bytes | None = None) -> tuple[dict, np.ndarray] | None:
        """Return ``(vocabulary.to_dict(), reference oov_rate sample)``, or None with too little text.

        ``key`` is the hashes' BLAKE2b key; by default 16 random bytes, so that hash tables made for one
        profile are useless against another's.
        """
        if not self.counts or len(self.held) < MIN_HELD_OUT:
            return None
        vocabulary = HashedVocabulary.from_counts(self.counts, key=key or os.urandom(16), max_words=MAX_WORDS)
        return vocabulary.to_dict(), vocabulary.oov_rate(self.held)


def oov_column(texts: Sequence[str | None], vocabulary: HashedVocabulary, words: BatchWords | None = None) -> np.ndarray:
    """Each text's ``oov_rate`` against ``vocabulary`` (NaN for an event without text), one pass per batch.

    ``words``: the texts' words as the text features split them (:class:`BatchWords` of the process's word
    table), which saves splitting and hashing every word again: a word's membership is looked up by its id.
    """
    n = len(texts)
    if words is None or not isinstance(words.index, WordIds):
        words = split_words([t if t is not None else "" for t in texts])
    known = words.index.membership(vocabulary)
    text_of = np.repeat(np.arange(n), words.counts)
    oov = np.bincount(text_of[~known[words.ids]], minlength=n)
    out = np.zeros(n, dtype=np.float64)
    np.divide(oov, words.counts, out=out, where=words.counts > 0)
    if None in texts:
        out[[i for i, t in enumerate(texts) if t is None]] = np.nan
    return out
