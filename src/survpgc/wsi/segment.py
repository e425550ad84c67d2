"""Tissue segmentation of a whole-slide image, in the spirit of CLAM, with a QC thumbnail.

Public API::

    SegmentConfig(...)                       # typed parameters; SegmentConfig.preset("default"|"biopsy"|"lenient")
    SEGMENT_PRESETS                          # name -> SegmentConfig
    segment_tissue(slide, config=None, *, patch_size=256, target_magnification=20.0) -> TissueMask
    TissueMask                               # mask + downsample + contours; .fraction_in_boxes, .save_qc, .save_mask

Algorithm (all at one low resolution, the *segmentation scale*):

1. Read the whole slide at ``downsample = min(config.seg_downsample, patch_size_level0 / config.min_patch_pixels)``
   (at least 1, raised if the image would exceed ``config.max_seg_pixels``) from the best pyramid level,
   area-resized.  So a patch at the target magnification always spans >= ``min_patch_pixels`` mask pixels and
   small slides (or 20x scans without a deep pyramid) are segmented at a useful resolution.
2. RGB -> HSV; median blur of the saturation channel (``median_blur``); threshold it: Otsu by default, never
   below ``otsu_floor`` (a blank, white slide stays blank), or a fixed ``threshold``.
3. Morphological closing with a square ``close_size`` kernel (fills small gaps between tissue fragments).
4. Contours with a two-level hierarchy (OpenCV ``RETR_CCOMP``): outer contours are tissue, inner ones holes.
   A hole is kept (removed from the tissue) when its area is >= ``min_hole_area`` patch areas (at most
   ``max_holes`` per region, largest first); smaller holes are filled.  A tissue region is kept when its area
   minus its kept holes is >= ``min_tissue_area`` patch areas.  Areas are in units of one patch at the target
   magnification (``patch_size_level0 ** 2`` level-0 pixels, from the slide's MPP), so the same config means
   the same physical sizes on 20x and 40x scans.
5. The mask is the filled kept regions minus their kept holes.

A slide without tissue gives an empty mask (``TissueMask.is_empty``), never an exception.  The QC thumbnail
(:meth:`TissueMask.save_qc`) draws tissue contours in green, holes in blue and, optionally, patch boxes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.errors import ConfigError, DataError, InputError
from survpgc.files import atomic_write_bytes
from survpgc.wsi.reader import Slide, magnification_to_mpp

__all__ = [
    "SEGMENT_PRESETS",
    "SegmentConfig",
    "TissueMask",
    "patch_size_level0",
    "segment_tissue",
]

log = logging.getLogger(__name__)

#: QC colours (RGB).
TISSUE_COLOR = (0, 200, 0)
HOLE_COLOR = (0, 0, 255)
PATCH_COLOR = (255, 170, 0)


@dataclass(frozen=True)
class SegmentConfig:
    """Parameters of :func:`segment_tissue` (kernel sizes in segmentation-scale pixels, areas in patch areas)."""

    #: Largest downsample (vs level 0) of the segmentation image.
    seg_downsample: float = 32.0
    #: A patch at the target magnification spans at least this many mask pixels per side.
    min_patch_pixels: int = 16
    #: Upper bound on the segmentation image (pixels); the downsample grows to respect it.
    max_seg_pixels: int = 64_000_000
    #: Fixed saturation threshold (0..255); None = Otsu.
    threshold: int | None = None
    #: Lower bound on the Otsu threshold (a white slide's faint noise is not tissue).
    otsu_floor: int = 15
    #: Median blur kernel of the saturation channel (odd; 0 or 1 = none).
    median_blur: int = 7
    #: Square closing kernel (0 = none).
    close_size: int = 4
    #: A tissue region (minus its holes) must cover this many patch areas.
    min_tissue_area: float = 4.0
    #: A hole must cover this many patch areas to be removed from the tissue (smaller ones are filled).
    min_hole_area: float = 1.0
    #: At most this many holes per tissue region (largest first).
    max_holes: int = 8

    def __post_init__(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"SegmentConfig: {msg}")

        if not (isinstance(self.seg_downsample, int | float) and self.seg_downsample >= 1):
            raise bad(f"seg_downsample must be >= 1, got {self.seg_downsample!r}")
        for name in ("min_patch_pixels", "max_seg_pixels", "max_holes", "median_blur", "close_size", "otsu_floor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(f"{name} must be a non-negative integer, got {v!r}")
        if self.min_patch_pixels < 1 or self.max_seg_pixels < 1:
            raise bad("min_patch_pixels and max_seg_pixels must be >= 1")
        if self.median_blur > 1 and self.median_blur % 2 == 0:
            raise bad(f"median_blur must be odd, got {self.median_blur}")
        if self.threshold is not None and (
            isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or not 0 <= self.threshold < 255
        ):
            raise bad(f"threshold must be None (Otsu) or an integer 0..254, got {self.threshold!r}")
        if self.otsu_floor > 254:
            raise bad(f"otsu_floor must be <= 254, got {self.otsu_floor}")
        for name in ("min_tissue_area", "min_hole_area"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v >= 0):
                raise bad(f"{name} must be a non-negative number (patch areas), got {v!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SegmentConfig:
        """A named preset (:data:`SEGMENT_PRESETS`), optionally with some fields replaced."""
        try:
            base = SEGMENT_PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"unknown segmentation preset {name!r}; choose one of {sorted(SEGMENT_PRESETS)}"
            ) from None
        return base.replace(**overrides) if overrides else base

    def replace(self, **changes: Any) -> SegmentConfig:
        """A copy with some fields changed (unknown names raise :class:`ConfigError`)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"SegmentConfig has no field(s) {unknown}; fields: {sorted(names)}")
        return dataclasses.replace(self, **changes)


#: Named configurations: ``default`` (resections), ``biopsy`` (small fragments: smaller kernels and areas),
#: ``lenient`` (faint tissue: low fixed threshold, keeps small regions, fills more holes).
SEGMENT_PRESETS: dict[str, SegmentConfig] = {
    "default": SegmentConfig(),
    "biopsy": SegmentConfig(median_blur=5, close_size=2, min_tissue_area=0.5, min_hole_area=0.5, max_holes=16),
    "lenient": SegmentConfig(threshold=8, median_blur=5, close_size=6, min_tissue_area=0.25, min_hole_area=4.0),
}


def patch_size_level0(patch_size: int, target_magnification: float, mpp: float) -> int:
    """Level-0 pixels spanned by a ``patch_size`` px patch at ``target_magnification`` on a slide of ``mpp``.

    ``round(patch_size * target_mpp / mpp)`` with ``target_mpp = 10 / target_magnification``; at least 1.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int | np.integer) or patch_size < 1:
        raise InputError(f"patch_size must be a positive integer, got {patch_size!r}")
    return max(1, round(int(patch_size) * magnification_to_mpp(target_magnification) / float(mpp)))


@dataclass(eq=False)
class TissueMask:
    """Tissue mask of one slide at the segmentation scale (``mask`` is bool ``(h, w)``).

    ``downsample`` is level-0 pixels per mask pixel ``(x, y)``; contours are ``(n, 2)`` int32 arrays of mask
    pixel ``(x, y)`` vertices (``hole_contours[i]`` are the holes of ``tissue_contours[i]``).
    """

    slide_id: str
    mask: np.ndarray
    downsample: tuple[float, float]
    level0_size: tuple[int, int]
    tissue_contours: tuple[np.ndarray, ...]
    hole_contours: tuple[tuple[np.ndarray, ...], ...]
    threshold: float
    config: SegmentConfig
    seg_level: int = 0
    patch_area_px: float = 1.0  #: one patch area in mask pixels
    image: np.ndarray | None = field(default=None, repr=False)  #: segmentation-scale RGB, for QC
    _integral: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def is_empty(self) -> bool:
        """True when no tissue was found."""
        return not bool(self.mask.any())

    @property
    def n_regions(self) -> int:
        return len(self.tissue_contours)

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def status(self) -> str:
        """``"ok"`` or ``"no_tissue"``."""
        return "no_tissue" if self.is_empty else "ok"

    def contours_level0(self) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
        """Tissue and hole contours in level-0 pixel coordinates (float64 ``(n, 2)``)."""
        s = np.asarray(self.downsample, np.float64)
        return (
            [c.astype(np.float64) * s for c in self.tissue_contours],
            [[h.astype(np.float64) * s for h in hs] for hs in self.hole_contours],
        )

    def fraction_in_boxes(self, xy: np.ndarray, size_level0: float) -> np.ndarray:
        """Tissue fraction of square level-0 boxes (top-left ``xy`` ``(n, 2)``, side ``size_level0``).

        Exact area integral of the (piecewise constant) mask over each box, computed by bilinear
        interpolation of the mask's integral image; the part of a box outside the slide counts as no tissue.
        """
        pts = np.asarray(xy, np.float64).reshape(-1, 2)
        if pts.shape[0] == 0:
            return np.zeros(0, np.float32)
        if self._integral is None:
            ii = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), np.float64)
            ii[1:, 1:] = np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.float64), axis=1)
            self._integral = ii
        ii = self._integral
        dx, dy = self.downsample
        x0, y0 = pts[:, 0] / dx, pts[:, 1] / dy
        x1, y1 = (pts[:, 0] + size_level0) / dx, (pts[:, 1] + size_level0) / dy
        h, w = self.mask.shape

        def cum(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            x = np.clip(x, 0.0, w)
            y = np.clip(y, 0.0, h)
            ix = np.minimum(np.floor(x).astype(np.int64), w - 1) if w else np.zeros_like(x, np.int64)
            iy = np.minimum(np.floor(y).astype(np.int64), h - 1) if h else np.zeros_like(y, np.int64)
            fx, fy = x - ix, y - iy
            a, b = ii[iy, ix], ii[iy, ix + 1]
            c, d = ii[iy + 1, ix], ii[iy + 1, ix + 1]
            return a * (1 - fx) * (1 - fy) + b * fx * (1 - fy) + c * (1 - fx) * fy + d * fx * fy

        area = cum(x1, y1) - cum(x0, y1) - cum(x1, y0) + cum(x0, y0)
        box = (x1 - x0) * (y1 - y0)
        return np.clip(area / box, 0.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ QC output
    def qc_image(
        self,
        *,
        slide: Slide | None = None,
        boxes: np.ndarray | None = None,
        box_size_level0: float | None = None,
        max_size: int = 1024,
    ) -> np.ndarray:
        """RGB QC thumbnail (longest side ``max_size``): tissue contours green, holes blue, patch boxes orange.

        The background is the segmentation image, or a fresh thumbnail of ``slide`` when given (sharper).
        """
        import cv2

        w0, h0 = self.level0_size
        scale = float(max_size) / max(w0, h0)  # thumbnail px per level-0 px
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        if slide is not None:
            bg = slide.thumbnail(int(max_size))
        elif self.image is not None:
            bg = self.image
        else:
            bg = np.where(self.mask[:, :, None], np.uint8(160), np.uint8(255)).repeat(3, axis=2)
        if bg.shape[:2] != (th, tw):
            interp = cv2.INTER_AREA if bg.shape[1] > tw else cv2.INTER_LINEAR
            bg = cv2.resize(bg, (tw, th), interpolation=interp)
        img = np.ascontiguousarray(bg.copy())
        thick = max(1, round(max(tw, th) / 400))
        sx, sy = self.downsample[0] * scale, self.downsample[1] * scale

        def to_thumb(c: np.ndarray) -> np.ndarray:
            pts = (c.astype(np.float64) + 0.5) * (sx, sy)
            return np.rint(pts).astype(np.int32).reshape(-1, 1, 2)

        if boxes is not None and box_size_level0 and float(box_size_level0) * scale >= 3:  # else boxes are a blur
            b = np.asarray(boxes, np.float64).reshape(-1, 2)
            s = float(box_size_level0)
            for x, y in b:
                p0 = (round(x * scale), round(y * scale))
                p1 = (round((x + s) * scale) - 1, round((y + s) * scale) - 1)
                cv2.rectangle(img, p0, p1, PATCH_COLOR, 1)
        cv2.drawContours(img, [to_thumb(c) for c in self.tissue_contours], -1, TISSUE_COLOR, thick)
        holes = [to_thumb(h) for hs in self.hole_contours for h in hs]
        if holes:
            cv2.drawContours(img, holes, -1, HOLE_COLOR, thick)
        return img

    def save_qc(
        self,
        path: str | os.PathLike[str],
        *,
        slide: Slide | None = None,
        boxes: np.ndarray | None = None,
        box_size_level0: float | None = None,
        max_size: int = 1024,
    ) -> Path:
        """Write the QC thumbnail (:meth:`qc_image`) as PNG; returns the path."""
        img = self.qc_image(slide=slide, boxes=boxes, box_size_level0=box_size_level0, max_size=max_size)
        return _write_png(Path(path), img)

    def save_mask(self, path: str | os.PathLike[str]) -> Path:
        """Write the binary mask (segmentation scale, uint8 0/255) as PNG; returns the path."""
        return _write_png(Path(path), np.where(self.mask, np.uint8(255), np.uint8(0)))


def _write_png(path: Path, img: np.ndarray) -> Path:
    import cv2

    arr = np.ascontiguousarray(img, dtype=np.uint8)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - cv2 failure
        raise DataError(f"{path}: PNG encoding failed")
    # atomically: a crash or a full disk never leaves a truncated PNG under its final name
    return atomic_write_bytes(path, buf.tobytes())


def _seg_downsample(slide: Slide, cfg: SegmentConfig, patch_level0: int) -> float:
    w0, h0 = slide.dimensions
    ds = max(1.0, min(float(cfg.seg_downsample), patch_level0 / cfg.min_patch_pixels))
    need = math.sqrt(w0 * h0 / cfg.max_seg_pixels)
    return max(ds, need)


def segment_tissue(
    slide: Slide,
    config: SegmentConfig | str | None = None,
    *,
    patch_size: int = 256,
    target_magnification: float = 20.0,
) -> TissueMask:
    """Segment the tissue of ``slide`` (see the module docstring for the algorithm).

    Args:
        slide: an open :class:`~survpgc.wsi.reader.Slide` (its MPP is needed: area thresholds are in patch
            areas at the target magnification).
        config: a :class:`SegmentConfig`, a preset name, or None for ``"default"``.
        patch_size, target_magnification: the patch the area thresholds are measured in.

    Returns:
        A :class:`TissueMask`; empty (``is_empty``) when the slide shows no tissue.

    Raises:
        DataError: MPP missing (message says how to provide it) or unreadable pixels.
        ConfigError: unknown preset.
    """
    cfg = _resolve_config(config)
    mpp = slide.require_mpp()
    pl0 = patch_size_level0(patch_size, target_magnification, mpp)
    ds = _seg_downsample(slide, cfg, pl0)
    rgb = slide.read_downsampled(ds)
    h, w = rgb.shape[:2]
    w0, h0 = slide.dimensions
    dsx, dsy = w0 / w, h0 / h
    unit = pl0 * pl0 / (dsx * dsy)  # one patch area in mask pixels
    binary, thr = _threshold_saturation(rgb, cfg)
    tissue, holes = _filter_contours(binary, cfg, unit)
    mask = _fill_contours((h, w), tissue, holes)
    result = TissueMask(
        slide_id=slide.slide_id,
        mask=mask.astype(bool),
        downsample=(dsx, dsy),
        level0_size=(w0, h0),
        tissue_contours=tuple(tissue),
        hole_contours=tuple(tuple(hs) for hs in holes),
        threshold=thr,
        config=cfg,
        seg_level=slide.best_level_for_downsample(ds),
        patch_area_px=unit,
        image=rgb,
    )
    log.info(
        "%s: tissue %.1f%% of the slide in %d region(s) (saturation threshold %.0f, mask %dx%d, downsample %.2f)",
        slide.slide_id,
        100 * result.tissue_fraction,
        result.n_regions,
        thr,
        w,
        h,
        dsx,
    )
    return result


def _resolve_config(config: SegmentConfig | str | None) -> SegmentConfig:
    """A :class:`SegmentConfig` from a config, a preset name, or None (``"default"``)."""
    cfg = SegmentConfig.preset(config) if isinstance(config, str) else (config or SEGMENT_PRESETS["default"])
    if not isinstance(cfg, SegmentConfig):
        raise ConfigError(f"config must be a SegmentConfig or a preset name, got {type(config).__name__}")
    return cfg


def _threshold_saturation(rgb: np.ndarray, cfg: SegmentConfig) -> tuple[np.ndarray, float]:
    """``(binary uint8 mask, threshold)``: saturation (median-blurred) above the fixed or Otsu threshold (never
    below ``otsu_floor``), then a morphological closing."""
    import cv2

    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 1]
    if cfg.median_blur > 1:
        sat = cv2.medianBlur(sat, cfg.median_blur)
    if cfg.threshold is None:
        otsu, _ = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        thr = max(float(otsu), float(cfg.otsu_floor))
    else:
        thr = float(cfg.threshold)
    binary = (sat > thr).astype(np.uint8)
    if cfg.close_size > 0:
        kernel = np.ones((cfg.close_size, cfg.close_size), np.uint8)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    return binary, thr


def _fill_contours(shape: tuple[int, int], tissue: list[np.ndarray], holes: list[list[np.ndarray]]) -> np.ndarray:
    """uint8 mask of ``shape``: tissue contours filled with 1, their holes cleared (hole outlines stay tissue)."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    if tissue:
        cv2.drawContours(mask, [t.reshape(-1, 1, 2) for t in tissue], -1, 1, thickness=cv2.FILLED)
        flat = [hc.reshape(-1, 1, 2) for hs in holes for hc in hs]
        if flat:
            cv2.drawContours(mask, flat, -1, 0, thickness=cv2.FILLED)
            cv2.drawContours(mask, flat, -1, 1, thickness=1)  # a hole contour runs over tissue pixels
    return mask


def _filter_contours(
    binary: np.ndarray, cfg: SegmentConfig, unit: float
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Outer contours kept by area (net of their kept holes) and, per kept contour, its kept holes."""
    import cv2

    contours: Sequence[np.ndarray]
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None or len(contours) == 0:
        return [], []
    hier = hierarchy.reshape(-1, 4)
    min_hole = cfg.min_hole_area * unit
    min_tissue = cfg.min_tissue_area * unit
    kept: list[tuple[np.ndarray, list[np.ndarray]]] = []
    for i in np.flatnonzero(hier[:, 3] == -1):
        outer = contours[i]
        area = _area(outer)
        child = hier[i, 2]
        cand: list[tuple[float, np.ndarray]] = []
        while child != -1:
            ha = _area(contours[child], hole=True)
            if ha >= min_hole and ha > 0:
                cand.append((ha, contours[child]))
            child = hier[child, 0]
        cand.sort(key=lambda t: -t[0])
        cand = cand[: cfg.max_holes]
        net = area - sum(a for a, _ in cand)
        if net > 0 and net >= min_tissue:
            kept.append((outer.reshape(-1, 2).astype(np.int32), [c.reshape(-1, 2).astype(np.int32) for _, c in cand]))
    kept.sort(key=lambda t: (int(t[0][:, 1].min()), int(t[0][:, 0].min())))  # stable, top to bottom
    return [k[0] for k in kept], [k[1] for k in kept]


def _area(contour: np.ndarray, *, hole: bool = False) -> float:
    """Approximate pixel count of a region from its boundary contour (which runs through foreground pixels).

    Polygon area through pixel centres, plus (region) or minus (hole) half a pixel along the perimeter.
    """
    import cv2

    poly = float(cv2.contourArea(contour))
    half = 0.5 * float(cv2.arcLength(contour, True))
    return max(poly - half + 1.0, 0.0) if hole else poly + half + 1.0
