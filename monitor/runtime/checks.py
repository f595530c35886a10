"""Startup checks: configuration mistakes found before the daemon opens a socket, one sentence each.

``nlpmon check-config`` reports every problem :func:`preflight` finds; ``nlpmon run`` exits 2 with them on one
line before it joins a consumer group, so a wrong path or an incompatible profile is never a traceback in a
rebalance callback or a crash loop. :func:`check_profiles` is the compatibility rule both use (and the Kafka
daemon applies again to the profiles it loads from the store).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from monitor.config import Config, EmbeddingConfig
from monitor.ingest.reference import FeatureSet, Profile, ProfileError
from monitor.ingest.tokenizer import TokenizerError, TokenizerFeaturizer
from monitor.runtime.embedding_worker import build_embedding_worker
from monitor.runtime.wiring import load_featurizer, load_profiles

__all__ = ["preflight", "check_profiles", "feature_set"]


def feature_set(tokenizer: TokenizerFeaturizer | None) -> FeatureSet:
    """The features a pipeline with this tokenizer computes (what a reference profile must match)."""
    return FeatureSet(tokenizer=tokenizer.info.to_dict() if tokenizer else None)


def check_profiles(profiles: Mapping[str, Profile], tokenizer: TokenizerFeaturizer | None, *,
                   embedding: EmbeddingConfig | None = None, encoder: dict | None = None) -> None:
    """Raise :class:`ProfileError` for the first profile built with other features or another tokenizer, or
    (given ``embedding``, the daemon's [embedding]) with other embeddings: ``encoder`` is the configured
    encoder's identity (None: no embedding.model)."""
    features = feature_set(tokenizer)
    for model, profile in profiles.items():
        # No origin: the message names the model already (an origin "model x" only repeated it).
        profile.check_compatible(features, origin="" if model == profile.model else f"as model {model}")
        if embedding is not None:
            profile.check_embedding(encoder, components=embedding.components, whiten=embedding.whiten,
                                    origin="" if model == profile.model else f"as model {model}")


def preflight(config: Config) -> list[str]:
    """Return the configuration problems that would stop the daemon (empty when it can start)."""
    problems: list[str] = []
    s = config.source
    if s.kind == "file" and not Path(s.path).is_file():
        problems.append(f"source.path: {s.path} is not a readable file")
    for key, value in (("validation.dead_letter_path", config.validation.dead_letter_path),
                       ("output.results_path", config.output.results_path)):
        if value and value != "-" and not Path(value).resolve().parent.is_dir():
            problems.append(f"{key}: the directory of {value} does not exist")

    tokenizer = None
    try:
        tokenizer = load_featurizer(config)
    except (TokenizerError, OSError, ValueError) as exc:
        problems.append(_say("tokenizer.path", exc))
    try:
        profiles = load_profiles(config.reference.paths)
    except (ProfileError, OSError, ValueError) as exc:
        problems.append(_say("reference.paths", exc))
    else:
        encoder, encoder_ok = _encoder_identity(config, problems)
        if (tokenizer is not None or not config.tokenizer.path) and encoder_ok:
            try:
                check_profiles(profiles, tokenizer, embedding=config.embedding, encoder=encoder)
            except ProfileError as exc:
                problems.append(_say("reference.paths", exc))

    if config.reeval.enabled and s.kind != "kafka":
        # The scheduler lives in the Kafka sidecar; with a line source it would never run: say so.
        problems.append("reeval.enabled: re-evaluation runs in the Kafka sidecar only (source.kind = \"kafka\"); "
                        "with a file or stdin source run `nlpmon reeval` instead")
    if s.kind == "kafka" or config.reeval.enabled or config.output.store:
        problem = _store_problem(config.store.url)
        if problem:
            problems.append(f"store.url: {problem}")
    if config.reeval.enabled:
        r = config.reeval
        for key, value, want in (("model", r.model, "file"), ("tokenizer", r.tokenizer, "dir"), ("data", r.data, "file")):
            p = Path(value)
            if not (p.is_file() if want == "file" else p.is_dir()):
                problems.append(f"reeval.{key}: {value} is not {'a readable file' if want == 'file' else 'a directory'}")
    return problems


def _encoder_identity(config: Config, problems: list[str]) -> tuple[dict | None, bool]:
    """The [embedding] encoder's identity (None without one), and whether it could be loaded."""
    if not config.embedding.model:
        return None, True
    if not Path(config.embedding.model).is_file():
        problems.append(f"embedding.model: {config.embedding.model} is not a readable file")
        return None, False
    try:
        worker = build_embedding_worker(config)
    except Exception as exc:  # ModelError, TokenizerError, onnxruntime's own: all say what is wrong
        problems.append(_say("embedding.model", exc))
        return None, False
    worker.close()
    return worker.identity, True


def _store_problem(url: str) -> str | None:
    """What is wrong with a store URL that no retry would fix (bad syntax, unknown dialect, missing driver)."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    try:
        parsed = sa.engine.make_url(url)
    except sa_exc.ArgumentError:
        return f"{_redacted(url)} is not a SQLAlchemy URL (e.g. sqlite:///nlpmon.db, postgresql+psycopg://user@host/db)"
    try:
        parsed.get_dialect().import_dbapi()  # what create_engine would import
    except sa_exc.NoSuchModuleError:
        return f"no SQLAlchemy dialect for {parsed.drivername!r} (use sqlite or postgresql+psycopg)"
    except ImportError as exc:
        return f"the driver for {parsed.drivername!r} is not installed ({exc.name or exc})"
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        directory = Path(parsed.database).resolve().parent
        if not directory.is_dir():
            return f"the directory of the SQLite file, {directory}, does not exist"
    return None


def _redacted(url: str) -> str:
    from monitor.config import redact_url

    return redact_url(url)


def _say(key: str, exc: Exception) -> str:
    message = str(exc)
    return message if message.startswith(key) else f"{key}: {message}"
