"""``nlpmon run`` whose output/dead-letter producer talks to a broker that never takes a record.

    python -m tests.monitor.runtime.refusing_output_daemon PRODUCER_BOOTSTRAP CONFIG.toml

The consumer reads the real broker of the config; the producer is pointed at ``PRODUCER_BOOTSTRAP`` (a port
where nothing answers) through ``Checkpointer.producer_overrides``: production code reads no test switch.
"""

from __future__ import annotations

import sys

from monitor.config import load_config
from monitor.logs import setup_logging
from monitor.runtime.kafka_daemon import KafkaDaemon
from monitor.runtime.shutdown import Shutdown


def main() -> int:
    bootstrap, path = sys.argv[1], sys.argv[2]
    config = load_config(path)
    setup_logging(config.logging.level, config.logging.format)
    shutdown = Shutdown().install()
    try:
        daemon = KafkaDaemon(config, shutdown=shutdown)
        daemon.checkpointer.producer_overrides = {"bootstrap_servers": [bootstrap]}
        return daemon.run()
    finally:
        shutdown.uninstall()


if __name__ == "__main__":
    sys.exit(main())
