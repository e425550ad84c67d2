"""Whole-slide images: reading, tissue segmentation and the patch grid at a target magnification.

* :mod:`survpgc.wsi.reader` -- :func:`open_slide` -> :class:`Slide` (openslide, tiffslide fallback, plain
  images), MPP and objective power from metadata, the MPP override table (:func:`load_mpp_overrides`).
* :mod:`survpgc.wsi.segment` -- :func:`segment_tissue` -> :class:`TissueMask` (CLAM-style saturation
  thresholding, contours and holes), :class:`SegmentConfig` and its presets, QC thumbnail PNG.
* :mod:`survpgc.wsi.grid` -- :func:`make_patch_grid` / :func:`tile_slide` -> :class:`PatchGrid` (level-0
  coordinates of non-overlapping tissue patches at e.g. 20x), :func:`read_patches` and
  :class:`SlidePatchDataset` (a DataLoader-worker-safe torch ``Dataset`` over one slide's patches).

Per-slide problems (file cannot be opened, tiles cannot be decoded, MPP missing) raise
:class:`survpgc.errors.DataError` naming the slide, so a batch can record the failure and go on.

Typical use for one slide::

    from survpgc.wsi import tile_slide, SlidePatchDataset
    grid, tissue = tile_slide("slide.svs", qc_path="qc/slide.png")
    ds = SlidePatchDataset("slide.svs", grid, transform=encoder_transform, return_coords=True)
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve lazily (PEP 562): ``grid`` pulls in torch and OpenCV, which importing ``survpgc.wsi`` should not.
_HOME = {
    **dict.fromkeys(
        ("DEFAULT_MIN_TISSUE_FRACTION", "GRID_STATUSES", "PatchGrid", "SlidePatchDataset", "SlideTiling",
         "make_patch_grid", "read_patches", "tile_slide"),
        "grid",
    ),
    **dict.fromkeys(
        ("BACKENDS", "MPP_RANGE", "Slide", "load_mpp_overrides", "magnification_to_mpp", "mpp_to_magnification",
         "open_slide"),
        "reader",
    ),
    **dict.fromkeys(
        ("SEGMENT_PRESETS", "SegmentConfig", "TissueMask", "patch_size_level0", "segment_tissue"), "segment"
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"survpgc.wsi.{_HOME[name]}"), name)
    raise AttributeError(f"module 'survpgc.wsi' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "DEFAULT_MIN_TISSUE_FRACTION",
    "GRID_STATUSES",
    "MPP_RANGE",
    "SEGMENT_PRESETS",
    "PatchGrid",
    "SegmentConfig",
    "Slide",
    "SlidePatchDataset",
    "SlideTiling",
    "TissueMask",
    "load_mpp_overrides",
    "magnification_to_mpp",
    "make_patch_grid",
    "mpp_to_magnification",
    "open_slide",
    "patch_size_level0",
    "read_patches",
    "segment_tissue",
    "tile_slide",
]
