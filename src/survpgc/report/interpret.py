"""Report sections for what the interpretation commands wrote under ``<run>/interpret/``.

:func:`interpret_sections` is called whenever a run's ``report.html`` is (re)built, so heatmaps and
attributions appear in the report as soon as they exist -- and a report rebuilt later keeps them.  Each
section is data (:mod:`survpgc.report.blocks`) rendered by the report's autoescaped templates.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from survpgc.report.blocks import Block, Figure, Grid, Heading, Paragraph, Section, Span, figure, frame_table, mean_sd

__all__ = ["integration_blocks", "interpret_sections"]

log = logging.getLogger(__name__)

_HEATMAP_INTRO = Paragraph(
    (
        "Per-patch scores of the fold model that tested the case, the headline score (named in each heading) first. ",
        Span("ig", "b"),
        ": integrated gradients of the predicted risk over the patch features, from a bag in which every patch "
        "is the bag's mean (red raises the risk, blue lowers it; the default headline). ",
        Span("relevance", "b"),
        ": attention × ∂risk/∂attention summed over heads and tokens -- the contribution of each patch through "
        "that one attention. ",
        Span("attention", "b"),
        ": post-softmax weights z-scored per query token, as percentiles within the case -- a view of where the "
        "model looks, with no direction (a model can read an amount of texture by looking away from it). "
        "Signed colours are centred at 0 (white), each side scaled to the slide's own 95th percentile; the "
        "tissue under the scores is grey; green frames mark the slide's top-scoring patches; with known masks "
        "each figure gives the slide's localisation AUROC (1 = the planted patches score highest, 0.5 = "
        "chance). Montages: the top patches by the headline score, read from the slide. Raw scores: ",
        Span("interpret/heatmaps/<model>/<case>/*_scores.csv"),
        ".",
    )
)
_IG_INTRO = Paragraph(
    (
        "Integrated gradients (captum) of the predicted risk with respect to the fused vectors the head reads, "
        "per test patient of each fold; share = Σ|attribution| of a vector (or path) / Σ|attribution| of all. "
        "Rows: mean ± sd over the fold's patients; last row: mean ± sd of the fold means.",
    )
)
_INTEGRATION_INTRO = Paragraph(
    (
        "All four models on the same folds; ΔC = model − survpc on the pooled test predictions, fold-stratified "
        "paired bootstrap.",
    )
)
_LOCALISATION_INTRO = Paragraph(
    (
        "AUROC of the per-patch scores against the known mask of each test slide (a patch is planted when at "
        "least half of it is masked); mean ± sd over the slides with both classes. 0.5 = no localisation.",
    )
)


def interpret_sections(
    interpret_dir: Path, *, summary: pd.DataFrame, comparisons: pd.DataFrame | None, cohort: str
) -> list[Section]:
    """The sections for the heatmaps, attributions and localisation found in ``interpret_dir``, and the
    Table 4 comparison when the run's ``summary`` holds survpc and integration baselines (``cohort``: the
    config's cohort source, which picks the paper's column)."""
    root = Path(interpret_dir)
    sections: list[Section] = []
    builders = (
        ("Clinical integration (paper Table 4)", lambda _: integration_blocks(summary, comparisons, cohort)),
        ("Attention heatmaps", _heatmaps),
        ("Modality attribution (integrated gradients)", _ig),
        ("Localisation against known masks", _localisation),
    )
    for title, build in builders:
        try:
            blocks = build(root)
        except Exception as exc:  # a broken interpretation file must never sink the report
            log.warning("report: %s section left out (%s: %s)", title, type(exc).__name__, exc)
            continue
        if blocks:
            sections.append(Section(title, tuple(blocks)))
    return sections


def _slide_figures(folder: Path, slide: dict[str, Any], headline: str = "relevance") -> list[Figure]:
    """The overlays of one slide (the order of its record: the headline score first), each with the slide's
    localisation AUROC when masks were known, and the top-patch montage of the headline score."""
    figs = []
    auroc = slide.get("auroc") or {}
    for name, files in slide["files"].items():
        f = files.get("figure")
        if f:
            auc = auroc.get(name)
            label = f"{slide['slide_id']} {name}" + (f" · AUROC vs mask {auc:.2f}" if auc is not None else "")
            figs.append(figure(label, folder / f, jpeg_max_width=900))
    mont = slide["files"].get(headline, {}).get("montage")
    if mont:
        figs.append(figure(f"{slide['slide_id']} top patches by {headline}", folder / mont, jpeg_max_width=1100))
    return figs


def _slide_auroc_table(meta: dict[str, Any]) -> list[Block]:
    """Per-slide localisation AUROC of every score, when the heatmaps were drawn with masks."""
    rows = [
        {"slide": s["slide_id"], "patches": s.get("n_patches"), "planted": s.get("n_planted"),
         **{f"AUROC {k}": ("-" if v is None else f"{v:.3f}") for k, v in s["auroc"].items()}}
        for s in meta["slides"] if s.get("auroc")
    ]  # fmt: skip
    return [frame_table(pd.DataFrame(rows))] if rows else []


def _heatmaps(root: Path) -> list[Block]:
    metas = sorted((root / "heatmaps").glob("*/*/*.json"))
    if not metas:
        return []
    blocks: list[Block] = [_HEATMAP_INTRO]
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        blocks.append(
            Heading(
                f"{meta['model']} · case {meta['case_id']} · fold {meta['fold']} · {meta['key']} · "
                f"predicted risk {meta['risk']:+.3f}"
                + (f" · headline: {meta['headline']}" if "headline" in meta else "")
            )
        )
        blocks += _slide_auroc_table(meta)
        headline = meta.get("headline", "relevance")
        blocks += [Grid(tuple(_slide_figures(meta_path.parent, s, headline))) for s in meta["slides"]]
    return blocks


def _ig_run(path: Path) -> list[Block]:
    """The blocks of one attribution summary ``<stem>_summary.csv`` (with its meta JSON and shares plot)."""
    from survpgc.paper import PAPER_TABLE3

    stem = path.name.removesuffix("_summary.csv")
    meta_path = path.with_name(f"{stem}_meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    df = pd.read_csv(path, dtype={"fold": str})
    cols = [c.removesuffix("_mean") for c in df.columns if c.endswith("_mean")]
    show = pd.DataFrame({"fold": df["fold"], "patients": df["n_patients"]})
    for c in cols:
        show[c] = [mean_sd(m, s) for m, s in zip(df[f"{c}_mean"], df[f"{c}_sd"], strict=True)]
    blocks: list[Block] = [
        Heading(f"{meta.get('model', stem)} (baseline: {meta.get('baseline', '?')})"),
        frame_table(show),
    ]
    paper = PAPER_TABLE3.get(str(meta.get("cohort", "")).upper())
    if paper:
        text = f"Paper, Table 3 ({meta['cohort']}): genomic-pathology {paper[0]:.3f}, clinic-pathology {paper[1]:.3f}."
        blocks.append(Paragraph((text,)))
    png = path.with_name(f"{stem}_shares.png")
    if png.is_file():
        blocks.append(figure(f"{stem}: IG shares per path", png))
    return blocks


def _ig(root: Path) -> list[Block]:
    summaries = sorted((root / "attribution").glob("*_summary.csv"))
    if not summaries:
        return []
    return [_IG_INTRO, *(b for path in summaries for b in _ig_run(path))]


def _integration_row(model: str, label: str, r: pd.Series, comp: pd.DataFrame, col: str | None) -> dict[str, str]:
    from survpgc.paper import PAPER_TABLE4

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
    return row


def integration_blocks(summary: pd.DataFrame, comparisons: pd.DataFrame | None, cohort: str = "") -> list[Block]:
    """The Table 4 section of a run holding ``survpc`` and at least one integration baseline (from its summary
    and comparisons tables); empty for any other run."""
    from survpgc.paper import INTEGRATION_MODELS, PAPER_TABLE4_COLUMN

    summary = summary.set_index("model")
    if "survpc" not in summary.index or not any(m in summary.index for m, _ in INTEGRATION_MODELS[:-1]):
        return []
    comp = comparisons if comparisons is not None else pd.DataFrame(columns=["model", "reference"])
    comp = comp[comp["reference"] == "survpc"].set_index("model")  # ΔC only where survpc was the reference
    col = PAPER_TABLE4_COLUMN.get(cohort.upper())
    rows = [
        _integration_row(model, label, summary.loc[model], comp, col)
        for model, label in INTEGRATION_MODELS
        if model in summary.index
    ]
    blocks: list[Block] = [_INTEGRATION_INTRO, frame_table(pd.DataFrame(rows))]
    return blocks + ([Paragraph((f"cohort: {cohort}",))] if cohort else [])


def _localisation(root: Path) -> list[Block]:
    files = sorted(root.glob("localisation_*.csv"))
    if not files:
        return []
    blocks: list[Block] = [_LOCALISATION_INTRO]
    for path in files:
        t = pd.read_csv(path)
        rows = []
        cols = [c for c in t.columns if c.startswith("auroc_")]
        for key, g in t.groupby("path", sort=False):
            row = {"path": key, "slides": int(g[cols].notna().any(axis=1).sum())}
            for col in cols:
                row[col.removeprefix("auroc_")] = mean_sd(g[col].mean(), g[col].std())
            rows.append(row)
        blocks += [Heading(path.stem.removeprefix("localisation_")), frame_table(pd.DataFrame(rows))]
    return blocks
