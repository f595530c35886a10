"""HashedVocabulary: oov_rate as defined, no raw words stored, bounded, serialisable, measured false positives."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from detectors.vocabulary import HashedVocabulary, split_reference

KEY = bytes(range(16))
REFERENCE = [
    "Dinner with Alice Smith was lovely",
    "contact alice.smith@example.com for the booking",
    "The soup was cold but the waiter was kind",
    "  ",
]


def _naive_oov(vocabulary: set[str], texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        words = text.lower().split()
        out.append(sum(w not in vocabulary for w in words) / len(words) if words else 0.0)
    return out


def test_oov_rate_is_the_share_of_unseen_lower_cased_words():
    vocab = HashedVocabulary.fit(REFERENCE, key=KEY)
    seen = {w for t in REFERENCE for w in t.lower().split()}
    texts = ["THE SOUP was warm", "my phone battery died", "", "alice.smith@example.com Alice", "kind kind x"]
    np.testing.assert_array_equal(vocab.oov_rate(texts), _naive_oov(seen, texts))
    assert vocab.contains(["soup", "phone"]).tolist() == [True, False]


def test_no_raw_word_in_the_stored_form():
    vocab = HashedVocabulary.fit(REFERENCE, key=KEY)
    text = json.dumps(vocab.to_dict())
    for secret in ("alice", "smith", "alice.smith@example.com", "example", "soup"):
        assert secret not in text.lower()
    assert HashedVocabulary.from_dict(json.loads(text)) == vocab
    assert pickle.loads(pickle.dumps(vocab)) == vocab


def test_key_changes_every_hash():
    a = HashedVocabulary.fit(REFERENCE, key=KEY)
    b = HashedVocabulary.fit(REFERENCE, key=bytes(range(1, 17)))
    assert len(a) == len(b) and not set(a.hashes.tolist()) & set(b.hashes.tolist())


def test_bounded_to_the_most_frequent_words_and_min_count():
    texts = ["common " * 5 + "rare"] * 3 + ["hapax"]
    vocab = HashedVocabulary.fit(texts, key=KEY, max_words=1)
    assert len(vocab) == 1 and vocab.contains(["common", "rare"]).tolist() == [True, False]
    vocab = HashedVocabulary.fit(texts, key=KEY, min_count=2)
    assert vocab.contains(["common", "rare", "hapax"]).tolist() == [True, True, False]
    assert HashedVocabulary.fit(texts, key=KEY).to_dict()["size"] == 3


def test_false_positive_rate_matches_its_derivation():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(32768)]
    vocab = HashedVocabulary.fit([" ".join(words)], key=KEY)
    assert vocab.false_positive_rate == pytest.approx(len(vocab) / 2**32)
    unseen = [f"u{i}x{int(rng.integers(1 << 30))}" for i in range(200_000)]
    hits = int(vocab.contains(unseen).sum())
    # Expected 200,000 * 7.6e-6 = 1.5 false hits; 12 would be a 1e-6 tail.
    assert hits <= 12
    assert len(json.dumps(vocab.to_dict())) < 6 * 32768  # 4 bytes a word, base64


def test_reference_values_come_from_held_out_texts():
    build, holdout = split_reference(10, holdout_every=5)
    assert not set(build) & set(holdout) and len(build) + len(holdout) == 10
    # In-sample rates are all 0, which is why the reference's oov_rate must come from the held-out part.
    vocab = HashedVocabulary.fit(REFERENCE, key=KEY)
    assert not vocab.oov_rate(REFERENCE).any()


@pytest.mark.parametrize("kwargs, message", [
    ({"key": b"short"}, "key must be 16 to 64 bytes"),
    ({"key": KEY, "max_words": 0}, "max_words must be an integer of at least 1"),
    ({"key": KEY, "min_count": 0}, "min_count must be an integer of at least 1"),
])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HashedVocabulary.fit(REFERENCE, **kwargs)


def test_the_membership_memo_changes_no_answer_and_stays_bounded(monkeypatch):
    import detectors.vocabulary as module

    monkeypatch.setattr(module, "_KNOWN_MAX", 8)
    vocab = HashedVocabulary.fit(REFERENCE, key=KEY)
    seen = {w for t in REFERENCE for w in t.lower().split()}
    batches = [["the soup was warm", "my phone battery died"], ["THE waiter", "kind kind x y z q"], REFERENCE]
    for texts in batches * 2:  # the second round answers from the memo (or after it was cleared)
        np.testing.assert_array_equal(vocab.oov_rate(texts), _naive_oov(seen, texts))
        assert len(vocab._known) <= max(8, len({w for t in texts for w in t.lower().split()}))
    fresh = HashedVocabulary.from_dict(vocab.to_dict())
    assert fresh == vocab and not fresh._known


def test_words_split_by_the_text_features_give_the_same_rates():
    from detectors.text_features import text_features, text_features_and_words

    vocab = HashedVocabulary.fit(REFERENCE, key=KEY)
    texts = ["THE SOUP was warm", "", "  ", "Ünïcode ΣΟΦΟΣ soup", "alice.smith@example.com Alice"]
    matrix, words = text_features_and_words(texts)
    np.testing.assert_array_equal(matrix, text_features(texts))
    assert words == [t.lower().split() for t in texts]
    np.testing.assert_array_equal(vocab.oov_rate(texts, words), vocab.oov_rate(texts))
    with pytest.raises(ValueError, match="word lists for 5 texts"):
        vocab.oov_rate(texts, words[:2])
