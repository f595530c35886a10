"""Write the effective configuration back as TOML, the format a user edits (``nlpmon check-config``).

The stdlib reads TOML (``tomllib``) but does not write it; the config holds only strings, integers, floats,
booleans, lists of those, small tables (``variants``) and lists of tables (``[[experiments]]`` and their
guardrails), so a small emitter covers it. ``tomllib.loads(dumps(data)) == data`` for every such ``data``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: Mapping[str, Any], *, commented: Mapping[tuple[str, str], str] | None = None) -> str:
    """TOML for ``{section: {key: value}}``; a section that is a list of tables becomes ``[[section]]`` blocks.

    A ``(section, key)`` in ``commented`` is written as a comment line (``# key: <its text>``), not as a value:
    a secret, which the file must not hold.
    """
    blocks = []
    for section, body in data.items():
        if isinstance(body, Mapping):
            notes = {k: text for (s, k), text in (commented or {}).items() if s == section}
            blocks.append(_table(f"[{_key(section)}]", body, notes))
        else:
            blocks.extend(_table(f"[[{_key(section)}]]", entry) for entry in body)
    return "\n".join(blocks)


def _table(header: str, body: Mapping[str, Any], notes: Mapping[str, str] | None = None) -> str:
    lines = [header]
    for key, value in body.items():
        if notes and key in notes:
            lines.append(f"# {_key(key)}: {notes[key]}")
        elif value is None:  # TOML has no null: the key is unset, so say so without setting it
            lines.append(f"# {_key(key)} is unset")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-trip form: "0.005", "1e-06", "120.0"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _string(text: str) -> str:
    # JSON's escapes (\" \\ \n \t \b \f \r \u00XX) are TOML's basic-string escapes; DEL must be escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
