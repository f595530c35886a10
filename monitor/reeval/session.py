"""An onnxruntime session for a text classifier: provider selection, input discovery, logits to probabilities."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.config.reeval import PROVIDERS  # the choices of the provider setting, defined with it
from monitor.reeval.errors import ModelError, ProviderError

__all__ = ["OnnxClassifier", "OpenedSession", "open_session", "select_providers", "softmax", "file_sha256", "PROVIDERS"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def select_providers(requested: str, available: Iterable[str]) -> list[str]:
    """Providers to ask onnxruntime for: ``cpu`` -> CPU; ``cuda`` -> CUDA or an error; ``auto`` -> CUDA if built in."""
    available = list(available)
    if requested not in PROVIDERS:
        raise ProviderError(f"unknown provider {requested!r}; choose one of {', '.join(PROVIDERS)}")
    if requested == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if requested == "cuda":
        # One message for `--provider cuda` and the `provider = "cuda"` settings alike, naming both ways out.
        raise ProviderError(
            f"provider cuda was requested but this onnxruntime has no {CUDA} (available: {', '.join(available)}): "
            f"install onnxruntime-gpu in place of onnxruntime (docs/gpu.md), or use provider auto or cpu"
        )
    return [CPU]


@dataclass(frozen=True)
class OpenedSession:
    """An onnxruntime session and the provider that actually runs it (``note`` says why, after a fallback)."""

    session: object
    provider: str
    providers_available: tuple[str, ...]
    note: str | None


def open_session(path: Path, *, provider: str = "auto", intra_op_threads: int = 0) -> OpenedSession:
    """Load an ONNX model with the requested provider (``auto`` | ``cuda`` | ``cpu``); shared by every model kind.

    ``auto`` falls back to CPU (with a ``note``) when CUDA is built in but cannot start; ``cuda`` then raises
    :class:`ProviderError`; a file onnxruntime cannot load raises :class:`ModelError`.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file")
    import onnxruntime as ort

    available = tuple(ort.get_available_providers())
    wanted = select_providers(provider, available)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: CUDA fallback and optimizer chatter are reported by us
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    note = None
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
    except Exception as exc:
        if CUDA in wanted and provider == "auto" and _loads_on_cpu(ort, path, opts):
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])
            note = f"{CUDA} is built in but could not start ({_first_line(exc)}); ran on CPU"
        elif CUDA in wanted and provider == "cuda" and _loads_on_cpu(ort, path, opts):
            raise ProviderError(
                f"provider cuda was requested but {CUDA} could not start ({_first_line(exc)}); "
                f"use provider auto or cpu"
            ) from None
        else:
            raise ModelError(f"cannot load ONNX model {path}: {_first_line(exc)}") from None
    active = sess.get_providers()
    if CUDA in wanted and (not active or active[0] != CUDA):
        # onnxruntime falls back to CPU silently when the CUDA provider cannot initialise (no GPU, no driver).
        if provider == "cuda":
            raise ProviderError(
                f"provider cuda was requested but {CUDA} did not start (no usable GPU); use provider auto or cpu"
            )
        note = f"{CUDA} is built in but no GPU could be used; ran on CPU"
    return OpenedSession(sess, active[0] if active else CPU, available, note)


def _loads_on_cpu(ort, path: Path, opts) -> bool:
    try:
        ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])
        return True
    except Exception:
        return False


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
        unknown = [n for n in names if n not in _TEXT_INPUTS]
        if unknown:
            raise ModelError(
                f"model {self.path.name} has input {unknown[0]!r}; a text classifier takes only "
                f"{', '.join(_TEXT_INPUTS)}"
            )
        if "input_ids" not in names:
            raise ModelError(f"model {self.path.name} has no 'input_ids' input (inputs: {', '.join(names)})")
        dtypes = {_INT_TYPES.get(i.type) for i in inputs}
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
        try:
            (out,) = self._session.run([self.output_name], args)
        except Exception as exc:
            raise ModelError(
                f"model {self.path.name} failed on a batch of shape {args['input_ids'].shape}: {_first_line(exc)} "
                "(does the tokenizer belong to this model?)"
            ) from None
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
