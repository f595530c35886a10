"""The one frozen, validated configuration object, and the loader that builds it.

Precedence, lowest to highest: built-in defaults, the TOML file, ``NLPMON_<SECTION>_<KEY>`` environment
variables, command-line flags. The loader refuses unknown keys and bad values with the key's dotted name.
:class:`Config` itself never reads the environment or opens anything (uvicorn's Config/Server split): the
daemon makes connections when it starts. Every key is documented in docs/config.md;
``tests/test_config.py`` checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigError", "load_config", "SECTIONS", "config_as_dict"]


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key."""


def _key(min: float | None = None, max: float | None = None, choices: tuple | None = None, doc: str = ""):
    return {"min": min, "max": max, "choices": choices, "doc": doc}


@dataclass(frozen=True)
class SourceConfig:
    kind: str = field(default="file", metadata=_key(choices=("file", "stdin", "kafka")))
    path: str = ""
    follow: bool = False
    batch_size: int = field(default=1000, metadata=_key(min=1, max=100_000))
    poll_interval_seconds: float = field(default=0.5, metadata=_key(min=0.01, max=60))


@dataclass(frozen=True)
class WindowConfig:
    kind: str = field(default="time", metadata=_key(choices=("time", "count")))
    size_seconds: float = field(default=300.0, metadata=_key(min=0.001))
    events: int = field(default=1000, metadata=_key(min=1))
    lateness_seconds: float = field(default=30.0, metadata=_key(min=0))
    min_events: int = field(default=200, metadata=_key(min=1))
    reservoir_size: int = field(default=10_000, metadata=_key(min=10, max=10_000_000))
    seed: int = field(default=0, metadata=_key(min=0))
    max_future_seconds: float = field(default=300.0, metadata=_key(min=0))


@dataclass(frozen=True)
class DetectConfig:
    alpha: float = field(default=0.01, metadata=_key(min=1e-12, max=0.5))
    min_effect: float = field(default=0.1, metadata=_key(min=0, max=1))
    correction: str = field(default="bh", metadata=_key(choices=("bh", "bonferroni")))
    low_confidence_threshold: float = field(default=0.5, metadata=_key(min=0, max=1))
    min_psi: float = field(default=0.1, metadata=_key(min=0))


@dataclass(frozen=True)
class TokenizerConfig:
    path: str = ""
    max_length: int = field(default=512, metadata=_key(min=1))
    batch_size: int = field(default=256, metadata=_key(min=1))


@dataclass(frozen=True)
class ValidationConfig:
    max_text_chars: int = field(default=10_000, metadata=_key(min=1))
    dead_letter_path: str = ""


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "0.0.0.0"
    port: int = field(default=9108, metadata=_key(min=0, max=65535))
    enabled: bool = True
    max_streams: int = field(default=20, metadata=_key(min=1))
    max_classes: int = field(default=50, metadata=_key(min=1))


@dataclass(frozen=True)
class ReferenceConfig:
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputConfig:
    results_path: str = ""


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(default="info", metadata=_key(choices=("debug", "info", "warning", "error")))
    format: str = field(default="text", metadata=_key(choices=("text", "json")))


@dataclass(frozen=True)
class Config:
    source: SourceConfig = SourceConfig()
    window: WindowConfig = WindowConfig()
    detect: DetectConfig = DetectConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    validation: ValidationConfig = ValidationConfig()
    metrics: MetricsConfig = MetricsConfig()
    reference: ReferenceConfig = ReferenceConfig()
    output: OutputConfig = OutputConfig()
    logging: LoggingConfig = LoggingConfig()

    def replace(self, **sections: Any) -> "Config":
        return dataclasses.replace(self, **sections)


SECTIONS: dict[str, type] = {f.name: type(f.default) for f in dataclasses.fields(Config)}


def _coerce(dotted: str, value: Any, f: dataclasses.Field, from_text: bool) -> Any:
    """Check (TOML/flags) or parse (environment strings) one value against its field's type and limits."""
    default = f.default
    kind = type(default)
    if from_text:
        value = _parse_text(dotted, value, kind)
    if kind is bool:
        if type(value) is not bool:
            raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
    elif kind is int:
        if type(value) is not int:
            raise ConfigError(f"{dotted}: expected an integer, got {value!r}")
    elif kind is float:
        if type(value) not in (int, float):
            raise ConfigError(f"{dotted}: expected a number, got {value!r}")
        value = float(value)
    elif kind is str:
        if type(value) is not str:
            raise ConfigError(f"{dotted}: expected a string, got {value!r}")
    elif kind is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{dotted}: expected a list of strings, got {value!r}")
        value = tuple(value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{dotted}: must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{dotted}: must be >= {meta['min']}, got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{dotted}: must be <= {meta['max']}, got {value!r}")
    return value


def _parse_text(dotted: str, text: str, kind: type) -> Any:
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{dotted}: expected true or false, got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{dotted}: expected an integer, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{dotted}: expected a number, got {text!r}") from None
    if kind is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _apply(values: dict[str, dict[str, Any]], dotted: str, value: Any, from_text: bool, origin: str) -> None:
    section, _, key = dotted.partition(".")
    if section not in SECTIONS:
        raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    if key not in fields:
        raise ConfigError(
            f"{origin}: unknown key {dotted!r} (keys of [{section}]: {', '.join(fields)})"
        )
    values.setdefault(section, {})[key] = _coerce(dotted, value, fields[key], from_text)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the :class:`Config` from a TOML file, ``NLPMON_*`` variables and flag overrides (``"section.key"``).

    ``env`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
    """
    values: dict[str, dict[str, Any]] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{p}: top-level key {section!r} must be a [section]")
            for key, value in table.items():
                _apply(values, f"{section}.{key}", value, False, str(p))

    env = os.environ if env is None else env
    for name, text in sorted(env.items()):
        if not name.startswith("NLPMON_"):
            continue
        rest = name[len("NLPMON_"):].lower()
        section, _, key = rest.partition("_")
        _apply(values, f"{section}.{key}", text, True, f"environment variable {name}")

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _apply(values, dotted, value, isinstance(value, str) and _field_kind(dotted) is not str, "flag")

    sections = {name: SECTIONS[name](**values.get(name, {})) for name in SECTIONS}
    config = Config(**sections)
    _check_consistency(config)
    return config


def _field_kind(dotted: str) -> type | None:
    section, _, key = dotted.partition(".")
    for f in dataclasses.fields(SECTIONS.get(section, SourceConfig)):
        if f.name == key:
            return type(f.default)
    return None


def _check_consistency(config: Config) -> None:
    if config.source.kind == "file" and not config.source.path:
        raise ConfigError("source.path: required when source.kind is 'file'")
    if config.window.kind == "count" and config.window.min_events > config.window.events:
        raise ConfigError(
            f"window.min_events ({config.window.min_events}) is larger than window.events "
            f"({config.window.events}): no count window would ever be tested"
        )


def config_as_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Return the effective configuration as plain data (for ``check-config`` and the status page)."""
    out = {}
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(section).items()}
    return out
