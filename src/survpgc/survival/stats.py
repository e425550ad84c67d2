"""Survival statistics: Kaplan-Meier, log-rank test, bootstrap confidence intervals, risk groups.

Own numpy implementations (oracle-tested against lifelines and scikit-survival).  Inputs follow the
survpgc convention (``time`` months > 0, ``event`` True = death, ``risk`` higher = worse) and are validated
by :mod:`survpgc.survival.convention`.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as _sps

from survpgc.errors import InputError, LengthMismatchError, NoComparablePairError
from survpgc.survival.convention import as_1d_array, check_risk, check_survival
from survpgc.survival.metrics import TIED_RISK_TOL, harrell_cindex

__all__ = [
    "CIndexBootstrap",
    "KaplanMeierResult",
    "LogRankResult",
    "PairedCIndexBootstrap",
    "RiskGroups",
    "bootstrap_cindex",
    "bootstrap_indices",
    "cindex_on_resamples",
    "kaplan_meier",
    "logrank_test",
    "median_risk_groups",
    "paired_bootstrap_cindex",
    "uno_on_resamples",
]


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier
# --------------------------------------------------------------------------------------------------
class KaplanMeierResult(NamedTuple):
    """Kaplan-Meier estimate at each unique observed time (deaths *and* censorings), increasing.

    All arrays have shape (n_unique_times,).  ``survival[k]`` is ``S(times[k])`` (right-continuous: the
    deaths at ``times[k]`` are included); ``S(t) = 1`` before ``times[0]``.
    """

    times: np.ndarray  #: unique observed times, increasing (float64)
    survival: np.ndarray  #: product-limit estimate S(t)
    at_risk: np.ndarray  #: cases with time >= times[k] (int64)
    events: np.ndarray  #: deaths at times[k] (int64)
    censored: np.ndarray  #: censorings at times[k] (int64)
    ci_low: np.ndarray  #: lower pointwise confidence limit (log(-log) transform)
    ci_high: np.ndarray  #: upper pointwise confidence limit


def kaplan_meier(time: Any, event: Any, *, conf_level: float = 0.95) -> KaplanMeierResult:
    """Kaplan-Meier survival curve with pointwise log(-log) (exponential Greenwood) confidence intervals.

    Parameters
    ----------
    time : array-like, shape (n,)
        Months to death or censoring, > 0.
    event : array-like, shape (n,)
        ``True`` = death observed.  All-censored data give ``S = 1`` everywhere.
    conf_level : float
        Two-sided confidence level, default 0.95.

    Returns
    -------
    KaplanMeierResult

    Notes
    -----
    ``S(t_k) = prod_{u <= t_k} (1 - d_u / n_u)``.  Greenwood: ``V_k = sum_{u <= t_k} d_u / (n_u (n_u - d_u))``
    (terms with ``n_u == d_u`` are left out; the curve is 0 from there on).  With ``z`` the normal
    quantile, the interval is ``exp(-exp(log(-log S) -+ z sqrt(V) / log S))`` -- i.e. a symmetric interval
    for ``log(-log S)``, lifelines' default and scikit-survival's ``conf_type="log-log"``.  Where
    ``S == 1`` the interval is [1, 1]; where ``S == 0`` it is [0, 0].
    """
    if not (0.0 < float(conf_level) < 1.0):
        raise InputError(f"`conf_level` must be in (0, 1), got {conf_level!r}")
    t, e = check_survival(time, event)
    times, inv = np.unique(t, return_inverse=True)
    n_u = times.shape[0]
    total = np.bincount(inv, minlength=n_u)
    events = np.bincount(inv, weights=e, minlength=n_u).astype(np.int64)
    censored = total - events
    at_risk = t.shape[0] - np.concatenate(([0], np.cumsum(total)[:-1]))
    survival = np.cumprod(1.0 - events / at_risk)

    ok = (events > 0) & (at_risk > events)
    terms = np.zeros(n_u)
    terms[ok] = events[ok] / (at_risk[ok] * (at_risk[ok] - events[ok]))
    sigma = np.sqrt(np.cumsum(terms))
    z = float(_sps.norm.ppf(0.5 + float(conf_level) / 2.0))

    ci_low = np.where(survival > 0, 1.0, 0.0)
    ci_high = ci_low.copy()
    inner = (survival > 0) & (survival < 1)
    log_s = np.log(survival[inner])
    ci_low[inner] = np.exp(np.exp(-z * sigma[inner] / log_s) * log_s)
    ci_high[inner] = np.exp(np.exp(z * sigma[inner] / log_s) * log_s)
    return KaplanMeierResult(
        times=times,
        survival=survival,
        at_risk=at_risk.astype(np.int64),
        events=events,
        censored=censored.astype(np.int64),
        ci_low=ci_low,
        ci_high=ci_high,
    )


# --------------------------------------------------------------------------------------------------
# log-rank
# --------------------------------------------------------------------------------------------------
_PINV_RTOL = 1e-10


class LogRankResult(NamedTuple):
    """Log-rank chi-square statistic (``k - 1`` degrees of freedom) and its p-value."""

    statistic: float
    p_value: float


def _group_codes(group: Any, n_cases: int) -> tuple[np.ndarray, int]:
    """Validated log-rank group labels as codes ``0..k-1`` (sorted label order) and the number of groups ``k``."""
    g = as_1d_array(group, "group")
    if g.shape[0] != n_cases:
        raise LengthMismatchError(f"`group` has {g.shape[0]} values but there are {n_cases} cases")
    if g.dtype == object:
        missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in g])
    elif g.dtype.kind == "f":
        missing = np.isnan(g)
    else:
        missing = np.zeros(g.shape[0], dtype=bool)
    if missing.any():
        raise InputError(f"`group` has {int(missing.sum())} missing label(s) (NaN/None); every case needs one")
    try:
        labels, gi = np.unique(g, return_inverse=True)
    except TypeError as exc:
        raise InputError(f"`group` labels cannot be sorted (mixed types?): {exc}") from exc
    k = labels.shape[0]
    if k < 2:
        raise InputError(f"the log-rank test needs at least two groups, but `group` has a single group {labels[0]!r}")
    return gi, k


def logrank_test(time: Any, event: Any, group: Any) -> LogRankResult:
    """(Multivariate) log-rank test of equal survival across ``k >= 2`` groups.

    Parameters
    ----------
    time : array-like, shape (n,)
        Months to death or censoring, > 0.
    event : array-like, shape (n,)
        ``True`` = death observed.
    group : array-like, shape (n,)
        Group label of each case (numbers, strings or booleans; NaN / None not allowed).

    Returns
    -------
    LogRankResult
        ``statistic = (O - E)'^T V'^+ (O - E)'`` where ``'`` drops the last group (in sorted label order;
        the choice does not matter) and ``V'^+`` is the Moore-Penrose pseudo-inverse of the remaining
        ``(k-1) x (k-1)`` covariance (its inverse unless some groups never share a risk set at a death
        time); ``p_value = P(chi2_{k-1} >= statistic)`` -- always ``k - 1`` degrees of freedom.

    Notes
    -----
    At each distinct death time ``u`` with ``n_u`` at risk (``n_gu`` in group ``g``) and ``d_u`` deaths:
    ``E_g += d_u n_gu / n_u`` and the hypergeometric covariance
    ``V_gh += d_u (n_u - d_u) / (n_u - 1) * (n_gu / n_u) (delta_gh - n_hu / n_u)`` (0 when ``n_u == 1``).
    Tied times: every case with time ``u`` is at risk at ``u`` (deaths and censorings at ``u`` included).

    Raises
    ------
    InputError
        Fewer than two groups, or missing group labels.
    LengthMismatchError, EmptyInputError, InvalidTimeError, InvalidEventError
        Invalid inputs.
    NoEventError
        No death observed.
    """
    t, e = check_survival(time, event, require_event=True)
    gi, k = _group_codes(group, t.shape[0])

    times, ti = np.unique(t, return_inverse=True)
    n_u = times.shape[0]
    exits = np.zeros((n_u, k))
    np.add.at(exits, (ti, gi), 1.0)
    deaths = np.zeros((n_u, k))
    np.add.at(deaths, (ti[e], gi[e]), 1.0)
    # at risk at u: group size minus everything that left strictly before u
    at_risk_g = exits.sum(axis=0) - np.vstack((np.zeros((1, k)), np.cumsum(exits, axis=0)[:-1]))
    d = deaths.sum(axis=1)
    keep = d > 0
    at_risk_g, deaths, d = at_risk_g[keep], deaths[keep], d[keep]
    n = at_risk_g.sum(axis=1)
    p = at_risk_g / n[:, None]
    observed_minus_expected = (deaths - d[:, None] * p).sum(axis=0)
    w = np.zeros_like(n)
    multi = n > 1
    w[multi] = d[multi] * (n[multi] - d[multi]) / (n[multi] - 1)
    cov = np.diag((w[:, None] * p).sum(axis=0)) - (p * w[:, None]).T @ p
    # V always has the constant vector in its null space (rows sum to 0): drop the last group, whose
    # O - E is minus the sum of the others.  The pseudo-inverse (relative cut-off 1e-10) keeps the
    # statistic defined when groups never share a risk set at a death time (V of lower rank).
    z = observed_minus_expected[:-1]
    v_inv = np.linalg.pinv(cov[:-1, :-1], rtol=_PINV_RTOL, hermitian=True)
    statistic = float(z @ v_inv @ z)
    statistic = max(statistic, 0.0)
    return LogRankResult(statistic, float(_sps.chi2.sf(statistic, k - 1)))


# --------------------------------------------------------------------------------------------------
# bootstrap of Harrell's C
# --------------------------------------------------------------------------------------------------
class CIndexBootstrap(NamedTuple):
    """Harrell's C on the full data with a percentile bootstrap confidence interval."""

    estimate: float
    low: float
    high: float


class PairedCIndexBootstrap(NamedTuple):
    """Difference C(a) - C(b) on the full data, percentile bootstrap CI and two-sided bootstrap p-value."""

    diff: float
    low: float
    high: float
    p_value: float


def bootstrap_indices(n_cases: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Case indices of ``n_resamples`` bootstrap resamples, shape (n_resamples, n_cases).

    Drawn with replacement by ``numpy.random.default_rng(seed).integers(0, n_cases, ...)`` in one call;
    the resamples used by :func:`bootstrap_cindex` / :func:`paired_bootstrap_cindex` with the same
    ``seed``.
    """
    if int(n_cases) < 1 or int(n_resamples) < 1:
        raise InputError(f"need n_cases >= 1 and n_resamples >= 1, got {n_cases}, {n_resamples}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, int(n_cases), size=(int(n_resamples), int(n_cases)))


def _resample_counts(indices: np.ndarray, n_cases: int) -> np.ndarray:
    b = indices.shape[0]
    flat = (indices + n_cases * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_cases).reshape(b, n_cases).astype(np.float64)


def _weighted_pair_sums(
    time: np.ndarray, event: np.ndarray, risks: list[np.ndarray], counts: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """For each resample (row of ``counts``, how often each case was drawn), the numerator of Harrell's C
    for each risk vector and the shared denominator.

    A resample repeating case ``i`` ``w_i`` times has ``sum_ij w_i w_j comp_ij`` comparable pairs (a case
    is never comparable with its own copy: same time, same status).  All terms are integers or halves, so
    the sums are exact and the ratio equals :func:`harrell_cindex` on the expanded resample bit for bit.
    """
    anchors = np.flatnonzero(event)
    n = time.shape[0]
    numerators = [np.zeros(counts.shape[0]) for _ in risks]
    denominator = np.zeros(counts.shape[0])
    block = max(1, 4_000_000 // max(n, 1))
    for start in range(0, anchors.shape[0], block):
        rows = anchors[start : start + block]
        ti = time[rows][:, None]
        comp = (ti < time[None, :]) | ((ti == time[None, :]) & ~event[None, :])
        comp_f = comp.astype(np.float64)
        w_rows = counts[:, rows]
        denominator += np.einsum("bi,bi->b", w_rows, counts @ comp_f.T)
        for num, r in zip(numerators, risks, strict=True):
            diff = r[rows][:, None] - r[None, :]
            score = np.where(np.abs(diff) <= TIED_RISK_TOL, 0.5, (diff > 0).astype(np.float64)) * comp_f
            num += np.einsum("bi,bi->b", w_rows, counts @ score.T)
    return numerators, denominator


def cindex_on_resamples(time: Any, event: Any, risk: Any, indices: Any) -> np.ndarray:
    """Harrell's C on each resample ``time[idx], event[idx], risk[idx]`` for each row ``idx`` of
    ``indices`` (shape (n_resamples, m)); NaN where a resample has no comparable pair.

    Vectorised (pair matrix times resample-count matrix); identical to :func:`harrell_cindex` on each
    resample, tie rules included.  Cost ``O(n_resamples * n_deaths * n)`` flops in BLAS, memory
    ``O(n_resamples * n)``: about a second for 1000 resamples of 2000 cases.
    """
    t, e = check_survival(time, event)
    r = check_risk(risk, t.shape[0])
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= t.shape[0])):
        raise InputError("`indices` must be a 2-D integer array of case indices in [0, n)")
    (num,), den = _weighted_pair_sums(t, e, [r], _resample_counts(idx, t.shape[0]))
    out = np.full(idx.shape[0], np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _check_n_resamples(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"`n` (number of bootstrap resamples) must be a positive integer, got {n!r}")
    return int(n)


def _usable(den: np.ndarray, n_resamples: int) -> np.ndarray:
    ok = den > 0
    skipped = int((~ok).sum())
    if skipped * 2 > n_resamples:
        raise NoComparablePairError(
            f"{skipped} of {n_resamples} bootstrap resamples have no comparable pair (too few deaths or "
            "distinct times); a bootstrap confidence interval is not meaningful for these data"
        )
    if skipped:
        warnings.warn(
            f"{skipped} of {n_resamples} bootstrap resamples had no comparable pair and were skipped",
            RuntimeWarning,
            stacklevel=3,
        )
    return ok


def bootstrap_cindex(
    time: Any, event: Any, risk: Any, n: int = 1000, seed: int = 0, *, conf_level: float = 0.95
) -> CIndexBootstrap:
    """Harrell's C with a percentile bootstrap confidence interval.

    Parameters
    ----------
    time, event, risk : array-like, shape (n_cases,)
        Survival data and risk (**higher = worse**).
    n : int
        Number of resamples (cases drawn with replacement, see :func:`bootstrap_indices`).
    seed : int
        Seed of ``numpy.random.default_rng``; the result is a deterministic function of the inputs and seed.
    conf_level : float
        Default 0.95 -> the 2.5 % and 97.5 % percentiles (``numpy.percentile``, linear interpolation).

    Returns
    -------
    CIndexBootstrap
        ``estimate`` = :func:`harrell_cindex` on the full data (same tie rules), ``low``, ``high``.

    Notes
    -----
    Resamples without a comparable pair are skipped (a ``RuntimeWarning`` reports how many); when more
    than half are skipped :class:`NoComparablePairError` is raised.
    """
    n = _check_n_resamples(n)
    if not (0.0 < float(conf_level) < 1.0):
        raise InputError(f"`conf_level` must be in (0, 1), got {conf_level!r}")
    t, e = check_survival(time, event, require_event=True)
    r = check_risk(risk, t.shape[0])
    estimate = harrell_cindex(t, e, r)
    counts = _resample_counts(bootstrap_indices(t.shape[0], n, seed), t.shape[0])
    (num,), den = _weighted_pair_sums(t, e, [r], counts)
    ok = _usable(den, n)
    values = num[ok] / den[ok]
    alpha = 1.0 - float(conf_level)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return CIndexBootstrap(float(estimate), float(low), float(high))


def paired_bootstrap_cindex(
    time: Any,
    event: Any,
    risk_a: Any,
    risk_b: Any,
    n: int = 1000,
    seed: int = 0,
    *,
    conf_level: float = 0.95,
) -> PairedCIndexBootstrap:
    """Paired bootstrap comparison of two risk scores on the same cases: ``C(a) - C(b)``.

    Parameters
    ----------
    time, event : array-like, shape (n_cases,)
        Survival data.
    risk_a, risk_b : array-like, shape (n_cases,)
        Risks of the two models (**higher = worse**).
    n, seed, conf_level
        As in :func:`bootstrap_cindex`; both models are evaluated on the *same* resamples.

    Returns
    -------
    PairedCIndexBootstrap
        ``diff`` = Harrell's C of ``a`` minus that of ``b`` on the full data; ``low``/``high`` the
        percentile interval of the resampled differences ``d_b``; ``p_value`` the two-sided bootstrap
        p-value ``min(1, 2 min((#{d_b <= 0} + 1) / (m + 1), (#{d_b >= 0} + 1) / (m + 1)))`` over the ``m``
        usable resamples -- never exactly 0; 1 when the models rank every pair alike.  Swapping ``a`` and
        ``b`` negates ``diff`` and the interval and keeps ``p_value``.
    """
    n = _check_n_resamples(n)
    if not (0.0 < float(conf_level) < 1.0):
        raise InputError(f"`conf_level` must be in (0, 1), got {conf_level!r}")
    t, e = check_survival(time, event, require_event=True)
    ra = check_risk(risk_a, t.shape[0], name="risk_a")
    rb = check_risk(risk_b, t.shape[0], name="risk_b")
    diff = harrell_cindex(t, e, ra) - harrell_cindex(t, e, rb)
    counts = _resample_counts(bootstrap_indices(t.shape[0], n, seed), t.shape[0])
    (num_a, num_b), den = _weighted_pair_sums(t, e, [ra, rb], counts)
    ok = _usable(den, n)
    d = num_a[ok] / den[ok] - num_b[ok] / den[ok]
    m = d.shape[0]
    alpha = 1.0 - float(conf_level)
    low, high = np.percentile(d, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    p_le = (np.count_nonzero(d <= 0) + 1) / (m + 1)
    p_ge = (np.count_nonzero(d >= 0) + 1) / (m + 1)
    p_value = min(1.0, 2.0 * min(p_le, p_ge))
    return PairedCIndexBootstrap(float(diff), float(low), float(high), float(p_value))


# --------------------------------------------------------------------------------------------------
# risk groups
# --------------------------------------------------------------------------------------------------
class RiskGroups(NamedTuple):
    """``high_risk`` (bool, shape (n,)) and the ``threshold`` used."""

    high_risk: np.ndarray
    threshold: float


def median_risk_groups(risk: Any, threshold: float | None = None) -> RiskGroups:
    """Split cases into high / low risk at a threshold (default: the median of ``risk``).

    Parameters
    ----------
    risk : array-like, shape (n,)
        Risk scores, **higher = worse**.
    threshold : float, optional
        Cut-off.  ``None`` -> ``numpy.median(risk)``.  For test data pass the median of the *training*
        risks so that no test information leaks into the grouping.

    Returns
    -------
    RiskGroups
        ``high_risk = risk > threshold``: ties at the threshold go to the **low**-risk group.
    """
    r = check_risk(risk)
    if threshold is None:
        thr = float(np.median(r))
    else:
        try:
            thr = float(threshold)
        except (TypeError, ValueError) as exc:
            raise InputError(f"`threshold` must be a number, got {threshold!r}") from exc
        if not np.isfinite(thr):
            raise InputError(f"`threshold` must be finite, got {threshold!r}")
    return RiskGroups(r > thr, thr)


def uno_on_resamples(time: np.ndarray, event: np.ndarray, risk: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Uno's C on each bootstrap resample (rows of ``indices``), the censoring distribution re-estimated on each
    resample (the resample is its own "training" set); NaN where a resample has no comparable pair.

    Vectorised; equal to :func:`survpgc.survival.metrics.uno_cindex` ``(t, e, t, e, r)`` with ``tau=None`` on
    every resample (``t, e, r = time[idx], event[idx], risk[idx]``; checked in the tests): the censoring
    Kaplan-Meier with deaths before censorings at a tied time, ``G`` evaluated at each death's own time, weights
    ``1 / G(t_i)^2``, anchors before the truncation time (``max(t)``, inclusive when no case is censored there),
    Harrell's comparable pairs and ties within :data:`~survpgc.survival.metrics.TIED_RISK_TOL`.
    """
    from survpgc.survival.metrics import TIED_RISK_TOL

    n = time.shape[0]
    b_count = indices.shape[0]
    counts = np.zeros((b_count, n))
    np.add.at(counts, (np.repeat(np.arange(b_count), indices.shape[1]), indices.ravel()), 1.0)
    u, inv = np.unique(time, return_inverse=True)
    m = u.shape[0]
    onehot = np.zeros((n, m))
    onehot[np.arange(n), inv] = 1.0
    deaths = counts @ (onehot * event[:, None])
    censored = counts @ (onehot * ~event[:, None])
    at_risk = np.cumsum((deaths + censored)[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk - deaths > 0, 1.0 - censored / (at_risk - deaths), 1.0)
    g = np.cumprod(factor, axis=1)  # censoring KM at each unique time, per resample
    present = counts > 0
    t_max = np.where(present, time[None, :], -np.inf).max(axis=1)
    censored_at_max = (present & ~event[None, :] & (time[None, :] == t_max[:, None])).any(axis=1)
    anchors = np.flatnonzero(event)
    ta = time[anchors]
    usable = np.where(censored_at_max[:, None], ta[None, :] < t_max[:, None], ta[None, :] <= t_max[:, None])
    g_a = g[:, inv[anchors]]
    with np.errstate(divide="ignore"):
        w = np.where(usable & (g_a > 0), 1.0 / np.square(g_a), 0.0) * counts[:, anchors]
    comp = (ta[:, None] < time[None, :]) | ((ta[:, None] == time[None, :]) & ~event[None, :])
    diff = risk[anchors][:, None] - risk[None, :]
    score = np.where(np.abs(diff) <= TIED_RISK_TOL, 0.5, (diff > 0).astype(np.float64)) * comp
    num = np.einsum("ba,ba->b", w, counts @ score.T)
    den = np.einsum("ba,ba->b", w, counts @ comp.astype(np.float64).T)
    out = np.full(b_count, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out
