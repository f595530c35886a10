"""`make demo` runs the live sidecar on its embedded broker: drift is flagged after injection, not before."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_live_demo_finds_the_injected_drift(tmp_path):
    try:
        from monitor.devkit.embedded_broker import resolve_tansu_bin

        resolve_tansu_bin()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"embedded broker unavailable on CI: {exc}")
        pytest.skip(f"embedded broker unavailable: {exc}")
    out = subprocess.run(
        [sys.executable, "-m", "monitor.devkit.demo", "--duration", "30", "--drift-after", "14", "--window-seconds", "3",
         "--rate", "250", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    marker = next(i for i, line in enumerate(lines) if "drift injected now" in line)
    rows = [line for line in lines if line[:4].isdigit()]
    before = [line for line in lines[:marker] if line[:4].isdigit()]
    after = [line for line in lines[marker + 1 :] if line[:4].isdigit()]
    assert len(before) >= 2 and len(after) >= 2, out.stdout
    assert not any("DRIFT" in line for line in before), out.stdout
    assert "DRIFT" in after[-1], out.stdout
    assert len(rows) == len(before) + len(after)
    assert "http://127.0.0.1:" in out.stdout and "/metrics" in out.stdout
    # Issue 5: with Prometheus and Alertmanager installed, the demo starts both and says where they are.
    from monitor.devkit.stack import find_binaries

    prometheus, alertmanager = find_binaries()
    shown = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()}
    if prometheus:
        assert "http://127.0.0.1:" in shown["prometheus"] and "/alerts" in shown["prometheus"], out.stdout
    if alertmanager:
        assert "http://127.0.0.1:" in shown["alertmanager"], out.stdout
