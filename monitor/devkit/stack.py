"""A local Prometheus and Alertmanager for ``make demo`` and the end-to-end test, when they are installed.

:func:`start_local_stack` starts the Debian packages' ``prometheus`` and ``prometheus-alertmanager`` (or an
upstream ``alertmanager``) on free loopback ports with their data in a scratch directory, scraping the given
nlpmon ``/metrics`` targets as job ``nlpmon`` and loading the given rule files; without a ``prometheus``
binary it yields ``None`` and starts nothing. The two config rewrites the short-interval runs need live here
too: :func:`shorten_drift_persistence` (rules) and :func:`local_alertmanager_config` (receivers, timers).

Examples
--------
>>> with start_local_stack(["127.0.0.1:9108"], Path("/tmp/stack"), "alerts/*.yml") as stack:  # doctest: +SKIP
...     print(stack.prometheus if stack else "Prometheus is not installed")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LocalStack", "StackUnavailable", "find_binaries", "start_local_stack", "shorten_drift_persistence",
    "local_alertmanager_config", "PERSISTENCE_RULE", "DRIFT_ALERTS",
]  # fmt: skip

PROMETHEUS_NAMES = ("prometheus",)
ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")  # Debian's name first, then upstream's
INSTALL_HINT = "Debian/Ubuntu: apt-get install prometheus prometheus-alertmanager"

# The recording rule that encodes drift persistence (alerts/nlpmon.rules.yml) and the alerts built on it.
PERSISTENCE_RULE = "model_version_detector:nlp_drift_detector_detected:persistent6m"
PERSISTENCE_RANGE = "[6m]"
PERSISTENCE_RANGE_USES = 3  # sum_over_time, count_over_time and changes in the rule's expression
DRIFT_ALERTS = ("NlpInputDrift", "NlpConfidenceShift", "NlpPredictionClassShift", "NlpEmbeddingDrift",
               "NlpClassProbabilityShift")

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3


class StackUnavailable(RuntimeError):
    """A binary that was found did not start or did not become ready (the message carries its log tail)."""


@dataclass(frozen=True)
class LocalStack:
    """Base URLs of the running servers; ``alertmanager`` is None when only Prometheus is installed."""

    prometheus: str
    alertmanager: str | None
    workdir: Path

    def describe(self) -> str:
        """Return the lines to print for people: where to look."""
        lines = [f"Prometheus:   {self.prometheus}  (alerts: {self.prometheus}/alerts, "
                 f"rules: {self.prometheus}/rules, targets: {self.prometheus}/targets)"]
        if self.alertmanager:
            lines.append(f"Alertmanager: {self.alertmanager}")
        else:
            lines.append(f"Alertmanager: not installed ({INSTALL_HINT})")
        return "\n".join(lines)


def alerts_now(stack: LocalStack) -> tuple[str, list[tuple[str, str]]]:
    """Return where the alerts were read and their ``(alertname, state)`` pairs, sorted and distinct.

    Alertmanager's ``/api/v2/alerts`` (what was sent to be paged: state ``active`` or ``suppressed``) when it
    runs, else Prometheus' ``/api/v1/alerts`` (``firing`` or ``pending``). Unreachable: ``[]`` with the reason.
    """
    if stack.alertmanager:
        where, url = "Alertmanager", stack.alertmanager + "/api/v2/alerts"
    else:
        where, url = "Prometheus", stack.prometheus + "/api/v1/alerts"
    try:
        body = json.loads(urllib.request.urlopen(url, timeout=3).read())
    except (OSError, ValueError) as exc:
        return f"{where} (unreachable: {exc})", []
    if stack.alertmanager:
        pairs = {(a["labels"].get("alertname", "?"), a.get("status", {}).get("state", "?")) for a in body}
    else:
        pairs = {(a["labels"].get("alertname", "?"), a.get("state", "?")) for a in body["data"]["alerts"]}
    return where, sorted(pairs)


def find_binaries(path: str | None = None) -> tuple[str | None, str | None]:
    """Return the ``(prometheus, alertmanager)`` executables found on ``path`` (default ``$PATH``)."""
    def first(names: tuple[str, ...]) -> str | None:
        return next((p for p in (shutil.which(n, path=path) for n in names) if p), None)

    return first(PROMETHEUS_NAMES), first(ALERTMANAGER_NAMES)


@contextlib.contextmanager
def start_local_stack(
    metrics_targets: list[str],
    workdir: Path,
    rules_glob: str,
    *,
    scrape_interval_s: float = 5.0,
    evaluation_interval_s: float | None = None,
    alertmanager_config: dict | None = None,
    path: str | None = None,
    ready_timeout_s: float = _READY_TIMEOUT_S,
) -> Iterator[LocalStack | None]:
    """Run Prometheus (and Alertmanager, when installed) for the body of the ``with`` block; stop both after.

    ``metrics_targets`` are ``host:port`` addresses of nlpmon's metrics server, scraped as job ``nlpmon``
    every ``scrape_interval_s``; ``rules_glob`` is Prometheus' ``rule_files`` entry (e.g. ``alerts/*.yml``);
    rules are evaluated every ``evaluation_interval_s`` (default: the scrape interval).
    ``alertmanager_config`` is an Alertmanager config as a dict (see :func:`local_alertmanager_config`);
    the default routes everything to a receiver that sends nothing, so alerts are only seen in its UI.
    Yields None, starting nothing, when no ``prometheus`` binary is on ``path``. Raises
    :class:`StackUnavailable` when an installed server does not become ready within ``ready_timeout_s``.
    """
    prometheus_bin, alertmanager_bin = find_binaries(path)
    if prometheus_bin is None:
        yield None
        return
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    evaluation_interval_s = scrape_interval_s if evaluation_interval_s is None else evaluation_interval_s
    with contextlib.ExitStack() as stack:
        am_url = None
        if alertmanager_bin is not None:
            am_config = alertmanager_config or {"route": {"receiver": "local", "group_by": ["model"]},
                                                "receivers": [{"name": "local"}]}
            am_path = workdir / "alertmanager.yml"
            am_path.write_text(json.dumps(am_config, indent=2), encoding="utf-8")  # JSON is valid YAML
            am_url = stack.enter_context(_server(
                "alertmanager", workdir, ready_timeout_s,
                lambda port: [alertmanager_bin, f"--config.file={am_path}", f"--storage.path={workdir / 'am-data'}",
                              f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                              "--log.level=info"],
            ))
        prom_path = workdir / "prometheus.yml"
        prom_path.write_text(json.dumps(_prometheus_config(
            metrics_targets, rules_glob, scrape_interval_s, evaluation_interval_s, am_url), indent=2), encoding="utf-8")
        prom_url = stack.enter_context(_server(
            "prometheus", workdir, ready_timeout_s,
            lambda port: [prometheus_bin, f"--config.file={prom_path}", f"--storage.tsdb.path={workdir / 'prom-data'}",
                          f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d",
                          "--log.level=info"],
        ))
        yield LocalStack(prometheus=prom_url, alertmanager=am_url, workdir=workdir)


def _duration(seconds: float) -> str:
    """Prometheus/Alertmanager duration: whole seconds as ``5s``, anything finer in milliseconds."""
    ms = int(round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _prometheus_config(targets: list[str], rules_glob: str, scrape_s: float, eval_s: float,
                       alertmanager_url: str | None) -> dict:
    config = {
        "global": {"scrape_interval": _duration(scrape_s), "scrape_timeout": _duration(min(scrape_s, 10.0)),
                   "evaluation_interval": _duration(eval_s)},
        "rule_files": [str(rules_glob)],
        # Job name "nlpmon": the NlpmonDown/NlpmonAbsent rules and the dashboard select up{job="nlpmon"}.
        "scrape_configs": [{"job_name": "nlpmon", "static_configs": [{"targets": list(targets)}]}],
    }
    if alertmanager_url:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]}
    return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/-/ready", timeout=1).status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<log unreadable: {exc}>"


@contextlib.contextmanager
def _server(name: str, workdir: Path, ready_timeout_s: float, argv_for_port) -> Iterator[str]:
    """Start one server on a free loopback port (another if that one is taken), yield its URL, stop it."""
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        log_path = workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            # Output to a file, never a pipe nobody reads (a full pipe would freeze the server).
            process = subprocess.Popen(argv_for_port(port), stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=workdir, env=dict(os.environ))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout_s
            while process.poll() is None and not _ready(url):
                if time.monotonic() > deadline:
                    raise StackUnavailable(f"{name} did not become ready at {url} within {ready_timeout_s:.0f}s; "
                                           f"its log ({log_path}):\n{_tail(log_path)}")
                time.sleep(0.1)
            if process.poll() is None:
                break
            if "address already in use" in _tail(log_path).lower() and attempt < _PORT_ATTEMPTS:
                continue  # someone took the port between _free_port() and the server's bind
            raise StackUnavailable(f"{name} exited with status {process.returncode}; its log ({log_path}):\n"
                                   f"{_tail(log_path)}")
        except BaseException:
            _stop(process)
            raise
    try:
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)


def shorten_drift_persistence(rules_text: str, range_seconds: int) -> str:
    """Return ``rules_text`` with the drift persistence range ``[6m]`` replaced by ``[<range_seconds>s]``.

    For runs with windows of seconds instead of minutes. The range must stay longer than one window plus a
    scrape interval (alerts/nlpmon.rules.yml). Raises ValueError unless the rules have the shape this
    rewrite was written for: ``[6m]`` used exactly three times, all in the persistence recording rule, and
    the drift alerts without a ``for:`` (a ``for:`` of minutes would need shortening too).
    """
    import yaml

    if range_seconds < 1:
        raise ValueError(f"range_seconds must be at least 1, not {range_seconds}")
    rules = [r for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"]]
    by_name = {r.get("record") or r.get("alert"): r for r in rules}
    if PERSISTENCE_RULE not in by_name:
        raise ValueError(f"no recording rule {PERSISTENCE_RULE!r}: the drift persistence moved")
    uses = by_name[PERSISTENCE_RULE]["expr"].count(PERSISTENCE_RANGE)
    if uses != PERSISTENCE_RANGE_USES or rules_text.count(PERSISTENCE_RANGE) != PERSISTENCE_RANGE_USES:
        raise ValueError(f"expected {PERSISTENCE_RANGE} exactly {PERSISTENCE_RANGE_USES} times, all in "
                         f"{PERSISTENCE_RULE}; found {uses} there and {rules_text.count(PERSISTENCE_RANGE)} in all")
    for alert in DRIFT_ALERTS:
        rule = by_name.get(alert)
        if rule is None or PERSISTENCE_RULE not in rule["expr"]:
            raise ValueError(f"alert {alert} is missing or no longer built on {PERSISTENCE_RULE}")
        if rule.get("for"):
            raise ValueError(f"alert {alert} has `for: {rule['for']}`; shorten it too for short windows")
    return rules_text.replace(PERSISTENCE_RANGE, f"[{int(range_seconds)}s]")


def local_alertmanager_config(source: Path, *, webhook_url: str | None = None, group_wait_s: float = 1.0,
                              group_interval_s: float = 2.0, repeat_interval_s: float = 3600.0) -> dict:
    """Return the Alertmanager config at ``source`` rewritten for a local run.

    Routing, grouping and inhibition stay as they are. Every receiver's webhooks are replaced by one to
    ``<webhook_url>/<receiver name>`` (or removed when ``webhook_url`` is None: alerts then only show in
    the UI), and every route's timers are shortened to the given seconds.
    """
    import yaml

    config = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    for receiver in config.get("receivers", []):
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]  # pagers, chat, e-mail: nothing leaves the machine
        if webhook_url:
            receiver["webhook_configs"] = [{"url": f"{webhook_url.rstrip('/')}/{receiver['name']}",
                                            "send_resolved": True}]
    timers = {"group_wait": _duration(group_wait_s), "group_interval": _duration(group_interval_s),
              "repeat_interval": _duration(repeat_interval_s)}

    def shorten(route: dict) -> None:
        for key, value in timers.items():
            if key in route or route is config["route"]:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config
