"""nlpmon-client, the serving-side distribution built from client/: what it ships, its size, and that it works.

The unit tests keep client/ in step with the repository: every module ``monitor.client`` imports (transitively) is
shipped, and its dependencies carry nlpmon's lower bounds. The integration test builds the wheel, installs it into
a fresh virtual environment (pip fetches kafka-python, msgspec, orjson, zstandard and crc32c from the index),
checks its size and that none of the daemon's heavy dependencies came along, logs events with it to the real
broker, and has the full daemon (this environment's nlpmon) consume and store them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.test_architecture import GRAPH, MODULES, ROOT

CLIENT = ROOT / "client"
# The budget for what a serving app installs (nlpmon itself: ~636 MB).
MAX_SITE_PACKAGES_MB = 40
HEAVY = ("transformers", "tokenizers", "scipy", "numpy", "onnxruntime", "onnx", "sqlalchemy", "prometheus_client",
         "detectors", "sinks")


def _backend():
    spec = importlib.util.spec_from_file_location("nlpmon_client_build", CLIENT / "_build" / "nlpmon_client_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped_modules() -> set[str]:
    backend = _backend()
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / backend.CLIENT_PACKAGE).glob("*.py")]
    files += list(backend.MODULES)
    return {f.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for f in files}


def _closure(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(GRAPH[name])
            parent = name.rpartition(".")[0]
            if parent:
                todo.append(parent)  # importing a submodule runs its package's __init__
    return seen


def test_the_client_ships_every_module_monitor_client_imports():
    shipped = _shipped_modules()
    needed = _closure({m for m in MODULES if m == "monitor.client" or m.startswith("monitor.client.")})
    assert needed - shipped == set(), "monitor.client imports modules client/ does not ship"
    assert shipped - needed == set(), "client/ ships modules monitor.client does not import"


def _requirements(deps: list[str]) -> dict[str, str]:
    out = {}
    for dep in deps:
        name, spec = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*(.*)", dep).groups()
        out[name.lower()] = spec.strip()
    return out


def test_client_dependencies_have_nlpmons_bounds():
    nlpmon = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    full = _requirements(nlpmon["dependencies"])
    wanted = _requirements(client["dependencies"])
    wanted.update(_requirements([d for ds in client["optional-dependencies"].values() for d in ds]))
    assert {name: full.get(name) for name in wanted} == wanted


# -- the built distribution ------------------------------------------------------------------------------------

_OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
            "Could not find a version that satisfies", "No matching distribution found", "ConnectTimeout")


def _pip(*args: str, cwd: Path) -> None:
    """Run this environment's pip; skip (fail on CI) when the package index cannot be reached."""
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        return
    out = proc.stdout + proc.stderr
    if any(marker in out for marker in _OFFLINE):
        reason = f"package index unreachable for `pip {args[0]}`: {out.strip().splitlines()[-1]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    raise AssertionError(f"pip {' '.join(args)} failed:\n{out[-4000:]}")


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory) -> Path:
    """A fresh venv (without pip: the measure is what the client brings) with nlpmon-client installed."""
    work = tmp_path_factory.mktemp("client-dist")
    _pip("wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(CLIENT), cwd=work)
    (wheel,) = (work / "dist").glob("nlpmon_client-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    _pip("--python", str(venv / "bin" / "python"), "install", "--no-compile", str(wheel), cwd=work)
    return venv


def _site_packages(venv: Path) -> Path:
    (path,) = venv.glob("lib/python3*/site-packages")
    return path


def _venv_python(venv: Path, code: str, cwd: Path, *args: str) -> str:
    # -I: neither PYTHONPATH nor the working directory may put the repository's monitor/ on the path.
    proc = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", textwrap.dedent(code), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


@pytest.mark.integration
def test_the_client_venv_is_small_and_holds_no_daemon_dependency(client_venv, tmp_path):
    site = _site_packages(client_venv)
    size = size_mb(site)
    print(f"nlpmon-client site-packages: {size:.1f} MB ({site})")
    assert size <= MAX_SITE_PACKAGES_MB, sorted((round(size_mb(p), 1), p.name) for p in site.iterdir())[-5:]
    found = _venv_python(client_venv, """
        import importlib.util, json, sys
        print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]))
    """, tmp_path, *HEAVY)
    assert json.loads(found) == []


# The client logs 300 predictions over [T0, T0 + 30 s) (the harness's 30-s windows) and one at T0 + 60 s, whose
# event time closes the first window; it prints the logger's close() verdict and where it imported from.
_LOG_EVENTS = """
    import sys
    from monitor.client import PredictionLogger
    import monitor.client

    bootstrap, topic, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logger = PredictionLogger(bootstrap, topic, model="slim", version="1")  # zstd, the default codec
    for i in range(300):
        p = 0.55 + (i % 40) / 100
        logger.log(prediction="positive" if i % 3 else "negative", probabilities=[p, 1 - p],
                   classes=["positive", "negative"], latency_ms=10 + i % 7, text=f"a review, number {i}",
                   request_id=f"r{i}", ts=t0 + i * 100)
    logger.log(prediction="positive", probabilities=[0.9, 0.1], classes=["positive", "negative"], ts=t0 + 60_000)
    print(logger.close(timeout=30), logger.stats.sent, monitor.client.__file__)
"""


@pytest.mark.integration
def test_events_the_client_sends_are_consumed_by_the_daemon(client_venv, kafka_broker, tmp_path):
    from tests.monitor.runtime.harness import T0_MS, DaemonProcess, wait_until, write_config

    topic = kafka_broker.new_topic(partitions=2)
    closed, sent, where = _venv_python(client_venv, _LOG_EVENTS, tmp_path, kafka_broker.bootstrap, topic,
                                       str(T0_MS)).split()
    assert (closed, sent) == ("True", "301")
    assert Path(where).is_relative_to(_site_packages(client_venv))

    store = f"sqlite:///{tmp_path / 'nlpmon.db'}"
    config = write_config(tmp_path / "nlpmon.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="g-slim",
                          store_url=store, profile=None)
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        wait_until(lambda: _closed_windows(store), 60, "the first window to be stored", daemon)
        assert daemon.stop() == 0
    (window,) = _closed_windows(store)
    assert window["window_start"] == "2025-11-24T16:00:00.000Z"  # T0_MS
    assert (window["events"], window["invalid"], window["predictions"]) == (300, 0, {"negative": 100, "positive": 200})


def _closed_windows(store_url: str) -> list[dict]:
    from tests.monitor.runtime.harness import all_results

    try:
        return all_results(store_url, ["slim"])
    except Exception:  # the daemon has not created the schema yet
        return []
