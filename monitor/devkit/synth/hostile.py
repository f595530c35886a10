"""Hostile prediction-log records: what a buggy, hacked or merely unusual producer can put on the topic.

A deterministic stream (for a seed) of raw records, each of one kind: a valid event, arbitrary bytes, a
truncated or byte-flipped event, a field of the wrong type, a huge or non-finite number, deep nesting, odd
Unicode (lone surrogates, control and bidi characters, astral planes), an empty or null-like value. Used by
``bench/fuzz.py`` and the fuzz tests of the file source and the Kafka sidecar.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson

from monitor.devkit.synth.traffic import generate_events

__all__ = ["KINDS", "hostile_records"]

KINDS = ("valid", "bytes", "truncated", "flipped", "type_swap", "huge_number", "deep_nesting", "odd_unicode",
         "empty", "not_an_object")
_ODD = ("\\ud800", "a\\udfffb", "\\u0000", "\\u202e", "\\ufeff", "\\ud83d\\ude00", "\\udbff\\udfff", "\\u00e9\\u0301")
_SWAPS = (None, True, 1, -1.5, "x", [], {}, [1, "a"], {"a": {"b": None}}, 1e308, -0.0)


def hostile_records(n: int, *, seed: int = 0, valid_share: float = 0.3, t0_ms: int = 1_764_000_000_000,
                    models: tuple[str, ...] = ("sentiment", "intent")) -> Iterator[bytes]:
    """Yield ``n`` raw records; about ``valid_share`` of them are valid events of ``models``."""
    rng = np.random.default_rng(seed)
    base = [orjson.loads(orjson.dumps(e)) for e in generate_events(512, seed=seed, start_ms=t0_ms, rate_per_s=50.0)]
    for i in range(n):
        event = dict(base[i % len(base)])
        event["ts"] = t0_ms + i * 20
        event["model"] = models[i % len(models)]
        raw = orjson.dumps(event)
        if rng.random() < valid_share:
            yield raw
            continue
        kind = KINDS[1 + int(rng.integers(len(KINDS) - 1))]
        if kind == "bytes":
            yield rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        elif kind == "truncated":
            yield raw[: int(rng.integers(0, len(raw)))]
        elif kind == "flipped":
            b = bytearray(raw)
            for j in rng.integers(0, len(b), int(rng.integers(1, 4))):
                b[j] = int(rng.integers(0, 256))
            yield bytes(b)
        elif kind == "type_swap":
            field = sorted(event)[int(rng.integers(len(event)))]
            event[field] = _SWAPS[int(rng.integers(len(_SWAPS)))]
            yield orjson.dumps(event)
        elif kind == "huge_number":
            field = ("ts", "latency_ms", "confidence", "outcome")[int(rng.integers(4))]
            number = ("1e999", "-1e999", "NaN", "Infinity", "1" + "0" * 400, "18446744073709551616")[int(rng.integers(6))]
            yield raw[:-1] + b', "' + field.encode() + b'": ' + number.encode() + b"}"
        elif kind == "deep_nesting":
            depth = int(rng.integers(100, 50_000))
            yield raw[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
        elif kind == "odd_unicode":
            odd = "".join(_ODD[int(k)] for k in rng.integers(0, len(_ODD), 3))
            field = ("text", "model", "prediction", "label", "request_id")[int(rng.integers(5))]
            text = raw.decode()
            yield text.replace(f'"{field}":"', f'"{field}":"{odd}', 1).encode()
        elif kind == "empty":
            yield (b"", b" ", b"\n", b"null", b"{}", b"\x00")[int(rng.integers(6))]
        else:
            yield (b"[]", b"1", b'"s"', b"true", b"[{}]")[int(rng.integers(5))]
