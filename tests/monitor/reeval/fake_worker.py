"""A stand-in for ``python -m monitor.reeval.worker`` that the scheduler tests start instead of the real job.

It speaks the real worker's protocol (``RUN_DIR/options.pickle`` in, ``RUN_DIR/outcome.json`` out) but
behaves as the JSON file given as the model path says: ``{"sleep": s}`` first sleeps, ``{"exit": code,
"stderr": text}`` dies without an outcome (a crash), ``{"error": text}`` reports an unusable input, and
otherwise it reports a success with ``accuracy``/``calibration`` from the file. Like the real job, the
accuracy drop is computed from the baseline in the options, and the options it saw are echoed back.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from monitor.ingest.reference import file_sha256  # noqa: E402
from monitor.reeval.worker import OPTIONS_FILE, write_outcome  # noqa: E402


def main(run_dir: Path) -> int:
    options = pickle.loads((run_dir / OPTIONS_FILE).read_bytes())
    spec = json.loads(Path(options.model).read_text())
    time.sleep(spec.get("sleep", 0))
    if "exit" in spec:
        sys.stderr.write(spec.get("stderr", ""))
        return spec["exit"]
    if "error" in spec:
        write_outcome(run_dir, {"outcome": "failure", "error_type": "DataError", "error": spec["error"]})
        return 2
    accuracy = spec.get("accuracy", 0.8)
    b = options.baseline
    result = {
        "reeval_schema": 1,
        "started_at": "2026-01-01T00:00:00.000Z",
        "model": {"name": options.model_name, "version": options.model_version, "path": str(options.model),
                  "sha256": file_sha256(Path(options.model))},
        "dataset": {"name": options.dataset_name, "path": str(options.data)},
        "n": 10,
        "accuracy": accuracy,
        "macro_f1": spec.get("macro_f1", accuracy - 0.01),
        "ece": spec.get("ece", 0.05),
        "duration_seconds": spec.get("duration_seconds", 1.5),
        "accuracy_drop": None if b is None else b.accuracy - accuracy,
        "baseline": None if b is None else {"source": b.source, "run": b.run, "accuracy": b.accuracy},
        "calibration": spec.get("calibration", {"bins": 2, "counts": [2, 8], "accuracy": [0.5, 0.875],
                                                "mean_confidence": [0.4, 0.9]}),
        "options_seen": {"model_name": options.model_name, "model_version": options.model_version,
                         "dataset_name": options.dataset_name, "label_map": options.label_map,
                         "intra_op_threads": options.intra_op_threads, "max_length": options.max_length,
                         "candidate": None if options.candidate is None else str(options.candidate),
                         "traffic_texts": list(options.traffic_texts)},
    }
    write_outcome(run_dir, {"outcome": "success", "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
