"""Slide file names: which suffixes are slides, and the slide id a file name stands for.

The one rule shared by feature extraction (``<out>/<slide id>.h5``), the cohort loader (finding a slide's
feature file) and the slide reader (``Slide.slide_id``, MPP override keys): the slide id is the file name
without a known slide suffix (``"a/TCGA-1.svs"`` -> ``"TCGA-1"``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "MAG_TIMES_MPP", "SLIDE_SUFFIXES", "slide_stem"]

#: Nominal objective magnification times microns per pixel: 20x <-> 0.5 um/px, so magnification = 10 / mpp.
MAG_TIMES_MPP = 10.0

#: Plain-image suffixes (read as single-level slides).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Whole-slide suffixes stripped to form the slide id (plain images included).
SLIDE_SUFFIXES: tuple[str, ...] = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".vms",
    ".vmu",
    ".bif",
    ".svslide",
    ".dcm",
    *IMAGE_SUFFIXES,
)


def slide_stem(name: str | os.PathLike[str]) -> str:
    """Slide id of a file name or path: the name without a known slide suffix (``"a/TCGA-1.svs"`` -> ``"TCGA-1"``)."""
    base = Path(name).name
    low = base.lower()
    for sfx in SLIDE_SUFFIXES:
        if low.endswith(sfx) and len(base) > len(sfx):
            return base[: -len(sfx)]
    return base
