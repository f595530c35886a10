"""Event-time and count windows: window arithmetic, the reservoir, the accumulator, and closing a window into a result.

Everything here is deterministic in the sequence of events it is given (seeds derive from the window's
identity), which is what makes checkpointed exactly-once results possible.
"""

__all__ = ["windows", "reservoir", "accumulator", "evaluate"]
