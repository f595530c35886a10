"""Running an ONNX text model: the session and its provider, tokenizing texts into batches, the embedding encoder.

Shared by re-evaluation (``monitor.reeval``: the served classifier) and embedding drift (``OnnxEncoder``, run
by the daemon's embedding worker and by ``nlpmon reference build``).
"""

__all__ = ["encode", "encoder", "errors", "session"]
