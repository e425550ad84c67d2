"""The survival core: convention, time binning, losses, metrics and statistics.

``time`` > 0 in months, ``event`` True = death observed, ``risk`` higher = worse -- everywhere.
torch (losses), scikit-survival and lifelines are imported on first use, not with this package.
"""

from survpgc.survival.binning import TimeBinner
from survpgc.survival.convention import (
    SurvivalArrays,
    check_risk,
    check_survival,
    event_from_censorship,
    lifelines_score_from_risk,
)
from survpgc.survival.metrics import (
    brier_score,
    harrell_cindex,
    integrated_brier_score,
    td_auc,
    uno_cindex,
)
from survpgc.survival.stats import (
    bootstrap_cindex,
    kaplan_meier,
    logrank_test,
    median_risk_groups,
    paired_bootstrap_cindex,
)

__all__ = [
    "SurvivalArrays",
    "TimeBinner",
    "bootstrap_cindex",
    "brier_score",
    "check_risk",
    "check_survival",
    "event_from_censorship",
    "harrell_cindex",
    "integrated_brier_score",
    "kaplan_meier",
    "lifelines_score_from_risk",
    "logrank_test",
    "median_risk_groups",
    "paired_bootstrap_cindex",
    "td_auc",
    "uno_cindex",
]
