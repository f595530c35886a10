"""Helpers of the end-to-end stack test: a webhook receiver, live traffic, and the Prometheus HTTP API."""

__all__ = []
