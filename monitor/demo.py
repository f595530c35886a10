"""``make demo``: a sentiment model's traffic drifts part-way; nlpmon finds where.

Generates realistic traffic (monitor.synth.traffic), builds a reference from the clean first part, replays
the rest through the whole pipeline and prints one row per window. Everything runs on embedded defaults in a
scratch directory; nothing else is needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from monitor.config import load_config
from monitor.daemon import run_line_source
from monitor.logs import setup_logging
from monitor.profile_builder import build_profile
from monitor.reference import save_profile
from monitor.synth.traffic import generate_events, write_events
from monitor.table import window_header, window_row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitor.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=60_000, help="events replayed after the reference (default 60000)")
    ap.add_argument("--reference-events", type=int, default=20_000)
    ap.add_argument("--drift-at", type=float, default=0.6, help="share of the replay after which drift starts (default 0.6)")
    ap.add_argument("--window-seconds", type=float, default=300.0)
    ap.add_argument("--rate", type=float, default=20.0, help="events per second of event time (default 20)")
    ap.add_argument("--out", default=None, help="directory for the generated files (default: a temp dir)")
    args = ap.parse_args(argv)
    setup_logging("error")  # the table is the output; window log lines would interleave with it

    out = Path(args.out or tempfile.mkdtemp(prefix="nlpmon-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    ref_path, live_path = out / "reference-events.jsonl", out / "live-events.jsonl"
    ref_events = args.reference_events
    drift_index = ref_events + int(args.events * args.drift_at)
    # One continuous stream: the first part is the reference, the rest is "production".
    events = list(generate_events(ref_events + args.events, seed=7, rate_per_s=args.rate, drift_after=drift_index))
    write_events(ref_path, events[:ref_events])
    write_events(live_path, events[ref_events:])
    drift_ts = events[drift_index]["ts"]
    profile, summary = build_profile(str(ref_path))
    profile_path = out / "profile.json"
    save_profile(profile, profile_path)

    print(f"nlpmon demo — files in {out}")
    print(f"reference: {summary['events']} clean events of model '{profile.model}' -> {profile_path.name}")
    print(f"replaying {args.events} events in {args.window_seconds:.0f}s windows; drift injected from event "
          f"{drift_index - ref_events} on (longer texts, unseen words, lower confidence, slower)\n")
    print(window_header())
    print("-" * 132)
    config = load_config(env={}, overrides={
        "source.kind": "file", "source.path": str(live_path), "reference.paths": [str(profile_path)],
        "window.size_seconds": args.window_seconds, "metrics.enabled": False,
    })  # fmt: skip
    seen_drift = [False]

    def show(r: dict) -> None:
        from datetime import datetime

        start = datetime.fromisoformat(r["window_start"].replace("Z", "+00:00")).timestamp() * 1000
        if not seen_drift[0] and start + args.window_seconds * 1000 > drift_ts:
            print(f"{'':<24} ---- drift injected at {datetime.utcfromtimestamp(drift_ts / 1000):%H:%M:%S} ----")
            seen_drift[0] = True
        print(window_row(r))

    with open(out / "results.jsonl", "wb") as results:
        stats = run_line_source(config, path=str(live_path), output=results, serve_metrics=False, on_result=show)
    print(f"\n{stats['valid']} valid events, {stats['invalid']} invalid, {stats['late']} late, "
          f"{stats['windows']} windows -> {out / 'results.jsonl'}")
    print("Next: `nlpmon replay` on your own log (see README.md), or `make test`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
