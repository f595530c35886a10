"""Reference profiles: what "normal" looked like for a model, built from a file of events.

A profile holds samples of every feature, of confidences and latencies, and the class counts, plus what is
needed to refuse comparing apples with oranges: the feature-set version, the feature names and the
fingerprint of the tokenizer that produced token features.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

from detectors.embedding import PCAProjection
from detectors.text_features import TEXT_FEATURES, TOKENIZER_FEATURES
from detectors.vocabulary import OOV_FEATURE, HashedVocabulary

__all__ = ["Profile", "ProfileError", "FeatureSet", "load_profile", "save_profile", "FEATURES_VERSION", "encode_rows"]

PROFILE_SCHEMA = 1
# Bump when the definition of any text feature changes: old profiles then no longer compare like with like.
FEATURES_VERSION = 1


class ProfileError(ValueError):
    """A profile that cannot be read, or that does not match the configured features/tokenizer."""


@dataclass(frozen=True)
class FeatureSet:
    """The features the pipeline computes: text features, tokenizer features when configured, custom ones."""

    tokenizer: dict | None = None  # TokenizerInfo.to_dict() or None
    custom: tuple[str, ...] = ()

    @property
    def base_names(self) -> tuple[str, ...]:
        return TEXT_FEATURES + (TOKENIZER_FEATURES if self.tokenizer else ())

    @property
    def names(self) -> tuple[str, ...]:
        return self.base_names + self.custom


@dataclass(frozen=True)
class Profile:
    model: str
    versions: tuple[str, ...]
    source: str
    source_sha256: str
    created_at: str
    events: int
    features_version: int
    feature_names: tuple[str, ...]
    custom_features: tuple[str, ...]
    tokenizer: dict | None
    samples: dict[str, np.ndarray] = field(repr=False)
    confidence: np.ndarray = field(repr=False)
    latency_ms: np.ndarray = field(repr=False)
    class_counts: dict[str, int] = field(default_factory=dict)
    sample_cap: int = 50_000
    sampled: bool = False
    # Reference sample of each class's predicted probability (BBSD, detectors.probabilities); empty when the
    # reference events logged none (and in profiles written before BBSD).
    probabilities: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # Embedding drift: {"source": "event" | "encoder", "dim", "projection": PCAProjection.to_dict(), "reference":
    # the projected held-out reference rows (base64 float64, row-major), "seed", "settings": {"components",
    # "whiten"} (as configured), and with source "encoder" "encoder": OnnxEncoder.info() (file name, sha256,
    # output, pooling, dim, max_length)}; None without embeddings.
    embedding: dict | None = field(default=None, repr=False)
    # The segment whose events it was built from (reference build --by-segment); None: the whole model's.
    segment: str | None = None
    # oov_rate (monitor.ingest.oov): the reference vocabulary as HashedVocabulary.to_dict() (keyed hashes, no
    # word); None in profiles built before it or from events without text (then no oov_rate feature).
    vocabulary: dict | None = field(default=None, repr=False)
    # Shifted tokens (docs/evidence.md): {"source": "tokenizer" | "words", "min_events": the privacy floor,
    # "events": reference events with text, "counts": {token: events holding it}}, only tokens held by at least
    # min_events events, at most MAX_PROFILE_TOKENS of them; None in profiles built before it (no token shifts).
    tokens: dict | None = field(default=None, repr=False)

    @cached_property
    def oov_vocabulary(self) -> HashedVocabulary | None:
        """The hashed reference vocabulary (read once), or None."""
        return HashedVocabulary.from_dict(self.vocabulary) if self.vocabulary else None

    @property
    def stream_features(self) -> tuple[str, ...]:
        """The features a stream's rows carry after the text/tokenizer ones: custom, then ``oov_rate``."""
        return self.custom_features + ((OOV_FEATURE,) if self.vocabulary else ())

    @cached_property
    def embedding_projection(self) -> PCAProjection | None:
        """The projection fitted on the reference embeddings (read once), or None."""
        return PCAProjection.from_dict(self.embedding["projection"]) if self.embedding else None

    @cached_property
    def embedding_reference(self) -> np.ndarray | None:
        """The projected reference sample ``(n, components)``, or None."""
        if not self.embedding:
            return None
        return _unb64(self.embedding["reference"]).reshape(-1, self.embedding_projection.components)

    @property
    def embedding_source(self) -> str | None:
        """Where the reference embeddings came from: ``"event"`` (the events' field), ``"encoder"`` (the encoder
        nlpmon ran, identified in ``embedding["encoder"]``), or None (no embedding drift)."""
        return self.embedding.get("source", "event") if self.embedding else None

    @property
    def event_projection(self) -> PCAProjection | None:
        """The projection the events' own ``embedding`` field is projected with on arrival (precomputed path)."""
        return self.embedding_projection if self.embedding_source == "event" else None

    def check_embedding(self, encoder: dict | None, *, components: int, whiten: bool, origin: str = "") -> None:
        """Raise :class:`ProfileError` unless this profile's embeddings and projection are what the daemon uses.

        ``encoder`` is the configured encoder's identity (``OnnxEncoder.info()``; None: no ``[embedding]
        model``), ``components``/``whiten`` the daemon's ``[embedding]`` projection settings. A profile built
        from precomputed embeddings needs no encoder configured, one built with the encoder needs the same
        encoder (model file, output, pooling, dimension, max_length); a profile without embeddings is accepted
        either way (no embedding drift for its model).
        """
        if not self.embedding:
            return
        where = f" ({origin})" if origin else ""
        rebuild = ("rebuild it with `nlpmon reference build --config` using the daemon's config, so that "
                   "[tokenizer] and [embedding] are the same")
        head = f"reference profile for model {self.model!r}{where}"
        theirs = self.embedding.get("encoder") if self.embedding_source == "encoder" else None
        if self.embedding_source == "encoder" and encoder is None:
            raise ProfileError(f"{head} was built with the encoder {theirs.get('model', '?')!r} (embedding.model), "
                               f"but no embedding.model is configured; configure the same [embedding] model and "
                               f"output, or {rebuild}")
        if self.embedding_source == "event" and encoder is not None:
            raise ProfileError(f"{head} was built from the events' precomputed `embedding` field, but "
                               f"embedding.model is configured (the daemon would embed the texts itself); remove "
                               f"embedding.model, or {rebuild}")
        if theirs is not None:
            for key in ("model_sha256", "output", "pooling", "dim", "max_length"):
                if theirs.get(key) != encoder.get(key):
                    raise ProfileError(f"{head} was built with another encoder: its {key} is {theirs.get(key)!r}, "
                                       f"the configured encoder's is {encoder.get(key)!r}; {rebuild}")
        # Profiles written before these settings were stored used the defaults then fixed: 16, not whitened.
        settings = self.embedding.get("settings") or {"components": 16, "whiten": False}
        if (settings["components"], settings["whiten"]) != (components, whiten):
            raise ProfileError(f"{head} was built with projection components = {settings['components']}, whiten = "
                               f"{str(settings['whiten']).lower()}, the daemon's [embedding] has components = "
                               f"{components}, whiten = {str(whiten).lower()}; {rebuild}")

    @property
    def embedding_components(self) -> int:
        """Projected components a window keeps per sampled event (0: no embedding drift)."""
        return self.embedding_projection.components if self.embedding else 0

    @property
    def probability_classes(self) -> tuple[str, ...]:
        """The classes whose probabilities the windows keep and test, in the profile's (sorted) order."""
        return tuple(self.probabilities)

    def check_compatible(self, features: FeatureSet, *, origin: str = "") -> None:
        """Raise :class:`ProfileError` unless this profile was built with the same features and tokenizer."""
        where = f" ({origin})" if origin else ""
        rebuild = "rebuild it with `nlpmon reference build` using the same [tokenizer] settings as the daemon"
        if self.features_version != FEATURES_VERSION:
            raise ProfileError(
                f"reference profile for model {self.model!r}{where} uses text-feature definitions version "
                f"{self.features_version}, this nlpmon computes version {FEATURES_VERSION}; {rebuild}"
            )
        mine, theirs = features.tokenizer, self.tokenizer
        if theirs and mine is None:
            # Say which flag or key: the commonest first-hour mistake (a profile built with --tokenizer, then a
            # replay without it). The tokenizer is never loaded from the profile's recorded path behind the
            # user's back: the daemon must measure the tokenizer it is told is served (docs/config.md).
            raise ProfileError(
                f"reference profile for model {self.model!r}{where} was built with the tokenizer in "
                f"{theirs['path']!r} (token features, max_length {theirs['max_length']}), but no tokenizer is "
                f"configured; pass --tokenizer {theirs['path']} (replay, run, check-config) or set [tokenizer] "
                f"path = {_toml_string(theirs['path'])} in the config, or rebuild the profile without --tokenizer")
        if mine and theirs is None:
            raise ProfileError(
                f"reference profile for model {self.model!r}{where} was built without a tokenizer, but tokenizer "
                f"{mine['path']!r} is configured; rebuild it with `nlpmon reference build --tokenizer "
                f"{mine['path']}` (or --config with the daemon's config), or remove tokenizer.path / --tokenizer")
        if mine and theirs:
            if mine["fingerprint"] != theirs["fingerprint"]:
                raise ProfileError(
                    f"reference profile for model {self.model!r}{where} was built with a different tokenizer "
                    f"(fingerprint {theirs['fingerprint']}, from {theirs['path']!r}) than the configured one "
                    f"(fingerprint {mine['fingerprint']}, from {mine['path']!r}); {rebuild}"
                )
            if mine["max_length"] != theirs["max_length"]:
                raise ProfileError(
                    f"reference profile for model {self.model!r}{where} was built with tokenizer max_length "
                    f"{theirs['max_length']}, the configured max_length is {mine['max_length']}; set [tokenizer] "
                    f"max_length = {theirs['max_length']} (--set tokenizer.max_length={theirs['max_length']}), or "
                    f"rebuild the profile with `nlpmon reference build --max-length {mine['max_length']}` "
                    "(or --config with the daemon's config)"
                )
        expected = features.base_names
        if tuple(self.feature_names[: len(expected)]) != expected:
            raise ProfileError(
                f"reference profile for model {self.model!r}{where} has features {list(self.feature_names)}, "
                f"expected {list(expected)} first; {rebuild}"
            )

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "profile_schema": PROFILE_SCHEMA,
            "model": self.model,
            "versions": list(self.versions),
            "source": self.source,
            "source_sha256": self.source_sha256,
            "created_at": self.created_at,
            "events": self.events,
            "features_version": self.features_version,
            "feature_names": list(self.feature_names),
            "custom_features": list(self.custom_features),
            "tokenizer": self.tokenizer,
            "sample_cap": self.sample_cap,
            "sampled": self.sampled,
            "class_counts": dict(self.class_counts),
            # float64 arrays as base64: exact round trip, a third of the size of decimal text.
            "samples": {k: _b64(v) for k, v in self.samples.items()},
            "confidence": _b64(self.confidence),
            "latency_ms": _b64(self.latency_ms),
            "probabilities": {k: _b64(v) for k, v in self.probabilities.items()},
            "embedding": self.embedding,
            **({"segment": self.segment} if self.segment is not None else {}),
            "vocabulary": self.vocabulary,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, d: dict, *, origin: str = "profile") -> "Profile":
        try:
            if d.get("profile_schema") != PROFILE_SCHEMA:
                raise ProfileError(f"{origin}: unsupported profile_schema {d.get('profile_schema')!r} (expected {PROFILE_SCHEMA})")
            return cls(
                model=d["model"],
                versions=tuple(d["versions"]),
                source=d["source"],
                source_sha256=d["source_sha256"],
                created_at=d["created_at"],
                events=int(d["events"]),
                features_version=int(d["features_version"]),
                feature_names=tuple(d["feature_names"]),
                custom_features=tuple(d["custom_features"]),
                tokenizer=d["tokenizer"],
                samples={k: _unb64(v) for k, v in d["samples"].items()},
                confidence=_unb64(d["confidence"]),
                latency_ms=_unb64(d["latency_ms"]),
                class_counts={str(k): int(v) for k, v in d["class_counts"].items()},
                sample_cap=int(d["sample_cap"]),
                sampled=bool(d["sampled"]),
                probabilities={str(k): _unb64(v) for k, v in d.get("probabilities", {}).items()},
                embedding=d.get("embedding"),
                segment=d.get("segment"),
                vocabulary=d.get("vocabulary"),
                tokens=_tokens(d.get("tokens")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"{origin}: not a valid nlpmon reference profile ({type(exc).__name__}: {exc})") from None


def _tokens(d: dict | None) -> dict | None:
    """The profile's reference token counts, checked (absent from profiles built before them)."""
    if d is None:
        return None
    if d["source"] not in ("tokenizer", "words"):
        raise ValueError(f"tokens.source {d['source']!r}")
    return {"source": d["source"], "min_events": int(d["min_events"]), "events": int(d["events"]),
            "counts": {str(k): int(v) for k, v in d["counts"].items()}}


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (what a user pastes into the config)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f8").astype(np.float64)


def save_profile(profile: Profile, path: str | Path) -> None:
    Path(path).write_bytes(orjson.dumps(profile.to_dict()))


def load_profile(path: str | Path) -> Profile:
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise ProfileError(f"reference profile not found: {p}") from None
    except OSError as exc:
        raise ProfileError(f"cannot read reference profile {p}: {exc}") from None
    except orjson.JSONDecodeError:
        raise ProfileError(f"{p}: not JSON; expected a profile written by `nlpmon reference build`") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{p}: not a reference profile")
    return Profile.from_dict(data, origin=str(p))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def encode_rows(a: np.ndarray) -> str:
    """A float64 array as the profile stores it (base64, little-endian, row-major)."""
    return _b64(a)
