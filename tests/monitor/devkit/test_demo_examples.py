"""The demo's subject change (restaurant -> phone reviews) through the real path: a tansu broker, the Kafka daemon,
the SQL store, then ``nlpmon examples`` for the first flagged window reads its most unusual events back from
the broker: phone reviews, fetched by their positions (the store holds no text)."""

from __future__ import annotations

import json
from itertools import islice

import pytest

from monitor.cli import main
from monitor.devkit.demo_traffic import DemoEncoder, demo_events
from monitor.devkit.synth.encoder import SUBJECTS
from monitor.devkit.synth.traffic import write_events
from monitor.ingest.reference import save_profile
from monitor.jobs.profile_builder import build_profile
from sinks.sql import SqlStore
from tests.monitor.runtime.harness import DaemonProcess, caught_up, produce, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _words(text: str) -> set[str]:
    return {w.strip(",.!").lower() for w in text.split()}


def test_examples_of_the_first_flagged_window_are_phone_reviews_from_the_broker(kafka_broker, tmp_path, capsys):
    encoder = DemoEncoder(tmp_path / "encoder")
    write_events(tmp_path / "ref.jsonl", islice(demo_events(encoder, phase="clean", seed=3), 3000))
    profile, _ = build_profile(str(tmp_path / "ref.jsonl"))
    save_profile(profile, tmp_path / "profile.json")
    clean = list(islice(demo_events(encoder, phase="clean", seed=4), 2400))
    subject = list(islice(demo_events(encoder, phase="subject", seed=5), 2400))
    subject_ms = clean[-1]["ts"] + 50
    subject = [dict(e, ts=e["ts"] + subject_ms - subject[0]["ts"], request_id=f"s-{e['request_id']}") for e in subject]
    events = clean + subject
    topic = kafka_broker.new_topic()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    config = write_config(tmp_path / "nlpmon.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="demo",
                          store_url=store_url, profile=tmp_path / "profile.json")
    ends = produce(kafka_broker.bootstrap, topic, events)
    env = {"NLPMON_WINDOW_SIZE_SECONDS": "60", "NLPMON_WINDOW_MIN_EVENTS": "100",
           "NLPMON_WINDOW_MAX_FUTURE_SECONDS": "1000000000", "NLPMON_LOGGING_LEVEL": "info"}
    with DaemonProcess(config, tmp_path / "daemon.log", env=env) as daemon:
        wait_until(lambda: caught_up(store_url, "demo", topic, ends), 120, "the daemon to checkpoint every record",
                   daemon)
        assert daemon.stop() == 0, daemon.log_tail()
    with SqlStore(store_url) as store:
        windows = store.window_evidence(profile.model)
    flagged = [(r, e) for r, e in windows if r["drifted"] and e is not None and e.exemplars
               and r["window_start"] >= _iso(subject_ms - 60_000)]
    assert flagged, [(r["window_start"], r["drifted"]) for r, _ in windows]
    result, evidence = flagged[0]
    assert evidence.exemplar_score == "embedding" and len(evidence.exemplars) == 10

    code = main(["examples", "--model", profile.model, "--window", result["window_start"], "--store", store_url,
                 "--config", str(config), "--format", "json"])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(out) == 10
    assert {o["position"] for o in out} == {e.position for e in evidence.exemplars}
    texts = [o["event"]["text"] for o in out]
    sent = {e["request_id"]: e for e in events}
    assert all(o["event"] == json.loads(json.dumps(sent[o["request_id"]])) for o in out)  # the very events sent
    # Phone reviews: every one of the subject phase, and the clean phase's share of them (the texts without a
    # restaurant word; a short review may hold no subject word at all).
    after = {e["request_id"] for e in subject}
    restaurant = set(SUBJECTS["restaurant"])
    assert all(o["request_id"] in after or not _words(o["event"]["text"]) & restaurant for o in out), texts
    assert sum(bool(_words(t) & set(SUBJECTS["phone"])) for t in texts) >= len(texts) // 2, texts
    # The store never held them: the texts came from the broker, by position.
    with open(tmp_path / "store.db", "rb") as f:
        stored = f.read()
    assert not any(t.encode() in stored for t in texts)


def _iso(ms: int) -> str:
    from monitor.results import iso_ms

    return iso_ms(ms)
