"""The per-string text features as nlpmon computed them up to commit a19f2a3 (issue 23, before the batch
kernel): the reference the batch kernel of :mod:`detectors.text_features` must match bit for bit.

Kept here, verbatim but for the names, for the property test (test_text_features_batch.py) and for
``bench/text_features.py`` (old against new in one process).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

TEXT_FEATURES = ("char_length", "word_count", "mean_word_length", "unique_word_ratio", "non_ascii_ratio",
                 "digit_ratio", "uppercase_ratio", "punctuation_ratio", "empty")

_BMP = 0x10000
# Column order of the character-class table built below.
_DIGIT, _UPPER, _LETTER, _PUNCT, _SPACE, _NON_ASCII = range(6)
_N_CODES = 1 << 6


@lru_cache(maxsize=1)
def _char_codes() -> tuple[np.ndarray, np.ndarray]:
    """The character classes of every code point as one 6-bit code, and the code -> classes matrix.

    ``codes[cp]`` has bit ``k`` set when code point ``cp`` is in class ``k`` (order above); index ``_BMP``
    stands for every code point above the BMP (only non-ASCII is set there). ``bits[code, k]`` is 1 when
    ``code`` has bit ``k``. A batch's per-text class counts are then one gather and one ``bincount`` over
    (text, code) pairs, instead of a gather and a segmented sum per class.
    """
    codes = np.zeros(_BMP + 1, dtype=np.intp)
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
    # float64: the matrix product below then runs in BLAS (integer matmul has no fast path); counts stay exact
    # far beyond any batch (2**53).
    bits = ((np.arange(_N_CODES)[:, None] >> np.arange(6)[None, :]) & 1).astype(np.float64)
    codes.flags.writeable = bits.flags.writeable = False
    return codes, bits


def _class_counts(chars: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-text counts of each character class: ``(len(lengths), 6)``, columns in class order."""
    codes, bits = _char_codes()
    # intp indices: numpy converts any other index dtype to intp on every gather.
    code = codes[np.minimum(chars, _BMP).astype(np.intp)]
    text_of = np.repeat(np.arange(lengths.size, dtype=np.intp), lengths)
    per_code = np.bincount(text_of * _N_CODES + code, minlength=lengths.size * _N_CODES)
    return (per_code.reshape(lengths.size, _N_CODES).astype(np.float64) @ bits).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def reference_text_features(texts: Sequence[str]) -> np.ndarray:
    """Return an ``(len(texts), len(TEXT_FEATURES))`` float64 matrix, columns in :data:`TEXT_FEATURES` order.

    """
    return reference_text_features_and_words(texts)[0]


def reference_text_features_and_words(texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
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
    # One UTF-32 buffer for the whole batch: character classes become array lookups instead of a Python
    # loop over characters, which is what makes ~100k texts/s possible.
    # surrogatepass: a lone surrogate (a string cut mid-emoji) is a code point like any other here, never an
    # exception that would stop the batch; the event decoder already mends those it sees (U+FFFD).
    chars = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    counts = _class_counts(chars, lengths)
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
