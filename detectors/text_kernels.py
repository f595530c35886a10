"""Compiled (numba) kernels over a batch's characters: the character classes and word counts of every text
(the words themselves, as ids of a table, are :mod:`detectors.word_table`'s).

Why compiled: in numpy the character classes took one lookup table and one cumulative sum per class word
over the whole batch's buffer (several passes a character, and megabytes of temporaries); a loop over the
code points, compiled, takes one pass with a 64-bit histogram of class codes per text, and counts the words
(runs of non-whitespace, ``str.isspace`` being the table's ``space`` bit) on the way.

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

__all__ = ["class_counts", "char_codes", "code_points", "CLASSES", "ABOVE_BMP", "SPACE_BIT", "NUMBA_CACHE",
           "cache_location"]


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
NUMBA_CACHE = _CACHE_DIR is not None  # numba.njit(cache=...) of every kernel here and in detectors.word_table

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




@numba.njit(cache=NUMBA_CACHE, nogil=True)
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
