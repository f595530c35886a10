"""``nlpmon reference build --by-segment``: one reference profile per segment of the reference events."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from monitor.ingest.profile_builder import build_profile
from monitor.ingest.reference import Profile

__all__ = ["segment_output", "segment_profiles"]


def segment_output(output: str, segment: str) -> str:
    """``profile.json`` -> ``profile.segment=fr.json``: the segment percent-encoded, so any segment name makes
    one safe file name (``/`` included)."""
    path = Path(output)
    suffix = path.suffix or ".json"
    return str(path.with_name(f"{path.stem if path.suffix else path.name}.segment={quote(segment, safe='')}{suffix}"))


def segment_profiles(args, summary: dict, tokenizer, config, *, embedding, encoder=None) -> list[tuple[Profile, str]]:
    """A profile per segment the model's reference events carry (``summary["segments"]``), with its file."""
    out = []
    for segment in summary.get("segments", {}):
        profile, _ = build_profile(
            args.events, model=summary["model"], versions=tuple(args.versions), tokenizer=tokenizer,
            sample_cap=args.sample_size, seed=args.seed, segment=segment,
            max_text_chars=config.validation.max_text_chars if config else 10_000,
            embedding=embedding, encoder=encoder,  # the model profile's settings: the daemon checks every profile
        )  # fmt: skip
        out.append((profile, segment_output(args.output, segment)))
    return out
