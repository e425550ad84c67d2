"""Whole-slide image reader: one :class:`Slide` interface over openslide, tiffslide and plain images.

Public API::

    open_slide(path, *, mpp_override=None, mpp_fallback=None, backend="auto") -> Slide
    load_mpp_overrides(csv_path) -> dict[str, float]       # table with columns slide_id, mpp
    mpp_to_magnification(mpp) / magnification_to_mpp(mag)  # 20x <-> 0.5 um/px (10 / mpp)
    BACKENDS, MPP_RANGE

:class:`Slide` exposes ``path``, ``slide_id``, ``backend``, ``dimensions`` (level-0 width, height),
``level_count``, ``level_dimensions``, ``level_downsamples``, ``mpp`` (um/px at level 0 or None),
``mpp_source``, ``objective_power`` (or None), ``properties`` (vendor metadata as strings) and the methods
``read_region(location, level, size)`` (RGB uint8 ``height x width x 3``; ``location`` in level-0 pixels),
``read_downsampled(downsample)``, ``thumbnail(max_size)``, ``best_level_for_downsample(ds)``,
``require_mpp()`` and ``close()``; it is a context manager and pickles as "re-open this path", so it can
be handed to DataLoader workers.

Backends, tried in this order by ``backend="auto"``:

* ``openslide`` (openslide-python + the openslide-bin wheel): Aperio SVS, generic tiled TIFF, NDPI, MRXS, ...
  Transparent pixels (outside the scanned area) are composited onto the slide's background colour (white
  unless ``openslide.background-color`` says otherwise).
* ``tiffslide`` when openslide cannot open the file (or is not installed). Because tiffslide opens files
  lazily, a file opened through the fallback is probed by decoding one pixel of its smallest level: a file
  whose pixels no backend can decode is reported as unopenable at once.
* ``image`` for ``.png``/``.jpg``/``.jpeg``/``.bmp``/``.webp``: the picture is decoded into memory as a
  single-level slide (MPP from the file's DPI when present).

MPP (microns per pixel at level 0) comes from, in order: ``mpp_override`` (a number, or a mapping such as
the one :func:`load_mpp_overrides` returns, keyed by slide id or file name; it replaces the metadata), the
backend's vendor metadata (``openslide.mpp-x`` / ``tiffslide.mpp-x``), the TIFF resolution tags of the first
page (unit inch or centimetre), and last ``mpp_fallback`` (used only when the metadata gives none).  Values
outside :data:`MPP_RANGE` (e.g. the 352.8 um/px of a 72-dpi default resolution) are ignored with a warning.
``Slide.mpp_source`` says where the MPP came from (``"<backend> metadata"``, ``"TIFF resolution tags"``,
``"override"``, ``"table"`` for a per-slide mapping, ``"fallback"``); ``Slide.mpp_metadata`` is the metadata's
own plausible value (or None), whichever was used.  Without any of them ``Slide.mpp`` is ``None`` and
:meth:`Slide.require_mpp` -- called by everything that needs a physical scale (segmentation areas, the patch
grid) -- raises a :class:`DataError` saying how to provide it (an override table ``slide_id,mpp``, or one value
for the slides whose metadata lacks it with ``--mpp``).

Errors are per slide: a file that cannot be opened raises :class:`DataError` from :func:`open_slide`; a
slide whose tiles cannot be decoded opens fine and raises :class:`DataError` from ``read_region``.  Both
name the file, so a batch can log the slide as failed and go on with the next one.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.data.slides import IMAGE_SUFFIXES, MAG_TIMES_MPP, slide_stem
from survpgc.errors import ConfigError, DataError, InputError, SurvpgcError

__all__ = [
    "BACKENDS",
    "MPP_RANGE",
    "SLIDE_ERRORS",
    "Slide",
    "load_mpp_overrides",
    "magnification_to_mpp",
    "mpp_to_magnification",
    "open_slide",
]

log = logging.getLogger(__name__)

#: Reader backends (``"auto"`` picks one per file).
BACKENDS: tuple[str, ...] = ("openslide", "tiffslide", "image")
#: Plausible microns per pixel at level 0; values outside are treated as missing.
MPP_RANGE: tuple[float, float] = (0.01, 50.0)

_CHUNK = 4096  # level pixels per side read at once by read_downsampled

#: Errors that make one slide unusable (a batch records the slide as failed and goes on); anything else is a bug.
SLIDE_ERRORS: tuple[type[Exception], ...] = (SurvpgcError, OSError, RuntimeError, ValueError)


def mpp_to_magnification(mpp: float) -> float:
    """Nominal objective magnification of a resolution (``10 / mpp``: 0.5 um/px is 20x, 0.25 um/px is 40x)."""
    return MAG_TIMES_MPP / float(mpp)


def magnification_to_mpp(magnification: float) -> float:
    """Microns per pixel of a nominal magnification (``10 / magnification``: 20x is 0.5 um/px)."""
    if isinstance(magnification, bool) or not isinstance(magnification, int | float) or not magnification > 0:
        raise InputError(f"magnification must be a positive number, got {magnification!r}")
    return MAG_TIMES_MPP / float(magnification)


def load_mpp_overrides(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read an MPP override table: a CSV with columns ``slide_id`` and ``mpp`` (um/px at level 0).

    ``slide_id`` may be a file name (``TCGA-XX.svs``) or its stem (``TCGA-XX``); keys of the returned dict
    are stems (see :func:`survpgc.data.slides.slide_stem`), which is what :func:`open_slide` looks up.

    Raises:
        DataError: missing file or columns, an empty id, an mpp that is not a positive number in
            :data:`MPP_RANGE`, or one slide listed twice with different values (the message names the row).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"MPP override table {p} does not exist")
    from survpgc.data.cohort import read_table  # the one reader of user tables (encoding, separator, header)

    out: dict[str, float] = {}
    table = read_table(p, dtype=str, keep_default_na=False)
    table.columns = [str(c).strip() for c in table.columns]
    cols = list(table.columns)
    if "slide_id" not in cols or "mpp" not in cols:
        raise DataError(f"MPP override table {p} needs the columns slide_id,mpp; found {cols}")
    for row_no, sid, value in zip(range(2, len(table) + 2), table["slide_id"], table["mpp"], strict=True):
        sid, value = str(sid).strip(), str(value).strip()
        if not sid and not value:
            continue
        if not sid:
            raise DataError(f"MPP override table {p}, row {row_no}: empty slide_id")
        try:
            mpp = float(value)
        except ValueError:
            raise DataError(f"MPP override table {p}, row {row_no} ({sid}): mpp {value!r} is not a number") from None
        if not (math.isfinite(mpp) and MPP_RANGE[0] <= mpp <= MPP_RANGE[1]):
            raise DataError(
                f"MPP override table {p}, row {row_no} ({sid}): mpp {value!r} is not a plausible resolution "
                f"in um/px (expected {MPP_RANGE[0]}..{MPP_RANGE[1]}, e.g. 0.25 for 40x, 0.5 for 20x)"
            )
        key = slide_stem(sid)
        if key in out and not math.isclose(out[key], mpp, rel_tol=1e-9):
            raise DataError(f"MPP override table {p}, row {row_no}: slide {sid} listed twice with different mpp")
        out[key] = mpp
    return out


def _mpp_help(slide_id: str) -> str:
    return (
        f"provide it with an MPP override table (a CSV with columns slide_id,mpp, e.g. '{slide_id},0.25' for a "
        "40x scan; load_mpp_overrides() / --mpp-table) or one value for the slides whose metadata lacks it "
        "(mpp_fallback= / --mpp)"
    )


def _plausible(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and MPP_RANGE[0] <= value <= MPP_RANGE[1]


def _as_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _tiff_resolution_mpp(path: Path) -> float | None:
    """MPP from the XResolution / ResolutionUnit tags of the first TIFF page (None when absent or unitless)."""
    if path.suffix.lower() not in (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif"):
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            xres, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
            if xres is None or unit is None:
                return None
            num, den = xres.value if isinstance(xres.value, tuple) else (xres.value, 1)
            per_unit = float(num) / float(den) if den else 0.0
            unit_um = {2: 25400.0, 3: 10000.0}.get(int(unit.value))
            if not per_unit > 0 or unit_um is None:
                return None
            return unit_um / per_unit
    except Exception as exc:  # unreadable tags are not an error here: MPP is just unknown
        log.debug("%s: no TIFF resolution (%s)", path, exc)
        return None


class _Backend:
    """What a backend provides; :class:`Slide` does the validation and conversions."""

    name = ""
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    properties: dict[str, str]
    background: tuple[int, int, int] = (255, 255, 255)

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def mpp(self) -> float | None:
        return None

    def objective_power(self) -> float | None:
        return None

    def close(self) -> None:
        return None


def _to_rgb(arr: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """RGB uint8 from gray / gray+alpha / RGB / RGBA (non-premultiplied alpha composited onto ``background``)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        if a.dtype == np.uint16:
            a = (a >> 8).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    c = a.shape[2]
    if c == 4 and a.flags.c_contiguous:  # openslide's RGBA: OpenCV drops an opaque alpha ~25x faster than numpy
        import cv2

        if cv2.minMaxLoc(cv2.extractChannel(a, 3))[0] == 255:
            return cv2.cvtColor(a, cv2.COLOR_RGBA2RGB)
    if c in (2, 4):
        alpha = a[:, :, -1]
        color = a[:, :, :-1]
        if c == 2:
            color = np.repeat(color, 3, axis=2)
        if (alpha == 255).all():
            a = color
        else:
            w = alpha[:, :, None].astype(np.float32) / 255.0
            bg = np.asarray(background, np.float32)
            a = np.rint(color.astype(np.float32) * w + bg * (1.0 - w)).astype(np.uint8)
    elif c == 1:
        a = np.repeat(a, 3, axis=2)
    elif c > 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a[:, :, :3])


class _OpenSlideBackend(_Backend):
    name = "openslide"

    def __init__(self, path: Path) -> None:
        import openslide

        self._osr = openslide.OpenSlide(str(path))
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self._osr.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._osr.level_downsamples)
        self.properties = {str(k): str(v) for k, v in self._osr.properties.items()}
        bg = self.properties.get("openslide.background-color", "")
        if len(bg) == 6:
            try:
                self.background = (int(bg[0:2], 16), int(bg[2:4], 16), int(bg[4:6], 16))
            except ValueError:
                pass

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        img = self._osr.read_region(location, level, size)
        return _to_rgb(np.asarray(img), self.background)

    def mpp(self) -> float | None:
        return _as_float(self.properties.get("openslide.mpp-x"))

    def objective_power(self) -> float | None:
        return _as_float(self.properties.get("openslide.objective-power"))

    def close(self) -> None:
        self._osr.close()


class _TiffSlideBackend(_Backend):
    name = "tiffslide"

    def __init__(self, path: Path) -> None:
        import tiffslide

        self._ts = tiffslide.TiffSlide(str(path))
        try:
            self.level_dimensions = tuple((int(w), int(h)) for w, h in self._ts.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in self._ts.level_downsamples)
            self.properties = {str(k): str(v) for k, v in self._ts.properties.items() if v is not None}
            self._mpp = _as_float(self._ts.properties.get("tiffslide.mpp-x"))
            self._power = _as_float(self._ts.properties.get("tiffslide.objective-power"))
            # tiffslide decodes lazily: make sure the pixels can be decoded at all
            last = len(self.level_dimensions) - 1
            self._ts.read_region((0, 0), last, (1, 1), as_array=True)
        except BaseException:
            self._ts.close()
            raise

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        return _to_rgb(self._ts.read_region(location, level, size, as_array=True), self.background)

    def mpp(self) -> float | None:
        return self._mpp

    def objective_power(self) -> float | None:
        return self._power

    def close(self) -> None:
        self._ts.close()


class _ImageBackend(_Backend):
    name = "image"

    def __init__(self, path: Path) -> None:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            dpi = im.info.get("dpi")
            mode = im.mode
            if mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA" if "A" in mode or "transparency" in im.info else "RGB")
            self._rgb = _to_rgb(np.asarray(im), self.background)
        h, w = self._rgb.shape[:2]
        self.level_dimensions = ((w, h),)
        self.level_downsamples = (1.0,)
        self.properties = {"image.format": path.suffix.lower().lstrip(".")}
        self._mpp: float | None = None
        if isinstance(dpi, tuple) and dpi and _as_float(dpi[0]):
            self._mpp = 25400.0 / float(dpi[0])
            self.properties["image.dpi"] = str(dpi[0])

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        x, y = location
        w, h = size
        out = np.empty((h, w, 3), np.uint8)
        out[...] = np.asarray(self.background, np.uint8)
        ih, iw = self._rgb.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, iw), min(y + h, ih)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._rgb[y0:y1, x0:x1]
        return out

    def mpp(self) -> float | None:
        return self._mpp

    def close(self) -> None:
        self._rgb = np.zeros((0, 0, 3), np.uint8)


def _open_backend(path: Path, backend: str) -> _Backend:
    """Open ``path`` with one backend, or with the ``auto`` fallback chain; DataError when nothing opens it."""
    if backend == "image" or (backend == "auto" and path.suffix.lower() in IMAGE_SUFFIXES):
        try:
            return _ImageBackend(path)
        except Exception as exc:
            raise DataError(f"slide {path}: cannot be opened as an image ({type(exc).__name__}: {exc})") from exc
    order = ("openslide", "tiffslide") if backend == "auto" else (backend,)
    failures: list[str] = []
    for name in order:
        try:
            if name == "openslide":
                return _OpenSlideBackend(path)
            return _TiffSlideBackend(path)
        except ImportError as exc:
            failures.append(f"{name}: not installed ({exc}; pip install 'survpgc[wsi]')")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        log.debug("%s: %s", path, failures[-1])
    if all("not installed" in f for f in failures):
        raise ConfigError(f"slide {path}: no slide reader is installed ({'; '.join(failures)})")
    raise DataError(
        f"slide {path}: cannot be opened ({'; '.join(failures)}); the file is corrupt, truncated or in an "
        "unsupported format -- this slide is skipped"
    )


class Slide:
    """An open whole-slide image (use :func:`open_slide`). Pixel coordinates are level-0 ``(x, y)``."""

    def __init__(
        self,
        path: Path,
        backend: _Backend,
        *,
        mpp_override: float | None = None,
        requested_backend: str = "auto",
        mpp_fallback: float | None = None,
        override_source: str = "override",
    ) -> None:
        self.path = path
        self.slide_id = slide_stem(path)
        self._b: _Backend | None = backend
        self._requested_backend = requested_backend
        self._override = mpp_override
        self._fallback = mpp_fallback
        self._override_source = override_source
        self.mpp_metadata: float | None = None
        self.backend: str = backend.name
        self.level_dimensions: tuple[tuple[int, int], ...] = backend.level_dimensions
        self.level_downsamples: tuple[float, ...] = backend.level_downsamples
        self.properties: dict[str, str] = dict(backend.properties)
        if not self.level_dimensions or min(min(d) for d in self.level_dimensions) < 1:
            raise DataError(f"slide {path}: the file holds no image pixels (levels {self.level_dimensions})")
        power = backend.objective_power()
        self.objective_power: float | None = power if power is not None and power > 0 else None
        self.mpp, self.mpp_source = self._resolve_mpp(backend)

    # ------------------------------------------------------------------ metadata
    def _resolve_mpp(self, backend: _Backend) -> tuple[float | None, str | None]:
        found = backend.mpp()
        source = f"{backend.name} metadata"
        if found is None and backend.name != "image":
            found = _tiff_resolution_mpp(self.path)
            source = "TIFF resolution tags"
        if found is not None and _plausible(found):
            self.mpp_metadata = float(found)
        if self._override is not None:
            if found is not None and _plausible(found) and not math.isclose(found, self._override, rel_tol=0.02):
                log.info(
                    "%s: MPP override %.4g um/px replaces %.4g from %s", self.slide_id, self._override, found, source
                )
            return float(self._override), self._override_source
        if found is not None and not _plausible(found):
            log.warning(
                "%s: ignoring implausible MPP %.4g um/px from %s (expected %g..%g); %s",
                self.slide_id,
                found,
                source,
                *MPP_RANGE,
                "using the fallback MPP" if self._fallback is not None else _mpp_help(self.slide_id),
            )
            self.properties["survpgc.ignored-mpp"] = f"{found:.4g}"
            found = None
        if found is None:
            if self._fallback is not None:
                log.info("%s: no MPP in the metadata; using the fallback %.4g um/px", self.slide_id, self._fallback)
                return float(self._fallback), "fallback"
            return None, None
        return float(found), source

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)`` in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def magnification(self) -> float | None:
        """Nominal magnification from the MPP (``10 / mpp``), or None when the MPP is unknown."""
        return None if self.mpp is None else mpp_to_magnification(self.mpp)

    def require_mpp(self) -> float:
        """The level-0 MPP, or a :class:`DataError` that says it is missing and how to provide it."""
        if self.mpp is None:
            ignored = self.properties.get("survpgc.ignored-mpp")
            why = (
                f"its metadata gives an implausible {ignored} um/px (ignored)"
                if ignored
                else "its metadata has no microns-per-pixel (openslide.mpp-x / tiffslide.mpp-x / TIFF resolution)"
            )
            raise DataError(
                f"slide {self.path}: MPP (um per pixel at level 0) is missing -- {why}, and a target "
                f"magnification needs it; {_mpp_help(self.slide_id)}"
            )
        return self.mpp

    def best_level_for_downsample(self, downsample: float) -> int:
        """The level with the largest downsample <= ``downsample`` (1 % tolerance); 0 when none is."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= float(downsample) * 1.01 and d >= self.level_downsamples[best]:
                best = i
        return best

    # ------------------------------------------------------------------ pixels
    def _backend(self) -> _Backend:
        if self._b is None:
            raise InputError(f"slide {self.path} is closed")
        return self._b

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array ``(h, w, 3)`` of ``size = (w, h)`` pixels of ``level``, top-left at level-0 ``location``.

        Raises:
            InputError: bad level or size.
            DataError: the backend cannot decode the region (corrupt tiles); names the slide and region.
        """
        b = self._backend()
        if not 0 <= int(level) < self.level_count:
            raise InputError(f"slide {self.slide_id}: level {level} out of range 0..{self.level_count - 1}")
        w, h = int(size[0]), int(size[1])
        if w < 1 or h < 1:
            raise InputError(f"slide {self.slide_id}: region size must be positive, got {size}")
        x, y = int(location[0]), int(location[1])
        try:
            out = b.read((x, y), int(level), (w, h))
        except Exception as exc:
            raise DataError(
                f"slide {self.path}: cannot read region at level-0 ({x}, {y}), level {level}, size {w}x{h} "
                f"with {b.name} ({type(exc).__name__}: {exc}); the file's tiles are corrupt or undecodable -- "
                "this slide is skipped"
            ) from exc
        if out.shape != (h, w, 3):
            raise DataError(f"slide {self.path}: {b.name} returned {out.shape} for a {w}x{h} region")
        return out

    def read_downsampled(self, downsample: float) -> np.ndarray:
        """The whole slide at ``level-0 size / downsample`` (rounded, >= 1 px), from the best level, area-resized.

        Large levels are read in blocks of about 4096 x 4096 level pixels, so memory stays bounded by the output.
        """
        import cv2

        ds = float(downsample)
        if not ds > 0:
            raise InputError(f"downsample must be positive, got {downsample!r}")
        w0, h0 = self.dimensions
        ow, oh = max(1, round(w0 / ds)), max(1, round(h0 / ds))
        level = self.best_level_for_downsample(ds)
        lw, lh = self.level_dimensions[level]
        lds = self.level_downsamples[level]
        sx, sy = ow / lw, oh / lh  # output px per level px
        out = np.empty((oh, ow, 3), np.uint8)
        # iterate over output blocks; each maps back to a level rectangle (to within half a level pixel)
        bx, by = max(1, int(_CHUNK * sx)), max(1, int(_CHUNK * sy))
        for oy0 in range(0, oh, by):
            oy1 = min(oh, oy0 + by)
            ly0 = min(round(oy0 / sy), lh - 1)
            ly1 = min(lh, max(round(oy1 / sy), ly0 + 1))
            for ox0 in range(0, ow, bx):
                ox1 = min(ow, ox0 + bx)
                lx0 = min(round(ox0 / sx), lw - 1)
                lx1 = min(lw, max(round(ox1 / sx), lx0 + 1))
                tile = self.read_region((round(lx0 * lds), round(ly0 * lds)), level, (lx1 - lx0, ly1 - ly0))
                if tile.shape[:2] != (oy1 - oy0, ox1 - ox0):
                    interp = cv2.INTER_AREA if (ox1 - ox0) < tile.shape[1] else cv2.INTER_LINEAR
                    tile = cv2.resize(tile, (ox1 - ox0, oy1 - oy0), interpolation=interp)
                out[oy0:oy1, ox0:ox1] = tile
        return out

    def thumbnail(self, max_size: int | tuple[int, int] = 1024) -> np.ndarray:
        """RGB uint8 thumbnail that fits in ``max_size`` (one int or ``(w, h)``), aspect ratio kept."""
        mw, mh = (max_size, max_size) if isinstance(max_size, int) else max_size
        if int(mw) < 1 or int(mh) < 1:
            raise InputError(f"max_size must be positive, got {max_size!r}")
        w0, h0 = self.dimensions
        return self.read_downsampled(max(w0 / int(mw), h0 / int(mh), 1.0))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._b is not None:
            self._b.close()
            self._b = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # pickles as "re-open the file": open handles never cross process boundaries
        return (
            _reopen,
            (str(self.path), self._override, self._requested_backend, self._fallback, self._override_source),
        )

    def __repr__(self) -> str:
        mpp = "unknown" if self.mpp is None else f"{self.mpp:.4g}"
        return (
            f"Slide({self.slide_id!r}, backend={self.backend}, dimensions={self.dimensions}, "
            f"levels={self.level_count}, mpp={mpp})"
        )


def _reopen(
    path: str,
    mpp_override: float | None,
    backend: str,
    mpp_fallback: float | None = None,
    override_source: str = "override",
) -> Slide:
    override: float | Mapping[str, float] | None = mpp_override
    if mpp_override is not None and override_source == "table":
        override = {slide_stem(Path(path)): mpp_override}
    return open_slide(path, mpp_override=override, mpp_fallback=mpp_fallback, backend=backend)


def open_slide(
    path: str | os.PathLike[str],
    *,
    mpp_override: float | Mapping[str, float] | None = None,
    backend: str = "auto",
    mpp_fallback: float | None = None,
) -> Slide:
    """Open a whole-slide image (or a plain PNG/JPEG) as a :class:`Slide`.

    Args:
        path: the slide file.
        mpp_override: level-0 um/px that replaces the metadata: one number, or a mapping slide id -> mpp
            (:func:`load_mpp_overrides`; looked up by the file's stem, then its full name; a slide not in the
            mapping keeps its metadata MPP). ``Slide.mpp_source`` is then ``"override"`` (a number) or
            ``"table"`` (a mapping).
        mpp_fallback: level-0 um/px used only when the metadata gives no plausible MPP (and no override
            applies); ``Slide.mpp_source`` is then ``"fallback"``.
        backend: ``"auto"`` (openslide, then tiffslide; plain images in memory) or one of :data:`BACKENDS`.

    Raises:
        DataError: the file does not exist or no backend can open it (message names the file and each
            backend's reason).
        ConfigError: unknown backend, or no reader installed.
        InputError: an override that is not a plausible positive number.
    """
    p = Path(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"unknown slide backend {backend!r}; choose 'auto' or one of {BACKENDS}")
    if not p.is_file():
        raise DataError(f"slide {p} does not exist (or is not a file)")
    override: float | None
    source = "override"
    if isinstance(mpp_override, Mapping):
        value = mpp_override.get(slide_stem(p), mpp_override.get(p.name))
        override = None if value is None else float(value)
        source = "table"
    else:
        override = None if mpp_override is None else _as_float(mpp_override)
        if mpp_override is not None and override is None:
            raise InputError(f"mpp_override must be a number (um/px), got {mpp_override!r}")
    if override is not None and not _plausible(override):
        raise InputError(
            f"mpp_override {override!r} for slide {p.name} is not a plausible resolution in um/px "
            f"(expected {MPP_RANGE[0]}..{MPP_RANGE[1]}, e.g. 0.25 for 40x, 0.5 for 20x)"
        )
    fallback = None if mpp_fallback is None else _as_float(mpp_fallback)
    if mpp_fallback is not None and not _plausible(fallback):
        raise InputError(
            f"fallback MPP {mpp_fallback!r} (--mpp) is not a plausible resolution in um/px "
            f"(expected {MPP_RANGE[0]}..{MPP_RANGE[1]}, e.g. 0.25 for 40x, 0.5 for 20x)"
        )
    b = _open_backend(p, backend)
    try:
        return Slide(
            p, b, mpp_override=override, requested_backend=backend, mpp_fallback=fallback, override_source=source
        )
    except BaseException:
        b.close()
        raise
