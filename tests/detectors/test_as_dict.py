"""detectors.base.as_dict: declaration order, JSON-safe values, json_field metadata."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from detectors.base import as_dict, json_field


@dataclass(frozen=True, slots=True)
class Inner:
    name: str = json_field(skip=True)
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class Outer:
    z_first: int
    a_second: float
    when_ms: int | None = json_field(name="when", encode=lambda ms: f"{ms // 1000}s")
    items: tuple[Inner, ...] = json_field(key_by="name", default=())
    nested: Inner | None = json_field(flatten=True, default=None)
    seq: int | None = json_field(omit_none=True, default=None)
    extra: dict | None = None


def test_keys_follow_declaration_order_not_alphabet():
    assert list(as_dict(Outer(1, 2.0, 3000))) == ["z_first", "a_second", "when", "items", "extra"]


def test_nan_and_inf_become_none_and_numpy_scalars_python_ones():
    d = as_dict(Outer(np.int64(3), math.nan, None, extra={"x": np.float32(0.5), "y": math.inf, "b": np.bool_(True)}))
    assert d == {"z_first": 3, "a_second": None, "when": None, "items": {}, "extra": {"x": 0.5, "y": None, "b": True}}
    assert type(d["z_first"]) is int and type(d["extra"]["b"]) is bool
    json.dumps(d, allow_nan=False)


def test_annotation_coerces_an_int_in_a_float_field():
    d = as_dict(Outer(1, 2, None))
    assert d["a_second"] == 2.0 and type(d["a_second"]) is float


def test_encoder_rename_key_by_flatten_and_omit():
    d = as_dict(Outer(1, 0.5, 7000, items=(Inner("p", 1.0), Inner("q", math.nan)), nested=Inner("n", 0.25), seq=4))
    assert d["when"] == "7s"
    assert d["items"] == {"p": {"value": 1.0}, "q": {"value": None}}  # the key attribute is not repeated
    assert d["value"] == 0.25  # flattened into the parent
    assert d["seq"] == 4 and "seq" not in as_dict(Outer(1, 0.5, None))
