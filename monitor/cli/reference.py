"""``nlpmon reference build``: a model's reference profile from a JSONL file of events (with ``--by-segment``,
one more per segment of the events)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import orjson

from monitor.cli.common import EXIT_OK, UsageError, command_group
from monitor.config import ConfigError, EmbeddingConfig, load_config

if TYPE_CHECKING:  # the builder loads numpy and the detectors: imported when a profile is built
    from monitor.ingest.reference import Profile
    from monitor.jobs.profile_builder import ProfileOptions, ProfileSummary

__all__ = ["add_parsers", "cmd_reference_build", "segment_output", "segment_profiles"]


def add_parsers(sub) -> None:
    """Register ``reference build`` on an ``argparse`` subparsers object."""
    rsub = command_group(sub, "reference", help="build reference profiles",
                         description="Reference profiles: what drift is measured against, built from a period of "
                         "predictions you trust (docs/results.md).")
    b = rsub.add_parser(
        "build",
        help="compute a reference profile from a JSONL file of events",
        description="Compute the reference samples (features, confidences, class proportions, latency) of one "
        "model from EVENTS and write them to a profile JSON file.",
    )
    b.add_argument("events", metavar="EVENTS.jsonl", help="prediction events, one JSON object per line (docs/events.md)")
    b.add_argument("--output", "-o", required=True, metavar="PROFILE.json", help="where to write the profile")
    b.add_argument("--model", metavar="NAME", help="model to profile (required when the file holds several)")
    b.add_argument("--version", dest="versions", action="append", default=[], metavar="V", help="only these versions (repeatable)")
    b.add_argument("--sample-size", type=int, default=50_000, metavar="N", help="reservoir size per feature (default 50000)")
    b.add_argument("--config", "-c", metavar="FILE",
                   help="the daemon's TOML config: [tokenizer], [embedding] and validation.max_text_chars are read "
                   "from it, so the profile is built with the daemon's settings (--tokenizer and --max-length "
                   "override); with embedding.model the encoder embeds a seeded sample of the texts")
    b.add_argument("--tokenizer", metavar="DIR", help="served model's tokenizer directory (must match the daemon's)")
    b.add_argument("--max-length", type=int, metavar="N", help="tokenizer max_length (default: the config's tokenizer.max_length, else the tokenizer's "
                   "model_max_length)")
    b.add_argument("--seed", type=int, default=0, help="seed of the reservoir samples (default 0): the same seed, "
                   "the same profile")
    b.add_argument("--store", metavar="URL", help="also store the profile in this SQL store (SQLAlchemy URL)")
    b.add_argument("--activate", action="store_true", help="with --store: make it the model's active reference")
    b.add_argument("--by-segment", action="store_true",
                   help="also one profile per segment of the events, written next to --output as "
                   "NAME.segment=SEGMENT.json (SEGMENT percent-encoded) and stored as MODEL#segment=SEGMENT")
    b.set_defaults(func=cmd_reference_build)


def cmd_reference_build(args) -> int:
    from monitor.ingest.reference import save_profile
    from monitor.ingest.tokenizer import TokenizerFeaturizer
    from monitor.jobs.profile_builder import ProfileOptions, build_profile
    from monitor.windowing.segments import profile_name

    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"cannot read {args.events}: no such file")
    if args.sample_size < 100:
        raise UsageError("--sample-size must be at least 100")
    # The daemon's own [tokenizer] and validation settings (environment included, as `nlpmon run` reads
    # them), so the profile passes the daemon's compatibility check; flags override.
    config = None
    if args.config:
        try:
            config = load_config(args.config, overrides={"source.kind": "stdin"})  # only its model settings count
        except ConfigError as exc:
            raise UsageError(f"config error: {exc}") from None
    path = args.tokenizer or (config.tokenizer.path if config else "") or None
    max_length = args.max_length or (config.tokenizer.max_length if config else 0) or None  # None: the tokenizer's
    batch_size = config.tokenizer.batch_size if config else 256
    tokenizer = TokenizerFeaturizer(path, max_length=max_length, batch_size=batch_size) if path else None
    embedding = config.embedding if config else EmbeddingConfig()
    encoder = None
    if embedding.model:
        from monitor.onnx.encoder import OnnxEncoder

        if not path:
            raise UsageError("embedding.model: requires tokenizer.path (or --tokenizer)")
        encoder = OnnxEncoder(embedding.model, path, output=embedding.output or None, provider=embedding.provider,
                              batch_size=embedding.batch_size, max_length=max_length,
                              intra_op_threads=embedding.threads)
    options = ProfileOptions(
        model=args.model, versions=tuple(args.versions), sample_cap=args.sample_size, seed=args.seed,
        max_text_chars=config.validation.max_text_chars if config else 10_000, embedding=embedding,
        **({"explain": config.explain} if config else {}),
    )  # fmt: skip
    profile, summary = build_profile(args.events, options, tokenizer=tokenizer, encoder=encoder)
    if args.activate and not args.store:
        raise UsageError("--activate needs --store URL")
    profiles = [(profile, args.output)]
    if args.by_segment:
        profiles += segment_profiles(args, summary, options, tokenizer=tokenizer, encoder=encoder)
    for p, output in profiles:
        save_profile(p, output)
    extra = {"segment_outputs": [out for _, out in profiles[1:]]} if args.by_segment else {}
    if args.store:
        from sinks.sql import SqlStore, StoreUnavailable

        try:
            with SqlStore(args.store) as store:
                versions = [store.save_profile(profile_name(p.model, p.segment), p.to_dict(), activate=args.activate)
                            for p, _ in profiles]
                extra["store_version"] = versions[0]
        except StoreUnavailable as exc:
            raise UsageError(f"cannot reach the store: {exc}") from None
        extra["active"] = args.activate
    sys.stderr.write(orjson.dumps({**summary.to_dict(), "output": args.output, **extra}).decode() + "\n")
    return EXIT_OK


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
    from monitor.jobs.profile_builder import build_profile

    out = []
    for segment in summary.segments:
        built = build_profile(args.events, replace(options, model=summary.model, segment=segment),
                              tokenizer=tokenizer, encoder=encoder)
        out.append((built.profile, segment_output(args.output, segment)))
    return out
