"""Torch datasets and batching for multimodal survival: patch-feature bags, token sources, collation.

Layers, bottom-up:

* :func:`read_feature_file` / :func:`write_feature_file` -- one slide's patch features in the CLAM/TRIDENT
  layout (HDF5 ``features`` n x d, ``coords`` n x 2 level-0 x/y, file attributes), or a ``.pt`` file
  holding a 2-D tensor or a dict with ``features`` (+ ``coords``). ``.pt`` files are loaded with
  ``weights_only=True``: arbitrary pickled objects are never executed.
* :class:`TokenSource` -- per-case token matrices (n_tokens x dim) for the clinical and genomic modalities:
  :class:`InMemoryTokens` (precomputed arrays) and :class:`OmicsVectorTokens` (one case's omics row as a
  single token, for SNN/MLP baselines). Text-encoded clinical tokens and genomic tokenizers implement the
  same small interface.
* :class:`SurvivalDataset` -- one item per case: survival target, discrete bin, and one bag per requested
  modality. Feature files are read lazily in ``__getitem__`` (optionally cached in memory as float16);
  several slides of a case are concatenated into one bag; in training mode at most ``n_patches`` patches are
  sampled per case with a generator seeded from ``(seed, epoch, index)``, so sampling is reproducible and
  independent of the number of DataLoader workers.
* :func:`collate_survival` -- pads variable-length bags to the batch maximum and returns boolean masks
  (True = real patch/token), so batches of any size work, including batches where no case has a modality.

A case missing a modality is never dropped: it gets an empty bag (0 x dim) and ``has_<modality>`` False.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from survpgc.errors import DataError, InputError
from survpgc.files import atomic_write

__all__ = [
    "BAG_KEYS",
    "MODALITIES",
    "FeatureFile",
    "InMemoryTokens",
    "OmicsVectorTokens",
    "SurvivalDataset",
    "TokenSource",
    "collate_survival",
    "feature_file_shape",
    "read_feature_attrs",
    "read_feature_file",
    "write_feature_file",
]

log = logging.getLogger(__name__)

#: Modality names, in the order they appear in items and batches.
MODALITIES: tuple[str, ...] = ("pathology", "clinical", "genomic")
#: Item/batch key of each modality's bag (``<key>``, ``<key>_mask``, ``has_<key>``).
BAG_KEYS: dict[str, str] = {"pathology": "path", "clinical": "clin", "genomic": "gen"}

_H5_SUFFIXES = (".h5", ".hdf5")
_PT_SUFFIXES = (".pt", ".pth")
_FLOAT16_MAX = float(np.finfo(np.float16).max)

#: ``(features n x d, coords n x 2 int64 or None, attrs)`` as returned by :func:`read_feature_file`.
FeatureFile = tuple[np.ndarray, np.ndarray | None, dict[str, Any]]


# ============================================================================ feature files
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
        File attributes as plain Python values (root attributes win over ``features``/``coords`` ones).

    Raises
    ------
    DataError
        Naming the file: missing/unreadable file, no ``features``, wrong shape, zero patches, NaN/inf,
        ``coords`` whose length differs from ``features``.
    """
    p = _existing(path)
    return _read_h5(p) if _kind(p) == "h5" else _read_pt(p)


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
        return _h5_attrs(f, fds)


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: feature file not found")
    return p


def write_feature_file(path: str | Path, features: Any, coords: Any | None = None, **attrs: Any) -> Path:
    """Write one slide's patch features atomically (temporary file in the same folder, then rename).

    The format follows the suffix: ``.h5``/``.hdf5`` (datasets ``features``, ``coords``; ``attrs`` as root
    attributes, the TRIDENT layout) or ``.pt``/``.pth`` (a dict ``{'features', 'coords', **attrs}``).
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
                f.create_dataset("features", data=feats)
                if crd is not None:
                    f.create_dataset("coords", data=crd)
                for k, v in attrs.items():
                    f.attrs[k] = v
        else:
            obj: dict[str, Any] = {"features": torch.from_numpy(np.ascontiguousarray(feats))}
            if crd is not None:
                obj["coords"] = torch.from_numpy(np.ascontiguousarray(crd))
            obj.update(attrs)
            torch.save(obj, tmp)

    atomic_write(p, write)
    return p


# ============================================================================ token sources
class TokenSource(ABC):
    """Per-case tokens of one modality (clinical or genomic).

    Implementations set ``dim`` (token width, fixed) and ``n_tokens`` (tokens per case, or None when it
    varies) and implement :meth:`get`. A source must be picklable (DataLoader workers copy it) and must
    never fit anything on the data it serves: any fitted state (scalers, vocabularies, text encoders) is
    fitted on the training cases before the source is built.
    """

    dim: int
    n_tokens: int | None

    @abstractmethod
    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(tokens float32 (n_tokens, dim), mask bool (n_tokens,), True = real token)``, or None when the
        case lacks this modality."""

    def __contains__(self, case_id: object) -> bool:
        return self.get(str(case_id)) is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, n_tokens={self.n_tokens})"


class InMemoryTokens(TokenSource):
    """Tokens held in memory: ``mapping`` case_id -> array (n_tokens, dim); a 1-D array is one token.

    Parameters
    ----------
    mapping
        Per-case token matrices (numpy arrays or tensors); all must share ``dim`` and be finite.
    masks
        Optional per-case bool masks (n_tokens,), True = real token; missing entries mean all real.
    dim
        Token width; required only when ``mapping`` is empty.
    """

    def __init__(
        self,
        mapping: Mapping[str, Any],
        masks: Mapping[str, Any] | None = None,
        *,
        dim: int | None = None,
    ) -> None:
        masks = dict(masks or {})
        unknown = set(masks) - set(mapping)
        if unknown:
            raise InputError(f"InMemoryTokens: masks for case(s) without tokens {sorted(unknown)[:5]}")
        self._tokens: dict[str, torch.Tensor] = {}
        self._masks: dict[str, torch.Tensor] = {}
        counts: set[int] = set()
        for cid, arr in mapping.items():
            t = torch.as_tensor(np.asarray(arr.detach().cpu() if isinstance(arr, torch.Tensor) else arr))
            if t.ndim == 1:
                t = t[None, :]
            if t.ndim != 2:
                raise InputError(f"InMemoryTokens: case {cid!r} tokens must be 1-D or 2-D, got shape {tuple(t.shape)}")
            if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64, torch.bool)):
                raise InputError(f"InMemoryTokens: case {cid!r} tokens must be numeric, got {t.dtype}")
            t = t.to(torch.float32)
            if dim is None:
                dim = int(t.shape[1])
            if t.shape[1] != dim:
                raise InputError(f"InMemoryTokens: case {cid!r} has token dim {t.shape[1]}, others have {dim}")
            if not torch.isfinite(t).all():
                raise InputError(f"InMemoryTokens: case {cid!r} has NaN/inf tokens")
            if cid in masks:
                m = torch.as_tensor(np.asarray(masks[cid]))
                if m.dtype != torch.bool or m.shape != (t.shape[0],):
                    raise InputError(
                        f"InMemoryTokens: mask of case {cid!r} must be bool of shape ({t.shape[0]},), "
                        f"got {m.dtype} {tuple(m.shape)}"
                    )
            else:
                m = torch.ones(t.shape[0], dtype=torch.bool)
            self._tokens[str(cid)] = t.contiguous()
            self._masks[str(cid)] = m
            counts.add(int(t.shape[0]))
        if dim is None:
            raise InputError("InMemoryTokens: `dim` is required when the mapping is empty")
        self.dim = int(dim)
        self.n_tokens = counts.pop() if len(counts) == 1 else None

    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        t = self._tokens.get(str(case_id))
        if t is None:
            return None
        return t.clone(), self._masks[str(case_id)].clone()

    def __contains__(self, case_id: object) -> bool:
        return str(case_id) in self._tokens

    def __len__(self) -> int:
        return len(self._tokens)


class OmicsVectorTokens(TokenSource):
    """One case's omics row as a single token (1 x n_features), for SNN/MLP-style baselines.

    Values are served as given: standardise them beforehand with statistics of the training cases only.
    Cases without an omics row (or all cases when ``omics`` is None) get None, i.e. a missing modality.

    Parameters
    ----------
    omics
        DataFrame indexed by case_id with numeric columns (``Cohort.omics``), or None.
    columns
        Columns to use, in this order (default: all).
    """

    n_tokens = 1

    def __init__(self, omics: Any | None, columns: Sequence[str] | None = None) -> None:
        if omics is None:
            self.columns: list[str] = list(columns or [])
            self._index: dict[str, int] = {}
            self._values = np.zeros((0, len(self.columns)), np.float32)
        else:
            cols = list(omics.columns) if columns is None else list(columns)
            missing = [c for c in cols if c not in omics.columns]
            if missing:
                raise InputError(f"OmicsVectorTokens: unknown omics column(s) {missing[:5]}")
            try:
                values = omics[cols].to_numpy(dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InputError(f"OmicsVectorTokens: omics columns must be numeric: {exc}") from exc
            if not np.isfinite(values).all():
                raise DataError("OmicsVectorTokens: omics table contains NaN/inf values")
            self.columns = cols
            self._index = {str(c): i for i, c in enumerate(omics.index)}
            self._values = np.ascontiguousarray(values)
        self.dim = len(self.columns)

    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        i = self._index.get(str(case_id))
        if i is None:
            return None
        return torch.from_numpy(self._values[i : i + 1].copy()), torch.ones(1, dtype=torch.bool)

    def __contains__(self, case_id: object) -> bool:
        return str(case_id) in self._index


# ============================================================================ dataset
def _check_nonneg_int(value: Any, name: str, *, allow_none: bool = False, minimum: int = 0) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InputError(f"`{name}` must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


class SurvivalDataset(Dataset):
    """One item per case: survival target plus one bag per requested modality.

    Parameters
    ----------
    cohort
        A :class:`~survpgc.data.cohort.Cohort`; pathology bags come from its slides' ``feature_path``.
    case_ids
        Cases of this dataset, in item order (None: all cases of the cohort).
    bins
        Discrete time-bin label per case (int, aligned with ``case_ids``), or an already fitted
        :class:`~survpgc.survival.binning.TimeBinner` (its ``transform`` is applied; nothing is fitted here).
        None: ``bin`` is -1 for every case.
    modalities
        Subset of ``("pathology", "clinical", "genomic")``.
    clinical, genomic
        Token sources for those modalities (required when the modality is requested).
    n_patches
        In training mode, at most this many patches per case (sampled without replacement, afresh each
        epoch); None keeps all. Evaluation mode always returns the full bag, in file order.
    train
        Training mode (patch sampling on).
    cache
        Keep features read from disk in memory (per process: each DataLoader worker has its own cache; use
        ``persistent_workers=True`` to keep it across epochs).
    cache_dtype
        ``'float16'`` (half the memory; values beyond the float16 range stay float32) or ``'float32'``.
        Returned tensors are float32 either way.
    seed
        Base seed of patch sampling: case ``index`` in epoch ``e`` uses ``numpy.random.default_rng([seed, e,
        index])``.
    path_dim
        Pathology feature dim; default: read from the header of the cohort's first feature file.

    Items
    -----
    ``case_id`` (str), ``time`` (float32, months), ``event`` (bool), ``bin`` (int64), and per modality:
    ``path`` (n, d) float32, ``path_mask`` (n,) bool, ``path_coords`` (n, 2) int64 (-1 where the file has no
    coords), ``path_slide`` (n,) int64 (index of the case's slide each patch came from), ``has_path``;
    ``clin``/``clin_mask``/``has_clin``; ``gen``/``gen_mask``/``has_gen``. ``has_*`` is True when the case
    has at least one real patch/token of that modality; otherwise the bag is empty (0, d).
    """

    def __init__(
        self,
        cohort: Any,
        case_ids: Iterable[str] | None = None,
        *,
        bins: Any = None,
        modalities: Sequence[str] = MODALITIES,
        clinical: TokenSource | None = None,
        genomic: TokenSource | None = None,
        n_patches: int | None = 4096,
        train: bool = False,
        cache: bool = False,
        cache_dtype: str = "float16",
        seed: int = 0,
        path_dim: int | None = None,
    ) -> None:
        if isinstance(case_ids, str):
            raise InputError("`case_ids` must be a list of case ids, not a single string")
        ids = [str(c) for c in (cohort.case_ids if case_ids is None else case_ids)]
        if len(set(ids)) != len(ids):
            dup = sorted({c for c in ids if ids.count(c) > 1})
            raise InputError(f"`case_ids` has duplicates {dup[:5]}")
        unknown = [c for c in ids if c not in cohort.cases.index]
        if unknown:
            raise InputError(f"cohort {cohort.name!r} has no case(s) {unknown[:5]}")
        if isinstance(modalities, str):
            modalities = (modalities,)
        bad = [m for m in modalities if m not in MODALITIES]
        if bad:
            raise InputError(f"unknown modality {bad}; choose from {list(MODALITIES)}")
        self.modalities: tuple[str, ...] = tuple(m for m in MODALITIES if m in modalities)
        sources = {"clinical": clinical, "genomic": genomic}
        for m, src in sources.items():
            if src is not None and not isinstance(src, TokenSource):
                raise InputError(f"`{m}` must be a TokenSource, got {type(src).__name__}")
            if m in self.modalities and src is None:
                raise InputError(
                    f"modality {m!r} requested but no `{m}` TokenSource given; pass one (e.g. "
                    f"OmicsVectorTokens(cohort.omics) for genomic) or drop it from `modalities`"
                )
        self.clinical = clinical if "clinical" in self.modalities else None
        self.genomic = genomic if "genomic" in self.modalities else None
        self.n_patches = _check_nonneg_int(n_patches, "n_patches", allow_none=True, minimum=1)
        self.train = bool(train)
        if cache_dtype not in ("float16", "float32"):
            raise InputError(f"`cache_dtype` must be 'float16' or 'float32', got {cache_dtype!r}")
        self.cache = bool(cache)
        self.cache_dtype = cache_dtype
        self.seed = _check_nonneg_int(seed, "seed")
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers

        self.case_ids: list[str] = ids
        time, event = cohort.survival(ids)
        self._time = np.asarray(time, dtype=np.float32)
        self._event = np.asarray(event, dtype=bool)
        self._bins = self._resolve_bins(bins, time)

        # pathology: feature files per case, in the cohort's slide order
        slides = cohort.slides.dropna(subset=["feature_path"])
        by_case = slides.groupby("case_id", sort=False)["feature_path"].agg(list).to_dict()
        self._files: list[list[str]] = [[str(p) for p in by_case.get(c, [])] for c in ids]
        self.dims: dict[str, int] = {}
        self._dim_source: str | None = None
        if "pathology" in self.modalities:
            if path_dim is not None:
                self.dims["pathology"] = _check_nonneg_int(path_dim, "path_dim", minimum=1)
                self._dim_source = "`path_dim`"
            else:
                first = next((f for fs in self._files for f in fs), None) or next(
                    (str(p) for p in slides["feature_path"]), None
                )
                if first is None:
                    raise InputError(
                        f"cohort {cohort.name!r} has no feature files, so the pathology feature dim is unknown; "
                        "load it with feature_dir=..., pass path_dim=..., or drop 'pathology' from `modalities`"
                    )
                self.dims["pathology"] = feature_file_shape(first)[1]
                self._dim_source = first
        for m, src in (("clinical", self.clinical), ("genomic", self.genomic)):
            if src is not None:
                self.dims[m] = int(src.dim)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    # ------------------------------------------------------------------ setup helpers
    def _resolve_bins(self, bins: Any, time: np.ndarray) -> np.ndarray:
        n = len(self.case_ids)
        if bins is None:
            return np.full(n, -1, dtype=np.int64)
        if hasattr(bins, "transform") and hasattr(bins, "n_bins"):
            return np.asarray(bins.transform(time), dtype=np.int64)
        b = np.asarray(bins)
        if b.shape != (n,):
            raise InputError(f"`bins` must have shape ({n},) (one label per case), got {b.shape}")
        if b.dtype.kind not in "iu" and not (b.dtype.kind == "f" and np.all(b == np.round(b))):
            raise InputError(f"`bins` must hold integer bin labels, got dtype {b.dtype}")
        b = b.astype(np.int64)
        if (b < 0).any():
            raise InputError("`bins` must be >= 0")
        return b

    # ------------------------------------------------------------------ epochs & cache
    @property
    def epoch(self) -> int:
        """Current epoch (drives patch sampling in training mode)."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch before iterating; visible to (persistent) DataLoader workers too."""
        self._epoch.fill_(_check_nonneg_int(epoch, "epoch"))

    def clear_cache(self) -> None:
        """Drop cached features (of this process)."""
        self._cache.clear()

    @property
    def cache_size(self) -> int:
        """Number of feature files cached in this process."""
        return len(self._cache)

    def has_pathology(self, index: int) -> bool:
        """Whether case ``index`` has at least one feature file (no file is read)."""
        return bool(self._files[index])

    def feature_files(self, index: int) -> list[str]:
        """Feature files of case ``index``, in bag order (``path_slide`` indexes this list)."""
        return list(self._files[index])

    # ------------------------------------------------------------------ loading
    def _load(self, path: str) -> tuple[np.ndarray, np.ndarray | None]:
        hit = self._cache.get(path) if self.cache else None
        if hit is not None:
            return hit
        feats, coords, _ = read_feature_file(path)
        d = self.dims["pathology"]
        if feats.shape[1] != d:
            raise DataError(
                f"{path}: feature dim {feats.shape[1]} differs from the dataset's {d} (set from {self._dim_source}); "
                "all slides must be encoded with the same patch encoder"
            )
        if self.cache:
            if self.cache_dtype == "float16" and feats.dtype != np.float16:
                if np.abs(feats).max() <= _FLOAT16_MAX:
                    feats = feats.astype(np.float16)
                else:
                    log.warning("%s: values beyond the float16 range; cached as float32", path)
            elif self.cache_dtype == "float32" and feats.dtype != np.float32:
                feats = feats.astype(np.float32)
            self._cache[path] = (feats, coords)
        return feats, coords

    def _pathology(self, index: int) -> dict[str, Any]:
        d = self.dims["pathology"]
        files = self._files[index]
        feats_l, coords_l, slide_l = [], [], []
        for k, path in enumerate(files):
            f, c = self._load(path)
            feats_l.append(f)
            coords_l.append(c if c is not None else np.full((f.shape[0], 2), -1, dtype=np.int64))
            slide_l.append(np.full(f.shape[0], k, dtype=np.int64))
        if not files:
            return {
                "path": torch.zeros((0, d), dtype=torch.float32),
                "path_mask": torch.zeros(0, dtype=torch.bool),
                "path_coords": torch.zeros((0, 2), dtype=torch.int64),
                "path_slide": torch.zeros(0, dtype=torch.int64),
                "has_path": torch.tensor(False),
            }
        n = sum(f.shape[0] for f in feats_l)
        idx = None
        if self.train and self.n_patches is not None and n > self.n_patches:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            idx = np.sort(rng.choice(n, size=self.n_patches, replace=False))
        if len(feats_l) == 1:
            feats, coords, slide = feats_l[0], coords_l[0], slide_l[0]
        else:
            feats = np.concatenate([f.astype(np.float32, copy=False) for f in feats_l], axis=0)
            coords, slide = np.concatenate(coords_l, axis=0), np.concatenate(slide_l)
        if idx is not None:
            feats, coords, slide = feats[idx], coords[idx], slide[idx]
        # copy only when the arrays may still alias the cache (single file, no sampling)
        alias = self.cache and idx is None and len(files) == 1
        x = torch.from_numpy(feats.astype(np.float32, copy=alias))
        return {
            "path": x,
            "path_mask": torch.ones(x.shape[0], dtype=torch.bool),
            "path_coords": torch.from_numpy(coords.astype(np.int64, copy=alias)),
            "path_slide": torch.from_numpy(slide),
            "has_path": torch.tensor(True),
        }

    def _tokens(self, modality: str, src: TokenSource, case_id: str) -> dict[str, Any]:
        key, d = BAG_KEYS[modality], self.dims[modality]
        got = src.get(case_id)
        if got is None:
            x, m = torch.zeros((0, d), dtype=torch.float32), torch.zeros(0, dtype=torch.bool)
        else:
            x = torch.as_tensor(got[0]).to(torch.float32)
            m = torch.ones(x.shape[0], dtype=torch.bool) if got[1] is None else torch.as_tensor(got[1]).to(torch.bool)
            if x.ndim != 2 or x.shape[1] != d or m.shape != (x.shape[0],):
                raise DataError(
                    f"{type(src).__name__} returned tokens {tuple(x.shape)} / mask {tuple(m.shape)} for case "
                    f"{case_id!r}; expected (n_tokens, {d}) / (n_tokens,)"
                )
        return {key: x, f"{key}_mask": m, f"has_{key}": torch.tensor(bool(m.any()))}

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, (np.integer, torch.Tensor)):
            index = int(index)
        if not isinstance(index, int):
            raise InputError(f"SurvivalDataset index must be an int, got {type(index).__name__}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cases")
        cid = self.case_ids[index]
        item: dict[str, Any] = {
            "case_id": cid,
            "time": torch.tensor(self._time[index], dtype=torch.float32),
            "event": torch.tensor(bool(self._event[index])),
            "bin": torch.tensor(int(self._bins[index]), dtype=torch.int64),
        }
        if "pathology" in self.modalities:
            item.update(self._pathology(index))
        if self.clinical is not None:
            item.update(self._tokens("clinical", self.clinical, cid))
        if self.genomic is not None:
            item.update(self._tokens("genomic", self.genomic, cid))
        return item

    def __repr__(self) -> str:
        return (
            f"SurvivalDataset(n_cases={len(self)}, modalities={self.modalities}, dims={self.dims}, "
            f"train={self.train}, n_patches={self.n_patches}, cache={self.cache})"
        )


# ============================================================================ collation
_PAD_EXTRA = {"path": (("path_coords", -1), ("path_slide", -1))}


def collate_survival(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`SurvivalDataset`.

    Returns ``case_id`` (list of str), ``time`` (B,) float32, ``event`` (B,) bool, ``bin`` (B,) int64, and
    for each bag present: ``<key>`` (B, L, d) float32 zero-padded to the longest bag of the batch,
    ``<key>_mask`` (B, L) bool (True = real), ``has_<key>`` (B,) bool; pathology also ``path_coords``
    (B, L, 2) and ``path_slide`` (B, L), padded with -1. L may be 0 when no case has that modality.
    Unknown item keys are passed through as lists.
    """
    if not batch:
        raise InputError("collate_survival: empty batch")
    keys = list(batch[0])
    for i, item in enumerate(batch[1:], start=1):
        if set(item) != set(keys):
            raise InputError(f"collate_survival: item {i} has keys {sorted(item)}, item 0 has {sorted(keys)}")
    out: dict[str, Any] = {"case_id": [str(it["case_id"]) for it in batch]}
    for k, dtype in (("time", torch.float32), ("event", torch.bool), ("bin", torch.int64)):
        if k in batch[0]:
            out[k] = torch.stack([torch.as_tensor(it[k]).reshape(()) for it in batch]).to(dtype)
    done = {"case_id", "time", "event", "bin"}
    bsz = len(batch)
    for key in BAG_KEYS.values():
        if key not in batch[0]:
            continue
        bags = [it[key] for it in batch]
        dims = {int(b.shape[1]) for b in bags}
        if len(dims) != 1 or any(b.ndim != 2 for b in bags):
            raise InputError(f"collate_survival: {key!r} bags have different feature dims {sorted(dims)}")
        d = dims.pop()
        lengths = [int(b.shape[0]) for b in bags]
        length = max(lengths)
        x = torch.zeros((bsz, length, d), dtype=torch.float32)
        mask = torch.zeros((bsz, length), dtype=torch.bool)
        for i, (b, n) in enumerate(zip(bags, lengths, strict=True)):
            if n:
                x[i, :n] = b
                mask[i, :n] = batch[i][f"{key}_mask"]
        out[key], out[f"{key}_mask"] = x, mask
        done |= {key, f"{key}_mask"}
        for extra, fill in _PAD_EXTRA.get(key, ()):
            if extra not in batch[0]:
                continue
            first = batch[0][extra]
            pad = torch.full((bsz, length, *first.shape[1:]), fill, dtype=first.dtype)
            for i, n in enumerate(lengths):
                if n:
                    pad[i, :n] = batch[i][extra]
            out[extra] = pad
            done.add(extra)
        has = f"has_{key}"
        if has in batch[0]:
            out[has] = torch.stack([torch.as_tensor(it[has]).reshape(()) for it in batch]).to(torch.bool)
            done.add(has)
    for k in keys:
        if k not in done:
            out[k] = [it[k] for it in batch]
    return out
