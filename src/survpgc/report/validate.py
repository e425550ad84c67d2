"""The report of an external validation (``survpgc validate``): plots and one self-contained ``report.html``.

Same look as the cross-validation report (the same stylesheet and block templates, autoescaped Jinja2, images
inlined): the validation cohort, a metrics table per bundle (C-indices with bootstrap intervals, AUCs, IBS,
log-rank and calibration p-values), the paired comparisons, Kaplan-Meier curves by each bundle's *training*
risk cutoff, calibration plots and tables at each time, the D-calibration bins, and each bundle's model card.
Bundles validated on their own training cohort carry an "apparent performance" warning.

Everything is drawn from the tables :mod:`survpgc.deploy.validate` wrote; nothing is recomputed here.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from survpgc.eval.registry import auc_key
from survpgc.files import atomic_write_text, safe_name
from survpgc.report.blocks import Block, Cell, Grid, Heading, Paragraph, figure, is_missing, num, table
from survpgc.report.plots import format_p_value
from survpgc.report.templating import render

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["calibration_plot", "render_validation_report", "write_validation_report"]

log = logging.getLogger(__name__)

_CAL_FIGSIZE_PER_PANEL = (4.2, 4.4)


# ------------------------------------------------------------------------------------------------ plots
def calibration_plot(
    calibration: pd.DataFrame, path: str | os.PathLike[str], *, title: str, summaries: Mapping[float, str] | None = None
) -> dict[str, Any]:
    """Predicted vs observed survival, one panel per time: each group's mean predicted ``S(t)`` (x) against its
    Kaplan-Meier ``S(t)`` (y) with the 95 % interval, and the diagonal of perfect calibration.

    ``calibration`` holds one model's rows of ``calibration.csv`` (``time, predicted, observed, observed_low,
    observed_high, n``); ``summaries`` an optional subtitle per time (e.g. the test's p-value). Returns
    ``{"path", "times", "n_points"}``.
    """
    from survpgc.report.plots import _figure, _save_figure

    times = sorted(float(t) for t in calibration["time"].unique())
    n = max(len(times), 1)
    fig = _figure((_CAL_FIGSIZE_PER_PANEL[0] * n, _CAL_FIGSIZE_PER_PANEL[1]), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    points = 0
    for ax, t in zip(axes, times or [float("nan")], strict=False):
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1.0, label="perfect calibration")
        rows = calibration[calibration["time"].astype(float) == t]
        ok = rows["observed"].notna().to_numpy()
        x = rows["predicted"].to_numpy(float)[ok]
        y = rows["observed"].to_numpy(float)[ok]
        lo = rows["observed_low"].to_numpy(float)[ok]
        hi = rows["observed_high"].to_numpy(float)[ok]
        ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="o", color="#0f4c5c", ecolor="#0f4c5c",
                    capsize=3, markersize=5, label="group: KM (95 % CI)")  # fmt: skip
        points += int(ok.sum())
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(f"Predicted S({t:g} mo)")
        ax.set_ylabel(f"Observed S({t:g} mo), Kaplan-Meier")
        sub = (summaries or {}).get(t, "")
        ax.set_title(f"{t:g} months" + (f"\n{sub}" if sub else ""), fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=12)
    path = Path(path)
    _save_figure(fig, path, {"Title": title, "Software": "survpgc"})
    return {"path": path, "times": times, "n_points": points}


def _draw(root: Path, metrics: pd.DataFrame, calibration: pd.DataFrame, predictions: pd.DataFrame):
    """KM and calibration plots per model under ``root/plots``; returns ``{model: {"km": path, "cal": path}}``."""
    from survpgc.report.plots import km_plot

    out: dict[str, dict[str, Path]] = {}
    for _, r in metrics.iterrows():
        model = str(r["model"])
        out[model] = {}
        p = predictions[predictions["model"].astype(str) == model]
        cutoff = float(r["risk_cutoff"])
        try:
            path = root / "plots" / f"km_{safe_name(model)}.png"
            km_plot(p["time"].to_numpy(float), p["event"].to_numpy(bool), p["risk"].to_numpy(float) > cutoff, path,
                    title=f"{model}: high vs low risk (training cutoff)", threshold=cutoff)  # fmt: skip
            out[model]["km"] = path
        except Exception as exc:  # a plot must never sink a finished validation
            log.warning("KM plot for %s failed: %s", model, exc)
        rows = calibration[calibration["model"].astype(str) == model]
        if len(rows):
            summaries = {}
            for t in rows["time"].unique():
                key = f"{float(t):g}"
                summaries[float(t)] = (
                    f"GND p = {format_p_value(r.get(f'cal_p_{key}'))}, O/E = {num(r.get(f'oe_{key}'), 2)}"
                )
            try:
                path = root / "plots" / f"calibration_{safe_name(model)}.png"
                calibration_plot(rows, path, title=f"{model}: calibration", summaries=summaries)
                out[model]["cal"] = path
            except Exception as exc:
                log.warning("calibration plot for %s failed: %s", model, exc)
    return out


# ------------------------------------------------------------------------------------------------ blocks
def _ci(est: Any, lo: Any, hi: Any) -> str:
    if is_missing(est):
        return "n/a"
    if is_missing(lo) or is_missing(hi):
        return num(est)
    return f"{num(est)} [{num(lo)}, {num(hi)}]"


def _metrics_blocks(metrics: pd.DataFrame, times: Sequence[float]) -> list[Block]:
    aucs = [t for t in times if auc_key(t) in metrics.columns]
    header = ["Model", "Cases", "Deaths", "C-index (Harrell) [95 % CI]", "C-index (Uno) [95 % CI]"]
    header += [f"AUC {t:g} mo" for t in aucs] + ["iAUC", "IBS ↓", "Log-rank p (training cutoff)", "D-calibration p"]
    rows = []
    for _, r in metrics.iterrows():
        apparent = bool(r.get("apparent", False))
        k, n = r.get("n_training_cases"), r.get("n_cases")
        part = not is_missing(k) and not is_missing(n) and 0 < int(k) < int(n)
        badge = f"{r['model']} · apparent ({int(k)} of {int(n)} cases)" if part else f"{r['model']} · apparent"
        row: list[str | Cell] = [
            Cell(badge, badge=True) if apparent else Cell(str(r["model"])),
            num(r.get("n_cases")),
            num(r.get("n_events")),
            _ci(r.get("cindex"), r.get("cindex_low"), r.get("cindex_high")),
            _ci(r.get("cindex_uno"), r.get("cindex_uno_low"), r.get("cindex_uno_high")),
        ]
        row += [num(r.get(auc_key(t))) for t in aucs]
        row += [num(r.get("iauc")), num(r.get("ibs")), format_p_value(r.get("logrank_p")),
                format_p_value(r.get("dcal_p"))]  # fmt: skip
        rows.append(row)
    numeric = [False] + [True] * (len(header) - 1)
    note = Paragraph(
        (
            "Percentile bootstrap 95 % intervals (cases resampled with replacement). Uno's C, the AUCs and the "
            "IBS weight cases by the censoring distribution of this cohort (Kaplan–Meier of the censoring times). "
            "IBS: the predicted curves read as step functions at the bundle's bin edges, as in cross-validation. "
            "Risk groups use each bundle's training cutoff (median training risk). D-calibration: Haider et al. "
            "2020, 10 bins, p > 0.05 = no evidence of miscalibration.",
        ),
        "meta",
    )
    return [table(header, rows, numeric=numeric, css_class="metrics"), note]


def _comparison_blocks(comparisons: pd.DataFrame) -> list[Block]:
    if comparisons is None or not len(comparisons):
        return [Paragraph(("No comparison (a single bundle, or no bootstrap).",), "empty")]
    rows = []
    for _, r in comparisons.iterrows():
        d = "n/a" if is_missing(r["delta_cindex"]) else f"{float(r['delta_cindex']):+.3f}"
        ci = f"[{float(r['ci_low']):+.3f}, {float(r['ci_high']):+.3f}]"
        rows.append([str(r["model"]), str(r["reference"]), d, ci, format_p_value(r["p_value"])])
    return [
        table(["Model", "Reference", "ΔC-index", "95 % CI", "p"], rows, numeric=[False, False, True, True, True]),
        Paragraph(
            (
                "Paired bootstrap on this cohort: cases resampled with replacement, the same resamples for both "
                "bundles; ΔC = C(model) − C(reference), Harrell's C; two-sided bootstrap p.",
            ),
            "meta",
        ),
    ]


def _calibration_blocks(
    metrics: pd.DataFrame,
    calibration: pd.DataFrame,
    dcal: Mapping[str, Sequence[float] | None],
    plots: Mapping[str, Mapping[str, Path]],
) -> list[Block]:
    blocks: list[Block] = [
        Paragraph(
            (
                "At each time, cases are grouped by predicted survival S(t) (up to 10 groups of equal size, "
                "lowest predicted survival first; adjacent groups merged until each has at least 5 deaths by t). "
                "Predicted: the group's mean S(t) (the curve read as a step function at the bin edges, as the "
                "S_12/S_36/S_60 columns of `survpgc predict`); observed: the group's Kaplan–Meier S(t) with its "
                "95 % interval. GND: Greenwood–Nam–D'Agostino chi-square (Demler et al. 2015), one degree of "
                "freedom per group. O/E: observed / expected deaths by t (1 = calibrated). ICI: group-size "
                "weighted mean |observed − predicted|.",
            ),
            "meta",
        )
    ]
    for _, r in metrics.iterrows():
        model = str(r["model"])
        blocks.append(Heading(model))
        if "cal" in plots.get(model, {}):
            blocks.append(figure(f"Calibration: {model}", plots[model]["cal"]))
        rows = calibration[calibration["model"].astype(str) == model]
        summary = []
        for t in sorted(rows["time"].unique()):
            key = f"{float(t):g}"
            summary.append([f"{key} months", num(int((rows["time"] == t).sum())), format_p_value(r.get(f"cal_p_{key}")),
                            num(r.get(f"oe_{key}"), 2), num(r.get(f"ici_{key}"))])  # fmt: skip
        if summary:
            blocks.append(table(["Time", "Groups", "GND p", "O/E", "ICI"], summary,
                                numeric=[False, True, True, True, True]))  # fmt: skip
            detail = [
                [f"{float(g.time):g}", num(int(g.group)), num(int(g.n)), num(int(g.deaths)),
                 f"{num(g.predicted)} ({num(g.predicted_min)}–{num(g.predicted_max)})",
                 _ci(g.observed, g.observed_low, g.observed_high)]
                for g in rows.itertuples(index=False)
            ]  # fmt: skip
            from survpgc.report.blocks import Details

            blocks.append(
                Details(
                    f"Calibration groups ({len(detail)} rows)",
                    (
                        table(
                            [
                                "Time (mo)",
                                "Group",
                                "Cases",
                                "Deaths by t",
                                "Predicted S(t) (range)",
                                "Observed S(t) [95 % CI]",
                            ],
                            detail,
                            numeric=[True] * 4 + [False, False],
                        ),
                    ),
                )
            )
        else:
            blocks.append(Paragraph(("No time inside the follow-up: no calibration table.",), "empty"))
        counts = dcal.get(model)
        if counts:
            n = float(np.sum(counts))
            exp = n / len(counts)
            k = len(counts)
            bins = [f"[{i / k:.1f}, {(i + 1) / k:.1f}{']' if i == k - 1 else ')'}" for i in range(k)]
            blocks.append(
                table(
                    ["D-calibration bin of S(t_i)", *bins],
                    [["cases (expected " + num(exp, 1) + ")", *[num(c, 1) for c in counts]]],
                    numeric=[False] + [True] * k,
                )
            )
            blocks.append(
                Paragraph(
                    (
                        f"D-calibration p = {format_p_value(r.get('dcal_p'))} (chi-square, {k - 1} df). Each case's "
                        "predicted survival at its own observed time (constant hazard within each bin); a censored "
                        "case spread over its bin and the lower ones (Haider et al. 2020).",
                    ),
                    "meta",
                )
            )
    return blocks


def _km_blocks(metrics: pd.DataFrame, plots: Mapping[str, Mapping[str, Path]]) -> list[Block]:
    figs = [figure(f"Kaplan-Meier: {m}", p["km"], css_class="km") for m, p in plots.items() if "km" in p]
    if not figs:
        return [Paragraph(("No Kaplan–Meier plot.",), "empty")]
    rows = [
        [str(r["model"]), num(r["risk_cutoff"], 4), num(r["n_high"]), num(r["events_high"]), num(r["n_low"]),
         num(r["events_low"]), format_p_value(r["logrank_p"])]
        for _, r in metrics.iterrows()
    ]  # fmt: skip
    return [
        Paragraph(
            (
                "High risk: risk above the bundle's cutoff, the median risk of its training cases (fixed at "
                "training; nothing refitted on this cohort).",
            ),
            "meta",
        ),
        table(
            ["Model", "Cutoff", "High", "Deaths high", "Low", "Deaths low", "Log-rank p"],
            rows,
            numeric=[False] + [True] * 6,
        ),
        Grid(tuple(figs)),
    ]


def _overview(summary: Mapping[str, Any] | None, metrics: pd.DataFrame, times, n_bootstrap, created) -> list[Block]:
    from survpgc import __version__

    rows = [
        ("Validation cohort", str((summary or {}).get("name", "n/a"))),
        ("Generated", created),
        ("survpgc version", __version__),
        ("Evaluation times (months)", ", ".join(f"{t:g}" for t in times)),
        ("Bootstrap resamples", str(n_bootstrap)),
    ]
    rows += [(f"Bundle: {r['model']}", str(r.get("bundle", ""))) for _, r in metrics.iterrows()]
    return [table(["Item", "Value"], rows)]


# ------------------------------------------------------------------------------------------------ public
def render_validation_report(
    *,
    cohort_summary: Mapping[str, Any] | None,
    times: Sequence[float],
    n_bootstrap: int,
    metrics: pd.DataFrame,
    calibration: pd.DataFrame,
    comparisons: pd.DataFrame,
    plots: Mapping[str, Mapping[str, Path]],
    cards: Mapping[str, str],
    apparent: Mapping[str, str],
    dcal: Mapping[str, Sequence[float] | None],
    notes: Sequence[str] = (),
    created: str | None = None,
    title: str = "survpgc external validation report",
) -> str:
    """The report as an HTML string (see :func:`write_validation_report`)."""
    from survpgc import __version__
    from survpgc.report.html import _cohort_blocks as cohort_blocks

    if created is None:
        created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = [("validation", "Validation"), ("cohort", "Cohort"), ("metrics", "Metrics"), ("comparisons", "Comparisons"),
           ("km", "Risk groups"), ("calibration", "Calibration"), ("cards", "Model cards")]  # fmt: skip
    nav += [("notes", "Notes")] if notes else []
    return render(
        "validate.html.j2",
        version=__version__,
        title=title,
        created=created,
        cohort_name=str((cohort_summary or {}).get("name", "")),
        nav=nav,
        apparent=[(str(k), str(v)) for k, v in apparent.items()],
        overview=_overview(cohort_summary, metrics, times, n_bootstrap, created),
        cohort=cohort_blocks(cohort_summary),
        metrics=_metrics_blocks(metrics, times),
        comparisons=_comparison_blocks(comparisons),
        km=_km_blocks(metrics, plots),
        calibration=_calibration_blocks(metrics, calibration, dcal, plots),
        cards=[(str(k), str(v) or "(no model card in the bundle)") for k, v in cards.items()],
        notes=[str(n) for n in notes],
    )


def write_validation_report(
    root: str | os.PathLike[str],
    *,
    cohort_summary: Mapping[str, Any] | None,
    times: Sequence[float],
    n_bootstrap: int,
    metrics: pd.DataFrame,
    calibration: pd.DataFrame,
    comparisons: pd.DataFrame,
    predictions: pd.DataFrame,
    cards: Mapping[str, str],
    apparent: Mapping[str, str],
    dcal: Mapping[str, Sequence[float] | None],
    notes: Sequence[str] = (),
    created: str | None = None,
    filename: str = "report.html",
) -> Path:
    """Draw the KM and calibration plots under ``root/plots`` and write ``root/report.html`` atomically.

    ``metrics``, ``calibration``, ``comparisons``, ``predictions`` are the tables of the validation (one row per
    bundle; per bundle, time and group; per compared bundle; per bundle and case); ``cards`` each bundle's model
    card (Markdown, shown as text); ``apparent`` the bundles validated on their training cohort with the reason;
    ``dcal`` each bundle's D-calibration bin counts. Returns the report path.
    """
    root = Path(root)
    plots = _draw(root, metrics, calibration, predictions)
    page = render_validation_report(
        cohort_summary=cohort_summary, times=times, n_bootstrap=n_bootstrap, metrics=metrics, calibration=calibration,
        comparisons=comparisons, plots=plots, cards=cards, apparent=apparent, dcal=dcal, notes=notes, created=created,
    )  # fmt: skip
    path = atomic_write_text(root / filename, page)
    log.info("wrote %s (%d kB)", path, len(page) // 1024)
    return path
