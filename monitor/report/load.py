"""Read a report's data from the SQL store: the stream's windows with their evidence, labels, profile, baseline."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from monitor.ingest.reference import Profile, ProfileError, load_profile
from monitor.report.data import ReportData, window_ms

__all__ = ["NotFound", "load_report", "parse_time_ms", "DEFAULT_SPAN_MS", "MAX_WINDOWS"]

# Without --since or --window: the stored windows of the last day before the newest (a day of 5-minute
# windows is 288). A report never draws more than MAX_WINDOWS (the newest ones): it must render in seconds.
DEFAULT_SPAN_MS = 86_400_000
MAX_WINDOWS = 2000
# With --window: that window and the six hours before it, so its timeline shows how it came about.
CONTEXT_MS = 6 * 3_600_000
_EPOCH = re.compile(r"\d+(\.\d+)?")


class NotFound(LookupError):
    """No stored window for that model (version, segment) or at that window start: a 404, exit 2."""


def parse_time_ms(text: str | int, what: str) -> int:
    """An RFC 3339 timestamp or epoch seconds/ms (below 10^11: seconds, as docs/events.md) as epoch ms."""
    if isinstance(text, int):
        value = text * 1000 if text < 1e11 else text
    elif _EPOCH.fullmatch(str(text).strip()):
        number = float(text)
        value = int(number * 1000) if number < 1e11 else int(number)
    else:
        try:
            dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what} {text!r} is not a time: give an RFC 3339 timestamp or epoch seconds/ms") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        value = int(round(dt.timestamp() * 1000))
    return value


def load_report(
    store, *, model: str, version: str | None = None, segment: str | None = None, window: str | int | None = None,
    since: str | int | None = None, until: str | int | None = None, profile: Profile | str | Path | None = None,
) -> ReportData:
    """The report of ``model`` read from ``store`` (a :class:`~sinks.sql.SqlStore`).

    ``window``: the start of the window to describe (its timeline: the six hours before); else ``since`` /
    ``until`` bound the windows' starts (epoch ms, RFC 3339, epoch seconds), by default the day before the
    newest stored window. ``version``: by default the newest window's; ``segment``: by default the
    segment-less stream. ``profile``: the reference when the store has no active one for the model (a
    :class:`Profile` or its file). Raises :class:`NotFound` (unknown model, version, segment or window) and
    ``ValueError`` (bad parameters).
    """
    if not model:
        raise ValueError("a model is required")
    if window is not None and (since is not None or until is not None):
        raise ValueError("give either a window or a period (since/until), not both")
    lo = None if since is None else parse_time_ms(since, "since")
    hi = None if until is None else parse_time_ms(until, "until")
    start = None if window is None else parse_time_ms(window, "window")
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError("until must be after since")
    known = [v for m, v in store.streams() if m == model]
    if not known:
        raise NotFound(f"no stored windows for model {model!r}")
    if version is not None and version not in known:
        raise NotFound(f"no stored windows for model {model!r} version {version!r} (stored: {', '.join(known)})")
    notes: list[str] = []
    if start is not None:
        lo, hi = start - CONTEXT_MS, start + 1
    elif lo is None and hi is None:
        newest = store.window_evidence(model, version, limit=1)
        lo = window_ms(newest[-1][0]) - DEFAULT_SPAN_MS + 1 if newest else None
    rows = store.window_evidence(model, version, since=lo, until=hi, limit=MAX_WINDOWS * 4)
    if version is None and rows:
        version = rows[-1][0]["version"]
        others = sorted({r["version"] for r, _ in rows} - {version})
        if others:
            notes.append(f"Version {version} (the newest window's); also stored in this period: {', '.join(others)}.")
        rows = [(r, e) for r, e in rows if r["version"] == version]
    by_segment: dict[str, list] = {}
    for r, e in rows:
        by_segment.setdefault(r.get("segment") or "", []).append((r, e))
    main = by_segment.pop(segment or "", [])
    if not main:
        stream = f"{f'segment {segment!r} of ' if segment else ''}model {model!r}{f' version {version!r}' if version else ''}"
        if start is not None:
            raise NotFound(f"{stream} has no window starting at {window}")
        also = f" (segments with windows: {', '.join(sorted(by_segment))})" if by_segment else ""
        raise NotFound(f"no stored window of {stream} in this period{also}")
    if len(main) > MAX_WINDOWS:
        notes.append(f"Only the newest {MAX_WINDOWS} of {len(main)} windows are drawn.")
        main = main[-MAX_WINDOWS:]
    focus = None
    if start is not None:
        focus = next((r["window_start"] for r, _ in main if window_ms(r) == start), None)
        if focus is None:
            raise NotFound(f"model {model!r} version {version!r} has no window starting at {window}")
    ref, note = _profile(store, model, segment, profile)
    labels = [] if segment else [d for d in store.labels.results(model, version, since=lo)
                                 if hi is None or window_ms(d) < hi]
    baseline, baseline_note = _baseline(store, model, version)
    return ReportData.build(
        model, main, profile=ref, focus_start=focus, reference_note=note, version=version, segment=segment or None,
        labels=tuple(labels), baseline_accuracy=baseline, baseline_note=baseline_note,
        segments={s: tuple(r for r, _ in w) for s, w in by_segment.items()} if not segment else {},
        notes=tuple(notes),
    )  # fmt: skip


def _profile(store, model: str, segment: str | None, given) -> tuple[Profile | None, str]:
    """The reference: the store's active profile (the segment's own first), else ``given``, else none."""
    for name in ([f"{model}#segment={segment}"] if segment else []) + [model]:
        doc = store.active_profile(name)
        if doc is not None:
            try:
                return Profile.from_dict(doc, origin=f"store profile {name}"), f"the store's active profile of {name}"
            except ProfileError as exc:
                return None, f"the store's active profile of {name} cannot be read ({exc})"
    if isinstance(given, Profile):
        return given, "the profile given"
    if given is not None:
        try:
            return load_profile(given), f"profile file {Path(given).name}"
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
    return None, ""


def _baseline(store, model: str, version: str | None) -> tuple[float | None, str]:
    """The newest successful re-evaluation's held-out accuracy: what "realised accuracy vs baseline" means."""
    runs = store.reeval_runs(model, version=version, outcome="success", newest_first=True, limit=1)
    if runs and runs[0].accuracy is not None:
        run = runs[0]
        return run.accuracy, f"held-out accuracy of re-evaluation run {run.id} on {run.dataset!r}"
    return None, ""
