"""Per-fold metrics, mean ± sd summaries and fold-stratified paired bootstrap comparisons.

All metrics are computed on each fold's **test** cases; censoring distributions (Uno's C, time-dependent
AUC, Brier) come from the fold's **training** cases only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import InputError, SurvpgcError
from survpgc.eval.registry import DEFAULT_TIMES, Metric, auc_key, metrics_for, metrics_in

__all__ = ["compare_models", "fold_metrics", "summarize"]

log = logging.getLogger(__name__)


def _safe(fn, *args, note: list[str] | None = None, label: str = "", **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except SurvpgcError as exc:
        if note is not None:
            note.append(f"{label}: {exc}")
        return None


def fold_metrics(
    train_time: np.ndarray,
    train_event: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    *,
    times: Sequence[float] = DEFAULT_TIMES,
    surv_at: Any = None,
) -> tuple[dict[str, float], list[str]]:
    """Metrics of one fold's test predictions at the evaluation ``times`` (months).

    The keys are exactly those of :func:`survpgc.eval.registry.metrics_for` ``(times)``, in that order.
    ``surv_at(times) -> (n, len(times))`` gives predicted survival probabilities at arbitrary times (for the
    integrated Brier score); None skips the IBS. Evaluation times outside the test follow-up are skipped
    (their AUC is NaN) and noted. Returns ``(metrics, notes)``; metrics that cannot be computed are NaN.
    """
    from survpgc.survival.metrics import harrell_cindex, integrated_brier_score, td_auc, uno_cindex

    notes: list[str] = []
    out: dict[str, float] = {m.key: float("nan") for m in metrics_for(times)}
    c = _safe(harrell_cindex, time, event, risk, note=notes, label="cindex")
    out["cindex"] = float("nan") if c is None else c
    u = _safe(uno_cindex, train_time, train_event, time, event, risk, note=notes, label="cindex_uno")
    out["cindex_uno"] = float("nan") if u is None else u
    t_arr = np.asarray(time, dtype=float)
    hi = min(t_arr.max(), np.asarray(train_time, dtype=float).max())
    first_event = t_arr[np.asarray(event, bool)].min() if np.any(event) else np.inf
    ok = [float(t) for t in times if first_event <= t < hi]
    skipped = [t for t in times if float(t) not in ok]
    if skipped:
        notes.append(f"AUC times {skipped} lie outside this fold's follow-up ({first_event:.1f}-{hi:.1f} months)")
    if ok:
        res = _safe(td_auc, train_time, train_event, time, event, risk, ok, note=notes, label="td_auc")
        if res is not None:
            aucs, iauc = res
            for t, a in zip(ok, aucs, strict=True):
                out[auc_key(t)] = float(a)
            out["iauc"] = float(iauc)
    if surv_at is not None and len(ok) >= 2:
        grid = np.linspace(min(ok), max(ok), 25)
        ibs = _safe(
            integrated_brier_score, train_time, train_event, time, event, surv_at(grid), grid, note=notes, label="ibs"
        )
        out["ibs"] = float("nan") if ibs is None else float(ibs)
    return out, notes


def summarize(metrics: pd.DataFrame, protocol: str, *, names: Sequence[Metric] | None = None) -> pd.DataFrame:
    """Mean ± sd over folds per model (sd with ddof=1, as papers report), plus the protocol.

    ``names`` are the metrics to summarise (columns ``<key>_mean``, ``<key>_sd`` and ``<key>_n``, the number
    of folds averaged: a fold where the metric could not be computed -- NaN, e.g. no event in its test part --
    is left out); default: the metric columns of ``metrics`` (:func:`survpgc.eval.registry.metrics_in`), so a
    table written at any evaluation times is summarised whole. A metric of ``names`` missing from ``metrics``
    is an error. ``n_folds`` is the number of folds averaged for the C-index (the headline; every fold of the
    model when the table has no C-index); ``n_cases`` the number of test cases counted, when ``metrics`` has
    ``n_test`` (test cases per fold).
    """
    names = metrics_in(metrics.columns) if names is None else tuple(names)
    absent = [m.key for m in names if m.key not in metrics.columns]
    if absent:
        raise InputError(f"summarize: metrics table has no column(s) {absent}; columns: {list(metrics.columns)}")
    rows = []
    for model, g in metrics.groupby("model", sort=False):
        headline = g.loc[g["cindex"].notna()] if "cindex" in g.columns else g
        row: dict[str, Any] = {"model": model, "n_folds": int(headline["fold"].nunique())}
        if "n_test" in g.columns:
            row["n_cases"] = int(headline["n_test"].sum())
        row["protocol"] = protocol
        for m in names:
            vals = g[m.key].astype(float).dropna()
            row[f"{m.key}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{m.key}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[f"{m.key}_n"] = len(vals)
        rows.append(row)
    return pd.DataFrame(rows)


def compare_models(
    predictions: pd.DataFrame, reference: str, *, n: int = 1000, seed: int = 0, conf_level: float = 0.95
) -> pd.DataFrame:
    """Fold-stratified paired bootstrap of the mean per-fold Harrell C-index: every model vs ``reference``.

    For each resample, the test cases of every fold are resampled with replacement *within the fold* (the
    same indices for both models); the statistic is the mean over folds of C(model) - C(reference), the
    quantity a CV table reports. ``delta_cindex`` is its value on the data, the CI is the percentile
    interval, ``p_value`` the two-sided bootstrap p (never 0). Models must share the test cases of every
    fold (they do within a run); only the folds both a model and the reference have are compared (a run still
    in progress), and a model sharing none with the reference gets no row.
    """
    from survpgc.survival.stats import bootstrap_indices, cindex_on_resamples

    test = predictions[predictions["split"] == "test"]
    models = [m for m in test["model"].unique() if m != reference]
    if reference not in set(test["model"]) or not models or n <= 0:
        return pd.DataFrame(columns=["model", "reference", "delta_cindex", "ci_low", "ci_high", "p_value"])
    rows = []
    ref = test[test["model"] == reference].set_index(["fold", "case_id"])
    for model in models:
        cur = test[test["model"] == model].set_index(["fold", "case_id"])
        # only the folds both models finished (a run still in progress, or --fold / --model jobs)
        folds = sorted(set(cur.index.get_level_values(0)) & set(ref.index.get_level_values(0)))
        if not folds:
            log.info("compare_models: %s shares no finished fold with %s yet; not compared", model, reference)
            continue
        deltas_point, deltas_boot = [], []
        for k, f in enumerate(folds):
            a = cur.loc[f]
            b = ref.loc[f].loc[a.index]
            t, e = a["time"].to_numpy(float), a["event"].to_numpy(bool)
            idx = bootstrap_indices(len(a), n, seed=seed + 7919 * k)
            full = np.arange(len(a))[None, :]
            ca = cindex_on_resamples(t, e, a["risk"].to_numpy(float), np.vstack([full, idx]))
            cb = cindex_on_resamples(t, e, b["risk"].to_numpy(float), np.vstack([full, idx]))
            deltas_point.append(ca[0] - cb[0])
            deltas_boot.append(ca[1:] - cb[1:])
        with warnings.catch_warnings():  # a resample with no comparable pair in any fold is NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            point = float(np.nanmean(deltas_point))
            boot = np.nanmean(np.vstack(deltas_boot), axis=0)
        boot = boot[np.isfinite(boot)]
        alpha = 1.0 - conf_level
        lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if len(boot) else (np.nan, np.nan)
        m = len(boot)
        p = min(1.0, 2.0 * min((np.sum(boot <= 0) + 1) / (m + 1), (np.sum(boot >= 0) + 1) / (m + 1)))
        rows.append(
            {"model": model, "reference": reference, "delta_cindex": point, "ci_low": float(lo), "ci_high": float(hi),
             "p_value": float(p)}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "reference", "delta_cindex", "ci_low", "ci_high", "p_value"])
