"""The batch kernels (issue 23) against the per-string implementations they replaced, over hostile Unicode.

Text features must be bit-identical (``tobytes()``, so NaN, -0.0 and every last bit count) to
:mod:`tests.monitor.ingest.text_features_reference` (nlpmon up to a19f2a3), and the lower-cased words the
same lists; tokenizer features identical to the per-chunk computation the chunk cache did before.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.text_features import text_features, text_features_and_words, tokenizer_features
from monitor.ingest.tokenizer import TokenizerFeaturizer
from tests.monitor.ingest.text_features_reference import reference_text_features_and_words

# Every character str.split() splits on (str.isspace: Unicode White_Space plus the C0 separators \x1c-\x1f).
WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
HOSTILE = WHITESPACE + [
    "\x00", "\x01", "\x7f", "\x9f",  # NUL, control characters
    "\u0301", "\u0308", "\u20dd",  # combining marks
    "\u200d", "\u200c", "\ufeff", "\u2060",  # ZWJ, ZWNJ, BOM, word joiner
    "\u202e", "\u202d", "\u2067", "\u05d0", "\u0627", "\u0661",  # RTL overrides/isolates, Hebrew, Arabic, Arabic digit
    "\ud83d", "\ude00", "\udfff", "\ud800",  # lone surrogates (a string cut mid-emoji)
    "👨‍👩‍👧", "🏳️‍🌈", "🔥", "\U0001f1eb\U0001f1f7", "\U00010400", "\U0001d7d8",  # ZWJ sequences, flags, astral Lu/Nd
    "İ", "Σ", "ς", "ß", "ǅ", "ﬁ", "K", "Ω",  # lower() that changes length, final sigma, titlecase, ligature
    "A", "z", "0", "٣", "!", "«", "—", "€", "漢", "\uffff", "\U0010ffff",
]
# Pieces, not characters: the ZWJ sequences and flags are several code points each.
hostile_piece = st.one_of(st.sampled_from(HOSTILE), st.characters(exclude_categories=()))
hostile_text = st.one_of(st.lists(hostile_piece, max_size=60).map("".join), st.sampled_from(["", " ", "\x00", "\u3000" * 3]))
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_identical(texts: list[str]) -> None:
    new, new_words = text_features_and_words(texts)
    old, old_words = reference_text_features_and_words(texts)
    assert new.dtype == old.dtype == np.float64 and new.shape == old.shape
    assert new.tobytes() == old.tobytes(), texts
    assert new_words == old_words
    assert text_features(texts).tobytes() == old.tobytes()


@PROPERTY
@given(st.lists(hostile_text, max_size=40))
def test_batch_kernel_is_bit_identical_on_hostile_unicode(texts):
    assert_identical(texts)


@PROPERTY
@given(st.lists(st.text(st.characters(max_codepoint=127), max_size=30), min_size=1, max_size=30))
def test_batch_kernel_is_bit_identical_on_ascii_batches(texts):
    # An all-ASCII batch takes the byte-buffer path, any other character the UTF-32 one.
    assert_identical(texts)


@pytest.mark.parametrize("long_len", [1023, 1024, 5000, (1 << 21) - 1, 1 << 21])
def test_long_texts_take_wider_counters_exactly(long_len):
    # Under 1,024 characters: 10-bit counters; up to 2M: 21-bit; beyond: a bincount. All exact.
    rng = np.random.default_rng(long_len)
    alphabet = np.array(list("aB3 .\u00e9\u4e2d\U0001f525\t!\u0661Z"))
    long = "".join(rng.choice(alphabet, size=long_len))
    assert_identical([long, "", "short one", long[::-1], "\ud83d x"])
    assert_identical(["A" * long_len, "b"])  # every counter of one text at its maximum


@PROPERTY
@given(st.lists(hostile_text, max_size=20))
def test_batch_kernel_is_bit_identical_on_mended_texts(texts):
    assert_identical(mended(texts))


def test_batches_of_empty_and_whitespace_only_texts():
    for texts in ([], [""], ["", ""], [" \t\n\u3000"], ["", "x"], ["\x1c\x1d\x1e\x1f\x85\u2028"]):
        assert_identical(texts)


def reference_tokenizer_features(f: TokenizerFeaturizer, texts: list[str]) -> np.ndarray:
    """The chunk-cache computation as it was: each text's space-separated chunks encoded and summed."""
    content = np.zeros(len(texts), dtype=np.int64)
    unk = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        chunks = text.split(" ")
        for enc in f._backend.encode_batch(chunks, add_special_tokens=False):
            content[i] += len(enc.ids)
            unk[i] += enc.ids.count(f.unk_id) if f.unk_id is not None else 0
    return tokenizer_features(content + f._added, unk, content, f.max_length)


def mended(texts: list[str]) -> list[str]:
    """The texts as the event decoder hands them on: each lone surrogate replaced with U+FFFD (events.py)."""
    return [re.sub("[\ud800-\udfff]", "\ufffd", t) for t in texts]


@pytest.fixture(scope="module")
def featurizer(tiny):
    return TokenizerFeaturizer(tiny.tokenizer_dir, max_length=16)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_text, min_size=1, max_size=30))
def test_tokenizer_batch_is_identical_on_hostile_unicode(featurizer, texts):
    assert featurizer.chunk_cache
    texts = mended(texts)  # the Rust tokenizer cannot take a lone surrogate; the decoder never passes one
    np.testing.assert_array_equal(featurizer.features(texts), reference_tokenizer_features(featurizer, texts))


def test_tokenizer_cache_refills_after_clearing(featurizer, monkeypatch):
    # Past _MAX_CHUNKS the cache starts over; counts stay right across the reset and the row reuse.
    monkeypatch.setattr(TokenizerFeaturizer, "_MAX_CHUNKS", 8)
    featurizer._reset_chunks()
    batches = [["a b c d e f g", "h i"], ["j k l m n o p q r s", ""], ["a b", "zz yy xx"]]
    for texts in batches:
        np.testing.assert_array_equal(featurizer.features(texts), reference_tokenizer_features(featurizer, texts))
    assert len(featurizer._chunks) <= 10
