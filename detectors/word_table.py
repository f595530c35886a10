"""Words as dense ids without a Python object per word: a compiled (numba) open-addressing table over the
words' code points, and the kernels that split a batch's buffer into words or chunks and look each up.

A word is hashed as it is read (FNV-1a steps per code point, MurmurHash3's finaliser, a per-process random
seed) and compared with the stored word code point by code point: a hash is never trusted alone, so the ids
are exact whatever the hash does; only the table's spread depends on it.

Two ways to cut a batch (its texts joined by single spaces, as code points):

- **words** (:meth:`WordInterner.intern`): runs of non-whitespace (``str.isspace``, the class table's
  ``space`` bit), lower-cased as they are read through a table of each code point's ``str.lower`` (a
  lower-cased word is ``word.lower()``: lower-casing never crosses whitespace). Two code points have no
  one-to-one lower case, U+0130 (two code points) and U+03A3 (final sigma: depends on its neighbours); a
  batch holding one is refused, and the caller lower-cases it with ``str.lower`` and passes it unfolded. The
  caller gives each text's number of words (``text_kernels.class_counts``), which is how the words are cut
  back into texts;
- **chunks** (:meth:`WordInterner.intern_chunks`): each text's runs of characters other than U+0020 (the
  tokenizer's cache, ``monitor.ingest.tokenizer``), unfolded, cut by the texts' lengths.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import numba
import numpy as np

from detectors.text_kernels import ABOVE_BMP, NUMBA_CACHE, SPACE_BIT, char_codes

__all__ = ["WordInterner", "lower_table", "distinct_ids", "distinct_ids_of_rows"]

_FNV = np.uint64(0x100000001B3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_NOT_ONE_TO_ONE = 0xFFFFFFFF  # lower_table's mark of U+0130 and U+03A3
_NO_FOLD = np.zeros(0, dtype=np.uint32)


@lru_cache(maxsize=1)
def lower_table() -> tuple[np.ndarray, int]:
    """``str.lower`` one code point at a time, from this Python's own: a uint32 table over the BMP (every BMP
    code point lower-cases inside the BMP), ``_NOT_ONE_TO_ONE`` where it is not one code point for one; and
    the last code point above the BMP whose lower case differs (those few scripts are left to ``str.lower``).
    """
    lowered = map(str.lower, map(chr, range(ABOVE_BMP)))
    table = np.fromiter((ord(c) if len(c) == 1 else _NOT_ONE_TO_ONE for c in lowered), dtype=np.uint32,
                        count=ABOVE_BMP)
    table[0x3A3] = _NOT_ONE_TO_ONE  # final sigma: its lower case depends on the letters around it
    table.flags.writeable = False
    upper = np.arange(ABOVE_BMP, 0x110000, dtype=np.uint32)
    text = upper.tobytes().decode("utf-32-le")  # every code point above the BMP, lower-cased in one call
    low = text.lower()
    if len(low) == len(text):
        changed = np.flatnonzero(np.frombuffer(low.encode("utf-32-le"), dtype=np.uint32) != upper)
        return table, int(upper[changed[-1]]) if changed.size else -1
    # a Unicode version where one of them expands: one at a time
    return table, max((ord(c) for c in map(chr, range(ABOVE_BMP, 0x110000)) if c.lower() != c), default=-1)


@numba.njit(inline="always")
def _is_space(codes, c):
    return c < ABOVE_BMP and (codes[c] >> SPACE_BIT) & 1 == 1


@numba.njit(inline="always")
def _folded(fold, limit, c):
    """``c`` lower-cased through ``fold`` (the BMP's ``lower_table``); past it unchanged, or refused up to
    ``limit``, the last code point above the BMP that lower-cases (Deseret ... Adlam: rare scripts, which
    then take ``str.lower``; emoji lie above). A lookup of those few inside the word loop, even out of line
    and never taken, made every word ~4x slower."""
    if c < fold.size:
        return np.int64(fold[c])
    return _NOT_ONE_TO_ONE if c <= limit else c


@numba.njit(inline="always")
def _finish(h, length):
    """The end of a word's hash: the length, then MurmurHash3's finaliser."""
    h ^= np.uint64(length)
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


@numba.njit(inline="always")
def _probe(word, off, n, h, slots, hashes, starts, lens, arena):
    """The slot of the word ``word[off:off + n]`` (hash ``h``): the one holding its id, or the empty one where it goes.
    A slot's word is compared code point by code point: equal hashes alone never make equal words. (One exit
    at the end: the same loop written with a return per outcome compiled ~3x slower.)"""
    mask = slots.size - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        i = np.int64(slots[j])
        if i < 0:
            break
        if hashes[i] == h and lens[i] == n:
            a = starts[i]
            same = True
            for q in range(n):
                if arena[a + q] != word[off + q]:
                    same = False
                    break
            if same:
                break
        j = (j + 1) & mask
    return j


@numba.njit(cache=NUMBA_CACHE, nogil=True)
def _intern(buf, fold, limit, counts, codes, seed, slots, hashes, starts, lens, arena, marks, state):
    """Every word of ``buf`` (whitespace-separated; ``counts`` words per text, in order), lower-cased through
    ``fold`` (none: size 0), as a dense id of ``table`` (slots, hashes, starts, lens, arena), a new word
    getting the next id.

    ``state`` is ``[ids so far, arena used, text serial]`` and is advanced here. Returns the ids, each text's
    distinct ids in order of first occurrence (CSR), the span in ``buf`` of each new word, and 0 when done, 1
    when the buffer did not hold exactly ``counts.sum()`` words, 2 when a code point had no one-to-one lower
    case (the ids so far are then void, the table still sound); the caller guarantees room for every word to
    be new.
    """
    n_texts = counts.size
    total = counts.sum()
    ids = np.empty(total, dtype=np.int64)
    distinct = np.empty(total, dtype=np.int64)
    offsets = np.zeros(n_texts + 1, dtype=np.int64)
    new_spans = np.empty((total, 2), dtype=np.int64)
    # The word being read, lower-cased; as long as the buffer (growing it in the loop, rebinding the array,
    # made every word ~8x slower), of which a word's first pages only are ever touched.
    word = np.empty(buf.size, dtype=np.uint32)
    n_ids, used, serial = state[0], state[1], state[2]
    size = buf.size
    pos = w = d = n_new = status = 0
    for t in range(n_texts):
        for _ in range(counts[t]):
            while pos < size and _is_space(codes, np.int64(buf[pos])):
                pos += 1
            s = pos
            h = seed
            while pos < size:  # to the word's end, lower-casing and hashing as it goes
                c = np.int64(buf[pos])
                if _is_space(codes, c):
                    break
                c = _folded(fold, limit, c)
                if c == _NOT_ONE_TO_ONE:
                    status = 2
                    break
                word[pos - s] = c
                h = (h ^ np.uint64(c)) * _FNV
                pos += 1
            if status == 0 and pos == s:
                status = 1  # fewer words than counted
            if status:
                break
            n = pos - s
            h = _finish(h, n)
            j = _probe(word, 0, n, h, slots, hashes, starts, lens, arena)
            i = np.int64(slots[j])
            if i < 0:  # a new word: the next id (counters in locals, not state[]: writes to an array there
                i = n_ids  # made every lookup ~3x slower, by what they let the compiler assume)
                n_ids += 1
                slots[j] = i
                hashes[i] = h
                starts[i] = used
                lens[i] = n
                arena[used : used + n] = word[:n]
                used += n
                marks[i] = -1
                new_spans[n_new, 0] = s
                new_spans[n_new, 1] = pos
                n_new += 1
            ids[w] = i
            w += 1
            if marks[i] != serial + t:  # the word's first time in this text
                marks[i] = serial + t
                distinct[d] = i
                d += 1
        if status:
            break
        offsets[t + 1] = d
    while status == 0 and pos < size:  # more words than counted
        if not _is_space(codes, np.int64(buf[pos])):
            status = 1
        pos += 1
    state[0], state[1], state[2] = n_ids, used, serial + n_texts
    return ids, distinct[:d], offsets, new_spans[:n_new], status


@numba.njit(cache=NUMBA_CACHE, nogil=True)
def _intern_chunks(buf, lengths, seed, table, state):
    """Each text's chunks (runs of code points other than U+0020 inside its span; the texts lie one separator
    apart in ``buf``; empty chunks skipped) as dense ids of ``table``, unfolded. Returns the ids, each text's
    chunk count and the span in ``buf`` of each new chunk."""
    slots, hashes, starts, lens, arena = table
    n_texts = lengths.size
    total = 0
    for t in range(n_texts):
        total += lengths[t]
    ids = np.empty(total, dtype=np.int64)  # at most one chunk per code point
    per_text = np.zeros(n_texts, dtype=np.int64)
    new_spans = np.empty((total, 2), dtype=np.int64)
    n_ids, used = state[0], state[1]
    pos = w = n_new = 0
    for t in range(n_texts):
        end = pos + lengths[t]
        while pos < end:
            while pos < end and buf[pos] == 32:
                pos += 1
            s = pos
            h = seed
            while pos < end and buf[pos] != 32:
                h = (h ^ np.uint64(buf[pos])) * _FNV
                pos += 1
            n = pos - s
            if n == 0:
                break
            h = _finish(h, n)
            # (buf and an offset, not a slice: a view per chunk cost a reference count each)
            j = _probe(buf, s, n, h, slots, hashes, starts, lens, arena)
            i = np.int64(slots[j])
            if i < 0:
                i = n_ids
                n_ids += 1
                slots[j] = i
                hashes[i] = h
                starts[i] = used
                lens[i] = n
                for q in range(s, pos):
                    arena[used] = buf[q]
                    used += 1
                new_spans[n_new, 0] = s
                new_spans[n_new, 1] = pos
                n_new += 1
            ids[w] = i
            w += 1
            per_text[t] += 1
        pos = end + 1  # the separator
    state[0], state[1] = n_ids, used
    return ids[:w], per_text, new_spans[:n_new]


@numba.njit(cache=NUMBA_CACHE, nogil=True)
def distinct_ids(ids, lengths, width):
    """Each text's distinct ids in order of first occurrence (CSR: ``out[offsets[t]:offsets[t + 1]]``), from
    all its ids (``lengths[t]`` of them, text after text; every id in ``[0, width)``): one pass with a mark
    per id. (Unsorted: whoever reads them counts them; sorting each text's ids doubled the cost.)"""
    n = lengths.size
    marks = np.full(width, -1, dtype=np.int64)
    out = np.empty(ids.size, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    pos = d = 0
    for t in range(n):
        for _ in range(lengths[t]):
            i = np.int64(ids[pos])
            pos += 1
            if marks[i] != t:
                marks[i] = t
                out[d] = i
                d += 1
        offsets[t + 1] = d
    return out[:d], offsets


@numba.njit(cache=NUMBA_CACHE, nogil=True)
def distinct_ids_of_rows(rows, per_text, row_starts, row_lengths, ids, width):
    """:func:`distinct_ids` of texts made of rows (text t: the next ``per_text[t]`` of ``rows``; row r: the
    ids ``ids[row_starts[r]:][:row_lengths[r]]``, all in ``[0, width)``), without gathering every id first:
    the tokenizer's chunks and their token ids. (The marking is written out as in distinct_ids: the same
    few lines as an inlined helper ran ~6x slower.)"""
    n = per_text.size
    marks = np.full(width, -1, dtype=np.int64)
    total = 0
    for r in rows:
        total += row_lengths[r]
    out = np.empty(total, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    k = d = 0
    for t in range(n):
        for _ in range(per_text[t]):
            r = rows[k]
            k += 1
            a = row_starts[r]
            for q in range(a, a + row_lengths[r]):
                i = np.int64(ids[q])
                if marks[i] != t:
                    marks[i] = t
                    out[d] = i
                    d += 1
        offsets[t + 1] = d
    return out[:d], offsets


@numba.njit(cache=NUMBA_CACHE, nogil=True)
def _rehash(hashes, n_ids, slots):
    mask = slots.size - 1
    slots[:] = -1
    for i in range(n_ids):
        j = np.int64(hashes[i] & np.uint64(mask))
        while slots[j] >= 0:
            j = (j + 1) & mask
        slots[j] = i


def _grown(a: np.ndarray, need: int) -> np.ndarray:
    if a.size >= need:
        return a
    out = np.empty(max(need, 2 * a.size), dtype=a.dtype)
    out[: a.size] = a
    return out


class WordInterner:
    """Words -> dense ids in order of first sight, equal words equal ids: an open-addressing table in numpy
    arrays that the kernels fill in compiled code, and the words themselves (``words``: by id).

    A lock takes one batch at a time through the table: the kernels index its arrays without bounds checks,
    trusting the room made for the batch just before.
    """

    def __init__(self) -> None:
        self.words: list[str] = []
        # A per-process random seed: the table's spread is no function a producer could aim at.
        self._seed = np.uint64(int.from_bytes(os.urandom(8), "little"))
        self._slots = np.full(1024, -1, dtype=np.int32)
        self._hashes = np.empty(0, dtype=np.uint64)
        self._starts = np.empty(0, dtype=np.int64)
        self._lens = np.empty(0, dtype=np.int64)
        self._marks = np.empty(0, dtype=np.int64)
        self._arena = np.empty(0, dtype=np.uint32)
        self._state = np.zeros(3, dtype=np.int64)  # ids, arena used, text serial
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.words)

    def intern(self, text: str, buf: np.ndarray, counts: np.ndarray, *, lower: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
        """The ids of the words of ``text`` (``buf``: its code points, uint8 or uint32), ``counts[i]`` of them
        for text i, each text's distinct ids (CSR) and the new words (appended to :attr:`words`).

        ``lower``: lower-case the words as they are read (``word.lower()``, exactly); otherwise they are
        taken as they are. None when the buffer does not hold exactly ``counts.sum()`` words, or (``lower``)
        when it holds U+0130, U+03A3 or a code point above the BMP up to the last that lower-cases (rare
        scripts; emoji lie above): the caller then lower-cases the text with ``str.lower`` and passes it
        with ``lower=False``. The table stays sound either way (the words it took are real words).
        """
        fold, limit = lower_table() if lower else (_NO_FOLD, -1)
        with self._lock:
            self._room(int(counts.sum()), buf.size)
            ids, distinct, offsets, spans, status = _intern(buf, fold, limit, counts, char_codes(), self._seed,
                                                            *self._table(), self._marks, self._state)
            new = [text[s:e].lower() if lower else text[s:e] for s, e in spans.tolist()]
            self.words.extend(new)
        return (ids, distinct, offsets, new) if status == 0 else None

    def intern_chunks(self, text: str, buf: np.ndarray, lengths: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The ids of each text's chunks (runs of characters other than U+0020; ``text`` is the texts joined
        by single spaces, ``buf`` its code points, ``lengths`` the texts'), each text's number of chunks, and
        the new chunks (appended to :attr:`words`)."""
        with self._lock:
            self._room((buf.size + 1) // 2 + 1, buf.size)  # a chunk takes a code point and a space at least
            ids, per_text, spans = _intern_chunks(buf, lengths, self._seed, self._table(), self._state)
            new = [text[s:e] for s, e in spans.tolist()]
            self.words.extend(new)
        return ids, per_text, new

    def _table(self) -> tuple:
        return self._slots, self._hashes, self._starts, self._lens, self._arena

    def _room(self, words: int, chars: int) -> None:
        """Room for ``words`` more ids (all new, at worst) and ``chars`` more code points in the arena."""
        n_ids, used = int(self._state[0]), int(self._state[1])
        need = n_ids + words
        self._hashes = _grown(self._hashes, need)
        self._starts = _grown(self._starts, need)
        self._lens = _grown(self._lens, need)
        self._marks = _grown(self._marks, need)
        self._arena = _grown(self._arena, used + chars)
        if self._slots.size < 2 * need:  # load factor at most 1/2, even if every word of the batch is new
            size = self._slots.size
            while size < 2 * need:
                size *= 2
            self._slots = np.empty(size, dtype=np.int32)
            _rehash(self._hashes, n_ids, self._slots)
