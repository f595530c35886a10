"""Numeric features of input texts, computed for a whole batch at once.

The features are cheap, model-agnostic proxies for "the inputs look different": length, vocabulary richness
and character mix. Tokenizer features (token count, unknown-token rate, truncation) need the served model's
tokenizer, which ``monitor.ingest.tokenizer`` runs; :func:`tokenizer_features` turns its counts into columns.

Definitions (all per text; a ratio whose denominator is 0 is 0):

==================== ==========================================================================
``char_length``      number of Unicode code points
``word_count``       number of whitespace-separated words (``str.split()``)
``mean_word_length`` non-whitespace code points / ``word_count``
``unique_word_ratio``distinct lower-cased words / ``word_count``
``non_ascii_ratio``  code points above U+007F / ``char_length``
``digit_ratio``      decimal digits (Unicode ``Nd``) / ``char_length``
``uppercase_ratio``  upper-case letters (``Lu``) / letters (``L*``)
``punctuation_ratio``punctuation (Unicode ``P*``) / ``char_length``
``empty``            1 when the text has no word (empty or whitespace only), else 0
==================== ==========================================================================

Character classes are looked up for the Basic Multilingual Plane; code points above U+FFFF (emoji, rare
scripts) count as non-ASCII only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

import numpy as np

from detectors.text_kernels import char_codes, class_counts, code_points
from detectors.word_table import WordInterner, distinct_ids

__all__ = ["TEXT_FEATURES", "TOKENIZER_FEATURES", "BINARY_FEATURES", "text_features", "text_features_batch",
           "text_features_and_words", "tokenizer_features", "BatchWords", "WordIndex", "distinct_per_event"]

TEXT_FEATURES = (
    "char_length",
    "word_count",
    "mean_word_length",
    "unique_word_ratio",
    "non_ascii_ratio",
    "digit_ratio",
    "uppercase_ratio",
    "punctuation_ratio",
    "empty",
)
TOKENIZER_FEATURES = ("token_count", "unk_token_rate", "truncated")
# The 0/1 features (1: the text is empty; the tokenizer cut it at max_length): tested as proportions, with an
# absolute effect floor, not by KS (detectors.proportions).
BINARY_FEATURES = ("empty", "truncated")

def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def text_features(texts: Sequence[str]) -> np.ndarray:
    """Return an ``(len(texts), len(TEXT_FEATURES))`` float64 matrix, columns in :data:`TEXT_FEATURES` order.

    Examples
    --------
    >>> m = text_features(["Hello world!", ""])
    >>> dict(zip(TEXT_FEATURES, m[0].tolist()))["word_count"], float(m[1, TEXT_FEATURES.index("empty")])
    (2.0, 1.0)
    """
    return text_features_batch(texts)[0]


class WordIndex(Protocol):
    """Maps words to integer ids, equal words to equal ids and different words to different ids
    (:class:`~detectors.word_table.WordInterner`'s interface)."""

    def intern(self, text: str, buf: np.ndarray, counts: np.ndarray, *, lower: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None: ...


@dataclass(frozen=True, slots=True)
class BatchWords:
    """The lower-cased words of a batch's texts (``text.lower().split()``) as ids of one :class:`WordIndex`.

    ``ids``: every word's id, text after text; ``counts``: each text's number of words (0 for an event
    without text); ``distinct``/``offsets``: each text's distinct ids, in order of first occurrence (CSR:
    ``distinct[offsets[i]:offsets[i + 1]]``); ``index``: the WordIndex that gave the ids (kept, so that
    whoever holds the ids can still resolve them after the index has moved on).
    """

    ids: np.ndarray
    counts: np.ndarray
    distinct: np.ndarray
    offsets: np.ndarray
    index: object = None

    @classmethod
    def empty(cls, n: int, index: object = None) -> "BatchWords":
        none = np.zeros(0, dtype=np.int64)
        return cls(none, np.zeros(n, dtype=np.int64), none, np.zeros(n + 1, dtype=np.int64), index)

    def take(self, sel) -> "BatchWords":
        """The words of texts ``sel`` (indices, increasing), as a BatchWords of their own."""
        sel = np.asarray(sel, dtype=np.intp)
        ids = self.ids[_csr_positions(np.cumsum(self.counts) - self.counts, self.counts, sel)]
        distinct_len = np.diff(self.offsets)
        distinct = self.distinct[_csr_positions(self.offsets[:-1], distinct_len, sel)]
        offsets = np.zeros(sel.size + 1, dtype=np.int64)
        np.cumsum(distinct_len[sel], out=offsets[1:])
        return BatchWords(ids, self.counts[sel], distinct, offsets, self.index)

    def spread(self, rows: Sequence[int], n: int) -> "BatchWords":
        """These words as those of rows ``rows`` (increasing) of a batch of ``n`` texts; other rows none."""
        counts = np.zeros(n, dtype=np.int64)
        counts[rows] = self.counts
        distinct_len = np.zeros(n, dtype=np.int64)
        distinct_len[rows] = np.diff(self.offsets)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(distinct_len, out=offsets[1:])
        return BatchWords(self.ids, counts, self.distinct, offsets, self.index)

    def lists(self, words: Sequence[str]) -> list[list[str]]:
        """Each text's words as strings, given ``words``: the batch's words in order (tests, old callers)."""
        it = iter(words)
        return [list(islice(it, c)) for c in self.counts.tolist()]


def _csr_positions(starts: np.ndarray, lengths: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Positions in a flat array of the segments ``sel`` (segment i: ``starts[i]``, ``lengths[i]`` long)."""
    lengths = lengths[sel]
    ends = np.cumsum(lengths)
    return np.repeat(starts[sel] - (ends - lengths), lengths) + np.arange(int(ends[-1]) if ends.size else 0)


def distinct_per_event(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each event's distinct ids in order of first occurrence (CSR: ``ids[offsets[i]:offsets[i+1]]``), from
    all its ids and their count per event."""
    n = lengths.size
    lengths = lengths.astype(np.int64, copy=False)
    if int(lengths.sum()) != ids.size or (n and int(lengths.min()) < 0):  # the kernel trusts them: no bounds
        raise ValueError("lengths must be non-negative and add up to the number of ids")
    if ids.size == 0:
        return ids.astype(np.int64, copy=False), np.zeros(n + 1, dtype=np.int64)
    lo, width = int(ids.min()), int(ids.max()) + 1
    if lo >= 0 and width <= max(1 << 22, 4 * ids.size):  # a mark per id (vocabulary ids, the word table's)
        return distinct_ids(ids, lengths, width)
    uniq, dense = np.unique(ids, return_inverse=True)  # too sparse for a mark each: numbered densely first
    distinct, offsets = distinct_ids(dense.ravel(), lengths, uniq.size)
    return uniq[distinct].astype(np.int64, copy=False), offsets


def text_features_batch(texts: Sequence[str], index: WordIndex | None = None) -> tuple[np.ndarray, BatchWords]:
    """:func:`text_features` and the texts' lower-cased words as ids of ``index`` (a fresh
    :class:`~detectors.word_table.WordInterner` by default), which ``oov_rate`` and the evidence's token
    sets reuse instead of splitting again.

    Two compiled passes: the character classes and word counts over the texts joined by spaces
    (:mod:`detectors.text_kernels`), then the words of the same buffer lower-cased as they are read, cut back
    into texts by those word counts, as ids with each text's distinct ids (:mod:`detectors.word_table`). A
    batch with U+0130 or U+03A3 is lower-cased by one ``str.lower`` call instead (a space is not
    case-ignorable, so it ends a final-sigma context exactly as a text's end does).
    """
    index = WordInterner() if index is None else index
    n = len(texts)
    out = np.zeros((n, len(TEXT_FEATURES)), dtype=np.float64)
    if n == 0:
        return out, BatchWords.empty(0, index)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    out[:, 0] = lengths
    if not lengths.any():
        out[:, 8] = 1.0
        return out, BatchWords.empty(n, index)
    joined = " ".join(texts)
    buf = code_points(joined)
    counts, words = class_counts(buf, lengths, char_codes())
    digits, upper, letters, punct, spaces, non_ascii = (counts[:, c] for c in range(6))
    got = index.intern(joined, buf, words, lower=True)  # lower-cased as the kernel reads them
    if got is None:  # U+0130 or U+03A3, whose lower case is not one code point for one: str.lower's
        lowered = joined.lower()
        got = index.intern(lowered, code_points(lowered), words)
    if got is None:  # never seen; each text's own split is the authority if it ever is
        split = [t.lower().split() for t in texts]
        words = np.fromiter(map(len, split), dtype=np.int64, count=n)
        flat = " ".join(" ".join(ws) for ws in split)
        got = index.intern(flat, code_points(flat), words)
    ids, distinct, offsets, _ = got
    unique = np.diff(offsets)

    out[:, 1] = words
    out[:, 2] = _ratio(lengths - spaces, words)
    out[:, 3] = _ratio(unique, words)
    out[:, 4] = _ratio(non_ascii, lengths)
    out[:, 5] = _ratio(digits, lengths)
    out[:, 6] = _ratio(upper, letters)
    out[:, 7] = _ratio(punct, lengths)
    out[:, 8] = words == 0
    return out, BatchWords(ids, words, distinct, offsets, index)


def text_features_and_words(texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
    """:func:`text_features` and each text's lower-cased words as lists of strings (``str.lower().split()``)."""
    matrix, words = text_features_batch(texts)
    return matrix, words.lists(" ".join(texts).lower().split())


def tokenizer_features(
    token_counts: np.ndarray, unk_counts: np.ndarray, content_counts: np.ndarray, max_length: int
) -> np.ndarray:
    """Return an ``(n, len(TOKENIZER_FEATURES))`` matrix from per-text tokenizer counts.

    ``token_counts`` include the special tokens the model sees ([CLS], [SEP], ...), so ``truncated`` means
    exactly "the served model would have cut this input at ``max_length``". The unknown-token rate is taken
    over ``content_counts`` (tokens other than special ones).
    """
    token_counts = np.asarray(token_counts, dtype=np.float64)
    out = np.empty((token_counts.size, len(TOKENIZER_FEATURES)), dtype=np.float64)
    out[:, 0] = token_counts
    out[:, 1] = _ratio(np.asarray(unk_counts, dtype=np.float64), np.asarray(content_counts, dtype=np.float64))
    out[:, 2] = token_counts > max_length
    return out
