"""Legible heatmaps: colour limits from the slide's own quantiles, a top-k outline, the report's per-slide AUROC."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from survpgc.errors import InputError
from survpgc.explain.attention import OUTLINE_RGB, colour_limits, draw_heatmap, top_k_mask

SIZE0 = 256
XS, YS = np.meshgrid(np.arange(0, 10 * SIZE0, SIZE0), np.arange(0, 6 * SIZE0, SIZE0))
COORDS = np.stack([XS.ravel(), YS.ravel()], axis=1)  # 60 patches on a 2560 x 1536 slide
LEVEL0 = (10 * SIZE0, 6 * SIZE0)


def _draw(tmp_path, values, **kw):
    out, _ = draw_heatmap(None, LEVEL0, COORDS, values, SIZE0, tmp_path / "o.png", max_size=640, **kw)
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB"))


def _cell(img, i):
    """The pixels of patch ``i`` (64 x 64 px at max_size 640)."""
    x, y = COORDS[i] // 4
    return img[y : y + 64, x : x + 64]


def test_top_k_outline_frames_exactly_the_top_patches(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=len(COORDS))
    top = top_k_mask(values, 0.1)
    assert top.sum() == 6 and set(np.flatnonzero(top)) == set(np.argsort(-values)[:6])
    lo, hi = colour_limits(values, True)
    img = _draw(tmp_path, values, vmin=lo, vmax=hi, cmap="RdBu_r", outline=top)
    green = (img == OUTLINE_RGB).all(axis=-1)
    framed = [i for i in range(len(COORDS)) if green[_cell_slice(i)].any()]
    assert framed == sorted(np.flatnonzero(top).tolist())
    for i in framed:  # a closed frame on the cell's border, the inside keeps its colour
        cell = (_cell(img, i) == OUTLINE_RGB).all(axis=-1)
        assert cell[0].all() and cell[-1].all() and cell[:, 0].all() and cell[:, -1].all()
        assert not cell[20:44, 20:44].any()
    # without an outline no pixel has the outline colour; ``top`` outside [0, 1] is refused
    plain = _draw(tmp_path, values, vmin=lo, vmax=hi, cmap="RdBu_r")
    assert not (plain == OUTLINE_RGB).all(axis=-1).any()
    assert top_k_mask(values, 0.0).sum() == 0 and top_k_mask(values, 1.0).all()
    with pytest.raises(InputError, match="outline share"):
        top_k_mask(values, 10)


def _cell_slice(i):
    x, y = COORDS[i] // 4
    return np.s_[y : y + 64, x : x + 64]


def test_one_outlier_does_not_wash_out_the_slide(tmp_path):
    """Signed scores: limits from the slide's 98th percentile of |score|, so the ordinary patches keep strong
    colours next to one extreme patch (with max-|score| limits they would all be near white)."""
    values = np.where(np.arange(len(COORDS)) % 2 == 0, 1.0, -1.0)
    values[7] = 500.0
    lo, hi = colour_limits(values, True)
    assert lo == -hi and 1.0 <= hi < 2.0
    img = _draw(tmp_path, values, vmin=lo, vmax=hi, cmap="RdBu_r").astype(int)
    pos, neg = _cell(img, 0).mean(axis=(0, 1)), _cell(img, 1).mean(axis=(0, 1))  # +1 and -1 patches
    assert pos[0] - neg[0] > 30 and neg[2] - pos[2] > 20  # redder and bluer, clearly
    # the old max-|score| scaling: both patches close to white, hardly told apart
    old = _draw(tmp_path, values, vmin=-500.0, vmax=500.0, cmap="RdBu_r").astype(int)
    assert abs(_cell(old, 0).mean(axis=(0, 1)) - _cell(old, 1).mean(axis=(0, 1))).max() < 5
    # small risk-raising scores beside large risk-lowering ones: each side of 0 gets its own slope, so the
    # positive patches are as red as the negative ones are blue, and 0 stays white
    values = np.where(np.arange(len(COORDS)) % 2 == 0, 0.001, -0.005)
    values[3] = 0.0
    lo, hi = colour_limits(values, True)
    assert (lo, hi) == (-0.005, 0.001)
    img = _draw(tmp_path, values, vmin=lo, vmax=hi, cmap="RdBu_r", center=0.0).astype(int)
    pos, neg, zero = (_cell(img, i).mean(axis=(0, 1)) for i in (0, 1, 3))
    assert pos[0] - pos[2] > 35 and neg[2] - neg[0] > 35  # saturated red and blue (alpha 0.6 on white)
    assert abs(zero - zero.mean()).max() < 6  # grey-white: no colour at 0
    # unsigned scores: the 5th..95th percentile
    lo_u, hi_u = colour_limits(np.r_[np.linspace(0, 1, 99), 1e6], False)
    assert 0 < lo_u < 0.1 and 0.9 < hi_u < 1.0  # the outlier 1e6 is not the limit


def test_report_shows_per_slide_auroc_when_masks_exist(tmp_path):
    from survpgc.report.interpret import interpret_sections
    from survpgc.report.templating import render_blocks

    heat = tmp_path / "heatmaps" / "survpgc" / "C1"
    heat.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(heat / "ig.png")
    Image.new("RGB", (8, 8), (30, 30, 200)).save(heat / "att.png")
    slide = {"slide_id": "C1-DX1", "n_patches": 30, "n_planted": 9, "auroc": {"ig": 0.9123, "attention": 0.3},
             "files": {"ig": {"figure": "ig.png"}, "attention": {"figure": "att.png"}}}  # fmt: skip
    meta = {"model": "survpgc", "case_id": "C1", "fold": 0, "key": "clinic->patch", "risk": 0.1, "headline": "ig",
            "slides": [slide, {**slide, "slide_id": "C1-DX2", "auroc": None}]}  # fmt: skip
    (heat / "clinic-to-patch.json").write_text(json.dumps(meta))
    (sec,) = interpret_sections(tmp_path, summary=pd.DataFrame({"model": ["survpgc"]}), comparisons=None, cohort="")
    html = str(render_blocks(sec.blocks))
    assert "C1-DX1 ig · AUROC vs mask 0.91" in html and "C1-DX1 attention · AUROC vs mask 0.30" in html
    assert "0.912" in html and "AUROC ig" in html  # the per-slide table
    assert "C1-DX2 ig<" in html or 'C1-DX2 ig"' in html  # no mask: no AUROC in the caption
    assert html.index("C1-DX1 ig") < html.index("C1-DX1 attention")  # the headline first
