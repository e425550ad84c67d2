"""Oracle tests of survpgc.survival.stats.

Oracles: lifelines (KaplanMeierFitter, logrank_test, multivariate_logrank_test), scikit-survival
(kaplan_meier_estimator with conf_type="log-log", compare_survival) and, for the bootstrap, harrell_cindex
evaluated on the explicit resamples.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.statistics import multivariate_logrank_test
from sksurv.compare import compare_survival
from sksurv.nonparametric import kaplan_meier_estimator

from survpgc.errors import (
    EmptyInputError,
    InputError,
    InvalidEventError,
    InvalidRiskError,
    InvalidTimeError,
    LengthMismatchError,
    NoComparablePairError,
    NoEventError,
)
from survpgc.survival.convention import to_structured
from survpgc.survival.metrics import harrell_cindex
from survpgc.survival.stats import (
    KaplanMeierResult,
    bootstrap_cindex,
    bootstrap_indices,
    cindex_on_resamples,
    kaplan_meier,
    logrank_test,
    median_risk_groups,
    paired_bootstrap_cindex,
)

ORACLE = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cohorts(draw, min_n: int = 1, max_n: int = 60):
    n = draw(st.integers(min_n, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["few", "int", "float"]))
    if kind == "few":
        time = rng.integers(1, draw(st.integers(1, 6)) + 1, n).astype(float)
    elif kind == "int":
        time = rng.integers(1, 40, n).astype(float)
    else:
        time = np.round(rng.exponential(20.0, n) + 0.05, 3)
    censoring = draw(st.sampled_from([0.0, 0.3, 0.6, 0.95]) | st.floats(0.0, 0.95))
    event_ = rng.random(n) >= censoring
    return time, event_, rng


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier
# --------------------------------------------------------------------------------------------------
@ORACLE
@given(cohorts())
def test_kaplan_meier_matches_lifelines_and_sksurv(data):
    t, e, _ = data
    km = kaplan_meier(t, e)
    assert isinstance(km, KaplanMeierResult)
    np.testing.assert_array_equal(km.times, np.unique(t))

    kmf = KaplanMeierFitter().fit(t, e)
    np.testing.assert_allclose(km.survival, kmf.survival_function_.loc[km.times].to_numpy()[:, 0], atol=1e-12)
    ci = kmf.confidence_interval_.loc[km.times].to_numpy()
    np.testing.assert_allclose(km.ci_low, ci[:, 0], atol=1e-9)
    np.testing.assert_allclose(km.ci_high, ci[:, 1], atol=1e-9)
    table = kmf.event_table.loc[km.times]
    np.testing.assert_array_equal(km.at_risk, table["at_risk"].to_numpy())
    np.testing.assert_array_equal(km.events, table["observed"].to_numpy())
    np.testing.assert_array_equal(km.censored, table["censored"].to_numpy())

    sk_times, sk_surv, sk_ci = kaplan_meier_estimator(e, t, conf_type="log-log")
    np.testing.assert_array_equal(km.times, sk_times)
    np.testing.assert_allclose(km.survival, sk_surv, atol=1e-12)
    np.testing.assert_allclose(km.ci_low, sk_ci[0], atol=1e-9)
    np.testing.assert_allclose(km.ci_high, sk_ci[1], atol=1e-9)
    assert np.all(km.ci_low <= km.survival + 1e-12) and np.all(km.survival <= km.ci_high + 1e-12)


def test_kaplan_meier_named_cases():
    # no censoring, distinct times: S drops by 1/n each time
    km = kaplan_meier([1.0, 2, 3, 4], [1, 1, 1, 1])
    np.testing.assert_allclose(km.survival, [0.75, 0.5, 0.25, 0.0])
    np.testing.assert_array_equal(km.at_risk, [4, 3, 2, 1])
    assert km.ci_low[-1] == 0.0 and km.ci_high[-1] == 0.0  # S = 0 -> [0, 0]
    # all tied: one step
    km = kaplan_meier([5.0, 5, 5], [1, 0, 1])
    np.testing.assert_allclose(km.survival, [1 / 3])
    np.testing.assert_array_equal(km.events, [2])
    np.testing.assert_array_equal(km.censored, [1])
    # all censored: S = 1 with interval [1, 1]
    km = kaplan_meier([1.0, 2.0], [0, 0])
    np.testing.assert_array_equal(km.survival, [1.0, 1.0])
    np.testing.assert_array_equal(km.ci_low, [1.0, 1.0])
    # hand-computed Greenwood / log(-log) interval at the first step
    km = kaplan_meier([1.0, 2, 3, 4, 5], [1, 0, 1, 0, 0])
    s = 0.8
    se = np.sqrt(1 / (5 * 4))
    z = 1.959963984540054
    assert km.ci_low[0] == pytest.approx(np.exp(-np.exp(np.log(-np.log(s)) - z * se / np.log(s))))
    assert km.ci_high[0] == pytest.approx(np.exp(-np.exp(np.log(-np.log(s)) + z * se / np.log(s))))
    # a wider level gives a wider interval
    wide = kaplan_meier([1.0, 2, 3, 4, 5], [1, 0, 1, 0, 0], conf_level=0.99)
    assert wide.ci_low[0] < km.ci_low[0] and wide.ci_high[0] > km.ci_high[0]


# --------------------------------------------------------------------------------------------------
# log-rank
# --------------------------------------------------------------------------------------------------
@ORACLE
@given(cohorts(min_n=2), st.integers(2, 4), st.sampled_from(["int", "str", "bool"]))
def test_logrank_matches_lifelines_and_sksurv(data, k, label_kind):
    t, e, rng = data
    codes = rng.integers(0, k, t.shape[0])
    if label_kind == "str":
        group = np.array(["abcd"[c] for c in codes], dtype=object)
    elif label_kind == "bool":
        group = codes % 2 == 0
    else:
        group = codes
    n_groups = np.unique(group).shape[0]
    if not e.any():
        event("logrank: no event")
        with pytest.raises(NoEventError, match="no observed event"):
            logrank_test(t, e, group)
        return
    if n_groups < 2:
        event("logrank: single group")
        with pytest.raises(InputError, match="single group"):
            logrank_test(t, e, group)
        return
    stat, p = logrank_test(t, e, group)
    ref = multivariate_logrank_test(t, group, e)
    assert stat == pytest.approx(ref.test_statistic, rel=1e-7, abs=1e-9)
    assert p == pytest.approx(ref.p_value, rel=1e-7, abs=1e-9)
    if n_groups == 2:
        a = group == np.unique(group)[0]
        ref2 = lifelines_logrank(t[a], t[~a], e[a], e[~a])
        assert stat == pytest.approx(ref2.test_statistic, rel=1e-7, abs=1e-9)
        assert p == pytest.approx(ref2.p_value, rel=1e-7, abs=1e-9)
    # scikit-survival drops the last group and solves: only comparable when that block is well conditioned
    try:
        sk_stat, sk_p, _, cov = compare_survival(to_structured(t, e), group, return_stats=True)
    except np.linalg.LinAlgError:
        event("logrank: degenerate covariance (sksurv fails)")
        return
    if np.linalg.cond(cov[:-1, :-1]) < 1e8:
        event(f"logrank: {n_groups} groups vs sksurv")
        assert stat == pytest.approx(sk_stat, rel=1e-7, abs=1e-9)
        assert p == pytest.approx(sk_p, rel=1e-7, abs=1e-9)
    else:
        event("logrank: degenerate covariance")


def test_logrank_named_cases():
    t = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    e = np.ones(8, dtype=bool)
    # identical groups -> statistic 0, p = 1
    stat, p = logrank_test(np.r_[t, t], np.r_[e, e], np.r_[np.zeros(8), np.ones(8)])
    assert stat == pytest.approx(0.0, abs=1e-12) and p == pytest.approx(1.0)
    # complete separation -> small p
    stat, p = logrank_test(t, e, [0, 0, 0, 0, 1, 1, 1, 1])
    assert p < 0.01
    ref = multivariate_logrank_test(t, [0, 0, 0, 0, 1, 1, 1, 1], e)
    assert stat == pytest.approx(ref.test_statistic)
    # three groups, with a tied death / censoring at 4
    t3 = np.array([1.0, 2, 3, 4, 4, 5, 6, 7, 8])
    e3 = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=bool)
    g3 = ["a", "b", "c", "a", "b", "c", "a", "b", "c"]
    ref = multivariate_logrank_test(t3, g3, e3)
    assert logrank_test(t3, e3, g3).statistic == pytest.approx(ref.test_statistic)
    assert logrank_test(t3, e3, g3).p_value == pytest.approx(ref.p_value)


def test_logrank_singular_covariance_regression():
    # found by hypothesis: a pseudo-inverse of the full k x k covariance kept its numerically-zero
    # eigenvalue (2e-16 vs 0.2) and gave 0.1300 instead of 1/8 (lifelines, sksurv and by hand)
    t = np.array([1.0, 2, 2, 1, 1, 2, 2, 2, 2])
    e = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    g = np.zeros(9, dtype=bool)
    g[4] = True
    assert logrank_test(t, e, g).statistic == pytest.approx(1 / 8, rel=1e-12)
    # a group never at risk at a death time (censored before the first death): V has rank k - 2
    t = np.array([0.5, 0.7, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    e = np.array([0, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    g = np.array([2, 2, 0, 1, 0, 1, 0, 1])
    ref = multivariate_logrank_test(t, g, e)
    stat, p = logrank_test(t, e, g)
    assert stat == pytest.approx(ref.test_statistic) and p == pytest.approx(ref.p_value)


def test_logrank_errors():
    t = np.array([1.0, 2, 3, 4])
    e = np.array([1, 0, 1, 1])
    with pytest.raises(InputError, match="single group"):
        logrank_test(t, e, [1, 1, 1, 1])
    with pytest.raises(LengthMismatchError, match="`group` has 3 values but there are 4 cases"):
        logrank_test(t, e, [0, 1, 0])
    with pytest.raises(LengthMismatchError, match="`time` has 3 cases but `event` has 4"):
        logrank_test(t[:3], e, [0, 1, 0, 1])
    with pytest.raises(NoEventError, match="no observed event"):
        logrank_test(t, [0, 0, 0, 0], [0, 1, 0, 1])
    with pytest.raises(InputError, match="missing label"):
        logrank_test(t, e, [0.0, 1.0, np.nan, 1.0])
    with pytest.raises(InputError, match="missing label"):
        logrank_test(t, e, ["a", None, "b", "a"])
    with pytest.raises(InvalidTimeError, match="non-positive"):
        logrank_test([0.0, 1, 2, 3], e, [0, 1, 0, 1])
    with pytest.raises(InvalidEventError, match="other than 0/1"):
        logrank_test(t, [0, 2, 1, 1], [0, 1, 0, 1])
    with pytest.raises(EmptyInputError, match="empty"):
        logrank_test([], [], [])


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------
def typical_data(n: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = rng.integers(1, 60, n).astype(float)
    e = rng.random(n) < 0.6
    risk = np.round(-0.05 * t + rng.normal(size=n), 1)
    return t, e, risk


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cohorts(min_n=1, max_n=40), st.integers(1, 25), st.integers(0, 2**16))
def test_cindex_on_resamples_equals_harrell_on_each_resample(data, n_resamples, seed):
    t, e, rng = data
    risk = rng.integers(0, 4, t.shape[0]).astype(float) + (rng.random(t.shape[0]) < 0.5) * rng.normal(size=t.shape[0])
    idx = bootstrap_indices(t.shape[0], n_resamples, seed)
    assert idx.shape == (n_resamples, t.shape[0])
    got = cindex_on_resamples(t, e, risk, idx)
    for b, rows in enumerate(idx):
        try:
            expected = harrell_cindex(t[rows], e[rows], risk[rows])
        except (NoComparablePairError, NoEventError):
            assert np.isnan(got[b])
        else:
            assert got[b] == expected  # exact: integer / half-integer pair counts


def test_bootstrap_cindex_matches_explicit_resampling():
    t, e, risk = typical_data(50, seed=1)
    n, seed = 60, 7
    slow = [harrell_cindex(t[rows], e[rows], risk[rows]) for rows in bootstrap_indices(len(t), n, seed)]
    result = bootstrap_cindex(t, e, risk, n=n, seed=seed)
    assert result.estimate == harrell_cindex(t, e, risk)
    assert result.low == pytest.approx(np.percentile(slow, 2.5), abs=1e-12)
    assert result.high == pytest.approx(np.percentile(slow, 97.5), abs=1e-12)
    assert result.low <= result.estimate <= result.high
    # unpacks as a plain (estimate, low, high) triple
    estimate, low, high = result
    assert (estimate, low, high) == tuple(result)


def test_bootstrap_cindex_is_deterministic_by_seed():
    t, e, risk = typical_data()
    a = bootstrap_cindex(t, e, risk, n=200, seed=3)
    assert bootstrap_cindex(t, e, risk, n=200, seed=3) == a
    assert bootstrap_cindex(t, e, risk, n=200, seed=4) != a
    np.testing.assert_array_equal(bootstrap_indices(10, 5, 3), bootstrap_indices(10, 5, 3))


def test_bootstrap_skips_and_counts_resamples_without_comparable_pair():
    # only pair: the death at 2 vs the case censored at 2 -- many resamples miss one of them
    t = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    e = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    risk = np.arange(10, dtype=float)
    with pytest.raises(NoComparablePairError, match="bootstrap resamples have no comparable pair"):
        bootstrap_cindex(t, e, risk, n=200, seed=0)
    # a few failures: warned and skipped
    t2, e2, r2 = typical_data(6, seed=2)
    with pytest.warns(RuntimeWarning, match=r"of 300 bootstrap resamples had no comparable pair"):
        res = bootstrap_cindex(t2, e2, r2, n=300, seed=0)
    values = cindex_on_resamples(t2, e2, r2, bootstrap_indices(6, 300, 0))
    assert np.isnan(values).any()
    assert res.low == pytest.approx(np.percentile(values[~np.isnan(values)], 2.5))


def test_paired_bootstrap_properties():
    t, e, risk_a = typical_data(80, seed=5)
    rng = np.random.default_rng(9)
    risk_b = risk_a + rng.normal(scale=1.0, size=t.shape[0])
    ab = paired_bootstrap_cindex(t, e, risk_a, risk_b, n=300, seed=1)
    ba = paired_bootstrap_cindex(t, e, risk_b, risk_a, n=300, seed=1)
    assert ab.diff == pytest.approx(harrell_cindex(t, e, risk_a) - harrell_cindex(t, e, risk_b))
    # antisymmetry
    assert ba.diff == pytest.approx(-ab.diff)
    assert ba.low == pytest.approx(-ab.high, abs=1e-12) and ba.high == pytest.approx(-ab.low, abs=1e-12)
    assert ba.p_value == ab.p_value
    assert 0 < ab.p_value <= 1
    # same indices as the single-model bootstrap
    single_a = bootstrap_cindex(t, e, risk_a, n=300, seed=1)
    idx = bootstrap_indices(len(t), 300, 1)
    d = cindex_on_resamples(t, e, risk_a, idx) - cindex_on_resamples(t, e, risk_b, idx)
    assert ab.low == pytest.approx(np.percentile(d, 2.5), abs=1e-12)
    assert single_a.estimate == harrell_cindex(t, e, risk_a)
    m = d.shape[0]
    p_ref = min(1.0, 2 * min((np.sum(d <= 0) + 1) / (m + 1), (np.sum(d >= 0) + 1) / (m + 1)))
    assert ab.p_value == pytest.approx(p_ref)


def test_paired_bootstrap_identical_models():
    t, e, risk = typical_data(60, seed=2)
    res = paired_bootstrap_cindex(t, e, risk, risk.copy(), n=200, seed=0)
    assert res.diff == 0.0 and res.low == 0.0 and res.high == 0.0
    assert res.p_value == 1.0


def test_paired_bootstrap_strongly_better_model():
    rng = np.random.default_rng(4)
    n = 150
    t = rng.integers(1, 100, n).astype(float)
    e = rng.random(n) < 0.7
    good = -t + rng.normal(scale=5, size=n)
    noise = rng.normal(size=n)
    res = paired_bootstrap_cindex(t, e, good, noise, n=400, seed=0)
    assert res.diff > 0.3 and res.low > 0
    assert res.p_value == pytest.approx(2 / 401)  # every resample favours `good`; never exactly 0
    res = paired_bootstrap_cindex(t, e, noise, good, n=400, seed=0)
    assert res.p_value == pytest.approx(2 / 401) and res.high < 0


@pytest.mark.parametrize("n", [0, -5, 2.5, True, "100"])
def test_bootstrap_bad_n(n):
    t, e, risk = typical_data(20)
    with pytest.raises(InputError, match="positive integer"):
        bootstrap_cindex(t, e, risk, n=n)


def test_bootstrap_bad_inputs():
    t, e, risk = typical_data(20)
    with pytest.raises(LengthMismatchError, match="19 values but there are 20 cases"):
        bootstrap_cindex(t, e, risk[:19], n=10)
    with pytest.raises(NoEventError, match="no observed event"):
        bootstrap_cindex(t, np.zeros(20), risk, n=10)
    with pytest.raises(NoComparablePairError, match="no comparable pair"):
        bootstrap_cindex([3.0, 3.0], [1, 1], [0.0, 1.0], n=10)
    with pytest.raises(InvalidRiskError, match="risk_b"):
        paired_bootstrap_cindex(t, e, risk, np.r_[risk[:19], np.inf], n=10)


def test_bootstrap_is_fast_enough_for_a_cohort():
    # 1000 resamples of ~1000 cases in a few seconds (vectorised pair counts)
    rng = np.random.default_rng(0)
    n = 1000
    t = rng.integers(1, 120, n).astype(float)
    e = rng.random(n) < 0.5
    risk = -0.01 * t + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = paired_bootstrap_cindex(t, e, risk, rng.normal(size=n), n=1000, seed=0)
    assert res.low < res.diff < res.high


# --------------------------------------------------------------------------------------------------
# risk groups
# --------------------------------------------------------------------------------------------------
def test_median_risk_groups():
    groups, thr = median_risk_groups([1.0, 2.0, 3.0, 4.0])
    assert thr == 2.5
    np.testing.assert_array_equal(groups, [False, False, True, True])
    # odd n: the median case itself is tied with the threshold -> low
    groups, thr = median_risk_groups([5.0, 1.0, 3.0])
    assert thr == 3.0
    np.testing.assert_array_equal(groups, [True, False, False])
    # explicit (training) threshold; ties go low
    groups, thr = median_risk_groups([0.5, 1.0, 1.5], threshold=1.0)
    np.testing.assert_array_equal(groups, [False, False, True])
    assert thr == 1.0
    # all tied: everybody low
    assert not median_risk_groups([2.0, 2.0, 2.0]).high_risk.any()
    with pytest.raises(InvalidRiskError, match="NaN/inf"):
        median_risk_groups([1.0, np.nan])
    with pytest.raises(InputError, match="threshold"):
        median_risk_groups([1.0, 2.0], threshold=float("nan"))
    with pytest.raises(EmptyInputError, match="empty"):
        median_risk_groups([])
