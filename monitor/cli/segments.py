"""``nlpmon reference build --by-segment``: one reference profile per segment of the reference events."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from monitor.jobs.profile_builder import ProfileOptions, ProfileSummary, build_profile
from monitor.ingest.reference import Profile

__all__ = ["segment_output", "segment_profiles"]


def segment_output(output: str, segment: str) -> str:
    """``profile.json`` -> ``profile.segment=fr.json``: the segment percent-encoded, so any segment name makes
    one safe file name (``/`` included)."""
    path = Path(output)
    suffix = path.suffix or ".json"
    return str(path.with_name(f"{path.stem if path.suffix else path.name}.segment={quote(segment, safe='')}{suffix}"))


def segment_profiles(args, summary: ProfileSummary, options: ProfileOptions, *, tokenizer,
                     encoder=None) -> list[tuple[Profile, str]]:
    """A profile per segment the model's reference events carry (``summary.segments``), with its file.

    Each is built with the model profile's ``options``, tokenizer and encoder: the daemon checks every profile.
    """
    out = []
    for segment in summary.segments:
        built = build_profile(args.events, replace(options, model=summary.model, segment=segment),
                              tokenizer=tokenizer, encoder=encoder)
        out.append((built.profile, segment_output(args.output, segment)))
    return out
