"""The Kafka sidecar against the real broker and real databases.

The central claim (docs/kafka.md): a daemon SIGKILLed at arbitrary points, mid-checkpoint included, and
restarted, stores exactly the same window results as an uninterrupted run over the same topic.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from kafka import KafkaConsumer

from monitor.devkit.synth.traffic import generate_events, write_events
from sinks.sql import SqlStore
from sinks.sql.labels import label_results
from tests.fixtures.databases import _fresh_postgres_schema

from .harness import (
    DaemonProcess,
    all_results,
    caught_up,
    committed,
    http_status,
    produce,
    wait_until,
    write_config,
)  # fmt: skip

pytestmark = pytest.mark.integration
MODELS = ["sentiment", "intent"]
# An experiment on the sentiment traffic: its cumulative state lives in the checkpoints too (docs/experiments.md).
AB = ('[[experiments]]\nname = "crash-ab"\nmodel = "sentiment"\nvariants = {a = 50, b = 50}\nmetric = "confidence"\n'
      'mde = 0.02\n[[experiments.guardrails]]\nmetric = "latency_p99_ms"\ntolerance = 0.5\nrelative = true\n')
# Late label events joined by request id (docs/results.md, Labels results): the join's state is checkpointed too,
# and with refresh_calibration the accuracy estimator's evidence (the recent tallies) and each tally's estimate.
LABELS = '[labels]\nenabled = true\nmax_delay_seconds = 60\nrefresh_calibration = true\n'


def _events(n: int, seed: int, segments: dict[str, float] | None = None) -> list[dict]:
    """Two models interleaved by time; sentiment drifts in its second half. Keyed by model on the topic.

    Label events for 40% of the predictions, 0 to 90 s later (the join waits 60 s: some come too late), some
    twice, some before their prediction, some for ids never predicted. ``segments``: intent's events carry
    these segments (sentiment's none).
    """
    labels = {"label_event_share": 0.4, "label_delay_ms": (0, 90_000)}
    a = list(generate_events(n, seed=seed, rate_per_s=20, drift_after=n // 2, variants={"a": 0.5, "b": 0.5}, **labels))
    b = list(generate_events(n // 2, seed=seed + 1, rate_per_s=10, model="intent", version="7", segments=segments,
                            **labels))
    extra = []
    for i, e in enumerate(a):
        if e.get("kind") == "label" and i % 13 == 0:
            extra.append(dict(e, ts=e["ts"] + 1_000, label="negative"))  # a duplicate: the first one wins
        elif e.get("kind") is None and i % 17 == 0:
            extra.append({"kind": "label", "ts": e["ts"] - 2_000, "model": e["model"], "request_id": e["request_id"],
                          "label": "positive"})  # before its prediction
        elif i % 101 == 0:
            extra.append({"kind": "label", "ts": e["ts"], "model": e["model"], "request_id": f"ghost-{i}",
                          "label": "positive"})  # an id never predicted
    return sorted(a + b + extra, key=lambda e: e["ts"])


@pytest.fixture(params=["sqlite", "postgresql"])
def two_stores(request, tmp_path):
    """Two empty stores of the same backend: one for the reference run, one for the crashed one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    with _fresh_postgres_schema(base) as a, _fresh_postgres_schema(base) as b:
        yield a, b


def _run_to_end(cfg, log, store_url, group, topic, ends, env=None, poison=None):
    with DaemonProcess(cfg, log, env, poison=poison) as d:
        wait_until(lambda: caught_up(store_url, group, topic, ends), 90, "the daemon to checkpoint every record", d)
        assert d.stop() == 0, d.log_tail()
        return d


MARKER = "ZZPOISONZZ"  # the featurizer of tests/monitor/runtime/poison_daemon.py raises on it


def _hostile_events(events: list[dict]) -> list[dict]:
    """``events`` plus, on sentiment's partition: late events, poison records, and a stream that goes quiet."""
    quiet = list(generate_events(300, seed=21, rate_per_s=5, model="quiet", version="1"))  # the first minute only
    out = []
    for i, e in enumerate(sorted(events + quiet, key=lambda e: e["ts"])):
        out.append(e)
        if e.get("kind") == "label":  # label events are not predictions: no late or poison copies of them
            continue
        if e["model"] == "sentiment" and i % 97 == 0:
            out.append(dict(e, ts=e["ts"] - 60_000))  # its window closed a while ago: late
        if e["model"] == "sentiment" and i % 1201 == 600:
            out.append(dict(e, text=f"poison {MARKER} record"))
    return out


def _key(e: dict) -> str:
    return "sentiment" if e["model"] == "quiet" else e["model"]


# Drift per segment on: intent's segments are streams of their own, the fourth and later folded into __other__,
# so segment admission, folding and the segment streams' windows are in the checkpoints too.
SEGMENTS = {"en": 0.5, "fr": 0.3, "de": 0.15, "pt": 0.05}
SEGMENT_ENV = {"NLPMON_WINDOW_BY_SEGMENT": "true", "NLPMON_WINDOW_MAX_SEGMENTS": "3"}

SECRET = "Qzxwvutsr"  # in some texts of the encoder case: must reach no store, checkpoint or log
# In about one event per window, fewer than the evidence's privacy floor (explain.min_token_events = 5): as a
# word (lower-cased, as the evidence counts words) it must reach no store, checkpoint or log either.
RARE = "Wvqrarezz"


@pytest.mark.parametrize("embedding", ["off", "encoder"])
def test_sigkill_at_arbitrary_points_gives_the_same_results(kafka_broker, profile, two_stores, tmp_path, embedding,
                                                            request):
    store_a, store_b = two_stores
    topic = kafka_broker.new_topic(partitions=3)
    events = _hostile_events(_events(6000, seed=5, segments=SEGMENTS))
    extra = AB
    if embedding == "encoder":
        # [embedding] model: the windows' sampled texts are embedded by the daemon's worker thread; the
        # checkpoints' barriers make the embedding samples part of the exactly-once state.
        profile, tables = request.getfixturevalue("encoder_profile")
        extra = AB + tables
        events = [dict(e, text=f"{e['text']} {SECRET}") if i % 40 == 0 and e.get("text") else e
                  for i, e in enumerate(events)]
    events = [dict(e, text=f"{e['text']} {RARE}") if i % 997 == 500 and e.get("text") else e
              for i, e in enumerate(events)]
    n_poison = sum(MARKER in (e.get("text") or "") for e in events)
    garbage = [b"not json", b'{"ts": 1764000000, "model": "sentiment", "version": "1"}',
               b'{"model": "sentiment", "version": "1", "ts": "x", "prediction": "p"}']
    thirds = [events[:3000], events[3000:6000], events[6000:]]

    # The crashed run: produce a third, start, SIGKILL once something is durable; more traffic arrives while
    # it is down; restart and SIGKILL in the middle of a checkpoint transaction; restart and run to the end.
    group = "crashy"
    cfg = write_config(tmp_path / "b.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group=group, store_url=store_b,
                       profile=profile, extra=extra + LABELS)
    ends = produce(kafka_broker.bootstrap, topic, thirds[0], garbage, key_of=_key)
    with DaemonProcess(cfg, tmp_path / "b1.log", SEGMENT_ENV, poison=MARKER) as d:
        wait_until(lambda: sum(committed(store_b, group, topic, 3).values()) > 800, 60, "a first checkpoint", d)
        d.kill()
    ends = produce(kafka_broker.bootstrap, topic, thirds[1], key_of=_key)
    with DaemonProcess(cfg, tmp_path / "b2.log", SEGMENT_ENV, checkpoint_pause=2, poison=MARKER) as d:
        before = sum(committed(store_b, group, topic, 3).values())
        wait_until(lambda: sum(1 for e in d.logs() if e.get("msg") == "checkpoint in progress") >= 3, 60, "a checkpoint in progress", d)
        d.kill()  # inside the transaction: nothing of it may become visible
    mid = sum(committed(store_b, group, topic, 3).values())
    assert mid >= before
    ends = produce(kafka_broker.bootstrap, topic, thirds[2], key_of=_key)
    with DaemonProcess(cfg, tmp_path / "b3.log", SEGMENT_ENV, poison=MARKER) as d:
        wait_until(lambda: sum(committed(store_b, group, topic, 3).values()) > mid, 60, "progress after restart", d)
        d.kill()
    _run_to_end(cfg, tmp_path / "b4.log", store_b, group, topic, ends, env=SEGMENT_ENV, poison=MARKER)

    # The reference run: same topic, its own group and store, never interrupted.
    cfg_a = write_config(tmp_path / "a.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="steady", store_url=store_a,
                         profile=profile, extra=extra + LABELS)
    steady = _run_to_end(cfg_a, tmp_path / "a.log", store_a, "steady", topic, ends, env=SEGMENT_ENV, poison=MARKER)

    models = MODELS + ["quiet"]
    expected, got = all_results(store_a, models), all_results(store_b, models)
    assert len(expected) >= 15  # both models, windows of 30 s of event time
    assert any(r["drifted"] for r in expected) and any(r["tested"] and not r["drifted"] for r in expected)
    # oov_rate (the profile's vocabulary) is in the windows, their reservoirs and so every checkpoint
    assert any(r["tested"] and r["drift"]["input"]["features"]["oov_rate"]["drifted"] for r in expected)
    assert sum(r["invalid"] for r in expected) == 2  # two of the three garbage records name the stream
    assert sum(r["late"] for r in expected) >= 20
    # The quiet stream's windows all closed (it stopped after a minute; sentiment moved its partition on).
    assert sum(r["events"] for r in expected if r["model"] == "quiet") == 300
    # intent's first three segments have their own windows, the fourth is folded; sentiment has none.
    segments = {r.get("segment") for r in expected if r["model"] == "intent"}
    assert len(segments) == 4 and "__other__" in segments and None not in segments
    assert {r.get("segment") for r in expected if r["model"] != "intent"} == {None}
    assert 2000 < sum(r["events"] for r in expected if r["model"] == "intent") <= 3000  # the last windows stay open
    # Poison records: isolated, logged by type only, never a crash; the windows are as without them.
    poisoned = [e for e in steady.logs() if e.get("msg", "").startswith("poison record isolated")]
    assert len(poisoned) == n_poison >= 4 and not any(MARKER in line for line in steady.log.read_text().splitlines())
    assert got == expected
    # The evidence of every window (docs/evidence.md) is exactly-once like its result.
    with SqlStore(store_a) as a, SqlStore(store_b) as b:
        evidence_expected = [row for m in models for row in a.window_evidence(m)]
        evidence_got = [row for m in models for row in b.window_evidence(m)]
    assert len(evidence_expected) == len(expected) and all(ev is not None for _, ev in evidence_expected)
    assert any(ev.tokens_rising for _, ev in evidence_expected)
    assert all(ev.exemplars for doc, ev in evidence_expected if doc["model"] == "sentiment")
    assert evidence_got == evidence_expected
    _assert_rare_word_not_stored(store_b, topic, [tmp_path / f"b{i}.log" for i in range(1, 5)])
    with SqlStore(store_a) as a, SqlStore(store_b) as b:
        ab_expected, ab_got = a.experiment_results("crash-ab"), b.experiment_results("crash-ab")
    assert len(ab_expected) >= 5 and ab_expected[-1]["comparisons"]["b"]["always_valid"]["looks"] == len(ab_expected)
    assert ab_got == ab_expected  # the experiment's cumulative state survived every SIGKILL exactly
    with SqlStore(store_a) as a, SqlStore(store_b) as b:
        labels_expected = [r for m in MODELS for r in label_results(a, m)]
        labels_got = [r for m in MODELS for r in label_results(b, m)]
    # Windows whose label period closed before the end of the topic (the daemon never flushes them partial).
    assert len(labels_expected) >= 10 and not any(r["partial"] for r in labels_expected)
    assert sum(r["labelled"] for r in labels_expected) >= 1000 and sum(r["expired"] for r in labels_expected) > 0
    assert sum(r["duplicates"] for r in labels_expected) > 0
    # the estimator's state is in the comparison: labels results carry estimates and intervals
    assert sum(r.get("estimated_accuracy_low") is not None for r in labels_expected) >= 5
    assert labels_got == labels_expected  # the join's waiting predictions and labels survived every SIGKILL
    if embedding == "encoder":
        tested = [r for r in expected if r["model"] == "sentiment" and r["tested"]]
        assert tested and all(r["drift"]["embedding"]["window_n"] >= 2 for r in tested)
        _assert_no_text_stored(store_b, topic, [tmp_path / f"b{i}.log" for i in range(1, 5)])


def _assert_no_text_stored(store_url: str, topic: str, logs) -> None:
    """The sampled texts went into checkpoints as projected floats only: no text in SQL, checkpoints or logs."""
    import msgspec

    with SqlStore(store_url) as store:
        cps = store.load_checkpoints("crashy", [(topic, p) for p in range(3)])
        stored = json.dumps(all_results(store_url, MODELS + ["quiet"]))
    assert cps and SECRET not in stored
    for _, state in cps.values():
        assert SECRET.encode() not in state
        assert "embeddings" in json.dumps(msgspec.msgpack.decode(state), default=lambda b: "bytes")
    if store_url.startswith("sqlite:///"):
        from pathlib import Path

        assert SECRET.encode() not in Path(store_url.removeprefix("sqlite:///")).read_bytes()
    for log in logs:
        assert SECRET not in log.read_text(errors="replace")


def _assert_rare_word_not_stored(store_url: str, topic: str, logs) -> None:
    """A word in fewer events of a window than the privacy floor reaches no SQL row, checkpoint or log."""
    import sqlalchemy as sa

    rare = RARE.lower()
    with SqlStore(store_url) as store:
        cps = store.load_checkpoints("crashy", [(topic, p) for p in range(3)])
        with store.engine.connect() as conn:
            rows = json.dumps([[str(v) for v in row] for t in ("window_results", "window_evidence")
                               for row in conn.execute(sa.text(f"SELECT * FROM {t}"))])
    assert cps and "tokens_rising" in rows and rare not in rows and RARE not in rows
    for _, state in cps.values():
        assert rare.encode() not in state and RARE.encode() not in state
    for log in logs:
        assert rare not in log.read_text(errors="replace").lower()


def test_rebalance_second_daemon_joins_mid_stream(kafka_broker, profile, tmp_path):
    topic = kafka_broker.new_topic(partitions=4)
    events = _events(4000, seed=8)
    extra = [dict(e, model="ner", version="2") for e in generate_events(2000, seed=10, rate_per_s=20)]
    events = sorted(events + extra, key=lambda e: e["ts"])
    models = MODELS + ["ner"]
    half = len(events) // 2
    store_a, store_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    cfg = write_config(tmp_path / "b.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="pair", store_url=store_b, profile=profile)
    ends = produce(kafka_broker.bootstrap, topic, events[:half])
    with DaemonProcess(cfg, tmp_path / "b1.log") as first:
        wait_until(lambda: sum(committed(store_b, "pair", topic, 4).values()) > 500, 60, "the first daemon to start", first)
        with DaemonProcess(cfg, tmp_path / "b2.log") as second:
            wait_until(lambda: any(e.get("msg") == "partitions assigned" for e in second.logs()), 60, "the second daemon to get partitions", second)
            ends = produce(kafka_broker.bootstrap, topic, events[half:])
            wait_until(lambda: caught_up(store_b, "pair", topic, ends), 90, "both daemons to finish", second)
            assert second.stop() == 0
        assert first.stop() == 0
    revoked = [e for e in first.logs() if e.get("msg") == "partitions revoked"]
    assert revoked, "the first daemon must have handed partitions over"

    cfg_a = write_config(tmp_path / "a.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="solo", store_url=store_a, profile=profile)
    _run_to_end(cfg_a, tmp_path / "a.log", store_a, "solo", topic, ends)
    expected, got = all_results(store_a, models), all_results(store_b, models)
    assert len(expected) >= 10
    assert got == expected  # no window lost or duplicated by the hand-over


def test_dead_letter_and_output_topics(kafka_broker, profile, tmp_path):
    topic, dlq, out = kafka_broker.new_topic(partitions=2), kafka_broker.new_topic(), kafka_broker.new_topic()
    store = f"sqlite:///{tmp_path / 's.db'}"
    bad = [b"\xff\xfe not utf8", b'{"ts": 1764000000, "model": "sentiment", "prediction": "p", "latency_ms": -3}']
    ends = produce(kafka_broker.bootstrap, topic, _events(1500, seed=3), bad)
    cfg = write_config(tmp_path / "c.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="g", store_url=store,
                       profile=profile, extra="")
    text = cfg.read_text().replace("[store]", f'dead_letter_topic = "{dlq}"\noutput_topic = "{out}"\n[store]')
    cfg.write_text(text)
    _run_to_end(cfg, tmp_path / "c.log", store, "g", topic, ends)

    consumer = KafkaConsumer(dlq, out, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    records = list(consumer)
    consumer.close()
    dead = [r for r in records if r.topic == dlq]
    published = [r for r in records if r.topic == out]
    assert sorted(r.value for r in dead) == sorted(bad)  # the original bytes
    reasons = sorted(dict(r.headers)["nlpmon-reason"].decode() for r in dead)
    assert reasons == ["malformed_json", "negative_latency"]
    stored = all_results(store, MODELS)
    assert sorted(json.loads(r.value)["window_start"] + r.key.decode() for r in published) == sorted(
        r["window_start"] + r["model"] for r in stored)


def test_history_cli_prints_stored_windows(kafka_broker, profile, tmp_path, capsys):
    from monitor.cli import main

    topic = kafka_broker.new_topic()
    store = f"sqlite:///{tmp_path / 'h.db'}"
    ends = produce(kafka_broker.bootstrap, topic, _events(1500, seed=4))
    cfg = write_config(tmp_path / "h.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="h", store_url=store, profile=profile)
    _run_to_end(cfg, tmp_path / "h.log", store, "h", topic, ends)
    stored = all_results(store, ["sentiment"])
    assert main(["history", "--model", "sentiment", "--store", store, "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == stored
    assert main(["history", "--model", "sentiment", "--store", store, "--since", stored[-1]["window_start"]]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 and "window start" in table[0]
    assert main(["history", "--model", "nobody", "--store", store]) == 2  # unknown: the stored ones are listed
    assert "no stored windows for model 'nobody' (stored models: intent, sentiment)" in capsys.readouterr().err


def test_readyz_and_gauges_while_running(kafka_broker, profile, tmp_path):
    topic = kafka_broker.new_topic()
    store = f"sqlite:///{tmp_path / 'r.db'}"
    ends = produce(kafka_broker.bootstrap, topic, _events(600, seed=6))
    cfg = write_config(tmp_path / "r.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="r", store_url=store, profile=profile)
    with DaemonProcess(cfg, tmp_path / "r.log") as d:
        wait_until(lambda: caught_up(store, "r", topic, ends), 60, "catch-up", d)
        port = next(e["url"].rsplit(":", 1)[1].split("/")[0] for e in d.logs() if e.get("msg") == "serving metrics")
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_status(base + "/readyz") == 200, 20, "readiness", d)
        body = urllib.request.urlopen(base + "/metrics", timeout=2).read().decode()
        assert "nlpmon_kafka_connected 1.0" in body and "nlpmon_db_connected 1.0" in body
        assert f'nlpmon_consumer_lag{{partition="0",topic="{topic}"}} 0.0' in body
        assert urllib.request.urlopen(base + "/healthz", timeout=2).status == 200
        assert d.stop() == 0


def _metric(body: str, name: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _scrape(port: str) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return ""


def _port(d: DaemonProcess) -> str:
    wait_until(lambda: any(e.get("msg") == "serving metrics" for e in d.logs()), 30, "the HTTP server", d)
    return next(e["url"].rsplit(":", 1)[1].split("/")[0] for e in d.logs() if e.get("msg") == "serving metrics")


def test_database_outage_pauses_consumption_and_loses_nothing(kafka_broker, profile, postgres_outage, tmp_path):
    topic = kafka_broker.new_topic(partitions=2)
    events = _events(5000, seed=12)
    cfg = write_config(tmp_path / "o.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="o",
                       store_url=postgres_outage.url, profile=profile)
    cfg.write_text(cfg.read_text().replace("[checkpoint]\n", "[checkpoint]\nmax_pending_events = 1000\nretry_max_seconds = 1\n"))
    ends = produce(kafka_broker.bootstrap, topic, events[:2000])
    with DaemonProcess(cfg, tmp_path / "o.log") as d:
        port = _port(d)
        wait_until(lambda: caught_up(postgres_outage.url, "o", topic, ends), 60, "the first part", d)
        postgres_outage.cut()
        ends = produce(kafka_broker.bootstrap, topic, events[2000:])
        wait_until(lambda: _metric(_scrape(port), "nlpmon_consumption_paused") == 1.0, 60, "backpressure", d)
        body = _scrape(port)
        assert _metric(body, "nlpmon_db_connected") == 0.0
        assert http_status(f"http://127.0.0.1:{port}/readyz") == 503
        assert d.popen.poll() is None  # no crash
        postgres_outage.restore()
        wait_until(lambda: caught_up(postgres_outage.url, "o", topic, ends), 90, "recovery and catch-up", d)
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 30, "ready again", d)
        assert d.stop() == 0
    msgs = [e.get("msg") for e in d.logs()]
    assert "database unreachable; results wait in memory" in msgs and "consumption resumed" in msgs

    store_a = f"sqlite:///{tmp_path / 'a.db'}"
    cfg_a = write_config(tmp_path / "a.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="ref", store_url=store_a, profile=profile)
    _run_to_end(cfg_a, tmp_path / "a.log", store_a, "ref", topic, ends)
    assert all_results(postgres_outage.url, MODELS) == all_results(store_a, MODELS)


def test_broker_paused_then_resumed(private_kafka_broker, profile, tmp_path):
    broker = private_kafka_broker
    topic = broker.new_topic()
    events = _hostile_events(_events(3000, seed=13))
    garbage = [b"not json", b'{"model": "sentiment", "version": "1", "ts": "x", "prediction": "p"}']
    store = f"sqlite:///{tmp_path / 'p.db'}"
    cfg = write_config(tmp_path / "p.toml", bootstrap=broker.bootstrap, topic=topic, group="p", store_url=store, profile=profile)
    ends = produce(broker.bootstrap, topic, events[:1500], garbage, key_of=_key)
    with DaemonProcess(cfg, tmp_path / "p.log") as d:
        port = _port(d)
        wait_until(lambda: caught_up(store, "p", topic, ends), 60, "the first part", d)
        with broker.paused():
            wait_until(lambda: _metric(_scrape(port), "nlpmon_kafka_connected") == 0.0, 60, "the broker to count as unreachable", d)
            assert http_status(f"http://127.0.0.1:{port}/readyz") == 503
            assert http_status(f"http://127.0.0.1:{port}/healthz") == 200  # alive: do not restart me
        ends = produce(broker.bootstrap, topic, events[1500:], garbage, key_of=_key)
        wait_until(lambda: caught_up(store, "p", topic, ends), 120, "catch-up after the broker came back", d)
        wait_until(lambda: _metric(_scrape(port), "nlpmon_kafka_connected") == 1.0, 30, "reconnection", d)
        assert d.stop() == 0
    got = all_results(store, MODELS + ["quiet"])
    assert len(got) >= 5 and sum(r["invalid"] for r in got) >= 1 and sum(r["late"] for r in got) >= 5  # the last garbage waits in an open window
    # The same topic read by an uninterrupted daemon: the same results, invalid and late counts included
    # (poll boundaries moved with the freeze; attribution follows the record sequence, not the polls).
    store_a = f"sqlite:///{tmp_path / 'a.db'}"
    cfg_a = write_config(tmp_path / "a.toml", bootstrap=broker.bootstrap, topic=topic, group="ref", store_url=store_a, profile=profile)
    _run_to_end(cfg_a, tmp_path / "a.log", store_a, "ref", topic, ends)
    assert all_results(store_a, MODELS + ["quiet"]) == got


def test_active_profile_from_the_store_is_the_reference(kafka_broker, tmp_path, capsys):
    """`nlpmon reference build --store --activate`, then a daemon with no [reference] paths tests against it."""
    from monitor.cli import main

    store = f"sqlite:///{tmp_path / 'p.db'}"
    write_events(tmp_path / "ref.jsonl", generate_events(3000, seed=99, rate_per_s=20))
    assert main(["reference", "build", str(tmp_path / "ref.jsonl"), "-o", str(tmp_path / "profile.json"),
                 "--store", store, "--activate"]) == 0
    capsys.readouterr()
    topic = kafka_broker.new_topic()
    ends = produce(kafka_broker.bootstrap, topic, _events(1500, seed=8))
    cfg = write_config(tmp_path / "p.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="p", store_url=store,
                       profile=None)
    _run_to_end(cfg, tmp_path / "p.log", store, "p", topic, ends)
    tested = [r for r in all_results(store, ["sentiment"]) if r["drift"]["input"] is not None]
    assert tested, "no sentiment window was tested against the stored profile"
    assert any(r["drifted"] for r in tested) and not tested[0]["drifted"]  # drift in the second half only


def test_a_second_signal_exits_at_once(kafka_broker, profile, tmp_path):
    import signal
    import time

    topic = kafka_broker.new_topic()
    produce(kafka_broker.bootstrap, topic, _events(400, seed=9))
    store = f"sqlite:///{tmp_path / 's.db'}"
    cfg = write_config(tmp_path / "s.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="s", store_url=store,
                       profile=profile)
    # Checkpoints made slow, so that the first SIGTERM's drain is still going when the second one arrives.
    with DaemonProcess(cfg, tmp_path / "s.log", checkpoint_pause=20) as d:
        wait_until(lambda: any(e.get("msg") == "partitions assigned" for e in d.logs()), 30, "an assignment", d)
        d.popen.send_signal(signal.SIGTERM)
        wait_until(lambda: any(e.get("msg") == "shutdown requested, draining" for e in d.logs()), 10, "the drain", d)
        t0 = time.monotonic()
        d.popen.send_signal(signal.SIGTERM)
        assert d.popen.wait(10) == 143
        assert time.monotonic() - t0 < 5
