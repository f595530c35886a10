"""docs/examples/ci-gate.sh, run by bash as a CI job would, on the generated model and held-out set; and the
GitHub Actions job of docs/ci.md runs that script with the variables it reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor.devkit.synth.traffic import generate_events, write_events

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "docs" / "examples" / "ci-gate.sh"


def _data_sets(workdir: Path) -> None:
    """A reference sample of the traffic, a current set like it, and one that drifted (docs/ci.md, step 1)."""
    if (workdir / "drifted.jsonl").exists():
        return
    write_events(workdir / "reference.jsonl", generate_events(3000, seed=1))
    write_events(workdir / "current.jsonl", generate_events(3000, seed=2))
    write_events(workdir / "drifted.jsonl", generate_events(3000, seed=3, drift_after=0))


def _ci_gate(tiny, workdir: Path, **env: str) -> subprocess.CompletedProcess:
    """The script with the tiny model's paths and a reference and current data set alike, ``nlpmon`` this
    checkout's."""
    _data_sets(workdir)
    variables = {
        # `nlpmon` of this virtual environment, importing this checkout's code.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "HOME": os.environ.get("HOME", str(workdir)),
        "MODEL": str(tiny.model_path),
        "TOKENIZER": str(tiny.tokenizer_dir),
        "HELDOUT": str(tiny.heldout_path),
        "REFERENCE": str(workdir / "reference.jsonl"),
        "CURRENT": str(workdir / "current.jsonl"),
        **env,
    }
    return subprocess.run(["bash", str(SCRIPT)], cwd=workdir, env=variables, capture_output=True, text=True,
                          timeout=300)


def test_the_script_passes_a_good_model_and_fails_a_bar_set_too_high(tiny, tmp_path):
    good = _ci_gate(tiny, tmp_path)
    assert good.returncode == 0, good.stderr
    gates = [line for line in good.stderr.splitlines() if line.startswith("nlpmon reeval: gate ")]
    assert [re.sub(r" [\d.-]+ (<=|>=) ", " ", line).split(" (")[0] for line in gates] == [
        "nlpmon reeval: gate passed: accuracy --min-accuracy 0.85",
        "nlpmon reeval: gate passed: candidate agreement --min-agreement 0.99",
        "nlpmon reeval: gate passed: candidate accuracy drop --max-accuracy-drop 0.01",
    ]
    assert "verdict: no drift" in good.stdout and (tmp_path / "reports" / "data-drift.html").stat().st_size > 0
    assert good.stderr.rstrip().endswith("ci-gate: all gates passed")
    report = json.loads((tmp_path / "reports" / "reeval.json").read_text())
    assert report["accuracy"] == tiny.heldout_accuracy and report["candidate"]["model"]["path"].endswith(
        "build/model_int8.onnx")

    high = _ci_gate(tiny, tmp_path, MIN_ACCURACY="0.9")
    assert high.returncode == 1
    failed = [line for line in high.stderr.splitlines() if "gate failed" in line]
    short = round(0.9 - tiny.heldout_accuracy, 6)
    assert failed == [f"nlpmon reeval: gate failed: accuracy {tiny.heldout_accuracy:g} < --min-accuracy 0.9 "
                      f"(short by {short:g})"]
    assert "all gates passed" not in high.stderr


def test_a_drifted_data_set_fails_before_the_model_is_judged(tiny, tmp_path):
    drifted = _ci_gate(tiny, tmp_path, CURRENT=str(tmp_path / "drifted.jsonl"))
    assert drifted.returncode == 1
    assert "verdict: DRIFT" in drifted.stdout and "nlpmon reeval" not in drifted.stderr
    assert (tmp_path / "reports" / "data-drift.html").stat().st_size > 0  # the artifact that shows what changed


def test_an_unusable_input_exits_2(tiny, tmp_path):
    missing = _ci_gate(tiny, tmp_path, HELDOUT=str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2
    assert "nlpmon reeval: error: " in missing.stderr and "missing.jsonl" in missing.stderr


def test_the_github_actions_job_runs_the_script_with_the_variables_it_reads():
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    steps = yaml.safe_load(block)["jobs"]["gates"]["steps"]
    (gate,) = [s for s in steps if "ci-gate.sh" in s.get("run", "")]
    assert gate["run"] == "bash docs/examples/ci-gate.sh"
    read = set(re.findall(r"^([A-Z_]+)=\$\{\1:-", SCRIPT.read_text(encoding="utf-8"), flags=re.M))
    assert set(gate["env"]) <= read and {"MODEL", "HELDOUT", "MIN_AGREEMENT", "MAX_ACCURACY_DROP"} <= set(gate["env"])
    # The table of docs/ci.md names every variable the script reads.
    assert read <= set(re.findall(r"`([A-Z_]+)`", text))


@pytest.mark.parametrize("bar", ["--min-accuracy", "--min-agreement", "--max-accuracy-drop"])
def test_the_script_sets_the_documented_bars(bar):
    assert f'{bar} "$' in SCRIPT.read_text(encoding="utf-8")
