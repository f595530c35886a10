"""The daemon's side of one worker process: start ``python -m monitor.reeval.worker RUN_DIR``, watch, collect.

The options go to the worker pickled in a private run directory; what comes back is ``outcome.json``
(``monitor.reeval.worker``), read here into an :class:`Outcome` holding a typed
:class:`monitor.results.ReevalReport`. Nothing here decides when to run or where results go: that is the
scheduler's (``monitor.reeval.scheduler``) and the recorder's (``monitor.reeval.recorder``).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from monitor.config.reeval import ReevalOptions
from monitor.reeval.worker import OPTIONS_FILE, OUTCOME_FILE
from monitor.results import ReevalReport

__all__ = ["WorkerProcess", "Outcome", "kill"]

STDERR_FILE = "stderr.log"
STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``success`` with its report, or ``failure``/``timeout`` with the reason."""

    outcome: str
    error: str | None = None
    report: ReevalReport | None = None


def worker_env(threads: int) -> dict:
    """The worker's environment: none of the daemon's secrets (SASL password, store URL, the token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLPMON_")}
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)  # the tokenizer's thread pool
    return env


class WorkerProcess:
    """One started worker: its process, its private run directory and the log its stderr goes to."""

    def __init__(self, command: list[str], options: ReevalOptions):
        """Start the worker on ``options`` in a new session (terminal signals are for the daemon only).

        Raises ``OSError`` when it cannot start; nothing is left behind then.
        """
        self.run_dir = Path(tempfile.mkdtemp(prefix="nlpmon-reeval-"))
        self._stderr = None
        try:
            (self.run_dir / OPTIONS_FILE).write_bytes(pickle.dumps(options))
            self._stderr = open(self.run_dir / STDERR_FILE, "wb")
            self.proc = subprocess.Popen(
                command + [str(self.run_dir)], stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                env=worker_env(options.threads), start_new_session=True,
            )  # fmt: skip
        except OSError:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        """The worker's exit code, or None while it runs."""
        return self.proc.poll()

    def kill(self) -> None:
        kill(self.proc)

    def outcome(self, code: int) -> Outcome:
        """Read what an exited worker reported; a worker that left no outcome crashed (its stderr says why)."""
        try:
            written = json.loads((self.run_dir / OUTCOME_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            written = None
        if written and written.get("outcome") == "success" and isinstance(written.get("result"), dict):
            return Outcome("success", report=ReevalReport.from_dict(written["result"]))
        if written and written.get("outcome") == "failure":
            return Outcome("failure", f"{written.get('error_type', 'error')}: {written.get('error')}")
        tail = (self.run_dir / STDERR_FILE).read_bytes()[-STDERR_TAIL_CHARS:].decode("utf-8", "replace").strip()
        return Outcome("failure", f"worker exited with code {code}" + (f": {tail}" if tail else ""))

    def close(self) -> None:
        """Close the log and remove the run directory (the options and any texts of traffic in it)."""
        if self._stderr is not None:
            self._stderr.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def kill(proc: subprocess.Popen) -> None:
    """Kill a worker and reap it."""
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not take that long
        pass
