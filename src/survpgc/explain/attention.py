"""Per-patch attention scores of a trained model, drawn on the slide: heatmaps and top-patch montages.

Score definition (the same for every model and every figure survpgc draws):

* **Post-softmax.** For a cross-attention path (``clinic->patch``, ``genomic->patch``) we take the attention
  weights each query token puts on each patch *after* the softmax -- the weights that actually mix the
  patches' values into that token's output (for SurvPGC the softmax runs over [modality tokens ‖ patches];
  only the patch part is used). Pre-softmax logits are not comparable across tokens (each token's softmax
  has its own shift) and are not what the model uses.
* **z-scored per token, over the bag.** Tokens differ in how peaked their attention is (a nearly uniform
  token has weights ≈ 1/L with tiny spread); z-scoring each token's weights over the case's real patches
  lets every token vote with the same weight instead of the most peaked one dominating.
* **Averaged over the real tokens** (masked / missing tokens excluded) -- the mean of z-scores, which ranks
  patches exactly as their sum.

Single-query attention (ABMIL-style ``patch`` weights, one row) is the same with one token. A case with
several slides is scored over its whole bag (the model sees one bag); each slide is then drawn on its own.
Colours show the score's percentile within the case (0 = least attended, 100 = most), which reads the same
on every slide; the raw scores are written beside the figures.

Attention has no direction: a model can carry "how much of texture T" by attending to T or to everything
but T. So every heatmap is drawn twice, the second time with the **relevance** of each patch: the sum over
heads and query tokens of ``A * d risk / d A`` (attention times the gradient of the predicted risk with
respect to that attention weight) -- the first-order change of the risk if the patch's weight were scaled
up, i.e. the patch's contribution through that attention (in the spirit of Chefer et al.'s gradient-weighted
attention, kept signed: positive raises the risk). It is computed with one backward pass through the same
attention tensor the model used.
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
from survpgc.files import atomic_write, atomic_write_text
from survpgc.report.run import rebuild_report

__all__ = [
    "CaseScores",
    "attention_key",
    "case_patch_scores",
    "case_scores_by_path",
    "draw_heatmap",
    "heatmap_for_case",
    "localisation_auroc",
    "localisation_table",
    "patch_mask_fraction",
    "reduce_attention",
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


def reduce_attention(weights: np.ndarray, token_mask: np.ndarray | None = None) -> np.ndarray:
    """Post-softmax weights ``(n_tokens, n_patches)`` (or ``(n_patches,)``) of the real patches -> one score
    per patch: each real token's weights z-scored over the patches, then averaged over the real tokens.

    A token whose weights are all equal (e.g. a single patch) contributes zeros. No real token -> zeros.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2:
        raise InputError(f"attention weights must be 1-D or 2-D, got shape {w.shape}")
    if token_mask is not None:
        w = w[np.asarray(token_mask, dtype=bool)]
    if w.shape[0] == 0 or w.shape[1] == 0:
        return np.zeros(w.shape[1])
    if not np.isfinite(w).all():
        raise DataError("attention weights contain NaN/inf")
    sd = w.std(axis=1, keepdims=True)
    z = np.where(sd > 0, (w - w.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0), 0.0)
    return z.mean(axis=0)


@dataclass
class CaseScores:
    """Per-patch scores of one case: ``table`` has ``slide_index, feature_path, x, y, attention,
    attention_pct, relevance, relevance_pct`` (``*_pct``: percentile within the case, 0-100)."""

    case_id: str
    model_id: str
    fold: int
    key: str
    risk: float
    table: pd.DataFrame
    feature_files: list[str]


def _pct(values: np.ndarray) -> np.ndarray:
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return 100.0 * (ranks - 1) / max(len(values) - 1, 1)


def case_patch_scores(loaded, case_id: str, path: str | None) -> CaseScores:
    """Run the fold model on the case's full bag and score every patch (see the module docstring): the
    attention score and the relevance (attention x gradient of the risk) of ``path``."""
    return case_scores_by_path(loaded, case_id, [path])[0]


def case_scores_by_path(loaded, case_id: str, paths: list[str | None] | None = None) -> list[CaseScores]:
    """:func:`case_patch_scores` for several paths from one forward pass (``paths`` None: every attention
    over patches the model has), in the order asked."""
    import torch

    from survpgc.data.dataset import BAG_KEYS, collate_survival
    from survpgc.devices import to_device

    ds = loaded.dataset([case_id])
    if "pathology" not in loaded.setup.modalities:
        raise ConfigError(f"model {loaded.model_id!r} reads no pathology; there is nothing to draw on a slide")
    if not ds.has_pathology(0):
        raise InputError(f"case {case_id!r} has no feature file in this run; heatmaps need its patch features")
    batch = collate_survival([ds[0]])
    batch = to_device(batch, next(loaded.model.parameters()).device)
    model = loaded.model.eval()
    p_mask = batch["path_mask"][0].cpu().numpy()
    coords = batch["path_coords"][0].cpu().numpy()[p_mask]
    slide_idx = batch["path_slide"][0].cpu().numpy()[p_mask]
    files = ds.feature_files(0)
    token_masks = {"clinic": BAG_KEYS["clinical"] + "_mask", "genomic": BAG_KEYS["genomic"] + "_mask"}
    results = []
    with torch.enable_grad():
        out = model(batch, return_attention=True)
        if not out.attention:
            raise ConfigError(f"model {loaded.model_id!r} returns no attention weights")
        keys = [attention_key(out.attention, p) for p in paths] if paths is not None else _patch_keys(out.attention)
        risk = out.risk.sum()
        for i, key in enumerate(keys):
            graph_att = out.attention.get(f"{key}/heads", out.attention[key])
            if not graph_att.requires_grad:
                raise ConfigError(f"model {loaded.model_id!r}: its {key!r} attention is not part of the computation")
            (grad,) = torch.autograd.grad(risk, graph_att, retain_graph=i < len(keys) - 1)
            # relevance: sum over heads and tokens of attention x d risk / d attention (first-order contribution)
            contrib = (graph_att.detach() * grad)[0].float().cpu().numpy()
            relevance = contrib.reshape(-1, contrib.shape[-1]).sum(axis=0)[p_mask]
            att = out.attention[key][0].detach().float().cpu().numpy()
            tok_mask = None
            if att.ndim == 2:
                mkey = token_masks.get(key.split("->")[0])
                tok_mask = batch[mkey][0].cpu().numpy() if mkey in batch else None
                att = att[:, p_mask]
            else:
                att = att[p_mask]
            attention = reduce_attention(att, tok_mask)
            table = pd.DataFrame(
                {
                    "slide_index": slide_idx.astype(int),
                    "feature_path": [files[j] for j in slide_idx],
                    "x": coords[:, 0].astype(np.int64),
                    "y": coords[:, 1].astype(np.int64),
                    "attention": attention,
                    "attention_pct": _pct(attention),
                    "relevance": relevance.astype(np.float64),
                    "relevance_pct": _pct(relevance),
                }
            )
            results.append(
                CaseScores(case_id, loaded.model_id, loaded.fold, key, float(out.risk[0].detach()), table, files)
            )
    return results


def _patch_keys(attention: dict[str, Any]) -> list[str]:
    """The attention maps over patches: ``<query>->patch`` of cross-attention, else single-query ``patch``."""
    found = [k for k in sorted(attention) if k.endswith("->patch")]
    return found or (["patch"] if "patch" in attention else [])


def _patch_size0(attrs: dict[str, Any]) -> int:
    """Patch side at level 0 from a feature file's attributes (``patch_size`` when level 0 is not given)."""
    return int(attrs.get("patch_size_level0") or attrs.get("patch_size") or 256)


# ============================================================================ drawing
def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _fill_canvas(
    shape: tuple[int, int], coords: np.ndarray, values: np.ndarray, scale: tuple[float, float], size0: int
) -> np.ndarray:
    """Values painted into an (h, w) float canvas (NaN = no patch) at level-0 ``coords`` scaled by ``scale``."""
    h, w = shape
    canvas = np.full((h, w), np.nan)
    sx, sy = scale
    for (x, y), v in zip(coords.tolist(), values.tolist(), strict=True):
        x0, y0 = math.floor(x * sx), math.floor(y * sy)
        x1, y1 = math.ceil((x + size0) * sx), math.ceil((y + size0) * sy)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, x0 + 1), w), min(max(y1, y0 + 1), h)
        if x0 < w and y0 < h:
            canvas[y0:y1, x0:x1] = v
    return canvas


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
    alpha: float = 0.45,
    max_size: int = 1024,
) -> tuple[Path, Path | None]:
    """Write the overlay (thumbnail size, the slide's aspect ratio, no margins) and optionally a figure with a
    title and a colour bar. ``thumbnail`` None -> drawn on white (slide file not available)."""
    from PIL import Image

    w0, h0 = level0_size
    if thumbnail is None:
        f = max(w0 / max_size, h0 / max_size, 1.0)
        thumbnail = np.full((max(1, round(h0 / f)), max(1, round(w0 / f)), 3), 255, np.uint8)
    th, tw = thumbnail.shape[:2]
    scale = (tw / w0, th / h0)
    canvas = _fill_canvas((th, tw), np.asarray(coords), np.asarray(values, float), scale, patch_size_level0)
    norm = np.clip((canvas - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    rgba = _colormap(cmap)(np.nan_to_num(norm))[..., :3]
    has = ~np.isnan(canvas)
    base = thumbnail.astype(np.float64) / 255.0
    blend = np.where(has[..., None], (1 - alpha) * base + alpha * rgba, base)
    img = (np.clip(blend, 0, 1) * 255).round().astype(np.uint8)
    overlay_png = Path(overlay_png)
    atomic_write(overlay_png, lambda t: Image.fromarray(img).save(t, format="PNG"))
    fig_path = None
    if figure_png is not None:
        fig_path = Path(figure_png)
        _heatmap_figure(img, fig_path, title, colorbar_label, vmin, vmax, cmap)
    return overlay_png, fig_path


def _heatmap_figure(img: np.ndarray, path: Path, title: str, label: str, vmin: float, vmax: float, cmap: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    h, w = img.shape[:2]
    width = 8.0
    fig, ax = plt.subplots(figsize=(width, max(2.5, width * h / w * 0.92 + 0.8)), constrained_layout=True)
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    sm = ScalarMappable(norm=Normalize(vmin, vmax), cmap=_colormap(cmap))
    fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02, label=label)
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


#: How each score is drawn: (column, colour-bar label, colormap, symmetric limits around 0).
SCORE_STYLES: dict[str, tuple[str, str, str, bool]] = {
    "attention": ("attention_pct", "attention: percentile within case", "jet", False),
    "relevance": ("relevance", "relevance: attention × d risk / d attention (+ raises risk)", "RdBu_r", True),
}


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
) -> dict[str, Any]:
    """Attention and relevance heatmaps, top-``top_k`` montages and a scores CSV for every slide of
    ``case_id``, under ``<run>/interpret/heatmaps/<model>/<case>/``. The case is explained by the model of
    the fold that tested it (``fold`` overrides). Returns the written paths and the case's risk."""
    from survpgc.rundir import RunContext, safe_name

    ctx = ctx or RunContext(run_dir)
    k = ctx.test_fold_of(case_id) if fold is None else int(fold)
    loaded = ctx.load(model_id, k, device=device)
    out_dir = ctx.interpret_dir / "heatmaps" / safe_name(model_id) / safe_name(case_id)
    [written] = case_heatmaps(
        loaded, case_id, ctx.cohort, out_dir, paths=[path], title=f"{model_id} fold {k} · case {case_id}",
        slide=slide, slide_dir=slide_dir, top_k=top_k, max_size=max_size,
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
) -> list[dict[str, Any]]:
    """Heatmaps of one case for a trained model, wherever the model comes from (a run's fold model, a bundle).

    ``loaded``: the model with ``model_id``, ``fold``, ``model``, ``setup.modalities`` and ``dataset(ids)`` (as
    :class:`survpgc.rundir.LoadedModel`); ``cohort``: where the case's slide files are looked up; ``paths``: the
    attentions to draw (``clinic`` / ``genomic`` / None for single-query MIL; None: every attention over patches).
    For each attention and slide: attention and relevance overlays, figures, top-``top_k`` montages and a scores
    CSV under ``out_dir``, plus one JSON record per attention. Returns one record per attention.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for scores in case_scores_by_path(loaded, case_id, paths):
        written: dict[str, Any] = {
            "case_id": case_id, "fold": loaded.fold, "risk": scores.risk, "key": scores.key, "slides": []
        }  # fmt: skip
        for idx, fpath in enumerate(scores.feature_files):
            part = scores.table[scores.table["slide_index"] == idx]
            if part.empty:
                continue
            override = slide if len(scores.feature_files) == 1 else None
            slide_id, slide_file = _slide_for(cohort, fpath, override, slide_dir)
            written["slides"].append(
                _slide_heatmaps(scores, part, fpath, slide_id, slide_file, out_dir, title, top_k=top_k,
                                max_size=max_size)
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


def _slide_heatmaps(scores, part, fpath, slide_id, slide_file, out_dir: Path, title: str, *, top_k, max_size):
    """Overlay, figure and montage of each score for one slide of the case, and its scores CSV."""
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
    slide_obj = open_slide(slide_file) if slide_file is not None else None
    try:
        level0, thumb = _slide_canvas(slide_obj, attrs, coords, size0, max_size, slide_id)
        entry: dict[str, Any] = {"slide_id": slide_id, "n_patches": len(part), "level0_size": level0}
        for name, (col, label, cmap, symmetric) in SCORE_STYLES.items():
            values = part[col].to_numpy(float)
            lim = float(np.abs(values).max()) or 1.0
            vmin, vmax = (-lim, lim) if symmetric else (0.0, 100.0)
            overlay, figure = draw_heatmap(
                thumb, level0, coords, values, size0, f"{base}_{name}_overlay.png", f"{base}_{name}.png",
                title=f"{title} · {slide_id} · {scores.key} {name} · risk {scores.risk:+.3f}",
                colorbar_label=label, vmin=vmin, vmax=vmax, cmap=cmap, max_size=max_size,
            )  # fmt: skip
            entry[name] = {"overlay": overlay, "figure": figure}
            if slide_obj is not None:
                entry[name]["montage"] = top_patch_montage(
                    slide_obj, coords, part[name].to_numpy(float), size0, psize, f"{base}_{name}_top{top_k}.png",
                    k=top_k, title=f"top {min(top_k, len(part))} patches by {scores.key} {name} · {slide_id}",
                )  # fmt: skip
    finally:
        if slide_obj is not None:
            slide_obj.close()
    table = part.drop(columns=["slide_index"]).assign(slide_id=slide_id)
    csv = Path(f"{base}_scores.csv")
    atomic_write(csv, lambda t, tb=table: tb.sort_values("relevance", ascending=False).to_csv(t, index=False))
    entry["scores"] = csv
    return entry


def _write_heatmap_meta(meta: Path, model_id: str, written: dict[str, Any]) -> None:
    """The case's heatmap record (read by the report's heatmap section)."""
    atomic_write_text(
        meta,
        json.dumps(
            {"case_id": written["case_id"], "model": model_id, "fold": written["fold"], "key": written["key"],
             "risk": written["risk"],
             "slides": [{"slide_id": e["slide_id"], "n_patches": e["n_patches"],
                         "files": {n: {kk: Path(v).name for kk, v in e[n].items()} for n in SCORE_STYLES}}
                        for e in written["slides"]]},
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
) -> pd.DataFrame:
    """How well per-patch scores find a known region: for every test case of every trained fold, the AUROC
    of the attention and relevance scores against ``masks_dir/<slide stem>.png`` (a patch is planted when at
    least ``min_fraction`` of it is masked; masks at level-0 size / ``downsample``, as the synthetic cohort
    writes them). ``paths`` None = every attention over patches the model has. Writes
    ``<run>/interpret/localisation_<model>.csv``; one row per case, path and slide."""
    from PIL import Image

    from survpgc.data.features import read_feature_attrs
    from survpgc.rundir import RunContext, safe_name

    ctx = ctx or RunContext(run_dir)
    masks_dir = Path(masks_dir)
    rows = []
    for k in ctx.trained_folds(model_id):
        loaded = ctx.load(model_id, k, device=device)
        for cid in ctx.splits[k].test:
            by_path = case_scores_by_path(loaded, cid, None if paths is None else list(paths))
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
                    rows.append(
                        {
                            "case_id": cid, "fold": k, "path": sc.key, "slide": Path(fpath).stem,
                            "n_patches": len(part), "n_planted": int(planted.sum()),
                            "auroc_attention": localisation_auroc(part["attention"].to_numpy(), planted),
                            "auroc_relevance": localisation_auroc(part["relevance"].to_numpy(), planted),
                        }
                    )  # fmt: skip
    table = pd.DataFrame(rows)
    out = ctx.interpret_dir / f"localisation_{safe_name(model_id)}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda t: table.to_csv(t, index=False))
    return table
