"""``nlpmon report``: the file from a real store; one-line errors and exit 2 for unknown or bad parameters."""

from __future__ import annotations

import pytest

from monitor.cli import main
from sinks.sql import SqlStore
from tests.fixtures.report_data import fill_store


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'nlpmon.db'}"
    with SqlStore(url) as store:
        store.create_schema()
        info = fill_store(store, windows=24, drift_from=20, segments=())
    return url, info


def test_report_writes_a_self_contained_file(store_url, tmp_path, capsys):
    url, info = store_url
    out = tmp_path / "report.html"
    assert main(["report", "--model", "sentiment", "--version", "3", "--store", url, "-o", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Input drift since" in page and "<script src=" not in page
    assert capsys.readouterr().err.startswith(f"wrote {out}: 24 windows of sentiment version 3, ")
    assert main(["report", "--model", "sentiment", "--window", info["first_drifted"], "--store", url, "-o", "-"]) == 0
    assert f"Input drift since {info['first_drifted'][11:16]}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "nlpmon: error: no stored windows for model 'nope'\n"),
    (["--model", "sentiment", "--window", "2020-01-01T00:00:00Z"], "has no window starting at 2020-01-01T00:00:00Z\n"),
    (["--model", "sentiment", "--since", "someday"], "since 'someday' is not a time"),
    (["--model", "sentiment", "--window", "1764064800000", "--until", "2h"], "--until goes with --since"),
    ([], "--model is required"),
])  # fmt: skip
def test_unknown_or_bad_exits_2_with_one_line(store_url, tmp_path, capsys, argv, message):
    url, _ = store_url
    assert main(["report", *argv, "--store", url, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r.html").exists()


def test_a_missing_store_is_exit_2_and_never_created(tmp_path, capsys):
    assert main(["report", "--model", "m", "--store", f"sqlite:///{tmp_path / 'typo.db'}"]) == 2
    assert "no SQLite database" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()


def test_report_serve_answers_until_sigterm(store_url):
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    url, _ = store_url
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "report", "serve", "--store", url, "--host", "127.0.0.1",
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(re.search(r"url=http://127\.0\.0\.1:(\d+)/", line).group(1))
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30).read() == b"ok\n"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/report?model=sentiment&version=3", timeout=60).read()
        assert b"Input drift since" in page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
