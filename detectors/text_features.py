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
from functools import lru_cache

import numpy as np

__all__ = ["TEXT_FEATURES", "TOKENIZER_FEATURES", "BINARY_FEATURES", "text_features", "text_features_and_words",
           "tokenizer_features"]

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


def _class_counts(texts: Sequence[str], lengths: np.ndarray) -> np.ndarray:
    """Per-text counts of each character class: ``(len(lengths), 6)`` int64, columns in class order."""
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
    cum = buf.view(np.uint64) if len(tables) == 1 else np.empty(src.size + 1, dtype=np.uint64)
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
    return text_features_and_words(texts)[0]


def text_features_and_words(texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
    """:func:`text_features` and each text's lower-cased words (``str.lower().split()``), which the feature
    computation splits anyway: ``oov_rate`` (:mod:`detectors.vocabulary`) reuses them instead of splitting again.
    """
    n = len(texts)
    out = np.zeros((n, len(TEXT_FEATURES)), dtype=np.float64)
    if n == 0:
        return out, []
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    out[:, 0] = lengths
    if not lengths.any():
        out[:, 8] = 1.0
        return out, [[] for _ in range(n)]
    # Character classes are array lookups over one buffer for the batch, never a Python loop over characters.
    counts = _class_counts(texts, lengths)
    digits, upper, letters, punct, spaces, non_ascii = (counts[:, c] for c in range(6))

    # map() keeps the per-text work in C calls; no Python-level loop body per text.
    split = list(map(str.split, map(str.lower, texts)))
    words = np.fromiter(map(len, split), dtype=np.int64, count=n)
    unique = np.fromiter(map(len, map(set, split)), dtype=np.int64, count=n)

    out[:, 1] = words
    out[:, 2] = _ratio(lengths - spaces, words)
    out[:, 3] = _ratio(unique, words)
    out[:, 4] = _ratio(non_ascii, lengths)
    out[:, 5] = _ratio(digits, lengths)
    out[:, 6] = _ratio(upper, letters)
    out[:, 7] = _ratio(punct, lengths)
    out[:, 8] = words == 0
    return out, split


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
