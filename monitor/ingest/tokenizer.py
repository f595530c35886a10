"""Run the served model's own tokenizer over a batch of texts to get token counts and unknown tokens."""

from __future__ import annotations

import hashlib
import operator
import os
import threading
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from detectors.text_features import distinct_per_event, tokenizer_features
from detectors.text_kernels import code_points
from detectors.word_table import WordInterner, distinct_ids_of_rows

__all__ = ["TokenizerFeaturizer", "TokenizerError", "resolve_max_length", "DEFAULT_MAX_LENGTH"]

# transformers reports "no limit" as a huge sentinel (int(1e30)); anything above this is treated as unset.
_NO_LIMIT = 1_000_000
DEFAULT_MAX_LENGTH = 512  # only for a tokenizer that states no model_max_length


def resolve_max_length(tokenizer, max_length: int | None) -> int:
    """Return the requested length, else the tokenizer's ``model_max_length`` when set, else 512.

    ``None`` and ``0`` (TOML's "not set": ``tokenizer.max_length = 0``, the default) both mean the tokenizer's
    own limit: the ``truncated`` feature, the profile, the encoder and re-evaluation then use the model's.
    """
    if max_length:
        return int(max_length)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit <= _NO_LIMIT else DEFAULT_MAX_LENGTH


class TokenizerError(RuntimeError):
    """The configured tokenizer cannot be loaded or used."""


@dataclass(frozen=True)
class TokenizerInfo:
    path: str
    fingerprint: str
    max_length: int

    def to_dict(self) -> dict:
        return {"path": self.path, "fingerprint": self.fingerprint, "max_length": self.max_length}


class TokenizerFeaturizer:
    """Token count, unknown-token rate and truncation flag per text, from ``AutoTokenizer.from_pretrained(path)``.

    ``max_length`` (None: the tokenizer's ``model_max_length``) is the limit above which a text counts as
    truncated.

    Only a local directory is accepted: the sidecar must measure the tokenizer that is actually served, and it
    must never reach for a model hub at run time.
    """

    def __init__(self, path: str | Path, *, max_length: int | None = None, batch_size: int = 256):
        path = Path(path)
        if not path.is_dir():
            raise TokenizerError(f"tokenizer.path {str(path)!r} is not a directory (it must hold the served model's tokenizer files)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises many types here; all mean "not a usable tokenizer".
            raise TokenizerError(f"cannot load tokenizer from {str(path)!r}: {type(exc).__name__}: {exc}") from None
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise TokenizerError(
                f"tokenizer in {str(path)!r} is a slow (Python) tokenizer; nlpmon needs a fast tokenizer "
                "(a tokenizer.json) to keep up with traffic"
            )
        # Counts must be untruncated and unpadded; the backend is a private copy so this changes nothing else.
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self.unk_id = tok.unk_token_id
        self.special_ids = frozenset(int(i) for i in tok.all_special_ids)
        self.max_length = resolve_max_length(tok, max_length)  # None/0: the tokenizer's model_max_length
        self.batch_size = int(batch_size)
        digest = hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]
        self.info = TokenizerInfo(path=str(path), fingerprint=digest, max_length=self.max_length)
        self._added = backend.post_processor.num_special_tokens_to_add(False) if backend.post_processor else 0
        # Chunk -> its row in _counts (token count, unknown-token count): the ids of a compiled table over the
        # chunks' code points (detectors.word_table), so a batch's chunks are looked up without a Python str
        # each, and its counts are one gather.
        self._chunks = WordInterner()
        self._counts = np.zeros((0, 2), dtype=np.int64)
        # Each row's token ids less the special ones, for the evidence's token sets (token_ids): one flat
        # array, row r at _ids[_id_starts[r]:][:_id_lengths[r]], so a batch's ids are one numpy gather.
        self._ids = _Growing()
        self._max_id = -1  # the largest of _ids (the width of distinct_token_ids' marks)
        self._id_starts = _Growing()
        self._id_lengths = _Growing()
        # The last batch features() split into chunks (its texts and each chunk's row): token_ids of the same
        # texts, which the evidence asks for next, reuses them instead of splitting and looking up again.
        self._last: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self._text_ids: dict[str, list[int]] = {}  # the last per-text batch's ids, for token_ids
        # One batch at a time through the chunk table and its arrays (a featurizer shared between threads):
        # the compiled kernels trust the ids they are given to index those arrays.
        self._lock = threading.RLock()
        self.chunk_cache = _splits_on_spaces(backend) and self._verify_chunk_sums()

    def features(self, texts: list[str]) -> np.ndarray:
        """Return an ``(len(texts), 3)`` matrix: token_count, unk_token_rate, truncated."""
        with self._lock:
            if self.chunk_cache:
                return self._features_by_chunk(texts)
            return self._features_by_text(texts)

    # Encoding a text costs ~30-50 us in the tokenizers library whatever its vocabulary (per-Encoding
    # bookkeeping), which caps a sidecar at ~25k texts/s on one core. For tokenizers whose pre-tokenizer splits
    # on spaces and drops them (BERT WordPiece and friends), a text's token count is the sum of its
    # space-separated chunks' counts, and chunks repeat (word frequencies are Zipfian), so counts are cached
    # per chunk: exact, and ~10x faster. Other tokenizers (byte-level BPE keeps the space inside the next
    # token) take the exact per-text path. _verify_chunk_sums double-checks the property at load time.
    _MAX_CHUNKS = 500_000

    def _split_chunks(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each non-empty chunk's row (text after text; a chunk is a run of characters other than U+0020, as
        ``text.split(" ")`` gives them; an empty one has no token) and each text's number of them, encoding
        (one ``encode_batch`` call per 4,096) the chunks not seen before."""
        if len(self._chunks) > self._MAX_CHUNKS:  # bounded memory; a cold cache only costs speed
            self._reset_chunks()
        joined = " ".join(texts)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        base = len(self._chunks)
        rows, per_text, new = self._chunks.intern_chunks(joined, code_points(joined), lengths)
        if new:
            try:
                self._encode_chunks(new, base)
            except BaseException:
                self._reset_chunks()  # the table named chunks whose counts were not stored: start over
                raise
        return rows, per_text

    def _encode_chunks(self, new: list[str], base: int) -> None:
        """The counts and content ids of chunks ``new``, rows ``base`` on (the table's new ids, in order)."""
        if base + len(new) > len(self._counts):  # grown geometrically: new chunks arrive in most batches
            counts = np.zeros((max(2 * len(self._counts), base + len(new), 1024), 2), dtype=np.int64)
            counts[:base] = self._counts[:base]
            self._counts = counts
        counts = self._counts
        unk_id, special = self.unk_id, self.special_ids
        for lo in range(0, len(new), 4096):
            part = new[lo : lo + 4096]
            content = []
            for row, enc in enumerate(self._backend.encode_batch(part, add_special_tokens=False), base + lo):
                ids = enc.ids
                counts[row] = len(ids), ids.count(unk_id) if unk_id is not None else 0
                content.append([i for i in ids if i not in special])  # [UNK] too: the evidence names no unknown
            lengths = np.fromiter(map(len, content), dtype=np.int64, count=len(content))
            self._id_starts.extend(self._ids.size + np.cumsum(lengths) - lengths)  # rows appended in order
            self._id_lengths.extend(lengths)
            flat = np.fromiter(chain.from_iterable(content), dtype=np.int64, count=int(lengths.sum()))
            self._ids.extend(flat)
            if flat.size:
                self._max_id = max(self._max_id, int(flat.max()))

    def _reset_chunks(self) -> None:
        self._chunks = WordInterner()
        self._max_id = -1
        for grown in (self._ids, self._id_starts, self._id_lengths):
            grown.clear()
        self._last = None  # its rows were of the table just dropped

    def _features_by_chunk(self, texts: list[str]) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return tokenizer_features(np.zeros(0), np.zeros(0), np.zeros(0), self.max_length)
        rows, per_text = self._split_chunks(texts)
        self._last = (texts, rows, per_text)
        sums = _segment_sums(self._counts[rows], per_text)
        content, unk = sums[:, 0], sums[:, 1]
        return tokenizer_features(content + self._added, unk, content, self.max_length)

    def _verify_chunk_sums(self) -> bool:
        probes = ["Hello, World!  It's 3.5 times   faster.", "naïve café — ÉTÉ déjà vu", "tabs\tand\nnew lines",
                  "unknownwordzzz qqq xkcd", "CAPS and MiXeD case 12:30pm", "", " leading and trailing ",
                  "emoji 🔥 中文字符 混合 text", "don't won't can't", "e-mail@example.com http://x.y/z?a=b"]
        exact = self._features_by_text(probes)
        chunked = self._features_by_chunk(probes)
        self._reset_chunks()
        return bool(np.array_equal(exact, chunked))

    def _features_by_text(self, texts: list[str]) -> np.ndarray:
        n = len(texts)
        tokens = np.empty(n, dtype=np.int64)
        unk = np.zeros(n, dtype=np.int64)
        special = np.zeros(n, dtype=np.int64)
        unk_id, special_ids = self.unk_id, self.special_ids
        self._text_ids = {}
        for lo in range(0, n, self.batch_size):
            encodings = self._backend.encode_batch(texts[lo : lo + self.batch_size], add_special_tokens=True)
            for i, enc in enumerate(encodings, lo):
                self._text_ids[texts[i]] = enc.ids
                tokens[i] = len(enc.ids)
                # special_tokens_mask marks what the post-processor added ([CLS], [SEP], ...).
                special[i] = sum(enc.special_tokens_mask)
                if unk_id is not None:
                    unk[i] = enc.ids.count(unk_id)
        content = tokens - special
        return tokenizer_features(tokens, unk, content, self.max_length)

    def distinct_token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's distinct token ids, special tokens left out, in order of first occurrence (CSR: ids,
        offsets): the evidence's token sets, from :meth:`features`' chunks without gathering every id."""
        if not self.chunk_cache or not texts:
            ids, lengths = self.token_ids(texts)
            return distinct_per_event(ids, lengths)
        with self._lock:
            rows, per_text = self._rows_of(texts)
            width = max(int(self._max_id) + 1, 1)
            return distinct_ids_of_rows(rows, per_text, self._id_starts.array, self._id_lengths.array,
                                        self._ids.array, width)

    def _rows_of(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_split_chunks` of ``texts``, reused when they are the batch :meth:`features` just split."""
        last = self._last
        if last is not None and len(last[0]) == len(texts) and all(map(operator.is_, last[0], texts)):
            return last[1], last[2]
        return self._split_chunks(texts)

    def token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every text's token ids, special tokens left out, concatenated, and how many each text has (the
        evidence's token sets; repeats within a text kept).

        Taken from what :meth:`features` just encoded (its chunk cache, or its last batch), so a batch is not
        tokenized twice; a text it did not see is encoded here.
        """
        n = len(texts)
        if self.chunk_cache:
            if n == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            with self._lock:
                rows, per_text = self._rows_of(texts)  # the chunks features() just split, when the same texts
                lengths = self._id_lengths.array[rows]
                ends = np.cumsum(lengths)
                total = int(ends[-1]) if ends.size else 0
                at = np.repeat(self._id_starts.array[rows] - (ends - lengths), lengths) + np.arange(total)
                return self._ids.array[at], _segment_sums(lengths, per_text)
        seen = self._text_ids
        missing = [t for t in texts if t not in seen]
        if missing:
            seen = dict(seen)
            for lo in range(0, len(missing), self.batch_size):
                part = missing[lo : lo + self.batch_size]
                for text, enc in zip(part, self._backend.encode_batch(part, add_special_tokens=True)):
                    seen[text] = enc.ids
        lists = [seen[t] for t in texts]
        ids = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=sum(map(len, lists)))
        return self._content(ids, np.fromiter(map(len, lists), dtype=np.int64, count=n))

    def _content(self, ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ids`` (``lengths`` per text) without the special tokens ([UNK], [CLS], ...)."""
        special = np.isin(ids, np.fromiter(self.special_ids, dtype=np.int64, count=len(self.special_ids)))
        if not special.any():
            return ids, lengths
        text_of = np.repeat(np.arange(lengths.size), lengths)
        return ids[~special], np.bincount(text_of[~special], minlength=lengths.size)

    def tokens(self, ids) -> list[str]:
        """The vocabulary's text of each token id."""
        return [self._backend.id_to_token(int(i)) or f"[{int(i)}]" for i in ids]


def _segment_sums(values: np.ndarray, per_text: np.ndarray) -> np.ndarray:
    """Each text's sum of ``values`` (``per_text[i]`` consecutive rows each, some texts none)."""
    cum = np.zeros((values.shape[0] + 1, *values.shape[1:]), dtype=np.int64)
    np.cumsum(values, axis=0, out=cum[1:])
    ends = np.cumsum(per_text)
    return cum[ends] - cum[ends - per_text]


class _Growing:
    """An int64 array appended to in batches, its buffer doubled when full (no copy of it all per batch)."""

    __slots__ = ("_buf", "size")

    def __init__(self) -> None:
        self._buf = np.zeros(1024, dtype=np.int64)
        self.size = 0

    @property
    def array(self) -> np.ndarray:
        return self._buf[: self.size]

    def extend(self, values: np.ndarray) -> None:
        end = self.size + values.size
        if end > self._buf.size:
            buf = np.zeros(max(2 * self._buf.size, end), dtype=np.int64)
            buf[: self.size] = self._buf[: self.size]
            self._buf = buf
        self._buf[self.size : end] = values
        self.size = end

    def clear(self) -> None:
        self.size = 0


def _splits_on_spaces(backend) -> bool:
    """True when the pre-tokenizer splits on spaces and drops them (so token counts add up over chunks)."""
    import json

    try:
        pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    except ValueError:
        return False
    kinds = [p.get("type") for p in pre.get("pretokenizers", [])] if pre.get("type") == "Sequence" else [pre.get("type")]
    return bool(kinds) and all(k in {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits"} for k in kinds)
