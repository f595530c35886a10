"""``nlpmon run`` for the poison-record tests: the Kafka daemon whose featurizer raises on a marker text.

    python -m tests.monitor.runtime.poison_daemon MARKER CONFIG.toml [PAUSE_SECONDS]

The fault is injected through ``KafkaDaemon(featurize=...)`` (and the optional checkpoint pause through
``before_commit=``); production code reads no test switch. The exception's message quotes the text, as a
careless library would: the tests check that it never reaches a log line.
"""

from __future__ import annotations

import logging
import sys
import time

from monitor.config import load_config
from monitor.ingest.features import base_features
from monitor.logs import log_event, setup_logging
from monitor.runtime.kafka_daemon import KafkaDaemon
from monitor.runtime.shutdown import Shutdown


def poisoned_featurizer(marker: str):
    """``base_features``, raising for any batch holding an event whose text contains ``marker``."""

    def featurize(events, features, tokenizer):
        for e in events:
            if e.text is not None and marker in e.text:
                raise ValueError(f"cannot featurize {e.text!r}")
        return base_features(events, features, tokenizer)

    return featurize


def main() -> int:
    marker, path = sys.argv[1], sys.argv[2]
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    config = load_config(path)
    setup_logging(config.logging.level, config.logging.format)

    def hold() -> None:
        log_event(logging.INFO, "checkpoint in progress")
        time.sleep(pause)

    shutdown = Shutdown().install()
    try:
        return KafkaDaemon(config, shutdown=shutdown, featurize=poisoned_featurizer(marker),
                           before_commit=hold if pause else None).run()
    finally:
        shutdown.uninstall()


if __name__ == "__main__":
    sys.exit(main())
