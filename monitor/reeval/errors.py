"""Errors of the re-evaluation job; each message is one sentence a user can act on."""

from __future__ import annotations

__all__ = ["ReevalError", "DataError", "ModelError", "ProviderError"]


class ReevalError(Exception):
    """A re-evaluation cannot run as asked (bad input, not a bug); the CLI prints it and exits with 2."""


class DataError(ReevalError):
    """The labelled data set is missing, unreadable, empty, or its labels do not match the label map."""


class ModelError(ReevalError):
    """The ONNX model or tokenizer is missing, cannot be loaded, or does not look like a text classifier."""


class ProviderError(ReevalError):
    """The requested onnxruntime execution provider is not available on this machine."""
