"""The served text classifier on onnxruntime: input discovery, logits to probabilities.

The session and its provider are opened by ``monitor.onnx.session``, as for the embedding encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from monitor.onnx.errors import ModelError
from monitor.onnx.session import INT_TYPES, TEXT_INPUTS, open_session, run_output

__all__ = ["OnnxClassifier", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class OnnxClassifier:
    """One loaded ONNX text classifier.

    Attributes set at load: ``provider`` (the execution provider actually running the model, which can be
    CPU after an ``auto`` request when CUDA is built in but no GPU works), ``providers_available``,
    ``input_names``, ``input_dtype``, ``output_name`` and ``num_labels`` (``None`` until the first batch
    when the graph leaves the class dimension symbolic).
    """

    def __init__(self, path: Path | str, *, provider: str = "auto", intra_op_threads: int = 0):
        self.path = Path(path)
        self.requested_provider = provider
        opened = open_session(self.path, provider=provider, intra_op_threads=intra_op_threads)
        self.providers_available = opened.providers_available
        self.provider = opened.provider
        self.note = opened.note
        self._session = opened.session
        self._discover(opened.session)

    def _discover(self, sess) -> None:
        inputs = sess.get_inputs()
        names = tuple(i.name for i in inputs)
        unknown = [n for n in names if n not in TEXT_INPUTS]
        if unknown:
            raise ModelError(
                f"model {self.path.name} has input {unknown[0]!r}; a text classifier takes only "
                f"{', '.join(TEXT_INPUTS)}"
            )
        if "input_ids" not in names:
            raise ModelError(f"model {self.path.name} has no 'input_ids' input (inputs: {', '.join(names)})")
        dtypes = {INT_TYPES.get(i.type) for i in inputs}
        if None in dtypes or len(dtypes) != 1:
            kinds = ", ".join(f"{i.name}: {i.type}" for i in inputs)
            raise ModelError(f"model {self.path.name} inputs must all be int64 (or all int32), got {kinds}")
        self.input_names = names
        self.input_dtype = dtypes.pop()
        outputs = sess.get_outputs()
        out = next((o for o in outputs if o.name == "logits"), outputs[0])
        if out.shape is not None and len(out.shape) != 2:
            raise ModelError(f"model output {out.name!r} has shape {out.shape}; expected [batch, num_labels] logits")
        self.output_name = out.name
        dim = out.shape[1] if out.shape is not None else None
        self.num_labels = dim if isinstance(dim, int) and dim > 0 else None

    @property
    def wants_token_type_ids(self) -> bool:
        return "token_type_ids" in self.input_names

    def probe_num_labels(self, feed: dict[str, np.ndarray]) -> int:
        """Learn the class count from one batch when the graph does not state it."""
        if self.num_labels is None:
            self.num_labels = int(self.logits(feed).shape[1])
        return self.num_labels

    def logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Run one padded batch; ``feed`` may hold more inputs than the model takes."""
        args = {name: feed[name] for name in self.input_names}
        out = run_output(self._session, self.output_name, args, who=f"model {self.path.name}",
                         hint=" (does the tokenizer belong to this model?)")
        if out.ndim != 2 or out.shape[0] != args["input_ids"].shape[0]:
            raise ModelError(f"model output {self.output_name!r} has shape {out.shape}; expected [batch, num_labels]")
        return out

    def predict_proba(
        self,
        batches: list[np.ndarray],
        make_feed: Callable[[np.ndarray], dict[str, np.ndarray]],
        n: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Class probabilities for ``n`` samples, batch by batch, written back at each batch's indices.

        Rows no batch covers are left unset; ``progress(done, total)`` counts the samples in ``batches``.
        """
        probs: np.ndarray | None = None
        done, total = 0, sum(int(idx.size) for idx in batches)
        for idx in batches:
            logits = self.logits(make_feed(idx))
            if probs is None:
                probs = np.empty((n, logits.shape[1]), dtype=np.float64)
            probs[idx] = softmax(logits)
            done += idx.size
            if progress is not None:
                progress(done, total)
        if probs is None:
            raise ModelError("no batches to run")
        return probs
