"""Report sections for what the interpretation commands wrote under ``<run>/interpret/``.

:func:`interpret_sections` is called whenever a run's ``report.html`` is (re)built, so heatmaps and
attributions appear in the report as soon as they exist -- and a report rebuilt later keeps them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

__all__ = ["integration_section", "interpret_sections"]

log = logging.getLogger(__name__)


def interpret_sections(run_dir: str | Path) -> list[tuple[str, str]]:
    """``(title, html)`` sections for the heatmaps, attributions and localisation found in
    ``run_dir/interpret``, and the Table 4 comparison when the run holds survpc and integration baselines."""
    root = Path(run_dir) / "interpret"
    sections: list[tuple[str, str]] = []
    builders = (
        ("Clinical integration (paper Table 4)", _integration),
        ("Attention heatmaps", _heatmaps),
        ("Modality attribution (integrated gradients)", _ig),
        ("Localisation against known masks", _localisation),
    )
    for title, build in builders:
        try:
            html = build(root)
        except Exception as exc:  # a broken interpretation file must never sink the report
            log.warning("report: %s section left out (%s: %s)", title, type(exc).__name__, exc)
            continue
        if html:
            sections.append((title, html))
    return sections


def _heatmaps(root: Path) -> str:
    from survpgc.report.html import escape, figure_html

    metas = sorted((root / "heatmaps").glob("*/*/*.json"))
    if not metas:
        return ""
    parts = [
        "<p>Per-patch scores of the fold model that tested the case. <b>attention</b>: post-softmax weights "
        "of each query token over the patches, z-scored per token over the case's patches, averaged over the "
        "tokens; colours are percentiles within the case (red = most attended). <b>relevance</b>: attention "
        "× ∂risk/∂attention summed over heads and tokens -- the first-order contribution of each attended "
        "patch to the predicted risk (red raises it, blue lowers it). Montages: the highest-relevance "
        "patches read from the slide at the extraction magnification. Raw scores: "
        "<code>interpret/heatmaps/&lt;model&gt;/&lt;case&gt;/*_scores.csv</code>.</p>"
    ]
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        folder = meta_path.parent
        head = (
            f"{meta['model']} · case {meta['case_id']} · fold {meta['fold']} · {meta['key']} · "
            f"predicted risk {meta['risk']:+.3f}"
        )
        parts.append(f"<h3>{escape(head)}</h3>")
        for s in meta["slides"]:
            figs = []
            for name in ("attention", "relevance"):
                f = s["files"].get(name, {}).get("figure")
                if f:
                    figs.append(figure_html(f"{s['slide_id']} {name}", folder / f, jpeg_max_width=900))
            mont = s["files"].get("relevance", {}).get("montage")
            if mont:
                figs.append(
                    figure_html(f"{s['slide_id']} top patches by relevance", folder / mont, jpeg_max_width=1100)
                )
            parts.append('<div class="grid">' + "".join(figs) + "</div>")
    return "\n".join(parts)


def _ig(root: Path) -> str:
    from survpgc.paper import PAPER_TABLE3
    from survpgc.report.html import escape, figure_html, frame_table_html, mean_sd

    summaries = sorted((root / "attribution").glob("*_summary.csv"))
    if not summaries:
        return ""
    parts = [
        "<p>Integrated gradients (captum) of the predicted risk with respect to the fused vectors the head "
        "reads, per test patient of each fold; share = Σ|attribution| of a vector (or path) / Σ|attribution| "
        "of all. Rows: mean ± sd over the fold's patients; last row: mean ± sd of the fold means.</p>"
    ]
    for path in summaries:
        stem = path.name.removesuffix("_summary.csv")
        meta_path = path.with_name(f"{stem}_meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        df = pd.read_csv(path, dtype={"fold": str})
        cols = [c.removesuffix("_mean") for c in df.columns if c.endswith("_mean")]
        show = pd.DataFrame({"fold": df["fold"], "patients": df["n_patients"]})
        for c in cols:
            show[c] = [mean_sd(m, s) for m, s in zip(df[f"{c}_mean"], df[f"{c}_sd"], strict=True)]
        parts.append(f"<h3>{escape(meta.get('model', stem))} (baseline: {escape(meta.get('baseline', '?'))})</h3>")
        parts.append(frame_table_html(show))
        paper = PAPER_TABLE3.get(str(meta.get("cohort", "")).upper())
        if paper:
            parts.append(
                f"<p>Paper, Table 3 ({escape(meta['cohort'])}): genomic-pathology {paper[0]:.3f}, "
                f"clinic-pathology {paper[1]:.3f}.</p>"
            )
        png = path.with_name(f"{stem}_shares.png")
        if png.is_file():
            parts.append(figure_html(f"{stem}: IG shares per path", png))
    return "\n".join(parts)


def _integration(root: Path) -> str:
    return integration_section(root.parent) if (root.parent / "summary.csv").is_file() else ""


def integration_section(run_dir: Path) -> str:
    """The Table 4 section of a run holding ``survpc`` and at least one integration baseline (from its summary
    and comparisons); empty for any other run."""
    from survpgc.paper import INTEGRATION_MODELS, PAPER_TABLE4, PAPER_TABLE4_COLUMN
    from survpgc.report.html import escape, frame_table_html, mean_sd

    summary = pd.read_csv(run_dir / "summary.csv").set_index("model")
    if "survpc" not in summary.index or not any(m in summary.index for m, _ in INTEGRATION_MODELS[:-1]):
        return ""
    comp_path = run_dir / "comparisons.csv"
    comp = pd.read_csv(comp_path) if comp_path.is_file() else pd.DataFrame(columns=["model", "reference"])
    comp = comp[comp["reference"] == "survpc"].set_index("model")  # ΔC only where survpc was the reference
    cohort = ""
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        import yaml

        cohort = str((yaml.safe_load(cfg_path.read_text()) or {}).get("cohort", {}).get("source", ""))
    col = PAPER_TABLE4_COLUMN.get(cohort.upper())
    rows = []
    for model, label in INTEGRATION_MODELS:
        if model not in summary.index:
            continue
        r = summary.loc[model]
        row = {"approach": label, "model": model, "C-index": mean_sd(r["cindex_mean"], r["cindex_sd"])}
        if model == "survpc":
            row["ΔC vs survpc [95% CI]"], row["p"] = "reference", ""
        elif model in comp.index:
            c = comp.loc[model]
            row["ΔC vs survpc [95% CI]"] = f"{c['delta_cindex']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
            row["p"] = f"{c['p_value']:.3g}"
        else:  # the run compared with another reference
            row["ΔC vs survpc [95% CI]"], row["p"] = "-", ""
        if col is not None:
            row["paper Table 4"] = f"{PAPER_TABLE4[model][col]:.3f}"
        rows.append(row)
    if not rows:
        return ""
    note = (
        "<p>All four models on the same folds; ΔC = model − survpc on the pooled test predictions, fold-"
        "stratified paired bootstrap.</p>"
    )
    return note + frame_table_html(pd.DataFrame(rows)) + (f"<p>cohort: {escape(cohort)}</p>" if cohort else "")


def _localisation(root: Path) -> str:
    from survpgc.report.html import escape, frame_table_html, mean_sd

    files = sorted(root.glob("localisation_*.csv"))
    if not files:
        return ""
    parts = [
        "<p>AUROC of the per-patch scores against the known mask of each test slide (a patch is planted when at "
        "least half of it is masked); mean ± sd over the slides with both classes. 0.5 = no localisation.</p>"
    ]
    for path in files:
        t = pd.read_csv(path)
        rows = []
        for key, g in t.groupby("path", sort=False):
            row = {"path": key, "slides": int(g["auroc_relevance"].notna().sum())}
            for col in ("auroc_attention", "auroc_relevance"):
                row[col.removeprefix("auroc_")] = mean_sd(g[col].mean(), g[col].std())
            rows.append(row)
        parts.append(f"<h3>{escape(path.stem.removeprefix('localisation_'))}</h3>")
        parts.append(frame_table_html(pd.DataFrame(rows)))
    return "\n".join(parts)
