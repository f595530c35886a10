"""The one place that builds what both daemons need from a config: tokenizer, reference profiles, Prometheus sink.

The line daemon, the Kafka daemon and ``nlpmon check-config`` (:func:`monitor.runtime.checks.preflight`, which
runs the same steps one by one to report each problem) all build through here, and apply one compatibility
rule, :func:`check_profiles`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from threadpoolctl import threadpool_limits

from monitor import __version__
from monitor.config import Config, EmbeddingConfig
from monitor.ingest.reference import FeatureSet, Profile, load_profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.pipeline import ALL_REASONS
from monitor.windowing.segments import profile_name
from monitor.runtime.embedding_worker import EmbeddingWorker, build_embedding_worker
from sinks.prometheus import PrometheusSink

__all__ = ["Components", "build_components", "load_profiles", "load_featurizer", "build_sink", "check_profiles",
           "feature_set"]


@dataclass(frozen=True)
class Components:
    """What a daemon's pipelines share: one tokenizer, the file profiles by model, one sink on one registry."""

    tokenizer: TokenizerFeaturizer | None
    profiles: dict[str, Profile]
    sink: PrometheusSink
    registry: CollectorRegistry
    # The [embedding] encoder's worker thread (None without embedding.model); the daemon closes it.
    embedder: EmbeddingWorker | None = None

    def check(self, embedding: EmbeddingConfig) -> None:
        """Raise :class:`ProfileError` for the first profile these pipelines cannot use (:func:`check_profiles`)."""
        check_profiles(self.profiles, self.tokenizer, embedding=embedding,
                       encoder=self.embedder.identity if self.embedder is not None else None)


def one_blas_thread(stack: contextlib.ExitStack) -> None:
    """Run numpy's BLAS on one thread until ``stack`` closes. The pipeline's matrix products are per batch and
    small, and OpenBLAS's extra threads busy-wait after each one, taking a core from the broker or from the
    loop (about a third of the Kafka daemon's CPU per record, docs/benchmarks.md). Both daemons do their work
    on one thread."""
    stack.enter_context(threadpool_limits(limits=1, user_api="blas"))


def freeze_startup_objects(stack: contextlib.ExitStack) -> None:
    """Move everything built so far (modules, profiles, clients, tokenizer) out of the cyclic garbage
    collector's sight until ``stack`` closes: it lives as long as the daemon, and every older-generation
    collection otherwise walks it again (a tenth of the Kafka daemon's time per record, under 4% since:
    docs/benchmarks.md). Given back at close, for processes that go on (tests, notebooks)."""
    gc.freeze()
    stack.callback(gc.unfreeze)


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
        # No origin when the key is the profile's own model: the message names the model already.
        origin = "" if model == profile.model else f"as model {model}"
        profile.check_compatible(features, origin=origin)
        if embedding is not None:
            profile.check_embedding(encoder, components=embedding.components, whiten=embedding.whiten, origin=origin)


def load_profiles(paths) -> dict[str, Profile]:
    """Load reference profiles from files, one per model and segment (two for the same model and segment is a
    configuration error); keyed by :func:`~monitor.windowing.segments.profile_name`."""
    profiles: dict[str, Profile] = {}
    for path in paths:
        profile = load_profile(path)
        name = profile_name(profile.model, profile.segment)
        if name in profiles:
            raise ValueError(f"two reference profiles for {name!r}: {path} and an earlier one")
        profiles[name] = profile
    return profiles


def load_featurizer(config: Config) -> TokenizerFeaturizer | None:
    """The ``[tokenizer]`` features of the served model's tokenizer (None without ``tokenizer.path``)."""
    t = config.tokenizer
    return TokenizerFeaturizer(t.path, max_length=t.max_length, batch_size=t.batch_size) if t.path else None


def build_sink(config: Config, registry: CollectorRegistry) -> PrometheusSink:
    """The Prometheus sink with its label bounds, a zero series for every rejection reason, and the process
    (process_*: CPU, memory, file descriptors), platform (python_info) and GC (python_gc_*) collectors that the
    global registry would have had: nlpmon's registry is an explicit one."""
    sink = PrometheusSink(registry, max_streams=config.metrics.max_streams, max_classes=config.metrics.max_classes,
                          build_version=__version__, latency_buckets=config.metrics.latency_buckets_seconds)
    sink.preset_reasons(ALL_REASONS)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return sink


def build_components(config: Config, *, registry: CollectorRegistry | None = None,
                     sink: PrometheusSink | None = None) -> Components:
    """Build tokenizer, profiles, sink and the [embedding] worker, in that order (raises
    ProfileError/TokenizerError/ValueError on a bad setup). ``sink``: one already built by :func:`build_sink`
    on ``registry`` (the Kafka daemon's exists before it connects, for its startup gauges)."""
    registry = registry if registry is not None else CollectorRegistry()
    return Components(tokenizer=load_featurizer(config), profiles=load_profiles(config.reference.paths),
                      sink=sink if sink is not None else build_sink(config, registry), registry=registry,
                      embedder=build_embedding_worker(config))
