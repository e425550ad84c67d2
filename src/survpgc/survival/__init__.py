"""The survival core: convention, time binning, losses, metrics and statistics.

``time`` > 0 in months, ``event`` True = death observed, ``risk`` higher = worse -- everywhere.
Submodules import torch / scikit-survival / lifelines lazily or on first use of their module.
"""

from survpgc.survival.binning import TimeBinner
from survpgc.survival.convention import (
    SurvivalArrays,
    check_risk,
    check_survival,
    event_from_censorship,
    lifelines_score_from_risk,
)

__all__ = [
    "SurvivalArrays",
    "TimeBinner",
    "check_risk",
    "check_survival",
    "event_from_censorship",
    "lifelines_score_from_risk",
]
