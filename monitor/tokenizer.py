"""Run the served model's own tokenizer over a batch of texts to get token counts and unknown tokens."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.text_features import tokenizer_features

__all__ = ["TokenizerFeaturizer", "TokenizerError"]


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

    Only a local directory is accepted: the sidecar must measure the tokenizer that is actually served, and it
    must never reach for a model hub at run time.
    """

    def __init__(self, path: str | Path, *, max_length: int = 512, batch_size: int = 256):
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
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        digest = hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]
        self.info = TokenizerInfo(path=str(path), fingerprint=digest, max_length=self.max_length)

    def features(self, texts: list[str]) -> np.ndarray:
        """Return an ``(len(texts), 3)`` matrix: token_count, unk_token_rate, truncated."""
        n = len(texts)
        tokens = np.empty(n, dtype=np.int64)
        unk = np.zeros(n, dtype=np.int64)
        special = np.zeros(n, dtype=np.int64)
        unk_id, special_ids = self.unk_id, self.special_ids
        for lo in range(0, n, self.batch_size):
            encodings = self._backend.encode_batch(texts[lo : lo + self.batch_size], add_special_tokens=True)
            for i, enc in enumerate(encodings, lo):
                tokens[i] = len(enc.ids)
                # special_tokens_mask marks what the post-processor added ([CLS], [SEP], ...).
                special[i] = sum(enc.special_tokens_mask)
                if unk_id is not None:
                    unk[i] = enc.ids.count(unk_id)
        content = tokens - special
        return tokenizer_features(tokens, unk, content, self.max_length)
