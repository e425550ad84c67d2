"""The metrics of a run, named once: keys, display labels, direction and format.

A run's metric columns follow from its evaluation times (``eval.times``): Harrell's and Uno's C-index, one
time-dependent AUC per time (``auc_<t>``, e.g. ``auc_6`` or ``auc_1.5``), the integrated AUC and the
integrated Brier score.  :func:`metrics_for` gives them for a list of times; :func:`metrics_in` recovers them
from the columns of a table already written (a ``metrics.csv`` or ``summary.csv``, including runs written
when the AUC times were fixed at 12, 36 and 60 months).  The per-fold metrics, the summaries, the report
tables and the forest plot all take their metric list from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEFAULT_TIMES", "Metric", "auc_key", "metric", "metrics_for", "metrics_in"]

#: The evaluation times (months) of a run that does not set ``eval.times``.
DEFAULT_TIMES: tuple[float, ...] = (12.0, 36.0, 60.0)

_AUC_KEY = re.compile(r"^auc_(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Metric:
    """One metric column: ``key`` (column name), ``label`` (shown in tables and plots), ``higher_is_better``,
    ``digits`` (decimals shown) and ``what`` (one line on how it is computed)."""

    key: str
    label: str
    higher_is_better: bool = True
    digits: int = 3
    what: str = ""

    def format(self, value: float) -> str:
        """``value`` with :attr:`digits` decimals; ``n/a`` when missing or not finite."""
        try:
            f = float(value)
        except (TypeError, ValueError):
            return "n/a"
        return f"{f:.{self.digits}f}" if math.isfinite(f) else "n/a"


_CINDEX = Metric("cindex", "C-index (Harrell)", what="Harrell's concordance of the risks on the test cases")
_CINDEX_UNO = Metric(
    "cindex_uno", "C-index (Uno)", what="Uno's IPCW concordance, censoring fitted on the training cases"
)
_IAUC = Metric("iauc", "iAUC", what="time-dependent AUC integrated over the evaluation times")
_IBS = Metric(
    "ibs",
    "IBS",
    higher_is_better=False,
    what="integrated Brier score of the predicted survival between the first and last evaluation time",
)


def auc_key(t: float) -> str:
    """The column of the time-dependent AUC at ``t`` months: ``auc_12``, ``auc_6``, ``auc_1.5``."""
    return f"auc_{float(t):g}"


def _auc(t: float) -> Metric:
    return Metric(
        auc_key(t),
        f"AUC {float(t):g} mo",
        what=f"cumulative/dynamic AUC at {float(t):g} months (IPCW, censoring fitted on the training cases)",
    )


def metrics_for(times: Iterable[float] = DEFAULT_TIMES) -> tuple[Metric, ...]:
    """The metrics of a run evaluated at ``times`` (months), in report order: ``cindex``, ``cindex_uno``,
    ``auc_<t>`` for each time in the given order, ``iauc``, ``ibs``."""
    return (_CINDEX, _CINDEX_UNO, *(_auc(t) for t in times), _IAUC, _IBS)


def metric(key: str) -> Metric:
    """The metric of a column name; a column this module does not know gets its key as label (higher is
    better)."""
    fixed = {m.key: m for m in (_CINDEX, _CINDEX_UNO, _IAUC, _IBS)}
    if key in fixed:
        return fixed[key]
    match = _AUC_KEY.match(key)
    if match:
        return _auc(float(match.group(1)))
    return Metric(key, key)


def metrics_in(columns: Iterable[str], *, suffix: str = "") -> tuple[Metric, ...]:
    """The known metrics among ``columns`` (names ending in ``suffix``, e.g. ``"_mean"`` for a summary), in
    report order: C-indices, AUCs by increasing time, iAUC, IBS.  Other columns are ignored."""
    keys = {str(c)[: len(str(c)) - len(suffix)] for c in columns if str(c).endswith(suffix)}
    aucs = sorted((float(m.group(1)) for k in keys if (m := _AUC_KEY.match(k))), key=float)
    return tuple(m for m in metrics_for(aucs) if m.key in keys)
