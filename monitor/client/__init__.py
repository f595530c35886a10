"""The producer side: what a serving app imports to log its predictions to Kafka, and nothing else.

>>> from monitor.client import PredictionLogger  # doctest: +SKIP
"""

from monitor.client.logger import LoggerStats, PredictionLogger

__all__ = ["PredictionLogger", "LoggerStats"]
