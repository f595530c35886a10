"""Out-of-vocabulary rate against a hashed, bounded reference vocabulary.

``oov_rate`` of a text is the share of its words that the reference never contained: a new subject, a new
language or product names show up here before any length statistic moves. Words are split exactly as
:mod:`detectors.text_features` splits them (``str.split`` of ``str.lower``); a text without a word has rate 0.

Nothing readable is stored. Each reference word is kept only as a keyed BLAKE2b hash truncated to 32 bits
(``key`` is the profile's own, drawn at random when the profile is built), so names and e-mail addresses of
the reference texts cannot be read off a profile, and a table of hashes computed for one profile's key is
useless against another's. What a hash cannot hide: whoever holds the profile (key included) can test a
*guessed* word for membership, as the daemon itself must.

Bounded: at most ``max_words`` hashes (the most frequent words; ties broken by hash value), 4 bytes each, and
``min_count`` leaves out words seen fewer times (hapaxes are where names and typos live).

False positives: an unseen word is taken for a known one when its hash equals one of the ``V`` stored
hashes, with probability ``V / 2**32`` (the hash is uniform): 7.6e-6 at the default cap of 32,768 words;
``bench/embedding.py`` measured 3 false hits over 10^6 unseen words (3.0e-6, Poisson-consistent with 7.6). The measured OOV rate is therefore at most
that share too low, far below any effect a KS test could see. Collisions among the reference words
themselves only shrink ``V``.

The reference's own ``oov_rate`` values must come from texts the vocabulary was *not* built from: every
word of a text the vocabulary was built from is in it, so in-sample rates are 0 (or, with ``min_count``,
biased low), and every window would drift. Build the vocabulary on part of the reference and compute the
reference values on the rest (:func:`split_reference` does the split).
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np

__all__ = ["HashedVocabulary", "split_reference", "HASH_KIND", "OOV_FEATURE"]

HASH_KIND = "blake2b-32"
# The input feature this vocabulary feeds (docs/results.md, *Input drift*).
OOV_FEATURE = "oov_rate"
_HASH_BYTES = 4
_KNOWN_MAX = 1 << 16  # words whose membership oov_rate remembers (about 6 MiB at most, in memory only)


def split_reference(n: int, *, holdout_every: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(build, holdout)`` indices of ``n`` reference texts: every ``holdout_every``-th is held out.

    Examples
    --------
    >>> build, holdout = split_reference(10, holdout_every=5)
    >>> build.tolist(), holdout.tolist()
    ([1, 2, 3, 4, 6, 7, 8, 9], [0, 5])
    """
    if not isinstance(holdout_every, int) or isinstance(holdout_every, bool) or holdout_every < 2:
        raise ValueError(f"holdout_every must be an integer of at least 2, got {holdout_every!r}.")
    index = np.arange(int(n))
    held = index % holdout_every == 0
    return index[~held], index[held]


class HashedVocabulary:
    """A reference vocabulary stored as sorted, keyed, truncated word hashes; see the module docstring.

    Parameters
    ----------
    hashes : array_like of uint32
        The stored word hashes (sorted and deduplicated here).
    key : bytes
        The BLAKE2b key the hashes were made with, 16 to 64 bytes.

    Examples
    --------
    >>> vocab = HashedVocabulary.fit(["The soup was cold", "the waiter was kind"], key=b"0123456789abcdef")
    >>> len(vocab)
    6
    >>> vocab.oov_rate(["The soup was KIND", "my phone was cold", ""]).tolist()
    [0.0, 0.5, 0.0]
    >>> "soup" in str(vocab.to_dict())
    False
    >>> HashedVocabulary.from_dict(vocab.to_dict()) == vocab
    True
    """

    __slots__ = ("hashes", "key", "_known")

    def __init__(self, hashes, *, key: bytes):
        self.key = _check_key(key)
        h = np.unique(np.asarray(hashes, dtype=np.uint32))
        h.flags.writeable = False
        self.hashes = h
        # word -> in the vocabulary?, remembered across calls: a stream repeats most of its words, and a
        # dict lookup costs a tenth of a keyed hash. A pure memo (same answers), at most _KNOWN_MAX words.
        self._known: dict[str, bool] = {}

    @classmethod
    def fit(
        cls, texts: Sequence[str], *, key: bytes, max_words: int = 32768, min_count: int = 1
    ) -> HashedVocabulary:
        """Build from reference texts: the ``max_words`` most frequent lower-cased words seen ``min_count`` times."""
        counts = Counter(chain.from_iterable(map(str.split, map(str.lower, texts))))
        return cls.from_counts(counts, key=key, max_words=max_words, min_count=min_count)

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], *, key: bytes, max_words: int = 32768, min_count: int = 1
    ) -> HashedVocabulary:
        """Build from counts of lower-cased words (what :meth:`fit` counts), for callers that stream their texts."""
        for name, value, low in (("max_words", max_words, 1), ("min_count", min_count, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}.")
        key = _check_key(key)
        words = [w for w, c in counts.items() if c >= min_count]
        hashes = _hash_words(words, key)
        freq = np.fromiter((counts[w] for w in words), dtype=np.int64, count=len(words))
        # Most frequent first, ties by hash value: deterministic, and nothing about the words' spelling.
        keep = np.lexsort((hashes, -freq))[:max_words]
        return cls(hashes[keep], key=key)

    def __len__(self) -> int:
        return int(self.hashes.size)

    @property
    def false_positive_rate(self) -> float:
        """Probability that a word not in the reference is taken for one that is: ``len(self) / 2**32``."""
        return len(self) / float(1 << (8 * _HASH_BYTES))

    def contains(self, words: Sequence[str]) -> np.ndarray:
        """Return a bool array: is each (already lower-cased) word's hash in the vocabulary?"""
        return _member(self.hashes, _hash_words(list(words), self.key))

    def oov_rate(self, texts: Sequence[str], words: Sequence[list[str]] | None = None) -> np.ndarray:
        """Return each text's share of lower-cased words not in the vocabulary (0 for a text without words).

        ``words``: each text's ``text.lower().split()`` when the caller has them already
        (:func:`detectors.text_features.text_features_and_words`), which saves most of the cost.
        """
        n = len(texts)
        split = list(map(str.split, map(str.lower, texts))) if words is None else words
        if len(split) != n:
            raise ValueError(f"words holds {len(split)} word lists for {n} texts.")
        counts = np.fromiter(map(len, split), dtype=np.int64, count=n)
        flat = list(chain.from_iterable(split))
        known = self._known
        new = set(flat).difference(known)
        if new:
            if len(known) + len(new) > _KNOWN_MAX:
                known.clear()  # bounded: start over rather than track recency per word
                new = set(flat)
            new = list(new)
            known.update(zip(new, _member(self.hashes, _hash_words(new, self.key)).tolist()))
        missing = ~np.fromiter(map(known.__getitem__, flat), dtype=bool, count=len(flat))
        text_of = np.repeat(np.arange(n), counts)
        oov = np.bincount(text_of[missing], minlength=n)
        out = np.zeros(n, dtype=np.float64)
        np.divide(oov, counts, out=out, where=counts > 0)
        return out

    def to_dict(self) -> dict:
        """Return the vocabulary as compact JSON: the key in hex, the hashes as base64 of little-endian uint32."""
        return {
            "kind": HASH_KIND,
            "key": self.key.hex(),
            "size": len(self),
            "hashes": base64.b64encode(self.hashes.astype("<u4").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> HashedVocabulary:
        """Read a vocabulary written by :meth:`to_dict`."""
        if doc.get("kind") != HASH_KIND:
            raise ValueError(f"vocabulary kind must be {HASH_KIND!r}, got {doc.get('kind')!r}.")
        raw = base64.b64decode(doc["hashes"], validate=True)
        hashes = np.frombuffer(raw, dtype="<u4")
        if hashes.size != doc.get("size", hashes.size):
            raise ValueError(f"vocabulary holds {hashes.size} hashes, but its size says {doc.get('size')}.")
        return cls(hashes, key=bytes.fromhex(doc["key"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashedVocabulary):
            return NotImplemented
        return self.key == other.key and np.array_equal(self.hashes, other.hashes)

    def __getstate__(self):
        return {"hashes": self.hashes, "key": self.key}

    def __setstate__(self, state):
        object.__setattr__(self, "key", state["key"])
        object.__setattr__(self, "hashes", state["hashes"])
        object.__setattr__(self, "_known", {})

    def __repr__(self) -> str:
        return f"HashedVocabulary(size={len(self)}, kind={HASH_KIND!r})"


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes | bytearray) or not 16 <= len(key) <= 64:
        raise ValueError(f"key must be 16 to 64 bytes, got {type(key).__name__} of length "
                         f"{len(key) if hasattr(key, '__len__') else 'none'}.")
    return bytes(key)


def _hash_words(words: list[str], key: bytes) -> np.ndarray:
    """Keyed BLAKE2b of each word's UTF-8 bytes (lone surrogates passed through), truncated to 32 bits."""
    blake = hashlib.blake2b
    digests = b"".join(
        blake(w.encode("utf-8", "surrogatepass"), digest_size=_HASH_BYTES, key=key).digest() for w in words
    )
    return np.frombuffer(digests, dtype="<u4").astype(np.uint32)


def _member(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    if sorted_hashes.size == 0:
        return np.zeros(hashes.size, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_hashes, hashes), sorted_hashes.size - 1)
    return sorted_hashes[pos] == hashes
