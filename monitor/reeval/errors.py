"""Errors of the re-evaluation job; each message is one sentence a user can act on.

The model and provider errors are those of every ONNX job (``monitor.onnx.errors``); re-evaluation adds
``DataError`` for its labelled data.
"""

from __future__ import annotations

from monitor.onnx.errors import ModelError, ModelJobError, ProviderError

__all__ = ["ReevalError", "DataError", "ModelError", "ProviderError"]

# A re-evaluation cannot run as asked (bad input, not a bug); the CLI prints it and exits with 2. The name
# the CLI, the worker and the scheduler catch; the class is shared with the embedding encoder.
ReevalError = ModelJobError


class DataError(ReevalError):
    """The labelled data set is missing, unreadable, empty, or its labels do not match the label map."""
