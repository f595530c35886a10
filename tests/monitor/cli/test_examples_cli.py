"""``nlpmon examples``: a window's exemplar pointers read back from a real broker (tansu) and from a file.

The windows are stored with synthetic evidence whose pointers name real offsets and lines; tansu answers no
DeleteRecords, so the event that is gone is a topic deleted and recreated with fewer records (its offset is past
the new end) or with other records (the offset now holds another request id); retention proper (an offset below
the earliest) is checked against a consumer stand-in that answers an earliest offset, in
``test_an_offset_below_the_earliest_is_retention``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from kafka import KafkaProducer

from monitor.cli import main
from monitor.results import Exemplar, WindowEvidence
from monitor.runtime.readback import KafkaPosition, KafkaReader, parse_position, FilePosition
from sinks.sql import SqlStore
from tests.factories import ms, window

START = "2026-11-25T10:00:00Z"
START_MS = ms(START)
STORED = "2026-11-25T10:00:00.000Z"  # the window start as the store and nlpmon history write it
TEXTS = ["Great phone, battery lasts", "Headset\nbroke after a day", "Charger \x1b[31mred\x1b[0m melted"]


def event(i: int, text: str) -> dict:
    return {"ts": "2026-11-25T10:00:01Z", "model": "sentiment", "version": "1", "text": text,
            "prediction": "negative", "confidence": 0.6, "request_id": f"r-{i}"}


def produce(bootstrap: str, topic: str, events: list[dict]) -> list[int]:
    """Send ``events`` to partition 0 of ``topic``; return their offsets."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        futures = [producer.send(topic, json.dumps(e).encode(), partition=0) for e in events]
        producer.flush()
        return [f.get(timeout=10).offset for f in futures]
    finally:
        producer.close()


def store_window(url: str, positions: list[tuple[str, str | None]], *, start_ms: int = START_MS,
                 evidence: bool = True) -> None:
    exemplars = tuple(Exemplar(position=p, request_id=r, score=10.0 - i) for i, (p, r) in enumerate(positions))
    result = window(start_ms, start_ms + 300_000, model="sentiment", version="1")
    if evidence:
        result = dataclasses.replace(result, evidence=WindowEvidence(distributions={}, exemplars=exemplars,
                                                                     exemplar_score="features"))
    with SqlStore(url) as store:
        store.upsert_window_results(None, [result])


def examples(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["examples", "--model", "sentiment", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nlpmon.db'}"


@pytest.mark.integration
def test_events_come_back_from_the_topic_and_a_gone_one_says_so(kafka_broker, store_url, capsys):
    topic = kafka_broker.new_topic()
    offsets = produce(kafka_broker.bootstrap, topic, [event(i, t) for i, t in enumerate(TEXTS)])
    positions = [(f"{topic}/0@{o}", f"r-{i}") for i, o in enumerate(offsets)]
    store_window(store_url, [*positions, (f"{topic}/0@{offsets[-1] + 50}", "r-50"), (f"{topic}/7@0", "r-7")])
    code, out, err = examples(capsys, "--window", START, "--store", store_url,
                              "--bootstrap-servers", kafka_broker.bootstrap)
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0] == f"# sentiment version 1, window {STORED}: 5 exemplars by features, most unusual first"
    assert lines[1] == f"{topic}/0@{offsets[0]}  request r-0  score 10  prediction negative"
    assert lines[2] == "    Great phone, battery lasts"
    # A text's own lines stay indented; a terminal escape a producer sent is shown escaped, never sent through.
    assert lines[4:6] == ["    Headset", "    broke after a day"]
    assert lines[7] == "    Charger \\x1b[31mred\\x1b[0m melted"
    assert lines[8].startswith(f"{topic}/0@{offsets[-1] + 50}: beyond the end of the partition")
    assert lines[9] == f"{topic}/7@0: the topic has no partition 7 now"
    assert len(lines) == 10

    as_json = examples(capsys, "--window", str(START_MS), "--store", store_url, "--format", "json",
                       "--bootstrap-servers", kafka_broker.bootstrap)
    docs = [json.loads(line) for line in as_json[1].splitlines()]
    assert as_json[0] == 0 and [d["event"]["text"] for d in docs[:3]] == TEXTS
    assert [d["request_id"] for d in docs] == ["r-0", "r-1", "r-2", "r-50", "r-7"]
    assert docs[3]["event"] is None and "beyond the end" in docs[3]["missing"]


@pytest.mark.integration
def test_a_recreated_topic_is_told_apart_by_request_id(kafka_broker, store_url, capsys):
    topic = kafka_broker.new_topic()
    offsets = produce(kafka_broker.bootstrap, topic, [event(i, t) for i, t in enumerate(TEXTS)])
    store_window(store_url, [(f"{topic}/0@{o}", f"r-{i}") for i, o in enumerate(offsets)])
    kafka_broker.admin().delete_topics([topic])
    time.sleep(0.5)  # tansu forgets the topic asynchronously from the answer
    kafka_broker.create_topic(topic)
    produce(kafka_broker.bootstrap, topic, [event(90, "another text")])  # offset 0 again, another request
    code, out, _ = examples(capsys, "--window", START, "--store", store_url, "--bootstrap-servers",
                            kafka_broker.bootstrap, "--timeout", "3")
    assert code == 1  # nothing printed: every pointer's event is gone
    lines = out.splitlines()[1:]
    assert lines[0] == (f"{topic}/0@0: holds another event now (request id 'r-90', the pointer's 'r-0'): "
                        "the topic was recreated or the file rotated")
    assert [line.split(": ", 1)[1].startswith("beyond the end") for line in lines[1:]] == [True, True]
    assert "another text" not in out


def test_an_offset_below_the_earliest_is_retention():
    class Consumer:  # what kafka-python answers after retention deleted offsets 0..4999
        def topics(self):
            return {"orders"}

        def partitions_for_topic(self, topic):
            return {0}

        def assign(self, partitions):
            self.assigned = partitions

        def beginning_offsets(self, partitions):
            return {p: 5000 for p in partitions}

        def seek(self, tp, offset):
            raise AssertionError("a removed offset is not fetched")

    read = KafkaReader(Consumer()).read(KafkaPosition("orders", 0, 1234))
    assert read.value is None and read.missing == "no longer in the topic (retention; earliest offset 5000)"


def test_events_come_back_from_the_file(tmp_path, store_url, capsys):
    source = tmp_path / "today.jsonl"
    # Line numbers count blank lines, as the line daemon counts them.
    source.write_text(json.dumps(event(0, TEXTS[0])) + "\n\n" + json.dumps(event(1, "second")) + "\n")
    store_window(store_url, [("today.jsonl:3", "r-1"), ("today.jsonl:1", "r-0"), ("today.jsonl:9", "r-9"),
                             ("other.jsonl:1", None), ("stdin:4", None)])
    code, out, _ = examples(capsys, "--window", START, "--store", store_url, "--file", str(source))
    assert code == 0
    assert out.splitlines()[1:] == [
        "today.jsonl:3  request r-1  score 10  prediction negative", "    second",
        "today.jsonl:1  request r-0  score 9  prediction negative", f"    {TEXTS[0]}",
        f"today.jsonl:9: the file {source} has 3 lines now (rotated or truncated)",
        "other.jsonl:1: no file named other.jsonl is known here: give it with --file PATH",
        "stdin:4: standard input cannot be read again",
    ]
    source.unlink()
    code, out, _ = examples(capsys, "--window", START, "--store", store_url, "--file", str(source))
    assert code == 1 and out.splitlines()[1] == f"today.jsonl:3: the file {source} is gone"


def test_the_file_of_the_config_is_read(tmp_path, store_url, capsys):
    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps(event(0, TEXTS[0])) + "\n")
    config = tmp_path / "nlpmon.toml"
    config.write_text(f'[source]\nkind = "file"\npath = "{source}"\n[store]\nurl = "{store_url}"\n')
    store_window(store_url, [("events.jsonl:1", "r-0")])
    code, out, _ = examples(capsys, "--window", START, "--config", str(config))
    assert code == 0 and out.splitlines()[2] == f"    {TEXTS[0]}"


def test_unknown_model_or_window_is_one_line_and_exit_2(store_url, capsys):
    store_window(store_url, [("events.jsonl:1", "r-0")])
    code, out, err = examples(capsys, "--window", "2026-11-25T11:00:00Z", "--store", store_url)
    assert (code, out) == (2, "") and err == (
        "nlpmon: error: no stored window of model 'sentiment' starts at 2026-11-25T11:00:00Z "
        "(nlpmon history --model sentiment lists them)\n")
    code = main(["examples", "--model", "sentimnet", "--window", START, "--store", store_url])
    assert code == 2 and "stored models: sentiment" in capsys.readouterr().err
    code, _, err = examples(capsys, "--window", "yesterday", "--store", store_url)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_a_window_without_evidence_says_so_and_exits_1(store_url, capsys):
    store_window(store_url, [], evidence=False)
    code, out, _ = examples(capsys, "--window", START, "--store", store_url)
    assert code == 1 and out == (f"# sentiment version 1, window {STORED}: no evidence stored (written before "
                                 "evidence, or evidence turned off)\n")


@pytest.mark.parametrize(("position", "expected"), [
    ("orders/0@1234", KafkaPosition("orders", 0, 1234)),        # Kafka: topic/partition@offset
    ("my.topic-v2/11@0", KafkaPosition("my.topic-v2", 11, 0)),  # dots and dashes in a topic name
    ("today.jsonl:12", FilePosition("today.jsonl", 12)),        # a file: base name and line
    ("a:b.jsonl:3", FilePosition("a:b.jsonl", 3)),              # a colon in the file's name
    ("stdin:4", FilePosition("stdin", 4)),                      # standard input (not readable again)
    ("orders/0@x", None),                                       # neither
])  # fmt: skip
def test_parse_position(position, expected):
    assert parse_position(position) == expected


def test_a_broker_that_does_not_answer_is_one_line_per_pointer(store_url, capsys):
    from monitor.devkit.embedded_broker import free_port

    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    store_window(store_url, [("orders/0@5", "r-5"), ("orders/1@7", "r-7")])
    code, out, _ = examples(capsys, "--window", START, "--store", store_url, "--bootstrap-servers", bootstrap,
                            "--timeout", "1")
    assert code == 1
    assert out.splitlines()[1:] == [f"orders/0@5: no broker answers at {bootstrap}",
                                    f"orders/1@7: no broker answers at {bootstrap}"]
