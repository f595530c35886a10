"""The process's lower-cased words as dense ids: one dictionary lookup per word of a batch, shared by the
text features (distinct words), ``oov_rate`` (membership of the profile's vocabulary) and the evidence (the
words' stable keys), which before each hashed and looked up every word again.

What a consumer derives from a word is kept per id and computed once per new word: a vocabulary's
membership (a keyed BLAKE2b hash each), the evidence's 64-bit key (another). Nothing here is state of the
results: every answer is a function of the word alone, so the table can start over at any batch.

Bounded: past :data:`MAX_WORDS` words the next batch starts a new :class:`WordIds` generation. A batch's
:class:`~detectors.text_features.BatchWords` keeps the generation that gave its ids, so ids handed out before
a reset still resolve (the pipeline may prepare a batch's halves before applying either).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np

from detectors.text_features import BatchWords, distinct_per_event
from detectors.vocabulary import HashedVocabulary

__all__ = ["WordIds", "WordTable", "WORDS", "MAX_WORDS", "word_key", "split_words"]

MAX_WORDS = 65_536  # words of one generation (a few MiB with their keys and memberships)
_MAX_VOCABULARIES = 64  # vocabularies whose membership one generation remembers (profiles x segments)


def word_key(word: str) -> int:
    """A word's stable 64-bit key (BLAKE2b): the same in every process, so checkpoints restore across restarts."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


class WordIds(dict):
    """One generation of the table: word -> dense id (in order of first sight), the words by id, and per id
    the evidence's key and each vocabulary's membership, grown as ids arrive."""

    def __init__(self) -> None:
        super().__init__()
        # Lookups that hit are one atomic dict read; what grows (a new word, the arrays per id) holds the
        # lock, so pipelines in several threads (compare() from threads, tests) never share an id or a row.
        self._lock = threading.RLock()
        self.words: list[str] = []
        self.named: dict[int, str] = {}  # key -> word, for the ids keyed so far
        self._keys = np.empty(0, dtype=np.uint64)
        self._members: dict[int, tuple[HashedVocabulary, np.ndarray]] = {}

    def __missing__(self, word: str) -> int:
        with self._lock:
            i = dict.get(self, word)  # another thread may have added it meanwhile
            if i is None:
                i = len(self.words)
                self.words.append(word)  # before the id is published: whoever reads the id finds the word
                self[word] = i
            return i

    def ids(self, words: list[str]) -> np.ndarray:
        """Each word's id (a new word gets the next one): one C-level lookup per word."""
        return np.fromiter(map(self.__getitem__, words), dtype=np.int64, count=len(words))

    def keys(self) -> np.ndarray:
        """:func:`word_key` of every id so far (uint64, indexed by id)."""
        with self._lock:
            done = self._keys.size
            if done < len(self.words):
                new = self.words[done:]
                keys = np.fromiter(map(word_key, new), dtype=np.uint64, count=len(new))
                self.named.update(zip(keys.tolist(), new))
                self._keys = np.concatenate([self._keys, keys])
            return self._keys

    def membership(self, vocabulary: HashedVocabulary) -> np.ndarray:
        """Whether each id's word is in ``vocabulary`` (bool, indexed by id)."""
        with self._lock:
            held = self._members.get(id(vocabulary))
            known = held[1] if held is not None and held[0] is vocabulary else np.empty(0, dtype=bool)
            if known.size < len(self.words):
                known = np.concatenate([known, vocabulary.contains(self.words[known.size :])])
                if len(self._members) >= _MAX_VOCABULARIES:
                    self._members.clear()
                self._members[id(vocabulary)] = (vocabulary, known)  # held: its id() stays its own
            return known


class WordTable:
    """The current :class:`WordIds` generation; a new one once the current holds more than ``max_words``."""

    def __init__(self, max_words: int = MAX_WORDS):
        self.max_words = int(max_words)
        self.current = WordIds()

    def generation(self) -> WordIds:
        """The generation for the next batch (checked between batches only: a batch's ids share one)."""
        if len(self.current) > self.max_words:
            self.current = WordIds()
        return self.current


WORDS = WordTable()  # the process's table: a memo, so one per process is right (it is no result's state)


def split_words(texts: Sequence[str], table: WordTable = WORDS) -> BatchWords:
    """:class:`BatchWords` of ``texts`` for a caller that did not get them from the text features."""
    split = list(map(str.split, map(str.lower, texts)))
    counts = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    gen = table.generation()
    ids = gen.ids([w for words in split for w in words])
    distinct, offsets = distinct_per_event(ids, counts)
    return BatchWords(ids, counts, distinct, offsets, gen)
