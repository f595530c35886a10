"""`nlpmon ab report`: table and JSON from a real store, exit codes, --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.ab.experiments import ExperimentResult
from monitor.cli import main
from sinks.sql import SqlStore
from tests.monitor.ab.test_experiments import config, run, traffic


@pytest.fixture
def store_with_experiment(tmp_path):
    cfg = config(tmp_path, 'planned_samples = 4000\n[[experiments.guardrails]]\nmetric = "latency_p99_ms"\n'
                 'tolerance = 0.2\nrelative = true\n')
    results = [r for r in run(cfg, traffic(12_000, seed=5, acc=(0.80, 0.70), latency=(10.0, 30.0)))
               if isinstance(r, ExperimentResult)]
    url = f"sqlite:///{tmp_path / 's.db'}"
    with SqlStore(url) as store:
        store.upsert_experiment_results(None, results)
    return url, results[-1].to_dict()


def test_table_report(store_with_experiment, capsys):
    url, latest = store_with_experiment
    assert main(["ab", "report", "--experiment", "exp", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "experiment exp" in out and "metric accuracy (higher is better)" in out
    assert "sample ratio: ok" in out and "a (control)" in out
    assert "DEGRADED" in out  # b is 10 points less accurate
    assert "VALID ONLY ONCE EVERY VARIANT HAS REACHED IT" in out and "valid now" in out
    assert "latency_p99_ms" in out and "BREACHED" in out
    assert f"{latest['samples']}" in out


def test_json_report_is_the_stored_latest_result(store_with_experiment, capsys):
    url, latest = store_with_experiment
    assert main(["ab", "report", "--experiment", "exp", "--store", url, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == latest


def test_unknown_experiment_and_unreachable_store_exit_2(store_with_experiment, tmp_path, capsys):
    url, _ = store_with_experiment
    assert main(["ab", "report", "--experiment", "nope", "--store", url]) == 2
    assert "stored experiments: exp" in capsys.readouterr().err
    bad = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    assert main(["ab", "report", "--experiment", "exp", "--store", bad]) == 2
    assert "cannot reach the store" in capsys.readouterr().err


def test_help_is_truthful():
    out = subprocess.run([sys.executable, "-m", "monitor.cli", "ab", "report", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("--experiment", "--store", "--format", "always-valid", "planned sample size", "Exit 0"):
        assert word in out.stdout
    assert subprocess.run([sys.executable, "-m", "monitor.cli", "ab", "report"], capture_output=True).returncode == 2
