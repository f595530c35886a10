"""From raw bytes to feature rows: event decoding and validation, text and tokenizer features, reference profiles.

Pure transformation plus file reads of profiles and tokenizers; no sockets, no clocks.
"""

__all__ = ["batch", "events", "features", "oov", "reference", "tokenizer"]
