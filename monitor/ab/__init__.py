"""A/B experiments, shadow comparisons and late labels: assigning events to variants, joining served/shadow
pairs, and joining predictions with the label events that arrive later (realised accuracy).

The joining and windowing live here; every statistic they report is computed in ``detectors``.
"""

__all__ = ["experiments", "shadow", "labels", "parts"]
