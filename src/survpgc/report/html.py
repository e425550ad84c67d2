"""The self-contained HTML report of a cross-validated run (``report.html``).

One file, nothing fetched: CSS is inline, images are inlined as base64 ``data:`` URIs, there is no
JavaScript (collapsible parts use ``<details>``).  The page can be mailed or archived as is.

The sections are built as data (:mod:`survpgc.report.blocks`) and rendered by the Jinja2 templates under
``templates/`` with autoescaping: every string that comes from the run (model names, cohort fields, notes,
config values, image labels, titles of extra sections) is text in the page, never markup.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from survpgc.eval.registry import Metric, metric, metrics_in
from survpgc.faults import fault_point
from survpgc.files import atomic_write
from survpgc.report.blocks import (
    Block,
    Cell,
    Details,
    Grid,
    Group,
    Heading,
    ItemList,
    Paragraph,
    Section,
    figure,
    frame_table,
    is_missing,
    mean_sd,
    num,
    table,
)
from survpgc.report.plots import format_p_value
from survpgc.report.templating import render

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["render_report", "report_metrics", "write_report"]

log = logging.getLogger(__name__)

_COHORT_FIELDS = {
    "name": "Name",
    "endpoint": "Endpoint",
    "n_cases": "Cases (patients)",
    "n_cases_tested": "Cases tested (in a test fold)",
    "never_tested": "Cases never tested",
    "n_events": "Events (deaths)",
    "censoring_rate": "Censoring rate",
    "time_median_months": "Median time (months)",
    "time_range_months": "Time range (months)",
    "n_slides": "Slides",
    "n_omics_features": "Omics features",
}
_COHORT_TABLES = ("coverage", "combinations", "clinical_missing", "notes")
_COMPARISON_COLUMNS = ("model", "reference", "delta_cindex", "ci_low", "ci_high", "p_value")


def _empty(text: str) -> Paragraph:
    return Paragraph((text,), "empty")


def _is_empty_frame(df: pd.DataFrame | None) -> bool:
    return df is None or len(df) == 0


def _plain(obj: Any) -> Any:
    """Config values as YAML-safe Python (dicts, lists, str, numbers, bool, None)."""
    import dataclasses

    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, list | tuple | set | frozenset):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    return str(obj)


def _config_text(config: Any) -> str:
    if config is None:
        return "(not recorded)"
    plain = _plain(config)
    try:
        import yaml

        return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False)
    except Exception:  # pragma: no cover - pyyaml is a dependency; JSON is the fallback
        import json

        return json.dumps(plain, indent=2, ensure_ascii=False)


def _protocol_label(protocol: str) -> str:
    from survpgc.data.splits import protocol_label

    try:
        return protocol_label(protocol)
    except Exception:
        log.warning("report: unknown protocol %r, shown as given", protocol)
        return str(protocol)


def _protocols_in(protocol: str, summary: pd.DataFrame | None) -> list[str]:
    found = [str(protocol)]
    if not _is_empty_frame(summary) and "protocol" in summary.columns:
        found += [str(p) for p in summary["protocol"].dropna().unique()]
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------------------------------
# sections as blocks
# --------------------------------------------------------------------------------------------------
def _run_blocks(
    *, created: str, protocol: str, config: Any, cohort_summary: Mapping[str, Any] | None, summary: Any, metrics: Any
) -> list[Block]:
    from survpgc import __version__

    name = config.get("name") if isinstance(config, Mapping) else None
    rows = [("Run", str(name))] if name else []
    rows += [
        ("Generated", created),
        ("survpgc version", __version__),
        ("Protocol", _protocol_label(protocol)),
        ("Python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
    ]
    if cohort_summary and cohort_summary.get("name") is not None:
        rows.insert(len(rows) - 3, ("Cohort", str(cohort_summary.get("name"))))
    if not _is_empty_frame(summary) and "model" in summary.columns:
        rows.append(("Models", ", ".join(str(m) for m in summary["model"].astype(str).unique())))
    if not _is_empty_frame(metrics) and "fold" in metrics.columns:
        rows.append(("Folds", str(metrics["fold"].nunique())))
    return [table(["Item", "Value"], rows)]


def _cohort_value(key: str, value: Any) -> str:
    if key == "censoring_rate" and not is_missing(value):
        return f"{100 * float(value):.1f} %"
    if key == "time_range_months" and isinstance(value, Sequence) and len(value) == 2:
        return f"{num(value[0], 1)} – {num(value[1], 1)}"
    if key == "time_median_months":
        return num(value, 1)
    return num(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _cohort_overview(cohort: Mapping[str, Any]) -> Group:
    rows = [(label, _cohort_value(key, cohort[key])) for key, label in _COHORT_FIELDS.items() if key in cohort]
    rows += [(str(k), str(v)) for k, v in cohort.items() if k not in _COHORT_FIELDS and k not in _COHORT_TABLES]
    return Group((Heading("Overview"), table(["Field", "Value"], rows)))


def _cohort_blocks(cohort: Mapping[str, Any] | None) -> list[Block]:
    if not cohort:
        return [_empty("No cohort summary recorded.")]
    n_cases = cohort.get("n_cases")

    def pct(count: Any) -> str:
        if is_missing(count) or not n_cases:
            return "n/a"
        return f"{100 * float(count) / float(n_cases):.0f} %"

    grid: list[Block] = [_cohort_overview(cohort)]
    if coverage := cohort.get("coverage") or {}:
        rows = [(str(k), num(v), pct(v)) for k, v in coverage.items()]
        grid.append(Group((Heading("Modality coverage"), table(["Modality", "Cases", "Share"], rows,
                                                                numeric=[False, True, True]))))  # fmt: skip
    if combos := cohort.get("combinations") or {}:
        rows = [(str(k), num(v)) for k, v in combos.items()]
        grid.append(Group((Heading("Modality combinations"), table(["Combination", "Cases"], rows,
                                                                    numeric=[False, True]))))  # fmt: skip
    blocks: list[Block] = [Grid(tuple(grid))]
    if missing := cohort.get("clinical_missing") or {}:
        rows = [(str(k), num(v), pct(v)) for k, v in missing.items()]
        missing_table = table(["Field", "Missing", "Share"], rows, numeric=[False, True, True])
        blocks.append(Details("Missing clinical values per field", (missing_table,)))
    if notes := cohort.get("notes") or []:
        blocks += [Heading("Cohort notes"), ItemList(tuple(str(n) for n in notes))]
    return blocks


def report_metrics(summary: pd.DataFrame) -> tuple[Metric, ...]:
    """The metrics a summary table holds (``<key>_mean`` columns): the known ones in report order
    (:func:`survpgc.eval.registry.metrics_in`), then any other ``*_mean`` column under its own name."""
    known = metrics_in(summary.columns, suffix="_mean")
    keys = {m.key for m in known}
    other = [str(c)[: -len("_mean")] for c in summary.columns if str(c).endswith("_mean")]
    return known + tuple(metric(k) for k in other if k not in keys)


def _best_values(summary: pd.DataFrame, names: Sequence[Metric]) -> dict[str, float]:
    """The best mean of each metric column whose values differ (lowest where lower is better)."""
    import pandas as pd

    best: dict[str, float] = {}
    for m in names:
        vals = pd.to_numeric(summary[f"{m.key}_mean"], errors="coerce")
        if vals.nunique(dropna=True) > 1:
            best[m.key] = float(vals.max() if m.higher_is_better else vals.min())
    return best


def _metric_cell(r: Any, m: Metric, best: Mapping[str, float]) -> Cell:
    mean = r[f"{m.key}_mean"]
    sd = r.get(f"{m.key}_sd")
    is_best = m.key in best and not is_missing(mean) and float(mean) == best[m.key]
    return Cell(mean_sd(mean, sd, m.digits), numeric=True, best=is_best)


def _metrics_table(summary: pd.DataFrame, names: Sequence[Metric]) -> list[Block]:
    best = _best_values(summary, names)
    cols = set(summary.columns)
    header = [Cell("Model")]
    header += [Cell("Protocol")] if "protocol" in cols else []
    header += [Cell("Folds", numeric=True)] if "n_folds" in cols else []
    header += [Cell("Test cases", numeric=True)] if "n_cases" in cols else []
    header += [Cell(m.label + ("" if m.higher_is_better else " ↓"), numeric=True) for m in names]
    rows = []
    for _, r in summary.iterrows():
        row = [Cell(str(r["model"]) if "model" in cols else "")]
        if "protocol" in cols:
            paper = str(r["protocol"]) == "paper"
            row.append(Cell("paper · optimistic", badge=True) if paper else Cell(str(r["protocol"])))
        row += [Cell(num(r["n_folds"]), numeric=True)] if "n_folds" in cols else []
        row += [Cell(num(r["n_cases"]), numeric=True)] if "n_cases" in cols else []
        rows.append(tuple(row + [_metric_cell(r, m, best) for m in names]))
    note = Paragraph(
        (
            "Mean ± sample sd over folds (Folds: those whose C-index entered the mean; a fold where a metric cannot be "
            "computed, e.g. no event among its test cases, is left out, see the notes); bold = best per column "
            "(↓: lower is better). C-index 0.5 = random ranking.",
        ),
        "meta",
    )
    return [table([h.text for h in header], rows, numeric=[h.numeric for h in header], css_class="metrics"), note]


def _metrics_blocks(
    summary: pd.DataFrame | None, metrics: pd.DataFrame | None, names: Sequence[Metric] | None
) -> list[Block]:
    if _is_empty_frame(summary):
        blocks: list[Block] = [_empty("No summary metrics.")]
    else:
        blocks = _metrics_table(summary, report_metrics(summary) if names is None else names)
    if not _is_empty_frame(metrics):
        df = metrics.sort_values([c for c in ("model", "fold") if c in metrics.columns], kind="stable")
        blocks.append(Details(f"Per-fold metrics ({len(df)} rows)", (frame_table(df.reset_index(drop=True)),)))
    return blocks


def _comparison_row(r: Any, extra: Sequence[str]) -> list[str]:
    delta = r.get("delta_cindex")
    d = "n/a" if is_missing(delta) else f"{float(delta):+.3f}"
    lo, hi = r.get("ci_low"), r.get("ci_high")
    ci = "n/a" if is_missing(lo) or is_missing(hi) else f"[{float(lo):+.3f}, {float(hi):+.3f}]"
    fixed = [str(r.get("model", "")), str(r.get("reference", "")), d, ci, format_p_value(r.get("p_value"))]
    return fixed + [num(r[c]) for c in extra]


def _comparisons_blocks(comparisons: pd.DataFrame | None) -> list[Block]:
    if _is_empty_frame(comparisons):
        return [_empty("No comparisons (a single model, or no reference).")]
    extra = [str(c) for c in comparisons.columns if c not in _COMPARISON_COLUMNS]
    header = ["Model", "Reference", "ΔC-index", "95 % CI", "p", *extra]
    rows = [_comparison_row(r, extra) for _, r in comparisons.iterrows()]
    blocks: list[Block] = [table(header, rows, numeric=[False, False, True, True, True] + [False] * len(extra))]
    if {"delta_cindex", "p_value"} <= set(comparisons.columns):
        blocks.append(
            Paragraph(
                (
                    "Fold-stratified paired bootstrap of the test predictions (cases resampled within each fold, "
                    "the same resamples for both models): ΔC-index = mean over folds of C(model) − C(reference), "
                    "percentile 95 % interval, two-sided bootstrap p.",
                ),
                "meta",
            )
        )
    return blocks


def _figure_blocks(images: Mapping[str, str | os.PathLike[str]]) -> list[Block]:
    if not images:
        return [_empty("No figures.")]
    km = {k: v for k, v in images.items() if str(k).lower().startswith(("km", "kaplan-meier"))}
    other = {k: v for k, v in images.items() if k not in km}
    blocks: list[Block] = []
    if km:
        blocks += [
            Heading("Kaplan–Meier curves (high vs low predicted risk, pooled test folds)"),
            Paragraph(
                (
                    "Cut-off per fold: the median of that fold's training-part risks; test cases above it are "
                    "high risk. Log-rank p on the pooled test predictions.",
                ),
                "meta",
            ),
            Grid(tuple(figure(str(k), v, css_class="km") for k, v in km.items())),
        ]
    if other:
        blocks += [Heading("Model comparison")] if km else []
        blocks += [figure(str(k), v) for k, v in other.items()]
    return blocks


def _nav(notes: Sequence[str], extra_sections: Sequence[Section]) -> list[tuple[str, str]]:
    nav = [("run", "Run"), ("cohort", "Cohort"), ("metrics", "Metrics"), ("comparisons", "Comparisons")]
    nav.append(("figures", "Figures"))
    nav += [("notes", "Notes")] if notes else []
    nav += [(f"extra-{i}", s.title) for i, s in enumerate(extra_sections)]
    return [*nav, ("config", "Configuration")]


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def render_report(
    *,
    cohort_summary: Mapping[str, Any] | None,
    protocol: str,
    config: Any,
    summary: pd.DataFrame | None,
    metrics: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    images: Mapping[str, str | os.PathLike[str]],
    notes: Sequence[str] = (),
    extra_sections: Sequence[Section] = (),
    metric_list: Sequence[Metric] | None = None,
    title: str = "survpgc cross-validation report",
    created: str | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report` for the arguments)."""
    from survpgc import __version__

    if created is None:
        created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    protocols = _protocols_in(protocol, summary)
    notes, extra_sections = [str(n) for n in notes], list(extra_sections)
    return render(
        "report.html.j2",
        version=__version__,
        title=title,
        created=created,
        protocols=protocols,
        nav=_nav(notes, extra_sections),
        paper_label=_protocol_label("paper") if "paper" in protocols else "",
        protocol_labels=[_protocol_label(p) for p in protocols if p != "paper"],
        run=_run_blocks(
            created=created,
            protocol=protocol,
            config=config,
            cohort_summary=cohort_summary,
            summary=summary,
            metrics=metrics,
        ),
        cohort=_cohort_blocks(cohort_summary),
        metrics=_metrics_blocks(summary, metrics, metric_list),
        comparisons=_comparisons_blocks(comparisons),
        figures=_figure_blocks(images or {}),
        notes=notes,
        extra=extra_sections,
        config=_config_text(config),
    )


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    cohort_summary: Mapping[str, Any] | None,
    protocol: str,
    config: Any,
    summary: pd.DataFrame | None,
    metrics: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    images: Mapping[str, str | os.PathLike[str]],
    notes: Sequence[str] = (),
    extra_sections: Sequence[Section] = (),
    metric_list: Sequence[Metric] | None = None,
    title: str = "survpgc cross-validation report",
    filename: str = "report.html",
    created: str | None = None,
) -> Path:
    """Write the run's self-contained ``report.html`` and return its path.

    Parameters
    ----------
    run_dir : path-like
        The run directory (created if needed); the file is ``run_dir / filename``, written atomically.
    cohort_summary : mapping or None
        :meth:`survpgc.data.cohort.Cohort.summary` (name, endpoint, n_cases, n_events, censoring_rate,
        time_median_months, coverage, combinations, clinical_missing, ...).
    protocol : str
        ``nested`` | ``paper`` | ``last-epoch``.  ``paper`` -- or any ``paper`` row in ``summary['protocol']``
        -- shows a red warning box with :func:`~survpgc.data.splits.protocol_label` (OPTIMISTIC).
    config : mapping, dataclass or None
        The resolved configuration, shown as YAML.
    summary : DataFrame or None
        One row per model: ``model``, ``n_folds``, ``protocol``, ``<metric>_mean``, ``<metric>_sd``;
        shown as ``mean ± sd``, best per column in bold.
    metrics : DataFrame or None
        One row per (model, fold); shown in a collapsible ``<details>`` table.
    comparisons : DataFrame or None
        ``model, reference, delta_cindex, ci_low, ci_high, p_value``.
    images : mapping label -> path
        PNG (or JPEG / SVG ...) files inlined as base64 ``data:`` URIs, in the given order; labels starting
        with ``km`` or ``Kaplan-Meier`` go under "Kaplan–Meier curves", the others (forest plot ...) under
        "Model comparison".
        A missing file is reported in the page and the log instead of failing the run.
    notes : sequence of str
        Free-text notes, e.g. the oracle C-index or warnings of the run.
    extra_sections : sequence of :class:`~survpgc.report.blocks.Section`
        Appended sections (heatmaps, attributions), ids ``extra-0``, ``extra-1``, ...
    metric_list : sequence of :class:`~survpgc.eval.registry.Metric`, optional
        The columns of the summary table, in order; default :func:`report_metrics` of ``summary``.
    title : str
        Page title.
    filename : str
        Default ``report.html``.
    created : str, optional
        Timestamp shown in the page (default: now, UTC); pass one for byte-identical reports.
    """
    page = render_report(
        cohort_summary=cohort_summary,
        protocol=protocol,
        config=config,
        summary=summary,
        metrics=metrics,
        comparisons=comparisons,
        images=images,
        notes=notes,
        extra_sections=extra_sections,
        metric_list=metric_list,
        title=title,
        created=created,
    )
    path = Path(run_dir) / filename
    data = page.encode("utf-8")

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        fault_point("report")  # written to the temporary file, not yet renamed

    atomic_write(path, write)
    log.info("wrote %s (%d kB)", path, len(page) // 1024)
    return path
