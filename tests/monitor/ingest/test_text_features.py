"""Text features against a plain per-character Python reference implementation."""

import unicodedata

import numpy as np
import pytest

from detectors.text_features import TEXT_FEATURES, text_features, tokenizer_features


def slow(text: str) -> dict:
    words = text.lower().split()
    n, w = len(text), len(words)
    letters = [c for c in text if unicodedata.category(c).startswith("L")]
    return {
        "char_length": n,
        "word_count": w,
        "mean_word_length": sum(not c.isspace() for c in text) / w if w else 0.0,
        "unique_word_ratio": len(set(words)) / w if w else 0.0,
        "non_ascii_ratio": sum(ord(c) > 127 for c in text) / n if n else 0.0,
        "digit_ratio": sum(unicodedata.category(c) == "Nd" for c in text) / n if n else 0.0,
        "uppercase_ratio": sum(unicodedata.category(c) == "Lu" for c in letters) / len(letters) if letters else 0.0,
        "punctuation_ratio": sum(unicodedata.category(c).startswith("P") for c in text) / n if n else 0.0,
        "empty": float(w == 0),
    }


TEXTS = ["", "   ", "Hello, World! 42", "naïve café — ÉTÉ", "a a a b", "emoji 🔥🔥 ok", "tabs\tand\nnewlines ",
         "١٢٣ arabic digits", "ALL CAPS!!!", "x"]


@pytest.mark.parametrize("order", [TEXTS, TEXTS[::-1], TEXTS[1:] + TEXTS[:1]])
def test_matches_reference_implementation(order):
    m = text_features(order)
    assert m.shape == (len(order), len(TEXT_FEATURES))
    for row, text in zip(m, order):
        expected = slow(text)
        for j, name in enumerate(TEXT_FEATURES):
            assert row[j] == pytest.approx(expected[name]), (text, name)


def test_random_batch_matches_reference():
    rng = np.random.default_rng(0)
    alphabet = list("abcXYZ 019.,!?éß漢🙂\t")
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(300)]
    m = text_features(texts)
    for row, text in zip(m, texts):
        assert row.tolist() == pytest.approx([slow(text)[n] for n in TEXT_FEATURES])


def test_empty_batch():
    assert text_features([]).shape == (0, len(TEXT_FEATURES))


def test_tokenizer_features():
    m = tokenizer_features(np.array([5, 12, 2]), np.array([1, 0, 0]), np.array([3, 10, 0]), max_length=10)
    assert m[:, 0].tolist() == [5, 12, 2]
    assert m[:, 1].tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert m[:, 2].tolist() == [0, 1, 0]
