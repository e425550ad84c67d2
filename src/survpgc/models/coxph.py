"""Cox proportional-hazards baseline on the clinical columns (not a torch model; fitted per fold).

:class:`ClinicalDesign` turns the clinical columns of ``Cohort.cases`` into a numeric design matrix using
statistics of the *training* cases only:

* numeric columns (e.g. ``age``): missing values -> the training median, then standardised with the
  training mean and standard deviation (population sd);
* categorical columns (``sex``, ``race``, ``stage``, ``stage_edition``, ``subtype``, or any non-numeric
  column): one-hot with the most frequent training level as the dropped reference and an explicit
  ``missing`` level when the training cases have missing values. ``stage`` is first reduced to its main
  stage (``"Stage IIIA"`` -> ``"III"``, see :func:`main_stage`). At prediction, a level not seen in training
  (or a missing value when training had none) is encoded as the reference (all zeros), with a logged
  warning;
* columns constant on the training cases are dropped (e.g. ``subtype`` in a one-subtype cohort).

:class:`CoxPHBaseline` fits lifelines' ``CoxPHFitter`` on that matrix. Its fitted state can be exported without
pickle (:meth:`CoxPHBaseline.export_state`): a :class:`CoxPHState` holds the design (plain JSON), the
coefficients, lifelines' centring means and the Breslow baseline cumulative hazard at chosen times (float64
arrays), and predicts exactly what the fitted model predicts at those times.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import ConfigError, InputError, NotFittedError
from survpgc.models.registry import register_model
from survpgc.survival.convention import check_survival

__all__ = ["DEFAULT_COLUMNS", "ClinicalDesign", "CoxPHBaseline", "CoxPHState", "main_stage"]

log = logging.getLogger(__name__)

DEFAULT_COLUMNS: tuple[str, ...] = ("age", "sex", "race", "stage", "stage_edition", "subtype")
MISSING = "missing"
_STAGE = re.compile(r"^\s*(?:stage\s*)?(IV|III|II|I|0)(?:[A-C][0-9]?)?\s*$", re.IGNORECASE)
_TIME, _EVENT = "__time__", "__event__"


def main_stage(value: Any) -> str | None:
    """Main stage of a TCGA/AJCC stage string: ``"Stage IIIA"`` -> ``"III"``, ``"stage ivb"`` -> ``"IV"``,
    ``"Stage 0"`` -> ``"0"``; None for missing values and anything else (``"Stage X"``, ``"[Discrepancy]"``)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    m = _STAGE.match(str(value))
    return m.group(1).upper() if m else None


class ClinicalDesign:
    """Design-matrix builder for clinical columns, fitted on training cases only (see the module docstring).

    Parameters
    ----------
    columns
        Clinical columns to use, in this order. Columns absent from the training cases are skipped with a
        warning.
    stage_columns
        Columns reduced with :func:`main_stage` before one-hot encoding.

    Attributes (after :meth:`fit`)
    ------------------------------
    numeric_
        ``{column: (mean, sd, median)}`` of the numeric columns kept.
    levels_
        ``{column: (reference, [levels with a dummy column])}`` of the categorical columns.
    columns_
        Names of the design-matrix columns (``"age"``, ``"sex=male"``, ``"race=missing"``, ...).
    """

    def __init__(self, columns: Sequence[str] = DEFAULT_COLUMNS, stage_columns: Sequence[str] = ("stage",)) -> None:
        if isinstance(columns, str) or not columns:
            raise ConfigError(f"`columns` must be a non-empty sequence of column names, got {columns!r}")
        self.columns = tuple(columns)
        self.stage_columns = tuple(stage_columns)
        self.numeric_: dict[str, tuple[float, float, float]] = {}
        self.levels_: dict[str, tuple[str, list[str]]] = {}
        self.columns_: list[str] = []
        self._fitted = False
        self._warned: set[str] = set()

    def _warn(self, message: str, *args: object) -> None:
        """Log a warning once per fitted design (risk and survival predictions encode the same cases twice)."""
        text = message % args
        if text not in self._warned:
            self._warned.add(text)
            log.warning("%s", text)

    # -------------------------------------------------------------------- helpers
    def _categories(self, col: str, values: pd.Series, warn: bool = False) -> pd.Series:
        if col in self.stage_columns:
            mapped = values.map(main_stage)
            unparsed = values.notna() & mapped.isna()
            if warn and unparsed.any():
                self._warn(
                    "%s: %d value(s) not recognised as a stage (%s); treated as missing",
                    col,
                    int(unparsed.sum()),
                    sorted(map(str, values[unparsed].unique()))[:5],
                )
            values = mapped
        return values.map(lambda v: MISSING if pd.isna(v) else str(v).strip())

    def _encode(self, cases: pd.DataFrame, warn: bool) -> pd.DataFrame:
        blocks: dict[str, np.ndarray] = {}
        for col, (mean, sd, median) in self.numeric_.items():
            v = pd.to_numeric(cases[col], errors="coerce").astype(float)
            blocks[col] = ((v.fillna(median) - mean) / sd).to_numpy()
        for col, (reference, levels) in self.levels_.items():
            cats = self._categories(col, cases[col], warn)
            unseen = ~cats.isin([reference, *levels])
            if warn and unseen.any():
                self._warn(
                    "%s: %d case(s) with level(s) not seen in training %s; encoded as the reference level %r",
                    col,
                    int(unseen.sum()),
                    sorted(cats[unseen].unique())[:5],
                    reference,
                )
            for level in levels:
                blocks[f"{col}={level}"] = (cats == level).to_numpy(dtype=float)
        return pd.DataFrame(blocks, index=cases.index)

    # -------------------------------------------------------------------- API
    def fit(self, cases: pd.DataFrame) -> ClinicalDesign:
        """Learn the encoding from the training cases."""
        if not isinstance(cases, pd.DataFrame) or cases.empty:
            raise InputError("ClinicalDesign.fit needs a non-empty DataFrame of training cases")
        self.numeric_, self.levels_ = {}, {}
        self._warned = set()
        for col in self.columns:
            if col not in cases.columns:
                log.warning("clinical column %r not in the cases; skipped", col)
                continue
            values = cases[col]
            is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if is_numeric and col not in self.stage_columns:
                v = values.astype(float)
                if v.notna().sum() == 0:
                    log.warning("clinical column %r has no value in the training cases; dropped", col)
                    continue
                sd = float(np.std(v.dropna().to_numpy()))
                self.numeric_[col] = (float(v.mean()), sd if sd > 0 else 1.0, float(v.median()))
            else:
                counts = self._categories(col, values, warn=True).value_counts()
                observed = counts.drop(MISSING, errors="ignore")
                if observed.empty:
                    log.warning("clinical column %r has no value in the training cases; dropped", col)
                    continue
                # reference = most frequent observed level (ties: the first in sorted order)
                reference = sorted(observed.index, key=lambda lv: (-observed[lv], lv))[0]
                levels = sorted(lv for lv in counts.index if lv not in (reference, MISSING))
                if MISSING in counts.index:
                    levels.append(MISSING)
                self.levels_[col] = (reference, levels)
        x = self._encode(cases, warn=False)
        constant = [c for c in x.columns if np.ptp(x[c].to_numpy()) == 0]
        if constant:
            log.info("design columns constant on the training cases dropped: %s", constant)
        self.columns_ = [c for c in x.columns if c not in constant]
        for col in list(self.numeric_):
            if col not in self.columns_:
                del self.numeric_[col]
        for col, (reference, levels) in list(self.levels_.items()):
            kept = [lv for lv in levels if f"{col}={lv}" in self.columns_]
            if kept:
                self.levels_[col] = (reference, kept)
            else:
                del self.levels_[col]
        if not self.columns_:
            raise InputError(f"no usable clinical column among {list(self.columns)} (all absent or constant)")
        self._fitted = True
        return self

    def transform(self, cases: pd.DataFrame) -> pd.DataFrame:
        """Design matrix (n_cases, len(columns_)) float64, indexed like ``cases``."""
        if not self._fitted:
            raise NotFittedError("ClinicalDesign.transform called before fit")
        absent = [c for c in (*self.numeric_, *self.levels_) if c not in cases.columns]
        if absent:
            raise InputError(f"cases lack the clinical column(s) {absent} the design was fitted on")
        return self._encode(cases, warn=True)[self.columns_]

    def fit_transform(self, cases: pd.DataFrame) -> pd.DataFrame:
        """:meth:`fit` then :meth:`transform` on the same cases."""
        return self.fit(cases).transform(cases)

    @property
    def required_columns(self) -> list[str]:
        """The clinical columns :meth:`transform` reads (those kept by :meth:`fit`), in design order."""
        if not self._fitted:
            raise NotFittedError("ClinicalDesign.required_columns used before fit")
        return [*self.numeric_, *self.levels_]

    def to_dict(self) -> dict[str, Any]:
        """The fitted design as plain JSON values (floats exact in JSON: Python writes the shortest repr that
        reads back to the same double)."""
        if not self._fitted:
            raise NotFittedError("ClinicalDesign.to_dict called before fit")
        return {
            "columns": list(self.columns),
            "stage_columns": list(self.stage_columns),
            "numeric": {c: {"mean": m, "sd": s, "median": md} for c, (m, s, md) in self.numeric_.items()},
            "categorical": {c: {"reference": r, "levels": list(lv)} for c, (r, lv) in self.levels_.items()},
            "design_columns": list(self.columns_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClinicalDesign:
        """Inverse of :meth:`to_dict`: a fitted design."""
        try:
            design = cls(d["columns"], d["stage_columns"])
            num, cat = d["numeric"], d["categorical"]
            design.numeric_ = {c: (float(v["mean"]), float(v["sd"]), float(v["median"])) for c, v in num.items()}
            design.levels_ = {c: (str(v["reference"]), [str(x) for x in v["levels"]]) for c, v in cat.items()}
            design.columns_ = [str(c) for c in d["design_columns"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"not a ClinicalDesign state ({type(exc).__name__}: {exc})") from None
        design._fitted = True
        return design


class CoxPHState:
    """A fitted Cox model without lifelines: design, coefficients, centring means and the Breslow baseline
    cumulative hazard ``H0`` at ``times``.

    ``predict_risk`` is the linear predictor ``x . beta`` (as :meth:`CoxPHBaseline.predict_risk`);
    ``predict_survival`` is ``exp(-H0(t) exp((x - mean) . beta))`` at ``times`` only (as lifelines'
    ``predict_survival_function`` computes it, with ``H0`` linearly interpolated between event times when the
    state was exported).
    """

    def __init__(
        self, design: ClinicalDesign, coefficients: Any, norm_mean: Any, times: Any, baseline_cumhaz: Any
    ) -> None:
        self.design = design
        self.coefficients = np.asarray(coefficients, dtype=np.float64)
        self.norm_mean = np.asarray(norm_mean, dtype=np.float64)
        self.times = np.asarray(times, dtype=np.float64)
        self.baseline_cumhaz = np.asarray(baseline_cumhaz, dtype=np.float64)
        k = len(design.columns_)
        if self.coefficients.shape != (k,) or self.norm_mean.shape != (k,):
            raise InputError(
                f"Cox state: {k} design columns but coefficients {self.coefficients.shape} and centring means "
                f"{self.norm_mean.shape}"
            )
        if self.times.ndim != 1 or self.baseline_cumhaz.shape != self.times.shape:
            raise InputError(
                f"Cox state: baseline cumulative hazard {self.baseline_cumhaz.shape} does not match times "
                f"{self.times.shape}"
            )

    def predict_risk(self, cases: pd.DataFrame) -> np.ndarray:
        """(n,) linear predictor ``x . beta``; higher = worse."""
        x = self.design.transform(cases)
        return x.to_numpy(dtype=float) @ self.coefficients

    def predict_survival(self, cases: pd.DataFrame) -> np.ndarray:
        """(n, len(times)) survival probabilities at the state's ``times``."""
        x = self.design.transform(cases).to_numpy(dtype=float)
        v = np.exp(np.dot((x - self.norm_mean) / 1, self.coefficients))
        cumhaz = self.baseline_cumhaz[:, None] * v
        return np.clip(np.exp(-cumhaz).T, 0.0, 1.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric state (float64): ``coefficients``, ``norm_mean``, ``times``, ``baseline_cumhaz``."""
        return {"coefficients": self.coefficients, "norm_mean": self.norm_mean, "times": self.times,
                "baseline_cumhaz": self.baseline_cumhaz}  # fmt: skip


@register_model(
    "coxph",
    "Cox proportional hazards on one-hot / standardised clinical columns (lifelines, fitted per fold)",
    ("clinical",),
    neural=False,
)
class CoxPHBaseline:
    """Penalised Cox PH model on the clinical columns.

    Parameters
    ----------
    penalizer, l1_ratio
        lifelines ``CoxPHFitter`` elastic-net penalty (``penalizer * ((1 - l1_ratio) * ||b||^2 / 2 +
        l1_ratio * ||b||_1)``, on lifelines' internally normalised coefficients).
    columns
        Clinical columns of ``Cohort.cases`` to use.

    Attributes (after :meth:`fit`): ``design_`` (:class:`ClinicalDesign`), ``fitter_`` (the lifelines
    model), ``params_`` (coefficients, a Series indexed by design column).
    """

    def __init__(self, penalizer: float = 0.1, l1_ratio: float = 0.0, columns: Sequence[str] = DEFAULT_COLUMNS) -> None:
        if not penalizer >= 0:
            raise ConfigError(f"`penalizer` must be >= 0, got {penalizer!r}")
        if not 0 <= l1_ratio <= 1:
            raise ConfigError(f"`l1_ratio` must lie in [0, 1], got {l1_ratio!r}")
        self.penalizer = float(penalizer)
        self.l1_ratio = float(l1_ratio)
        self.columns = tuple(columns)
        self.design_: ClinicalDesign | None = None
        self.fitter_: Any = None

    @property
    def params_(self) -> pd.Series:
        """Fitted coefficients by design column."""
        return self._check_fitted().params_

    def _check_fitted(self) -> Any:
        if self.fitter_ is None:
            raise NotFittedError("CoxPHBaseline used before fit")
        return self.fitter_

    def fit(self, cases: pd.DataFrame, time: Any = None, event: Any = None) -> CoxPHBaseline:
        """Fit on the training cases; ``time`` / ``event`` default to the ``time`` / ``event`` columns."""
        from lifelines import CoxPHFitter

        time = cases["time"] if time is None else time
        event = cases["event"] if event is None else event
        surv = check_survival(time, event, require_event=True)
        if surv.time.shape[0] != len(cases):
            raise InputError(f"{len(cases)} cases but {surv.time.shape[0]} survival times")
        self.design_ = ClinicalDesign(self.columns).fit(cases)
        df = self.design_.transform(cases).reset_index(drop=True)
        df[_TIME], df[_EVENT] = surv.time, surv.event.astype(int)
        fitter = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio)
        fitter.fit(df, duration_col=_TIME, event_col=_EVENT)
        self.fitter_ = fitter
        return self

    def design_matrix(self, cases: pd.DataFrame) -> pd.DataFrame:
        """The fitted design matrix of ``cases``."""
        self._check_fitted()
        assert self.design_ is not None
        return self.design_.transform(cases)

    def predict_risk(self, cases: pd.DataFrame) -> np.ndarray:
        """(n,) linear predictor ``x . beta`` (log hazard ratio vs. the all-reference case); higher = worse."""
        x = self.design_matrix(cases)
        return x.to_numpy(dtype=float) @ self.params_.reindex(x.columns).to_numpy(dtype=float)

    def export_state(self, times: Any) -> CoxPHState:
        """The fitted model as a :class:`CoxPHState` that predicts the same risks and the same survival at
        ``times`` (finite, >= 0, increasing) without lifelines or pickle."""
        t = np.asarray(times, dtype=float).reshape(-1)
        if t.size == 0 or not np.isfinite(t).all() or (t < 0).any() or (np.diff(t) <= 0).any():
            raise InputError(f"`times` must be increasing finite times >= 0, got {times!r}")
        fitter = self._check_fitted()
        assert self.design_ is not None
        names = list(self.design_.columns_)
        base = fitter.baseline_cumulative_hazard_
        h0 = np.interp(t, base.index.values, base.values.reshape(base.shape[0]))
        return CoxPHState(
            self.design_,
            fitter.params_.reindex(names).to_numpy(dtype=float),
            fitter._norm_mean.reindex(names).to_numpy(dtype=float),
            t,
            h0,
        )

    def predict_survival(self, cases: pd.DataFrame, times: Any) -> np.ndarray:
        """(n, len(times)) survival probabilities S(t | x) (Breslow baseline of lifelines)."""
        t = np.asarray(times, dtype=float).reshape(-1)
        if t.size == 0 or not np.isfinite(t).all() or (t < 0).any():
            raise InputError(f"`times` must be a non-empty sequence of finite times >= 0, got {times!r}")
        x = self.design_matrix(cases).reset_index(drop=True)
        surv = self._check_fitted().predict_survival_function(x, times=t)
        return np.clip(surv.to_numpy(dtype=float).T, 0.0, 1.0)
