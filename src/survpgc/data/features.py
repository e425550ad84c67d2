"""Patch-feature files: one slide's patch features on disk, read and written in one place.

Formats, chosen by the suffix:

* ``.h5`` / ``.hdf5`` -- the CLAM/TRIDENT layout: dataset ``features`` (n x d), dataset ``coords`` (n x 2
  level-0 x/y of each patch's top-left corner), attributes on the file, the ``features`` and the ``coords``
  datasets. TRIDENT keeps the patching geometry on ``coords`` (:data:`TRIDENT_COORDS_ATTRS`: ``patch_size``
  at the target magnification, ``patch_size_level0``, ``level0_magnification``, ``target_magnification``,
  ``overlap``, ``name``, ``savetodir``), and slide encoders such as TITAN read ``coords.attrs
  ['patch_size_level0']``. :func:`write_feature_file` writes those on ``coords`` (plus survpgc's own geometry
  ``mpp``, ``slide_id``, ``level0_width``, ``level0_height``) and every attribute at the file root as well;
  the readers accept files whose geometry is only on ``coords`` under TRIDENT's names, and add survpgc's
  names when absent: ``slide_id`` from ``name``, ``mpp`` = 10 / ``level0_magnification``,
  ``patch_size_level0`` = ``patch_size`` x ``level0_magnification`` / ``target_magnification``.
* ``.pt`` / ``.pth`` -- a 2-D tensor, or a dict with ``features`` (+ ``coords`` and plain attribute values).
  Loaded with ``weights_only=True``: arbitrary pickled objects are never executed.

:func:`read_feature_file` returns ``(features, coords, attrs)`` (:data:`FeatureFile`); :func:`feature_file_shape`
and :func:`read_feature_attrs` read only the HDF5 header; :func:`write_feature_file` writes atomically and only
what :func:`read_feature_file` accepts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from survpgc.data.slides import MAG_TIMES_MPP
from survpgc.errors import DataError, InputError
from survpgc.faults import fault_point
from survpgc.files import atomic_write

__all__ = [
    "EXTRACTION_RECORD",
    "TRIDENT_COORDS_ATTRS",
    "FeatureFile",
    "feature_file_shape",
    "read_feature_attrs",
    "read_feature_file",
    "trident_coords_attrs",
    "write_feature_file",
]

#: The settings record of a feature folder written by ``survpgc extract`` (read by the feature store too).
EXTRACTION_RECORD = "extraction.json"

_H5_SUFFIXES = (".h5", ".hdf5")
_PT_SUFFIXES = (".pt", ".pth")

#: ``(features n x d, coords n x 2 int64 or None, attrs)`` as returned by :func:`read_feature_file`.
FeatureFile = tuple[np.ndarray, np.ndarray | None, dict[str, Any]]

#: The attributes TRIDENT writes on the ``coords`` dataset (and its readers look up there).
TRIDENT_COORDS_ATTRS: tuple[str, ...] = (
    "patch_size",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
    "name",
    "savetodir",
)
#: survpgc's own geometry attributes, written on ``coords`` next to TRIDENT's.
_OWN_GEOMETRY_ATTRS: tuple[str, ...] = ("mpp", "slide_id", "level0_width", "level0_height")


def _plain(value: Any) -> Any:
    """HDF5/torch attribute value -> plain Python (str, int, float, bool, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _H5_SUFFIXES:
        return "h5"
    if suffix in _PT_SUFFIXES:
        return "pt"
    raise DataError(f"{path}: unknown feature-file type {path.suffix!r}; expected .h5/.hdf5 (CLAM/TRIDENT) or .pt")


def _as_features(arr: Any, path: Path) -> np.ndarray:
    """Check shape/dtype/finiteness of a features array; float16 stays float16, other floats -> float32."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] == 1:  # some pipelines store a leading batch axis of 1
        a = a[0]
    if a.ndim != 2:
        raise DataError(f"{path}: 'features' must be 2-D (n_patches x dim), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise DataError(f"{path}: 'features' must be floating point, got dtype {a.dtype}")
    if a.shape[0] == 0:
        raise DataError(f"{path}: 'features' has zero patches (shape {a.shape}); re-run feature extraction")
    if a.shape[1] == 0:
        raise DataError(f"{path}: 'features' has feature dim 0 (shape {a.shape})")
    if a.dtype not in (np.float16, np.float32):
        a = a.astype(np.float32)
    # cheap check: one float64 reduction (no n x d boolean temporary); NaN/inf propagate into the sum
    if not np.isfinite(np.sum(a, dtype=np.float64)):
        bad = ~np.isfinite(a)
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{path}: {int(bad.sum())} NaN/inf value(s) in 'features' in {len(rows)} patch(es) "
            f"(first rows {rows[:5].tolist()}); re-run feature extraction for this slide"
        )
    return a


def _as_coords(arr: Any, n: int, path: Path) -> np.ndarray:
    c = np.asarray(arr)
    if c.ndim == 3 and c.shape[0] == 1:
        c = c[0]
    if c.ndim != 2 or c.shape[1] != 2:
        raise DataError(f"{path}: 'coords' must have shape (n_patches, 2), got {c.shape}")
    if c.shape[0] != n:
        raise DataError(f"{path}: 'coords' has {c.shape[0]} rows but 'features' has {n} patches")
    if c.dtype.kind not in "iuf":
        raise DataError(f"{path}: 'coords' must be numeric, got dtype {c.dtype}")
    if c.dtype.kind == "f" and not np.isfinite(c).all():
        raise DataError(f"{path}: 'coords' contains NaN/inf")
    return c.astype(np.int64, copy=False)


@contextmanager
def _open_h5(path: Path) -> Iterator[tuple[Any, Any]]:
    """``(file, features dataset)`` of an HDF5 feature file; any read error inside the block becomes a
    :class:`DataError` naming the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "features" not in f:
                raise DataError(f"{path}: no 'features' dataset (found: {sorted(f.keys())}); not a patch-feature file?")
            fds = f["features"]
            if not isinstance(fds, h5py.Dataset):
                raise DataError(f"{path}: 'features' is a group, not a dataset")
            yield f, fds
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot be read as an HDF5 feature file: {exc}") from exc


def _h5_attrs(f: Any, fds: Any) -> dict[str, Any]:
    """File attributes, root winning over ``features`` winning over ``coords`` attributes."""
    import h5py

    attrs: dict[str, Any] = {}
    cds = f.get("coords")
    if isinstance(cds, h5py.Dataset):
        attrs.update({k: _plain(v) for k, v in cds.attrs.items()})
    attrs.update({k: _plain(v) for k, v in fds.attrs.items()})
    attrs.update({k: _plain(v) for k, v in f.attrs.items()})
    return attrs


def _read_h5(path: Path) -> FeatureFile:
    import h5py

    with _open_h5(path) as (f, fds):
        attrs = _h5_attrs(f, fds)
        cds = f.get("coords")
        feats = fds[()]
        coords = cds[()] if isinstance(cds, h5py.Dataset) else None
    feats = _as_features(feats, path)
    return feats, (None if coords is None else _as_coords(coords, feats.shape[0], path)), attrs


def _tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def _read_pt(path: Path) -> FeatureFile:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise DataError(
            f"{path}: cannot be read as a torch feature file (loaded with weights_only=True, so only tensors "
            f"and plain containers are accepted): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    attrs: dict[str, Any] = {}
    coords = None
    if isinstance(obj, torch.Tensor):
        feats = obj
    elif isinstance(obj, Mapping):
        if "features" not in obj:
            raise DataError(f"{path}: dict has no 'features' entry (keys: {sorted(map(str, obj))[:10]})")
        feats, coords = obj["features"], obj.get("coords")
        for k, v in obj.items():
            if k not in ("features", "coords") and isinstance(v, (str, int, float, bool, list, tuple)):
                attrs[str(k)] = _plain(list(v) if isinstance(v, tuple) else v)
    else:
        raise DataError(f"{path}: expected a 2-D tensor or a dict with 'features', got {type(obj).__name__}")
    if not isinstance(feats, torch.Tensor):
        raise DataError(f"{path}: 'features' must be a tensor, got {type(feats).__name__}")
    if coords is not None and not isinstance(coords, torch.Tensor):
        raise DataError(f"{path}: 'coords' must be a tensor, got {type(coords).__name__}")
    f = _as_features(_tensor_to_numpy(feats), path)
    c = None if coords is None else _as_coords(_tensor_to_numpy(coords), f.shape[0], path)
    return f, c, attrs


def read_feature_file(path: str | Path) -> FeatureFile:
    """Read one slide's patch features.

    Parameters
    ----------
    path
        ``.h5``/``.hdf5`` (CLAM/TRIDENT: dataset ``features`` n x d, optional ``coords`` n x 2, attributes)
        or ``.pt``/``.pth`` (a 2-D tensor, or a dict with ``features`` and optional ``coords``).

    Returns
    -------
    features : numpy.ndarray, shape (n_patches, dim)
        float16 when stored as float16, float32 otherwise.
    coords : numpy.ndarray of int64, shape (n_patches, 2), or None
        Level-0 (x, y) of each patch's top-left corner, when the file has them.
    attrs : dict
        File attributes as plain Python values (root attributes win over ``features``/``coords`` ones),
        with survpgc's names added where only TRIDENT's are present (module docstring).

    Raises
    ------
    DataError
        Naming the file: missing/unreadable file, no ``features``, wrong shape, zero patches, NaN/inf,
        ``coords`` whose length differs from ``features``.
    """
    p = _existing(path)
    feats, coords, attrs = _read_h5(p) if _kind(p) == "h5" else _read_pt(p)
    return feats, coords, _with_own_names(attrs)


def feature_file_shape(path: str | Path) -> tuple[int, int]:
    """``(n_patches, dim)`` of a feature file; reads only the HDF5 header (``.pt`` files are loaded)."""
    p = _existing(path)
    if _kind(p) == "pt":
        feats, _, _ = read_feature_file(p)
        return int(feats.shape[0]), int(feats.shape[1])
    with _open_h5(p) as (_, fds):
        shape = tuple(fds.shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise DataError(f"{p}: 'features' must be 2-D (n_patches x dim), got shape {shape}")
    return int(shape[0]), int(shape[1])


def read_feature_attrs(path: str | Path) -> dict[str, Any]:
    """The attributes of a feature file (as :func:`read_feature_file` returns them) without reading the
    features: only the HDF5 header (``.pt`` files are loaded whole)."""
    p = _existing(path)
    if _kind(p) == "pt":
        return read_feature_file(p)[2]
    with _open_h5(p) as (f, fds):
        return _with_own_names(_h5_attrs(f, fds))


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: feature file not found")
    return p


def write_feature_file(path: str | Path, features: Any, coords: Any | None = None, **attrs: Any) -> Path:
    """Write one slide's patch features atomically (temporary file in the same folder, then rename).

    The format follows the suffix: ``.h5``/``.hdf5`` (datasets ``features``, ``coords``; ``attrs`` as root
    attributes, and the TRIDENT geometry on ``coords`` -- see :func:`trident_coords_attrs`) or ``.pt``/``.pth``
    (a dict ``{'features', 'coords', **attrs}``).
    float16 features are kept as float16, other floats written as float32; coords as int64. Attributes whose
    value is None are skipped. Only files that :func:`read_feature_file` accepts are written.

    Raises
    ------
    InputError
        Features not 2-D floating point, empty, non-finite, or coords not (n_patches, 2).
    """
    p = Path(path)
    kind = _kind(p)
    feats = _tensor_to_numpy(features) if isinstance(features, torch.Tensor) else np.asarray(features)
    try:
        feats = _as_features(feats, p)
        crd = (
            None
            if coords is None
            else _as_coords(
                _tensor_to_numpy(coords) if isinstance(coords, torch.Tensor) else np.asarray(coords), feats.shape[0], p
            )
        )
    except DataError as exc:
        raise InputError(f"write_feature_file: {exc}") from exc
    attrs = {k: _plain(v) for k, v in attrs.items() if v is not None}

    def write(tmp: Path) -> None:
        if kind == "h5":
            import h5py

            with h5py.File(tmp, "w") as f:
                fds = f.create_dataset("features", data=feats)
                f.flush()  # some data in the temporary file: a kill here must leave nothing under the final name
                fault_point("h5-write")
                if crd is not None:
                    geometry = trident_coords_attrs(attrs, p)
                    f.create_dataset("coords", data=crd).attrs.update(geometry)
                    fds.attrs.update({k: geometry[k] for k in ("name", "savetodir")})
                f.attrs.update(attrs)
        else:
            obj: dict[str, Any] = {"features": torch.from_numpy(np.ascontiguousarray(feats))}
            if crd is not None:
                obj["coords"] = torch.from_numpy(np.ascontiguousarray(crd))
            obj.update(attrs)
            torch.save(obj, tmp)

    atomic_write(p, write)
    return p


# ============================================================================ TRIDENT geometry names
def _positive(value: Any) -> float | None:
    """A finite number > 0 as float, else None (missing or meaningless geometry)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    v = float(value)
    return v if np.isfinite(v) and v > 0 else None


def trident_coords_attrs(attrs: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """The attributes written on the ``coords`` dataset of an HDF5 feature file at ``path``.

    TRIDENT's geometry (:data:`TRIDENT_COORDS_ATTRS`), each when known: ``patch_size`` and
    ``target_magnification`` as given; ``level0_magnification`` as given, else ``10 / mpp`` (the slide's
    level-0 resolution, consistent with how the grid placed the patches); ``patch_size_level0`` as given, else
    ``round(patch_size * level0_magnification / target_magnification)``; ``overlap`` as given, else 0 (the
    grid does not overlap); ``name`` as given, else ``slide_id``, else the file stem; ``savetodir`` as given,
    else the file's folder. Plus survpgc's own geometry attributes present in ``attrs``.
    """
    p = Path(path)
    out: dict[str, Any] = {k: attrs[k] for k in ("patch_size", "target_magnification") if k in attrs}
    mpp = _positive(attrs.get("mpp"))
    l0_mag = attrs.get("level0_magnification", MAG_TIMES_MPP / mpp if mpp else None)
    if l0_mag is not None:
        out["level0_magnification"] = l0_mag
    ps0 = attrs.get("patch_size_level0")
    size, l0, target = (
        _positive(attrs.get("patch_size")),
        _positive(l0_mag),
        _positive(attrs.get("target_magnification")),
    )
    if ps0 is None and size and l0 and target:
        ps0 = max(1, round(size * l0 / target))
    if ps0 is not None:
        out["patch_size_level0"] = ps0
    out["overlap"] = attrs.get("overlap", 0)
    out["name"] = str(attrs.get("name", attrs.get("slide_id", p.stem)))
    out["savetodir"] = str(attrs.get("savetodir", p.parent))
    out.update({k: attrs[k] for k in _OWN_GEOMETRY_ATTRS if k in attrs})
    return out


def _with_own_names(attrs: dict[str, Any]) -> dict[str, Any]:
    """Add survpgc's geometry names where a file has only TRIDENT's (nothing present is overwritten)."""
    out = dict(attrs)
    if "slide_id" not in out and isinstance(out.get("name"), str):
        out["slide_id"] = out["name"]
    l0 = _positive(out.get("level0_magnification"))
    if "mpp" not in out and l0:
        out["mpp"] = MAG_TIMES_MPP / l0
    size, target = _positive(out.get("patch_size")), _positive(out.get("target_magnification"))
    if "patch_size_level0" not in out and size and l0 and target:
        out["patch_size_level0"] = max(1, round(size * l0 / target))
    return out
