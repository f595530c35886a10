"""``nlpmon run`` for the crash tests: the Kafka daemon with a pause inside every checkpoint transaction.

    python -m tests.monitor.runtime.paused_daemon SECONDS CONFIG.toml

The pause is injected through ``KafkaDaemon(before_commit=...)``; production code reads no test switch.
"""

from __future__ import annotations

import logging
import sys
import time

from monitor.config import load_config
from monitor.logs import log_event, setup_logging
from monitor.runtime.kafka_daemon import KafkaDaemon
from monitor.runtime.shutdown import Shutdown


def main() -> int:
    pause, path = float(sys.argv[1]), sys.argv[2]
    config = load_config(path)
    setup_logging(config.logging.level, config.logging.format)

    def hold() -> None:
        log_event(logging.INFO, "checkpoint in progress")
        time.sleep(pause)  # a SIGKILL landing here hits an open transaction

    shutdown = Shutdown().install()
    try:
        return KafkaDaemon(config, shutdown=shutdown, before_commit=hold).run()
    finally:
        shutdown.uninstall()


if __name__ == "__main__":
    sys.exit(main())
