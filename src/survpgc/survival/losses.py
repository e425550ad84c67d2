"""Survival losses and discrete-time helpers (torch).

All functions work on batches and in log space, so extreme logits give finite losses and gradients.

Discrete-time model: ``h_k = sigmoid(logit_k)`` is the hazard of bin ``k``;
``S_k = prod_{j<=k} (1 - h_j)`` the probability of surviving past bin ``k``; the risk score is
``-sum_k S_k`` (higher = worse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from survpgc.errors import InputError, LengthMismatchError, NoEventError

if TYPE_CHECKING:  # torch stays a lazy import
    import torch

__all__ = [
    "constant_hazard_logits",
    "cox_ph_loss",
    "hazards_from_logits",
    "nll_survival_loss",
    "risk_from_logits",
    "risk_from_survival",
    "survival_from_logits",
]

Reduction = Literal["mean", "sum", "none"]


def hazards_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Hazards ``sigmoid(logits)``, shape (batch, n_bins)."""
    import torch

    return torch.sigmoid(logits)


def survival_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """``S = cumprod(1 - h)`` along the bin axis, shape (batch, n_bins), computed as exp(cumsum log)."""
    import torch
    import torch.nn.functional as F

    return torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=-1))


def risk_from_survival(surv: torch.Tensor) -> torch.Tensor:
    """Risk ``-sum_k S_k`` (higher = worse), shape (batch,)."""
    return -surv.sum(dim=-1)


def risk_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Risk ``-sum_k S_k`` from hazard logits, shape (batch,)."""
    return risk_from_survival(survival_from_logits(logits))


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise InputError(f"`reduction` must be 'mean', 'sum' or 'none', got {reduction!r}")


def nll_survival_loss(
    logits: torch.Tensor,
    bin_index: torch.Tensor,
    event: torch.Tensor,
    alpha: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Discrete-time negative log-likelihood on hazard logits.

    With ``S_{-1} = 1`` and ``y`` the bin of the case:

    * uncensored (event): ``-log S_{y-1} - log h_y``
    * censored: ``-log S_y``
    * loss = ``(1 - alpha) * (uncensored + censored) + alpha * uncensored``

    Parameters
    ----------
    logits
        Shape (batch, n_bins), hazard logits.
    bin_index
        Shape (batch,), integer bin of each case (from :class:`~survpgc.survival.TimeBinner`).
    event
        Shape (batch,), bool or 0/1; True = death observed.
    alpha
        Extra weight on the uncensored term, in [0, 1] (0 in SurvPGC's reference runs).
    reduction
        ``"mean"`` (over cases), ``"sum"`` or ``"none"`` (per case, shape (batch,)).
    """
    import torch
    import torch.nn.functional as F

    if logits.ndim != 2:
        raise InputError(f"`logits` must have shape (batch, n_bins), got {tuple(logits.shape)}")
    n, k = logits.shape
    y = bin_index.reshape(-1).long().to(logits.device)
    e = event.reshape(-1).to(device=logits.device, dtype=logits.dtype)
    if y.shape[0] != n or e.shape[0] != n:
        raise LengthMismatchError(
            f"`logits` has {n} cases but `bin_index` has {y.shape[0]} and `event` has {e.shape[0]}"
        )
    if n and (int(y.min()) < 0 or int(y.max()) >= k):
        raise InputError(f"`bin_index` values must lie in [0, {k - 1}], got {int(y.min())}..{int(y.max())}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"`alpha` must lie in [0, 1], got {alpha}")
    log_h = F.logsigmoid(logits)  # log h_k
    log_1mh = F.logsigmoid(-logits)  # log (1 - h_k)
    log_s = torch.cumsum(log_1mh, dim=1)  # log S_k
    log_s_pad = torch.cat([torch.zeros_like(log_s[:, :1]), log_s], dim=1)  # log S_{k-1}, k = 0..K
    idx = y.unsqueeze(1)
    log_s_before = log_s_pad.gather(1, idx).squeeze(1)  # log S_{y-1}
    log_h_y = log_h.gather(1, idx).squeeze(1)
    log_s_y = log_s_pad.gather(1, idx + 1).squeeze(1)  # log S_y
    uncensored = -e * (log_s_before + log_h_y)
    censored = -(1.0 - e) * log_s_y
    loss = (1.0 - alpha) * (uncensored + censored) + alpha * uncensored
    return _reduce(loss, reduction)


def constant_hazard_logits(
    bin_index: Any, event: Any, n_bins: int, *, alpha: float = 0.0, eps: float = 1e-4
) -> np.ndarray:
    """Hazard logits of the best *constant* model under :func:`nll_survival_loss` (its maximum likelihood).

    The same hazards for every case: ``h_k = d_k / r_k`` with ``d_k`` the deaths in bin ``k`` and ``r_k`` the
    cases at risk in bin ``k`` -- those whose bin is ``>= k`` (an event in bin ``y`` survived the bins before
    ``y`` and died in ``y``; a censored case in bin ``y`` survived bins ``0..y``). With ``alpha`` > 0 a censored
    case counts ``1 - alpha`` in ``r_k``, as in the loss. ``h_k`` is clipped to ``[eps, 1 - eps]`` (a bin
    without deaths, or with no survivor, keeps a finite logit); a bin nobody reaches (``r_k = 0``) gets
    logit 0 (hazard 0.5, the loss does not depend on it). Kaplan-Meier at the bin ends is ``cumprod(1 - h)``.

    Parameters
    ----------
    bin_index
        Shape (n,), integer bin of each case in ``0 .. n_bins-1`` (from :class:`~survpgc.survival.TimeBinner`).
    event
        Shape (n,), bool or 0/1; True = death observed.
    n_bins
        Number of bins (the model's output size).
    alpha, eps
        The loss's ``alpha`` in [0, 1]; the clip, in (0, 0.5).

    Returns
    -------
    numpy.ndarray, shape (n_bins,), float64: ``log(h_k / (1 - h_k))``.
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise InputError(f"`n_bins` must be a positive integer, got {n_bins!r}")
    y = np.asarray(bin_index).reshape(-1)
    e = np.asarray(event).reshape(-1)
    if y.shape[0] != e.shape[0]:
        raise LengthMismatchError(f"`bin_index` has {y.shape[0]} cases but `event` has {e.shape[0]}")
    if y.size == 0:
        raise InputError("constant_hazard_logits needs at least one case, got none")
    if y.dtype.kind not in "iu":
        raise InputError(f"`bin_index` must hold integer bin labels, got dtype {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= n_bins:
        raise InputError(f"`bin_index` values must lie in [0, {n_bins - 1}], got {int(y.min())}..{int(y.max())}")
    if e.dtype != bool and not np.isin(e, (0, 1)).all():
        raise InputError("`event` must be bool or 0/1 (True = death observed)")
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"`alpha` must lie in [0, 1], got {alpha}")
    if not 0.0 < float(eps) < 0.5:
        raise InputError(f"`eps` must lie in (0, 0.5), got {eps}")
    e = e.astype(bool)
    weight = np.where(e, 1.0, 1.0 - float(alpha))
    deaths = np.bincount(y[e], minlength=n_bins).astype(np.float64)
    at_risk = np.cumsum(np.bincount(y, weights=weight, minlength=n_bins)[::-1])[::-1]  # sum over bins >= k
    h = np.divide(deaths, at_risk, out=np.full(n_bins, 0.5), where=at_risk > 0)
    h = np.clip(h, eps, 1.0 - eps)
    return np.log(h) - np.log1p(-h)


def cox_ph_loss(
    risk: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    ties: Literal["breslow", "efron"] = "efron",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Negative Cox partial log-likelihood for a risk head (log hazard ratio, higher = worse).

    For an event at time ``t`` with risk set ``R(t) = {j : t_j >= t}`` and ``D(t)`` the ``d`` events
    tied at ``t``:

    * Breslow: ``-(r_i - log sum_{j in R} exp r_j)``
    * Efron: the ``l``-th (``l = 0..d-1``) tied event contributes
      ``-(r_i - log(sum_{R} exp r_j - l/d * sum_{D} exp r_j))``

    Parameters
    ----------
    risk
        Shape (n,) (or (n, 1)).
    time, event
        Shape (n,); event True = death observed.
    ties
        ``"efron"`` (default, as lifelines) or ``"breslow"``.
    reduction
        ``"mean"`` divides the summed contributions by the number of events, ``"sum"`` sums them,
        ``"none"`` returns one value per case (0 for censored cases).

    Raises
    ------
    NoEventError
        When no case in the batch has an event (the partial likelihood is undefined).
    """
    import torch

    r = risk.reshape(-1)
    t = time.reshape(-1).to(r.device)
    e = event.reshape(-1).to(r.device).bool()
    n = r.shape[0]
    if t.shape[0] != n or e.shape[0] != n:
        raise LengthMismatchError(f"`risk` has {n} cases, `time` {t.shape[0]}, `event` {e.shape[0]}")
    if ties not in ("breslow", "efron"):
        raise InputError(f"`ties` must be 'breslow' or 'efron', got {ties!r}")
    if not bool(e.any()):
        raise NoEventError("cox_ph_loss: the batch has no observed event; the partial likelihood is undefined")

    uniq, inv = torch.unique(t, sorted=True, return_inverse=True)  # ascending unique times
    g = uniq.shape[0]
    lrs = _log_risk_set_sums(r, inv, g)[inv]
    log_denom = lrs if ties == "breslow" else _efron_log_denominator(r, e, inv, g, lrs)
    contrib = torch.where(e, -(r - log_denom), torch.zeros_like(r))
    if reduction == "mean":
        return contrib.sum() / e.sum()
    return _reduce(contrib, reduction)


def _log_risk_set_sums(r: torch.Tensor, inv: torch.Tensor, g: int) -> torch.Tensor:
    """``log sum_{j: t_j >= u} exp r_j`` for each of the ``g`` ascending unique times ``u`` (``inv``: the
    time index of each case), computed stably in log space."""
    import torch

    # log sum_{j: t_j = u} exp r_j for each unique time u, then reverse cumulative logsumexp = risk set.
    group_max = torch.full((g,), float("-inf"), dtype=r.dtype, device=r.device)
    group_max = group_max.scatter_reduce(0, inv, r.detach(), reduce="amax")
    shifted = torch.exp(r - group_max[inv])
    group_sum = torch.zeros(g, dtype=r.dtype, device=r.device).index_add(0, inv, shifted)
    log_group = torch.log(group_sum) + group_max
    return torch.flip(torch.logcumsumexp(torch.flip(log_group, [0]), dim=0), [0])


def _efron_log_denominator(
    r: torch.Tensor, e: torch.Tensor, inv: torch.Tensor, g: int, lrs: torch.Tensor
) -> torch.Tensor:
    """Per case, Efron's ``log(sum_R exp r_j - l/d * sum_D exp r_j)`` (``lrs``: the case's log risk-set sum;
    ``l``: its rank among the ``d`` events tied at its time, in input order)."""
    import torch

    n = r.shape[0]
    neg_inf = torch.tensor(float("-inf"), dtype=r.dtype, device=r.device)
    ef = e.to(r.dtype)
    ev_max = torch.full((g,), float("-inf"), dtype=r.dtype, device=r.device)
    ev_max = ev_max.scatter_reduce(0, inv, torch.where(e, r.detach(), neg_inf.expand_as(r)), reduce="amax")
    ev_max = torch.where(torch.isfinite(ev_max), ev_max, torch.zeros_like(ev_max))
    ev_sum = torch.zeros(g, dtype=r.dtype, device=r.device).index_add(0, inv, ef * torch.exp(r - ev_max[inv]))
    d = torch.zeros(g, dtype=r.dtype, device=r.device).index_add(0, inv, ef)
    # rank l (0-based, in input order) of each event among the events tied at its time:
    # stable sort by (time group, censored-last), then count earlier events in the same group.
    order = torch.argsort(inv * 2 + (~e).long(), stable=True)
    sorted_e = ef[order]
    events_before_group = torch.cumsum(d, 0) - d
    rank = torch.empty(n, dtype=r.dtype, device=r.device)
    rank[order] = torch.cumsum(sorted_e, 0) - sorted_e - events_before_group[inv[order]]
    log_ev = torch.log(torch.clamp(ev_sum, min=torch.finfo(r.dtype).tiny)) + ev_max
    frac = rank / torch.clamp(d[inv], min=1.0)
    ratio = torch.exp(log_ev[inv] - lrs)  # sum_D / sum_R, <= 1
    return lrs + torch.log1p(-torch.clamp(frac * ratio, max=1.0 - 1e-12))
