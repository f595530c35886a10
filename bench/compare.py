"""``compare`` on two data sets of texts: time and peak memory, against Evidently's DataDriftPreset.

    .venv/bin/python bench/compare.py                       # 100k vs 100k texts, median of 3
    .venv/bin/python bench/compare.py --n 20000 --repeats 5
    .venv/bin/python bench/compare.py --rss 100000 1000000  # + peak RSS of `nlpmon compare` on N-line JSONL files

Same process, same texts (``make_texts``: the current side drifted), interleaved repeats, medians:
- ``compare(list, list)``: reference profile + one-window pipeline + detectors (monitor.api);
- the bare minimum in the same process: ``detectors.text_features`` over both sides (the features alone);
- Evidently's ``Report([DataDriftPreset()])`` on the same texts as a text column (its text drift is a
  domain classifier: TF-IDF + a linear model, ROC AUC), when it imports (``pip install evidently``).
Peak memory is what ``tracemalloc`` sees above the inputs (numpy's buffers included), one run each.
``--rss``: peak RSS (``ru_maxrss``) of ``nlpmon compare REF CUR`` in a fresh process on JSONL files of N lines
each side: bounded memory means 1M lines take about what 100k take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry (nothing leaves this machine anyway)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from detectors.text_features import text_features  # noqa: E402
from monitor.api import compare  # noqa: E402
from monitor.devkit.synth.model import make_texts  # noqa: E402


def evidently_runner():
    """A function running Evidently's DataDriftPreset on two lists of texts, or the reason it cannot run."""
    try:
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except Exception as exc:  # not installed, or broken against this pandas (0.7 needs pandas < 3)
        return None, f"{type(exc).__name__}: {exc}"
    definition = DataDefinition(text_columns=["text"])

    def run(reference: list[str], current: list[str]) -> dict:
        ref = Dataset.from_pandas(pd.DataFrame({"text": reference}), data_definition=definition)
        cur = Dataset.from_pandas(pd.DataFrame({"text": current}), data_definition=definition)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Report([DataDriftPreset()]).run(cur, ref).dict()

    import evidently

    return run, f"evidently {evidently.__version__}, pandas {pd.__version__}"


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def in_process(n: int, repeats: int) -> None:
    t0 = time.perf_counter()
    reference, current = make_texts(n, seed=1)[0], make_texts(n, seed=3, drift=True)[0]
    print(f"{n:,} reference vs {n:,} current texts (current drifted), generated in {time.perf_counter() - t0:.0f} s")
    evidently, about = evidently_runner()
    print(f"Evidently: {about}" if evidently else f"Evidently not run: {about}")
    tools = {"compare": lambda: compare(reference, current, progress=False),
             "text_features only": lambda: (text_features(reference), text_features(current))}
    if evidently is not None:
        tools["Evidently DataDriftPreset"] = lambda: evidently(reference, current)
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeats):  # interleaved: a busy machine slows every tool alike
        for name, fn in tools.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    report = compare(reference, current, progress=False)
    print(f"compare: drifted={report.drifted}, {len(report.drifted_tests)}/{len(report.tests)} tests flagged")
    if evidently is not None:
        drift = next(m for m in evidently(reference, current)["metrics"] if m["metric_name"].startswith("ValueDrift"))
        print(f"Evidently: {drift['metric_name']}: {drift['value']:.3f}")
    base = statistics.median(times["compare"])
    print(f"\n{'tool':<28} {'median s':>9} {'vs compare':>10} {'peak MiB (tracemalloc)':>23}")
    for name, fn in tools.items():
        med = statistics.median(times[name])
        print(f"{name:<28} {med:>9.2f} {med / base:>9.2f}x {peak_bytes(fn) / 2**20:>23.1f}")


def peak_rss(sizes: list[int]) -> None:
    from monitor.devkit.synth.traffic import generate_events, write_events

    print("\npeak RSS of `nlpmon compare REF CUR` (fresh process each; JSONL events, current drifted after half)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            ref, cur = Path(tmp) / f"ref-{n}.jsonl", Path(tmp) / f"cur-{n}.jsonl"
            write_events(ref, generate_events(n, seed=1))
            write_events(cur, generate_events(n, seed=2, drift_after=n // 2))
            code = ("import resource, sys; from monitor.cli import main; rc = main(['compare', sys.argv[1], sys.argv[2], "
                    "'--format', 'json']); print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
                    "file=sys.stderr); sys.exit(rc)")
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code, str(ref), str(cur)], cwd=ROOT, capture_output=True,
                                 text=True)
            elapsed = time.perf_counter() - t
            rss = int(next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("RSS_KB")))
            print(f"  {n:>9,} lines each side: peak RSS {rss / 1024:7.1f} MiB, {elapsed:6.1f} s, exit {out.returncode}")
            ref.unlink(), cur.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="texts on each side (default 100000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each tool (default 3)")
    ap.add_argument("--rss", type=int, nargs="*", metavar="N", help="also peak RSS of `nlpmon compare` on N-line files")
    args = ap.parse_args()
    in_process(args.n, args.repeats)
    if args.rss:
        peak_rss(args.rss)


if __name__ == "__main__":
    main()
