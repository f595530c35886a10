"""`make demo` runs the live sidecar on its embedded broker: nothing is flagged on clean traffic, the subject
change at the same length is flagged by the embedding test only, the injected drift by everything."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_live_demo_finds_the_subject_change_and_the_injected_drift(tmp_path):
    try:
        from monitor.devkit.embedded_broker import resolve_tansu_bin

        resolve_tansu_bin()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"embedded broker unavailable on CI: {exc}")
        pytest.skip(f"embedded broker unavailable: {exc}")
    out = subprocess.run(
        [sys.executable, "-m", "monitor.devkit.demo", "--duration", "39", "--subject-after", "12", "--drift-after", "27",
         "--window-seconds", "3", "--rate", "250", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    subject = next(i for i, line in enumerate(lines) if "subject change now" in line)
    marker = next(i for i, line in enumerate(lines) if "drift injected now" in line)
    rows = [line for line in lines if line[:4].isdigit()]
    before = [line for line in lines[:subject] if line[:4].isdigit()]
    changed = [line for line in lines[subject + 1 : marker] if line[:4].isdigit()]
    after = [line for line in lines[marker + 1 :] if line[:4].isdigit()]
    assert subject < marker and len(before) >= 2 and len(changed) >= 2 and len(after) >= 2, out.stdout
    assert not any("DRIFT" in line for line in before), out.stdout
    # Windows that closed before the drift: the subject change is the embedding test's alone.
    flags = [line.rsplit("  ", 1)[-1] for line in changed]
    assert any(f.startswith("DRIFT") and "embedding" in f for f in flags), out.stdout
    assert not any("input" in f for f in flags), out.stdout
    assert "DRIFT" in after[-1] and "input" in after[-1], out.stdout
    assert len(rows) == len(before) + len(changed) + len(after)
    # The summary names the window that flagged it and says the shape features stayed quiet.
    summary = lines[lines.index(next(line for line in lines if line.startswith("subject change at "))):]
    assert "first flagged by the embedding test in window" in summary[1], out.stdout
    assert summary[2].startswith("  the shape features and oov_rate stayed quiet"), out.stdout
    assert "http://127.0.0.1:" in out.stdout and "/metrics" in out.stdout
    # Issue 5: with Prometheus and Alertmanager installed, the demo starts both and says where they are.
    from monitor.devkit.stack import find_binaries

    prometheus, alertmanager = find_binaries()
    shown = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()}
    if prometheus:
        assert "http://127.0.0.1:" in shown["prometheus"] and "/alerts" in shown["prometheus"], out.stdout
    if alertmanager:
        assert "http://127.0.0.1:" in shown["alertmanager"], out.stdout
