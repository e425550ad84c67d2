"""Oracle tests of survpgc.survival.metrics.

Oracles: slow O(n^2) references written here from the definitions (Harrell, Uno, cumulative/dynamic AUC,
Graf's Brier score), lifelines' ``concordance_index`` and scikit-survival called directly on the raw data.

Finding (lifelines 0.30 vs scikit-survival 0.28): both treat a case censored at the time of a death as
outliving it (comparable pair) and two deaths at the same time as not comparable, so Harrell's C agrees on
every cohort with a comparable pair, tied times included.  They differ only when there is no comparable
pair: scikit-survival returns NaN (with a RuntimeWarning, e.g. times [1, 1], events [1, 1]) and lifelines
raises ZeroDivisionError -- harrell_cindex raises NoComparablePairError instead.  (lifelines compares
risks exactly; scikit-survival with a 1e-8 tolerance: the cohorts below use risks that are either exactly
tied or far apart.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index as lifelines_cindex
from sksurv import metrics as skm

from survpgc.errors import (
    EmptyInputError,
    InputError,
    InvalidEventError,
    InvalidRiskError,
    InvalidTimeError,
    LengthMismatchError,
    NoComparablePairError,
    NoEventError,
    SurvpgcError,
    TimeRangeError,
)
from survpgc.survival.convention import to_structured
from survpgc.survival.metrics import (
    TIED_RISK_TOL,
    brier_score,
    harrell_cindex,
    integrated_brier_score,
    td_auc,
    uno_cindex,
)

ORACLE = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------------
# cohorts
# --------------------------------------------------------------------------------------------------
def _draw_time(draw, rng: np.random.Generator, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["few", "int", "float"]))
    if kind == "few":  # heavy ties
        return rng.integers(1, draw(st.integers(1, 6)) + 1, n).astype(float)
    if kind == "int":
        return rng.integers(1, 40, n).astype(float)
    return np.round(rng.exponential(20.0, n) + 0.05, 3)


def _draw_event(draw, rng: np.random.Generator, n: int) -> np.ndarray:
    censoring = draw(st.sampled_from([0.0, 0.3, 0.6, 0.95]) | st.floats(0.0, 0.95))
    return rng.random(n) >= censoring


def _draw_risk(draw, rng: np.random.Generator, time: np.ndarray) -> np.ndarray:
    n = time.shape[0]
    kind = draw(st.sampled_from(["tied", "normal", "informative", "constant"]))
    if kind == "tied":
        return rng.integers(0, draw(st.integers(1, 5)), n).astype(float)
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "informative":  # rounded: exact ties or differences >= 0.1
        return np.round(-0.1 * time + rng.normal(size=n), 1)
    return np.full(n, 0.3)


@st.composite
def cohorts(draw, min_n: int = 2, max_n: int = 60):
    n = draw(st.integers(min_n, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    time = _draw_time(draw, rng, n)
    event = _draw_event(draw, rng, n)
    risk = _draw_risk(draw, rng, time)
    return time, event, risk


@st.composite
def train_test(draw):
    """A training cohort (censoring distribution) and a test cohort with risks."""
    test_time, test_event, risk = draw(cohorts())
    mode = draw(st.sampled_from(["same", "independent", "long_train"]))
    if mode == "same":
        return test_time, test_event, test_time, test_event, risk
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(2, 60))
    train_time = _draw_time(draw, rng, n)
    train_event = _draw_event(draw, rng, n)
    if mode == "long_train":  # a training case followed longer than every test case
        train_time = np.r_[train_time, test_time.max() + draw(st.sampled_from([1.0, 50.0]))]
        train_event = np.r_[train_event, draw(st.booleans())]
    if not train_event.any():
        train_event[rng.integers(0, train_event.shape[0])] = True
    return train_time, train_event, test_time, test_event, risk


# --------------------------------------------------------------------------------------------------
# slow references, from the definitions
# --------------------------------------------------------------------------------------------------
def pair_score(r_i: float, r_j: float) -> float:
    """1 if the earlier death has the higher risk, 0.5 for tied risks, else 0."""
    if abs(r_i - r_j) <= TIED_RISK_TOL:
        return 0.5
    return 1.0 if r_i > r_j else 0.0


def comparable(t, e, i, j) -> bool:
    return bool(e[i]) and (t[i] < t[j] or (t[i] == t[j] and not e[j]))


def has_mixed_tie(t, e) -> bool:
    return any(e[t == s].any() and (~e[t == s]).any() for s in np.unique(t))


def slow_harrell(t, e, r):
    num = den = 0.0
    for i in range(len(t)):
        for j in range(len(t)):
            if comparable(t, e, i, j):
                den += 1
                num += pair_score(r[i], r[j])
    return num / den if den else None


def censoring_km(train_t, train_e):
    """G(s) = prod_{u <= s} (1 - c_u / (n_u - d_u)): deaths at u leave the risk set before censorings."""
    uniq = np.unique(train_t)
    factors = []
    for u in uniq:
        n_u = np.sum(train_t >= u)
        d_u = np.sum((train_t == u) & train_e)
        c_u = np.sum((train_t == u) & ~train_e)
        factors.append(1.0 - c_u / (n_u - d_u) if c_u else 1.0)

    def G(s: float) -> float:
        assert s <= uniq[-1], "G is not estimable beyond the training follow-up"
        return float(np.prod([f for u, f in zip(uniq, factors, strict=True) if u <= s]))

    return G


def km_survival(t, e):
    def S(s: float) -> float:
        out = 1.0
        for u in np.unique(t[t <= s]):
            out *= 1.0 - np.sum((t == u) & e) / np.sum(t >= u)
        return out

    return S


def supported_by_train(train_t, train_e, s) -> bool:
    """G estimable and > 0 at s: before the last training time, or at it when nobody was censored then."""
    t_max = train_t.max()
    return s < t_max or (s == t_max and not np.any((train_t == t_max) & ~train_e))


def slow_uno(train_t, train_e, t, e, r, tau=None):
    G = censoring_km(train_t, train_e)
    num = den = 0.0
    for i in range(len(t)):
        if not e[i]:
            continue
        if tau is None:
            if not supported_by_train(train_t, train_e, t[i]):
                continue
        elif not t[i] < tau:
            continue
        w = 1.0 / G(t[i]) ** 2
        assert np.isfinite(w)
        for j in range(len(t)):
            if comparable(t, e, i, j):
                den += w
                num += w * pair_score(r[i], r[j])
    return num / den if den else None


def slow_auc(train_t, train_e, t, e, r, times):
    G = censoring_km(train_t, train_e)
    aucs = []
    for s in times:
        num = den = 0.0
        controls = np.flatnonzero(t > s)
        for i in np.flatnonzero(e & (t <= s)):
            w = 1.0 / G(t[i])
            for j in controls:
                den += w
                num += w * pair_score(r[i], r[j])
        aucs.append(num / den)
    S = km_survival(t, e)
    surv = np.array([S(s) for s in times])
    if len(times) == 1:
        return np.array(aucs), aucs[0]
    drops = np.r_[1.0, surv[:-1]] - surv
    return np.array(aucs), float(np.sum(np.array(aucs) * drops) / (1.0 - surv[-1]))


def slow_brier(train_t, train_e, t, e, prob, times):
    G = censoring_km(train_t, train_e)
    out = []
    for k, s in enumerate(times):
        total = 0.0
        for i in range(len(t)):
            if e[i] and t[i] <= s:
                total += prob[i, k] ** 2 / G(t[i])
            elif t[i] > s:
                total += (1.0 - prob[i, k]) ** 2 / G(s)
        out.append(total / len(t))
    return np.array(out)


def slow_ibs(scores, times):
    area = sum((times[k + 1] - times[k]) * (scores[k] + scores[k + 1]) / 2 for k in range(len(times) - 1))
    return area / (times[-1] - times[0])


def eval_time_candidates(train_t, t, e, need_case: bool) -> np.ndarray:
    """Grid of admissible evaluation times: min(t) <= s < min(max(t), max(train_t))."""
    grid = np.unique(np.r_[t, t + 0.5])
    lo = t[e].min() if need_case else t.min()
    return grid[(grid >= lo) & (grid < min(t.max(), train_t.max()))]


# --------------------------------------------------------------------------------------------------
# Harrell
# --------------------------------------------------------------------------------------------------
@ORACLE
@given(cohorts())
def test_harrell_matches_slow_reference_and_lifelines(data):
    t, e, r = data
    if not e.any():
        event("harrell: no event")
        with pytest.raises(NoEventError, match="no observed event"):
            harrell_cindex(t, e, r)
        return
    expected = slow_harrell(t, e, r)
    if expected is None:
        event("harrell: no comparable pair")
        with pytest.raises(NoComparablePairError, match="no comparable pair"):
            harrell_cindex(t, e, r)
        return
    event(f"harrell: death and censoring at one time = {has_mixed_tie(t, e)}")
    got = harrell_cindex(t, e, r)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, abs=1e-12)
    # lifelines: higher score = longer survival, hence -risk
    assert got == pytest.approx(lifelines_cindex(t, -r, e), abs=1e-12)


@pytest.mark.parametrize(
    ("time", "event", "risk", "expected"),
    [
        # perfect / reversed ranking, no censoring
        ([1, 2, 3, 4], [1, 1, 1, 1], [4, 3, 2, 1], 1.0),
        ([1, 2, 3, 4], [1, 1, 1, 1], [1, 2, 3, 4], 0.0),
        # all risks tied -> 0.5
        ([1, 2, 3, 4], [1, 0, 1, 0], [7, 7, 7, 7], 0.5),
        # two patients
        ([2, 5], [1, 0], [1.0, 0.0], 1.0),
        ([2, 5], [1, 1], [0.0, 1.0], 0.0),
        # a death and a censoring at the same time are comparable (the censored case outlives)
        ([3, 3], [1, 0], [2.0, 1.0], 1.0),
        ([3, 3], [1, 0], [1.0, 2.0], 0.0),
        # two deaths at one time are not: only (0,2) and (1,2) count here
        ([3, 3, 5], [1, 1, 0], [2.0, 0.0, 1.0], 0.5),
        # event at the last time, with a censored tie there
        ([1, 4, 4], [0, 1, 0], [0.0, 5.0, 1.0], 1.0),
        # censored before a death: not comparable; only (1,2)
        ([1, 2, 3], [0, 1, 1], [9.0, 1.0, 0.0], 1.0),
    ],
)
def test_harrell_named_cases(time, event, risk, expected):
    assert harrell_cindex(time, event, risk) == pytest.approx(expected)


def test_harrell_risk_tie_tolerance():
    # differences <= 1e-8 count as ties (0.5), larger ones do not
    assert harrell_cindex([1, 2], [1, 1], [1.0 + 5e-9, 1.0]) == 0.5
    assert harrell_cindex([1, 2], [1, 1], [1.0 + 1e-6, 1.0]) == 1.0


def test_harrell_ninety_five_percent_censoring():
    rng = np.random.default_rng(3)
    n = 400
    t = rng.integers(1, 60, n).astype(float)
    e = rng.random(n) < 0.05
    r = rng.normal(size=n) - 0.05 * t
    assert harrell_cindex(t, e, r) == pytest.approx(slow_harrell(t, e, r), abs=1e-12)


@pytest.mark.parametrize(
    ("time", "event"),
    [
        ([5.0], [1]),  # single case
        ([2.0, 2.0, 2.0], [1, 1, 1]),  # all times tied, all deaths
        ([1.0, 3.0, 3.0], [0, 1, 1]),  # deaths only at the last time, tied
    ],
)
def test_harrell_no_comparable_pair(time, event):
    with pytest.raises(NoComparablePairError, match="no comparable pair"):
        harrell_cindex(time, event, np.arange(len(time), dtype=float))


# --------------------------------------------------------------------------------------------------
# Uno
# --------------------------------------------------------------------------------------------------
@ORACLE
@given(train_test(), st.one_of(st.none(), st.floats(0.5, 70.0)))
def test_uno_matches_slow_reference(data, tau):
    train_t, train_e, t, e, r = data
    if not e.any():
        with pytest.raises(NoEventError, match="no observed event"):
            uno_cindex(train_t, train_e, t, e, r, tau=tau)
        return
    if tau is not None:
        unsupported = [s for s in t[e & (t < tau)] if not supported_by_train(train_t, train_e, s)]
        if unsupported:
            event("uno: tau beyond training follow-up")
            with pytest.raises(TimeRangeError, match="training censoring"):
                uno_cindex(train_t, train_e, t, e, r, tau=tau)
            return
    expected = slow_uno(train_t, train_e, t, e, r, tau)
    if expected is None:
        event("uno: no comparable pair")
        with pytest.raises(NoComparablePairError, match="no comparable pair"):
            uno_cindex(train_t, train_e, t, e, r, tau=tau)
        return
    event(f"uno: computed, tau given = {tau is not None}")
    assert uno_cindex(train_t, train_e, t, e, r, tau=tau) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_uno_without_censoring_equals_harrell():
    t = np.array([1.0, 2, 3, 4, 5, 6])
    e = np.ones(6, dtype=bool)
    r = np.array([3.0, 1, 2, 2, 0, -1])
    # no censoring in training -> G = 1 -> all weights 1
    assert uno_cindex(t, e, t, e, r) == pytest.approx(harrell_cindex(t, e, r))


def test_uno_weights_hand_computed():
    # training: censoring at 2 among 4 at risk after no death at 2 -> G(t) = 3/4 for t >= 2
    train_t = np.array([1.0, 2, 3, 4, 5])
    train_e = np.array([1, 0, 1, 1, 1], dtype=bool)
    t = np.array([1.0, 3.0, 4.0])
    e = np.array([1, 1, 0], dtype=bool)
    r = np.array([0.0, 1.0, 0.5])  # pairs: (0,1) discordant w=1, (0,2) discordant w=1, (1,2) concordant w=16/9
    expected = (16 / 9) / (1 + 1 + 16 / 9)
    assert uno_cindex(train_t, train_e, t, e, r) == pytest.approx(expected)


def test_uno_tau_default_drops_deaths_beyond_training_follow_up():
    train_t = np.array([1.0, 2, 3, 4])
    train_e = np.array([1, 0, 1, 0], dtype=bool)  # censored at the last time -> G(4) = 0
    t = np.array([1.0, 2, 3, 4, 6, 7])
    e = np.array([1, 1, 1, 1, 1, 0], dtype=bool)
    r = np.array([5.0, 4, 3, 2, 0, 1])  # the death at 6 is misranked vs 7, but cannot be weighted
    # sksurv itself refuses these data without tau
    with pytest.raises(ValueError, match=r"largest observed time point|censoring survival function is zero"):
        skm.concordance_index_ipcw(to_structured(train_t, train_e), to_structured(t, e), r)
    assert uno_cindex(train_t, train_e, t, e, r) == pytest.approx(slow_uno(train_t, train_e, t, e, r))
    assert uno_cindex(train_t, train_e, t, e, r) == 1.0
    with pytest.raises(TimeRangeError, match=r"tau=7 includes a test death at 4"):
        uno_cindex(train_t, train_e, t, e, r, tau=7.0)
    assert uno_cindex(train_t, train_e, t, e, r, tau=4.0) == 1.0


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf"), "soon"])
def test_uno_bad_tau(tau):
    t = np.array([1.0, 2, 3])
    e = np.array([1, 1, 0], dtype=bool)
    with pytest.raises(TimeRangeError, match="tau"):
        uno_cindex(t, e, t, e, [1.0, 0.0, 0.5], tau=tau)


def test_uno_no_comparable_pair_before_tau():
    t = np.array([1.0, 2, 3, 4])
    e = np.array([0, 1, 1, 0], dtype=bool)
    with pytest.raises(NoComparablePairError, match="no comparable pair"):
        uno_cindex(t, e, t, e, [1.0, 2, 3, 4], tau=1.5)


# --------------------------------------------------------------------------------------------------
# time-dependent AUC
# --------------------------------------------------------------------------------------------------
@ORACLE
@given(train_test(), st.data())
def test_td_auc_matches_slow_reference(data, pick):
    train_t, train_e, t, e, r = data
    assume(e.any())
    cands = eval_time_candidates(train_t, t, e, need_case=True)
    assume(cands.size > 0)
    times = np.sort(pick.draw(st.lists(st.sampled_from(cands.tolist()), min_size=1, max_size=5, unique=True)))
    auc, iauc = td_auc(train_t, train_e, t, e, r, times)
    ref_auc, ref_iauc = slow_auc(train_t, train_e, t, e, r, times)
    np.testing.assert_allclose(auc, ref_auc, rtol=1e-9, atol=1e-12)
    assert iauc == pytest.approx(ref_iauc, rel=1e-9, abs=1e-12)
    # wherever scikit-survival accepts the raw data, it agrees too (our wrapper only hides follow-up
    # beyond the last evaluation time, which cannot change the result)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sk_auc, sk_iauc = skm.cumulative_dynamic_auc(to_structured(train_t, train_e), to_structured(t, e), r, times)
        except ValueError:
            event("td_auc: raw sksurv refuses")
            return
    event("td_auc: raw sksurv agrees")
    np.testing.assert_allclose(auc, sk_auc, rtol=1e-12, atol=1e-12)
    assert iauc == pytest.approx(sk_iauc, rel=1e-12, abs=1e-12)


def test_td_auc_named_cases():
    t = np.array([1.0, 2, 3, 4, 5, 6])
    e = np.array([1, 1, 0, 1, 1, 0], dtype=bool)
    perfect = -t
    auc, iauc = td_auc(t, e, t, e, perfect, [1.5, 2.0, 4.5])
    np.testing.assert_allclose(auc, 1.0)
    assert iauc == pytest.approx(1.0)
    auc, iauc = td_auc(t, e, t, e, np.zeros(6), [1.5, 4.5])  # all risks tied
    np.testing.assert_allclose(auc, 0.5)
    assert iauc == pytest.approx(0.5)
    auc, iauc = td_auc(t, e, t, e, perfect, 2.0)  # a scalar time -> one AUC, iAUC = that AUC
    assert auc.shape == (1,) and iauc == auc[0]


def test_td_auc_times_outside_follow_up():
    t = np.array([2.0, 3, 4, 5, 6])
    e = np.array([1, 1, 0, 1, 0], dtype=bool)
    r = np.array([5.0, 4, 3, 2, 1])
    with pytest.raises(TimeRangeError, match=r"evaluation time 6 lies outside .*2 <= t < 6"):
        td_auc(t, e, t, e, r, [3.0, 6.0])
    with pytest.raises(TimeRangeError, match=r"evaluation time 1\.5 lies outside"):
        td_auc(t, e, t, e, r, [1.5, 3.0])
    # within the test follow-up but not before the end of the training follow-up
    with pytest.raises(TimeRangeError, match="training follow-up"):
        td_auc([1.0, 3.0, 4.0], [1, 1, 0], t, e, r, [3.0, 4.5])


def test_td_auc_time_before_any_death():
    t = np.array([1.0, 2, 3, 4])
    e = np.array([0, 1, 1, 0], dtype=bool)
    with pytest.raises(TimeRangeError, match="before the first test death"):
        td_auc(t, e, t, e, [4.0, 3, 2, 1], [1.5, 3.0])


@pytest.mark.parametrize("times", [[3.0, 2.0], [2.0, 2.0], [], [[2.0, 3.0]]])
def test_td_auc_bad_times(times):
    t = np.array([1.0, 2, 3, 4])
    e = np.array([1, 1, 1, 0], dtype=bool)
    with pytest.raises(InputError, match="times"):
        td_auc(t, e, t, e, [4.0, 3, 2, 1], times)


def test_td_auc_nan_time():
    t = np.array([1.0, 2, 3, 4])
    e = np.array([1, 1, 1, 0], dtype=bool)
    with pytest.raises(InvalidTimeError, match="NaN/inf"):
        td_auc(t, e, t, e, [4.0, 3, 2, 1], [2.0, float("nan")])


# --------------------------------------------------------------------------------------------------
# Brier score
# --------------------------------------------------------------------------------------------------
@ORACLE
@given(train_test(), st.data())
def test_brier_matches_slow_reference(data, pick):
    train_t, train_e, t, e, _ = data
    assume(e.any())
    cands = eval_time_candidates(train_t, t, e, need_case=False)
    assume(cands.size >= 2)
    times = np.sort(pick.draw(st.lists(st.sampled_from(cands.tolist()), min_size=2, max_size=5, unique=True)))
    rng = np.random.default_rng(pick.draw(st.integers(0, 2**32 - 1)))
    prob = np.sort(rng.random((len(t), len(times))), axis=1)[:, ::-1]  # decreasing in time
    if pick.draw(st.booleans()):
        prob = np.round(prob)  # hard 0/1 predictions
    got = brier_score(train_t, train_e, t, e, prob, times)
    ref = slow_brier(train_t, train_e, t, e, prob, times)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert integrated_brier_score(train_t, train_e, t, e, prob, times) == pytest.approx(
        slow_ibs(ref, times), rel=1e-9, abs=1e-12
    )
    try:
        sk = skm.integrated_brier_score(to_structured(train_t, train_e), to_structured(t, e), prob, times)
    except ValueError:
        event("brier: raw sksurv refuses")
        return
    event("brier: raw sksurv agrees")
    assert integrated_brier_score(train_t, train_e, t, e, prob, times) == pytest.approx(sk, rel=1e-12)


def test_brier_named_cases():
    t = np.array([1.0, 2, 3, 4, 5])
    e = np.ones(5, dtype=bool)
    times = [1.0, 2.0, 3.0]
    perfect = (t[:, None] > np.array(times)[None, :]).astype(float)
    np.testing.assert_allclose(brier_score(t, e, t, e, perfect, times), 0.0)
    assert integrated_brier_score(t, e, t, e, perfect, times) == 0.0
    half = np.full((5, 3), 0.5)
    assert integrated_brier_score(t, e, t, e, half, times) == pytest.approx(0.25)
    # one time: a (n,) vector is accepted
    assert brier_score(t, e, t, e, np.full(5, 0.5), 2.0) == pytest.approx([0.25])


def test_ibs_errors():
    t = np.array([1.0, 2, 3, 4, 5])
    e = np.array([1, 1, 0, 1, 0], dtype=bool)
    good = np.full((5, 2), 0.5)
    with pytest.raises(InputError, match="at least 2"):
        integrated_brier_score(t, e, t, e, good[:, :1], [2.0])
    with pytest.raises(InputError, match="strictly increasing"):
        integrated_brier_score(t, e, t, e, good, [3.0, 2.0])
    with pytest.raises(TimeRangeError, match="outside the follow-up"):
        integrated_brier_score(t, e, t, e, good, [2.0, 5.0])
    with pytest.raises(LengthMismatchError, match="4 rows but there are 5 cases"):
        integrated_brier_score(t, e, t, e, good[:4], [2.0, 3.0])
    with pytest.raises(LengthMismatchError, match="3 columns but there are 2 evaluation times"):
        integrated_brier_score(t, e, t, e, np.full((5, 3), 0.5), [2.0, 3.0])
    with pytest.raises(InputError, match="2-D"):
        integrated_brier_score(t, e, t, e, np.full(5, 0.5), [2.0, 3.0])
    bad = good.copy()
    bad[1, 1] = np.nan
    with pytest.raises(InvalidRiskError, match=r"NaN/inf .*\[1, 1\]"):
        integrated_brier_score(t, e, t, e, bad, [2.0, 3.0])
    bad[1, 1] = 1.5
    with pytest.raises(InvalidRiskError, match=r"outside \[0, 1\]"):
        integrated_brier_score(t, e, t, e, bad, [2.0, 3.0])


# --------------------------------------------------------------------------------------------------
# bad inputs, every metric
# --------------------------------------------------------------------------------------------------
T = np.array([1.0, 2, 3, 4, 5, 6])
E = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
R = np.array([6.0, 5, 4, 3, 2, 1])
P = np.full((6, 2), 0.5)

METRICS = {
    "harrell": lambda t, e, r: harrell_cindex(t, e, r),
    "uno": lambda t, e, r: uno_cindex(T, E, t, e, r),
    "td_auc": lambda t, e, r: td_auc(T, E, t, e, r, [2.0, 3.0]),
    "ibs": lambda t, e, r: integrated_brier_score(T, E, t, e, np.full((len(t), 2), 0.5), [2.0, 3.0]),
}


BAD_INPUTS = [
    (T[:5], E, R, LengthMismatchError, "`time` has 5 cases but `event` has 6"),
    (T, E, R[:5], LengthMismatchError, "5 values but there are 6 cases"),
    (np.r_[T[:5], np.nan], E, R, InvalidTimeError, "NaN/inf"),
    (np.r_[T[:5], np.inf], E, R, InvalidTimeError, "NaN/inf"),
    (np.r_[0.0, T[1:]], E, R, InvalidTimeError, "non-positive"),
    (np.r_[-2.0, T[1:]], E, R, InvalidTimeError, "non-positive"),
    (T, np.r_[E[:5], 2], R, InvalidEventError, "other than 0/1"),
    ([], [], [], EmptyInputError, "empty"),
    (T, np.zeros(6, dtype=bool), R, NoEventError, "no observed event"),
    (T, E, np.r_[R[:5], np.nan], InvalidRiskError, "NaN/inf"),
]

# every metric on every bad input, except risk-vector cases for the Brier score (it takes probabilities)
BAD_CASES = [
    pytest.param(metric, *case, id=f"{name}-{i}")
    for name, metric in METRICS.items()
    for i, case in enumerate(BAD_INPUTS)
    if not (name == "ibs" and case[2] is not R)
]


@pytest.mark.parametrize(("metric", "t", "e", "r", "error", "match"), BAD_CASES)
def test_bad_inputs(metric, t, e, r, error, match):
    with pytest.raises(error, match=match):
        metric(t, e, r)


@pytest.mark.parametrize(
    "call",
    [
        lambda: uno_cindex(T, np.zeros(6), T, E, R),
        lambda: td_auc(T, np.zeros(6), T, E, R, [2.0]),
        lambda: brier_score(T, np.zeros(6), T, E, P, [2.0, 3.0]),
    ],
)
def test_all_censored_training_set(call):
    with pytest.raises(NoEventError, match="`train_event` has no observed event"):
        call()


def test_errors_are_survpgc_and_value_errors():
    with pytest.raises(SurvpgcError):
        harrell_cindex([1.0], [1], [0.0])
    with pytest.raises(ValueError):
        harrell_cindex([1.0, 2.0], [1, 1], [0.0])
