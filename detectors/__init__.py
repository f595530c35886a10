"""Pure statistics for nlpmon: numpy/scipy in, frozen result objects out.

Nothing in this package reads a clock, opens a file or a connection, or touches Prometheus; that is the job
of ``monitor`` (side effects) and ``sinks`` (outputs).
"""

__all__: list[str] = []
