"""Time binning: fitted on training data only, every case gets a valid bin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from survpgc.errors import InputError, NoEventError, NotFittedError
from survpgc.survival import TimeBinner


def _reference_bins(train_t, train_e, t, n_bins):
    """The reference implementations' recipe (pandas qcut on uncensored times, widened outer edges,
    left-closed intervals), written independently to cross-check ours."""
    _, q = pd.qcut(train_t[train_e], q=n_bins, retbins=True, labels=False, duplicates="drop")
    q[0] = -np.inf
    q[-1] = np.inf
    return pd.cut(t, bins=q, right=False, labels=False).astype(int)


cohorts = st.integers(min_value=2, max_value=80).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.1, 200.0), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(cohorts, st.integers(1, 8), st.lists(st.floats(0.01, 1000.0), min_size=1, max_size=20))
def test_bins_valid_and_match_reference(cohort, n_bins, new_times):
    t = np.asarray(cohort[0])
    e = np.asarray(cohort[1])
    if not e.any():
        e[0] = True
    b = TimeBinner(n_bins).fit(t, e)
    train_bins = b.transform(t)
    assert train_bins.dtype == np.int64
    assert ((train_bins >= 0) & (train_bins < n_bins)).all()
    new = np.asarray(new_times)
    nb = b.transform(new)
    assert ((nb >= 0) & (nb < n_bins)).all()
    # monotone in time
    order = np.argsort(new)
    assert (np.diff(nb[order]) >= 0).all()
    # agrees with the qcut recipe whenever the quantiles are distinct (qcut drops duplicates)
    q = b.quantile_edges_
    if np.all(np.diff(q) > 0):
        np.testing.assert_array_equal(train_bins, _reference_bins(t, e, t, n_bins))
        np.testing.assert_array_equal(nb, _reference_bins(t, e, new, n_bins))


def test_edges_from_uncensored_training_times_only():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 100.0, 200.0, 300.0])
    e = np.array([1, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
    b = TimeBinner(2).fit(t, e)
    # median of uncensored times (1..5) = 3; censored long times do not move it
    np.testing.assert_allclose(b.edges_, [0.0, 3.0, np.inf])
    np.testing.assert_array_equal(b.transform([2.9, 3.0, 250.0, 1e6]), [0, 1, 1, 1])
    # refitting on other data changes edges: the binner is only what it was fitted on
    b2 = TimeBinner(2).fit(t[5:], np.ones(3, bool))
    assert b2.edges_[1] == 200.0


def test_unseen_times_land_in_outer_bins():
    b = TimeBinner(4).fit(np.arange(1.0, 41.0), np.ones(40, bool))
    assert b.transform([1e-3])[0] == 0
    assert b.transform([1e9])[0] == 3
    assert b.train_range_ == (1.0, 40.0)


def test_tied_quantiles_leave_empty_bins_but_valid_indices(caplog):
    t = np.array([5.0] * 10 + [6.0, 7.0])
    b = TimeBinner(4).fit(t, np.ones(12, bool))
    assert "empty" in caplog.text
    bins = b.transform(t)
    assert ((bins >= 0) & (bins < 4)).all()


def test_survival_at_step_function():
    b = TimeBinner(2).fit([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1])  # edges 0, 2.5, inf
    surv = np.array([[0.8, 0.5], [0.9, 0.1]])
    out = b.survival_at(surv, [1.0, 2.5, 10.0])
    np.testing.assert_allclose(out, [[1.0, 0.8, 0.8], [1.0, 0.9, 0.9]])
    with pytest.raises(InputError, match="shape"):
        b.survival_at(np.ones((2, 3)), [1.0])


def test_errors_and_roundtrip():
    with pytest.raises(NotFittedError, match="fit"):
        TimeBinner().transform([1.0])
    with pytest.raises(NoEventError):
        TimeBinner().fit([1.0, 2.0], [0, 0])
    with pytest.raises(InputError, match="n_bins"):
        TimeBinner(0)
    b = TimeBinner(3).fit([1.0, 2.0, 3.0, 9.0], [1, 1, 0, 1])
    b2 = TimeBinner.from_dict(b.to_dict())
    np.testing.assert_array_equal(b2.edges_, b.edges_)
    np.testing.assert_array_equal(b2.transform([0.5, 2.5, 50.0]), b.transform([0.5, 2.5, 50.0]))
