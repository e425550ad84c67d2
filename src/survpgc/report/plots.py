"""Plots of a cross-validated run: Kaplan-Meier curves by predicted risk group and a forest plot of a metric.

Every function writes one PNG atomically (rendered in memory, written to a temporary file in the target
directory, then renamed) and returns a dict with the numbers it drew, so tests and reports can check them
without reading pixels.  Matplotlib is imported inside the functions, and figures are built with
:class:`matplotlib.figure.Figure` + the Agg canvas directly -- no global figure is drawn on.  The
Kaplan-Meier curves and the at-risk table are drawn by lifelines (:class:`lifelines.KaplanMeierFitter`,
:func:`lifelines.plotting.add_at_risk_counts`).

Survival convention: ``time`` months > 0, ``event`` True = death, ``risk`` higher = worse.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from survpgc.errors import InputError, LengthMismatchError, NoEventError
from survpgc.eval.registry import metric as metric_info
from survpgc.files import atomic_write_bytes
from survpgc.survival.convention import as_1d_array, check_risk, check_survival
from survpgc.survival.stats import logrank_test, median_risk_groups

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HIGH_RISK_COLOR",
    "LOW_RISK_COLOR",
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
    """Number of cases still followed after each ``t`` of ``at_times`` (``time > t``; int64).

    This is the count lifelines' at-risk table shows under a Kaplan-Meier plot (the number at risk at the
    end of each period); at ``t = 0`` it is every case, since survival times are positive.
    """
    t = np.sort(np.asarray(time, dtype=np.float64))
    q = np.asarray(at_times, dtype=np.float64)
    return (t.shape[0] - np.searchsorted(t, q, side="right")).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier by risk group
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Group:
    """One risk group of a KM plot: its flag in ``high_risk``, name, colour and the row key of the summary."""

    flag: bool
    name: str
    color: str
    key: str


_GROUPS = (_Group(True, "High risk", HIGH_RISK_COLOR, "high"), _Group(False, "Low risk", LOW_RISK_COLOR, "low"))


def _km_inputs(time: Any, event: Any, high_risk: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``time`` (float64), ``event`` (bool), ``high_risk`` (bool); no case at all is an error."""
    t, e = check_survival(time, event)
    return t, e, _as_bool_groups(high_risk, t.shape[0])


def _logrank(t: np.ndarray, e: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """Log-rank statistic and p of high vs low; NaN when undefined (an empty group or no death at all)."""
    if not (high.any() and (~high).any() and e.any()):
        return float("nan"), float("nan")
    try:
        statistic, p_value = logrank_test(t, e, high)
    except (NoEventError, InputError) as exc:  # pragma: no cover - guarded above
        log.warning("log-rank test not computable: %s", exc)
        return float("nan"), float("nan")
    return float(statistic), float(p_value)


def _check_step(step: float | None, max_time: float) -> float:
    if step is None:
        return _at_risk_step(max_time)
    if not (float(step) > 0 and math.isfinite(float(step))):
        raise InputError(f"`step` must be a positive number of months, got {step!r}")
    return float(step)


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
        float array), ``at_risk_high`` / ``at_risk_low`` (:func:`at_risk_counts` of each group: cases with
        ``time > t``, the numbers drawn under the plot), ``max_time``, ``step``.
    """
    t, e, high = _km_inputs(time, event, high_risk)
    statistic, p_value = _logrank(t, e, high)
    max_time = float(t.max())
    step = _check_step(step, max_time)
    at_times = step * np.arange(math.floor(max_time / step) + 1, dtype=np.float64)
    return {
        "n_high": int(high.sum()),
        "n_low": int((~high).sum()),
        "events_high": int(e[high].sum()),
        "events_low": int(e[~high].sum()),
        "statistic": statistic,
        "p_value": p_value,
        "p_text": format_p_value(p_value),
        "at_risk_times": at_times,
        "at_risk_high": at_risk_counts(t[high], at_times),
        "at_risk_low": at_risk_counts(t[~high], at_times),
        "max_time": max_time,
        "step": step,
    }


def _draw_km_curves(ax: Any, t: np.ndarray, e: np.ndarray, high: np.ndarray, info: Mapping[str, Any]) -> list:
    """One lifelines Kaplan-Meier curve per non-empty group (95 % band, ``|`` at censoring times); returns
    the fitters in group order.  An empty group gets a legend entry only."""
    from lifelines import KaplanMeierFitter

    fitters = []
    for g in _GROUPS:
        size, deaths = info[f"n_{g.key}"], info[f"events_{g.key}"]
        if size == 0:
            ax.plot([], [], color=g.color, label=f"{g.name} (n=0, no cases)")
            continue
        mask = high == g.flag
        kmf = KaplanMeierFitter(label=g.name).fit(t[mask], e[mask])
        kmf.plot_survival_function(
            ax=ax,
            ci_show=True,
            ci_alpha=0.18,
            show_censors=True,
            censor_styles={"marker": "|", "ms": 8, "mew": 1.2},
            color=g.color,
            linewidth=1.8,
            label=f"{g.name} (n={size}, deaths={deaths})",
        )
        fitters.append(kmf)
    ax.plot([], [], linestyle="none", label=f"log-rank p = {info['p_text']}")
    return fitters


def _style_km_axes(ax: Any, info: Mapping[str, Any], subtitle: str) -> None:
    at_times = info["at_risk_times"]
    ax.set_xlim(0.0, max(float(at_times[-1]), info["max_time"]) * 1.03)
    ax.set_ylim(-0.02, 1.03)
    ax.set_xticks(at_times)
    ax.set_xlabel("Time (months)")
    ax.set_ylabel("Survival probability")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=9, frameon=True)
    ax.set_title(subtitle, fontsize=10)


def _add_at_risk_table(fig: Any, ax: Any, fitters: list, info: Mapping[str, Any]) -> None:
    """lifelines' at-risk table under ``ax``, at the plot's ticks (:func:`km_summary`'s ``at_risk_times``)."""
    from lifelines.plotting import add_at_risk_counts

    add_at_risk_counts(
        *fitters, ax=ax, fig=fig, rows_to_show=["At risk"], xticks=list(info["at_risk_times"]), ypos=-0.6,
        fontsize=9,
    )  # fmt: skip


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

    One PNG (960 x 780 pixels): lifelines' product-limit curves with their 95 % pointwise confidence bands
    and ``|`` ticks at censoring times, the log-rank p-value (:func:`~survpgc.survival.stats.logrank_test`)
    in the legend and subtitle, and underneath lifelines' table of the numbers at risk every ``step`` months
    (the numbers of :func:`km_summary`).  An empty group is left out of the curves and of the table; a group
    without deaths is a flat line at 1; when the test is undefined the p-value reads ``n/a``.

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
    subtitle = f"log-rank p = {info['p_text']}"
    if threshold is not None and math.isfinite(float(threshold)):
        subtitle += f"  |  risk threshold = {float(threshold):.4g}"

    fig = _figure(KM_FIGSIZE)
    fig.subplots_adjust(left=0.2, right=0.96, top=0.88, bottom=0.25)
    ax = fig.add_subplot()
    fitters = _draw_km_curves(ax, t, e, high, info)
    _style_km_axes(ax, info, subtitle)
    _add_at_risk_table(fig, ax, fitters, info)
    fig.suptitle(title, fontsize=13)
    description = (
        f"log-rank p = {info['p_text']}; n_high={info['n_high']}; n_low={info['n_low']}; "
        f"events_high={info['events_high']}; events_low={info['events_low']}"
    )
    _save_figure(fig, path, {"Title": title, "Description": description, "Software": "survpgc"})
    log.debug("wrote %s (p = %s)", path, info["p_text"])
    return {**info, "path": path, "threshold": None if threshold is None else float(threshold), "title": title}


def _model_rows(predictions: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows of ``model`` in ``predictions``, after checking the columns and that it has test rows."""
    required = {"model", "fold", "split", "time", "event", "risk"}
    missing = required.difference(predictions.columns)
    if missing:
        raise InputError(f"`predictions` lacks column(s) {sorted(missing)}; it needs {sorted(required)}")
    rows = predictions[predictions["model"].astype(str) == str(model)]
    if rows.empty:
        models = sorted(predictions["model"].astype(str).unique())
        raise InputError(f"no predictions for model {model!r}; models present: {models}")
    if not (rows["split"].astype(str) == "test").any():
        raise InputError(f"model {model!r} has no test predictions (split == 'test')")
    return rows


def _fold_groups(rows: pd.DataFrame, model: str, fold: Any) -> pd.DataFrame:
    """The test rows of one fold with ``threshold`` (median training risk of the fold) and ``high_risk``."""
    split = rows["split"].astype(str)
    in_fold = rows["fold"] == fold
    train, test = rows[(split == "train") & in_fold], rows[(split == "test") & in_fold]
    if train.empty:
        raise InputError(
            f"model {model!r}, fold {fold!r}: no training predictions (split == 'train'); the risk "
            "cut-off is the median of the training-part risks, so they are needed"
        )
    thr = float(np.median(check_risk(train["risk"].to_numpy(), name="training risk")))
    groups = median_risk_groups(check_risk(test["risk"].to_numpy(), name="test risk"), threshold=thr)
    part = test[[c for c in ("case_id", "fold", "time", "event", "risk") if c in test.columns]].copy()
    part["threshold"] = thr
    part["high_risk"] = groups.high_risk
    return part


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

    rows = _model_rows(predictions, model)
    test_folds = sorted(rows.loc[rows["split"].astype(str) == "test", "fold"].unique().tolist())
    pooled = pd.concat([_fold_groups(rows, model, f) for f in test_folds], ignore_index=True)
    info = km_plot(
        pooled["time"].to_numpy(dtype=np.float64),
        pooled["event"].to_numpy().astype(bool),
        pooled["high_risk"].to_numpy(dtype=bool),
        path,
        title=f"{model}: test predictions, high vs low risk" if title is None else title,
        step=step,
    )
    info["thresholds"] = dict(zip(pooled["fold"], pooled["threshold"], strict=True))
    info["groups"] = pooled
    info["threshold_rule"] = "median of each fold's training-part risks"
    return info


# --------------------------------------------------------------------------------------------------
# forest plot
# --------------------------------------------------------------------------------------------------
@dataclass
class _ForestRows:
    """The rows of a forest plot: labels, model names, mean and sd per row, the per-fold values when drawn
    from a per-fold table, and which table it was (``"summary"`` or ``"metrics"``)."""

    labels: list[str]
    models: list[str]
    means: np.ndarray
    sds: np.ndarray
    fold_values: list[np.ndarray] | None
    source: str

    def ordered(self, higher_is_better: bool) -> _ForestRows:
        """Best mean first; NaN means last (stable)."""
        key = np.where(np.isnan(self.means), np.inf, -self.means if higher_is_better else self.means)
        order = np.argsort(key, kind="stable")
        folds = None if self.fold_values is None else [self.fold_values[i] for i in order]
        return _ForestRows(
            [self.labels[i] for i in order], [self.models[i] for i in order], self.means[order], self.sds[order],
            folds, self.source,
        )  # fmt: skip


def _row_labels(df: pd.DataFrame) -> list[str]:
    models = df["model"].astype(str).tolist()
    if "protocol" in df.columns and len(set(models)) < len(models):
        return [f"{m} ({p})" for m, p in zip(models, df["protocol"].astype(str), strict=True)]
    return models


def _forest_from_summary(table: pd.DataFrame, metric: str) -> _ForestRows:
    import pandas as pd

    df = table.reset_index(drop=True)
    means = pd.to_numeric(df[f"{metric}_mean"], errors="coerce").to_numpy(dtype=np.float64)
    sd_col = f"{metric}_sd"
    sds = (
        pd.to_numeric(df[sd_col], errors="coerce").to_numpy(dtype=np.float64)
        if sd_col in df.columns
        else np.full(len(df), np.nan)
    )
    return _ForestRows(_row_labels(df), df["model"].astype(str).tolist(), means, sds, None, "summary")


def _forest_from_metrics(table: pd.DataFrame, metric: str) -> _ForestRows:
    import pandas as pd

    keys = ["model", "protocol"] if "protocol" in table.columns else ["model"]
    values = table.assign(_v=pd.to_numeric(table[metric], errors="coerce"))
    grouped = list(values.groupby(keys, sort=False))
    firsts = pd.DataFrame([dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)) for k, _ in grouped])
    fold_values = [g["_v"].to_numpy(dtype=np.float64) for _, g in grouped]
    means = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in fold_values])
    sds = np.array([np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else np.nan for v in fold_values])
    labels = _row_labels(firsts) if len(firsts) else []
    models = firsts["model"].astype(str).tolist() if len(firsts) else []
    return _ForestRows(labels, models, means, sds, fold_values, "metrics")


def _draw_forest_rows(ax: Any, y: np.ndarray, rows: _ForestRows) -> None:
    """Per-fold points (grey), mean ± sd bars with their values, and ``n/a`` for rows without a mean."""
    if rows.fold_values is not None:
        for yi, vals in zip(y, rows.fold_values, strict=True):
            finite = vals[np.isfinite(vals)]
            jitter = np.linspace(-0.12, 0.12, finite.shape[0]) if finite.shape[0] > 1 else np.zeros(finite.shape[0])
            ax.plot(finite, yi + jitter, linestyle="none", marker="o", markersize=4, color="0.6", zorder=2)
        ax.plot([], [], linestyle="none", marker="o", markersize=4, color="0.6", label="per fold")
    means, sds = rows.means, rows.sds
    ok = np.isfinite(means)
    xerr = np.where(np.isfinite(sds[ok]), sds[ok], 0.0)
    ax.errorbar(means[ok], y[ok], xerr=xerr, fmt="o", color="black", ecolor="black", capsize=4, markersize=7,
                zorder=3, label="mean ± sd")  # fmt: skip
    for yi, m, s in zip(y, means, sds, strict=True):
        if np.isfinite(m):
            text = f"{m:.3f}" + (f" ± {s:.3f}" if np.isfinite(s) else "")
            ax.annotate(text, (m, yi), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        else:
            ax.annotate("n/a", (0.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8, color="0.4")


def _draw_extra_points(
    ax: Any, y: np.ndarray, rows: _ForestRows, extra_points: Mapping[str, Mapping[str, float] | float]
) -> None:
    """Reference values: per model as distinct markers on its rows, or one value as a dashed line."""
    for i, (label, spec) in enumerate(extra_points.items()):
        marker, color = _EXTRA_MARKERS[i % len(_EXTRA_MARKERS)], _EXTRA_COLORS[i % len(_EXTRA_COLORS)]
        if not isinstance(spec, Mapping):
            ax.axvline(float(spec), color=color, linestyle="--", linewidth=1.4, label=f"{label} ({float(spec):.3f})")
            continue
        xs, ys = [], []
        for name, value in spec.items():
            hits = [j for j, (m, lab) in enumerate(zip(rows.models, rows.labels, strict=True)) if str(name) in (m, lab)]
            if not hits:
                log.info("forest_plot: extra point %r for unknown model %r skipped", label, name)
            xs += [float(value)] * len(hits)
            ys += [y[j] for j in hits]
        ax.plot(xs, ys, linestyle="none", marker=marker, markersize=8, color=color, label=str(label), zorder=4)


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
        A metric key (:func:`survpgc.eval.registry.metric` gives its label and direction); default
        ``"cindex"``.  Rows are sorted by mean, best first (lowest first where lower is better, e.g.
        ``ibs``); NaN means last.
    reference_line : float or None
        A dotted vertical line (0.5 = random ranking for a C-index); ``None`` for none.
    extra_points : mapping, optional
        ``{legend label: {model: value}}`` draws the values as distinct markers on the rows of those models
        (e.g. the paper's Table 1), ``{legend label: value}`` a dashed vertical line (e.g. the oracle
        C-index).  Models not in ``table`` are skipped with a log message.
    title, xlabel : str, optional
        Default title ``"<metric label> across models (mean ± sd)"``.

    Returns
    -------
    dict
        ``path``, ``labels`` (top to bottom), ``mean``, ``sd`` (arrays in that order), ``source``
        (``"summary"`` or ``"metrics"``).
    """
    if "model" not in table.columns:
        raise InputError("`table` needs a `model` column")
    if f"{metric}_mean" in table.columns:
        rows = _forest_from_summary(table, metric)
    elif metric in table.columns:
        rows = _forest_from_metrics(table, metric)
    else:
        raise InputError(f"`table` has neither `{metric}_mean` (summary) nor `{metric}` (per-fold metrics)")
    info = metric_info(metric)
    rows = rows.ordered(info.higher_is_better)

    n_rows = len(rows.labels)
    fig = _figure((7.5, 1.6 + 0.45 * max(n_rows, 1)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n_rows)[::-1].astype(np.float64)  # first (best) row at the top
    _draw_forest_rows(ax, y, rows)
    if reference_line is not None:
        ax.axvline(float(reference_line), color="0.4", linestyle=":", linewidth=1.2, zorder=1)
    _draw_extra_points(ax, y, rows, extra_points or {})
    ax.set_yticks(y, rows.labels)
    ax.set_ylim(-0.7, n_rows - 0.3)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel(xlabel or info.label)
    ax.set_title(title or f"{info.label} across models (mean ± sd)")
    ax.legend(loc="best", fontsize=8)
    path = Path(path)
    _save_figure(fig, path, {"Title": title or f"{metric} across models", "Software": "survpgc"})
    return {"path": path, "labels": rows.labels, "mean": rows.means, "sd": rows.sds, "source": rows.source}
