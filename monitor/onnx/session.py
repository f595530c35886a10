"""An onnxruntime session for any text model: the execution provider asked for, and the one that runs it.

Re-evaluation's classifier (``monitor.reeval.session``) and the embedding encoder (``monitor.onnx.encoder``)
open their models here, so a fallback from CUDA to CPU reads the same for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.config.reeval import PROVIDERS  # the choices of the provider setting, defined with it
from monitor.onnx.errors import ModelError, ProviderError, first_line

__all__ = ["OpenedSession", "open_session", "run_output", "select_providers", "PROVIDERS", "CPU", "CUDA", "TEXT_INPUTS", "INT_TYPES"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a text model may take
INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}  # its inputs' ONNX types, as numpy dtypes


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
            note = f"{CUDA} is built in but could not start ({first_line(exc)}); ran on CPU"
        elif CUDA in wanted and provider == "cuda" and _loads_on_cpu(ort, path, opts):
            raise ProviderError(
                f"provider cuda was requested but {CUDA} could not start ({first_line(exc)}); "
                f"use provider auto or cpu"
            ) from None
        else:
            raise ModelError(f"cannot load ONNX model {path}: {first_line(exc)}") from None
    active = sess.get_providers()
    if CUDA in wanted and (not active or active[0] != CUDA):
        # onnxruntime falls back to CPU silently when the CUDA provider cannot initialise (no GPU, no driver).
        if provider == "cuda":
            raise ProviderError(
                f"provider cuda was requested but {CUDA} did not start (no usable GPU); use provider auto or cpu"
            )
        note = f"{CUDA} is built in but no GPU could be used; ran on CPU"
    return OpenedSession(sess, active[0] if active else CPU, available, note)


def run_output(session, output: str, args: dict[str, np.ndarray], *, who: str, hint: str = "") -> np.ndarray:
    """Run one batch for the model's one ``output``; a failure is one ModelError naming ``who`` and the batch."""
    try:
        (out,) = session.run([output], args)
    except Exception as exc:
        raise ModelError(f"{who} failed on a batch of shape {args['input_ids'].shape}: {first_line(exc)}{hint}") from None
    return out


def _loads_on_cpu(ort, path: Path, opts) -> bool:
    try:
        ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])
        return True
    except Exception:
        return False
