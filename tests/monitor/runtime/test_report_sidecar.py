"""``[report] enabled = true``: the Kafka sidecar serves the report pages over its own store (docs/report.md)."""

from __future__ import annotations

import re
import threading
import urllib.request

import pytest

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events
from monitor.runtime.kafka_daemon import KafkaDaemon
from monitor.runtime.shutdown import Shutdown
from tests.monitor.runtime.harness import caught_up, produce, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_the_sidecar_serves_the_report_of_what_it_stored(kafka_broker, profile, tmp_path):
    topic = kafka_broker.new_topic()
    store = f"sqlite:///{tmp_path / 'sidecar.db'}"
    path = write_config(tmp_path / "n.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="rep",
                        store_url=store, profile=profile, extra='[report]\nenabled = true\nhost = "127.0.0.1"\nport = 0\n')
    ends = produce(kafka_broker.bootstrap, topic, generate_events(2400, seed=5, rate_per_s=20, drift_after=800))
    shutdown = Shutdown()
    daemon = KafkaDaemon(load_config(path, env={}), shutdown=shutdown)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: caught_up(store, "rep", topic, ends), 120, "the daemon to checkpoint every record")
        base = f"http://127.0.0.1:{daemon.report_port}"
        assert daemon.report_port != daemon.http_port
        index = urllib.request.urlopen(base + "/", timeout=30).read().decode()
        assert '<a href="/report?model=sentiment&amp;version=1">sentiment</a>' in index
        page = urllib.request.urlopen(base + "/report?model=sentiment&version=1", timeout=60).read().decode()
        lead = re.search(r'<p class="lead[^"]*" id="lead">(.*?)</p>', page).group(1)
        assert "Reference: the profile given." in page  # the daemon's own file profile (reference.paths)
        assert "Input drift since" in lead
    finally:
        shutdown.should_exit = True
        thread.join(60)
    assert not thread.is_alive()
