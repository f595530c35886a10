"""Compiled (numba) kernels over a batch's characters: the character classes and word counts of every text,
and the lower-cased words as dense ids of a word table, without a Python object per word.

Why compiled: the batch kernels in numpy (one lookup table and one cumulative sum over the whole batch's
buffer) paid several passes over every character, and the words one Python ``str`` and one dictionary lookup
each (``" ".join(texts).lower().split()`` and a dict): together ≈ 5 µs of an event's ≈ 8 µs in the pipeline.
A loop over the code points, compiled, does the same in one pass each: the classes and word starts of the
original text, then the words of the lower-cased text hashed, looked up in an open-addressing table and
compared with the stored word code point by code point (a hash is never trusted alone, so the ids are exact
whatever the hash does). Lower-casing stays ``str.lower`` (one C call for the batch, Unicode's full mapping
with its final-sigma context); whitespace is the class table's ``str.isspace`` bit, so a text's words here
are exactly ``text.lower().split()``.

The kernels are compiled on first use and cached (:func:`cache_location`): beside this module, or where the
package directory is read-only (a container's root filesystem) in the temp directory, or nowhere (compiled
again by each process, ~3 s) when neither can be written; ``NUMBA_CACHE_DIR`` overrides.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from functools import lru_cache

import numba
import numpy as np

__all__ = ["class_counts", "char_codes", "code_points", "WordInterner", "CLASSES", "ABOVE_BMP", "cache_location"]


def cache_location(module_dir: str, tmp: str, env: dict) -> str | None:
    """Where numba's cache of these kernels goes: ``""`` beside the module (numba's default), a directory,
    or None (no cache). numba itself raises at import when it finds no writable place (with a read-only
    package and home directory), which would stop the daemon before it logs a line."""
    if env.get("NUMBA_CACHE_DIR"):
        return ""  # numba reads it itself
    if os.access(os.path.join(module_dir, "__pycache__"), os.W_OK) or (
            not os.path.exists(os.path.join(module_dir, "__pycache__")) and os.access(module_dir, os.W_OK)):
        return ""
    path = os.path.join(tmp, "nlpmon-numba")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


_CACHE_DIR = cache_location(os.path.dirname(os.path.abspath(__file__)), tempfile.gettempdir(), os.environ)
if _CACHE_DIR:
    numba.config.CACHE_DIR = _CACHE_DIR
_CACHE = _CACHE_DIR is not None

ABOVE_BMP = 0x10000  # the class table's row for every code point above U+FFFF
# The class table's bits, in this order (the columns of class_counts).
CLASSES = ("digit", "upper", "letter", "punct", "space", "non_ascii")
SPACE_BIT = CLASSES.index("space")
_N_CLASSES = len(CLASSES)


@lru_cache(maxsize=1)
def char_codes() -> np.ndarray:
    """The character classes of every code point as one 6-bit code (uint8), bit k for class ``CLASSES[k]``.

    Index ``ABOVE_BMP`` stands for every code point above the BMP (only non-ASCII is set there). uint8: the
    table (64 KiB) stays in cache while a batch is looked up.
    """
    codes = np.zeros(ABOVE_BMP + 1, dtype=np.uint8)
    for cp in range(ABOVE_BMP):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        code = 0
        if cat == "Nd":
            code |= 1 << 0
        if cat[0] == "L":
            code |= 1 << 2
            if cat == "Lu":
                code |= 1 << 1
        elif cat[0] == "P":
            code |= 1 << 3
        if ch.isspace():
            code |= 1 << SPACE_BIT
        codes[cp] = code
    codes[0x80:] |= 1 << 5
    codes.flags.writeable = False
    return codes


def code_points(s: str) -> np.ndarray:
    """``s`` as an array of code points, one per ``str`` index: bytes when ASCII (``isascii()`` is O(1) on a
    str), else UTF-32. surrogatepass: a lone surrogate (a string cut mid-emoji) is a code point like any other
    here, never an exception that would stop the batch; the event decoder mends those it sees (U+FFFD)."""
    if s.isascii():
        return np.frombuffer(s.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)

# Hash mixing (FNV-1a steps per code point, MurmurHash3's finaliser): only the table's spread depends on it.
_FNV = np.uint64(0x100000001B3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
# The fold tables of _intern: ASCII lower-casing (all that str.lower does to ASCII), or none.
_IDENTITY = np.arange(256, dtype=np.uint8)
_ASCII_LOWER = _IDENTITY.copy()
_ASCII_LOWER[ord("A") : ord("Z") + 1] += 32
_IDENTITY.flags.writeable = False
_ASCII_LOWER.flags.writeable = False


@numba.njit(cache=_CACHE, nogil=True)
def class_counts(src, lengths, codes):
    """Per-text character-class counts ``(n, 6)`` and ``str.split()`` word counts ``(n,)`` of texts laid
    out in ``src`` one separator character apart (``" ".join(texts)`` as code points: uint8 when ASCII,
    else uint32), ``lengths`` their lengths, ``codes`` the class table (bit k: class k)."""
    n = lengths.size
    out = np.zeros((n, _N_CLASSES), dtype=np.int64)
    words = np.zeros(n, dtype=np.int64)
    per_code = np.zeros(1 << _N_CLASSES, dtype=np.int64)
    pos = 0
    for t in range(n):
        # One increment a character (a histogram of its 6-bit code), the classes read off at the text's end.
        per_code[:] = 0
        starts = 0
        gap = 1  # a text's first character starts a word whatever precedes it
        for _ in range(lengths[t]):
            c = np.int64(src[pos])
            pos += 1
            code = np.int64(codes[c if c < ABOVE_BMP else ABOVE_BMP])
            per_code[code] += 1
            space = (code >> SPACE_BIT) & 1
            starts += gap & (space ^ 1)
            gap = space
        for code in range(1 << _N_CLASSES):
            k = per_code[code]
            if k:
                for bit in range(_N_CLASSES):
                    out[t, bit] += k * ((code >> bit) & 1)
        words[t] = starts
        pos += 1  # the separator
    return out, words


@numba.njit(inline="always")
def _is_space(codes, c):
    return c < ABOVE_BMP and (codes[c] >> SPACE_BIT) & 1 == 1


@numba.njit(inline="always")
def _folded(fold, c):
    """``c`` through the byte table ``fold`` (ASCII lower-casing, or the identity), unchanged past it."""
    return np.int64(fold[c]) if c < fold.size else c


@numba.njit(inline="always")
def _finish(h, length):
    """The end of a word's 64-bit hash: FNV-1a steps per code point, then the length and MurmurHash3's
    finaliser (only the table's spread depends on it)."""
    h ^= np.uint64(length)
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


@numba.njit(inline="always")
def _probe(buf, fold, s, e, h, slots, hashes, starts, lens, arena):
    """The slot of the word ``buf[s:e]`` (hash ``h``): the one holding its id, or the empty one where it goes.
    A slot's word is compared code point by code point: equal hashes alone never make equal words. (One exit
    at the end: the same loop written with a return per outcome compiled ~3x slower.)"""
    length = e - s
    mask = slots.size - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        i = np.int64(slots[j])
        if i < 0:
            break
        if hashes[i] == h and lens[i] == length:
            a = starts[i]
            same = True
            for q in range(length):
                if arena[a + q] != _folded(fold, np.int64(buf[s + q])):
                    same = False
                    break
            if same:
                break
        j = (j + 1) & mask
    return j


@numba.njit(inline="always")
def _sort_run(a, lo, hi):
    """Sort ``a[lo:hi]`` in place: insertion sort for the few distinct words of a text, numpy's past 32."""
    if hi - lo > 32:
        a[lo:hi].sort()
        return
    for k in range(lo + 1, hi):
        v = a[k]
        b = k - 1
        while b >= lo and a[b] > v:
            a[b + 1] = a[b]
            b -= 1
        a[b + 1] = v


@numba.njit(cache=_CACHE, nogil=True)
def _intern(buf, fold, counts, codes, seed, slots, hashes, starts, lens, arena, marks, state):
    """Every word of ``buf`` (the lower-cased texts' code points, or ASCII texts lower-cased through ``fold``;
    words separated by whitespace; ``counts`` words per text, in order) as a dense id of the table (``slots``: open addressing over ``hashes``; the
    words' code points in ``arena`` at ``starts``/``lens``), a new word getting the next id.

    ``state`` is ``[ids so far, arena used, text serial]`` and is advanced here. Returns the ids, each text's
    distinct ids ascending (CSR), the span in ``buf`` of each new word, and whether the words matched the
    counts (the buffer held exactly that many words); the caller guarantees room for every word to be new.
    """
    n_texts = counts.size
    total = counts.sum()
    ids = np.empty(total, dtype=np.int64)
    distinct = np.empty(total, dtype=np.int64)
    offsets = np.zeros(n_texts + 1, dtype=np.int64)
    new_spans = np.empty((total, 2), dtype=np.int64)
    n_ids, used, serial = state[0], state[1], state[2]
    size = buf.size
    pos = w = d = n_new = 0
    ok = True
    for t in range(n_texts):
        first = d
        for _ in range(counts[t]):
            while pos < size and _is_space(codes, np.int64(buf[pos])):
                pos += 1
            s = pos
            h = seed
            while pos < size:  # to the word's end, hashing as it goes
                c = np.int64(buf[pos])
                if _is_space(codes, c):
                    break
                h = (h ^ np.uint64(_folded(fold, c))) * _FNV
                pos += 1
            if pos == s:  # fewer words than counted: the caller splits the texts itself
                ok = False
                break
            h = _finish(h, pos - s)
            j = _probe(buf, fold, s, pos, h, slots, hashes, starts, lens, arena)
            i = np.int64(slots[j])
            if i < 0:  # a new word: the next id (counters in locals, not state[]: writes to an array there
                i = n_ids  # made every lookup ~3x slower, by what they let the compiler assume)
                n_ids += 1
                slots[j] = i
                hashes[i] = h
                starts[i] = used
                lens[i] = pos - s
                for q in range(s, pos):
                    arena[used] = _folded(fold, np.int64(buf[q]))
                    used += 1
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
        if not ok:
            break
        _sort_run(distinct, first, d)  # ascending, as the sort of (text, id) pairs it replaced gave them
        offsets[t + 1] = d
    while ok and pos < size:  # more words than counted
        ok = _is_space(codes, np.int64(buf[pos]))
        pos += 1
    state[0], state[1], state[2] = n_ids, used, serial + n_texts
    return ids, distinct[:d], offsets, new_spans[:n_new], ok


@numba.njit(cache=_CACHE, nogil=True)
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
    arrays that :func:`_intern` fills in compiled code, and the words themselves (``words``: by id).

    Not thread-safe on its own: whoever shares one (``monitor.ingest.words.WordIds``) holds a lock around
    :meth:`intern`.
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

    def __len__(self) -> int:
        return len(self.words)

    def intern(self, text: str, buf: np.ndarray, counts: np.ndarray, *, lower_ascii: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
        """The ids of the words of ``text`` (``buf``: its code points, uint8 or uint32), ``counts[i]`` of them
        for text i, each text's distinct ids (CSR) and the new words (appended to :attr:`words`); None when
        the buffer does not hold exactly ``counts.sum()`` words (the table is then unchanged in meaning: the
        words it took are real words of the text).

        ``lower_ascii``: ``text`` is ASCII (``buf`` uint8) and its words are to be lower-cased, which the
        kernel does as it reads them (for ASCII that is all ``str.lower`` does); otherwise the words are taken
        as they are (a caller lower-cases a non-ASCII text with ``str.lower`` first).
        """
        if lower_ascii and buf.dtype != np.uint8:
            raise ValueError("lower_ascii needs an ASCII buffer")
        total = int(counts.sum())
        n_ids, used = int(self._state[0]), int(self._state[1])
        need = n_ids + total
        self._hashes = _grown(self._hashes, need)
        self._starts = _grown(self._starts, need)
        self._lens = _grown(self._lens, need)
        self._marks = _grown(self._marks, need)
        self._arena = _grown(self._arena, used + buf.size)
        if self._slots.size < 2 * need:  # load factor at most 1/2, even if every word of the batch is new
            size = self._slots.size
            while size < 2 * need:
                size *= 2
            self._slots = np.empty(size, dtype=np.int32)
            _rehash(self._hashes, n_ids, self._slots)
        fold = _ASCII_LOWER if lower_ascii else _IDENTITY
        ids, distinct, offsets, spans, ok = _intern(buf, fold, counts, char_codes(), self._seed, self._slots,
                                                    self._hashes, self._starts, self._lens, self._arena,
                                                    self._marks, self._state)
        new = [text[s:e].lower() if lower_ascii else text[s:e] for s, e in spans.tolist()]
        self.words.extend(new)
        return (ids, distinct, offsets, new) if ok else None

