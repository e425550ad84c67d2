"""Plots of a cross-validated run: Kaplan-Meier curves by predicted risk group and a forest plot of C-index.

Every function writes one PNG atomically (rendered in memory, written to a temporary file in the target
directory, then renamed) and returns a dict with the numbers it drew, so tests and reports can check them
without reading pixels.  Matplotlib is imported inside the functions, and figures are built with
:class:`matplotlib.figure.Figure` + the Agg canvas directly -- no pyplot, no global figure state, no
display needed.

Survival convention: ``time`` months > 0, ``event`` True = death, ``risk`` higher = worse.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from survpgc.errors import InputError, LengthMismatchError, NoEventError
from survpgc.files import atomic_write_bytes
from survpgc.survival.convention import as_1d_array, check_risk, check_survival
from survpgc.survival.stats import kaplan_meier, logrank_test, median_risk_groups

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HIGH_RISK_COLOR",
    "LOWER_IS_BETTER",
    "LOW_RISK_COLOR",
    "METRIC_LABELS",
    "at_risk_counts",
    "forest_plot",
    "format_p_value",
    "km_for_model",
    "km_plot",
    "km_summary",
]

log = logging.getLogger(__name__)

DPI = 120
KM_FIGSIZE = (8.0, 6.5)  #: inches; at DPI 120 -> 960 x 780 pixels
HIGH_RISK_COLOR = "#d62728"
LOW_RISK_COLOR = "#1f77b4"
_STEP_CANDIDATES = (1.0, 3.0, 6.0, 12.0, 24.0, 36.0, 60.0, 120.0, 240.0)
_MAX_AT_RISK_COLUMNS = 11
LOWER_IS_BETTER = frozenset({"ibs"})  #: metrics where a smaller value is better
#: display names of the metrics of ``metrics.csv``
METRIC_LABELS: dict[str, str] = {
    "cindex": "C-index (Harrell)",
    "cindex_uno": "C-index (Uno)",
    "auc_12": "AUC 12 mo",
    "auc_36": "AUC 36 mo",
    "auc_60": "AUC 60 mo",
    "iauc": "iAUC",
    "ibs": "IBS",
}
_EXTRA_MARKERS = ("D", "s", "^", "v", "P", "X", "*")
_EXTRA_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def format_p_value(p: float | None) -> str:
    """``"n/a"`` for NaN / None, ``"0.012"`` (3 decimals) from 0.001 up, ``"3.4e-05"`` below."""
    if p is None:
        return "n/a"
    p = float(p)
    if not math.isfinite(p):
        return "n/a"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def _save_figure(fig: Any, path: Path, metadata: Mapping[str, str]) -> Path:
    """Render ``fig`` (a :class:`matplotlib.figure.Figure`) as PNG in memory and write it atomically.

    ``metadata`` goes into the PNG's text chunks (``Title``, ``Description``) so the drawn numbers can be
    read back from the file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={k: str(v) for k, v in metadata.items()})
    return atomic_write_bytes(Path(path), buf.getvalue())


def _figure(figsize: tuple[float, float], **kwargs: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI, **kwargs)


def _as_bool_groups(high_risk: Any, n: int) -> np.ndarray:
    g = as_1d_array(high_risk, "high_risk")
    if g.shape[0] != n:
        raise LengthMismatchError(f"`high_risk` has {g.shape[0]} values but there are {n} cases")
    if g.dtype == bool:
        return g.copy()
    if g.dtype.kind in "iuf" and np.all(np.isin(g, (0, 1))):
        return g.astype(bool)
    raise InputError("`high_risk` must be booleans (True = high risk) or 0/1")


def _at_risk_step(max_time: float) -> float:
    for step in _STEP_CANDIDATES:
        if math.floor(max_time / step) + 1 <= _MAX_AT_RISK_COLUMNS:
            return step
    return _STEP_CANDIDATES[-1] * math.ceil(max_time / (_STEP_CANDIDATES[-1] * (_MAX_AT_RISK_COLUMNS - 1)))


def at_risk_counts(time: Any, at_times: Any) -> np.ndarray:
    """Number of cases still at risk (``time >= t``) at each ``t`` of ``at_times`` (int64)."""
    t = np.sort(np.asarray(time, dtype=np.float64))
    q = np.asarray(at_times, dtype=np.float64)
    return (t.shape[0] - np.searchsorted(t, q, side="left")).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier by risk group
# --------------------------------------------------------------------------------------------------
def _km_inputs(time: Any, event: Any, high_risk: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``time`` (float64), ``event`` (bool), ``high_risk`` (bool); no case at all is an error."""
    t, e = check_survival(time, event)
    return t, e, _as_bool_groups(high_risk, t.shape[0])


def km_summary(time: Any, event: Any, high_risk: Any, *, step: float | None = None) -> dict[str, Any]:
    """The numbers behind :func:`km_plot`: group sizes, deaths, log-rank test and the at-risk table.

    Parameters
    ----------
    time, event : array-like, shape (n,)
        Survival data (months > 0; True = death); at least one case (else :class:`EmptyInputError`).
    high_risk : array-like of bool, shape (n,)
        True = high-risk group.
    step : float, optional
        Spacing (months) of the at-risk table; default: the smallest of 1, 3, 6, 12, 24, 36, 60, 120, 240
        months giving at most 11 columns from 0 to the largest time (12 months for follow-up up to 10 y).

    Returns
    -------
    dict
        ``n_high, n_low, events_high, events_low`` (ints), ``statistic, p_value`` of
        :func:`~survpgc.survival.stats.logrank_test` (NaN when it is undefined: an empty group or no
        death at all), ``p_text`` (:func:`format_p_value`), ``at_risk_times`` (0, step, 2 step, ...,
        float array), ``at_risk_high`` / ``at_risk_low`` (cases with ``time >= t`` in each group),
        ``max_time``.
    """
    t, e, high = _km_inputs(time, event, high_risk)
    statistic = p_value = float("nan")
    if high.any() and (~high).any() and e.any():
        try:
            statistic, p_value = logrank_test(t, e, high)
        except (NoEventError, InputError) as exc:  # pragma: no cover - guarded above
            log.warning("log-rank test not computable: %s", exc)
    max_time = float(t.max())
    if step is None:
        step = _at_risk_step(max_time)
    elif not (float(step) > 0 and math.isfinite(float(step))):
        raise InputError(f"`step` must be a positive number of months, got {step!r}")
    step = float(step)
    at_times = step * np.arange(math.floor(max_time / step) + 1, dtype=np.float64)
    return {
        "n_high": int(high.sum()),
        "n_low": int((~high).sum()),
        "events_high": int(e[high].sum()),
        "events_low": int(e[~high].sum()),
        "statistic": float(statistic),
        "p_value": float(p_value),
        "p_text": format_p_value(p_value),
        "at_risk_times": at_times,
        "at_risk_high": at_risk_counts(t[high], at_times),
        "at_risk_low": at_risk_counts(t[~high], at_times),
        "max_time": max_time,
        "step": step,
    }


def _draw_km_group(ax: Any, t: np.ndarray, e: np.ndarray, color: str, label: str) -> None:
    km = kaplan_meier(t, e)
    x = np.concatenate(([0.0], km.times))
    y = np.concatenate(([1.0], km.survival))
    lo = np.concatenate(([1.0], km.ci_low))
    hi = np.concatenate(([1.0], km.ci_high))
    ax.step(x, y, where="post", color=color, linewidth=1.8, label=label)
    ax.fill_between(x, lo, hi, step="post", color=color, alpha=0.18, linewidth=0)
    cens = km.censored > 0
    if cens.any():
        ax.plot(km.times[cens], km.survival[cens], linestyle="none", marker="|", markersize=8, color=color)


def km_plot(
    time: Any,
    event: Any,
    high_risk: Any,
    path: str | os.PathLike[str],
    title: str = "Kaplan-Meier curves by predicted risk",
    threshold: float | None = None,
    *,
    step: float | None = None,
) -> dict[str, Any]:
    """Kaplan-Meier curves of the high- vs low-risk groups with the log-rank p and an at-risk table.

    One PNG (960 x 780 pixels): product-limit step curves (:func:`~survpgc.survival.stats.kaplan_meier`)
    with their 95 % pointwise log(-log) confidence bands and ``|`` ticks at censoring times, the log-rank
    p-value (:func:`~survpgc.survival.stats.logrank_test`) in the legend and subtitle, and underneath the
    numbers still at risk (``time >= t``) every ``step`` months.  An empty group is left out of the plot
    (its at-risk row shows 0); a group without deaths is a flat line at 1; when the test is undefined the
    p-value reads ``n/a``.

    Parameters
    ----------
    time, event, high_risk : array-like, shape (n,)
        Survival data and the group of each case (True = high risk).
    path : path-like
        Output PNG, written atomically; parent directories are created.
    title : str
        Figure title.
    threshold : float, optional
        The risk cut-off used to form the groups, shown in the subtitle when given.
    step : float, optional
        At-risk table spacing in months (see :func:`km_summary`).

    Returns
    -------
    dict
        :func:`km_summary`'s numbers plus ``path`` (:class:`~pathlib.Path`), ``threshold`` and
        ``title``.  The PNG's ``Title`` / ``Description`` text chunks hold the title and the p-value.
    """
    path = Path(path)
    info = km_summary(time, event, high_risk, step=step)
    t, e, high = _km_inputs(time, event, high_risk)

    fig = _figure(KM_FIGSIZE)
    gs = fig.add_gridspec(2, 1, height_ratios=(4.0, 1.0), hspace=0.32, left=0.15, right=0.97, top=0.88, bottom=0.06)
    ax = fig.add_subplot(gs[0])
    tab = fig.add_subplot(gs[1], sharex=ax)

    subtitle = f"log-rank p = {info['p_text']}"
    if threshold is not None and math.isfinite(float(threshold)):
        subtitle += f"  |  risk threshold = {float(threshold):.4g}"
    groups = (
        (True, "High risk", HIGH_RISK_COLOR, info["n_high"], info["events_high"]),
        (False, "Low risk", LOW_RISK_COLOR, info["n_low"], info["events_low"]),
    )
    for flag, name, color, size, deaths in groups:
        mask = high == flag
        label = f"{name} (n={size}, deaths={deaths})"
        if size == 0:
            ax.plot([], [], color=color, label=f"{name} (n=0, no cases)")
            continue
        _draw_km_group(ax, t[mask], e[mask], color, label)
    ax.plot([], [], linestyle="none", label=f"log-rank p = {info['p_text']}")

    at_times = info["at_risk_times"]
    x_max = max(float(at_times[-1]), info["max_time"]) * 1.03
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(-0.02, 1.03)
    ax.set_xticks(at_times)
    ax.set_xlabel("Time (months)")
    ax.set_ylabel("Survival probability")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=9, frameon=True)
    ax.set_title(subtitle, fontsize=10)
    fig.suptitle(title, fontsize=13)

    # at-risk table: one row per group, counts centred on the tick positions
    for row, (_flag, _name, color, _size, _d), counts in zip(
        (1, 0), groups, (info["at_risk_high"], info["at_risk_low"]), strict=True
    ):
        for x, c in zip(at_times, counts, strict=True):
            tab.text(x, row, str(int(c)), ha="center", va="center", fontsize=9, color=color)
    tab.set_ylim(-0.6, 1.6)
    tab.set_yticks([1, 0], ["High risk", "Low risk"])
    for lab, color in zip(tab.get_yticklabels(), (HIGH_RISK_COLOR, LOW_RISK_COLOR), strict=True):
        lab.set_color(color)
    tab.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    tab.tick_params(axis="y", length=0, pad=24)
    for spine in tab.spines.values():
        spine.set_visible(False)
    tab.set_title("Number at risk", fontsize=9, loc="left")

    _save_figure(
        fig,
        path,
        {
            "Title": title,
            "Description": (
                f"log-rank p = {info['p_text']}; n_high={info['n_high']}; n_low={info['n_low']}; "
                f"events_high={info['events_high']}; events_low={info['events_low']}"
            ),
            "Software": "survpgc",
        },
    )
    log.debug("wrote %s (p = %s)", path, info["p_text"])
    return {**info, "path": path, "threshold": None if threshold is None else float(threshold), "title": title}


def km_for_model(
    predictions: pd.DataFrame,
    model: str,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    step: float | None = None,
) -> dict[str, Any]:
    """Kaplan-Meier plot of one model's pooled test predictions, grouped without test leakage.

    For each fold, the cut-off is the **median of that fold's training-part risks** (rows with
    ``split == "train"``); that fold's test rows (``split == "test"``) with ``risk > cut-off`` are high risk
    (ties go to low risk, as :func:`~survpgc.survival.stats.median_risk_groups`).  The test rows of all
    folds are then pooled into one :func:`km_plot`.  Validation rows are not used.  Using the training
    median keeps the grouping a genuine out-of-sample prediction: the test fold's own median would force
    a 50/50 split that depends on the test risks.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``model, fold, split, time, event, risk`` (others ignored), as in ``predictions.csv``.
    model : str
        The model to plot.
    path : path-like
        Output PNG.
    title : str, optional
        Default ``"<model>: test predictions, high vs low risk"``.
    step : float, optional
        At-risk table spacing (months).

    Returns
    -------
    dict
        :func:`km_plot`'s dict plus ``thresholds`` (``{fold: cut-off}``) and ``groups``: a DataFrame of
        the pooled test rows (``case_id`` when present, ``fold, time, event, risk, threshold, high_risk``).

    Raises
    ------
    InputError
        Missing columns, unknown model, no test rows, or a fold with test rows but no training rows.
    """
    import pandas as pd

    required = {"model", "fold", "split", "time", "event", "risk"}
    missing = required.difference(predictions.columns)
    if missing:
        raise InputError(f"`predictions` lacks column(s) {sorted(missing)}; it needs {sorted(required)}")
    rows = predictions[predictions["model"].astype(str) == str(model)]
    if rows.empty:
        models = sorted(predictions["model"].astype(str).unique())
        raise InputError(f"no predictions for model {model!r}; models present: {models}")
    split = rows["split"].astype(str)
    test = rows[split == "test"]
    if test.empty:
        raise InputError(f"model {model!r} has no test predictions (split == 'test')")
    parts = []
    thresholds: dict[Any, float] = {}
    for fold, fold_test in test.groupby("fold", sort=True):
        train = rows[(split == "train") & (rows["fold"] == fold)]
        if train.empty:
            raise InputError(
                f"model {model!r}, fold {fold!r}: no training predictions (split == 'train'); the risk "
                "cut-off is the median of the training-part risks, so they are needed"
            )
        train_risk = check_risk(train["risk"].to_numpy(), name="training risk")
        test_risk = check_risk(fold_test["risk"].to_numpy(), name="test risk")
        thr = float(np.median(train_risk))
        groups = median_risk_groups(test_risk, threshold=thr)
        thresholds[fold] = thr
        cols = [c for c in ("case_id", "fold", "time", "event", "risk") if c in fold_test.columns]
        part = fold_test[cols].copy()
        part["threshold"] = thr
        part["high_risk"] = groups.high_risk
        parts.append(part)
    pooled = pd.concat(parts, ignore_index=True)
    if title is None:
        title = f"{model}: test predictions, high vs low risk"
    info = km_plot(
        pooled["time"].to_numpy(dtype=np.float64),
        pooled["event"].to_numpy().astype(bool),
        pooled["high_risk"].to_numpy(dtype=bool),
        path,
        title=title,
        step=step,
    )
    info["thresholds"] = thresholds
    info["groups"] = pooled
    info["threshold_rule"] = "median of each fold's training-part risks"
    return info


# --------------------------------------------------------------------------------------------------
# forest plot
# --------------------------------------------------------------------------------------------------
def _row_labels(df: pd.DataFrame) -> list[str]:
    models = df["model"].astype(str).tolist()
    if "protocol" in df.columns and len(set(models)) < len(models):
        return [f"{m} ({p})" for m, p in zip(models, df["protocol"].astype(str), strict=True)]
    return models


def forest_plot(
    table: pd.DataFrame,
    path: str | os.PathLike[str],
    metric: str = "cindex",
    reference_line: float | None = 0.5,
    *,
    extra_points: Mapping[str, Mapping[str, float] | float] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
) -> dict[str, Any]:
    """Forest-style plot of one metric across models: mean ± sd per model, best at the top.

    Parameters
    ----------
    table : pandas.DataFrame
        Either ``summary`` (one row per model with ``<metric>_mean`` and optionally ``<metric>_sd``) or
        ``metrics`` (one row per model and fold with a ``<metric>`` column): then each fold is drawn as a
        small grey point and the mean ± sd (ddof = 1) is computed from the folds.  When a model appears
        more than once and a ``protocol`` column exists, rows are labelled ``"model (protocol)"``.
    path : path-like
        Output PNG.
    metric : str
        Default ``"cindex"``.  Rows are sorted by mean, best first (lowest first for ``ibs``); NaN means last.
    reference_line : float or None
        A dotted vertical line (0.5 = random ranking for a C-index); ``None`` for none.
    extra_points : mapping, optional
        ``{legend label: {model: value}}`` draws the values as distinct markers on the rows of those models
        (e.g. the paper's Table 1), ``{legend label: value}`` a dashed vertical line (e.g. the oracle
        C-index).  Models not in ``table`` are skipped with a log message.
    title, xlabel : str, optional
        Default title ``"<metric> across models (mean ± sd)"``.

    Returns
    -------
    dict
        ``path``, ``labels`` (top to bottom), ``mean``, ``sd`` (arrays in that order), ``source``
        (``"summary"`` or ``"metrics"``).
    """
    import pandas as pd

    if "model" not in table.columns:
        raise InputError("`table` needs a `model` column")
    fold_values: list[np.ndarray] | None = None
    if f"{metric}_mean" in table.columns:
        source = "summary"
        df = table.reset_index(drop=True)
        labels = _row_labels(df)
        means = pd.to_numeric(df[f"{metric}_mean"], errors="coerce").to_numpy(dtype=np.float64)
        sd_col = f"{metric}_sd"
        sds = (
            pd.to_numeric(df[sd_col], errors="coerce").to_numpy(dtype=np.float64)
            if sd_col in df.columns
            else np.full(len(df), np.nan)
        )
        models = df["model"].astype(str).tolist()
    elif metric in table.columns:
        source = "metrics"
        keys = ["model", "protocol"] if "protocol" in table.columns else ["model"]
        values = table.assign(_v=pd.to_numeric(table[metric], errors="coerce"))
        grouped = list(values.groupby(keys, sort=False))
        firsts = pd.DataFrame([dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)) for k, _ in grouped])
        labels = _row_labels(firsts) if len(firsts) else []
        models = firsts["model"].astype(str).tolist() if len(firsts) else []
        fold_values = [g["_v"].to_numpy(dtype=np.float64) for _, g in grouped]
        means = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in fold_values])
        sds = np.array([np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else np.nan for v in fold_values])
    else:
        raise InputError(f"`table` has neither `{metric}_mean` (summary) nor `{metric}` (per-fold metrics)")

    lower_better = metric in LOWER_IS_BETTER
    key = np.where(np.isnan(means), np.inf, means if lower_better else -means)
    order = np.argsort(key, kind="stable")
    labels = [labels[i] for i in order]
    models = [models[i] for i in order]
    means, sds = means[order], sds[order]
    if fold_values is not None:
        fold_values = [fold_values[i] for i in order]

    n_rows = len(labels)
    fig = _figure((7.5, 1.6 + 0.45 * max(n_rows, 1)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n_rows)[::-1].astype(np.float64)  # first (best) row at the top
    if fold_values is not None:
        for yi, vals in zip(y, fold_values, strict=True):
            finite = vals[np.isfinite(vals)]
            jitter = np.linspace(-0.12, 0.12, finite.shape[0]) if finite.shape[0] > 1 else np.zeros(finite.shape[0])
            ax.plot(finite, yi + jitter, linestyle="none", marker="o", markersize=4, color="0.6", zorder=2)
        ax.plot([], [], linestyle="none", marker="o", markersize=4, color="0.6", label="per fold")
    ok = np.isfinite(means)
    ax.errorbar(
        means[ok],
        y[ok],
        xerr=np.where(np.isfinite(sds[ok]), sds[ok], 0.0),
        fmt="o",
        color="black",
        ecolor="black",
        capsize=4,
        markersize=7,
        zorder=3,
        label="mean ± sd",
    )
    for yi, m, s in zip(y, means, sds, strict=True):
        if np.isfinite(m):
            text = f"{m:.3f}" + (f" ± {s:.3f}" if np.isfinite(s) else "")
            ax.annotate(text, (m, yi), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
    if reference_line is not None:
        ax.axvline(float(reference_line), color="0.4", linestyle=":", linewidth=1.2, zorder=1)
    for i, (label, spec) in enumerate((extra_points or {}).items()):
        marker = _EXTRA_MARKERS[i % len(_EXTRA_MARKERS)]
        color = _EXTRA_COLORS[i % len(_EXTRA_COLORS)]
        if isinstance(spec, Mapping):
            xs, ys = [], []
            for name, value in spec.items():
                rows = [j for j, (m, lab) in enumerate(zip(models, labels, strict=True)) if str(name) in (m, lab)]
                if not rows:
                    log.info("forest_plot: extra point %r for unknown model %r skipped", label, name)
                    continue
                for j in rows:
                    xs.append(float(value))
                    ys.append(y[j])
            ax.plot(xs, ys, linestyle="none", marker=marker, markersize=8, color=color, label=str(label), zorder=4)
        else:
            ax.axvline(float(spec), color=color, linestyle="--", linewidth=1.4, label=f"{label} ({float(spec):.3f})")
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, n_rows - 0.3)
    ax.grid(True, axis="x", alpha=0.3)
    for yi, m in zip(y, means, strict=True):
        if not np.isfinite(m):
            ax.annotate("n/a", (0.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8, color="0.4")
    name = METRIC_LABELS.get(metric, metric)
    ax.set_xlabel(xlabel or name)
    ax.set_title(title or f"{name} across models (mean ± sd)")
    ax.legend(loc="best", fontsize=8)
    path = Path(path)
    _save_figure(fig, path, {"Title": title or f"{metric} across models", "Software": "survpgc"})
    return {"path": path, "labels": labels, "mean": means, "sd": sds, "source": source}
