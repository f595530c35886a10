"""The process one daemon-triggered re-evaluation runs in: ``python -m monitor.reeval.worker RUN_DIR``.

The scheduler (``monitor.reeval.scheduler``) writes ``RUN_DIR/options.pickle`` (a ``ReevalOptions``) and
starts this module; it writes ``RUN_DIR/outcome.json`` and exits:

- ``{"outcome": "success", "result": ReevalResult.to_dict()}``, exit code 0;
- ``{"outcome": "failure", "error_type": "DataError", "error": "..."}``, exit code 2, when the input is
  unusable (``ReevalError``: missing model, label not in the map, ...).

Anything else (a crash, a kill) leaves no ``outcome.json``; the traceback is on stderr, which the scheduler
captures. The worker lowers its own CPU priority so the consumer keeps its share, and exits when the daemon
that started it is gone (it would otherwise finish a run nobody collects).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import time
from pathlib import Path

__all__ = ["main", "write_outcome", "OPTIONS_FILE", "OUTCOME_FILE"]

OPTIONS_FILE = "options.pickle"
OUTCOME_FILE = "outcome.json"
_NICE = 10


def write_outcome(run_dir: Path, outcome: dict) -> None:
    """Write ``outcome.json`` atomically: the JSON edge of the worker process."""
    tmp = run_dir / (OUTCOME_FILE + ".tmp")
    tmp.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(tmp, run_dir / OUTCOME_FILE)  # the scheduler never reads a half-written file


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """Run the re-evaluation described in ``RUN_DIR/options.pickle``; return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m monitor.reeval.worker RUN_DIR", file=sys.stderr)
        return 64
    run_dir = Path(args[0])
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        os.nice(_NICE)
    except OSError:  # not permitted (or not POSIX): run at normal priority
        pass

    from monitor.reeval.errors import ReevalError
    from monitor.reeval.job import run_reeval

    # The scheduler created the run directory (mode 0700) and wrote the file itself.
    options = pickle.loads((run_dir / OPTIONS_FILE).read_bytes())  # noqa: S301
    try:
        result = run_reeval(options)
    except ReevalError as exc:
        write_outcome(run_dir, {"outcome": "failure", "error_type": type(exc).__name__, "error": str(exc)})
        return 2
    write_outcome(run_dir, {"outcome": "success", "result": result.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
