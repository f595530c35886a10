"""``compare(reference, current)``: the daemon's drift verdict on two data sets, with the daemon's own code.

The reference becomes a profile through ``nlpmon reference build``'s builder (``monitor.jobs.profile_builder``);
the current data goes through :class:`monitor.pipeline.Pipeline` as ONE count window (``window.kind = "count"``
with a size no data set reaches), closed at the end of input, so its result is the line ``nlpmon replay`` writes
for the same events, profile and config. Both sides stream: the builder and the window keep seeded reservoirs
(``sample_cap``, ``window.reservoir_size``), never the data set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from monitor.api.inputs import DEFAULT_MODEL, TEXT_ONLY_CLASS, Columns, CompareError, Input, is_profile_file, open_input
from monitor.api.report import CompareReport, InputSummary, tests_of
from monitor.config import Config, load_config
from monitor.ingest.batch import Record
from monitor.ingest.reference import Profile, load_profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.jobs.profile_builder import ProfileOptions, build_profile
from monitor.pipeline import Pipeline
from monitor.results import WindowResult
from monitor.runtime.embedding_worker import EmbeddingWorker, build_embedding_worker

__all__ = ["compare", "compare_config", "COMPARE_WINDOW_EVENTS"]

# The size of the one count window: more events than any data set holds, so all of them fall in window 0. A
# replay with window.kind = "count" and any window.events >= the events gives the same window (same seeds).
COMPARE_WINDOW_EVENTS = 2**53


def compare(reference, current, *, tokenizer=None, encoder=None, config: Config | str | os.PathLike | None = None,
            columns: Columns = Columns(), model: str | None = None, progress: bool | None = None) -> CompareReport:
    """Test ``current`` against ``reference`` as the daemon tests a window against its reference profile.

    ``reference`` and ``current``: a list (any iterable) of texts, a pandas DataFrame (``columns`` names its
    columns) or the path of a JSONL file of events (docs/events.md); ``reference`` may also be a stored
    profile (a :class:`~monitor.ingest.reference.Profile`, or the path of one written by ``nlpmon reference
    build``). ``tokenizer``: the served model's tokenizer (a directory or a ``TokenizerFeaturizer``; default
    ``tokenizer.path``); ``encoder``: an ``[embedding]`` encoder (``monitor.onnx.encoder.OnnxEncoder``; default
    ``embedding.model``); ``config``: a :class:`~monitor.config.Config` or a TOML path (default: the built-in
    defaults). ``model`` picks the model of a JSONL file holding several, and names list and DataFrame rows.
    ``progress``: a progress bar on stderr (default: when stderr is a terminal).

    Raises :class:`CompareError` (or ``ProfileError``/``TokenizerError``, all ``ValueError``) for unusable input.
    """
    cfg = compare_config(config)
    featurizer = _featurizer(tokenizer, cfg)
    if isinstance(tokenizer, (str, os.PathLike)):  # the [embedding] encoder reads the same tokenizer
        cfg = cfg.replace(tokenizer=dataclasses.replace(cfg.tokenizer, path=str(tokenizer)))
    show = sys.stderr.isatty() if progress is None else progress
    with contextlib.ExitStack() as stack:
        # Both sides' columns are checked before anything is read.
        stored = _stored_profile(reference)
        ref_in = open_input(reference, columns=columns, batch_size=cfg.source.batch_size, side="reference") \
            if stored is None else None
        cur = open_input(current, columns=columns, batch_size=cfg.source.batch_size, side="current")
        worker = _embedder(encoder, cfg, stack)
        profile, ref = stored or _build_reference(ref_in, cfg, featurizer=featurizer, worker=worker, model=model,
                                                  show=show)
        stream_model = model or cur.model or profile.model
        pipeline = Pipeline(cfg, profiles={stream_model: profile}, tokenizer=featurizer, embedder=worker)
        results: list[WindowResult] = []
        for batch in _progress(cur, stream_model, show=show, side="current"):
            results.extend(pipeline.process(batch).windows)
        results.extend(pipeline.flush().windows)
    stats = pipeline.stats
    current_summary = InputSummary(cur.kind, cur.name, stats.lines, stats.valid, dict(stats.invalid))
    result = _one_window(results, stream_model, current_summary)
    text_only = set(profile.class_counts) <= {TEXT_ONLY_CLASS} and set(result.predictions) <= {TEXT_ONLY_CLASS}
    return CompareReport(result=result, reference=ref, current=current_summary,
                         tests=tests_of(result, with_prediction=not text_only), profile=profile)


def compare_config(config: Config | str | os.PathLike | None) -> Config:
    """The daemon's config with the one-window settings of a comparison: ``window.kind = "count"`` of
    :data:`COMPARE_WINDOW_EVENTS` events, no segments and no label join (a label join needs time windows;
    the events' own ``label`` still gives ``accuracy``). Every detector setting and floor is kept."""
    if config is None:
        config = Config()
    elif not isinstance(config, Config):
        # As the daemon reads it (NLPMON_* included); its source is not read here, so a Kafka one needs no broker.
        config = load_config(config, overrides={"source.kind": "stdin"})
    window = dataclasses.replace(config.window, kind="count", events=COMPARE_WINDOW_EVENTS, by_segment=False)
    return config.replace(window=window, labels=dataclasses.replace(config.labels, enabled=False))


def _featurizer(tokenizer, cfg: Config) -> TokenizerFeaturizer | None:
    if tokenizer is None:
        t = cfg.tokenizer
        return TokenizerFeaturizer(t.path, max_length=t.max_length or None, batch_size=t.batch_size) if t.path else None
    if isinstance(tokenizer, (str, os.PathLike)):
        return TokenizerFeaturizer(tokenizer, max_length=cfg.tokenizer.max_length or None,
                                   batch_size=cfg.tokenizer.batch_size)
    return tokenizer


def _embedder(encoder, cfg: Config, stack: contextlib.ExitStack) -> EmbeddingWorker | None:
    """The daemon's ``[embedding]`` worker around ``encoder`` (or the configured one); closed by ``stack``."""
    e = cfg.embedding
    worker = (EmbeddingWorker(encoder, components=e.components, whiten=e.whiten) if encoder is not None
              else build_embedding_worker(cfg))
    if worker is not None:
        stack.callback(worker.close)
    return worker


def _stored_profile(reference) -> tuple[Profile, InputSummary] | None:
    """A stored profile as it is (a ``Profile``, or the path of one); None when ``reference`` is data."""
    if isinstance(reference, Profile):
        return reference, InputSummary("profile", reference.source, 0, reference.events)
    if isinstance(reference, (str, os.PathLike)) and Path(reference).is_file() and is_profile_file(reference):
        profile = load_profile(reference)
        return profile, InputSummary("profile", Path(reference).name, 0, profile.events)
    return None


def _build_reference(ref: Input, cfg: Config, *, featurizer, worker, model: str | None,
                     show: bool) -> tuple[Profile, InputSummary]:
    """The profile of the reference data as ``nlpmon reference build`` makes it (its default sample size and
    seed, the config's text limit and [embedding] settings), and what was read."""
    options = ProfileOptions(model=model, max_text_chars=cfg.validation.max_text_chars, embedding=cfg.embedding,
                             batch_size=cfg.source.batch_size)
    built = build_profile(ref.name, options, tokenizer=featurizer, encoder=worker.encoder if worker else None,
                          batches=_progress(ref, model or DEFAULT_MODEL, show=show, side="reference"))
    s = built.summary
    return built.profile, InputSummary(ref.kind, ref.name, s.lines, s.events, dict(s.invalid))


def _progress(inp: Input, model: str, *, show: bool, side: str) -> Iterator[list[Record]]:
    """``inp``'s batches, with a progress bar on stderr when ``show`` (rows, or bytes of a file)."""
    if not show:
        yield from inp.batches(model)
        return
    from tqdm import tqdm

    with tqdm(total=inp.total, unit=inp.unit, unit_scale=True, desc=side, file=sys.stderr, leave=False) as bar:
        for batch in inp.batches(model):
            bar.update(len(batch) if inp.unit == "rows" else sum(len(r.value) + 1 for r in batch))
            yield batch


def _one_window(results: list[WindowResult], model: str, current: InputSummary) -> WindowResult:
    mine = [r for r in results if r.model == model]
    if not mine:
        invalid = ", ".join(f"{n} {reason}" for reason, n in sorted(current.invalid.items())) or "none"
        raise CompareError(f"current: no valid prediction events of model {model!r} (read {current.lines} records; "
                           f"invalid: {invalid})")
    if len(mine) > 1:
        versions = ", ".join(sorted({r.version for r in mine}))
        raise CompareError(f"current: model {model!r} has several versions ({versions}); compare one at a time")
    return mine[0]
