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
    # Issue 19: the summary says which alerts fired, read from Alertmanager (else Prometheus), and how to keep
    # the stack running.
    (alerts,) = [line for line in lines if line.startswith("alerts")]
    source = "Alertmanager" if alertmanager else "Prometheus"
    if prometheus:
        assert f"read from {source}" in alerts, out.stdout
        assert "KEEP=1 make demo" in out.stdout, out.stdout
    else:
        assert alerts.startswith("alerts: Prometheus is not running"), out.stdout


@pytest.mark.parametrize(("alertmanager", "body", "expected"), [
    # Prometheus alone: its firing and pending alerts, each name once
    (False, {"data": {"alerts": [{"labels": {"alertname": "NlpInputDrift"}, "state": "firing"},
                                 {"labels": {"alertname": "NlpInputDrift"}, "state": "firing"},
                                 {"labels": {"alertname": "NlpEmbeddingDrift"}, "state": "pending"}]}},
     ("Prometheus", [("NlpEmbeddingDrift", "pending"), ("NlpInputDrift", "firing")])),
    # Alertmanager: what was sent to it
    (True, [{"labels": {"alertname": "NlpConfidenceShift"}, "status": {"state": "active"}}],
     ("Alertmanager", [("NlpConfidenceShift", "active")])),
    (True, [], ("Alertmanager", [])),
])  # fmt: skip
def test_alerts_are_read_from_alertmanager_else_prometheus(alertmanager, body, expected, tmp_path):
    import http.server
    import json
    import threading

    from monitor.devkit.demo import alert_summary
    from monitor.devkit.stack import LocalStack, alerts_now

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            wanted = "/api/v2/alerts" if alertmanager else "/api/v1/alerts"
            data = json.dumps(body).encode() if self.path == wanted else b"{}"
            self.send_response(200 if self.path == wanted else 404)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        stack = LocalStack(prometheus=url, alertmanager=url if alertmanager else None, workdir=tmp_path)
        assert alerts_now(stack) == expected
        (line,) = alert_summary(stack)
        assert (f"read from {expected[0]}" in line) and all(name in line for name, _ in expected[1])
        assert ("none fired" in line) == (not expected[1])
    finally:
        server.shutdown()
