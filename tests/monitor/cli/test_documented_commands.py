"""Every ``nlpmon`` command shown in README.md and docs/runbooks.md, run against a store a real daemon made.

The commands are read from the documents (code blocks and inline code), so a new one fails
``test_every_documented_command_is_covered`` until it runs here. The daemon (``nlpmon run`` against the test
broker, tests/monitor/runtime/harness.py) writes ``nlpmon.db`` in a working directory that also holds the
files the commands name (``nlpmon.toml``, ``today.jsonl``, ``model.onnx``, ``heldout.jsonl``...), so most
commands run exactly as written; placeholders (``M``, ``V``, ``NAME``, ``DIR``) and elisions (``...``) are
substituted below. Then the on-call behaviours of the read commands: durations in ``--since``, unknown
model or version (exit 2, the stored ones listed), a mistyped store (exit 2, no file created), a closed
pipe, 120 columns.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.cli.common import parse_since
from monitor.cli.table import COMPACT_COLUMNS
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile
from sinks.sql import SqlStore
from tests.monitor.runtime.harness import DaemonProcess, caught_up, nlpmon, produce, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "runbooks.md"]
EXPERIMENT = "sentiment-v4"  # the name README.md uses, so its `ab report` runs as written
AB = (f'[[experiments]]\nname = "{EXPERIMENT}"\nmodel = "sentiment"\nvariants = {{a = 50, b = 50}}\n'
      'metric = "confidence"\nmde = 0.02\n')

# Placeholder tokens of the documents and what they stand for here ("{tokenizer}": the tiny model's).
TOKENS = {"M": "sentiment", "V": "1", "NAME": EXPERIMENT, "DIR": "{tokenizer}", "/models/sentiment": "{tokenizer}",
          # A window's start: the workdir fixture sets the newest one the daemon stored.
          "START": "0"}
# Commands with an elision, or named without their required flags: the whole command that stands for it.
ELIDED = {
    "nlpmon ab report": "nlpmon ab report --experiment NAME",
    "nlpmon compare": "nlpmon compare last-week.jsonl today.jsonl",
    "nlpmon reeval ...": "nlpmon reeval --model model.onnx --tokenizer DIR --data heldout.jsonl",
    "nlpmon reference build ... --activate":
        "nlpmon reference build today.jsonl -o activated.json --store sqlite:///nlpmon.db --activate",
}
# `nlpmon run --config nlpmon.toml` is the daemon of the fixture itself (DaemonProcess runs exactly that).
RUN_COMMAND = "nlpmon run --config nlpmon.toml"


def documented_commands() -> list[str]:
    """Each distinct ``nlpmon ...`` command of the documents, comments and trailing prose removed."""
    found: list[str] = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        # README's "Try it" block runs verbatim on `nlpmon sample`'s data instead (tests/monitor/cli/test_try_it.py).
        text = re.sub(r"## Try it\n.*?```sh\n.*?```", "", text, flags=re.S)
        blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
        lines = [ln.split("#", 1)[0].strip() for block in blocks for ln in block.splitlines()]
        inline = re.findall(r"`(nlpmon [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for command in [ln for ln in lines if ln.startswith("nlpmon ")] + inline:
            if command not in found:
                found.append(command)
    return found


def expand(command: str, tokenizer: Path) -> list[list[str]]:
    """The argv lists that run ``command``: ``[...]`` options both left out and given, ``COMMAND`` for each."""
    command = ELIDED.get(command, command)
    variants = [re.sub(r"\s*\[[^\]]*\]", "", command)]
    if "[" in command:
        # With the optional --tokenizer, the profile built with it (README step 1, then step 3 with it).
        variants.append(re.sub(r"\[([^\]]*)\]", r"\1", command).replace(" sentiment-profile.json",
                                                                         " tokenized-profile.json"))
    out = []
    for variant in variants:
        argv = [TOKENS.get(t, t).replace("{tokenizer}", str(tokenizer)) for t in shlex.split(variant)]
        if "COMMAND" in argv:
            out += [[c if c != "COMMAND" else name for c in argv] for name in subcommands()]
        else:
            out.append(argv)
    return out


def subcommands() -> list[str]:
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    return list(sub.choices)


# -- the store a real daemon made --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(kafka_broker, tiny, tmp_path_factory):
    """A directory with nlpmon.db written by `nlpmon run` and the files the documented commands name."""
    d = tmp_path_factory.mktemp("oncall")
    start_ms = int((time.time() - 3600) * 1000)  # an hour ago: inside `--since 2h`, outside `--since 30m`
    events = list(generate_events(2000, seed=3, start_ms=start_ms, rate_per_s=20, drift_after=1000,
                                  variants={"a": 0.5, "b": 0.5}))
    write_events(d / "today.jsonl", events)
    write_events(d / "last-week.jsonl", generate_events(3000, seed=99, start_ms=start_ms - 7 * 86_400_000))
    profile, _ = build_profile(str(d / "last-week.jsonl"))
    save_profile(profile, d / "sentiment-profile.json")
    # The model with its config.json (class names) beside it, as `nlpmon reeval` expects.
    for source, name in ((tiny.model_path, "model.onnx"), (tiny.config_path, "config.json"),
                         (tiny.heldout_path, "heldout.jsonl")):
        shutil.copy(source, d / name)
    topic = kafka_broker.new_topic()
    # The same file as README's relative sqlite:///nlpmon.db, since the commands run in ``d``.
    store = f"sqlite:///{d / 'nlpmon.db'}"
    config = write_config(d / "nlpmon.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="oncall",
                          store_url=store, profile=d / "sentiment-profile.json", extra=AB)
    ends = produce(kafka_broker.bootstrap, topic, events)
    with DaemonProcess(config, d / "daemon.log") as daemon:
        assert daemon.popen.args[-3:] == [*shlex.split(RUN_COMMAND)[1:3], str(config)]
        wait_until(lambda: caught_up(store, "oncall", topic, ends), 120, "the daemon to checkpoint every record",
                   daemon)
        assert daemon.stop() == 0, daemon.log_tail()
    with SqlStore(store) as s:
        TOKENS["START"] = s.history("sentiment")[-1]["window_start"]  # `nlpmon examples --window START`
    return d


def run(workdir: Path, argv: list[str], **kw) -> subprocess.CompletedProcess:
    stdout = None
    if ">" in argv:  # a shell redirection in the document
        i = argv.index(">")
        argv, stdout = argv[:i], open(workdir / argv[i + 1], "wb")
    try:
        return subprocess.run(nlpmon() + argv[1:], cwd=workdir, stdout=stdout or subprocess.PIPE,
                              stderr=subprocess.PIPE, text=stdout is None, timeout=300, **kw)
    finally:
        if stdout:
            stdout.close()


def test_every_documented_command_is_covered():
    commands = documented_commands()
    assert RUN_COMMAND in commands and "nlpmon history --model M --version V --since 2h" in commands
    for command in commands:
        assert "..." not in command or command in ELIDED, f"{command!r}: say in ELIDED what it stands for"
        for argv in expand(command, Path("/tok")):
            leftover = [t for t in argv if t.isupper() and len(t) > 1 or t in ("M", "V")]
            assert not leftover, f"{command!r}: placeholders {leftover} have no value in TOKENS"


def test_every_documented_command_runs(workdir, tiny):
    ran, failed = [], []
    # Writers after readers (reference build --store --activate), quantize before the reeval that uses its output.
    commands = sorted((c for c in documented_commands() if c != RUN_COMMAND),
                      key=lambda c: ("--activate" in c, "reeval" in c and "--candidate" in c))
    for command in commands:
        for argv in expand(command, tiny.tokenizer_dir):
            result = run(workdir, argv)
            ran.append(argv)
            if result.returncode != 0:
                failed.append(f"{shlex.join(argv)} -> {result.returncode}\n{result.stderr}")
    assert not failed, "\n".join(failed)
    assert len(ran) >= len(commands) + len(subcommands())
    # What the README's commands made is what they say: a profile, window results, an int8 model.
    assert (workdir / "tokenized-profile.json").is_file() and (workdir / "model_int8.onnx").is_file()
    windows = [json.loads(line) for line in (workdir / "windows.jsonl").read_text().splitlines()]
    assert windows and {w["model"] for w in windows} == {"sentiment"}


# -- the read commands on call ----------------------------------------------------------------------------------
def test_since_takes_durations_and_timestamps(workdir):
    week = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--since", "7d", "--format", "json"])
    assert week.returncode == 0, week.stderr
    stored = [json.loads(line) for line in week.stdout.splitlines()]
    assert len(stored) >= 3
    two_hours = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--since", "2h", "--format", "json"])
    assert two_hours.stdout == week.stdout
    recent = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--since", "30m"])
    assert recent.returncode == 0 and recent.stdout == "" and "since 30m" in recent.stderr
    at = stored[-1]["window_start"]
    last = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--since", at, "--format", "json"])
    assert [json.loads(line) for line in last.stdout.splitlines()] == stored[-1:]
    bad = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--since", "2 hours"])
    assert bad.returncode == 2 and "30m, 2h, 7d" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", 10_000_000 - 1_800_000),      # minutes
    ("2h", 10_000_000 - 7_200_000),       # hours
    ("7d", 700_000_000 - 604_800_000),    # days, from another now
    ("1h30m", 10_000_000 - 5_400_000),    # compound
    ("90s", 10_000_000 - 90_000),         # seconds
    ("1764000000", "1764000000"),         # epoch seconds: for the store to read
    ("2025-11-24T16:00:00Z", "2025-11-24T16:00:00Z"),  # RFC 3339: for the store to read
])  # fmt: skip
def test_parse_since(text, expected):
    now = 700_000_000 if text == "7d" else 10_000_000
    assert parse_since(text, now_ms=now) == expected


def test_unknown_model_or_version_lists_the_stored_ones(workdir):
    model = run(workdir, ["nlpmon", "history", "--model", "sentimnet", "--store", "sqlite:///nlpmon.db"])
    assert model.returncode == 2 and model.stdout == ""
    assert "no stored windows for model 'sentimnet' (stored models: sentiment)" in model.stderr
    version = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--version", "9"])
    assert version.returncode == 2 and "stored versions: 1" in version.stderr
    experiment = run(workdir, ["nlpmon", "ab", "report", "--experiment", "sentiment-v5"])
    assert experiment.returncode == 2 and f"stored experiments: {EXPERIMENT}" in experiment.stderr


@pytest.mark.parametrize("argv", [["history", "--model", "sentiment"], ["ab", "report", "--experiment", EXPERIMENT]])
def test_read_commands_never_create_a_database(workdir, argv):
    result = run(workdir, ["nlpmon", *argv, "--store", "sqlite:///typo.db"])
    assert result.returncode == 2 and "no SQLite database at typo.db" in result.stderr, result.stderr
    assert not (workdir / "typo.db").exists()
    # A database that exists but holds no nlpmon tables is refused too, and left without them.
    (workdir / "empty.db").touch()
    empty = run(workdir, ["nlpmon", *argv, "--store", "sqlite:///empty.db"])
    assert empty.returncode == 2 and "holds no nlpmon tables" in empty.stderr, empty.stderr
    with sqlite3.connect(workdir / "empty.db") as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_closed_pipe_ends_quietly(workdir):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head -1`) is gone before nlpmon writes
    try:
        result = subprocess.run(nlpmon() + ["history", "--model", "sentiment", "--format", "json"], cwd=workdir,
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # And through a real shell pipeline, as in a runbook.
    shell = subprocess.run(f"{shlex.join(nlpmon())} history --model sentiment | head -1", shell=True, cwd=workdir,
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0 and shell.stdout.startswith("version") and shell.stderr == "", shell.stderr


def test_history_table_fits_120_columns_and_wide_shows_more(workdir):
    table = run(workdir, ["nlpmon", "history", "--model", "sentiment"])
    lines = table.stdout.splitlines()
    assert table.returncode == 0 and len(lines) >= 4 and lines[0].startswith("version")
    assert max(len(line) for line in lines) <= COMPACT_COLUMNS
    assert any(line.rstrip().endswith(("in", "in+conf", "in+class", "in+conf+class", "in+conf+prob", "in+conf+class+prob"))
               for line in lines[1:]), (
        "the drifted windows of the daemon's traffic are flagged")
    wide = run(workdir, ["nlpmon", "history", "--model", "sentiment", "--wide"]).stdout.splitlines()
    assert len(wide) == len(lines) and max(len(line) for line in wide) > COMPACT_COLUMNS
    assert "p50ms" in wide[0] and "p50ms" not in lines[0]


def test_replay_table_is_the_window_table(workdir):
    result = run(workdir, ["nlpmon", "replay", "today.jsonl", "--reference", "sentiment-profile.json",
                           "--window-seconds", "30", "--format", "table"])
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.startswith("stream") and "window start (UTC)" in header
    assert rows and all(r.startswith("sentiment/1") for r in rows)
    assert max(len(line) for line in [header, *rows]) <= COMPACT_COLUMNS
    as_json = run(workdir, ["nlpmon", "replay", "today.jsonl", "--reference", "sentiment-profile.json",
                            "--window-seconds", "30"])
    assert len(as_json.stdout.splitlines()) == len(rows)
