"""Outputs of nlpmon: Prometheus exposition, SQL rows, alert and Kafka payloads.

A sink turns results into the outside world and never computes statistics.
"""

__all__: list[str] = []
