"""Development kit: the embedded broker, a local Prometheus/Alertmanager stack, synthetic traffic and models, the demo.

Used by ``make demo``, the tests and the benchmarks. Production code never imports it.
"""

__all__ = ["embedded_broker", "stack", "synth", "demo"]
