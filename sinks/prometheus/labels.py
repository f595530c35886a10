"""Label bounds shared by every collector: the first streams and classes keep their names, later ones fold."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

__all__ = ["OTHER", "LabelBounds"]

OTHER = "__other__"


class LabelBounds:
    """Bounded ``model``/``version``, ``prediction_class`` and experiment label values (docs/metrics.md).

    ``lock`` guards every collector's state too: the bounds are shared, so one lock keeps an update and the
    folding it causes consistent with what a concurrent scrape sees.
    """

    def __init__(self, *, max_streams: int = 20, max_classes: int = 50):
        self.lock = threading.Lock()
        self.max_streams = max_streams
        self.max_classes = max_classes
        self._streams: dict[tuple[str, str], tuple[str, str]] = {}
        self._classes: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.folded: Counter[str] = Counter()

    def stream(self, model: str, version: str) -> tuple[str, str]:
        key = (model, version)
        labels = self._streams.get(key)
        if labels is None:
            if len(self._streams) < self.max_streams:
                labels = key
            else:
                labels = (OTHER, OTHER)
                self.folded["stream"] += 1
            self._streams[key] = labels
        return labels

    def stream_labels(self, model: str, version: str) -> tuple[str, str] | None:
        """The stream's own labels when it has a slot (not folded), else None; takes no slot."""
        labels = self._streams.get((model, version))
        return None if labels is None or labels[0] == OTHER else labels

    def forget(self, model: str, version: str) -> tuple[str, str] | None:
        """Free the stream's label slot; return its own labels when it had a slot (their series must go)."""
        labels = self._streams.pop((model, version), None)
        if labels is None or labels[0] == OTHER:
            return None
        self._classes.pop(labels, None)
        return labels

    def prediction_class(self, stream: tuple[str, str], cls: str) -> str:
        known = self._classes[stream]
        if cls in known:
            return cls
        if len(known) < self.max_classes:
            known.add(cls)
            return cls
        self.folded["prediction_class"] += 1
        return OTHER

    def bounded(self, known: dict, name: str, label: str) -> str:
        """``name`` while ``known`` (a collector's latest values by label) has room for it, else OTHER."""
        if name in known or len(known) < self.max_streams:
            return name
        self.folded[label] += 1
        return OTHER
