"""Discrimination and calibration metrics for right-censored survival predictions.

All functions take numpy-like inputs in the survpgc convention and return plain floats / arrays:

* ``time``  -- shape (n,), months, finite and > 0;
* ``event`` -- shape (n,), ``True`` = death observed, ``False`` = censored;
* ``risk``  -- shape (n,), finite, **higher = worse** (shorter expected survival);
* ``surv_prob`` -- shape (n, n_times), predicted probability of surviving *beyond* ``times[k]``.

Every input is validated through :mod:`survpgc.survival.convention`; problems are reported with the
:mod:`survpgc.errors` hierarchy (never a silent NaN).

The estimators themselves are scikit-survival's (``sksurv.metrics``); this module fixes the conventions
around them, documents their tie rules, and turns their silent NaNs / generic ``ValueError`` s into
explicit errors.  scikit-survival is imported on first use.

Censoring weights (Uno's C, time-dependent AUC, Brier score) come from the Kaplan-Meier estimate of the
censoring distribution ``G(t) = P(C > t)`` fitted on the **training** set only.  At a time where both
deaths and censorings occur, the deaths are taken to happen first (a censoring at ``u`` is divided by the
number still at risk after the deaths at ``u``).  ``G`` is right-continuous and is evaluated *at* the
observed time (``G(t_i)``, including training censorings at ``t_i``).  ``G`` can only be estimated up to
the largest training time ``T_train``; it is zero from ``T_train`` on when a training case was censored
at ``T_train``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from survpgc.errors import (
    InputError,
    InvalidRiskError,
    InvalidTimeError,
    LengthMismatchError,
    NoComparablePairError,
    TimeRangeError,
)
from survpgc.survival.convention import SurvivalArrays, check_risk, check_survival, to_structured

__all__ = [
    "TIED_RISK_TOL",
    "brier_score",
    "harrell_cindex",
    "integrated_brier_score",
    "td_auc",
    "uno_cindex",
]

#: Two risk scores whose absolute difference is at most this value count as tied (scikit-survival's
#: ``tied_tol``), for every concordance-type metric in this module.
TIED_RISK_TOL = 1e-8


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _sksurv_metrics() -> Any:
    from sksurv import metrics  # imported on first use: scikit-survival is slow to import

    return metrics


def _check_train(train_time: Any, train_event: Any) -> SurvivalArrays:
    # scikit-survival refuses to fit the censoring distribution on an all-censored training set.
    return check_survival(train_time, train_event, require_event=True, time_name="train_time", event_name="train_event")


def _check_test(time: Any, event: Any) -> SurvivalArrays:
    return check_survival(time, event, require_event=True)


def _has_comparable_pair(time: np.ndarray, anchor: np.ndarray, event: np.ndarray) -> bool:
    """Whether some anchor ``i`` (an event) has a partner ``j`` with ``t_j > t_i``, or ``t_j == t_i`` and
    ``j`` censored."""
    if not anchor.any():
        return False
    t_max = time.max()
    if time[anchor].min() < t_max:
        return True  # the case at t_max outlives that anchor
    # every anchor is at t_max: only a case censored at t_max can be its partner
    return bool(np.any(~event & (time == t_max)))


def _censoring_support(train: SurvivalArrays) -> tuple[float, bool]:
    """Largest training time ``T`` and whether ``G(T) > 0`` (no training censoring at ``T``).

    The training censoring KM ``G`` is positive and estimable on ``t < T``; at ``t == T`` only when
    ``inclusive``; never beyond ``T``.
    """
    t_max = float(train.time.max())
    inclusive = not bool(np.any(~train.event & (train.time == t_max)))
    return t_max, inclusive


def _check_eval_times(times: Any, *, min_len: int = 1) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(times.detach().cpu().numpy() if hasattr(times, "detach") else times))
    if arr.ndim != 1:
        raise InputError(f"`times` must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("`times` is empty; give at least one evaluation time (months)")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`times` holds non-numeric values: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise InvalidTimeError(f"`times` has NaN/inf value(s): {arr.tolist()}")
    if arr.size < min_len:
        raise InputError(f"`times` has {arr.size} value(s) but at least {min_len} are needed to integrate over time")
    if arr.size > 1 and not np.all(np.diff(arr) > 0):
        raise InputError(f"`times` must be strictly increasing (sorted, no duplicates), got {arr.tolist()}")
    return arr


def _check_times_in_followup(times: np.ndarray, test: SurvivalArrays, train: SurvivalArrays) -> None:
    """Evaluation times must satisfy ``min(test time) <= t < min(max(test time), max(train time))``."""
    lo = float(test.time.min())
    hi_test = float(test.time.max())
    hi_train = float(train.time.max())
    for t in times:
        if t < lo or t >= hi_test:
            raise TimeRangeError(
                f"evaluation time {t:g} lies outside the follow-up of the test data; every time must "
                f"satisfy {lo:g} <= t < {hi_test:g} (min(time) <= t < max(time))"
            )
        if t >= hi_train:
            raise TimeRangeError(
                f"evaluation time {t:g} is not before the end of the training follow-up ({hi_train:g}); "
                "the training censoring distribution cannot be estimated (or is zero) there -- every time "
                f"must satisfy t < max(train_time) = {hi_train:g}"
            )


def _truncate_after(test: SurvivalArrays, horizon: float, t_max_train: float, *, censor_late: bool) -> SurvivalArrays:
    """Test data as seen up to ``horizon`` (< ``t_max_train``).

    Cases followed beyond ``horizon`` are controls at every evaluation time and never need a censoring
    weight at their own time; their time is capped at ``t_max_train`` (still after ``horizon``) and, with
    ``censor_late``, they are marked censored, so that scikit-survival does not look up ``G`` where it is
    undefined or zero.  Nothing the metrics use at times ``<= horizon`` changes (risk sets, deaths, the
    test Kaplan-Meier up to ``horizon``).
    """
    after = test.time > horizon
    time = np.where(after, np.minimum(test.time, t_max_train), test.time)
    event = test.event & ~after if censor_late else test.event
    return SurvivalArrays(time, event)


def _check_surv_prob(surv_prob: Any, n: int, n_times: int) -> np.ndarray:
    if hasattr(surv_prob, "detach") and hasattr(surv_prob, "cpu"):
        surv_prob = surv_prob.detach().cpu().numpy()
    elif hasattr(surv_prob, "to_numpy"):
        surv_prob = surv_prob.to_numpy()
    try:
        arr = np.asarray(surv_prob, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`surv_prob` cannot be converted to a float array: {exc}") from exc
    if arr.ndim == 1 and n_times == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(
            f"`surv_prob` must be 2-D of shape (n_cases, n_times) = ({n}, {n_times}), got shape {arr.shape}"
        )
    if arr.shape[0] != n:
        raise LengthMismatchError(f"`surv_prob` has {arr.shape[0]} rows but there are {n} cases")
    if arr.shape[1] != n_times:
        raise LengthMismatchError(f"`surv_prob` has {arr.shape[1]} columns but there are {n_times} evaluation times")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise InvalidRiskError(
            f"`surv_prob` has {int(bad.sum())} NaN/inf value(s), first at [{i}, {k}]; "
            "survival probabilities must be finite"
        )
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise InvalidRiskError(
            f"`surv_prob` has {int(bad.sum())} value(s) outside [0, 1], first [{i}, {k}]={arr[i, k]!r}; "
            "expected survival probabilities (not risks)"
        )
    return arr


# --------------------------------------------------------------------------------------------------
# concordance
# --------------------------------------------------------------------------------------------------
def harrell_cindex(time: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance index (scikit-survival's ``concordance_index_censored``).

    Parameters
    ----------
    time : array-like, shape (n,)
        Months to death or censoring, > 0.
    event : array-like, shape (n,)
        ``True`` = death observed.
    risk : array-like, shape (n,)
        Predicted risk, **higher = worse**.

    Returns
    -------
    float
        ``(concordant + 0.5 * tied_risk) / comparable`` in [0, 1]; 0.5 = random, 1 = perfect.

    Notes
    -----
    Tie rules (identical to lifelines' ``concordance_index(time, -risk, event)``):

    * a pair ``(i, j)`` is *comparable* when ``event_i`` and either ``t_i < t_j``, or ``t_i == t_j``
      and ``j`` is censored (a case censored at the time of a death is taken to outlive it);
    * two deaths at the same time, two censored cases, or a censored case before a death are not
      comparable;
    * a comparable pair is concordant when ``risk_i > risk_j``; risks with
      ``|risk_i - risk_j| <= TIED_RISK_TOL`` (1e-8) count 0.5.

    Raises
    ------
    EmptyInputError, LengthMismatchError, InvalidTimeError, InvalidEventError, InvalidRiskError
        Invalid inputs.
    NoEventError
        No death observed.
    NoComparablePairError
        No comparable pair (e.g. a single case, or all deaths at the same last time).
    """
    surv = check_survival(time, event, require_event=True)
    r = check_risk(risk, surv.time.shape[0])
    if not _has_comparable_pair(surv.time, surv.event, surv.event):
        raise NoComparablePairError(
            f"no comparable pair among {surv.time.shape[0]} case(s): a pair needs a death strictly before "
            "another case's time (or a case censored at the same time); Harrell's C is undefined"
        )
    cindex = _sksurv_metrics().concordance_index_censored(surv.event, surv.time, r, tied_tol=TIED_RISK_TOL)[0]
    return float(cindex)


def _uno_truncation_time(tau: Any, test: SurvivalArrays, t_max: float, inclusive: bool) -> float:
    """The truncation time Uno's C uses: ``tau`` checked against the training follow-up, or, for None, the
    end of the range where the censoring weights are estimable and positive (see :func:`uno_cindex`)."""
    if tau is None:
        return float(np.nextafter(t_max, np.inf)) if inclusive else t_max
    try:
        tau_eff = float(tau)
    except (TypeError, ValueError) as exc:
        raise TimeRangeError(f"`tau` must be a positive number of months, got {tau!r}") from exc
    if not np.isfinite(tau_eff) or tau_eff <= 0:
        raise TimeRangeError(f"`tau` must be a positive finite number of months, got {tau!r}")
    unsupported = test.time > t_max if inclusive else test.time >= t_max
    bad = test.event & (test.time < tau_eff) & unsupported
    if bad.any():
        worst = float(test.time[bad].min())
        limit = f"<= {t_max:g}" if inclusive else f"< {t_max:g}"
        raise TimeRangeError(
            f"tau={tau_eff:g} includes a test death at {worst:g}, where the training censoring "
            f"distribution is not estimable or is zero (training follow-up ends at {t_max:g}); "
            f"use tau <= {worst:g} or tau=None (anchors must satisfy t {limit})"
        )
    return tau_eff


def uno_cindex(
    train_time: Any,
    train_event: Any,
    time: Any,
    event: Any,
    risk: Any,
    tau: float | None = None,
) -> float:
    """Uno's inverse-probability-of-censoring-weighted concordance index.

    scikit-survival's ``concordance_index_ipcw``: Harrell's comparable pairs, each weighted by
    ``1 / G(t_i)^2`` of its earlier death ``i``, where ``G`` is the Kaplan-Meier estimate of the
    censoring distribution fitted on the **training** set (see the module docstring), and only pairs whose
    earlier death happens before the truncation time (``t_i < tau``) count.

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training survival data; used only to estimate the censoring distribution.  Needs one death.
    time, event : array-like, shape (n,)
        Test survival data.
    risk : array-like, shape (n,)
        Predicted risk for the test cases, **higher = worse**.
    tau : float, optional
        Truncation time (months).  ``None`` (default) uses every pair whose censoring weight can be
        estimated and is positive: anchors with ``t_i < max(train_time)``, plus ``t_i == max(train_time)``
        when no training case was censored at that time.  An explicit ``tau`` must not need ``G`` beyond
        that range: every test death with ``t_i < tau`` must lie inside it, else :class:`TimeRangeError`.

    Returns
    -------
    float
        ``sum_ij w_i comparable_ij (I(risk_i > risk_j) + 0.5 I(tie_ij)) / sum_ij w_i comparable_ij``.

    Notes
    -----
    Tie rules are those of :func:`harrell_cindex` (a case censored at the time of a death outlives it; two
    deaths at one time are not comparable; risks within ``TIED_RISK_TOL`` count 0.5).

    Raises
    ------
    NoEventError
        No death in the training or the test data.
    TimeRangeError
        ``tau`` is not a positive finite number, or a test death before ``tau`` lies beyond the training
        follow-up.
    NoComparablePairError
        No comparable pair with an anchor before ``tau``.
    """
    train = _check_train(train_time, train_event)
    test = _check_test(time, event)
    r = check_risk(risk, test.time.shape[0])
    t_max, inclusive = _censoring_support(train)
    tau_eff = _uno_truncation_time(tau, test, t_max, inclusive)

    anchor = test.event & (test.time < tau_eff)
    if not _has_comparable_pair(test.time, anchor, test.event):
        raise NoComparablePairError(
            f"no comparable pair whose earlier death lies before tau={tau_eff:g} (and inside the training "
            f"follow-up, max(train_time)={t_max:g}); Uno's C is undefined"
        )
    cindex = _sksurv_metrics().concordance_index_ipcw(
        to_structured(train.time, train.event),
        to_structured(test.time, test.event),
        r,
        tau=tau_eff,
        tied_tol=TIED_RISK_TOL,
    )[0]
    return float(cindex)


# --------------------------------------------------------------------------------------------------
# time-dependent AUC
# --------------------------------------------------------------------------------------------------
def td_auc(
    train_time: Any,
    train_event: Any,
    time: Any,
    event: Any,
    risk: Any,
    times: Any,
) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic time-dependent AUC and its integrated mean (``cumulative_dynamic_auc``).

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training survival data; used only for the censoring distribution ``G``.  Needs one death.
    time, event : array-like, shape (n,)
        Test survival data.
    risk : array-like, shape (n,)
        Predicted (time-independent) risk, **higher = worse**.
    times : float or array-like, shape (n_times,)
        Evaluation times (months), strictly increasing, each with
        ``min(time) <= t < max(time)`` and ``t < max(train_time)``.

    Returns
    -------
    auc : numpy.ndarray, shape (n_times,)
        ``AUC(t) = sum_{i case, j control} w_i (I(risk_i > risk_j) + 0.5 I(tie_ij))
        / (sum_{i case} w_i * n_controls)`` where cases are deaths by ``t`` (``event_i`` and
        ``t_i <= t``), controls are cases still followed after ``t`` (``t_j > t``), ``w_i = 1 / G(t_i)``
        (training censoring KM) and ties are risks within ``TIED_RISK_TOL``.
    iauc : float
        scikit-survival's integrated mean: with ``S`` the Kaplan-Meier estimate of the **test** set and
        ``S(t_0) := 1``, ``iauc = sum_k AUC(t_k) (S(t_{k-1}) - S(t_k)) / (1 - S(t_K))``.  The first weight
        is ``1 - S(t_1)`` (the survival drop from time 0, not from ``t_1``).  With one time, ``AUC(t_1)``.

    Raises
    ------
    TimeRangeError
        A time outside the test or training follow-up, or a time by which no test death has occurred.
    InputError
        ``times`` empty, not strictly increasing, or not 1-D.
    NoEventError
        No death in the training or the test data.
    """
    train = _check_train(train_time, train_event)
    test = _check_test(time, event)
    r = check_risk(risk, test.time.shape[0])
    t_eval = _check_eval_times(times)
    _check_times_in_followup(t_eval, test, train)
    first_death = float(test.time[test.event].min())
    if t_eval[0] < first_death:
        raise TimeRangeError(
            f"evaluation time {t_eval[0]:g} is before the first test death ({first_death:g}): there is no "
            f"case (death by t) to rank, the AUC is undefined; use times >= {first_death:g}"
        )
    # cases after the last time: marked censored (cumulative_dynamic_auc weights every death)
    seen = _truncate_after(test, float(t_eval[-1]), float(train.time.max()), censor_late=True)
    auc, iauc = _sksurv_metrics().cumulative_dynamic_auc(
        to_structured(train.time, train.event),
        to_structured(seen.time, seen.event),
        r,
        t_eval,
        tied_tol=TIED_RISK_TOL,
    )
    return np.asarray(auc, dtype=np.float64), float(iauc)


# --------------------------------------------------------------------------------------------------
# Brier score
# --------------------------------------------------------------------------------------------------
def brier_score(
    train_time: Any,
    train_event: Any,
    time: Any,
    event: Any,
    surv_prob: Any,
    times: Any,
) -> np.ndarray:
    """Graf's IPCW time-dependent Brier score at each evaluation time (scikit-survival's ``brier_score``).

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training survival data; used only for the censoring distribution ``G``.  Needs one death.
    time, event : array-like, shape (n,)
        Test survival data.
    surv_prob : array-like, shape (n, n_times)
        ``surv_prob[i, k]`` = predicted probability that case ``i`` survives beyond ``times[k]``;
        finite, in [0, 1].  (Shape (n,) is accepted when there is one time.)
    times : float or array-like, shape (n_times,)
        Strictly increasing, each with ``min(time) <= t < max(time)`` and ``t < max(train_time)``.

    Returns
    -------
    numpy.ndarray, shape (n_times,)
        ``BS(t) = mean_i [ I(t_i <= t, event_i) S_i(t)^2 / G(t_i) + I(t_i > t) (1 - S_i(t))^2 / G(t) ]``.
        Cases censored at or before ``t`` contribute 0 (they are accounted for by the weights).  Lower is
        better.

    Raises
    ------
    TimeRangeError, InputError, InvalidRiskError, LengthMismatchError, NoEventError
    """
    train = _check_train(train_time, train_event)
    test = _check_test(time, event)
    t_eval = _check_eval_times(times)
    prob = _check_surv_prob(surv_prob, test.time.shape[0], t_eval.shape[0])
    _check_times_in_followup(t_eval, test, train)
    # brier_score looks up G at every (capped) test time but weights deaths only when they are cases
    seen = _truncate_after(test, float(t_eval[-1]), float(train.time.max()), censor_late=False)
    _, scores = _sksurv_metrics().brier_score(
        to_structured(train.time, train.event), to_structured(seen.time, seen.event), prob, t_eval
    )
    return np.asarray(scores, dtype=np.float64)


def integrated_brier_score(
    train_time: Any,
    train_event: Any,
    time: Any,
    event: Any,
    surv_prob: Any,
    times: Any,
) -> float:
    """Integrated Brier score over ``[times[0], times[-1]]`` (scikit-survival's ``integrated_brier_score``).

    ``IBS = trapezoid(BS(times), times) / (times[-1] - times[0])`` with ``BS`` from :func:`brier_score`
    (IPCW, censoring KM fitted on the training set).

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training survival data (censoring distribution only).  Needs one death.
    time, event : array-like, shape (n,)
        Test survival data.
    surv_prob : array-like, shape (n, n_times)
        Predicted survival probabilities beyond each of ``times``, finite, in [0, 1].
    times : array-like, shape (n_times,), n_times >= 2
        Strictly increasing, each with ``min(time) <= t < max(time)`` and ``t < max(train_time)``.

    Returns
    -------
    float
        Lower is better; 0.25 is the score of the constant prediction 0.5.

    Raises
    ------
    TimeRangeError, InputError, InvalidRiskError, LengthMismatchError, NoEventError
    """
    t_eval = _check_eval_times(times, min_len=2)
    scores = brier_score(train_time, train_event, time, event, surv_prob, t_eval)
    return float(np.trapezoid(scores, t_eval) / (t_eval[-1] - t_eval[0]))
