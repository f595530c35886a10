"""The sections of the configuration: one frozen dataclass per TOML table, with each key's default and limits.

Loading, precedence and validation are in :mod:`monitor.config`; docs/config.md documents every key here. ``[reeval]`` is in :mod:`monitor.config.reeval`, next to
the re-evaluation options its keys derive from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from monitor.config.reeval import ReevalConfig  # noqa: F401 (its keys derive from ReevalOptions)


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key."""


def _key(*, min: float | None = None, max: float | None = None, choices: tuple | None = None,
         secret: bool = False, secret_url: bool = False, kind: str | None = None):
    # kind: how a tuple-valued key of [[experiments]] is parsed ("shares", "guardrails"); None: plain value.
    return {"min": min, "max": max, "choices": choices, "secret": secret, "secret_url": secret_url, "kind": kind}


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
    # Close due windows by processing time once the whole source has been idle this long (0: never; not
    # replay-deterministic, docs/results.md).
    idle_close_seconds: float = field(default=0.0, metadata=_key(min=0))
    # Drift per segment (docs/results.md, *Segments*): streams are (model, version, segment); a model's
    # segments beyond max_segments are windowed together as __other__, so label cardinality stays bounded.
    by_segment: bool = False
    max_segments: int = field(default=20, metadata=_key(min=1, max=10_000))


@dataclass(frozen=True)
class DetectConfig:
    alpha: float = field(default=0.01, metadata=_key(min=1e-12, max=0.5))
    min_effect: float = field(default=0.1, metadata=_key(min=0, max=1))
    # 0/1 input features (empty, truncated) are tested as proportions against this ABSOLUTE floor.
    min_proportion_delta: float = field(default=0.02, metadata=_key(min=0, max=1))
    correction: str = field(default="bh", metadata=_key(choices=("bh", "bonferroni")))
    low_confidence_threshold: float = field(default=0.0, metadata=_key(min=0, max=1))
    min_psi: float = field(default=0.1, metadata=_key(min=0))


@dataclass(frozen=True)
class TokenizerConfig:
    path: str = ""
    max_length: int = field(default=0, metadata=_key(min=0))  # 0: the tokenizer's model_max_length
    batch_size: int = field(default=256, metadata=_key(min=1))


@dataclass(frozen=True)
class EmbeddingConfig:
    # Embedding drift on the events' precomputed `embedding` fields (docs/results.md, *Embedding drift*):
    # projected embeddings kept per window, the MMD's permutations and its largest window subsample.
    sample_size: int = field(default=256, metadata=_key(min=2, max=100_000))
    permutations: int = field(default=2000, metadata=_key(min=1, max=100_000))
    max_mmd_n: int = field(default=300, metadata=_key(min=2, max=10_000))
    # The encoder nlpmon runs itself on each window's sample of texts (docs/config.md, [embedding]); empty
    # model: embeddings come from the events' `embedding` field. The projection and its reference sample.
    model: str = ""
    output: str = ""
    provider: str = field(default="auto", metadata=_key(choices=("auto", "cuda", "cpu")))
    batch_size: int = field(default=32, metadata=_key(min=1, max=100_000))
    threads: int = field(default=1, metadata=_key(min=0, max=1024))
    components: int = field(default=16, metadata=_key(min=1, max=1024))
    whiten: bool = False
    reference_size: int = field(default=2000, metadata=_key(min=2, max=100_000))


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
    # A stream without events for this long of its partition's event time leaves memory and /metrics (0: never).
    stream_ttl_seconds: float = field(default=86_400.0, metadata=_key(min=0))
    # Streams kept apart per partition (or file); events of further streams are windowed as __other__.
    max_tracked_streams: int = field(default=10_000, metadata=_key(min=1))
    # Upper bounds (le) of nlp_prediction_latency_seconds; +Inf is added. Increasing, positive.
    latency_buckets_seconds: tuple[float, ...] = field(
        default=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
        metadata=_key(kind="buckets"))


@dataclass(frozen=True)
class ReportConfig:
    # The read-only report pages (docs/report.md) served by the Kafka sidecar beside /metrics, over its store.
    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = field(default=9109, metadata=_key(min=0, max=65535))


@dataclass(frozen=True)
class ReferenceConfig:
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    topics: tuple[str, ...] = ("prediction-logs",)
    group_id: str = "nlpmon"
    client_id: str = "nlpmon"
    start_offset: str = field(default="earliest", metadata=_key(choices=("earliest", "latest")))
    security_protocol: str = field(default="PLAINTEXT", metadata=_key(choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")))
    sasl_mechanism: str = field(default="", metadata=_key(choices=("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")))
    sasl_username: str = ""
    # Secret: only from the environment (NLPMON_KAFKA_SASL_PASSWORD), refused in a file, redacted when shown.
    sasl_password: str = field(default="", metadata=_key(secret=True))
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    max_poll_records: int = field(default=2000, metadata=_key(min=1, max=100_000))
    poll_timeout_ms: int = field(default=500, metadata=_key(min=1, max=60_000))
    session_timeout_ms: int = field(default=30_000, metadata=_key(min=1000))
    # read_committed: records of open or aborted transactions (transactional producers) are not consumed.
    isolation_level: str = field(default="read_uncommitted", metadata=_key(choices=("read_uncommitted", "read_committed")))
    # Backoff cap between fetches of a partition whose batch cannot be read (docs/kafka.md, "Fetch errors").
    fetch_retry_max_seconds: float = field(default=30.0, metadata=_key(min=0.1, max=3600))
    dead_letter_topic: str = ""
    output_topic: str = ""
    # 0: wait for the broker as long as it takes (docs/kafka.md, "Start in any order"); else exit 2 after this.
    startup_timeout_seconds: float = field(default=0.0, metadata=_key(min=0, max=86_400))


@dataclass(frozen=True)
class StoreConfig:
    # Secret-bearing when it holds a password: NLPMON_STORE_URL; shown with the password masked.
    url: str = field(default="sqlite:///nlpmon.db", metadata=_key(secret_url=True))
    # Create and upgrade the schema at start. false: the schema must be current already (`nlpmon db upgrade`
    # run by a user with DDL rights), so the daemon's user needs only SELECT, INSERT, UPDATE, DELETE.
    auto_upgrade: bool = True
    # Days to keep window results, drift events, experiment and shadow results (0: forever); label results
    # and re-evaluation runs have their own limits (0: forever). docs/storage.md, *Retention*.
    retention_days: float = field(default=0.0, metadata=_key(min=0))
    labels_retention_days: float = field(default=0.0, metadata=_key(min=0))
    reeval_retention_days: float = field(default=0.0, metadata=_key(min=0))
    # The daemon deletes at most prune_batch_rows rows per table, at most once every prune_interval_seconds.
    prune_interval_seconds: float = field(default=60.0, metadata=_key(min=1))
    prune_batch_rows: int = field(default=500, metadata=_key(min=1, max=100_000))
    # 0: wait for the database as long as it takes; else exit 2 after this many seconds without it.
    startup_timeout_seconds: float = field(default=0.0, metadata=_key(min=0, max=86_400))


@dataclass(frozen=True)
class CheckpointConfig:
    interval_events: int = field(default=20_000, metadata=_key(min=1))
    interval_seconds: float = field(default=5.0, metadata=_key(min=0.05))
    max_pending_events: int = field(default=200_000, metadata=_key(min=1))
    retry_max_seconds: float = field(default=30.0, metadata=_key(min=0.1))


@dataclass(frozen=True)
class DaemonConfig:
    grace_seconds: float = field(default=30.0, metadata=_key(min=0.1))


@dataclass(frozen=True)
class ProbeConfig:
    # /healthz fails when the daemon's loop made no progress for this long outside a legitimate wait
    # (broker or database outage, backpressure, waiting for input: those are readiness, not liveness).
    stall_seconds: float = field(default=120.0, metadata=_key(min=0.1))


@dataclass(frozen=True)
class OutputConfig:
    results_path: str = ""
    # File and stdin sources: also upsert every window result into [store] (the Kafka sidecar always does).
    # Explicit because store.url has a default: a replay must not create nlpmon.db wherever it runs.
    store: bool = False


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(default="info", metadata=_key(choices=("debug", "info", "warning", "error")))
    format: str = field(default="text", metadata=_key(choices=("text", "json")))


@dataclass(frozen=True)
class ShadowConfig:
    enabled: bool = False
    marker: str = "shadow"
    models: tuple[str, ...] = ()
    ttl_seconds: float = field(default=60.0, metadata=_key(min=0, max=86_400))
    max_pending: int = field(default=10_000, metadata=_key(min=1, max=10_000_000))
    min_agreement: float = field(default=0.9, metadata=_key(min=0, max=1))
    alpha: float = field(default=0.01, metadata=_key(min=1e-12, max=0.5))


@dataclass(frozen=True)
class LabelsConfig:
    enabled: bool = False
    max_delay_seconds: float = field(default=86_400.0, metadata=_key(min=0, max=30 * 86_400))
    max_pending: int = field(default=1_000_000, metadata=_key(min=1, max=100_000_000))
    calibration_bins: int = field(default=10, metadata=_key(min=2, max=100))
    calibration_windows: int = field(default=12, metadata=_key(min=1, max=10_000))
    refresh_calibration: bool = True
    calibration_decay: float = field(default=0.8, metadata=_key(min=0, max=1))
    calibration_prior_weight: float = field(default=100.0, metadata=_key(min=1, max=1e9))
    reliable_min_labels: float = field(default=200.0, metadata=_key(min=0, max=1e9))


# -- [[experiments]]: an array of tables, each with its own [[experiments.guardrails]] -------------------------
EXPERIMENT_METRICS = ("accuracy", "misclassification_rate", "error_rate", "outcome", "confidence")
GUARDRAIL_METRICS = ("latency_p99_ms", "error_rate", "low_confidence_ratio")


@dataclass(frozen=True)
class GuardrailConfig:
    metric: str = field(default="latency_p99_ms", metadata=_key(choices=GUARDRAIL_METRICS))
    direction: str = field(default="increase_is_bad", metadata=_key(choices=("increase_is_bad", "decrease_is_bad")))
    tolerance: float = field(default=0.0, metadata=_key(min=0))
    relative: bool = False


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = ""
    model: str = ""
    # (variant, intended share) pairs in the order of the file; a TOML table {control = 50, treatment = 50}.
    variants: tuple = field(default=(), metadata=_key(kind="shares"))
    control: str = ""
    variant_field: str = field(default="variant", metadata=_key(choices=("variant", "version")))
    metric: str = field(default="accuracy", metadata=_key(choices=EXPERIMENT_METRICS))
    alpha: float = field(default=0.05, metadata=_key(min=1e-6, max=0.5))
    tau2: float = field(default=1e-3, metadata=_key(min=1e-9, max=10))
    min_samples: int = field(default=100, metadata=_key(min=2))
    srm_alpha: float = field(default=0.001, metadata=_key(min=1e-12, max=0.5))
    planned_samples: int = field(default=0, metadata=_key(min=0))
    mde: float = field(default=0.0, metadata=_key(min=0))
    power: float = field(default=0.8, metadata=_key(min=0.5, max=0.999))
    guardrails: tuple = field(default=(), metadata=_key(kind="guardrails"))

    @property
    def control_variant(self) -> str:
        """The variant the others are compared with: ``control``, else the first one listed."""
        return self.control or (self.variants[0][0] if self.variants else "")

    @property
    def treatments(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.variants if v != self.control_variant)


@dataclass(frozen=True)
class ExplainConfig:
    # The evidence kept with every window (docs/evidence.md): quantile sketches, shifted tokens, exemplars.
    enabled: bool = True
    tokens: bool = True
    # The privacy floor: a token is kept (window, profile) only when at least this many distinct events hold it.
    min_token_events: int = field(default=5, metadata=_key(min=2, max=1_000_000))
    top_tokens: int = field(default=20, metadata=_key(min=1, max=200))
    exemplars: int = field(default=10, metadata=_key(min=0, max=100))
    # Space-Saving capacity of a window's open word set (token source "words"; docs/evidence.md).
    word_capacity: int = field(default=2000, metadata=_key(min=10, max=100_000))


@dataclass(frozen=True)
class Config:
    source: SourceConfig = SourceConfig()
    window: WindowConfig = WindowConfig()
    detect: DetectConfig = DetectConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    validation: ValidationConfig = ValidationConfig()
    metrics: MetricsConfig = MetricsConfig()
    report: ReportConfig = ReportConfig()
    reference: ReferenceConfig = ReferenceConfig()
    kafka: KafkaConfig = KafkaConfig()
    store: StoreConfig = StoreConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    daemon: DaemonConfig = DaemonConfig()
    probe: ProbeConfig = ProbeConfig()
    output: OutputConfig = OutputConfig()
    logging: LoggingConfig = LoggingConfig()
    reeval: ReevalConfig = ReevalConfig()
    shadow: ShadowConfig = ShadowConfig()
    labels: LabelsConfig = LabelsConfig()
    explain: ExplainConfig = ExplainConfig()
    experiments: tuple[ExperimentConfig, ...] = ()

    def replace(self, **sections: Any) -> "Config":
        return dataclasses.replace(self, **sections)
