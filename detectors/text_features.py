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

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import count, islice
from typing import Protocol

import numpy as np

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

_BMP = 0x10000
# Column order of the character-class table built below.
_DIGIT, _UPPER, _LETTER, _PUNCT, _SPACE, _NON_ASCII = range(6)
_N_CLASSES = 6
_N_CODES = 1 << _N_CLASSES


@lru_cache(maxsize=1)
def _char_codes() -> np.ndarray:
    """The character classes of every code point as one 6-bit code (uint8).

    ``codes[cp]`` has bit ``k`` set when code point ``cp`` is in class ``k`` (order above); index ``_BMP``
    stands for every code point above the BMP (only non-ASCII is set there). uint8: the table (64 KiB)
    stays in cache while a batch is looked up.
    """
    codes = np.zeros(_BMP + 1, dtype=np.uint8)
    for cp in range(_BMP):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        code = 0
        if cat == "Nd":
            code |= 1 << _DIGIT
        if cat[0] == "L":
            code |= 1 << _LETTER
            if cat == "Lu":
                code |= 1 << _UPPER
        elif cat[0] == "P":
            code |= 1 << _PUNCT
        if ch.isspace():
            code |= 1 << _SPACE
        codes[cp] = code
    codes[0x80:] |= 1 << _NON_ASCII
    codes.flags.writeable = False
    return codes


@lru_cache(maxsize=2)
def _packed(field_bits: int) -> tuple[np.ndarray, ...]:
    """Code point -> its class bits spread into ``field_bits``-wide counters of uint64 words (``_BMP + 1``
    entries per word, like :func:`_char_codes`).

    A text's class counts are then the sum of its characters' packed words (one cumulative sum over the
    batch, differenced at the text boundaries), exact while every count of one text fits in its field: the
    caller picks ``field_bits`` from the longest text. Sums wrap modulo 2**64, so a difference of two
    cumulative sums is still the exact segment sum.
    """
    codes = _char_codes().astype(np.uint64)
    per_word = 64 // field_bits
    tables = []
    for lo in range(0, _N_CLASSES, per_word):
        table = np.zeros(codes.size, dtype=np.uint64)
        for k in range(lo, min(lo + per_word, _N_CLASSES)):
            table |= ((codes >> np.uint64(k)) & np.uint64(1)) << np.uint64(field_bits * (k - lo))
        table.flags.writeable = False
        tables.append(table)
    return tuple(tables)


def _code_points(texts: Sequence[str]) -> np.ndarray:
    """The batch's characters as indices into the class tables (``_BMP`` for every code point above the BMP),
    text after text, in an intp buffer with one spare leading slot (``buf[1:]`` are the indices; the slot lets
    :func:`_class_counts` reuse the buffer for its cumulative sums)."""
    joined = "".join(texts)
    # One buffer for the whole batch: bytes when it is all ASCII (isascii() is O(1) on a str), else UTF-32.
    # surrogatepass: a lone surrogate (a string cut mid-emoji) is a code point like any other here, never an
    # exception that would stop the batch; the event decoder already mends those it sees (U+FFFD).
    if joined.isascii():
        src = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    else:
        src = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    # Few, reused temporaries: a batch's arrays are megabytes, and every fresh one costs page faults.
    buf = np.empty(src.size + 1, dtype=np.intp)
    idx = buf[1:]
    # intp indices: take() converts any other dtype element by element, ~10x slower.
    if src.dtype == np.uint8:
        idx[...] = src
    else:
        np.minimum(src, np.uint32(_BMP), out=idx)
    return buf


def _word_counts(buf: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-text number of ``str.split()`` words: runs of non-whitespace characters (whitespace as
    ``str.isspace``, the class table's ``_SPACE`` bit, which ``str.split`` shares), counted by their first
    character (one that starts its text or follows whitespace). Lower-casing maps no character to or from
    whitespace, so these are also the counts of ``text.lower().split()``."""
    idx = buf[1:]
    word = (_char_codes().take(idx) & np.uint8(1 << _SPACE)) == 0
    start = word.copy()
    np.logical_and(start[1:], ~word[:-1], out=start[1:])
    ends = np.cumsum(lengths)
    nonempty = lengths > 0
    first = (ends - lengths)[nonempty]
    start[first] = word[first]  # a text's first character starts a word whatever precedes it
    out = np.zeros(lengths.size, dtype=np.int64)
    # One segment per non-empty text (an empty text between two adds nothing to the one before it); a sum
    # over uint8 into int64, ~3x cheaper than a cumulative sum of the whole buffer.
    out[nonempty] = np.add.reduceat(start.view(np.uint8), first, dtype=np.int64)
    return out


def _class_counts(buf: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-text counts of each character class: ``(len(lengths), 6)`` int64, columns in class order.

    ``buf``: :func:`_code_points` of the texts, overwritten here."""
    idx = buf[1:]
    longest = int(lengths.max())
    if longest >= 1 << 21:  # a text of 2M characters or more: a bincount over (text, code) pairs
        code = _char_codes().take(idx).astype(np.intp)
        per_code = np.bincount(np.repeat(np.arange(lengths.size, dtype=np.intp), lengths) * _N_CODES + code,
                               minlength=lengths.size * _N_CODES).reshape(lengths.size, _N_CODES)
        has = (np.arange(_N_CODES)[None, :] >> np.arange(_N_CLASSES)[:, None]) & 1 == 1
        return np.stack([per_code[:, has[k]].sum(axis=1) for k in range(_N_CLASSES)], axis=1)
    # 6 counters of 10 bits in one word while every text is under 1,024 characters (the common case), else
    # 3 counters of 21 bits in each of two words.
    field_bits = 10 if longest < 1 << 10 else 21
    tables = _packed(field_bits)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    mask = np.uint64((1 << field_bits) - 1)
    per_word = 64 // field_bits
    out = np.empty((lengths.size, _N_CLASSES), dtype=np.int64)
    # With one table the packed words overwrite the indices in place; with two the indices are read twice.
    cum = buf.view(np.uint64) if len(tables) == 1 else np.empty(idx.size + 1, dtype=np.uint64)
    cum[0] = 0
    for w, table in enumerate(tables):
        table.take(idx, out=cum[1:], mode="clip")
        np.cumsum(cum[1:], out=cum[1:])
        sums = cum[ends] - cum[starts]
        for j, k in enumerate(range(w * per_word, min((w + 1) * per_word, _N_CLASSES))):
            out[:, k] = (sums >> np.uint64(field_bits * j)) & mask
    return out


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
    """Maps words to integer ids, equal words to equal ids and different words to different ids."""

    def ids(self, words: list[str]) -> np.ndarray: ...


class _BatchIds:
    """A :class:`WordIndex` for one batch: a dict filled as the words come (ids with gaps, which is fine)."""

    def ids(self, words: list[str]) -> np.ndarray:
        index: dict[str, int] = {}
        # setdefault(word, i): the word's first position in the batch; one hash lookup per word, in C.
        return np.fromiter(map(index.setdefault, words, count()), dtype=np.int64, count=len(words))


@dataclass(frozen=True, slots=True)
class BatchWords:
    """The lower-cased words of a batch's texts (``text.lower().split()``) as ids of one :class:`WordIndex`.

    ``ids``: every word's id, text after text; ``counts``: each text's number of words (0 for an event
    without text); ``distinct``/``offsets``: each text's distinct ids, ascending (CSR:
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
    """Each event's distinct ids (CSR: ``ids[offsets[i]:offsets[i+1]]``, ascending), from all its ids and
    their count per event."""
    n = lengths.size
    offsets = np.zeros(n + 1, dtype=np.int64)
    if ids.size == 0:
        return ids.astype(np.int64, copy=False), offsets
    width = int(ids.max()) + 1
    # int32 when it fits: the sort is the cost here
    dtype = np.int32 if n * width < 2**31 else np.int64
    pairs = np.repeat(np.arange(n, dtype=dtype), lengths) * dtype(width) + ids.astype(dtype)
    pairs.sort()  # (a plain sort and a diff: faster than np.unique here)
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    np.cumsum(np.bincount(pairs // width, minlength=n), out=offsets[1:])
    return (pairs % width).astype(np.int64), offsets


def text_features_batch(texts: Sequence[str], index: WordIndex | None = None) -> tuple[np.ndarray, BatchWords]:
    """:func:`text_features` and the texts' lower-cased words as ids of ``index`` (a fresh per-batch index
    by default), which ``oov_rate`` and the evidence's token sets reuse instead of splitting again.

    The words are split once for the batch: the texts joined by spaces, lower-cased and split in three C
    calls (a space is not case-ignorable, so it ends a final-sigma context exactly as a text's end does), and
    cut back into texts by their word counts, which :func:`_word_counts` takes from the character buffer the
    classes use. Each text's distinct words are one sort of (text, id) pairs instead of a set per text.
    """
    index = _BatchIds() if index is None else index
    n = len(texts)
    out = np.zeros((n, len(TEXT_FEATURES)), dtype=np.float64)
    if n == 0:
        return out, BatchWords.empty(0, index)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    out[:, 0] = lengths
    if not lengths.any():
        out[:, 8] = 1.0
        return out, BatchWords.empty(n, index)
    # Character classes are array lookups over one buffer for the batch, never a Python loop over characters.
    buf = _code_points(texts)
    words = _word_counts(buf, lengths)
    counts = _class_counts(buf, lengths)
    digits, upper, letters, punct, spaces, non_ascii = (counts[:, c] for c in range(6))

    flat = " ".join(texts).lower().split()
    if int(words.sum()) != len(flat):  # never seen; a text's own split is the authority if it ever is
        words = np.fromiter(map(len, map(str.split, texts)), dtype=np.int64, count=n)
    ids = index.ids(flat)
    distinct, offsets = distinct_per_event(ids, words)
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
