"""The evidence a window keeps so that a person can see what changed (docs/evidence.md): per event its token
set and how unlike the reference it is, per window bounded token counts and the top exemplars, and at close
the :class:`~monitor.results.WindowEvidence` stored beside the window's result.

Per stream batch, :meth:`EvidencePlan.inputs` turns the events into an :class:`EvidenceSlice` (token ids,
scores, where each event is); the stream routes each window its share; :class:`EvidenceAccumulator` adds it.
Everything an accumulator holds is a function of the window's event sequence, whatever the batching, and
joins the checkpoint (``WindowAccumulator.state``). No text is held beyond a token that passed the privacy
floor (``explain.min_token_events`` distinct events of the window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from detectors.evidence import SpaceSaving, Standardiser, TopExemplars
from detectors.text_features import BatchWords
from monitor.config import ExplainConfig
from monitor.ingest.batch import Chunk, StreamBatch
from monitor.ingest.reference import Profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.ingest.words import WordIds, split_words, word_key

__all__ = ["EvidencePlan", "EvidencePlans", "EvidenceSlice", "EvidenceAccumulator", "TokenCounts", "word_key",
           "PRUNE_EVERY", "MAX_POINTS"]

# The word sketch is cut back to its capacity after every this many events of the window (event 512, 1024,
# ...): fixed points of the event sequence, so its state does not depend on the batching.
PRUNE_EVERY = 512
# At most this many points of the window's embedding sample go to the stored evidence (the report's scatter).
MAX_POINTS = 200
_MAX_PLANS = 4096


class TokenCounts:
    """Exact document counts of token ids (the served tokenizer's vocabulary is finite): one dense array."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        counts = np.bincount(ids, minlength=self.counts.size)
        counts[: self.counts.size] += self.counts
        self.counts = counts

    def state(self) -> dict:
        ids = np.flatnonzero(self.counts)
        return {"ids": ids.tolist(), "counts": self.counts[ids].tolist()}

    @classmethod
    def from_state(cls, s: dict) -> "TokenCounts":
        out = cls()
        ids = np.array(s["ids"], dtype=np.int64)
        out.counts = np.zeros(int(ids.max()) + 1 if ids.size else 0, dtype=np.int64)
        out.counts[ids] = s["counts"]
        return out


class EvidenceSlice:
    """One window's share of a stream batch: each event's distinct token ids (CSR: ``keys[offsets[i]:
    offsets[i+1]]``; the tokenizer's vocabulary ids, or word ids of ``words``, a generation of the process's
    word table), whether it had text, its exemplar score, and where it is (``entry(i)``: position, request id)."""

    __slots__ = ("plan", "keys", "offsets", "texts", "scores", "where", "entry_of", "words")

    def __init__(self, plan: "EvidencePlan", *, keys: np.ndarray, offsets: np.ndarray, texts: np.ndarray,
                 scores: np.ndarray, where: np.ndarray, entry_of: Callable[[int], tuple[str, str | None]],
                 words: WordIds | None = None):
        self.plan, self.keys, self.offsets, self.texts, self.scores = plan, keys, offsets, texts, scores
        self.where, self.entry_of = where, entry_of  # where: the chunk event index of each event
        self.words = words

    @property
    def n(self) -> int:
        return self.scores.size

    def entry(self, i: int) -> tuple[str, str | None]:
        return self.entry_of(int(self.where[i]))

    def take(self, sel: np.ndarray) -> "EvidenceSlice":
        """The events ``sel`` (increasing indices) of this slice."""
        lengths = np.diff(self.offsets)[sel]
        offsets = np.zeros(sel.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[:-1][sel]
        flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
        return EvidenceSlice(self.plan, keys=self.keys[flat], offsets=offsets, texts=self.texts[sel],
                             scores=self.scores[sel], where=self.where[sel], entry_of=self.entry_of,
                             words=self.words)


class EvidenceAccumulator:
    """What one open window keeps for its evidence: token counts (exact ids, or a Space-Saving sketch of
    words), the number of events with text, and the top exemplars."""

    __slots__ = ("source", "events", "texts", "ids", "words", "exemplars")

    def __init__(self, *, source: str | None, exemplars: int, word_capacity: int, min_events: int):
        self.source = source
        self.events = self.texts = 0
        self.ids = TokenCounts() if source == "tokenizer" else None
        self.words = SpaceSaving(word_capacity, min_events=min_events) if source == "words" else None
        self.exemplars = TopExemplars(exemplars)

    @classmethod
    def for_plan(cls, plan: "EvidencePlan") -> "EvidenceAccumulator":
        e = plan.explain
        return cls(source=plan.source, exemplars=e.exemplars, word_capacity=e.word_capacity,
                   min_events=e.min_token_events)

    def add(self, s: EvidenceSlice) -> None:
        self.exemplars.offer(s.scores, s.entry)
        if self.ids is not None:
            self.ids.add(s.keys)
        elif self.words is not None:
            done, i = self.events, 0
            while i < s.n:  # up to each fixed prune point of the window's event sequence
                take = min(s.n - i, PRUNE_EVERY - done % PRUNE_EVERY)
                # the slice holds word ids of the word table: counted here, keyed for the sketch
                counts = np.bincount(s.keys[s.offsets[i] : s.offsets[i + take]])
                seen = np.flatnonzero(counts)
                if seen.size:  # (a slice without text has no word table)
                    self.words.update(s.words.keys()[seen], s.words.named.__getitem__, counts=counts[seen])
                done, i = done + take, i + take
                if done % PRUNE_EVERY == 0:
                    self.words.prune()
        self.events += s.n
        self.texts += int(s.texts.sum())

    def state(self) -> dict:
        return {"source": self.source, "events": self.events, "texts": self.texts,
                "ids": self.ids.state() if self.ids is not None else None,
                "words": self.words.state() if self.words is not None else None,
                "exemplars": self.exemplars.state()}  # fmt: skip

    @classmethod
    def from_state(cls, s: dict) -> "EvidenceAccumulator":
        out = cls.__new__(cls)
        out.source, out.events, out.texts = s["source"], int(s["events"]), int(s["texts"])
        out.ids = TokenCounts.from_state(s["ids"]) if s["ids"] is not None else None
        out.words = SpaceSaving.from_state(s["words"]) if s["words"] is not None else None
        out.exemplars = TopExemplars.from_state(s["exemplars"])
        return out


class EvidencePlan:
    """How one profile's windows gather and build their evidence: the token source and the reference's
    document counts, and the exemplar score (the embedding's distance from the reference, or the features')."""

    def __init__(self, explain: ExplainConfig, profile: Profile | None, tokenizer: TokenizerFeaturizer | None,
                 *, feature_names: tuple[str, ...]):
        self.explain, self.tokenizer = explain, tokenizer
        tokens = (profile.tokens if profile is not None else None) if explain.tokens else None
        self.source: str | None = tokens["source"] if tokens else None
        if self.source == "tokenizer" and tokenizer is None:
            self.source = None
        self.reference: dict[str, int] = dict(tokens["counts"]) if self.source else {}
        self.reference_events = int(tokens["events"]) if self.source else 0
        self._reference_keys = (np.fromiter(map(word_key, self.reference), dtype=np.uint64, count=len(self.reference))
                                if self.source == "words" else None)
        self.projection = profile.event_projection if profile is not None else None
        self.score_name: str | None = None
        self.scorer: Standardiser | None = None
        if self.projection is not None:
            self.score_name, self.scorer = "embedding", Standardiser.fit(list(profile.embedding_reference.T))
        elif profile is not None:
            cols = [profile.samples.get(n, np.empty(0)) for n in feature_names]
            self.score_name, self.scorer = "features", Standardiser.fit(cols)
        self.n_features = len(feature_names)

    # -- per batch -------------------------------------------------------------------------------------------
    def inputs(self, rows: np.ndarray, texts: Sequence[str | None], *, width: int, where: np.ndarray,
               entry_of: Callable[[int], tuple[str, str | None]], words: BatchWords | None = None) -> EvidenceSlice:
        """The slice of a stream batch: ``rows`` its rows (the stream's ``width`` columns, then any projected
        embedding), ``texts`` its events' texts (``words``: their lower-cased words as ids of the word table,
        when the text features split them already), ``where`` their chunk indices for ``entry_of``."""
        n = len(texts)
        has_text = np.array([t is not None for t in texts], dtype=bool).reshape(n)
        keys, offsets, index = self._token_keys(texts, has_text, words)
        if self.score_name == "embedding":
            scores = self.scorer.distance(rows[:, width:])
        elif self.score_name == "features":
            scores = self.scorer.max_abs_z(rows[:, 2 : 2 + self.n_features])
        else:
            scores = np.full(n, np.nan)
        return EvidenceSlice(self, keys=keys, offsets=offsets, texts=has_text, scores=scores, where=where,
                             entry_of=entry_of, words=index)

    def batch(self, sb: StreamBatch, chunk: Chunk, texts: list | None, *, width: int) -> EvidenceSlice:
        """:meth:`inputs` of one stream's events of a chunk (``texts``: theirs, when already gathered)."""
        events, records, pos = chunk.events, chunk.records, chunk.pos
        if texts is None:
            texts = [events[i].text for i in sb.idx.tolist()]
        words = sb.words if sb.words is not None and sb.words.counts.size == len(texts) else None
        return self.inputs(sb.rows, texts, width=width, where=sb.idx, words=words,
                           entry_of=lambda j: (records[pos[j]].position, events[j].request_id))

    def _token_keys(self, texts: Sequence[str | None], has_text: np.ndarray, words: BatchWords | None
                    ) -> tuple[np.ndarray, np.ndarray, WordIds | None]:
        n = len(texts)
        if self.source is None or not has_text.any():
            return np.empty(0, dtype=np.int64), np.zeros(n + 1, dtype=np.int64), None
        if self.source == "words":
            # the words the text features split (BatchFeatures.words), else split here the same way
            if words is None or not isinstance(words.index, WordIds):
                words = split_words([t if t is not None else "" for t in texts])
            return words.distinct, words.offsets, words.index
        every = bool(has_text.all())
        present = list(texts) if every else [t for t in texts if t is not None]
        ids, offsets = self.tokenizer.distinct_token_ids(present)  # the chunks features() just split
        if not every:  # the texts' offsets spread over the events, none for an event without text
            per_event = np.zeros(n, dtype=np.int64)
            per_event[has_text] = np.diff(offsets)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(per_event, out=offsets[1:])
        return ids, offsets, None  # the tokenizer's vocabulary ids

    # -- at close --------------------------------------------------------------------------------------------
    def window_counts(self, acc: EvidenceAccumulator) -> dict[str, int]:
        """The window's document count of each token it can name: tokenizer ids all (names from the
        vocabulary); words above the floor, plus the reference's words (for those that fell)."""
        if acc.ids is not None:
            ids = np.flatnonzero(acc.ids.counts)
            out: dict[str, int] = {}
            for name, c in zip(self.tokenizer.tokens(ids.tolist()), acc.ids.counts[ids].tolist()):
                out[name] = out.get(name, 0) + c
            return out
        if acc.words is not None:
            out = dict(zip(self.reference, acc.words.lower_bound(self._reference_keys).tolist()))
            out.update(acc.words.named())
            return out
        return {}


class EvidencePlans:
    """The plan of each profile (by model, and by (model, segment) for segment profiles), made on first use."""

    def __init__(self, explain: ExplainConfig, profiles: Mapping[str, Profile],
                 segment_profiles: Mapping[tuple[str, str], Profile], tokenizer: TokenizerFeaturizer | None,
                 *, base_names: tuple[str, ...]):
        self.explain, self.tokenizer, self.base_names = explain, tokenizer, base_names
        self.profiles, self.segment_profiles = profiles, segment_profiles
        self._plans: dict[tuple[str, str], EvidencePlan] = {}

    def plan(self, model: str, segment: str, custom: tuple[str, ...]) -> EvidencePlan | None:
        if not self.explain.enabled:
            return None
        key = (model, segment)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:  # model names come from producers: bounded (cheap to remake)
                self._plans.clear()
            profile = self.segment_profiles.get(key) or self.profiles.get(model)
            plan = self._plans[key] = EvidencePlan(self.explain, profile, self.tokenizer,
                                                   feature_names=self.base_names + custom)
        return plan
