"""The batch's words as ids of the process's word table (monitor/ingest/words.py), shared by the text
features, oov_rate and the evidence: the same answers as splitting every text on its own, whatever the
batch, its subsets and the table's generations."""

from __future__ import annotations

import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detectors.text_features as tf
from detectors.text_features import BatchWords, text_features_batch
from detectors.vocabulary import HashedVocabulary
from monitor.ingest.oov import oov_column
from monitor.ingest.words import WordIds, WordTable, split_words, word_key
from tests.monitor.ingest.test_text_features_batch import hostile_text
from tests.monitor.ingest.text_features_reference import reference_text_features_and_words

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = b"0123456789abcdef"


def lists_of(words: BatchWords) -> list[list[str]]:
    table = words.index
    starts = np.cumsum(words.counts) - words.counts
    return [[table.words[i] for i in words.ids[s : s + c]] for s, c in zip(starts.tolist(), words.counts.tolist())]


def distinct_of(words: BatchWords) -> list[list[int]]:
    return [words.distinct[a:b].tolist() for a, b in zip(words.offsets[:-1].tolist(), words.offsets[1:].tolist())]


@PROPERTY
@given(st.lists(hostile_text, max_size=30))
def test_ids_are_each_texts_own_words_and_their_distinct_sets(texts):
    table = WordTable()
    matrix, words = text_features_batch(texts, table.generation())
    expected, split = reference_text_features_and_words(texts)
    assert matrix.tobytes() == expected.tobytes()
    assert lists_of(words) == split
    assert distinct_of(words) == [list(dict.fromkeys(words.index[w] for w in ws)) for ws in split]


@PROPERTY
@given(st.lists(hostile_text, min_size=1, max_size=30), st.data())
def test_a_subset_of_texts_has_the_words_it_would_have_alone(texts, data):
    sel = sorted(data.draw(st.sets(st.integers(0, len(texts) - 1))))
    table = WordTable()
    _, words = text_features_batch(texts, table.generation())
    alone = split_words([texts[i] for i in sel], table)
    picked = words.take(sel)
    assert lists_of(picked) == lists_of(alone) and distinct_of(picked) == distinct_of(alone)
    # and back: the subset's words spread over the batch's rows, none elsewhere
    spread = alone.spread(sel, len(texts))
    assert spread.counts[sel].tolist() == alone.counts.tolist() and spread.counts.sum() == alone.counts.sum()
    assert distinct_of(spread) == [distinct_of(alone)[sel.index(i)] if i in sel else [] for i in range(len(texts))]


def test_the_split_is_each_texts_own_when_the_word_counts_disagree(monkeypatch):
    # The word counts come from the character classes; if they ever disagreed with the split, the texts' own
    # splits decide (never words attributed to the wrong text).
    texts = ["Hello world", "", "a b c", "x\u3000y z"]
    kernel = tf.class_counts

    def no_words(src, lengths, codes):
        counts, words = kernel(src, lengths, codes)
        return counts, np.zeros_like(words)

    monkeypatch.setattr(tf, "class_counts", no_words)
    matrix, words = text_features_batch(texts, WordTable().generation())
    expected, split = reference_text_features_and_words(texts)
    assert matrix.tobytes() == expected.tobytes() and lists_of(words) == split


def test_a_new_generation_leaves_earlier_ids_resolvable():
    table = WordTable(max_words=4)
    first = split_words(["alpha beta gamma", "delta epsilon"], table)
    second = split_words(["zeta alpha"], table)  # the first generation holds 5 > 4 words: a new one
    assert first.index is not second.index and isinstance(second.index, WordIds)
    assert lists_of(first) == [["alpha", "beta", "gamma"], ["delta", "epsilon"]]
    assert lists_of(second) == [["zeta", "alpha"]]
    keys = first.index.keys()
    assert keys[first.index["beta"]] == word_key("beta") and first.index.named[word_key("beta")] == "beta"
    assert second.index.keys()[second.index["alpha"]] == keys[first.index["alpha"]]  # keys are stable


def test_membership_grows_with_new_words_and_matches_the_vocabulary():
    vocab = HashedVocabulary.fit(["the soup was cold", "the waiter was kind"], key=KEY)
    other = HashedVocabulary.fit(["my phone"], key=KEY)
    gen = WordTable().generation()
    gen.ids(["the", "phone"])
    assert gen.membership(vocab).tolist() == [True, False]
    assert gen.membership(other).tolist() == [False, True]
    gen.ids(["soup", "zzq"])
    assert gen.membership(vocab).tolist() == [True, False, True, False]
    assert gen.membership(vocab).tolist() == vocab.contains(gen.words).tolist()


@PROPERTY
@given(st.lists(st.one_of(st.none(), hostile_text, st.sampled_from(["The soup was KIND", "my phone"])), max_size=25))
def test_oov_column_from_the_feature_words_equals_the_vocabulary_on_the_texts(texts):
    vocab = HashedVocabulary.fit(["The soup was cold", "the waiter was kind", "ok \u0130 \u03a3"], key=KEY)
    present = [i for i, t in enumerate(texts) if t is not None]
    _, words = text_features_batch([texts[i] for i in present], WordTable().generation())
    col = oov_column(texts, vocab, words.spread(present, len(texts)))
    expected = np.full(len(texts), np.nan)
    if present:
        expected[present] = vocab.oov_rate([texts[i] for i in present])
    assert col.tobytes() == expected.tobytes()
    assert oov_column(texts, vocab).tobytes() == expected.tobytes()  # without the words: split here


def test_threads_sharing_the_table_never_share_an_id():
    import threading

    table = WordTable()
    vocab = HashedVocabulary.fit(["w1 w3 w5"], key=KEY)
    out: list[BatchWords] = []
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        start.wait()
        for _ in range(50):
            texts = [" ".join(f"w{k}" for k in rng.integers(0, 400, 8)) for _ in range(20)]
            words = split_words(texts, table)
            assert lists_of(words) == [t.split() for t in texts]
            member = words.index.membership(vocab)[words.ids]
            assert member.tolist() == [w in {"w1", "w3", "w5"} for t in texts for w in t.split()]
            out.append(words)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows: races show up
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    gen = table.generation()
    assert len(out) == 200 and len(set(gen.values())) == len(gen) == len(gen.words)
    assert all(gen[w] == i for i, w in enumerate(gen.words))
    assert gen.keys().tolist() == [word_key(w) for w in gen.words]
