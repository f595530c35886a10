"""The one frozen, validated configuration object, and the loader that builds it.

Precedence, lowest to highest: built-in defaults, the TOML file, ``NLPMON_<SECTION>_<KEY>`` environment
variables, command-line flags. The loader refuses unknown keys and bad values with the key's dotted name.
:class:`Config` itself never reads the environment or opens anything (uvicorn's Config/Server split): the
daemon makes connections when it starts. Every key is documented in docs/config.md;
``tests/monitor/test_config.py`` checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config.sections import (  # noqa: F401 (re-exported: the sections are part of the API)
    ConfigError,
    SourceConfig,
    WindowConfig,
    DetectConfig,
    TokenizerConfig,
    EmbeddingConfig,
    ValidationConfig,
    MetricsConfig,
    ReferenceConfig,
    KafkaConfig,
    StoreConfig,
    CheckpointConfig,
    DaemonConfig,
    ProbeConfig,
    OutputConfig,
    LoggingConfig,
    ReevalConfig,
    ShadowConfig,
    GuardrailConfig,
    ExperimentConfig,
    ExplainConfig,
    Config,
    EXPERIMENT_METRICS,
    GUARDRAIL_METRICS,
)

__all__ = ["Config", "ConfigError", "load_config", "SECTIONS", "ARRAY_SECTIONS", "ExperimentConfig", "GuardrailConfig",
           "ShadowConfig", "ExplainConfig", "EXPERIMENT_METRICS", "GUARDRAIL_METRICS", "config_as_dict", "redact_url", "secret_keys"]


# Array-of-tables sections ([[experiments]]): only in the file, never from the environment or flags.
ARRAY_SECTIONS: dict[str, type] = {"experiments": ExperimentConfig}
SECTIONS: dict[str, type] = {f.name: type(f.default) for f in dataclasses.fields(Config) if f.name not in ARRAY_SECTIONS}


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
    elif kind is tuple and f.metadata.get("kind") == "buckets":
        value = _buckets(dotted, value)
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


def _buckets(dotted: str, value: Any) -> tuple[float, ...]:
    """Histogram bucket bounds: a non-empty list of positive, finite numbers in increasing order."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):  # from the environment
        try:
            value = [float(v) for v in value]
        except ValueError:
            raise ConfigError(f"{dotted}: expected a list of numbers, got {value!r}") from None
    if (not isinstance(value, (list, tuple)) or not value
            or not all(type(v) in (int, float) for v in value)):
        raise ConfigError(f"{dotted}: expected a non-empty list of numbers, got {value!r}")
    bounds = tuple(float(v) for v in value)
    if not all(0 < b < float("inf") for b in bounds):
        raise ConfigError(f"{dotted}: bucket bounds must be positive and finite, got {list(bounds)}")
    if any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ConfigError(f"{dotted}: bucket bounds must be in increasing order without repeats, got {list(bounds)}")
    return bounds


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


def _apply(values: dict[str, dict[str, Any]], dotted: str, value: Any, *, from_text: bool, origin: str) -> None:
    section, _, key = dotted.partition(".")
    if section not in SECTIONS:
        raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    if key not in fields:
        raise ConfigError(
            f"{origin}: unknown key {dotted!r} (keys of [{section}]: {', '.join(fields)})"
        )
    values.setdefault(section, {})[key] = _coerce(dotted, value, fields[key], from_text)


# Kubernetes injects these into every pod of a namespace for each Service (enableServiceLinks, on by
# default): a Service named "nlpmon" or "nlpmon-metrics" gives NLPMON_SERVICE_HOST, NLPMON_PORT=tcp://...,
# NLPMON_METRICS_PORT_9108_TCP_ADDR, ... They are not configuration; every other NLPMON_* still is, so a typo
# fails. NLPMON_METRICS_PORT is both a real key (metrics.port) and a link name: the value tells them apart.
_LINK_NAME = re.compile(r"NLPMON(?:_[A-Z0-9_]+?)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)")
_LINK_PORT = re.compile(r"NLPMON(?:_[A-Z0-9_]+)?_PORT")
_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://\S+")


def is_service_link(name: str, value: str) -> bool:
    """Whether an ``NLPMON_*`` variable is one Kubernetes injects for a Service (not configuration)."""
    if _LINK_NAME.fullmatch(name):
        return True
    return bool(_LINK_PORT.fullmatch(name) and _LINK_VALUE.fullmatch(value.strip()))


def service_links(env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the ``NLPMON_*`` variables :func:`load_config` ignores as Kubernetes service links."""
    env = os.environ if env is None else env
    return sorted(n for n, v in env.items() if n.startswith("NLPMON_") and is_service_link(n, v))


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
    arrays: dict[str, tuple] = {}
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
            if section in ARRAY_SECTIONS:
                arrays[section] = _array_section(section, table, str(p))
                continue
            if not isinstance(table, dict):
                raise ConfigError(f"{p}: top-level key {section!r} must be a [section]")
            for key, value in table.items():
                if _field_meta(f"{section}.{key}").get("secret"):
                    env_name = f"NLPMON_{section.upper()}_{key.upper()}"
                    raise ConfigError(f"{p}: {section}.{key} is a secret; set it through the environment ({env_name}), not the file")
                _apply(values, f"{section}.{key}", value, from_text=False, origin=str(p))

    env = os.environ if env is None else env
    for name, text in sorted(env.items()):
        if not name.startswith("NLPMON_") or is_service_link(name, text):
            continue
        rest = name[len("NLPMON_"):].lower()
        section, _, key = rest.partition("_")
        try:
            _apply(values, f"{section}.{key}", text, from_text=True, origin=f"environment variable {name}")
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if name in message else f"environment variable {name}: {message}") from None

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _apply(values, dotted, value, from_text=isinstance(value, str) and _field_kind(dotted) is not str,
               origin="flag")

    sections = {name: SECTIONS[name](**values.get(name, {})) for name in SECTIONS}
    config = Config(**sections, **arrays)
    _check_consistency(config)
    return config


def _array_section(section: str, items: Any, origin: str) -> tuple:
    """Build the entries of an array of tables (``[[experiments]]``); keys are named ``section[i].key``."""
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ConfigError(f"{origin}: {section} must be an array of tables ([[{section}]])")
    return tuple(_table(ARRAY_SECTIONS[section], f"{section}[{i}]", t, origin) for i, t in enumerate(items))


def _table(cls: type, prefix: str, table: dict, origin: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}"
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"{origin}: unknown key {dotted!r} (keys of {prefix}: {', '.join(fields)})")
        kind = f.metadata.get("kind")
        if kind == "shares":
            values[key] = _shares(dotted, value)
        elif kind == "guardrails":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(f"{dotted}: expected an array of tables ([[experiments.guardrails]])")
            values[key] = tuple(_table(GuardrailConfig, f"{dotted}[{i}]", t, origin) for i, t in enumerate(value))
        else:
            values[key] = _coerce(dotted, value, f, False)
    return cls(**values)


def _shares(dotted: str, value: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict) or len(value) < 2:
        raise ConfigError(f"{dotted}: expected a table of at least two variants and their shares, "
                          f"e.g. {{control = 50, treatment = 50}}, got {value!r}")
    out = []
    for name, share in value.items():
        if type(share) not in (int, float) or not 0 < share < float("inf"):
            raise ConfigError(f"{dotted}.{name}: the share must be a number greater than 0, got {share!r}")
        out.append((name, float(share)))
    return tuple(out)


def _field_meta(dotted: str) -> Mapping:
    section, _, key = dotted.partition(".")
    cls = SECTIONS.get(section)
    for f in dataclasses.fields(cls) if cls else ():
        if f.name == key:
            return f.metadata
    return {}


def _field_kind(dotted: str) -> type | None:
    section, _, key = dotted.partition(".")
    for f in dataclasses.fields(SECTIONS.get(section, SourceConfig)):
        if f.name == key:
            return type(f.default)
    return None


def _check_consistency(config: Config) -> None:
    if config.source.kind == "file" and not config.source.path:
        raise ConfigError("source.path: required when source.kind is 'file'")
    if config.source.kind == "kafka":
        if not config.kafka.bootstrap_servers:
            raise ConfigError("kafka.bootstrap_servers: at least one broker is required when source.kind is 'kafka'")
        if not config.kafka.topics:
            raise ConfigError("kafka.topics: at least one topic is required when source.kind is 'kafka'")
        if config.kafka.security_protocol.startswith("SASL") and not config.kafka.sasl_mechanism:
            raise ConfigError("kafka.sasl_mechanism: required with security_protocol SASL_*")
        if config.kafka.dead_letter_topic and config.kafka.dead_letter_topic in config.kafka.topics:
            raise ConfigError("kafka.dead_letter_topic: must not be one of kafka.topics (rejected records would loop)")
    if config.reeval.enabled:
        for key in ("model", "tokenizer", "data"):
            if not getattr(config.reeval, key):
                raise ConfigError(f"reeval.{key}: required when reeval.enabled is true")
    if config.embedding.model and not config.tokenizer.path:
        raise ConfigError("embedding.model: requires tokenizer.path (the encoder's inputs are built with the "
                          "[tokenizer] tokenizer)")
    if config.reeval.max_length == 1:
        raise ConfigError("reeval.max_length: must be 0 (the tokenizer's limit) or at least 2, got 1")
    _check_experiments(config)
    if config.labels.enabled and config.window.kind == "count":
        raise ConfigError("labels.enabled: needs window.kind = 'time' (a label period has time bounds; count "
                          "windows have none, docs/results.md *Labels results*)")
    if config.window.kind == "count" and config.window.min_events > config.window.events:
        raise ConfigError(
            f"window.min_events ({config.window.min_events}) is larger than window.events "
            f"({config.window.events}): no count window would ever be tested"
        )


def _check_experiments(config: Config) -> None:
    names = set()
    for i, e in enumerate(config.experiments):
        where = f"experiments[{i}]"
        for key in ("name", "model"):
            if not getattr(e, key):
                raise ConfigError(f"{where}.{key}: required")
        # The name becomes a Prometheus label value and a CLI argument: keep it plain.
        if not all(c.isalnum() or c in "-_." for c in e.name):
            raise ConfigError(f"{where}.name: only letters, digits, '-', '_' and '.', got {e.name!r}")
        if e.name in names:
            raise ConfigError(f"{where}.name: experiment {e.name!r} is defined twice")
        names.add(e.name)
        if not e.variants:
            raise ConfigError(f"{where}.variants: required (e.g. variants = {{control = 50, treatment = 50}})")
        variant_names = [v for v, _ in e.variants]
        if e.control and e.control not in variant_names:
            raise ConfigError(f"{where}.control: {e.control!r} is not one of the variants ({', '.join(variant_names)})")
        if e.variant_field == "variant" and config.shadow.enabled and config.shadow.marker in variant_names:
            raise ConfigError(f"{where}.variants: {config.shadow.marker!r} is shadow.marker, the variant of shadow events")
        if e.metric in ("accuracy", "misclassification_rate", "error_rate") and e.mde >= 1:
            raise ConfigError(f"{where}.mde: a difference of proportions must be below 1, got {e.mde!r}")


def config_as_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Return the effective configuration as plain data (for ``check-config`` and the status page)."""
    out = {}
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if f.name in ARRAY_SECTIONS:
            out[f.name] = [_plain(dataclasses.asdict(entry)) for entry in section]
            continue
        values = {}
        for sf in dataclasses.fields(section):
            v = getattr(section, sf.name)
            if sf.metadata.get("secret") and v:
                v = "***"
            elif sf.metadata.get("secret_url") and v:
                v = redact_url(v)
            values[sf.name] = list(v) if isinstance(v, tuple) else v
        out[f.name] = values
    return out


def secret_keys() -> list[tuple[str, str]]:
    """The ``(section, key)`` of every secret: read from the environment only, never from the file."""
    return [(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls) if f.metadata.get("secret")]


def _plain(value: Any) -> Any:
    """Tuples (of variants, guardrails) as JSON-able lists and tables."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: v for k, v in value}
        return [_plain(v) for v in value]
    return value


def redact_url(url: str) -> str:
    """Mask the password of a URL like ``postgresql://user:secret@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"
