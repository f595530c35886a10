"""Tokenize texts once, then cut them into length-sorted, dynamically padded batches.

Texts are tokenized (with truncation) in one pass, so the token lengths are known before batching. Batches
then group texts of similar length, so each is padded only to its own longest member; ``Encoded.batch``
builds the padded arrays with numpy. Callers write each batch's outputs back at the batch's indices, which
restores the original order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.ingest.tokenizer import resolve_max_length  # one rule for every max_length default
from monitor.onnx.errors import ModelError

__all__ = ["Encoded", "load_tokenizer", "resolve_max_length", "encode_texts", "plan_batches"]



def load_tokenizer(path: Path | str):
    """Load ``AutoTokenizer.from_pretrained(path)`` from a local directory, never from a hub."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            f"tokenizer directory {path} does not exist"
            if not path.exists()
            else f"tokenizer path {path} is not a directory"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises many types here; all mean "not a usable tokenizer"
        raise ModelError(f"cannot load a tokenizer from {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


@dataclass
class Encoded:
    """Token ids of every text, flat, with per-text offsets and lengths (after truncation)."""

    ids: np.ndarray
    type_ids: np.ndarray | None
    offsets: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    pad_id: int
    left_padding: bool

    def __len__(self) -> int:
        return int(self.lengths.size)

    def batch(self, idx: np.ndarray, dtype=np.int64) -> dict[str, np.ndarray]:
        """Padded ``input_ids``, ``attention_mask`` (and ``token_type_ids``) for the texts at ``idx``."""
        lengths = self.lengths[idx]
        width = int(lengths.max())
        cols = np.arange(width)
        if self.left_padding:
            mask = cols[None, :] >= (width - lengths)[:, None]
            pos = self.offsets[idx][:, None] + cols[None, :] - (width - lengths)[:, None]
        else:
            mask = cols[None, :] < lengths[:, None]
            pos = self.offsets[idx][:, None] + cols[None, :]
        pos = np.where(mask, pos, 0)
        out = {
            "input_ids": np.where(mask, self.ids[pos], self.pad_id).astype(dtype, copy=False),
            "attention_mask": mask.astype(dtype),
        }
        if self.type_ids is not None:
            out["token_type_ids"] = np.where(mask, self.type_ids[pos], 0).astype(dtype, copy=False)
        return out


def encode_texts(
    tokenizer,
    texts: list[str] | tuple[str, ...],
    *,
    max_length: int,
    with_type_ids: bool = False,
    chunk_size: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> Encoded:
    """Tokenize ``texts`` with truncation at ``max_length`` and count how many were truncated."""
    n = len(texts)
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    truncated = np.zeros(n, dtype=bool)
    if progress is not None:
        progress(0, n)
    for lo in range(0, n, chunk_size):
        chunk = list(texts[lo : lo + chunk_size])
        enc = tokenizer(
            chunk,
            truncation=True,
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=with_type_ids,
        )
        ids.extend(enc["input_ids"])
        if with_type_ids:
            type_ids.extend(enc["token_type_ids"])
        encodings = getattr(enc, "encodings", None)
        if encodings is not None:
            # A fast tokenizer keeps what truncation cut off in `overflowing`.
            truncated[lo : lo + len(chunk)] = [bool(e.overflowing) for e in encodings]
        else:
            full = tokenizer(chunk, truncation=False, return_attention_mask=False)["input_ids"]
            truncated[lo : lo + len(chunk)] = [len(x) > max_length for x in full]
        if progress is not None:
            progress(min(lo + chunk_size, n), n)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    if n and lengths.min() == 0:
        raise ModelError(
            "the tokenizer produced an empty sequence for some text (no special tokens?); nothing to feed the model"
        )
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    total = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
    flat_types = (
        np.fromiter(itertools.chain.from_iterable(type_ids), dtype=np.int64, count=total) if with_type_ids else None
    )
    pad_id = getattr(tokenizer, "pad_token_id", None)
    return Encoded(
        ids=flat,
        type_ids=flat_types,
        offsets=offsets,
        lengths=lengths,
        truncated=truncated,
        # Without a pad token any id will do: the attention mask hides padded positions.
        pad_id=int(pad_id) if pad_id is not None else 0,
        left_padding=getattr(tokenizer, "padding_side", "right") == "left",
    )


def plan_batches(lengths: np.ndarray, batch_size: int, *, sort: bool = True) -> list[np.ndarray]:
    """Split ``range(len(lengths))`` into batches of indices; longest texts first when ``sort``.

    Longest first so that a batch that does not fit in (GPU) memory fails at once, not at the end.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable") if sort else np.arange(lengths.size)
    return [order[lo : lo + batch_size] for lo in range(0, lengths.size, batch_size)]
