"""Per-patch scores of a trained model, drawn on the slide: heatmaps, top-patch montages, localisation.

The scores themselves are computed in :mod:`survpgc.explain.scores` (re-exported here): per attention path the
post-softmax ``attention`` (a *view* of where the model looks, no direction) and its ``relevance``
(attention × ∂risk/∂attention, signed); per case the signed ``grad_input``, ``ig`` (integrated gradients over
the patch bag) and ``occlusion`` scores. :data:`HEATMAP_SCORE` is the headline score, drawn first.

Drawing: every score gets an overlay on the slide thumbnail, a figure with its colour bar and a montage of its
top patches. Signed scores use a diverging map centred at 0 (red raises the risk) with limits from the
slide's own |score| quantile (:func:`colour_limits`: one extreme patch cannot wash out the rest); attention is
drawn as its percentile within the case. The top ``outline_top`` share of the slide's patches by the drawn
score are framed in green (:data:`OUTLINE_RGB`). When masks of a known region exist (a synthetic cohort's
``masks/``), each slide's record holds the localisation AUROC of every score, and
:func:`localisation_table` gives it for every test case of a run.

A case with several slides is scored over its whole bag (the model sees one bag); each slide is then drawn on
its own.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import ConfigError, DataError, InputError
from survpgc.explain.scores import (
    CASE_SCORES,
    HEATMAP_SCORE,
    PATH_SCORES,
    SCORES,
    patch_keys,
    reduce_attention,
    score_patches,
)
from survpgc.files import atomic_write, atomic_write_text
from survpgc.report.run import rebuild_report

__all__ = [
    "CASE_SCORES",
    "DRAWN_SCORES",
    "HEATMAP_SCORE",
    "OUTLINE_RGB",
    "OUTLINE_TOP",
    "PATH_SCORES",
    "SCORES",
    "SCORE_STYLES",
    "CaseScores",
    "attention_key",
    "case_heatmaps",
    "case_patch_scores",
    "case_scores_by_path",
    "colour_limits",
    "draw_heatmap",
    "heatmap_for_case",
    "localisation_auroc",
    "localisation_table",
    "masks_beside_cohort",
    "patch_mask_fraction",
    "reduce_attention",
    "score_columns",
    "score_patches",
    "top_k_mask",
    "top_patch_montage",
]

log = logging.getLogger(__name__)

#: ``--path`` value -> query-token name in the attention keys of :class:`~survpgc.models.base.ModelOutput`.
PATH_NAMES = {"clinic": "clinic", "clinical": "clinic", "genomic": "genomic"}


def attention_key(attention: dict[str, Any], path: str | None) -> str:
    """The key of ``attention`` holding per-patch weights for ``path`` (``clinic`` / ``genomic``), or the
    single-query ``patch`` key of attention-MIL models when ``path`` is None."""
    keys = sorted(attention)
    if path is None:
        if "patch" in attention:
            return "patch"
        to_patch = [k for k in keys if k.endswith("->patch")]
        if len(to_patch) == 1:
            return to_patch[0]
        raise ConfigError(f"the model attends to patches from several paths {to_patch}; choose one with --path")
    name = PATH_NAMES.get(path)
    if name is None:
        raise InputError(f"unknown path {path!r}; use clinic or genomic")
    key = f"{name}->patch"
    if key not in attention:
        have = [k for k in keys if k.endswith("->patch") or k == "patch"]
        raise ConfigError(f"the model has no {key!r} attention (it has {have or 'no attention over patches'})")
    return key


@dataclass
class CaseScores:
    """Per-patch scores of one case: ``table`` has ``slide_index, feature_path, x, y`` and for every computed
    score of :data:`SCORES` (``attention``, ``relevance``, ``grad_input``, ``ig``, ``occlusion``; per-head
    ``relevance_h<i>`` with several heads) its value and ``<score>_pct``, its percentile within the case
    (0-100). ``ig_delta``: completeness residual of the integrated gradients."""

    case_id: str
    model_id: str
    fold: int
    key: str
    risk: float
    table: pd.DataFrame
    feature_files: list[str]
    ig_delta: float = float("nan")


def score_columns(table: pd.DataFrame) -> list[str]:
    """The score columns of a per-patch table (:data:`SCORES` first, then per-head ``relevance_h<i>``)."""
    known = [c for c in SCORES if c in table.columns]
    heads = sorted(c for c in table.columns if c.startswith("relevance_h") and not c.endswith("_pct"))
    return known + heads


def _pct(values: np.ndarray) -> np.ndarray:
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return 100.0 * (ranks - 1) / max(len(values) - 1, 1)


def case_patch_scores(loaded, case_id: str, path: str | None, **kwargs: Any) -> CaseScores:
    """Run the fold model on the case's full bag and score every patch of ``path`` (see
    :mod:`survpgc.explain.scores`); ``kwargs`` as :func:`case_scores_by_path`."""
    return case_scores_by_path(loaded, case_id, [path], **kwargs)[0]


def case_scores_by_path(
    loaded,
    case_id: str,
    paths: list[str | None] | None = None,
    *,
    scores: tuple[str, ...] = SCORES,
    ig_steps: int = 32,
    ig_baseline: str = "mean",
) -> list[CaseScores]:
    """:func:`case_patch_scores` for several paths from one forward pass (``paths`` None: every attention
    over patches the model has), in the order asked. ``scores``: which of :data:`SCORES` to compute
    (``attention`` and ``relevance`` always are); ``ig_steps`` / ``ig_baseline``: see
    :mod:`survpgc.explain.scores`."""
    from survpgc.data.dataset import collate_survival
    from survpgc.devices import to_device

    ds = loaded.dataset([case_id])
    if "pathology" not in loaded.setup.modalities:
        raise ConfigError(f"model {loaded.model_id!r} reads no pathology; there is nothing to draw on a slide")
    if not ds.has_pathology(0):
        raise InputError(f"case {case_id!r} has no feature file in this run; heatmaps need its patch features")
    batch = collate_survival([ds[0]])
    batch = to_device(batch, next(loaded.model.parameters()).device)
    p_mask = batch["path_mask"][0].cpu().numpy()
    coords = batch["path_coords"][0].cpu().numpy()[p_mask]
    slide_idx = batch["path_slide"][0].cpu().numpy()[p_mask]
    files = ds.feature_files(0)

    def resolve(attention):
        if paths is None:
            return patch_keys(attention)
        return [attention_key(attention, p) for p in paths]

    wanted = tuple(dict.fromkeys((*PATH_SCORES, *scores)))
    try:
        res = score_patches(
            loaded.model, batch, None, scores=wanted, ig_steps=ig_steps, ig_baseline=ig_baseline, resolve_key=resolve
        )
    except ConfigError as exc:
        raise ConfigError(f"model {loaded.model_id!r}: {exc}") from exc
    results = []
    for key in res.keys:
        vals = res.by_key[key]
        cols: dict[str, Any] = {
            "slide_index": slide_idx.astype(int),
            "feature_path": [files[j] for j in slide_idx],
            "x": coords[:, 0].astype(np.int64),
            "y": coords[:, 1].astype(np.int64),
        }
        for name in (*SCORES, *sorted(n for n in vals if n not in SCORES)):
            if name in vals:
                cols[name] = np.asarray(vals[name], dtype=np.float64)
                cols[f"{name}_pct"] = _pct(cols[name])
        table = pd.DataFrame(cols)
        results.append(CaseScores(case_id, loaded.model_id, loaded.fold, key, res.risk, table, files, res.ig_delta))
    return results


def _patch_size0(attrs: dict[str, Any]) -> int:
    """Patch side at level 0 from a feature file's attributes (``patch_size`` when level 0 is not given)."""
    return int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 256)


# ============================================================================ drawing
def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _patch_rects(
    shape: tuple[int, int], coords: np.ndarray, scale: tuple[float, float], size0: int
) -> list[tuple[int, int, int, int] | None]:
    """Pixel rectangle ``(x0, y0, x1, y1)`` of each patch on an (h, w) canvas (None: off the canvas)."""
    h, w = shape
    sx, sy = scale
    rects: list[tuple[int, int, int, int] | None] = []
    for x, y in np.asarray(coords).tolist():
        x0, y0 = math.floor(x * sx), math.floor(y * sy)
        x1, y1 = math.ceil((x + size0) * sx), math.ceil((y + size0) * sy)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, x0 + 1), w), min(max(y1, y0 + 1), h)
        rects.append((x0, y0, x1, y1) if x0 < w and y0 < h else None)
    return rects


def _fill_canvas(
    shape: tuple[int, int], coords: np.ndarray, values: np.ndarray, scale: tuple[float, float], size0: int
) -> np.ndarray:
    """Values painted into an (h, w) float canvas (NaN = no patch) at level-0 ``coords`` scaled by ``scale``."""
    canvas = np.full(shape, np.nan)
    for r, v in zip(_patch_rects(shape, coords, scale, size0), np.asarray(values, float).tolist(), strict=True):
        if r is not None:
            canvas[r[1] : r[3], r[0] : r[2]] = v
    return canvas


#: Colour of the top-k outline (pure green: in neither the diverging map nor a stain colour).
OUTLINE_RGB: tuple[int, int, int] = (0, 255, 0)
#: Default share of a slide's patches outlined as its top scores.
OUTLINE_TOP: float = 0.1
#: Quantile of the slide's scores that sets the colour limits (taken at or below it: with a few dozen patches
#: the largest value is never the limit); the patches beyond it saturate.
COLOUR_QUANTILE: float = 0.95


def colour_limits(values: np.ndarray, signed: bool, quantile: float = COLOUR_QUANTILE) -> tuple[float, float]:
    """Colour-scale limits from the slide's own scores, robust to outliers. Signed scores: ``(-qn, qp)`` with
    ``qn`` the ``quantile`` of the negative scores' magnitudes and ``qp`` that of the positive scores, to be
    drawn with a diverging map centred at 0 (white = no effect; each side uses its whole colour range, so small
    risk-raising scores are as visible as large risk-lowering ones); a side without scores takes the other
    side's limit. Unsigned scores: the ``1 - quantile`` .. ``quantile`` quantiles. Beyond the limits colours
    saturate, so one extreme patch cannot wash out the rest of the slide."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (-1.0, 1.0) if signed else (0.0, 1.0)
    if signed:
        pos, neg = v[v > 0], -v[v < 0]
        qp = float(np.quantile(pos, quantile, method="lower")) if pos.size else 0.0
        qn = float(np.quantile(neg, quantile, method="lower")) if neg.size else 0.0
        qp, qn = qp or qn or 1.0, qn or qp or 1.0
        return -qn, qp
    lo, hi = float(np.quantile(v, 1.0 - quantile, method="higher")), float(np.quantile(v, quantile, method="lower"))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def _normalise(values: np.ndarray, vmin: float, vmax: float, center: float | None) -> np.ndarray:
    """Values to [0, 1]: linear between the limits, or with ``center`` strictly inside them two linear slopes
    meeting at 0.5 (matplotlib's ``TwoSlopeNorm``)."""
    if center is not None and vmin < center < vmax:
        below = 0.5 * (values - vmin) / (center - vmin)
        above = 0.5 + 0.5 * (values - center) / (vmax - center)
        return np.clip(np.where(values < center, below, above), 0, 1)
    return np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1)


def top_k_mask(values: np.ndarray, top: float = OUTLINE_TOP) -> np.ndarray:
    """The ``ceil(top * n)`` highest values (ties: the earlier patch first); ``top`` in [0, 1]."""
    v = np.asarray(values, float)
    if not 0 <= top <= 1:
        raise InputError(f"outline share must be in [0, 1] (e.g. 0.1 = the top 10 % of the slide's patches), got {top}")
    k = math.ceil(top * len(v))
    out = np.zeros(len(v), bool)
    out[np.argsort(-np.nan_to_num(v, nan=-np.inf), kind="stable")[:k]] = True
    return out


def _draw_outlines(img: np.ndarray, rects, outline: np.ndarray, width: int) -> None:
    """Paint a ``width``-pixel frame of :data:`OUTLINE_RGB` inside each outlined patch's rectangle."""
    for r, on in zip(rects, np.asarray(outline, bool).tolist(), strict=True):
        if not on or r is None:
            continue
        x0, y0, x1, y1 = r
        t = max(1, min(width, (x1 - x0) // 2, (y1 - y0) // 2))
        for sl in (np.s_[y0 : y0 + t, x0:x1], np.s_[y1 - t : y1, x0:x1], np.s_[y0:y1, x0 : x0 + t],
                   np.s_[y0:y1, x1 - t : x1]):  # fmt: skip
            img[sl] = OUTLINE_RGB


def draw_heatmap(
    thumbnail: np.ndarray | None,
    level0_size: tuple[int, int],
    coords: np.ndarray,
    values: np.ndarray,
    patch_size_level0: int,
    overlay_png: str | Path,
    figure_png: str | Path | None = None,
    *,
    title: str = "",
    colorbar_label: str = "attention percentile within case",
    vmin: float = 0.0,
    vmax: float = 100.0,
    cmap: str = "jet",
    alpha: float = 0.6,
    max_size: int = 1024,
    outline: np.ndarray | None = None,
    center: float | None = None,
) -> tuple[Path, Path | None]:
    """Write the overlay (thumbnail size, the slide's aspect ratio, no margins) and optionally a figure with a
    title and a colour bar. ``thumbnail`` None -> drawn on white (slide file not available). Under the scored
    patches the tissue is shown in grey so that the colours read as the score, not as the stain; the rest of
    the slide keeps its colours. ``outline``: a boolean per patch; those patches get a :data:`OUTLINE_RGB`
    frame (e.g. :func:`top_k_mask`). ``center`` (e.g. 0 for signed scores): the colour map's middle, with
    separate slopes on each side (limits as :func:`colour_limits`)."""
    from PIL import Image

    w0, h0 = level0_size
    if thumbnail is None:
        f = max(w0 / max_size, h0 / max_size, 1.0)
        thumbnail = np.full((max(1, round(h0 / f)), max(1, round(w0 / f)), 3), 255, np.uint8)
    th, tw = thumbnail.shape[:2]
    scale = (tw / w0, th / h0)
    coords = np.asarray(coords)
    canvas = _fill_canvas((th, tw), coords, np.asarray(values, float), scale, patch_size_level0)
    norm = _normalise(canvas, vmin, vmax, center)
    rgba = _colormap(cmap)(np.nan_to_num(norm))[..., :3]
    has = ~np.isnan(canvas)
    base = thumbnail.astype(np.float64) / 255.0
    grey = (0.5 + 0.5 * (base @ np.array([0.299, 0.587, 0.114])))[..., None]  # lightened luminance
    blend = np.where(has[..., None], (1 - alpha) * grey + alpha * rgba, base)
    img = (np.clip(blend, 0, 1) * 255).round().astype(np.uint8)
    if outline is not None:
        if len(outline) != len(coords):
            raise InputError(f"outline has {len(outline)} entries for {len(coords)} patches")
        cell = patch_size_level0 * min(scale)
        _draw_outlines(img, _patch_rects((th, tw), coords, scale, patch_size_level0), outline, round(cell / 10))
    overlay_png = Path(overlay_png)
    atomic_write(overlay_png, lambda t: Image.fromarray(img).save(t, format="PNG"))
    fig_path = None
    if figure_png is not None:
        fig_path = Path(figure_png)
        _heatmap_figure(img, fig_path, title, colorbar_label, vmin, vmax, cmap, center)
    return overlay_png, fig_path


def _heatmap_figure(
    img: np.ndarray, path: Path, title: str, label: str, vmin: float, vmax: float, cmap: str, center: float | None
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize, TwoSlopeNorm

    h, w = img.shape[:2]
    width = 8.0
    fig, ax = plt.subplots(figsize=(width, max(2.5, width * h / w * 0.92 + 0.8)), constrained_layout=True)
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    two = center is not None and vmin < center < vmax
    sm = ScalarMappable(norm=TwoSlopeNorm(center, vmin, vmax) if two else Normalize(vmin, vmax), cmap=_colormap(cmap))
    bar = fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02, label=label)
    if two:  # each side has its own scale: ticks at both limits, their halves and the centre
        bar.set_ticks([vmin, (vmin + center) / 2, center, (vmax + center) / 2, vmax])
        bar.ax.set_yticklabels([f"{t:.2g}" for t in (vmin, (vmin + center) / 2, center, (vmax + center) / 2, vmax)])
    atomic_write(path, lambda t: fig.savefig(t, format="png", dpi=110))
    plt.close(fig)


def _read_patch(slide, x: int, y: int, size0: int, out_size: int) -> np.ndarray:
    import cv2

    ds = size0 / out_size
    level = slide.best_level_for_downsample(ds)
    lds = slide.level_downsamples[level]
    rs = max(1, round(size0 / lds))
    img = slide.read_region((int(x), int(y)), level, (rs, rs))
    if rs != out_size:
        img = cv2.resize(img, (out_size, out_size), interpolation=cv2.INTER_AREA if rs > out_size else cv2.INTER_CUBIC)
    return img


def top_patch_montage(
    slide,
    coords: np.ndarray,
    scores: np.ndarray,
    patch_size_level0: int,
    patch_size: int,
    out_png: str | Path,
    *,
    k: int = 50,
    columns: int = 10,
    tile: int | None = None,
    title: str = "",
) -> Path:
    """The ``k`` highest-scoring patches read from the slide at the extraction magnification (each read
    region is one patch: level 0 is never loaded whole), in a grid with rank and score."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    order = np.argsort(-np.asarray(scores, float), kind="stable")[:k]
    if len(order) == 0:
        raise DataError("no patch to show")
    patches = [_read_patch(slide, *coords[i], patch_size_level0, patch_size) for i in order]
    tile = tile or min(patch_size, 192)
    cols = min(columns, len(order))
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for j, (i, img) in enumerate(zip(order, patches, strict=True)):
        ax = axes.ravel()[j]
        ax.imshow(img if tile == patch_size else _resize(img, tile))
        ax.set_title(f"#{j + 1}  {scores[i]:+.3g}", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    atomic_write(out_png, lambda t: fig.savefig(t, format="png", dpi=110))
    plt.close(fig)
    return out_png


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


# ============================================================================ command
def _slide_for(
    cohort, feature_path: str, slide_override: str | None, slide_dir: str | Path | None = None
) -> tuple[str, str | None]:
    """(slide_id, slide file or None) of a feature file of ``cohort``: ``slide_override``, else
    ``slide_dir/<slide id>`` or ``slide_dir/<stem>.<any slide suffix>``, else the cohort's slide path."""
    from survpgc.data.slides import SLIDE_SUFFIXES, slide_stem

    rows = cohort.slides
    hit = rows[rows["feature_path"].astype(str) == str(feature_path)]
    slide_id = str(hit["slide_id"].iloc[0]) if len(hit) else Path(feature_path).stem
    if slide_override:
        if not Path(slide_override).is_file():
            raise InputError(f"--slide {slide_override}: no such file")
        return slide_id, str(slide_override)
    if slide_dir is not None:
        folder = Path(slide_dir)
        if not folder.is_dir():
            raise InputError(f"--slide-dir {folder}: not a folder")
        stem = slide_stem(slide_id)
        for cand in [folder / slide_id, *(folder / f"{stem}{suf}" for suf in SLIDE_SUFFIXES)]:
            if cand.is_file():
                return slide_id, str(cand)
    sp = hit["slide_path"].iloc[0] if len(hit) else None
    return slide_id, (str(sp) if isinstance(sp, str) and sp and Path(sp).is_file() else None)


#: How each score is drawn: (column, colour-bar label, colormap, signed). Signed scores get a diverging map
#: centred at 0 with limits from the slide's |score| quantile (:func:`colour_limits`); attention is drawn as
#: its percentile within the case (0-100).
SCORE_STYLES: dict[str, tuple[str, str, str, bool]] = {
    "attention": ("attention_pct", "attention percentile in case (no direction)", "jet", False),
    "relevance": ("relevance", "relevance: A × ∂risk/∂A (+ raises risk)", "RdBu_r", True),
    "grad_input": ("grad_input", "gradient × input (+ raises risk)", "RdBu_r", True),
    "ig": ("ig", "integrated gradients (+ raises risk)", "RdBu_r", True),
    "occlusion": ("occlusion", "risk − risk without patch (+ raises risk)", "RdBu_r", True),
}
#: The scores drawn for every slide: the headline score first, then the attention view and the relevance.
DRAWN_SCORES: tuple[str, ...] = tuple(dict.fromkeys((HEATMAP_SCORE, "attention", "relevance")))


def masks_beside_cohort(cohort_source: str | Path) -> Path | None:
    """``<cohort folder>/masks`` when the cohort is a folder holding one (a synthetic cohort), else None."""
    folder = Path(str(cohort_source)) / "masks"
    return folder if folder.is_dir() else None


def heatmap_for_case(
    run_dir: str | Path,
    case_id: str,
    *,
    model_id: str = "survpgc",
    path: str | None = "clinic",
    fold: int | None = None,
    top_k: int = 50,
    slide: str | None = None,
    slide_dir: str | Path | None = None,
    max_size: int = 1024,
    device: str = "cpu",
    ctx=None,
    refresh_report: bool = True,
    outline_top: float = OUTLINE_TOP,
    masks_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Heatmaps of every drawn score (:data:`DRAWN_SCORES`), top-``top_k`` montages and a scores CSV for every
    slide of ``case_id``, under ``<run>/interpret/heatmaps/<model>/<case>/``. The case is explained by the model
    of the fold that tested it (``fold`` overrides). ``masks_dir``: folder of ``<slide stem>.png`` masks of a
    known region (default: ``masks/`` beside the run's cohort when it has one); each slide's localisation AUROC
    per score is then written with its heatmaps. Returns the written paths and the case's risk."""
    from survpgc.rundir import RunContext, safe_name

    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise InputError(f"--masks {masks_dir}: not a folder (it should hold <slide stem>.png masks)")
    ctx = ctx or RunContext(run_dir)
    if masks_dir is None:
        masks_dir = masks_beside_cohort(ctx.cfg.cohort.source)
    k = ctx.test_fold_of(case_id) if fold is None else int(fold)
    loaded = ctx.load(model_id, k, device=device)
    out_dir = ctx.interpret_dir / "heatmaps" / safe_name(model_id) / safe_name(case_id)
    [written] = case_heatmaps(
        loaded, case_id, ctx.cohort, out_dir, paths=[path], title=f"{model_id} fold {k} · case {case_id}",
        slide=slide, slide_dir=slide_dir, top_k=top_k, max_size=max_size, outline_top=outline_top,
        masks_dir=masks_dir,
    )  # fmt: skip
    if refresh_report:
        written["report"] = rebuild_report(ctx)
    return written


def case_heatmaps(
    loaded,
    case_id: str,
    cohort,
    out_dir: str | Path,
    *,
    paths: list[str | None] | None = None,
    title: str = "",
    slide: str | None = None,
    slide_dir: str | Path | None = None,
    top_k: int = 50,
    max_size: int = 1024,
    outline_top: float = OUTLINE_TOP,
    masks_dir: str | Path | None = None,
    draw: tuple[str, ...] = DRAWN_SCORES,
) -> list[dict[str, Any]]:
    """Heatmaps of one case for a trained model, wherever the model comes from (a run's fold model, a bundle).

    ``loaded``: the model with ``model_id``, ``fold``, ``model``, ``setup.modalities`` and ``dataset(ids)`` (as
    :class:`survpgc.rundir.LoadedModel`); ``cohort``: where the case's slide files are looked up; ``paths``: the
    attentions to draw (``clinic`` / ``genomic`` / None for single-query MIL; None: every attention over patches).
    For each attention and slide: an overlay, a figure and a top-``top_k`` montage per score of ``draw`` (colours
    from the slide's own quantiles, the top ``outline_top`` share of patches outlined), and a scores CSV under
    ``out_dir``, plus one JSON record per attention. With ``masks_dir`` (``<feature stem>.png`` masks at any
    downsample of level 0), every score is computed, each slide's CSV gets a ``planted`` column and its record
    the AUROC of every score (``auroc``); without masks only the drawn scores are computed. Scores of the whole
    case (:data:`CASE_SCORES`: ``ig``, ``grad_input``, ``occlusion``) are the same for every attention, so their
    files are named without it (``<slide>_ig_overlay.png``), drawn once and listed in every attention's record.
    Returns one record per attention.
    """
    unknown = [n for n in draw if n not in SCORE_STYLES]
    if unknown:
        raise InputError(f"unknown heatmap score(s) {unknown}; choose from {list(SCORE_STYLES)}")
    top_k_mask(np.zeros(1), outline_top)  # validates the share before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    wanted = SCORES if masks_dir is not None else draw  # without masks, only what is drawn (occlusion is costly)
    case_files: dict[tuple[str, str], dict[str, Any]] = {}  # (slide, case-level score) -> its files, drawn once
    for scores in case_scores_by_path(loaded, case_id, paths, scores=tuple(n for n in wanted if n in SCORES)):
        written: dict[str, Any] = {
            "case_id": case_id, "fold": loaded.fold, "risk": scores.risk, "key": scores.key, "slides": [],
            "headline": draw[0],
        }  # fmt: skip
        for idx, fpath in enumerate(scores.feature_files):
            part = scores.table[scores.table["slide_index"] == idx]
            if part.empty:
                continue
            override = slide if len(scores.feature_files) == 1 else None
            slide_id, slide_file = _slide_for(cohort, fpath, override, slide_dir)
            written["slides"].append(
                _slide_heatmaps(scores, part, fpath, slide_id, slide_file, out_dir, title, top_k=top_k,
                                max_size=max_size, outline_top=outline_top, masks_dir=masks_dir, draw=draw,
                                case_files=case_files)
            )  # fmt: skip
        _write_heatmap_meta(out_dir / f"{scores.key.replace('->', '-to-')}.json", loaded.model_id, written)
        records.append(written)
    return records


def _slide_canvas(slide_obj, attrs: dict[str, Any], coords: np.ndarray, size0: int, max_size: int, slide_id: str):
    """``(level-0 size, thumbnail)`` of a slide; without its file, the size from the feature file and no image."""
    if slide_obj is not None:
        return slide_obj.dimensions, slide_obj.thumbnail(max_size)
    w0, h0 = attrs.get("level0_width"), attrs.get("level0_height")
    level0 = (int(w0), int(h0)) if w0 and h0 else tuple(int(v) for v in coords.max(axis=0) + size0)
    log.warning("slide file of %s not found: heatmap drawn on a blank canvas, no patch montage", slide_id)
    return level0, None


def _planted_of(masks_dir, fpath, coords: np.ndarray, size0: int, level0: tuple[int, int]) -> np.ndarray | None:
    """Planted flag per patch (at least half of it masked) from ``masks_dir/<feature stem>.png``, the mask's
    downsample read from its width against the slide's level-0 width; None without a mask."""
    from PIL import Image

    if masks_dir is None:
        return None
    mask_path = Path(masks_dir) / f"{Path(fpath).stem}.png"
    if not mask_path.is_file():
        log.info("no mask %s: no localisation AUROC for this slide", mask_path)
        return None
    with Image.open(mask_path) as im:
        mask = np.asarray(im.convert("L"))
    downsample = level0[0] / mask.shape[1]
    return patch_mask_fraction(mask, coords, size0, downsample) >= 0.5


def _slide_heatmaps(
    scores, part, fpath, slide_id, slide_file, out_dir: Path, title: str, *, top_k, max_size, outline_top,
    masks_dir, draw, case_files: dict[tuple[str, str], dict[str, Any]] | None = None,
):  # fmt: skip
    """Overlay, figure and montage of each drawn score for one slide of the case, and its scores CSV. Case-level
    scores are named without the attention key; one already in ``case_files`` (drawn for another attention of
    the same case) is not drawn again, its files are reused."""
    from survpgc.data.features import read_feature_attrs
    from survpgc.data.slides import slide_stem
    from survpgc.wsi.reader import open_slide

    attrs = read_feature_attrs(fpath)
    coords = part[["x", "y"]].to_numpy()
    if (coords < 0).any():
        raise DataError(f"{fpath}: the feature file has no patch coordinates; heatmaps need 'coords'")
    size0 = _patch_size0(attrs)
    psize = int(attrs.get("patch_size") or size0)
    base = out_dir / f"{slide_stem(slide_id)}_{scores.key.replace('->', '-to-')}"
    case_base = out_dir / slide_stem(slide_id)
    case_files = {} if case_files is None else case_files
    slide_obj = open_slide(slide_file) if slide_file is not None else None
    table = part.drop(columns=["slide_index"]).assign(slide_id=slide_id)
    try:
        level0, thumb = _slide_canvas(slide_obj, attrs, coords, size0, max_size, slide_id)
        entry: dict[str, Any] = {"slide_id": slide_id, "n_patches": len(part), "level0_size": level0}
        planted = _planted_of(masks_dir, fpath, coords, size0, level0)
        if planted is not None:
            table["planted"] = planted
            entry["n_planted"] = int(planted.sum())
            entry["auroc"] = {n: localisation_auroc(part[n].to_numpy(float), planted) for n in score_columns(part)}
        n_top = math.ceil(outline_top * len(part))
        for name in draw:
            col, label, cmap, signed = SCORE_STYLES[name]
            if name not in part.columns:
                continue
            whole_case = name in CASE_SCORES
            if whole_case and (slide_id, name) in case_files:
                entry[name] = case_files[(slide_id, name)]
                continue
            b, shown = (case_base, "whole case") if whole_case else (base, scores.key)
            values = part[col].to_numpy(float)
            vmin, vmax = colour_limits(values, True) if signed else (0.0, 100.0)
            auc = entry.get("auroc", {}).get(name)
            what = f" · AUROC vs mask {auc:.2f}" if auc is not None and np.isfinite(auc) else ""
            overlay, figure = draw_heatmap(
                thumb, level0, coords, values, size0, f"{b}_{name}_overlay.png", f"{b}_{name}.png",
                title=f"{title} · {slide_id} · {shown} {name} · risk {scores.risk:+.3f}{what}\n"
                f"green frames: the top {n_top} of {len(part)} patches by {name}",
                colorbar_label=label, vmin=vmin, vmax=vmax, cmap=cmap, center=0.0 if signed else None,
                max_size=max_size, outline=top_k_mask(part[name].to_numpy(float), outline_top),
            )  # fmt: skip
            entry[name] = {"overlay": overlay, "figure": figure}
            if slide_obj is not None:
                entry[name]["montage"] = top_patch_montage(
                    slide_obj, coords, part[name].to_numpy(float), size0, psize, f"{b}_{name}_top{top_k}.png",
                    k=top_k, title=f"top {min(top_k, len(part))} patches by {shown} {name} · {slide_id}",
                )  # fmt: skip
            if whole_case:
                case_files[(slide_id, name)] = entry[name]
    finally:
        if slide_obj is not None:
            slide_obj.close()
    csv = Path(f"{base}_scores.csv")
    atomic_write(csv, lambda t, tb=table: tb.sort_values(draw[0], ascending=False).to_csv(t, index=False))
    entry["scores"] = csv
    entry["drawn"] = [n for n in draw if n in entry]
    return entry


def _write_heatmap_meta(meta: Path, model_id: str, written: dict[str, Any]) -> None:
    """The case's heatmap record (read by the report's heatmap section): per slide the files of each drawn
    score, the headline score first, and with masks the localisation AUROC of every score."""
    slides = []
    for e in written["slides"]:
        rec = {"slide_id": e["slide_id"], "n_patches": e["n_patches"],
               "files": {n: {kk: Path(v).name for kk, v in e[n].items()} for n in e["drawn"]}}  # fmt: skip
        if "auroc" in e:
            rec["n_planted"] = e["n_planted"]
            rec["auroc"] = {n: (float(v) if np.isfinite(v) else None) for n, v in e["auroc"].items()}
        slides.append(rec)
    atomic_write_text(
        meta,
        json.dumps(
            {"case_id": written["case_id"], "model": model_id, "fold": written["fold"], "key": written["key"],
             "risk": written["risk"], "headline": written["headline"], "slides": slides},
            indent=1,
        ),
    )  # fmt: skip


# ============================================================================ ground truth
def patch_mask_fraction(mask: np.ndarray, coords: np.ndarray, patch_size_level0: int, downsample: float) -> np.ndarray:
    """Share of each patch (level-0 top-left ``coords``, side ``patch_size_level0``) covered by a binary
    ``mask`` stored at level-0 size / ``downsample`` (e.g. the synthetic cohort's tumour masks)."""
    m = np.asarray(mask) > 0
    h, w = m.shape[:2]
    out = np.zeros(len(coords))
    for i, (x, y) in enumerate(np.asarray(coords).tolist()):
        x0, y0 = int(x // downsample), int(y // downsample)
        x1 = min(w, max(x0 + 1, math.ceil((x + patch_size_level0) / downsample)))
        y1 = min(h, max(y0 + 1, math.ceil((y + patch_size_level0) / downsample)))
        region = m[y0:y1, x0:x1]
        out[i] = float(region.mean()) if region.size else 0.0
    return out


def localisation_auroc(scores: np.ndarray, planted: np.ndarray) -> float:
    """AUROC of ``scores`` for the binary ``planted`` labels (ties count 1/2); NaN when one class is empty."""
    s = np.asarray(scores, float)
    y = np.asarray(planted, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def localisation_table(
    run_dir: str | Path,
    masks_dir: str | Path,
    *,
    model_id: str = "survpgc",
    paths: tuple[str | None, ...] | None = None,
    downsample: float = 16.0,
    min_fraction: float = 0.5,
    device: str = "cpu",
    ctx=None,
    scores: tuple[str, ...] = SCORES,
    ig_steps: int = 32,
    ig_baseline: str = "mean",
) -> pd.DataFrame:
    """How well per-patch scores find a known region: for every test case of every trained fold, the AUROC
    of every score (``auroc_<score>`` for each of ``scores``, default all of :data:`SCORES`; attention and
    relevance always) against ``masks_dir/<slide stem>.png`` (a patch is planted when at least
    ``min_fraction`` of it is masked; masks at level-0 size / ``downsample``, as the synthetic cohort writes
    them). ``paths`` None = every attention over patches the model has. Case-level scores (``grad_input``,
    ``ig``, ``occlusion``) repeat on every path's row. Also per row: the case's ``risk`` and ``ig_delta``, the
    integrated gradients' completeness residual. Writes ``<run>/interpret/localisation_<model>.csv``; one row
    per case, path and slide."""
    from PIL import Image

    from survpgc.data.features import read_feature_attrs
    from survpgc.rundir import RunContext, safe_name

    ctx = ctx or RunContext(run_dir)
    masks_dir = Path(masks_dir)
    rows = []
    for k in ctx.trained_folds(model_id):
        loaded = ctx.load(model_id, k, device=device)
        for cid in ctx.splits[k].test:
            by_path = case_scores_by_path(
                loaded, cid, None if paths is None else list(paths), scores=scores, ig_steps=ig_steps,
                ig_baseline=ig_baseline,
            )  # fmt: skip
            for idx, fpath in enumerate(by_path[0].feature_files):
                mask_path = masks_dir / f"{Path(fpath).stem}.png"
                if not mask_path.is_file():
                    raise InputError(f"no mask {mask_path} for feature file {fpath}")
                with Image.open(mask_path) as im:
                    mask = np.asarray(im.convert("L"))
                size0 = _patch_size0(read_feature_attrs(fpath))
                for sc in by_path:
                    part = sc.table[sc.table["slide_index"] == idx]
                    xy = part[["x", "y"]].to_numpy()
                    planted = patch_mask_fraction(mask, xy, size0, downsample) >= min_fraction
                    row = {
                        "case_id": cid, "fold": k, "path": sc.key, "slide": Path(fpath).stem,
                        "n_patches": len(part), "n_planted": int(planted.sum()), "risk": sc.risk,
                    }  # fmt: skip
                    for name in score_columns(sc.table):
                        row[f"auroc_{name}"] = localisation_auroc(part[name].to_numpy(), planted)
                    row["ig_delta"] = sc.ig_delta
                    rows.append(row)
    table = pd.DataFrame(rows)
    out = ctx.interpret_dir / f"localisation_{safe_name(model_id)}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda t: table.to_csv(t, index=False))
    return table
