"""The torch dataset and batching of multimodal survival: one item per case, padded batches.

* :class:`SurvivalDataset` -- one item per case: survival target, discrete bin, and one bag per requested
  modality. Pathology bags come from the cohort's feature files (:mod:`survpgc.data.features`), read lazily in
  ``__getitem__`` (optionally cached in memory as float16, up to a byte limit, least recently used first out),
  or from a feature store (:mod:`survpgc.data.store`: only the sampled rows are read, memory does not grow with
  the cohort); several slides of a case are concatenated into one bag; in training mode at most ``n_patches``
  patches are sampled per case with a generator seeded from ``(seed, epoch, index)``, so sampling is
  reproducible, independent of the number of DataLoader workers, and the same with and without a store.
  Clinical and genomic bags come from a :class:`~survpgc.data.tokens.TokenSource`.
* :func:`collate_survival` -- pads variable-length bags to the batch maximum and returns boolean masks
  (True = real patch/token), so batches of any size work, including batches where no case has a modality.

A case missing a modality is never dropped: it gets an empty bag (0 x dim) and ``has_<modality>`` False.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from survpgc.data.features import feature_file_shape, read_feature_file
from survpgc.data.store import FeatureStore
from survpgc.data.tokens import TokenSource
from survpgc.errors import DataError, InputError

__all__ = ["BAG_KEYS", "MODALITIES", "SurvivalDataset", "collate_survival"]

log = logging.getLogger(__name__)

#: Modality names, in the order they appear in items and batches.
MODALITIES: tuple[str, ...] = ("pathology", "clinical", "genomic")
#: Item/batch key of each modality's bag (``<key>``, ``<key>_mask``, ``has_<key>``).
BAG_KEYS: dict[str, str] = {"pathology": "path", "clinical": "clin", "genomic": "gen"}

_FLOAT16_MAX = float(np.finfo(np.float16).max)


# ============================================================================ dataset
def _check_nonneg_int(value: Any, name: str, *, allow_none: bool = False, minimum: int = 0) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InputError(f"`{name}` must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_case_ids(cohort: Any, case_ids: Iterable[str] | None) -> list[str]:
    """The dataset's case ids (all of the cohort's when None): unique and known to the cohort."""
    if isinstance(case_ids, str):
        raise InputError("`case_ids` must be a list of case ids, not a single string")
    ids = [str(c) for c in (cohort.case_ids if case_ids is None else case_ids)]
    if len(set(ids)) != len(ids):
        dup = sorted({c for c in ids if ids.count(c) > 1})
        raise InputError(f"`case_ids` has duplicates {dup[:5]}")
    unknown = [c for c in ids if c not in cohort.cases.index]
    if unknown:
        raise InputError(f"cohort {cohort.name!r} has no case(s) {unknown[:5]}")
    return ids


def _check_modalities(modalities: Sequence[str] | str) -> tuple[str, ...]:
    """Requested modalities, known ones only, in :data:`MODALITIES` order."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    bad = [m for m in modalities if m not in MODALITIES]
    if bad:
        raise InputError(f"unknown modality {bad}; choose from {list(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in modalities)


def _check_sources(modalities: tuple[str, ...], **sources: TokenSource | None) -> dict[str, TokenSource | None]:
    """The token source of each token modality: required when requested, dropped (None) when not."""
    for m, src in sources.items():
        if src is not None and not isinstance(src, TokenSource):
            raise InputError(f"`{m}` must be a TokenSource, got {type(src).__name__}")
        if m in modalities and src is None:
            raise InputError(
                f"modality {m!r} requested but no `{m}` TokenSource given; pass one (e.g. "
                f"OmicsVectorTokens(cohort.omics) for genomic) or drop it from `modalities`"
            )
    return {m: (src if m in modalities else None) for m, src in sources.items()}


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
        Keep features read from feature files in memory (per process: each DataLoader worker has its own cache;
        use ``persistent_workers=True`` to keep it across epochs). Not used with a ``store``.
    cache_dtype
        ``'float16'`` (half the memory; values beyond the float16 range stay float32) or ``'float32'``.
        Returned tensors are float32 either way.
    cache_bytes
        Upper bound of the cache in bytes (features and coords of whole files): the least recently used files
        leave first; a file larger than the bound is not cached. None: no bound.
    store
        A :class:`~survpgc.data.store.FeatureStore` (or its folder) holding this cohort's feature files: bags
        are read from it, only the sampled rows in training mode, and each case's pages are handed back to the
        operating system after reading, so memory does not depend on the cohort's size. Items are identical to
        those read from the files with ``cache_dtype`` equal to the store's dtype (float16 stores: as with
        ``cache=True``; float16 files: always). A feature file not in the store, or changed since the store
        was built, is refused (:class:`DataError`) when the dataset is built.
    bucket
        Read by :func:`survpgc.inputs.make_loader`: for a shuffled loader with batches of more than one case,
        group cases of similar bag length into batches (pools of ``bucket`` batches, see
        :class:`~survpgc.data.buckets.BucketBatchSampler`); 0 = off.
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
        cache_bytes: int | None = None,
        store: FeatureStore | str | Path | None = None,
        bucket: int = 0,
    ) -> None:
        self.case_ids: list[str] = _check_case_ids(cohort, case_ids)
        self.modalities: tuple[str, ...] = _check_modalities(modalities)
        sources = _check_sources(self.modalities, clinical=clinical, genomic=genomic)
        self.clinical, self.genomic = sources["clinical"], sources["genomic"]
        self.n_patches = _check_nonneg_int(n_patches, "n_patches", allow_none=True, minimum=1)
        self.train = bool(train)
        if cache_dtype not in ("float16", "float32"):
            raise InputError(f"`cache_dtype` must be 'float16' or 'float32', got {cache_dtype!r}")
        self.cache = bool(cache)
        self.cache_dtype = cache_dtype
        self.cache_bytes = _check_nonneg_int(cache_bytes, "cache_bytes", allow_none=True)
        self.bucket = _check_nonneg_int(bucket, "bucket")
        self.seed = _check_nonneg_int(seed, "seed")
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers

        time, event = cohort.survival(self.case_ids)
        self._time = np.asarray(time, dtype=np.float32)
        self._event = np.asarray(event, dtype=bool)
        self._bins = self._resolve_bins(bins, time)

        # pathology: feature files per case, in the cohort's slide order
        slides = cohort.slides.dropna(subset=["feature_path"])
        by_case = slides.groupby("case_id", sort=False)["feature_path"].agg(list).to_dict()
        self._files: list[list[str]] = [[str(p) for p in by_case.get(c, [])] for c in self.case_ids]
        self.dims: dict[str, int] = {}
        self._dim_source: str | None = None
        self.store: FeatureStore | None = None
        self._segments: list[np.ndarray] = []  # per case: (n_slides, 2) first row and rows in the store
        if "pathology" in self.modalities:
            if store is not None:
                self._use_store(store, path_dim)
            else:
                self._set_path_dim(path_dim, [str(p) for p in slides["feature_path"]], cohort.name)
        for m, src in (("clinical", self.clinical), ("genomic", self.genomic)):
            if src is not None:
                self.dims[m] = int(src.dim)
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._cached_bytes = 0
        self._lengths: np.ndarray | None = None

    # ------------------------------------------------------------------ setup helpers
    def _set_path_dim(self, path_dim: int | None, cohort_files: list[str], cohort_name: str) -> None:
        """Pathology feature dim: ``path_dim``, else the header of this dataset's (or the cohort's) first file."""
        if path_dim is not None:
            self.dims["pathology"] = _check_nonneg_int(path_dim, "path_dim", minimum=1)
            self._dim_source = "`path_dim`"
            return
        first = next((f for fs in self._files for f in fs), None) or next(iter(cohort_files), None)
        if first is None:
            raise InputError(
                f"cohort {cohort_name!r} has no feature files, so the pathology feature dim is unknown; "
                "load it with feature_dir=..., pass path_dim=..., or drop 'pathology' from `modalities`"
            )
        self.dims["pathology"] = feature_file_shape(first)[1]
        self._dim_source = first

    def _use_store(self, store: FeatureStore | str | Path, path_dim: int | None) -> None:
        """Read pathology from ``store``: every feature file of the dataset located in it (and unchanged)."""
        if not isinstance(store, FeatureStore):
            if not isinstance(store, (str, Path)):
                raise InputError(f"`store` must be a FeatureStore or its folder, got {type(store).__name__}")
            store = FeatureStore(store)
        if path_dim is not None and _check_nonneg_int(path_dim, "path_dim", minimum=1) != store.dim:
            raise InputError(f"`path_dim` {path_dim} differs from the feature store's dim {store.dim} ({store.path})")
        self.store = store
        self.dims["pathology"] = store.dim
        self._dim_source = f"feature store {store.path}"
        self._segments = [
            np.array([store.locate(f) for f in files], dtype=np.int64).reshape(-1, 2) for files in self._files
        ]

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
        self._cached_bytes = 0

    @property
    def cache_size(self) -> int:
        """Number of feature files cached in this process."""
        return len(self._cache)

    @property
    def cached_bytes(self) -> int:
        """Bytes of features and coords cached in this process (at most ``cache_bytes``)."""
        return self._cached_bytes

    def prefetch(self, indices: Iterable[int]) -> None:
        """Start reading the bags of cases ``indices`` in the background (from a store: the operating system
        reads their rows into its page cache while this process goes on); no-op without a store."""
        if self.store is None or "pathology" not in self.modalities:
            return
        for i in indices:
            for o, k in self._segments[int(i)]:
                self.store.prefetch(int(o), int(k))

    def bag_lengths(self) -> np.ndarray:
        """Patches per case (int64, dataset order) as items will have them: ``min(n, n_patches)`` in training
        mode. Read from the store's index or the feature files' headers (``.pt`` files are loaded), once."""
        if self._lengths is None:
            if "pathology" not in self.modalities:
                total = np.zeros(len(self), dtype=np.int64)
            elif self.store is not None:
                total = np.array([int(seg[:, 1].sum()) for seg in self._segments], dtype=np.int64)
            else:
                shape: dict[str, int] = {}
                for files in self._files:
                    for f in files:
                        if f not in shape:
                            shape[f] = feature_file_shape(f)[0]
                total = np.array([sum(shape[f] for f in files) for files in self._files], dtype=np.int64)
            self._lengths = total
        out = self._lengths.copy()
        if self.train and self.n_patches is not None:
            np.minimum(out, self.n_patches, out=out)
        return out

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
            self._cache.move_to_end(path)
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
            self._remember(path, feats, coords)
        return feats, coords

    def _remember(self, path: str, feats: np.ndarray, coords: np.ndarray | None) -> None:
        """Cache one file, evicting the least recently used ones beyond ``cache_bytes``."""
        size = feats.nbytes + (0 if coords is None else coords.nbytes)
        limit = self.cache_bytes
        if limit is not None and size > limit:
            return
        self._cache[path] = (feats, coords)
        self._cached_bytes += size
        while limit is not None and self._cached_bytes > limit:
            _, (f, c) = self._cache.popitem(last=False)
            self._cached_bytes -= f.nbytes + (0 if c is None else c.nbytes)

    def _sample(self, n: int, index: int) -> np.ndarray | None:
        """Sorted indices of the patches kept from a bag of ``n`` (None: all), the same with and without store."""
        if self.train and self.n_patches is not None and n > self.n_patches:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            return np.sort(rng.choice(n, size=self.n_patches, replace=False))
        return None

    def _from_store(self, index: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """``(features float32, coords int64, slide int64)`` of case ``index`` from the store: only the sampled
        rows are copied out, then the case's pages are handed back to the operating system."""
        store, seg = self.store, self._segments[index]
        assert store is not None
        starts = np.concatenate([[0], np.cumsum(seg[:, 1])])
        idx = self._sample(int(starts[-1]), index)
        if idx is None:
            parts = [store.span(int(o), int(k)) for o, k in seg]
            feats = np.concatenate([f for f, _ in parts])
            coords = np.concatenate([c for _, c in parts], dtype=np.int64)
            slide = np.repeat(np.arange(len(seg), dtype=np.int64), seg[:, 1])
        else:
            slide = np.searchsorted(starts, idx, side="right") - 1
            rows = seg[slide, 0] + (idx - starts[slide])
            feats, coords = store.take(rows)
        for o, k in seg:
            store.release(int(o), int(k))
        x = torch.from_numpy(feats)  # float16 -> float32 in torch: exact, and several times faster than numpy's
        return x if x.dtype == torch.float32 else x.float(), coords, slide.astype(np.int64, copy=False)

    def _pathology(self, index: int) -> dict[str, Any]:
        d = self.dims["pathology"]
        files = self._files[index]
        if files and self.store is not None:
            x, coords64, slide64 = self._from_store(index)
            return {
                "path": x,
                "path_mask": torch.ones(x.shape[0], dtype=torch.bool),
                "path_coords": torch.from_numpy(coords64),
                "path_slide": torch.from_numpy(slide64),
                "has_path": torch.tensor(True),
            }
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
        idx = self._sample(sum(f.shape[0] for f in feats_l), index)
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

    @property
    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(bin (n,) int64, event (n,) bool)`` of every case, in dataset order, without reading any bag."""
        return self._bins.astype(np.int64, copy=True), self._event.copy()

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
            f"train={self.train}, n_patches={self.n_patches}, cache={self.cache}"
            + (f", store={str(self.store.path)!r}" if self.store is not None else "")
            + ")"
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
        x = torch.empty((bsz, length, d), dtype=torch.float32)  # each row written once: bag, then zero padding
        mask = torch.zeros((bsz, length), dtype=torch.bool)
        for i, (b, n) in enumerate(zip(bags, lengths, strict=True)):
            if n:
                x[i, :n] = b
                mask[i, :n] = batch[i][f"{key}_mask"]
            x[i, n:] = 0
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
