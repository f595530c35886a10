"""This checkout against another one (``--base``), alternated: pipeline events per CPU second, by round.

    .venv/bin/python bench/pipeline_ab.py --base ../perf2-base --rounds 4 --events 100000

Each round runs base then this tree, each in a fresh process pinned to one CPU (``taskset``), through
``bench/pipeline.py``'s ``time_pipeline`` (text features, then text + tokenizer features, both with the
profile's ``oov_rate``), best of ``--repeats`` per process; ``--no-evidence`` runs this tree without the
evidence kept with every window (``[explain] enabled = false``), to compare like for like with a base from
before it existed. On a shared machine read the per-round ratios
(base CPU seconds / this tree's) and their median; the events are ``bench/pipeline.py``'s cached file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CODE = r'''
import json, os, sys, tempfile
sys.argv = ["x"]
from pathlib import Path
import bench.pipeline as bp
from monitor.ingest.reference import save_profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.jobs.profile_builder import ProfileOptions, build_profile
n, repeats = int(os.environ["AB_EVENTS"]), int(os.environ["AB_REPEATS"])
lines = Path(os.environ["AB_LINES"]).read_bytes().splitlines()[:n]
out = {}
for label, tok in (("text features", None), ("text + tokenizer features", bp.tokenizer_dir())):
    profile, _ = build_profile(os.environ["AB_REF"], ProfileOptions(sample_cap=10_000),
                               tokenizer=TokenizerFeaturizer(tok, max_length=512) if tok else None)
    path = Path(tempfile.mkdtemp()) / "profile.json"
    save_profile(profile, path)
    cpu = []
    extra = {"explain": False} if os.environ.get("AB_NO_EVIDENCE") else {}
    for _ in range(repeats):
        bp.time_pipeline(lines, path, tok, 1000, cpu, **extra)
    out[label] = min(cpu)
print(json.dumps(out))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the other checkout (with its .venv)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-evidence", action="store_true",
                    help="this tree with [explain] enabled = false: the same work as a base from before the "
                         "evidence kept with every window existed")
    args = ap.parse_args()
    import sys

    sys.path.insert(0, str(HERE))
    from bench.pipeline import events_file, tokenizer_dir

    env = {**os.environ, "AB_EVENTS": str(args.events), "AB_REPEATS": str(args.repeats), "RAYON_NUM_THREADS": "1",
           "AB_LINES": str(events_file(args.events, drift_after=args.events // 2)),
           "AB_REF": str(events_file(20_000, seed=5))}
    tokenizer_dir()  # build the tiny model once, here, not in both trees
    trees = {"base": Path(args.base).resolve(), "this": HERE}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name, root in trees.items():
            own = {"AB_NO_EVIDENCE": "1"} if name == "this" and args.no_evidence else {}
            out = subprocess.run(["taskset", "-c", "0", str(root / ".venv/bin/python"), "-c", CODE], cwd=root,
                                 env={**env, **own, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                                 check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r} {name}: {runs[name][-1]}", flush=True)
    for label in runs["base"][0]:
        base = [x[label] for x in runs["base"]]
        this = [x[label] for x in runs["this"]]
        ratios = [b / t for b, t in zip(base, this)]
        print(f"{label:<28} base {args.events / statistics.median(base):>8,.0f} events/CPU s, this "
              f"{args.events / statistics.median(this):>8,.0f}; per-round {' / '.join(f'{x:.2f}' for x in ratios)}, "
              f"median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
