"""Patch grid at a target magnification, patch reading, and a torch ``Dataset`` over one slide's patches.

Public API::

    make_patch_grid(slide, tissue=None, *, patch_size=256, target_magnification=20.0,
                    min_tissue_fraction=0.5, segment_config=None) -> PatchGrid
    tile_slide(slide_or_path, *, patch_size=256, target_magnification=20.0, min_tissue_fraction=0.5,
               segment_config=None, mpp_override=None, mpp_fallback=None, backend="auto", qc_path=None,
               mask_path=None)
        -> SlideTiling(grid, tissue)                     # open + segment + grid (+ QC PNGs) for one slide
    read_patches(slide, coords, grid) -> uint8 (n, patch_size, patch_size, 3)
    SlidePatchDataset(slide_path, grid, transform=None, *, return_coords=False, backend="auto")
    batch_tasks(grid, batch_size, *, key=0, backend="auto") -> list[PatchBatchTask]
    PatchBatchDataset(transform=None, *, max_open=4)     # item: a PatchBatchTask -> PatchBatch
    DEFAULT_MIN_TISSUE_FRACTION

Geometry.  The target resolution is ``target_mpp = 10 / target_magnification`` um/px (20x = 0.5 um/px).  A
patch of ``patch_size`` px at the target spans ``patch_size_level0 = round(patch_size * target_mpp / mpp)``
level-0 pixels.  Candidate patches tile level 0 without overlap on a grid anchored at (0, 0) (top-left
corners ``(i, j) * patch_size_level0``), and only patches that lie entirely inside the slide are candidates.
Anchoring at the origin (not at each tissue region's bounding box, as CLAM does) makes the grid a function of
the physical scale only: the same scene scanned at 40x and 20x gives corresponding coordinates (x2).

Selection.  A candidate is kept when its tissue fraction -- the exact share of the patch covered by the
tissue mask (:meth:`TissueMask.fraction_in_boxes`) -- is >= ``min_tissue_fraction`` (default 0.5: at least
half of the patch is tissue; 0 keeps any patch that touches tissue at all).  Coordinates are level-0
``(x, y)`` of the top-left corner, int64, in row-major order (y, then x), as in CLAM/TRIDENT ``.h5`` files.

Reading.  A patch is read at the pyramid level with the largest downsample <= ``target_mpp / mpp`` (1 %
tolerance), ``read_size = round(patch_size_level0 / level_downsample)`` pixels, and resized to
``patch_size`` (area interpolation when shrinking, bicubic when enlarging).

Status.  :attr:`PatchGrid.status` is ``"ok"`` (>= 1 patch), ``"no_tissue"`` (segmentation found nothing, or
no patch reached the threshold) or ``"too_small"`` (the slide is smaller than one patch); empty grids have
``coords.shape == (0, 2)`` -- never an exception.

Workers.  :class:`SlidePatchDataset` stores the slide path and the grid, opens the slide lazily in the
process that reads (re-opening after a fork), and pickles without an open handle, so it works with
``DataLoader(num_workers=N)`` under fork and spawn.

Batches across slides.  :class:`PatchBatchDataset` serves a pool of DataLoader workers that lives as long as a
whole extraction: its items are :class:`PatchBatchTask` s (one batch of one slide: the slide path, the read plan
and up to ``batch_size`` coordinates -- small, picklable), so a sampler can hand out the batches of one slide after
another without restarting the workers. Each worker opens the slides it reads lazily, in its own process, and
keeps the few most recent ones open; the batch is read, resized and transformed in the worker and comes back as a
:class:`PatchBatch`. A slide whose tiles cannot be decoded gives a batch carrying the error message instead of
raising, so the consumer can record that slide as failed and go on with the next.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import Dataset

from survpgc.errors import InputError
from survpgc.wsi.reader import SLIDE_ERRORS, Slide, magnification_to_mpp, open_slide
from survpgc.wsi.segment import SegmentConfig, TissueMask, patch_size_level0, segment_tissue

__all__ = [
    "DEFAULT_MIN_TISSUE_FRACTION",
    "GRID_STATUSES",
    "PatchBatch",
    "PatchBatchDataset",
    "PatchBatchTask",
    "PatchGrid",
    "SlidePatchDataset",
    "SlideTiling",
    "batch_tasks",
    "make_patch_grid",
    "read_patches",
    "tile_slide",
]

log = logging.getLogger(__name__)

#: Default share of a patch that must be tissue for the patch to be kept.
DEFAULT_MIN_TISSUE_FRACTION = 0.5
#: Values of :attr:`PatchGrid.status`.
GRID_STATUSES: tuple[str, ...] = ("ok", "no_tissue", "too_small")


@dataclass(frozen=True, eq=False)
class PatchGrid:
    """The kept patches of one slide and how to read them (picklable; holds no open file)."""

    slide_id: str
    slide_path: str
    coords: np.ndarray  #: (n, 2) int64 level-0 (x, y) of the top-left corners
    tissue_fractions: np.ndarray  #: (n,) float32 tissue share of each kept patch
    patch_size: int  #: patch side at the target magnification (px)
    patch_size_level0: int  #: patch side at level 0 (px)
    target_magnification: float
    mpp: float  #: slide level-0 um/px used for the geometry
    read_level: int  #: pyramid level the patches are read from
    read_size: int  #: patch side at ``read_level`` before resizing to ``patch_size``
    read_downsample: float  #: downsample of ``read_level``
    level0_size: tuple[int, int]
    min_tissue_fraction: float
    n_candidates: int  #: grid positions inside the slide
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_patches(self) -> int:
        return int(self.coords.shape[0])

    def __len__(self) -> int:
        return self.n_patches

    @property
    def is_empty(self) -> bool:
        return self.n_patches == 0

    @property
    def target_mpp(self) -> float:
        return magnification_to_mpp(self.target_magnification)

    def attrs(self) -> dict[str, Any]:
        """The geometry attributes of a CLAM/TRIDENT feature file, without encoder fields."""
        return {
            "patch_size": int(self.patch_size),
            "patch_size_level0": int(self.patch_size_level0),
            "target_magnification": float(self.target_magnification),
            "mpp": float(self.mpp),
            "slide_id": self.slide_id,
            "level0_width": int(self.level0_size[0]),
            "level0_height": int(self.level0_size[1]),
        }

    def __repr__(self) -> str:
        return (
            f"PatchGrid({self.slide_id!r}, n_patches={self.n_patches}, status={self.status}, "
            f"patch_size={self.patch_size}@{self.target_magnification:g}x, level0={self.patch_size_level0}px, "
            f"read_level={self.read_level})"
        )


class SlideTiling(NamedTuple):
    """Result of :func:`tile_slide`."""

    grid: PatchGrid
    tissue: TissueMask


def make_patch_grid(
    slide: Slide,
    tissue: TissueMask | None = None,
    *,
    patch_size: int = 256,
    target_magnification: float = 20.0,
    min_tissue_fraction: float = DEFAULT_MIN_TISSUE_FRACTION,
    segment_config: SegmentConfig | str | None = None,
) -> PatchGrid:
    """Non-overlapping tissue patches of ``slide`` at ``target_magnification`` (see the module docstring).

    Args:
        slide: an open slide with a known MPP (else :class:`DataError` telling how to provide it).
        tissue: its tissue mask; None segments the slide with ``segment_config`` first.
        patch_size: patch side in pixels at the target magnification.
        target_magnification: nominal magnification (20 = 0.5 um/px).
        min_tissue_fraction: keep a patch when this share of it (0..1) is tissue.
        segment_config: used only when ``tissue`` is None.

    Raises:
        DataError: MPP missing, or the pixels cannot be read (segmentation).
        InputError: invalid arguments, or a mask of another slide size.
    """
    _check_fraction(min_tissue_fraction)
    mpp = slide.require_mpp()
    magnification_to_mpp(target_magnification)  # checks the magnification first
    pl0 = patch_size_level0(patch_size, target_magnification, mpp)
    if tissue is None:
        tissue = segment_tissue(slide, segment_config, patch_size=patch_size, target_magnification=target_magnification)
    w0, h0 = slide.dimensions
    if tuple(tissue.level0_size) != (w0, h0):
        raise InputError(
            f"slide {slide.slide_id}: tissue mask is for a {tissue.level0_size} slide, the slide is {(w0, h0)}"
        )
    level, lds, read_size = _read_plan(slide, mpp, pl0, target_magnification)
    coords, frac, n_cand, status = _select_patches(tissue, pl0, float(min_tissue_fraction))
    grid = PatchGrid(
        slide_id=slide.slide_id,
        slide_path=str(slide.path),
        coords=coords,
        tissue_fractions=frac,
        patch_size=int(patch_size),
        patch_size_level0=int(pl0),
        target_magnification=float(target_magnification),
        mpp=float(mpp),
        read_level=int(level),
        read_size=int(read_size),
        read_downsample=float(lds),
        level0_size=(int(w0), int(h0)),
        min_tissue_fraction=float(min_tissue_fraction),
        n_candidates=int(n_cand),
        status=status,
        extra={"mpp_source": slide.mpp_source, "mpp_metadata": slide.mpp_metadata},
    )
    log.info(
        "%s: %d of %d grid patches kept (%s; %d px at %gx = %d px at level 0, read at level %d)",
        slide.slide_id,
        grid.n_patches,
        n_cand,
        status,
        patch_size,
        target_magnification,
        pl0,
        level,
    )
    return grid


def _check_fraction(min_tissue_fraction: Any) -> None:
    if isinstance(min_tissue_fraction, bool) or not isinstance(min_tissue_fraction, int | float):
        raise InputError(f"min_tissue_fraction must be a number in [0, 1], got {min_tissue_fraction!r}")
    if not 0.0 <= float(min_tissue_fraction) <= 1.0:
        raise InputError(f"min_tissue_fraction must be in [0, 1], got {min_tissue_fraction!r}")


def _read_plan(slide: Slide, mpp: float, pl0: int, target_magnification: float) -> tuple[int, float, int]:
    """``(read level, its downsample, patch side at that level)``; warns when patches must be upsampled."""
    target_mpp = magnification_to_mpp(target_magnification)
    need_ds = target_mpp / mpp
    level = slide.best_level_for_downsample(need_ds)
    lds = slide.level_downsamples[level]
    read_size = max(1, round(pl0 / lds))
    if need_ds < 0.9:
        log.warning(
            "%s: the slide (%.3g um/px) is coarser than the target %.3g um/px (%gx); patches are upsampled",
            slide.slide_id,
            mpp,
            target_mpp,
            target_magnification,
        )
    return level, lds, read_size


def _select_patches(tissue: TissueMask, pl0: int, min_fraction: float) -> tuple[np.ndarray, np.ndarray, int, str]:
    """``(coords, tissue fractions, n_candidates, status)`` of the grid anchored at (0, 0) with side ``pl0``:
    candidates lie inside the slide, kept when their tissue share reaches ``min_fraction`` (0: any tissue)."""
    w0, h0 = tissue.level0_size
    nx, ny = w0 // pl0, h0 // pl0
    n_cand = nx * ny
    if n_cand == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32), 0, "too_small"
    gy, gx = np.mgrid[0:ny, 0:nx]
    cand = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.int64) * pl0
    all_frac = tissue.fraction_in_boxes(cand, pl0)
    # a tiny tolerance so that a patch exactly at the threshold is kept whatever the rounding
    keep = all_frac >= min_fraction - 1e-6
    if min_fraction == 0.0:
        keep = all_frac > 0.0
    coords = np.ascontiguousarray(cand[keep])
    frac = np.ascontiguousarray(all_frac[keep])
    return coords, frac, int(n_cand), "ok" if coords.shape[0] else "no_tissue"


def tile_slide(
    slide: Slide | str | os.PathLike[str],
    *,
    patch_size: int = 256,
    target_magnification: float = 20.0,
    min_tissue_fraction: float = DEFAULT_MIN_TISSUE_FRACTION,
    segment_config: SegmentConfig | str | None = None,
    mpp_override: float | Mapping[str, float] | None = None,
    backend: str = "auto",
    mpp_fallback: float | None = None,
    qc_path: str | os.PathLike[str] | None = None,
    mask_path: str | os.PathLike[str] | None = None,
    qc_max_size: int = 1024,
) -> SlideTiling:
    """Segment one slide and lay out its patch grid; optionally write the QC thumbnail and mask PNGs.

    ``slide`` is an open :class:`Slide` (left open) or a path (opened with ``mpp_override``/``mpp_fallback``/
    ``backend`` and closed again; see :func:`~survpgc.wsi.reader.open_slide`).  The QC thumbnail shows tissue
    contours (green), holes (blue) and kept patches (orange).
    Per-slide problems raise :class:`DataError` (unopenable file, unreadable tiles, missing MPP); a
    slide without tissue returns an empty grid with ``status == "no_tissue"``.
    """
    if isinstance(slide, Slide):
        return _tile(
            slide,
            patch_size,
            target_magnification,
            min_tissue_fraction,
            segment_config,
            qc_path,
            mask_path,
            qc_max_size,
        )
    with open_slide(slide, mpp_override=mpp_override, mpp_fallback=mpp_fallback, backend=backend) as s:
        return _tile(
            s, patch_size, target_magnification, min_tissue_fraction, segment_config, qc_path, mask_path, qc_max_size
        )


def _tile(
    slide: Slide,
    patch_size: int,
    target_magnification: float,
    min_tissue_fraction: float,
    segment_config: SegmentConfig | str | None,
    qc_path: str | os.PathLike[str] | None,
    mask_path: str | os.PathLike[str] | None,
    qc_max_size: int,
) -> SlideTiling:
    slide.require_mpp()
    tissue = segment_tissue(slide, segment_config, patch_size=patch_size, target_magnification=target_magnification)
    grid = make_patch_grid(
        slide,
        tissue,
        patch_size=patch_size,
        target_magnification=target_magnification,
        min_tissue_fraction=min_tissue_fraction,
    )
    if qc_path is not None:
        tissue.save_qc(qc_path, boxes=grid.coords, box_size_level0=grid.patch_size_level0, max_size=qc_max_size)
    if mask_path is not None:
        tissue.save_mask(mask_path)
    return SlideTiling(grid, tissue)


def read_patches(slide: Slide, coords: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Read patches at level-0 top-left ``coords`` (``(n, 2)``, e.g. a slice of ``grid.coords``).

    Returns uint8 ``(n, patch_size, patch_size, 3)`` RGB, read at ``grid.read_level`` and resized.
    Raises :class:`DataError` (naming slide and region) when the tiles cannot be decoded.
    """
    return _read_regions(slide, coords, grid.read_level, grid.read_size, grid.patch_size)


def _read_regions(slide: Slide, coords: np.ndarray, level: int, read_size: int, patch_size: int) -> np.ndarray:
    import cv2

    xy = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    ps, rs = int(patch_size), int(read_size)
    out = np.empty((xy.shape[0], ps, ps, 3), np.uint8)
    interp = cv2.INTER_AREA if rs > ps else cv2.INTER_CUBIC
    for i, (x, y) in enumerate(xy.tolist()):
        img = slide.read_region((x, y), level, (rs, rs))
        if rs != ps:
            img = cv2.resize(img, (ps, ps), interpolation=interp)
        out[i] = img
    return out


class SlidePatchDataset(Dataset):
    """The patches of one slide's grid as a map-style torch ``Dataset``.

    Item ``i`` is ``transform(patch)`` where ``patch`` is the uint8 ``(patch_size, patch_size, 3)`` RGB array
    of ``grid.coords[i]`` (no transform: the array itself, which the default collate turns into a uint8
    ``(B, H, W, 3)`` tensor); with ``return_coords=True`` the item is ``(image, coords[i])``.

    The slide is opened lazily in the reading process and re-opened after a fork; pickling drops the open
    handle, so the dataset is safe with ``DataLoader(num_workers=N)``.  Call :meth:`close` when done.
    """

    def __init__(
        self,
        slide_path: str | os.PathLike[str],
        grid: PatchGrid,
        transform: Callable[[np.ndarray], Any] | None = None,
        *,
        return_coords: bool = False,
        backend: str = "auto",
    ) -> None:
        self.slide_path = str(Path(slide_path))
        self.grid = grid
        self.transform = transform
        self.return_coords = bool(return_coords)
        self.backend = backend
        self._slide: Slide | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.grid.n_patches

    def _open(self) -> Slide:
        pid = os.getpid()
        if self._slide is None or self._pid != pid:
            # after a fork the parent's handle must not be used (nor closed) here
            self._slide = open_slide(self.slide_path, backend=self.backend)
            self._pid = pid
        return self._slide

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"patch index {index} out of range for {n} patches of slide {self.grid.slide_id}")
        xy = self.grid.coords[i]
        img = read_patches(self._open(), xy[None, :], self.grid)[0]
        if self.transform is not None:
            img = self.transform(img)
        return (img, xy.copy()) if self.return_coords else img

    def close(self) -> None:
        if self._slide is not None and self._pid == os.getpid():
            self._slide.close()
        self._slide = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_slide"] = None
        state["_pid"] = None
        return state


@dataclass(frozen=True, eq=False)
class PatchBatchTask:
    """One batch of one slide's patches, as a DataLoader worker reads it (holds no open file; cheap to pickle).

    ``key`` names the slide for the consumer (e.g. its position in a run) and ``index`` the batch within it; both
    come back with the :class:`PatchBatch`. A task without coordinates reads nothing: it is a marker that lets a
    consumer see, in order, a slide that has no patches to encode.
    """

    key: int
    index: int
    slide_path: str
    coords: np.ndarray  #: (n, 2) int64 level-0 top-left corners
    read_level: int = 0
    read_size: int = 1
    patch_size: int = 1
    backend: str = "auto"

    @property
    def n_patches(self) -> int:
        return int(self.coords.shape[0])


class PatchBatch(NamedTuple):
    """What :class:`PatchBatchDataset` gives for one task: the transformed images (the uint8 ``(n, H, W, 3)``
    patches without a transform), or ``None`` with ``error`` saying why the slide could not be read."""

    key: int
    index: int
    images: Any
    error: str | None = None


def batch_tasks(grid: PatchGrid, batch_size: int, *, key: int = 0, backend: str = "auto") -> list[PatchBatchTask]:
    """The tasks reading ``grid``'s patches in order, ``batch_size`` at a time (the last batch may be smaller)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return [
        PatchBatchTask(
            key=key,
            index=j,
            slide_path=str(grid.slide_path),
            coords=np.ascontiguousarray(grid.coords[start : start + batch_size]),
            read_level=grid.read_level,
            read_size=grid.read_size,
            patch_size=grid.patch_size,
            backend=backend,
        )
        for j, start in enumerate(range(0, grid.n_patches, batch_size))
    ]


class PatchBatchDataset(Dataset):
    """A map-style ``Dataset`` whose items are :class:`PatchBatchTask` s, for DataLoader workers that read the
    batches of many slides (``DataLoader(ds, batch_size=None, sampler=<iterable of tasks>, ...)``).

    Item ``task`` is a :class:`PatchBatch`: the task's patches read (``read_patches``), then
    ``transform(uint8 (n, H, W, 3))`` -- a batch transform such as the encoders' ``PatchTransform`` -- or, without
    a transform, the uint8 array as a tensor. Slides are opened lazily in the process that reads them (never a
    handle inherited across a fork) and the ``max_open`` most recently used stay open. A slide that cannot be
    opened or decoded gives ``PatchBatch(key, index, None, "DataError: ...")`` instead of raising.

    Workers leave OpenCV's thread settings alone: ``cv2.setNumThreads`` in a process forked from one whose OpenCV
    thread pool has run hangs (OpenCV 5.0, measured), so no worker init function may call it.
    """

    def __init__(self, transform: Callable[[np.ndarray], Any] | None = None, *, max_open: int = 4) -> None:
        self.transform = transform
        self.max_open = max(1, int(max_open))
        self._open_slides: OrderedDict[tuple[str, str], Slide] = OrderedDict()
        self._pid: int | None = None

    def _slide(self, path: str, backend: str) -> Slide:
        pid = os.getpid()
        if self._pid != pid:  # after a fork: the parent's handles are neither used nor closed here
            self._open_slides = OrderedDict()
            self._pid = pid
        key = (path, backend)
        slide = self._open_slides.get(key)
        if slide is None:
            slide = open_slide(path, backend=backend)
            self._open_slides[key] = slide
            while len(self._open_slides) > self.max_open:
                self._open_slides.popitem(last=False)[1].close()
        self._open_slides.move_to_end(key)
        return slide

    def __getitem__(self, task: PatchBatchTask) -> PatchBatch:
        if task.n_patches == 0:
            return PatchBatch(task.key, task.index, None, None)
        try:
            slide = self._slide(task.slide_path, task.backend)
            images = _read_regions(slide, task.coords, task.read_level, task.read_size, task.patch_size)
        except SLIDE_ERRORS as exc:
            return PatchBatch(task.key, task.index, None, f"{type(exc).__name__}: {exc}")
        import torch

        out = self.transform(images) if self.transform is not None else torch.from_numpy(images)
        return PatchBatch(task.key, task.index, out, None)

    def close(self) -> None:
        """Close the slides this process opened."""
        if self._pid == os.getpid():
            for slide in self._open_slides.values():
                slide.close()
        self._open_slides = OrderedDict()
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open_slides"] = OrderedDict()
        state["_pid"] = None
        return state
