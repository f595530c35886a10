"""Errors of the jobs that run an ONNX model; each message is one sentence a user can act on.

Re-evaluation (``monitor.reeval.errors``) names the base :class:`ModelJobError` ``ReevalError`` and adds its
``DataError``; the CLI prints any of them and exits with 2.
"""

from __future__ import annotations

__all__ = ["ModelJobError", "ModelError", "ProviderError", "first_line"]


class ModelJobError(Exception):
    """A job that runs an ONNX model cannot run as asked (bad input, not a bug)."""


class ModelError(ModelJobError):
    """The ONNX model or tokenizer is missing, cannot be loaded, or does not look like a text model."""


class ProviderError(ModelJobError):
    """The requested onnxruntime execution provider is not available on this machine."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (at most 300 characters), or its type's name when it has none."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
