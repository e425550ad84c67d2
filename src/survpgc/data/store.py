"""The feature store: a cohort's patch features in one memory-mapped array, read a few rows at a time.

Training samples ``data.n_patches`` patches per case and epoch; reading each slide's whole feature file every
epoch costs the whole file (BRCA at 20k patches x 1024-d float16 is 40 MB per slide, 42 GB per cohort), and an
in-memory cache of the cohort does not fit a small machine. A store holds every slide of a feature folder in
one flat array on disk that the dataset maps into memory and reads only the sampled rows of; the pages are the
operating system's (its page cache), and the dataset hands back the pages of each case after reading it, so a
process's memory does not grow with the cohort.

Layout of a store folder:

* ``features.npy`` -- (N, d) ``float16`` (or ``float32``): every slide's patches one after another (NumPy
  ``.npy``: a header, then the raw rows);
* ``coords.npy`` -- (N, 2) int64: level-0 x/y of each patch's top-left corner, -1 where the file had no coords;
* ``slides.csv`` -- one row per feature file: ``file`` (its name in the feature folder), ``offset`` (first
  row), ``n`` (rows), ``size`` and ``mtime_ns`` (of the file when the store was built);
* ``store.json`` -- written last, so a folder without it is no store (a build in progress or killed): format
  version, ``dtype``, ``dim``, ``n_rows``, the source folder, the extraction settings its files agree on
  (:data:`FEATURE_SETTINGS`) and the folder's ``extraction.json`` when it has one.

:func:`build_store` (``survpgc store build --features F --out S``) builds a store once: it refuses a folder whose
files disagree on the feature dim or an extraction setting, writes under the folder lock, records its progress
after every file (a rerun after a kill continues where it stopped, when the folder's files are unchanged) and
renames the finished arrays into place. :class:`FeatureStore` opens one; the dataset
(:class:`~survpgc.data.dataset.SurvivalDataset` ``store=``) looks each slide up by its feature file's name and
refuses a file that changed since the store was built.

Also here, because the store checks them too: :data:`FEATURE_SETTINGS` and :func:`check_feature_files`, the
extraction settings every feature file of a run must agree on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.data.features import EXTRACTION_RECORD
from survpgc.errors import DataError, InputError
from survpgc.faults import fault_point
from survpgc.files import atomic_write_text, read_settings, same_setting
from survpgc.locks import folder_lock, output_dir, sweep_temporaries

__all__ = [
    "FEATURE_SETTINGS",
    "STORE_RECORD",
    "FeatureStore",
    "StoreBuild",
    "build_store",
    "check_feature_files",
    "feature_folder_files",
]

log = logging.getLogger(__name__)

#: Feature-file attributes that must agree across the files of one run (besides the feature dim, from the shape).
#: The one list of extraction settings: a model bundle records and compares the same ones
#: (``survpgc.deploy.bundle.PATHOLOGY_KEYS`` is derived from it, adding the weights and naming the dim ``dim``),
#: and a feature store records the values its files agree on.
FEATURE_SETTINGS: tuple[str, ...] = (
    "encoder",
    "encoder_dim",
    "patch_size",
    "target_magnification",
    "input_size",
    "mean",
    "std",
    "interpolation",
)

#: The record that makes a folder a store (written last).
STORE_RECORD = "store.json"
_FORMAT = "survpgc-feature-store"
_VERSION = 1
_FEATURES, _COORDS, _SLIDES = "features.npy", "coords.npy", "slides.csv"
_PROGRESS = ".build.json"
_PARTIAL = ".partial"
_SUFFIXES = (".h5", ".hdf5", ".pt", ".pth")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
#: Bytes written between two fsyncs of a build (and moves of its progress record).
_CHECKPOINT_BYTES = 256 * 2**20
#: Keys of the feature folder's extraction record compared with its files' attributes before a build.
_RECORD_VS_FILES = (("encoder", "encoder"), ("feature_dim", "dim"), ("patch_size", "patch_size"))


# ============================================================================ settings of a feature folder
def check_feature_files(paths: Iterable[Path]) -> dict[str, Any]:
    """Open every feature file (header and shape only for HDF5) and check that all agree on the feature dim and
    on each setting of :data:`FEATURE_SETTINGS` that both files record. Returns the agreed values (``dim`` and
    each setting some file records).

    Raises :class:`DataError` naming the unreadable file, or two files that disagree and the setting.
    """
    from survpgc.data.features import feature_file_shape, read_feature_attrs

    first: dict[str, tuple[Any, Path]] = {}
    n = 0
    for path in paths:
        n += 1
        try:
            _, dim = feature_file_shape(path)
            attrs = read_feature_attrs(path)
        except DataError as exc:
            raise DataError(f"{exc} (found before training; fix or re-extract this file, then rerun)") from exc
        _agree(first, {"dim": dim, **{k: attrs[k] for k in FEATURE_SETTINGS if k in attrs}}, path)
    log.info("checked %d feature file(s): they agree on %s", n, ", ".join(sorted(first)) or "nothing")
    return {k: v for k, (v, _) in first.items()}


def _agree(first: dict[str, tuple[Any, Path]], values: Mapping[str, Any], path: Path) -> None:
    for key, value in values.items():
        if key not in first:
            first[key] = (value, path)
            continue
        seen, where = first[key]
        if not same_setting(seen, value):
            raise DataError(
                f"feature files disagree on {key}: {where} has {seen!r}, {path} has {value!r}; all slides of "
                "a run must be extracted with the same settings (re-extract the odd files, or point "
                "pathology.feature_dir at one extraction)"
            )


def feature_folder_files(folder: str | Path) -> list[Path]:
    """The feature files of ``folder`` (``.h5``/``.hdf5``/``.pt``/``.pth``, not hidden), sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--features {root}: not a folder")
    return sorted(
        (p for p in root.iterdir() if p.suffix.lower() in _SUFFIXES and not p.name.startswith(".") and p.is_file()),
        key=lambda p: p.name,
    )


# ============================================================================ reading
def _npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """``(data offset, shape, dtype)`` of a C-ordered ``.npy`` file, from its header."""
    with open(path, "rb") as f:
        try:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except ValueError as exc:
            raise DataError(f"{path}: not a NumPy .npy array ({exc}); rebuild the store") from None
        if fortran:
            raise DataError(f"{path}: Fortran-ordered array; rebuild the store")
        return f.tell(), tuple(shape), np.dtype(dtype)


@dataclass(frozen=True)
class _Slide:
    offset: int
    n: int
    size: int
    mtime_ns: int


class FeatureStore:
    """A built store (see the module docstring), opened read-only.

    ``features`` and ``coords`` are mapped lazily in each process (a store pickles without its mappings, so
    DataLoader workers map it themselves). :meth:`take` copies rows out; :meth:`release` gives a row range's
    pages back to the operating system (they stay in its page cache, but no longer count in this process's
    resident memory).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        rec_path = self.path / STORE_RECORD
        if not rec_path.is_file():
            hint = (
                "a build of it was interrupted: rerun `survpgc store build` to finish it"
                if (self.path / _PROGRESS).is_file()
                else "build one with `survpgc store build --features FEATURE_DIR --out STORE`"
            )
            raise DataError(f"data.store {self.path}: not a feature store (no {STORE_RECORD}); {hint}")
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{rec_path}: not valid JSON ({exc}); rebuild the store") from None
        if not isinstance(rec, dict) or rec.get("format") != _FORMAT:
            raise DataError(f"{rec_path}: not a survpgc feature-store record; rebuild the store")
        if rec.get("version") != _VERSION:
            raise DataError(
                f"{rec_path}: store format version {rec.get('version')!r}, this survpgc reads {_VERSION}; rebuild it"
            )
        self.record: dict[str, Any] = rec
        self.dim = int(rec["dim"])
        self.dtype = np.dtype(rec["dtype"])
        self.n_rows = int(rec["n_rows"])
        self._slides = self._read_slides()
        self._check_arrays()
        self._features: np.ndarray | None = None
        self._coords: np.ndarray | None = None
        self._maps: list[tuple[mmap.mmap, int, int]] | None = None  # (map, data offset, bytes per row)
        self._layout: list[int] | None = None  # data offsets of features.npy and coords.npy

    def _read_slides(self) -> dict[str, _Slide]:
        import pandas as pd

        p = self.path / _SLIDES
        try:
            df = pd.read_csv(p, dtype={"file": str}, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{p}: cannot read the store's slide index ({exc}); rebuild the store") from None
        need = ["file", "offset", "n", "size", "mtime_ns"]
        if list(df.columns[: len(need)]) != need:
            raise DataError(f"{p}: expected columns {need}, got {list(df.columns)}; rebuild the store")
        out = {
            str(r.file): _Slide(int(r.offset), int(r.n), int(r.size), int(r.mtime_ns))
            for r in df.itertuples(index=False)
        }
        ends = [s.offset + s.n for s in out.values()]
        if len(out) != len(df) or (ends and max(ends) > self.n_rows):
            raise DataError(f"{p}: repeated files or rows beyond the store's {self.n_rows}; rebuild the store")
        return out

    def _check_arrays(self) -> None:
        for name, shape, dtype in (
            (_FEATURES, (self.n_rows, self.dim), self.dtype),
            (_COORDS, (self.n_rows, 2), np.dtype(np.int64)),
        ):
            p = self.path / name
            if not p.is_file():
                raise DataError(f"{p}: missing; rebuild the store")
            offset, got_shape, got_dtype = _npy_layout(p)
            if got_shape != shape or got_dtype != dtype:
                raise DataError(
                    f"{p}: holds {got_shape} {got_dtype}, the store record says {shape} {dtype}; rebuild the store"
                )
            expect = offset + int(np.prod(shape)) * dtype.itemsize
            if p.stat().st_size < expect:
                raise DataError(f"{p}: truncated ({p.stat().st_size} of {expect} bytes); rebuild the store")

    # ------------------------------------------------------------------ mapping (per process)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_features=None, _coords=None, _maps=None)  # read-ahead threads are per process too
        return state

    def _open(self) -> None:
        arrays, maps = [], []
        for name, dtype, width in ((_FEATURES, self.dtype, self.dim), (_COORDS, np.dtype(np.int64), 2)):
            offset, _, _ = _npy_layout(self.path / name)
            with open(self.path / name, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            arrays.append(np.frombuffer(mm, dtype=dtype, count=self.n_rows * width, offset=offset).reshape(-1, width))
            maps.append((mm, offset, width * dtype.itemsize))
        (self._features, self._coords), self._maps = arrays, maps

    @property
    def features(self) -> np.ndarray:
        """The (N, d) feature rows, memory-mapped read-only."""
        if self._features is None:
            self._open()
        return self._features  # type: ignore[return-value]

    @property
    def coords(self) -> np.ndarray:
        """The (N, 2) int64 coords, memory-mapped read-only (-1 where a file had none)."""
        if self._coords is None:
            self._open()
        return self._coords  # type: ignore[return-value]

    # ------------------------------------------------------------------ lookup
    @property
    def files(self) -> list[str]:
        """Names of the feature files in the store, in row order."""
        return list(self._slides)

    def __contains__(self, path: object) -> bool:
        return Path(str(path)).name in self._slides

    def locate(self, path: str | Path, *, check: bool = True) -> tuple[int, int]:
        """``(first row, rows)`` of feature file ``path`` (looked up by its name).

        ``check``: when the file exists, its size and modification time must be those it had when the store
        was built. Raises :class:`DataError` naming the file and the store otherwise, or when it is not in it.
        """
        p = Path(path)
        s = self._slides.get(p.name)
        if s is None:
            raise DataError(
                f"{p.name}: not in the feature store {self.path} ({len(self._slides)} files from "
                f"{self.record.get('source')}); rebuild the store from the run's pathology.feature_dir"
            )
        if check and p.is_file():
            st = p.stat()
            if st.st_size != s.size or st.st_mtime_ns != s.mtime_ns:
                raise DataError(
                    f"{p}: changed after the feature store {self.path} was built (size {st.st_size} vs "
                    f"{s.size} bytes, modified {_when(st.st_mtime_ns)} vs {_when(s.mtime_ns)}); rebuild the store "
                    f"(`survpgc store build --features {p.parent} --out NEW_STORE`)"
                )
        return s.offset, s.n

    # ------------------------------------------------------------------ rows
    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features (k, d) in the store's dtype, coords (k, 2) int64)`` of ``rows`` (copies)."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.features[rows], np.asarray(self.coords[rows])

    def span(self, offset: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``offset .. offset + n`` as views of the mapped arrays (no copy)."""
        return self.features[offset : offset + n], self.coords[offset : offset + n]

    def release(self, offset: int, n: int) -> None:
        """Give the pages of rows ``offset .. offset + n`` back to the operating system (``MADV_DONTNEED`` on
        the mapping: they leave this process's resident memory and stay in the page cache). No-op where the
        platform has no ``madvise``."""
        if self._maps is not None:  # nothing mapped in this process: nothing to hand back
            self._advise("MADV_DONTNEED", offset, n)

    def prefetch(self, offset: int, n: int) -> None:
        """Have rows ``offset .. offset + n`` read into the operating system's page cache by a background thread
        of this process (one per store and process; ``POSIX_FADV_WILLNEED`` in 1 MB requests, or reads into a
        small buffer where the platform has no ``posix_fadvise``; without the GIL), so the disk works while the
        cases before train. Advisory: requests beyond :data:`_PREFETCH_BYTES` still pending are skipped, and
        read errors are left to the real read."""
        pid = os.getpid()
        key = (pid, str(self.path))
        pf = _PREFETCHERS.get(key)
        if pf is None:
            pf = _PREFETCHERS[key] = _Prefetcher([self.path / _FEATURES, self.path / _COORDS])
        if self._layout is None:
            self._layout = [_npy_layout(self.path / f)[0] for f in (_FEATURES, _COORDS)]
        for k, row in enumerate((self.dim * self.dtype.itemsize, 2 * 8)):  # bytes per row of each file
            pf.submit(k, self._layout[k] + offset * row, n * row)

    def _advise(self, what: str, offset: int, n: int) -> None:
        advice = getattr(mmap, what, None)
        if advice is None or n <= 0:
            return
        if self._maps is None:
            self._open()
        page = mmap.PAGESIZE
        for mm, data, row in self._maps or ():
            start, stop = data + offset * row, min(data + (offset + n) * row, len(mm))
            start -= start % page
            if stop > start:
                mm.madvise(advice, start, stop - start)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, files={len(self._slides)}, rows={self.n_rows}, dim={self.dim})"


#: Bytes a store's read-ahead thread may have pending; further requests are skipped until it catches up.
_PREFETCH_BYTES = 2 * 2**30
#: Bytes per read-ahead request: ``POSIX_FADV_WILLNEED`` reads at most the device's read-ahead window per call.
_READAHEAD_CHUNK = 2**20
_PREFETCHERS: dict[tuple[int, str], _Prefetcher] = {}


class _Prefetcher:
    """A daemon thread reading byte ranges of some files into the page cache, in request order."""

    def __init__(self, paths: list[Path]) -> None:
        import queue
        import threading

        self.paths = paths
        self.queue: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        self.pending = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="survpgc-store-prefetch", daemon=True).start()

    def submit(self, k: int, start: int, length: int) -> None:
        with self.lock:
            if length <= 0 or self.pending + length > _PREFETCH_BYTES:
                return
            self.pending += length
        self.queue.put((k, start, length))

    def _run(self) -> None:
        advise = getattr(os, "posix_fadvise", None)
        buf = None if advise is not None else bytearray(_READAHEAD_CHUNK)
        fds: dict[int, int] = {}
        while True:
            k, start, length = self.queue.get()
            try:
                fd = fds.get(k)
                if fd is None:
                    fd = fds[k] = os.open(self.paths[k], os.O_RDONLY)
                for pos in range(start, start + length, _READAHEAD_CHUNK):
                    size = min(_READAHEAD_CHUNK, start + length - pos)
                    if advise is not None:  # the kernel reads into its page cache: nothing copied here
                        advise(fd, pos, size, os.POSIX_FADV_WILLNEED)
                    else:
                        os.preadv(fd, [memoryview(buf)[:size]], pos)
            except OSError as exc:  # advisory: the real read reports problems
                log.debug("store read-ahead of %s failed: %s", self.paths[k], exc)
            finally:
                with self.lock:
                    self.pending -= length


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


# ============================================================================ building
@dataclass
class StoreBuild:
    """What :func:`build_store` did: the store, how many files it wrote now / found written before / in all."""

    path: Path
    files: int
    rows: int
    dim: int
    dtype: str
    written: int
    resumed: int
    up_to_date: bool
    seconds: float

    def describe(self) -> str:
        gb = self.rows * self.dim * np.dtype(self.dtype).itemsize / 1e9
        if self.up_to_date:
            return f"store {self.path} is up to date: {self.files} files, {self.rows} patches x {self.dim} {self.dtype}"
        resumed = f" ({self.resumed} written before, resumed)" if self.resumed else ""
        return (
            f"store {self.path}: {self.files} files, {self.rows} patches x {self.dim} {self.dtype} ({gb:.2f} GB); "
            f"{self.written} files written in {self.seconds:.1f} s{resumed}"
        )


def _plan(files: list[Path], dtype: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per file ``{file, n, size, mtime_ns}`` and the agreed settings (dim included), from headers only."""
    from survpgc.data.features import feature_file_shape, read_feature_attrs

    rows, first = [], {}
    for p in files:
        st = p.stat()
        n, dim = feature_file_shape(p)
        attrs = read_feature_attrs(p)
        _agree(first, {"dim": dim, **{k: attrs[k] for k in FEATURE_SETTINGS if k in attrs}}, p)
        rows.append({"file": p.name, "n": int(n), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)})
    settings = {k: v for k, (v, _) in first.items()}
    return rows, settings


def _plan_key(plan: list[dict[str, Any]], dtype: str, dim: int) -> str:
    text = json.dumps({"dtype": dtype, "dim": dim, "files": plan}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_record(folder: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The folder's extraction record, refused when it disagrees with its files."""
    record = read_settings(folder, EXTRACTION_RECORD)
    if record is None:
        return None
    p = folder / EXTRACTION_RECORD
    for rkey, fkey in _RECORD_VS_FILES:
        if record.get(rkey) is not None and fkey in settings and not same_setting(record[rkey], settings[fkey]):
            raise DataError(
                f"--features {folder}: its files have {fkey} {settings[fkey]!r} but {p} records {rkey} "
                f"{record[rkey]!r}; the folder mixes extractions (re-extract it into a fresh folder)"
            )
    return record


def _existing_store(out: Path, key: str, source: Path) -> bool:
    """True when ``out`` already holds the finished store of this plan; refuses another store."""
    rec_path = out / STORE_RECORD
    if not rec_path.is_file():
        return False
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        rec = {}
    if isinstance(rec, dict) and rec.get("plan") == key:
        return True
    raise DataError(
        f"--out {out} already holds a feature store of {rec.get('source') if isinstance(rec, dict) else '?'} "
        f"with other files or settings than {source} now has (a file was added, changed or removed, or "
        "another --dtype); write the store to a new --out folder (and delete the old one when done)"
    )


def build_store(
    features: str | Path,
    out: str | Path,
    *,
    dtype: str = "float16",
    progress: Callable[[int, int], None] | None = None,
) -> StoreBuild:
    """Build the feature store of folder ``features`` in folder ``out`` (see the module docstring).

    ``dtype``: ``'float16'`` (half the disk; float32 files are rounded as ``data.cache`` rounds them, and a
    value beyond the float16 range is refused naming its file) or ``'float32'``. ``progress(done, total)`` is
    called after each file.

    Every file's header is read first: files that disagree on the feature dim or a setting of
    :data:`FEATURE_SETTINGS`, or with the folder's ``extraction.json``, are refused before anything is written.
    Resumable: a killed build continues from its last finished file when rerun with the same files and dtype.
    An existing store of the same files is left as it is (``up_to_date``); one of other files is refused.
    """
    if dtype not in ("float16", "float32"):
        raise InputError(f"--dtype must be float16 or float32, got {dtype!r}")
    t0 = time.perf_counter()
    src = Path(features).resolve()
    files = feature_folder_files(src)
    if not files:
        raise InputError(f"--features {src}: no feature files (<slide>.h5 / .pt) in this folder")
    plan, settings = _plan(files, dtype)
    record = _check_record(src, settings)
    dim = int(settings["dim"])
    key = _plan_key(plan, dtype, dim)
    n_rows = sum(r["n"] for r in plan)
    with output_dir(out, option="--out") as root, folder_lock(root, what="store folder"):
        if root.resolve() == src:
            raise InputError("--out must be another folder than --features")
        if _existing_store(root, key, src):
            return StoreBuild(root, len(plan), n_rows, dim, dtype, 0, 0, True, time.perf_counter() - t0)
        sweep_temporaries(root)
        done = _resume_point(root, key)
        feats_tmp, coords_tmp = root / (_FEATURES + _PARTIAL), root / (_COORDS + _PARTIAL)
        renamed = done == len(plan) and all((root / n).is_file() for n in (_FEATURES, _COORDS))
        if not renamed and not (done and feats_tmp.is_file() and coords_tmp.is_file()):
            done = 0
            np.lib.format.open_memmap(feats_tmp, mode="w+", dtype=np.dtype(dtype), shape=(n_rows, dim)).flush()
            np.lib.format.open_memmap(coords_tmp, mode="w+", dtype=np.int64, shape=(n_rows, 2)).flush()
            _write_progress(root, key, 0)
        resumed = done
        offsets = np.concatenate([[0], np.cumsum([r["n"] for r in plan])]).astype(np.int64)
        if done < len(plan):
            _write_rows(root, key, files, plan, offsets, done, dim, np.dtype(dtype), progress)
        _finish(root, src, plan, offsets, settings, record, dtype, dim, n_rows, key)
    return StoreBuild(
        root, len(plan), n_rows, dim, dtype, len(plan) - resumed, resumed, False, time.perf_counter() - t0
    )


def _write_rows(
    root: Path,
    key: str,
    files: list[Path],
    plan: list[dict[str, Any]],
    offsets: np.ndarray,
    done: int,
    dim: int,
    dtype: np.dtype,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Write files ``done ..`` into the partial arrays; the progress record moves on only after an fsync (every
    :data:`_CHECKPOINT_BYTES` written and at the end), so a kill loses at most that much work."""
    feats_tmp, coords_tmp = root / (_FEATURES + _PARTIAL), root / (_COORDS + _PARTIAL)
    f_off, _, _ = _npy_layout(feats_tmp)
    c_off, _, _ = _npy_layout(coords_tmp)
    pending = 0
    with open(feats_tmp, "r+b") as ff, open(coords_tmp, "r+b") as cf:
        for k in range(done, len(plan)):
            _write_file(files[k], plan[k], int(offsets[k]), dim, dtype, ff, f_off, cf, c_off)
            fault_point("store-write")
            pending += plan[k]["n"] * dim * dtype.itemsize
            if pending >= _CHECKPOINT_BYTES or k + 1 == len(plan):
                ff.flush(), cf.flush()
                os.fsync(ff.fileno()), os.fsync(cf.fileno())
                _write_progress(root, key, k + 1)
                pending = 0
            if progress is not None:
                progress(k + 1, len(plan))


def _resume_point(root: Path, key: str) -> int:
    p = root / _PROGRESS
    if not p.is_file():
        return 0
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return 0
    if not isinstance(rec, dict) or rec.get("plan") != key:
        log.info("%s: an unfinished build of other files or settings; starting over", root)
        return 0
    return int(rec.get("done", 0))


def _write_progress(root: Path, key: str, done: int) -> None:
    atomic_write_text(root / _PROGRESS, json.dumps({"plan": key, "done": done}) + "\n")


def _write_file(
    path: Path, row: Mapping[str, Any], offset: int, dim: int, dtype: np.dtype, ff, f_off: int, cf, c_off: int
) -> None:
    from survpgc.data.features import read_feature_file

    feats, coords, _ = read_feature_file(path)
    if feats.shape != (row["n"], dim):
        raise DataError(f"{path}: {feats.shape} patches x dim, its header said {(row['n'], dim)}; rebuild the store")
    if dtype == np.float16 and feats.dtype != np.float16:
        if np.abs(feats).max() > _FLOAT16_MAX:
            raise DataError(
                f"{path}: values beyond the float16 range ({_FLOAT16_MAX:g}); build the store with --dtype float32"
            )
    ff.seek(f_off + offset * dim * dtype.itemsize)
    ff.write(memoryview(np.ascontiguousarray(feats, dtype=dtype)).cast("B"))
    crd = np.full((row["n"], 2), -1, dtype=np.int64) if coords is None else coords.astype(np.int64, copy=False)
    cf.seek(c_off + offset * 16)
    cf.write(memoryview(np.ascontiguousarray(crd)).cast("B"))


def _finish(
    root: Path,
    src: Path,
    plan: list[dict[str, Any]],
    offsets: np.ndarray,
    settings: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    dtype: str,
    dim: int,
    n_rows: int,
    key: str,
) -> None:
    """Rename the finished arrays into place, then write the slide index and, last, the store record."""
    import pandas as pd

    for name in (_FEATURES, _COORDS):
        if (root / (name + _PARTIAL)).is_file():
            os.replace(root / (name + _PARTIAL), root / name)
    index = pd.DataFrame(
        {
            "file": [r["file"] for r in plan],
            "offset": offsets[:-1],
            "n": [r["n"] for r in plan],
            "size": [r["size"] for r in plan],
            "mtime_ns": [r["mtime_ns"] for r in plan],
        }
    )
    atomic_write_text(root / _SLIDES, index.to_csv(index=False))
    from survpgc import __version__

    rec = {
        "format": _FORMAT,
        "version": _VERSION,
        "dtype": dtype,
        "dim": dim,
        "n_rows": n_rows,
        "n_files": len(plan),
        "source": str(src),
        "settings": dict(settings),
        "extraction": dict(record) if record is not None else None,
        "plan": key,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "survpgc_version": __version__,
    }
    atomic_write_text(root / STORE_RECORD, json.dumps(rec, indent=2, sort_keys=True, default=str) + "\n")
    (root / _PROGRESS).unlink(missing_ok=True)
