"""The compiled word table (detectors/word_table.py): ids exact whatever the hash does, across batches and
table growth, words lower-cased exactly as str.lower, chunks as str.split(" "); and a kernel cache location
that never stops the import (detectors/text_kernels.py). tests/monitor/ingest/test_words.py and
test_text_features_batch.py compare the features and words with each text's own split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.text_kernels as tk
import detectors.word_table as wt
from detectors.text_kernels import code_points
from detectors.word_table import WordInterner


def interned(table: WordInterner, texts: list[str]) -> list[list[int]]:
    joined = " ".join(texts)
    counts = np.array([len(t.split()) for t in texts], dtype=np.int64)
    got = table.intern(joined, code_points(joined), counts)
    assert got is not None
    ids = got[0].tolist()
    out, k = [], 0
    for c in counts.tolist():
        out.append(ids[k : k + c])
        k += c
    return out


def test_equal_hashes_never_make_equal_words(monkeypatch):
    # Every word hashes to the same value (seed fixed, FNV steps and finaliser replaced by a constant): the
    # table is one probe chain and only the code point comparison tells the words apart.
    words = ["alpha", "beta", "gamma", "alphb", "al", "alpha\u0301", "\U0001f600", "beta"]
    table = WordInterner()
    monkeypatch.setattr(wt, "_FNV", np.uint64(0))
    monkeypatch.setattr(wt, "_M1", np.uint64(0))
    monkeypatch.setattr(wt, "_M2", np.uint64(0))
    fn = wt._intern.py_func  # the same code, run by the interpreter with the constant hash
    monkeypatch.setattr(wt, "_intern", fn)
    for name in ("_probe", "_is_space", "_folded", "_finish"):
        monkeypatch.setitem(fn.__globals__, name, getattr(wt, name).py_func)
    assert interned(table, [" ".join(words)]) == [[0, 1, 2, 3, 4, 5, 6, 1]]
    assert table.words == words[:-1]
    assert len(set(table._hashes[: len(table.words)].tolist())) == 1  # all one hash indeed


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc")), min_size=1,
                                 max_size=6), max_size=40), min_size=1, max_size=12))
def test_ids_are_first_sight_order_across_batches_and_growth(batches):
    table = WordInterner()
    seen: dict[str, int] = {}
    for words in batches:
        words = [w for w in words if w.split() == [w]]  # one word each (str.split's whitespace is wider)
        got = interned(table, [" ".join(words)]) if words else [[]]
        expected = [seen.setdefault(w, len(seen)) for w in words]
        assert got == [expected]
    assert table.words == list(seen)


@pytest.mark.parametrize("text", ["Hello WORLD hello World mIxEd @Home", "Ünïcode ÜNÏCODE ǅ ǄUNGLA \U0001f600x \u212a",
                                  "ΑΒΓ αβγ Straße STRASSE ﬃ ＡＢＣ"])
def test_words_are_lower_cased_by_the_kernel_as_str_lower_does(text):
    table = WordInterner()
    counts = np.array([len(text.split())], dtype=np.int64)
    ids, distinct, offsets, new = table.intern(text, code_points(text), counts, lower=True)
    assert [table.words[i] for i in ids.tolist()] == text.lower().split()
    assert distinct.tolist() == list(dict.fromkeys(ids.tolist())) and offsets.tolist() == [0, len(distinct)]
    # and the same words lower-cased by str.lower first, unfolded, are the same ids
    low = text.lower()
    assert table.intern(low, code_points(low), counts)[0].tolist() == ids.tolist()


@pytest.mark.parametrize("text", ["ok \u0130stanbul", "ΟΔΟΣ", "Deseret \U00010400\U00010401 x"])
def test_a_code_point_without_a_one_to_one_lower_case_is_left_to_str_lower(text):
    table = WordInterner()
    counts = np.array([len(text.split())], dtype=np.int64)
    assert table.intern(text, code_points(text), counts, lower=True) is None
    low = text.lower()
    ids = table.intern(low, code_points(low), counts)[0]
    assert [table.words[i] for i in ids.tolist()] == low.split()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab  A\u00e9\u0301\U0001f600\t"), max_size=12), max_size=8))
def test_chunks_are_each_texts_split_on_spaces(texts):
    table = WordInterner()
    joined = " ".join(texts)
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    ids, per_text, new = table.intern_chunks(joined, code_points(joined), lengths)
    expected = [[c for c in t.split(" ") if c] for t in texts]
    assert per_text.tolist() == [len(e) for e in expected]
    assert [table.words[i] for i in ids.tolist()] == [c for e in expected for c in e]
    assert len(set(table.words)) == len(table.words)


def test_a_count_that_disagrees_with_the_buffer_is_refused():
    table = WordInterner()
    assert table.intern("a b c", code_points("a b c"), np.array([2], dtype=np.int64)) is None  # one left over
    assert table.intern("a b", code_points("a b"), np.array([3], dtype=np.int64)) is None  # one short


def test_the_cache_goes_to_the_temp_dir_when_the_package_is_read_only(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    assert tk.cache_location(str(pkg), str(tmp), {}) == ""  # writable: beside the module
    assert tk.cache_location(str(pkg), str(tmp), {"NUMBA_CACHE_DIR": "/x"}) == ""  # numba's own setting
    writable = {str(tmp / "nlpmon-numba"), str(tmp)}
    monkeypatch.setattr(tk.os, "access", lambda p, mode: str(p) in writable)  # (root ignores chmod)
    assert tk.cache_location(str(pkg), str(tmp), {}) == str(tmp / "nlpmon-numba")
    writable.clear()
    assert tk.cache_location(str(pkg), str(tmp), {}) is None  # nowhere: compiled in each process, no error


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-3, 40) | st.integers(0, 1 << 40), max_size=50), max_size=12))
def test_distinct_per_event_is_each_events_ids_once_in_order(events):
    from detectors.text_features import distinct_per_event

    ids = np.array([i for e in events for i in e], dtype=np.int64)
    lengths = np.array([len(e) for e in events], dtype=np.int64)
    distinct, offsets = distinct_per_event(ids, lengths)
    expected = [list(dict.fromkeys(e)) for e in events]
    assert [distinct[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == expected
