"""The daemons and everything with a side effect: sources, the Kafka sidecar, HTTP, dead letters, shutdown.

``wiring`` builds the tokenizer, profiles and Prometheus sink once for both daemons (``line_daemon`` for
files and stdin, ``kafka_daemon`` for the sidecar) and for ``checks``; ``result_log`` writes both daemons' log
line per closed result; ``shutdown`` owns the signal flags. The Kafka daemon coordinates ``consumer`` (polling,
fetch errors, broker health), ``partitions`` (per-partition state), ``checkpointer`` (the exactly-once
transaction, then publishing) and ``probes`` (/readyz, /status, gauges).
"""

__all__ = ["wiring", "shutdown", "line_daemon", "kafka_daemon", "consumer", "partitions", "checkpointer", "probes",
           "result_log", "checks", "sources", "http", "dead_letter", "fetch_errors", "embedding_worker"]
