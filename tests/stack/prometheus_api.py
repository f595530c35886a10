"""The few Prometheus HTTP API calls the end-to-end test makes (instant and range queries)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["PrometheusAPI"]


class PrometheusAPI:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str, **params) -> list[dict]:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; say which and why
            raise AssertionError(f"Prometheus refused {params}: {exc.read().decode(errors='replace')}") from None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant vector (or scalar, as a one-element list) of ``expr`` at ``at`` (default: now)."""
        result = self._get("/api/v1/query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return [{"metric": {}, "value": result}]  # a scalar
        return result

    def query_range(self, expr: str, start: float, end: float, step_s: float = 1.0) -> list[dict]:
        return self._get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}")

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of ``expr``, or None when it returns nothing."""
        result = self.query(expr, at)
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None
