"""Size of the SQL store per window and per day: replay generated traffic into a SQLite store and divide.

    .venv/bin/python bench/store_size.py [--hours 24] [--rate 2] [--store URL]

One stream (model, version) of 5-minute time windows; the traffic drifts half-way, so drifted windows carry
drift events. Prints the result JSON per window, drift events per window, and the file's bytes per window and
per day (after VACUUM, so free pages do not count). A PostgreSQL URL reports the tables' total relation size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# First on the path: this script's own directory is there too, and bench/detectors.py would shadow the package.
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from monitor.config import load_config  # noqa: E402
from monitor.devkit.synth.traffic import generate_events, write_events  # noqa: E402
from monitor.ingest.reference import save_profile  # noqa: E402
from monitor.jobs.profile_builder import build_profile  # noqa: E402
from monitor.runtime.line_daemon import run_line_source  # noqa: E402
from sinks.sql import SqlStore  # noqa: E402
from sinks.sql import schema as tables  # noqa: E402


def measure(url: str, hours: float, rate: float, work: Path) -> dict:
    write_events(work / "ref.jsonl", generate_events(5000, seed=1, rate_per_s=rate))
    save_profile(build_profile(str(work / "ref.jsonl"))[0], work / "p.json")
    n = int(hours * 3600 * rate)
    write_events(work / "in.jsonl", generate_events(n, seed=2, rate_per_s=rate, drift_after=n // 2))
    config = load_config(env={}, overrides={
        "source.kind": "file", "source.path": str(work / "in.jsonl"), "reference.paths": [str(work / "p.json")],
        "window.size_seconds": 300, "window.max_future_seconds": 1e9, "output.store": True, "store.url": url,
        "metrics.enabled": False, "logging.level": "warning"})
    run_line_source(config, path=str(work / "in.jsonl"), output=None, serve_metrics=False)
    with SqlStore(url) as store, store.engine.connect() as conn:
        count = lambda t: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()  # noqa: E731
        windows, events = count(tables.window_results), count(tables.drift_events)
        json_bytes = conn.execute(sa.select(sa.func.sum(sa.func.length(sa.cast(tables.window_results.c.result, sa.Text))))).scalar()
        if store.engine.dialect.name == "sqlite":
            conn.commit()
            store.release_space(full=True)
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = Path(store.url.database).stat().st_size
        else:
            size = sum(conn.execute(sa.text(f"SELECT pg_total_relation_size('{t}')")).scalar()
                       for t in ("window_results", "drift_events"))
    per_window = size / windows
    return {"windows": windows, "drift_events": events, "events_per_window": events / windows,
            "result_json_bytes_per_window": json_bytes / windows, "store_bytes_per_window": per_window,
            "store_bytes_per_day_one_stream": per_window * 288}


def main() -> None:
    import logging

    logging.disable(logging.WARNING)  # the replay's per-window log lines (drifted ones are warnings)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rate", type=float, default=2.0, help="events per second")
    parser.add_argument("--store", help="SQLAlchemy URL (default: a new SQLite file in a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'size.db'}"
        for key, value in measure(url, args.hours, args.rate, Path(tmp)).items():
            print(f"{key}: {value:,.1f}" if isinstance(value, float) else f"{key}: {value:,}")


if __name__ == "__main__":
    main()
