"""A/B experiments and shadow comparisons: assigning events to variants and joining served/shadow pairs.

The joining and windowing live here; every statistic they report is computed in ``detectors``.
"""

__all__ = ["experiments", "shadow"]
