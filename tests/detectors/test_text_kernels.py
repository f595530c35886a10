"""The compiled word table (detectors/text_kernels.py): ids exact whatever the hash does, across batches and
table growth; and a cache location that never stops the import (tests/monitor/ingest/test_words.py and
test_text_features_batch.py compare the features and words with each text's own split)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.text_kernels as tk
from detectors.text_kernels import WordInterner, code_points


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
    monkeypatch.setattr(tk, "_FNV", np.uint64(0))
    monkeypatch.setattr(tk, "_M1", np.uint64(0))
    monkeypatch.setattr(tk, "_M2", np.uint64(0))
    fn = tk._intern.py_func  # the same code, run by the interpreter with the constant hash
    monkeypatch.setattr(tk, "_intern", fn)
    for name in ("_probe", "_is_space", "_folded", "_finish", "_sort_run"):
        monkeypatch.setitem(fn.__globals__, name, getattr(tk, name).py_func)
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


def test_ascii_words_are_lower_cased_by_the_kernel_as_str_lower_does():
    table = WordInterner()
    text = "Hello WORLD hello World mIxEd @Home"
    counts = np.array([len(text.split())], dtype=np.int64)
    ids, distinct, offsets, new = table.intern(text, code_points(text), counts, lower_ascii=True)
    assert [table.words[i] for i in ids.tolist()] == text.lower().split()
    assert distinct.tolist() == sorted(set(ids.tolist())) and offsets.tolist() == [0, 4]
    with pytest.raises(ValueError):
        table.intern("Ünïcode", code_points("Ünïcode"), np.array([1]), lower_ascii=True)


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
