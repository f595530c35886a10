"""The process's lower-cased words as dense ids: one compiled table lookup per word of a batch, shared by the
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

from detectors.text_features import BatchWords, text_features_batch
from detectors.text_kernels import code_points
from detectors.word_table import WordInterner
from detectors.vocabulary import HashedVocabulary

__all__ = ["WordIds", "WordTable", "WORDS", "MAX_WORDS", "word_key", "split_words"]

MAX_WORDS = 65_536  # words of one generation (a few MiB with their keys and memberships)
_MAX_VOCABULARIES = 64  # vocabularies whose membership one generation remembers (profiles x segments)


def word_key(word: str) -> int:
    """A word's stable 64-bit key (BLAKE2b): the same in every process, so checkpoints restore across restarts."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


class WordIds(dict):
    """One generation of the table: word -> dense id (in order of first sight), the words by id, and per id
    the evidence's key and each vocabulary's membership, grown as ids arrive.

    The ids come from a :class:`~detectors.word_table.WordInterner` (a compiled table over the words' code
    points); the dictionary holds the same words for a lookup by ``str`` (``table[word]``)."""

    def __init__(self) -> None:
        super().__init__()
        # What grows (new words, the arrays per id) holds the lock, so pipelines in several threads (compare()
        # from threads, tests) never share an id or a row.
        self._lock = threading.RLock()
        self._interner = WordInterner()
        self.words: list[str] = self._interner.words  # by id; appended before an id is handed out
        self.named: dict[int, str] = {}  # key -> word, for the ids keyed so far
        self._keys = np.empty(0, dtype=np.uint64)
        self._members: dict[int, tuple[HashedVocabulary, np.ndarray]] = {}

    def intern(self, text: str, buf: np.ndarray, counts: np.ndarray, *, lower: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
        """:meth:`WordInterner.intern <detectors.word_table.WordInterner.intern>`, under the lock."""
        with self._lock:
            before = len(self.words)
            got = self._interner.intern(text, buf, counts, lower=lower)
            for i in range(before, len(self.words)):
                dict.__setitem__(self, self.words[i], i)
            return got

    def ids(self, words: list[str]) -> np.ndarray:
        """Each word's id (a new word gets the next one); words are non-empty and hold no whitespace."""
        joined = " ".join(words)
        got = self.intern(joined, code_points(joined), np.ones(len(words), dtype=np.int64))
        if got is None:
            raise ValueError("a word is empty or holds whitespace")
        return got[0]

    def __missing__(self, word: str) -> int:
        return int(self.ids([word])[0])

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
    return text_features_batch(texts, table.generation())[1]
