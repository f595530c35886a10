"""From raw bytes to feature rows: event decoding and validation, text and tokenizer features, reference profiles.

Pure transformation plus file reads of profiles and tokenizers; no sockets, no clocks.
"""

__all__ = ["events", "features", "tokenizer", "reference", "profile_builder"]
