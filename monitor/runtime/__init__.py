"""The daemons and everything with a side effect: sources, the Kafka sidecar, HTTP, dead letters, shutdown.

``wiring`` builds the tokenizer, profiles and Prometheus sink once for both daemons (``line_daemon`` for
files and stdin, ``kafka_daemon`` for the sidecar); ``shutdown`` owns the signal flags.
"""

__all__ = ["wiring", "shutdown", "line_daemon", "kafka_daemon", "sources", "http", "dead_letter"]
