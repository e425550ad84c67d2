"""Calibration of predicted survival probabilities on a cohort with follow-up (external validation).

Two questions, two tools:

* **At a horizon** ``t`` (e.g. 1, 3, 5 years): do patients predicted to have ``S(t) = 0.7`` survive to ``t``
  70 % of the time?  :func:`calibration_at` groups the cases by predicted ``S(t)``, compares each group's
  mean prediction with its Kaplan-Meier estimate at ``t`` and tests the differences (Greenwood-Nam-D'Agostino).
* **Over the whole curve**: :func:`d_calibration` (Haider et al. 2020) checks that the predicted survival
  probability at each case's own observed time is uniformly distributed, as it is for a correct model.

Predicted curves of a discrete-time model are known only at its time-bin edges; :func:`survival_at`
evaluates them at any time (constant hazard within each bin).

Convention: ``time`` months > 0, ``event`` True = death.  Everything here is numpy / scipy, no I/O.

References
----------
* Haider H, Hoehn B, Davis S, Greiner R. Effective ways to build and evaluate individual survival
  distributions. JMLR 21(85):1-63, 2020 (D-calibration, section 4.4 and appendix B).
* Demler OV, Paynter NP, Cook NR. Tests of calibration and goodness-of-fit in the survival setting.
  Stat Med 34(10):1659-1680, 2015 (the Greenwood-Nam-D'Agostino test, "GND").
* D'Agostino RB, Nam B-H. Evaluation of the performance of survival analysis models: discrimination and
  calibration measures. Handbook of Statistics 23:1-25, 2003.
* Austin PC, Harrell FE, van Klaveren D. Graphical calibration curves and the integrated calibration index
  (ICI) for survival models. Stat Med 39(21):2714-2742, 2020 (ICI = mean absolute difference between
  predicted and observed probabilities).
* Riley RD et al. Evaluation of clinical prediction models (part 1). BMJ 384:e074819, 2024 (observed /
  expected ratio as calibration-in-the-large).
* Kvamme H, Borgan O. Continuous and discrete-time survival prediction with neural networks. Lifetime
  Data Anal 27:710-736, 2021 (constant-hazard interpolation of discrete-time survival curves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from survpgc.errors import InputError, InvalidRiskError, LengthMismatchError
from survpgc.survival.convention import as_1d_array, check_survival
from survpgc.survival.stats import kaplan_meier

__all__ = [
    "DEFAULT_MAX_GROUPS",
    "MIN_EVENTS_PER_GROUP",
    "DCalibration",
    "HorizonCalibration",
    "calibration_at",
    "calibration_groups",
    "d_calibration",
    "survival_at",
]

#: At most this many groups at a horizon (deciles of predicted survival).
DEFAULT_MAX_GROUPS = 10
#: Every group needs at least this many deaths by the horizon (Demler et al. 2015 recommend 5).
MIN_EVENTS_PER_GROUP = 5


# --------------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------------
def _check_prob(values: Any, n: int, name: str) -> np.ndarray:
    arr = as_1d_array(values, name)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` holds non-numeric values: {exc}") from exc
    if arr.shape[0] != n:
        raise LengthMismatchError(f"`{name}` has {arr.shape[0]} values but there are {n} cases")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidRiskError(
            f"`{name}` has {int(bad.sum())} value(s) that are not survival probabilities in [0, 1], "
            f"first at case {i}: {arr[i]!r}"
        )
    return arr


def _check_horizon(t: Any) -> float:
    try:
        h = float(t)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the horizon must be a positive number of months, got {t!r}") from exc
    if not (np.isfinite(h) and h > 0):
        raise InputError(f"the horizon must be a positive finite number of months, got {t!r}")
    return h


# --------------------------------------------------------------------------------------------------
# predicted curves at any time
# --------------------------------------------------------------------------------------------------
def survival_at(edges: Any, surv: Any, times: Any) -> np.ndarray:
    """Discrete-time survival curves evaluated at any times, by constant-hazard interpolation.

    Parameters
    ----------
    edges : array-like, shape (K + 1,)
        Time-bin edges in months, strictly increasing, ``edges[0] >= 0``; the last may be ``inf`` (an open
        last bin, as :class:`~survpgc.survival.binning.TimeBinner` makes).
    surv : array-like, shape (n, K)
        ``surv[i, k]`` = predicted probability that case ``i`` survives past the end of bin ``k``
        (``edges[k + 1]``), in [0, 1].
    times : array-like, shape (m,) or (n, m)
        Months > 0; one row of times for every case, or a row per case (e.g. each case's own observed
        time as shape (n, 1)).

    Returns
    -------
    numpy.ndarray, shape (n, m)

    Notes
    -----
    The curve passes through ``S(0) = 1`` (and ``S(edges[0]) = 1``) and ``S(edges[k + 1]) = surv[:, k]``
    at every finite edge; between two knots ``log S`` is linear in time, i.e. the hazard is constant
    within a bin ("constant hazard interpolation", Kvamme & Borgan 2021) -- the continuous-time model whose
    bin survival probabilities are exactly the discrete ones.  Beyond the last finite edge (inside an open
    last bin, or after a closed one) the hazard of the last finite bin continues: the model's survival
    past an open bin (``surv[:, -1]`` when ``edges[-1] = inf``) says nothing about *when* within that bin
    deaths happen, so it is not used.  A knot with ``S = 0`` keeps the curve at 0 from there on.
    """
    e = np.asarray(edges, dtype=np.float64).ravel()
    s = np.asarray(surv, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    if e.shape[0] < 2 or s.ndim != 2 or s.shape[1] != e.shape[0] - 1:
        raise InputError(
            f"time-bin edges ({e.shape[0]} values) and survival columns ({s.shape[-1]}) do not match: "
            "K bins need K + 1 edges and K survival columns"
        )
    if np.isnan(e).any() or e[0] < 0 or not np.all(np.diff(e) > 0) or np.isinf(e[:-1]).any():
        raise InputError(
            f"time-bin edges must be strictly increasing, >= 0 and finite except the last, got {e.tolist()}"
        )
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise InvalidRiskError(f"survival column {k} of case {i} is {s[i, k]!r}, not a probability in [0, 1]")
    finite = np.isfinite(e)
    knots_t = np.concatenate(([0.0], e[finite])) if e[0] > 0 else e[finite]
    # S at the knots: 1 at 0 (and at edges[0]), then surv at each finite bin end
    n_finite_ends = int(finite[1:].sum())
    knots_s = np.hstack([np.ones((s.shape[0], knots_t.shape[0] - n_finite_ends)), s[:, :n_finite_ends]])
    if knots_t.shape[0] < 2:
        raise InputError("survival_at needs at least one finite bin end after 0 (a single open bin has no scale)")
    tt = np.asarray(times, dtype=np.float64)
    if tt.ndim == 1:
        tt = np.broadcast_to(tt[None, :], (s.shape[0], tt.shape[0]))
    if tt.ndim != 2 or tt.shape[0] != s.shape[0]:
        raise InputError(f"`times` must have shape (m,) or ({s.shape[0]}, m), got {np.shape(times)}")
    if np.isnan(tt).any() or (tt < 0).any():
        raise InputError("`times` must be >= 0 and not NaN")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(knots_s)  # -inf where S = 0
        # segment j runs from knot j to knot j + 1; times past the last knot use the last segment
        j = np.clip(np.searchsorted(knots_t, tt, side="right") - 1, 0, knots_t.shape[0] - 2)
        rows = np.arange(s.shape[0])[:, None]
        t0, t1 = knots_t[j], knots_t[j + 1]
        l0, l1 = log_s[rows, j], log_s[rows, j + 1]
        frac = (tt - t0) / (t1 - t0)
        slope_part = np.where(frac == 0, 0.0, (l1 - l0) * frac)
        out = np.where(np.isneginf(l0), 0.0, np.exp(l0 + slope_part))
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# calibration at a horizon
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HorizonCalibration:
    """Predicted vs observed survival at one horizon, by group of predicted survival.

    Group arrays (shape (g,), group 0 = lowest predicted survival, i.e. highest risk): ``n`` cases,
    ``deaths`` by ``t``, ``predicted`` mean predicted ``S(t)``, ``predicted_min`` / ``predicted_max``,
    ``observed`` Kaplan-Meier ``S(t)`` with its 95 % log(-log) interval ``observed_low`` / ``observed_high``
    and Greenwood variance ``observed_var`` (NaN where the group's follow-up ends before ``t`` with a
    censoring, so ``S(t)`` is not estimable).  ``group`` (shape (n_cases,)) is the group of each case.
    """

    time: float
    group: np.ndarray
    n: np.ndarray
    deaths: np.ndarray
    predicted: np.ndarray
    predicted_min: np.ndarray
    predicted_max: np.ndarray
    observed: np.ndarray
    observed_low: np.ndarray
    observed_high: np.ndarray
    observed_var: np.ndarray
    predicted_overall: float  #: mean predicted S(t) over all cases
    observed_overall: float  #: Kaplan-Meier S(t) of all cases (NaN when not estimable)
    oe_ratio: float  #: observed / expected deaths by t: (1 - KM(t)) / mean(1 - S_pred(t))
    ici: float  #: group-size-weighted mean |observed - predicted| over groups with an observed value
    max_error: float  #: largest |observed - predicted| over groups
    statistic: float  #: Greenwood-Nam-D'Agostino chi-square
    df: int  #: its degrees of freedom (groups in the statistic)
    p_value: float  #: P(chi2_df >= statistic); NaN when no group can be tested
    notes: tuple[str, ...] = ()


def calibration_groups(
    predicted: Any,
    deaths_by_t: Any,
    *,
    max_groups: int = DEFAULT_MAX_GROUPS,
    min_events: int = MIN_EVENTS_PER_GROUP,
) -> np.ndarray:
    """The calibration group (0 .. g-1) of each case, from its predicted ``S(t)``.

    Rule: ``g0 = min(max_groups, max(1, D // min_events))`` groups of (nearly) equal size by increasing
    predicted ``S(t)`` (``D`` = deaths by ``t``; deciles when ``D >= 10 * min_events``); cases with the same
    prediction always share a group (a tie block goes to the group of its first case, and groups left empty
    are dropped).  Then, while some group has fewer than ``min_events`` deaths by ``t`` and more than one
    group remains, the first such group is merged with its neighbour holding fewer deaths (the lower one on
    a tie): the Greenwood-Nam-D'Agostino test needs about five deaths per group (Demler et al. 2015), and a
    Kaplan-Meier estimate without deaths has no variance.  Group 0 has the lowest predicted survival.
    """
    p = np.asarray(predicted, dtype=np.float64)
    d = np.asarray(deaths_by_t, dtype=bool)
    n = p.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if int(max_groups) < 1 or int(min_events) < 1:
        raise InputError(f"need max_groups >= 1 and min_events >= 1, got {max_groups}, {min_events}")
    g0 = int(min(int(max_groups), max(1, int(d.sum()) // int(min_events))))
    first_rank = _sps.rankdata(p, method="min") - 1  # 0-based rank of the first case of each tie block
    group = (first_rank * g0 // n).astype(np.int64)
    _, group = np.unique(group, return_inverse=True)  # drop empty groups, renumber 0..g-1
    group = group.astype(np.int64)
    while True:
        k = int(group.max()) + 1
        counts = np.bincount(group, weights=d, minlength=k)
        small = np.flatnonzero(counts < min_events)
        if k == 1 or small.size == 0:
            return group
        i = int(small[0])
        if i == 0:
            j = 1
        elif i == k - 1:
            j = k - 2
        else:
            j = i - 1 if counts[i - 1] <= counts[i + 1] else i + 1
        lo, hi = min(i, j), max(i, j)
        group = np.where(group == hi, lo, group)
        group = np.where(group > hi, group - 1, group)


def _km_at(time: np.ndarray, event: np.ndarray, t: float) -> tuple[float, float, float, float]:
    """Kaplan-Meier ``S(t)``, its 95 % log(-log) interval and Greenwood variance; NaNs when not estimable
    (follow-up ends before ``t`` with a censoring)."""
    km = kaplan_meier(time, event)
    k = int(np.searchsorted(km.times, t, side="right")) - 1
    if time.max() < t and km.survival[-1] > 0:
        return (float("nan"),) * 4
    if k < 0:
        return 1.0, 1.0, 1.0, 0.0
    ok = (km.events[: k + 1] > 0) & (km.at_risk[: k + 1] > km.events[: k + 1])
    d, r = km.events[: k + 1][ok], km.at_risk[: k + 1][ok]
    s = float(km.survival[k])
    var = s * s * float(np.sum(d / (r * (r - d))))
    return s, float(km.ci_low[k]), float(km.ci_high[k]), var


def calibration_at(
    time: Any,
    event: Any,
    predicted: Any,
    t: float,
    *,
    max_groups: int = DEFAULT_MAX_GROUPS,
    min_events: int = MIN_EVENTS_PER_GROUP,
) -> HorizonCalibration:
    """Calibration of predicted survival at horizon ``t`` (months), by group of predicted survival.

    Parameters
    ----------
    time, event : array-like, shape (n,)
        Observed follow-up (months > 0) and death flags of the validation cohort.
    predicted : array-like, shape (n,)
        Each case's predicted probability of surviving beyond ``t``.
    t : float
        The horizon, months.
    max_groups, min_events
        The grouping rule of :func:`calibration_groups` (deciles, fewer for few deaths by ``t``).

    Returns
    -------
    HorizonCalibration
        Per group: mean predicted vs Kaplan-Meier observed ``S(t)`` (95 % CI).  Summaries:

        * ``oe_ratio`` -- observed / expected deaths by ``t``, ``(1 - KM(t)) / mean_i (1 - S_i(t))`` on the
          whole cohort (calibration-in-the-large; 1 = calibrated, > 1 = the model underestimates risk);
        * ``ici`` -- the grouped analogue of Austin et al.'s integrated calibration index:
          ``sum_g n_g |KM_g(t) - mean_g S(t)| / sum_g n_g``; ``max_error`` its largest term;
        * the Greenwood-Nam-D'Agostino test (Demler et al. 2015):
          ``chi2 = sum_g (KM_g(t) - mean_g S(t))^2 / Var_Greenwood(KM_g(t))``.  Degrees of freedom: the
          number of groups ``g`` (not Demler's ``g - 1``): on an external cohort nothing was fitted to these
          data, as with the Hosmer-Lemeshow statistic on a validation sample (Hosmer, Lemeshow &
          Sturdivant 2013, section 5.2.2).  Groups whose ``S(t)`` is not estimable or has zero variance
          (every case dead by ``t``) are left out, with a note.

    Notes
    -----
    Kaplan-Meier ``S(t)`` includes the deaths at ``t``; a group whose follow-up ends before ``t`` with a
    censoring has no estimate (NaN).  Deaths by ``t`` are ``event & time <= t``.
    """
    surv = check_survival(time, event)
    tt, ev = surv.time, surv.event
    h = _check_horizon(t)
    p = _check_prob(predicted, tt.shape[0], "predicted")
    deaths_by_t = ev & (tt <= h)
    group = calibration_groups(p, deaths_by_t, max_groups=max_groups, min_events=min_events)
    g = int(group.max()) + 1
    cols: dict[str, list[float]] = {k: [] for k in ("n", "deaths", "pred", "pmin", "pmax", "obs", "lo", "hi", "var")}
    for k in range(g):
        m = group == k
        s, lo, hi, var = _km_at(tt[m], ev[m], h)
        for key, val in zip(
            cols,
            (m.sum(), deaths_by_t[m].sum(), p[m].mean(), p[m].min(), p[m].max(), s, lo, hi, var),
            strict=True,
        ):
            cols[key].append(float(val))
    arr = {k: np.asarray(v) for k, v in cols.items()}
    notes: list[str] = []
    s_all = _km_at(tt, ev, h)[0]
    pred_all = float(p.mean())
    expected = 1.0 - pred_all
    oe = (1.0 - s_all) / expected if expected > 0 and np.isfinite(s_all) else float("nan")
    diff = np.abs(arr["obs"] - arr["pred"])
    has_obs = np.isfinite(arr["obs"])
    if not has_obs.all():
        notes.append(
            f"{int((~has_obs).sum())} group(s) have no Kaplan-Meier estimate at {h:g} months "
            "(follow-up ends earlier with a censoring)"
        )
    ici = float(np.sum(arr["n"][has_obs] * diff[has_obs]) / arr["n"][has_obs].sum()) if has_obs.any() else np.nan
    max_error = float(diff[has_obs].max()) if has_obs.any() else float("nan")
    testable = has_obs & (arr["var"] > 0)
    if (has_obs & ~testable).any():
        notes.append(
            f"{int((has_obs & ~testable).sum())} group(s) left out of the GND test: their Kaplan-Meier "
            f"S({h:g}) has zero Greenwood variance (no death, or every case dead, by then)"
        )
    df = int(testable.sum())
    if df:
        statistic = float(np.sum((arr["obs"][testable] - arr["pred"][testable]) ** 2 / arr["var"][testable]))
        p_value = float(_sps.chi2.sf(statistic, df))
    else:
        statistic, p_value = float("nan"), float("nan")
        notes.append(f"no group can be tested at {h:g} months")
    return HorizonCalibration(
        time=h,
        group=group,
        n=arr["n"].astype(np.int64),
        deaths=arr["deaths"].astype(np.int64),
        predicted=arr["pred"],
        predicted_min=arr["pmin"],
        predicted_max=arr["pmax"],
        observed=arr["obs"],
        observed_low=arr["lo"],
        observed_high=arr["hi"],
        observed_var=arr["var"],
        predicted_overall=pred_all,
        observed_overall=float(s_all),
        oe_ratio=float(oe),
        ici=ici,
        max_error=max_error,
        statistic=statistic,
        df=df,
        p_value=p_value,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------------
# D-calibration
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DCalibration:
    """D-calibration: how the cases' probability mass falls into equal-probability bins of ``S(t_i)``.

    ``counts[b]`` (shape (n_bins,), float) is the mass in ``[b / B, (b + 1) / B)`` (the last bin closed at
    1); ``expected`` = ``n / B``; ``statistic`` the Pearson chi-square, ``df = B - 1``, ``p_value``.
    """

    counts: np.ndarray
    expected: float
    statistic: float
    df: int
    p_value: float
    n: int
    n_censored: int


def d_calibration(time: Any, event: Any, surv_at_time: Any, *, n_bins: int = 10) -> DCalibration:
    """D-calibration test of Haider et al. (2020, JMLR 21(85), section 4.4 and appendix B).

    For a correct model, the predicted survival probability at a case's true death time is uniform on
    [0, 1]; the test bins these probabilities into ``n_bins`` equal intervals and compares the counts with
    ``n / n_bins`` by Pearson's chi-square with ``n_bins - 1`` degrees of freedom.

    Parameters
    ----------
    time, event : array-like, shape (n,)
        Observed follow-up and death flags (only ``event`` enters the statistic; ``time`` is checked so
        that the arrays come from one cohort).
    surv_at_time : array-like, shape (n,)
        ``S_i(t_i)``: each case's predicted survival probability at its own observed time (e.g.
        :func:`survival_at` with ``times = time[:, None]``), in [0, 1].
    n_bins : int
        Number of equal-probability bins, default 10 (the paper's).

    Returns
    -------
    DCalibration

    Notes
    -----
    Bin ``b`` is ``[b / B, (b + 1) / B)`` (the last one includes 1), so a probability on a boundary goes to
    the higher bin.  A death at ``t_i`` with ``p = S_i(t_i)`` adds 1 to the bin of ``p``.  A censored case
    only tells that the death comes later, i.e. that its probability lies uniformly in ``[0, p]``: it adds
    ``(p - b / B) / p`` to its own bin ``b`` and ``1 / (B p)`` to every lower bin (each case adds 1 in all);
    a censored case in the lowest bin (including ``p = 0``) adds 1 to it.  The test is approximate for
    small cohorts (the chi-square approximation wants ``n / B >= 5``).
    """
    surv = check_survival(time, event)
    p = _check_prob(surv_at_time, surv.time.shape[0], "surv_at_time")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise InputError(f"`n_bins` must be an integer >= 2, got {n_bins!r}")
    b_count = int(n_bins)
    n = p.shape[0]
    b = np.minimum(np.floor(p * b_count), b_count - 1).astype(np.int64)
    counts = np.bincount(b[surv.event], minlength=b_count).astype(np.float64)
    cens = ~surv.event
    pc, bc = p[cens], b[cens]
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(bc == 0, 1.0, (pc - bc / b_count) / pc)
        lower_each = np.where(bc == 0, 0.0, 1.0 / (b_count * pc))
    counts += np.bincount(bc, weights=own, minlength=b_count)
    # each censored case in bin b adds lower_each to bins 0 .. b-1
    below = np.bincount(bc, weights=lower_each, minlength=b_count + 1)  # mass per own-bin
    counts += np.cumsum(below[::-1])[::-1][1 : b_count + 1]
    expected = n / b_count
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return DCalibration(
        counts=counts,
        expected=float(expected),
        statistic=statistic,
        df=b_count - 1,
        p_value=float(_sps.chi2.sf(statistic, b_count - 1)),
        n=int(n),
        n_censored=int(cens.sum()),
    )
