"""Pyramidal TIFF slides in the Aperio SVS layout, with MPP and objective power in their metadata.

Page order: baseline, thumbnail (stripped), reduced levels; tiled JPEG.  The Aperio ``ImageDescription``
makes openslide use its aperio driver (``openslide.mpp-x`` from ``MPP``, ``openslide.objective-power``
from ``AppMag``) and tifffile/tiffslide parse it as SVS.  No date or software tags are written, so the
bytes depend on the pixels and arguments only.  OpenCV and tifffile are imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PyramidSpec", "aperio_description", "slides_json", "write_slide"]


@dataclass(frozen=True)
class PyramidSpec:
    """Geometry, compression and scan metadata of the written pyramids."""

    n_levels: int
    level_downsample: int
    tile_size: int
    jpeg_quality: int
    mpp: float  # um per level-0 pixel
    objective_power: int


def aperio_description(w0: int, h0: int, w: int, h: int, spec: PyramidSpec, stem: str) -> str:
    """The Aperio ``ImageDescription`` of a ``w`` x ``h`` page of a ``w0`` x ``h0`` slide."""
    tile, q = spec.tile_size, spec.jpeg_quality
    head = f"Aperio Image Library v12.0.0 (survpgc synthetic)\r\n{w0}x{h0} "
    if (w, h) == (w0, h0):
        head += f"[0,0 {w0}x{h0}] ({tile}x{tile}) JPEG/RGB Q={q}"
    else:
        head += f"-> {w}x{h} - ({tile}x{tile}) JPEG/RGB Q={q}"
    return f"{head}|AppMag = {spec.objective_power}|MPP = {spec.mpp:g}|Filename = {stem}|ScanScope ID = SURVPGC-SYNTH"


def _pyramid(rgb: np.ndarray, spec: PyramidSpec) -> list[np.ndarray]:
    """Level 0 and each reduced level (area-averaged by ``level_downsample``)."""
    import cv2

    levels = [rgb]
    for _ in range(1, spec.n_levels):
        prev = levels[-1]
        size = (prev.shape[1] // spec.level_downsample, prev.shape[0] // spec.level_downsample)
        levels.append(cv2.resize(prev, size, interpolation=cv2.INTER_AREA))
    return levels


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The slide scaled so that its longer side is 512 pixels."""
    import cv2

    h0, w0 = rgb.shape[:2]
    f = 512 / max(w0, h0)
    return cv2.resize(rgb, (max(1, round(w0 * f)), max(1, round(h0 * f))), interpolation=cv2.INTER_AREA)


def write_slide(path: Path, rgb: np.ndarray, *, stem: str, spec: PyramidSpec) -> None:
    """Write the level-0 RGB image ``rgb`` as a pyramidal TIFF (see the module docstring for the layout)."""
    import tifffile

    h0, w0 = rgb.shape[:2]
    thumb = _thumbnail(rgb)
    common: dict[str, Any] = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": spec.jpeg_quality},
        "software": False,
        "metadata": None,
        "resolution": (1e4 / spec.mpp, 1e4 / spec.mpp),
        "resolutionunit": "CENTIMETER",
    }
    tile = (spec.tile_size, spec.tile_size)
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for k, level in enumerate(_pyramid(rgb, spec)):
            desc = aperio_description(w0, h0, level.shape[1], level.shape[0], spec, stem)
            tif.write(level, tile=tile, description=desc, **common)
            if k == 0:
                tdesc = aperio_description(w0, h0, thumb.shape[1], thumb.shape[0], spec, stem)
                tif.write(thumb, rowsperstrip=16, description=tdesc, **common)


def slides_json(spec: PyramidSpec, width: int, height: int, written: bool) -> dict[str, Any]:
    """The ``slides`` section of truth.json."""
    return {
        "written": written,
        "dir": "slides",
        "format": "tiled JPEG TIFF, Aperio SVS layout (baseline, thumbnail, reduced levels)",
        "mpp": spec.mpp,
        "objective_power": spec.objective_power,
        "level0_size": [width, height],
        "level_count": spec.n_levels,
        "level_downsample": spec.level_downsample,
        "tile_size": spec.tile_size,
        "jpeg_quality": spec.jpeg_quality,
    }
