"""Calibration statistics (survpgc.survival.calibration): hand-computed cases, oracles and simulations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from survpgc.errors import InputError, InvalidRiskError, LengthMismatchError
from survpgc.survival.calibration import (
    calibration_at,
    calibration_groups,
    d_calibration,
    survival_at,
)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _exponential_cohort(seed: int, n: int = 400, censor_max: float = 80.0):
    """Cases with known exponential hazards: T ~ Exp(rate_i), C ~ U(0, censor_max)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    rate = 0.02 * np.exp(0.8 * x)  # per month
    death = rng.exponential(1.0 / rate)
    censor = rng.uniform(1.0, censor_max, size=n)
    time = np.minimum(death, censor)
    event = death <= censor
    return time, event, rate


def _naive_d_calibration_counts(event, p, n_bins=10):
    """Haider et al. 2020, appendix B, one case at a time (an independent transcription)."""
    counts = np.zeros(n_bins)
    for e, q in zip(event, p, strict=True):
        b = min(int(np.floor(q * n_bins)), n_bins - 1)
        if e:
            counts[b] += 1
            continue
        if b == 0:
            counts[0] += 1
            continue
        lower = b / n_bins
        counts[b] += (q - lower) / q
        for j in range(b):
            counts[j] += (1.0 / n_bins) / q
    return counts


# --------------------------------------------------------------------------------------------------
# survival_at
# --------------------------------------------------------------------------------------------------
def test_survival_at_constant_hazard_between_edges_and_after_the_last_finite_one():
    edges = [0.0, 10.0, 20.0, np.inf]
    surv = [[0.8, 0.6, 0.5]]
    got = survival_at(edges, surv, [0.0, 5.0, 10.0, 15.0, 20.0, 30.0])[0]
    want = [1.0, np.sqrt(0.8), 0.8, 0.8 * np.sqrt(0.6 / 0.8), 0.6, 0.6 * (0.6 / 0.8)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_survival_at_per_case_times_and_a_first_edge_after_zero():
    edges = [2.0, 4.0]
    surv = [[0.5], [0.25]]
    # S = 1 until 2 months, then log-linear to S(4)
    got = survival_at(edges, surv, np.array([[1.0], [3.0]]))
    np.testing.assert_allclose(got[:, 0], [1.0, 0.5])


def test_survival_at_zero_survival_stays_zero():
    got = survival_at([0.0, 1.0, 2.0], [[0.0, 0.0]], [0.5, 1.0, 5.0])[0]
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("edges", "surv", "match"),
    [
        ([0.0, 10.0], [[0.5, 0.4]], "do not match"),
        ([0.0, 10.0, 5.0], [[0.5, 0.4]], "strictly increasing"),
        ([0.0, 10.0], [[1.5]], "not a probability"),
        ([0.0, np.inf], [[0.5]], "finite bin end"),
    ],
)
def test_survival_at_refuses_bad_curves(edges, surv, match):
    with pytest.raises(InputError, match=match):
        survival_at(edges, surv, [1.0])


# --------------------------------------------------------------------------------------------------
# grouping rule
# --------------------------------------------------------------------------------------------------
def test_groups_are_deciles_with_enough_deaths_and_ties_share_a_group():
    pred = np.repeat(np.arange(10) / 10.0, 10)[::-1]  # 10 tie blocks of 10
    deaths = np.ones(100, dtype=bool)
    group = calibration_groups(pred, deaths)
    assert group.max() == 9
    for v in np.unique(pred):
        assert np.unique(group[pred == v]).size == 1
    assert group[np.argmin(pred)] == 0  # lowest predicted survival first


def test_groups_are_fewer_when_deaths_are_few_and_every_group_has_five_deaths():
    rng = np.random.default_rng(0)
    pred = rng.uniform(size=200)
    deaths = rng.uniform(size=200) > pred  # more deaths where predicted survival is low
    n_deaths = int(deaths.sum())
    group = calibration_groups(pred, deaths)
    g = group.max() + 1
    assert g <= n_deaths // 5
    assert np.bincount(group, weights=deaths).min() >= 5
    # groups are contiguous in predicted survival
    order = np.argsort(pred, kind="stable")
    assert np.all(np.diff(group[order]) >= 0)


def test_one_group_when_fewer_than_five_deaths():
    group = calibration_groups(np.linspace(0, 1, 30), np.r_[np.ones(3, bool), np.zeros(27, bool)])
    assert set(group.tolist()) == {0}


# --------------------------------------------------------------------------------------------------
# calibration at a horizon
# --------------------------------------------------------------------------------------------------
def test_calibration_at_matches_lifelines_kaplan_meier_and_the_hand_computed_gnd_statistic():
    from lifelines import KaplanMeierFitter

    time, event, rate = _exponential_cohort(3, n=300)
    t = 24.0
    pred = np.exp(-rate * t)
    res = calibration_at(time, event, pred, t)
    assert res.group.shape == (300,)
    stat = 0.0
    for k in range(len(res.n)):
        m = res.group == k
        kmf = KaplanMeierFitter().fit(time[m], event[m])
        s = float(kmf.survival_function_at_times(t).iloc[0])
        ci = kmf.confidence_interval_survival_function_
        row = ci[ci.index <= t].iloc[-1]
        assert res.observed[k] == pytest.approx(s, abs=1e-12)
        assert res.observed_low[k] == pytest.approx(float(row.iloc[0]), abs=1e-9)
        assert res.observed_high[k] == pytest.approx(float(row.iloc[1]), abs=1e-9)
        assert res.predicted[k] == pytest.approx(pred[m].mean())
        assert res.n[k] == m.sum() and res.deaths[k] == (event[m] & (time[m] <= t)).sum()
        # Greenwood variance by hand
        tm, em = time[m], event[m]
        var = 0.0
        for u in np.unique(tm[em & (tm <= t)]):
            d, r = (em & (tm == u)).sum(), (tm >= u).sum()
            var += d / (r * (r - d))
        var *= s**2
        assert res.observed_var[k] == pytest.approx(var, rel=1e-10)
        stat += (s - pred[m].mean()) ** 2 / var
    assert res.statistic == pytest.approx(stat)
    assert res.df == len(res.n)
    assert res.p_value == pytest.approx(stats.chi2.sf(stat, len(res.n)))
    km_all = float(KaplanMeierFitter().fit(time, event).survival_function_at_times(t).iloc[0])
    assert res.oe_ratio == pytest.approx((1 - km_all) / (1 - pred.mean()))
    w = res.n / res.n.sum()
    assert res.ici == pytest.approx(np.sum(w * np.abs(res.observed - res.predicted)))


def test_horizon_calibration_passes_for_the_true_model_and_fails_for_a_wrong_one():
    passed, failed = 0, 0
    for seed in range(20):
        time, event, rate = _exponential_cohort(seed)
        good = calibration_at(time, event, np.exp(-rate * 24.0), 24.0)
        bad = calibration_at(time, event, np.exp(-2.5 * rate * 24.0), 24.0)
        passed += good.p_value > 0.05
        failed += bad.p_value < 0.05
        assert 0.8 < good.oe_ratio < 1.25
        assert bad.oe_ratio < 0.75
    assert passed >= 17, passed
    assert failed == 20, failed


def test_group_without_follow_up_at_the_horizon_has_no_observed_value():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    event = np.array([True, True, True, True, True, False])
    res = calibration_at(time, event, np.full(6, 0.5), 10.0, min_events=1, max_groups=1)
    assert np.isnan(res.observed[0])
    assert np.isnan(res.p_value) and res.df == 0
    assert any("no Kaplan-Meier estimate" in n for n in res.notes)


def test_calibration_at_checks_its_inputs():
    with pytest.raises(LengthMismatchError):
        calibration_at([1.0, 2.0], [True, False], [0.5], 1.0)
    with pytest.raises(InvalidRiskError, match="first at case 1"):
        calibration_at([1.0, 2.0], [True, False], [0.5, 1.5], 1.0)
    with pytest.raises(InputError, match="horizon"):
        calibration_at([1.0, 2.0], [True, False], [0.5, 0.5], -1.0)


# --------------------------------------------------------------------------------------------------
# D-calibration
# --------------------------------------------------------------------------------------------------
def test_d_calibration_without_censoring_is_a_histogram():
    p = np.array([0.05, 0.15, 0.3, 0.3, 0.99, 1.0, 0.0, 0.55, 0.55, 0.95])
    res = d_calibration(np.arange(1, 11.0), np.ones(10, bool), p)
    np.testing.assert_array_equal(res.counts, [2, 1, 0, 2, 0, 2, 0, 0, 0, 3])
    assert res.expected == 1.0
    chi = stats.chisquare(res.counts, np.ones(10))
    assert res.statistic == pytest.approx(chi.statistic)
    assert res.p_value == pytest.approx(chi.pvalue)
    assert res.df == 9 and res.n_censored == 0


def test_d_calibration_spreads_a_censored_case_over_its_bin_and_the_lower_ones():
    res = d_calibration([5.0], [False], [0.35])
    want = np.zeros(10)
    want[:3] = 1.0 / (10 * 0.35)
    want[3] = (0.35 - 0.3) / 0.35
    np.testing.assert_allclose(res.counts, want)
    assert res.counts.sum() == pytest.approx(1.0)


def test_d_calibration_all_censored_and_edge_probabilities():
    p = np.array([0.0, 0.05, 1.0, 0.5])
    res = d_calibration(np.ones(4), np.zeros(4, bool), p)
    np.testing.assert_allclose(res.counts, _naive_d_calibration_counts(np.zeros(4, bool), p))
    assert res.counts.sum() == pytest.approx(4.0)
    # censored at S = 1: uniform over all bins
    one = d_calibration([1.0], [False], [1.0])
    np.testing.assert_allclose(one.counts, np.full(10, 0.1))


def test_d_calibration_matches_the_paper_case_by_case_with_ties():
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(size=300), 1)  # many ties, many on bin boundaries
    event = rng.uniform(size=300) < 0.6
    time = np.round(rng.uniform(1, 10, size=300))  # tied times
    for n_bins in (10, 5, 4):
        res = d_calibration(time, event, p, n_bins=n_bins)
        np.testing.assert_allclose(res.counts, _naive_d_calibration_counts(event, p, n_bins), rtol=1e-12)


def test_d_calibration_passes_for_the_true_model_and_fails_for_a_wrong_one():
    passed, failed = 0, 0
    for seed in range(20):
        time, event, rate = _exponential_cohort(seed)
        passed += d_calibration(time, event, np.exp(-rate * time)).p_value > 0.05
        failed += d_calibration(time, event, np.exp(-2.5 * rate * time)).p_value < 0.05
    assert passed >= 17, passed
    assert failed == 20, failed


def test_d_calibration_of_a_discrete_time_curve_through_survival_at():
    # exponential truth, known to the model only at 4 bin edges: constant-hazard interpolation is exact
    time, event, rate = _exponential_cohort(5)
    edges = np.array([0.0, 10.0, 25.0, 50.0, np.inf])
    surv = np.exp(-rate[:, None] * np.array([10.0, 25.0, 50.0, 1e9])[None, :])
    s_at = survival_at(edges, surv, time[:, None])[:, 0]
    np.testing.assert_allclose(s_at, np.exp(-rate * time), rtol=1e-9)
    assert d_calibration(time, event, s_at).p_value > 0.05


def test_d_calibration_checks_its_inputs():
    with pytest.raises(InputError, match="n_bins"):
        d_calibration([1.0], [True], [0.5], n_bins=1)
    with pytest.raises(InvalidRiskError):
        d_calibration([1.0], [True], [np.nan])
