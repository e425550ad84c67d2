"""Survival losses against slow float64 references written from the formulas and external oracles."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from survpgc.errors import InputError, LengthMismatchError, NoEventError
from survpgc.survival.losses import (
    cox_ph_loss,
    hazards_from_logits,
    nll_survival_loss,
    risk_from_logits,
    survival_from_logits,
)


def slow_nll(logits, y, event, alpha):
    """The discrete-time NLL written out case by case (survival.losses' docstring), in float64 with math functions."""
    out = []
    for row, yi, ei in zip(logits.tolist(), y.tolist(), event.tolist(), strict=True):
        h = [1.0 / (1.0 + math.exp(-v)) for v in row]
        s = [1.0]
        for hk in h:
            s.append(s[-1] * (1.0 - hk))  # s[k + 1] = S_k, s[0] = S_{-1} = 1
        unc = -(math.log(s[yi]) + math.log(h[yi])) if ei else 0.0
        cen = 0.0 if ei else -math.log(s[yi + 1])
        out.append((1 - alpha) * (unc + cen) + alpha * unc)
    return np.array(out)


nll_cases = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.integers(1, 6).flatmap(
            lambda k: st.tuples(
                st.just(k),
                st.lists(st.lists(st.floats(-8, 8), min_size=k, max_size=k), min_size=n, max_size=n),
                st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
            )
        ),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.sampled_from([0.0, 0.15, 0.5, 1.0]),
    )
)


@settings(max_examples=200, deadline=None)
@given(nll_cases)
def test_nll_matches_slow_reference(case):
    (_k, logits, y), event, alpha = case
    lg = torch.tensor(logits, dtype=torch.float64)
    yt = torch.tensor(y)
    et = torch.tensor(event)
    expected = slow_nll(lg.numpy(), yt.numpy(), et.numpy(), alpha)
    got = nll_survival_loss(lg, yt, et, alpha=alpha, reduction="none").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert nll_survival_loss(lg, yt, et, alpha=alpha).item() == pytest.approx(expected.mean(), rel=1e-9)
    assert nll_survival_loss(lg, yt, et, alpha=alpha, reduction="sum").item() == pytest.approx(expected.sum(), rel=1e-9)


def test_nll_alpha_limits():
    torch.manual_seed(0)
    lg = torch.randn(9, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (9,))
    e = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0, 0], dtype=torch.bool)
    full = nll_survival_loss(lg, y, e, alpha=0.0, reduction="none")
    unc_only = nll_survival_loss(lg, y, e, alpha=1.0, reduction="none")
    # alpha = 1: censored cases contribute nothing; events contribute the same as at alpha = 0
    assert torch.all(unc_only[~e] == 0)
    torch.testing.assert_close(unc_only[e], full[e])
    # linear in alpha in between
    mid = nll_survival_loss(lg, y, e, alpha=0.3, reduction="none")
    torch.testing.assert_close(mid, 0.7 * full + 0.3 * unc_only)


def test_nll_extreme_logits_finite_gradients():
    lg = torch.tensor([[80.0, -80.0, 0.0, 500.0], [-500.0, -500.0, -500.0, -500.0]], requires_grad=True)
    y = torch.tensor([1, 3])
    e = torch.tensor([True, False])
    loss = nll_survival_loss(lg, y, e)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(lg.grad).all()
    # the naive formula overflows here: the log-space one must still be right
    lg2 = torch.tensor([[30.0, 40.0]], dtype=torch.float64)
    val = nll_survival_loss(lg2, torch.tensor([1]), torch.tensor([True])).item()
    # -log S_0 - log h_1 = softplus(30) + softplus(-40)
    assert val == pytest.approx(
        float(torch.nn.functional.softplus(torch.tensor(30.0, dtype=torch.float64)))
        + float(torch.nn.functional.softplus(torch.tensor(-40.0, dtype=torch.float64))),
        rel=1e-12,
    )


def test_nll_errors():
    lg = torch.zeros(3, 4)
    with pytest.raises(LengthMismatchError):
        nll_survival_loss(lg, torch.tensor([0, 1]), torch.tensor([1, 0, 1]))
    with pytest.raises(InputError, match=r"\[0, 3\]"):
        nll_survival_loss(lg, torch.tensor([0, 1, 4]), torch.tensor([1, 0, 1]))
    with pytest.raises(InputError, match="alpha"):
        nll_survival_loss(lg, torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1]), alpha=1.5)
    with pytest.raises(InputError, match="reduction"):
        nll_survival_loss(lg, torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1]), reduction="avg")
    with pytest.raises(InputError, match="batch, n_bins"):
        nll_survival_loss(torch.zeros(4), torch.tensor([0]), torch.tensor([1]))


def test_survival_and_risk_helpers():
    lg = torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64)
    h = hazards_from_logits(lg)
    s = survival_from_logits(lg)
    torch.testing.assert_close(s, torch.cumprod(1 - h, dim=1))
    torch.testing.assert_close(risk_from_logits(lg), -s.sum(dim=1))
    # higher hazard logits => higher risk
    assert risk_from_logits(lg + 1.0).item() > risk_from_logits(lg).item()


# ----------------------------------------------------------------------------------------- Cox
def slow_cox(risk, time, event, ties):
    """Partial likelihood from its definition, loops over distinct event times, float64."""
    total = 0.0
    for t in np.unique(time[event]):
        d_idx = np.flatnonzero((time == t) & event)
        r_set = np.exp(risk[time >= t]).sum()
        d_sum = np.exp(risk[d_idx]).sum()
        d = len(d_idx)
        for ell, i in enumerate(d_idx):
            denom = r_set if ties == "breslow" else r_set - ell / d * d_sum
            total += risk[i] - math.log(denom)
    return -total


cox_cases = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-5, 5), min_size=n, max_size=n),
        st.lists(st.integers(1, 8), min_size=n, max_size=n),  # small range => many ties
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(cox_cases, st.sampled_from(["breslow", "efron"]))
def test_cox_matches_slow_reference(case, ties):
    r, t, e = (np.asarray(x) for x in case)
    r = r.astype(np.float64)
    t = t.astype(np.float64)
    if not e.any():
        e[0] = True
    got_sum = cox_ph_loss(torch.tensor(r), torch.tensor(t), torch.tensor(e), ties=ties, reduction="sum")
    assert got_sum.item() == pytest.approx(slow_cox(r, t, e, ties), rel=1e-9, abs=1e-9)
    per = cox_ph_loss(torch.tensor(r), torch.tensor(t), torch.tensor(e), ties=ties, reduction="none")
    assert torch.all(per[torch.tensor(~e)] == 0)
    assert per.sum().item() == pytest.approx(got_sum.item(), rel=1e-9, abs=1e-9)
    mean = cox_ph_loss(torch.tensor(r), torch.tensor(t), torch.tensor(e), ties=ties)
    assert mean.item() == pytest.approx(got_sum.item() / e.sum(), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(cox_cases, st.sampled_from(["breslow", "efron"]))
def test_cox_matches_torchsurv(case, ties):
    from torchsurv.loss.cox import neg_partial_log_likelihood

    r, t, e = (np.asarray(x) for x in case)
    if not e.any():
        e[0] = True
    # torchsurv resolves event/censored ties at equal time by sort order when event times are
    # distinct; make censored times non-integer so that situation does not arise.
    t = t.astype(np.float64) + np.where(e, 0.0, 0.5)
    rt = torch.tensor(r, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = neg_partial_log_likelihood(
            rt, torch.tensor(e), torch.tensor(t, dtype=torch.float32), ties_method=ties, reduction="sum"
        )
    got = cox_ph_loss(rt, torch.tensor(t), torch.tensor(e), ties=ties, reduction="sum")
    assert got.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cox_efron_matches_lifelines_log_likelihood(seed):
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(seed)
    n = 60
    x = rng.normal(size=n)
    t = np.ceil(rng.exponential(10 * np.exp(-0.7 * x)))  # integer months: many ties
    e = rng.random(n) < 0.7
    df = pd.DataFrame({"x": x, "T": t, "E": e.astype(int)})
    cph = CoxPHFitter().fit(df, "T", "E")
    beta = float(cph.params_["x"])
    got = cox_ph_loss(torch.tensor(beta * x), torch.tensor(t), torch.tensor(e), ties="efron", reduction="sum").item()
    assert -got == pytest.approx(cph.log_likelihood_, rel=1e-8)


def test_cox_gradients_and_errors():
    r = torch.tensor([50.0, -50.0, 0.0, 300.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1.0, 1.0, 2.0, 3.0])
    e = torch.tensor([True, True, False, True])
    for ties in ("breslow", "efron"):
        loss = cox_ph_loss(r, t, e, ties=ties)
        (g,) = torch.autograd.grad(loss, r)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
    with pytest.raises(NoEventError, match="no observed event"):
        cox_ph_loss(r, t, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(LengthMismatchError):
        cox_ph_loss(r, t[:3], e)
    with pytest.raises(InputError, match="ties"):
        cox_ph_loss(r, t, e, ties="exact")
