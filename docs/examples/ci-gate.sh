#!/usr/bin/env bash
# Gate a data set and a quantized model before they ship (docs/ci.md).
#
# 1. the data set (CURRENT: this week's dump, a fine-tuning corpus, an evaluation set) must be like the
#    traffic the model serves (REFERENCE: a sample of it, or a stored profile): nlpmon compare, exit 1 on drift;
# 2. the model is exported to INT8 (drop this step when the build exports CANDIDATE itself);
# 3. the model must still meet its bar on the labelled held-out set, and its INT8 export must agree with it
#    and lose no more than MAX_ACCURACY_DROP of accuracy: nlpmon reeval with gates.
#
# Exit status: 0 when every gate passed; 1 when one failed (the line above says which and by how much);
# 2 when an input was unusable (missing model, unreadable data). Every setting is an environment variable.
# (No NLPMON_ prefix here: nlpmon reads every NLPMON_* variable as a config key.)
set -euo pipefail

REFERENCE=${REFERENCE:-data/reference.jsonl}
CURRENT=${CURRENT:-data/current.jsonl}
MODEL=${MODEL:-model/model.onnx}
TOKENIZER=${TOKENIZER:-model/tokenizer}
HELDOUT=${HELDOUT:-data/heldout.jsonl}
CANDIDATE=${CANDIDATE:-build/model_int8.onnx}
MIN_ACCURACY=${MIN_ACCURACY:-0.85}
MIN_AGREEMENT=${MIN_AGREEMENT:-0.99}
MAX_ACCURACY_DROP=${MAX_ACCURACY_DROP:-0.01}
REPORTS=${REPORTS:-reports}

mkdir -p "$REPORTS" "$(dirname "$CANDIDATE")"

# 1. The data set. The report (what changed, as the daemon's report draws it) goes to the artifacts too.
nlpmon compare "$REFERENCE" "$CURRENT" --fail-on drift -o "$REPORTS/data-drift.html"

# 2. The INT8 export.
nlpmon quantize "$MODEL" -o "$CANDIDATE"

# 3. The model and its INT8 export. The report goes to a file for the job's artifacts; the gate lines
#    (one per bar, on stderr) go to the log.
nlpmon reeval --model "$MODEL" --tokenizer "$TOKENIZER" --data "$HELDOUT" --candidate "$CANDIDATE" \
    --min-accuracy "$MIN_ACCURACY" --min-agreement "$MIN_AGREEMENT" --max-accuracy-drop "$MAX_ACCURACY_DROP" \
    --format json --quiet > "$REPORTS/reeval.json"

echo "ci-gate: all gates passed" >&2
