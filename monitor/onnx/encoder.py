"""An ONNX text encoder: texts in, one embedding per text out, independent of what else was in its batch.

The served model exported with an extra output (a pooled ``[batch, dim]`` embedding, or the token-level
``[batch, seq, dim]`` hidden states) is the intended model. A 2-D output is used as is; a 3-D output is
mean-pooled over the tokens the attention mask keeps.

Exactly-once needs the embedding of a text to be a function of the text alone: a replay or a restart from a
checkpoint may embed the same sampled text next to other texts. Padding breaks that in general: a text
padded to a longer batch goes through the graph at another sequence length, where reductions over the
sequence (attention softmax, pooling) and kernel blocking can group their sums differently, and the last
bits change. So the default batching, ``"exact_length"``, groups texts by their exact token count and runs
each group (in chunks of ``batch_size``) without any padding: every text is computed at its own length, and
a batch differs from another only in how many equal-length rows it holds. The rows of a batch do not
interact in an encoder, and onnxruntime's CPU kernels compute each row's sums in the same order for any
batch of two rows or more. A batch of ONE row is different: onnxruntime then reduces over the sequence by
another path (measured on the tiny encoder's pooled output: batch 1 differs from batches 2..16 in the last
bit, which agree with each other at every row position and with any companions), so a lone text is run
as a batch of two copies of itself. ``tests/monitor/onnx/test_encoder.py`` checks the result (a text
alone, in a batch of strangers, at any batch size: identical float32 bits), and
:meth:`OnnxEncoder.batch_independent` repeats that check on any model and texts, for a daemon to run at
start. ``"sorted"`` (length-sorted, padded to
each batch's longest, as the re-evaluation batches) and ``"unsorted"`` (input order, padded) are there for
the benchmark's comparison; they are not batch-independent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitor.ingest.reference import file_sha256
from monitor.onnx.encode import Encoded, encode_texts, load_tokenizer, resolve_max_length
from monitor.onnx.errors import ModelError
from monitor.onnx.session import INT_TYPES, TEXT_INPUTS, open_session, run_output

__all__ = ["OnnxEncoder", "BATCHING"]

BATCHING = ("exact_length", "sorted", "unsorted")


class OnnxEncoder:
    """One loaded ONNX encoder and its tokenizer.

    ``tokenizer`` is a tokenizer directory (loaded offline, as re-evaluation does) or a loaded tokenizer.
    ``output`` names the embedding output; it may be left out when the model has one output. Attributes:
    ``provider`` (what actually runs the model), ``note`` (why, after a fallback), ``output_name``,
    ``pooling`` (``"none"`` for a 2-D output, ``"mean"`` for a 3-D one), ``dim`` (``None`` until the first
    batch when the graph leaves it symbolic), ``max_length``.
    """

    def __init__(
        self,
        model_path: Path | str,
        tokenizer,
        *,
        output: str | None = None,
        provider: str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        batching: str = "exact_length",
        intra_op_threads: int = 0,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batching not in BATCHING:
            raise ValueError(f"batching must be one of {', '.join(BATCHING)}, got {batching!r}")
        self.path = Path(model_path)
        self.tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str | Path) else tokenizer
        self.max_length = resolve_max_length(self.tokenizer, max_length)
        self.batch_size = batch_size
        self.batching = batching
        opened = open_session(self.path, provider=provider, intra_op_threads=intra_op_threads)
        self.provider, self.note, self._session = opened.provider, opened.note, opened.session
        self._discover(output)

    def _discover(self, output: str | None) -> None:
        inputs = self._session.get_inputs()
        names = tuple(i.name for i in inputs)
        unknown = [n for n in names if n not in TEXT_INPUTS]
        if unknown or "input_ids" not in names:
            raise ModelError(
                f"encoder {self.path.name} has inputs {', '.join(names)}; a text encoder takes input_ids and "
                f"optionally attention_mask, token_type_ids"
            )
        dtypes = {INT_TYPES.get(i.type) for i in inputs}
        if None in dtypes or len(dtypes) != 1:
            raise ModelError(f"encoder {self.path.name} inputs must all be int64 (or all int32)")
        self.input_names, self.input_dtype = names, dtypes.pop()
        outputs = {o.name: o for o in self._session.get_outputs()}
        if output is None:
            if len(outputs) != 1:
                raise ModelError(
                    f"encoder {self.path.name} has outputs {', '.join(outputs)}; name the embedding one (output=)"
                )
            output = next(iter(outputs))
        if output not in outputs:
            raise ModelError(f"encoder {self.path.name} has no output {output!r} (outputs: {', '.join(outputs)})")
        shape = outputs[output].shape
        if shape is not None and len(shape) not in (2, 3):
            raise ModelError(
                f"encoder output {output!r} has shape {shape}; expected [batch, dim] or [batch, seq, dim]"
            )
        self.output_name = output
        self.pooling = None if shape is None else ("none" if len(shape) == 2 else "mean")
        dim = shape[-1] if shape is not None else None
        self.dim = dim if isinstance(dim, int) and dim > 0 else None

    def info(self) -> dict:
        """What identifies this encoder's embeddings (for the profile's compatibility check)."""
        return {
            "model": self.path.name,
            "model_sha256": file_sha256(self.path),
            "output": self.output_name,
            "pooling": self.pooling,
            "dim": self.dim,
            "max_length": self.max_length,
        }

    def embed(self, texts: list[str] | tuple[str, ...]) -> np.ndarray:
        """Return the ``(len(texts), dim)`` float32 embeddings of ``texts``, in their order."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        encoded = encode_texts(
            self.tokenizer, texts, max_length=self.max_length, with_type_ids="token_type_ids" in self.input_names
        )
        out: np.ndarray | None = None
        for idx in self._batches(encoded.lengths):
            vectors = self._run(encoded, idx)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                self.dim = int(vectors.shape[1])
            out[idx] = vectors
        return out

    def _batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        if self.batching == "unsorted":
            order = np.arange(lengths.size)
        else:
            order = np.argsort(lengths, kind="stable")
        if self.batching != "exact_length":
            return [order[lo : lo + self.batch_size] for lo in range(0, order.size, self.batch_size)]
        batches = []
        sorted_lengths = lengths[order]
        cuts = np.flatnonzero(np.diff(sorted_lengths)) + 1
        for group in np.split(order, cuts):  # one group per exact token count: no padding at all
            batches.extend(group[lo : lo + self.batch_size] for lo in range(0, group.size, self.batch_size))
        return batches

    def batch_independent(self, texts: list[str] | tuple[str, ...]) -> bool:
        """Return whether ``texts`` embed to the same bits together as each one alone (see the module docstring)."""
        together = self.embed(texts)
        alone = np.concatenate([self.embed([t]) for t in texts]) if len(texts) else together
        return bool(np.array_equal(together.view(np.uint32), alone.view(np.uint32)))

    def _run(self, encoded: Encoded, idx: np.ndarray) -> np.ndarray:
        if idx.size == 1:  # never a batch of one row: onnxruntime reduces differently there (module docstring)
            return self._run(encoded, np.repeat(idx, 2))[:1]
        feed = encoded.batch(idx, dtype=self.input_dtype)
        args = {name: feed[name] for name in self.input_names}
        out = run_output(self._session, self.output_name, args, who=f"encoder {self.path.name}")
        if out.shape[0] != idx.size or out.ndim not in (2, 3):
            raise ModelError(
                f"encoder output {self.output_name!r} has shape {out.shape}; expected [batch, dim] or "
                f"[batch, seq, dim]"
            )
        if out.ndim == 2:
            self.pooling = "none"
            return out.astype(np.float32, copy=False)
        self.pooling = "mean"
        # Masked mean in float64, token by token in sequence order (numpy adds the rows of axis 1 one after
        # another), so a text's pooled vector depends only on its own tokens.
        mask = feed["attention_mask"].astype(np.float64)[:, :, None]
        total = (out.astype(np.float64) * mask).sum(axis=1)
        return (total / np.maximum(mask.sum(axis=1), 1.0)).astype(np.float32)

    def __repr__(self) -> str:
        return (f"OnnxEncoder({self.path.name!r}, output={self.output_name!r}, provider={self.provider!r}, "
                f"batch_size={self.batch_size}, batching={self.batching!r})")
