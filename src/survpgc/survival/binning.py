"""Discrete time bins for the NLL survival loss.

Edges come from quantiles of the *uncensored* training times (as the reference implementations do), so
that each bin holds about the same number of observed deaths. The outer edges are then widened: the first
bin starts at 0 and the last bin is open to +inf, so that every training time -- and any time seen at
evaluation, shorter or longer than the training range -- gets a valid bin.

A case with time ``t`` falls in bin ``k`` when ``edges[k] <= t < edges[k + 1]`` (left-closed,
right-open; ``edges[0] = 0``, ``edges[-1] = inf``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from survpgc.errors import InputError, NotFittedError
from survpgc.survival.convention import _check_time, check_survival

__all__ = ["TimeBinner"]

log = logging.getLogger(__name__)


class TimeBinner:
    """Quantile time binning fitted on training data only.

    Parameters
    ----------
    n_bins
        Number of discrete time intervals (the model's output size). Default 4, as the paper.

    Attributes (after :meth:`fit`)
    ---------------------------------
    edges_ : numpy.ndarray, shape (n_bins + 1,)
        ``[0, q_1, ..., q_{n_bins-1}, inf]`` in months; ``q_j`` is the j/n_bins quantile of the uncensored
        training times (linear interpolation, numpy's default).
    quantile_edges_ : numpy.ndarray, shape (n_bins + 1,)
        The raw quantiles before widening (min and max uncensored training time at the ends).
    train_range_ : tuple[float, float]
        Smallest and largest training time (censored included).
    """

    def __init__(self, n_bins: int = 4) -> None:
        if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
            raise InputError(f"`n_bins` must be a positive integer, got {n_bins!r}")
        self.n_bins = int(n_bins)
        self.edges_: np.ndarray | None = None
        self.quantile_edges_: np.ndarray | None = None
        self.train_range_: tuple[float, float] | None = None

    def fit(self, time: Any, event: Any) -> TimeBinner:
        """Fit the edges on training times; needs at least one observed event.

        Parameters
        ----------
        time, event
            Training cases only, shape (n,), in the survpgc convention.
        """
        t, e = check_survival(time, event, require_event=True)
        q = np.quantile(t[e], np.linspace(0.0, 1.0, self.n_bins + 1))
        edges = q.copy()
        edges[0] = 0.0
        edges[-1] = np.inf
        inner = edges[1:-1]
        if inner.size and np.any(np.diff(edges) <= 0):
            empty = int(np.sum(np.diff(edges) <= 0))
            log.warning(
                "time binning: %d of %d bins are empty because uncensored training times tie at a "
                "quantile (%s); those bins never receive a label. Consider fewer bins.",
                empty,
                self.n_bins,
                np.array2string(q, precision=3),
            )
        self.quantile_edges_ = q
        self.edges_ = edges
        self.train_range_ = (float(t.min()), float(t.max()))
        return self

    def _require_fit(self) -> np.ndarray:
        if self.edges_ is None:
            raise NotFittedError("TimeBinner is not fitted: call fit(train_time, train_event) first")
        return self.edges_

    def transform(self, time: Any) -> np.ndarray:
        """Bin index (int64, shape (n,), values in ``0 .. n_bins-1``) for any positive times.

        Times longer than every training time land in the last bin; shorter ones in the first.
        """
        edges = self._require_fit()
        t = _check_time(time, "time")
        return np.searchsorted(edges[1:-1], t, side="right").astype(np.int64)

    def fit_transform(self, time: Any, event: Any) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same (training) cases."""
        return self.fit(time, event).transform(time)

    def survival_at(self, surv: Any, times: Any) -> np.ndarray:
        """Evaluate discrete survival curves as right-continuous step functions at arbitrary times.

        Parameters
        ----------
        surv
            Shape (n_cases, n_bins): ``surv[:, k]`` = probability of surviving past bin ``k``
            (``cumprod(1 - hazard)``).
        times
            Shape (m,), months > 0.

        Returns
        -------
        numpy.ndarray, shape (n_cases, m)
            ``S(t) = surv[:, k-1]`` for ``t`` in bin ``k`` (``S = 1`` in the first bin): a death in bin
            ``k`` is only certain to have happened at the end of the bin.
        """
        edges = self._require_fit()
        s = np.asarray(surv, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != self.n_bins:
            raise InputError(f"`surv` must have shape (n_cases, {self.n_bins}), got {s.shape}")
        t = _check_time(times, "times")
        k = np.searchsorted(edges[1:-1], t, side="right")
        padded = np.concatenate([np.ones((s.shape[0], 1)), s], axis=1)
        return padded[:, k]

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly state (for run directories)."""
        edges = self._require_fit()
        return {
            "n_bins": self.n_bins,
            "edges": [float(x) for x in edges],
            "quantile_edges": [float(x) for x in self.quantile_edges_],
            "train_range": list(self.train_range_),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TimeBinner:
        """Inverse of :meth:`to_dict`."""
        obj = cls(int(state["n_bins"]))
        obj.edges_ = np.asarray(state["edges"], dtype=np.float64)
        obj.quantile_edges_ = np.asarray(state["quantile_edges"], dtype=np.float64)
        obj.train_range_ = tuple(state["train_range"])
        return obj

    def __repr__(self) -> str:
        if self.edges_ is None:
            return f"TimeBinner(n_bins={self.n_bins}, unfitted)"
        return f"TimeBinner(n_bins={self.n_bins}, edges={np.array2string(self.edges_, precision=2)})"
