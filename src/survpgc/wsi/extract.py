"""Feature extraction: slides in, one CLAM/TRIDENT ``.h5`` per slide out -- resumable, atomic, shareable.

Per slide: tissue segmentation and patch grid (:func:`survpgc.wsi.grid.tile_slide`), patches read, resized and
transformed by DataLoader workers, batched inference under ``torch.inference_mode`` with the encoder's precision
(bf16 autocast on capable CPUs, fp16/bf16 on GPUs; channels-last for convolutional encoders; optionally
``torch.compile``), and an atomic write of ``<out>/<slide stem>.h5`` with datasets ``features``, ``coords`` and
the geometry and encoder attributes (:func:`survpgc.data.features.write_feature_file`). A QC thumbnail goes to
``<out>/qc/<slide stem>.png``.

The data path is a pipeline over all of this process's slides, so the encoder never waits for one slide's
bookkeeping: a *planner* thread claims and tiles the next slide while the current one encodes; one DataLoader
(its ``workers`` processes started once, not per slide) reads the batches of slide after slide
(:class:`~survpgc.wsi.grid.PatchBatchDataset`: each worker opens the slides itself, never a handle inherited
across a fork) and transforms them -- on CUDA the uint8 patches go to the GPU, which transforms them
(``transform_on``) --, into pinned memory when the encoder is on CUDA (copied with ``non_blocking``, features
kept on the device until the slide is written); the main thread encodes; a *writer* thread writes each finished slide's
``.h5`` and manifest row behind a bounded queue while the next slide encodes. Batches are the same whatever the
parallelism (``batch_size`` patches of one slide, in grid order), so features are bit-identical for any
``workers`` and with or without ``overlap``.

* One folder, one set of settings: ``<out>/extraction.json`` records the encoder (and its weight
  fingerprint), feature dim, patch size, magnification, segmentation preset, min tissue and float16; it is
  written with the first slide and every later run is checked against it before its encoder loads -- other
  settings are refused (see :mod:`survpgc.wsi.outputs`).
* Resumable: a finished ``.h5`` (written under a temporary name, renamed when complete) is skipped on rerun;
  partial outputs never exist under the final name, so they are redone, and the temporaries a killed run
  left are swept when the slide is next claimed. Ctrl-C raises :class:`~survpgc.errors.Interrupted` saying
  how many slides were finished and that rerunning the same command resumes: slides already encoded are still
  written, slides planned ahead are released unwritten.
* One bad slide never stops the batch: its error is recorded in the manifest and the others go on; the
  summary says how many failed (the CLI exits non-zero then).
* ``manifest.csv`` records per slide: status (done / skipped / no_tissue / failed), n_patches, seconds,
  error, encoder, the MPP used and where it came from (metadata / fallback / override / table). It merges
  runs (a slide's latest row replaces its older one, no row is ever dropped) under the folder lock.
* Sharing a folder: each slide is claimed (:func:`survpgc.locks.claim`) while it is processed, so two
  processes on one folder -- two ``extract`` commands, or the ranks of a ``torchrun`` / ``--shard`` run --
  take the slides the other has not claimed and never repeat each other's work; a slide held by another
  process is counted as ``claimed`` (not failed) and left out of this process's manifest rows.
* Sharding: ``shard=(i, n)`` processes the slides whose index in the sorted list is ``i mod n``; under
  ``torchrun`` it is taken from RANK / WORLD_SIZE, and LOCAL_RANK picks the GPU. All shards merge into the
  one ``manifest.csv``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.data.cohort import read_table
from survpgc.data.slides import SLIDE_SUFFIXES, slide_stem
from survpgc.devices import resolve_device
from survpgc.errors import ConfigError, DataError, InputError, Interrupted, SurvpgcError
from survpgc.faults import fault_point
from survpgc.locks import claim, output_dir, sweep_temporaries
from survpgc.wsi.outputs import (
    EXTRACTION_RECORD,
    SEGMENTATION_RECORD,
    check_settings,
    merge_manifest,
    record_settings,
)
from survpgc.wsi.reader import SLIDE_ERRORS

__all__ = [
    "MANIFEST_COLUMNS",
    "ExtractSummary",
    "extract_features",
    "list_slides",
    "read_manifests",
    "resolve_shard",
    "segment_slides",
]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["slide_id", "path", "status", "n_patches", "seconds", "error", "encoder", "mpp", "mpp_source"]


@dataclass
class ExtractSummary:
    out_dir: Path
    n_slides: int
    done: int = 0
    skipped: int = 0
    no_tissue: int = 0
    failed: int = 0
    claimed: int = 0  #: slides another process held (left to it; not failed)
    n_patches: int = 0
    seconds: float = 0.0
    manifest: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def describe(self) -> str:
        rate = self.n_patches / self.seconds if self.seconds > 0 else float("nan")
        other = f", {self.claimed} claimed by another process" if self.claimed else ""
        return (
            f"{self.n_slides} slide(s): {self.done} extracted, {self.skipped} already done, "
            f"{self.no_tissue} without tissue, {self.failed} failed{other}; {self.n_patches} patches in "
            f"{self.seconds:.1f} s ({rate:.1f} patches/s) -> {self.out_dir}"
        )


def list_slides(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Slides from a folder (known slide suffixes), a CSV/TSV with a ``path`` or ``slide_path`` column
    (relative paths resolved against the CSV's folder), or an explicit list; sorted, duplicates removed."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    else:
        src = Path(source)
        if src.is_dir():
            paths = [p for p in src.iterdir() if p.is_file() and p.name.lower().endswith(SLIDE_SUFFIXES)]
        elif src.is_file():
            table = read_table(src)
            col = next((c for c in ("path", "slide_path") if c in table.columns), None)
            if col is None:
                raise DataError(f"{src}: needs a 'path' (or 'slide_path') column listing the slide files")
            paths = [p if Path(p).is_absolute() else src.parent / p for p in map(Path, table[col].astype(str))]
        else:
            raise DataError(f"{src}: no such slide folder or slide list")
    paths = sorted({p.resolve() if p.exists() else p for p in paths}, key=lambda p: p.name)
    if not paths:
        raise DataError(f"no slide files found in {source}")
    return paths


def resolve_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` or ``(i, n)``; None → from torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    if shard is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {i}/{n}: need 0 <= i < n")
    return i, n


def _existing_ok(h5: Path, encoder_name: str, patch_size: int, magnification: float) -> tuple[bool, Any]:
    """Whether the finished ``h5`` was made with these settings: ``(True, {n, mpp, mpp_source})`` or
    ``(False, why)``."""
    import h5py

    try:
        with h5py.File(h5, "r") as f:
            a = dict(f.attrs)
            n = int(f["features"].shape[0])
    except (OSError, KeyError) as exc:
        return False, f"existing {h5.name} is unreadable ({exc}); delete it to redo the slide"

    def text(v: Any) -> Any:
        return v.decode() if isinstance(v, bytes) else v

    enc = text(a.get("encoder"))
    same = enc == encoder_name and int(a.get("patch_size", -1)) == patch_size
    same = same and abs(float(a.get("target_magnification", -1)) - magnification) < 1e-6
    if not same:
        return False, (
            f"{h5.name} exists with other settings (encoder {enc}, patch_size {a.get('patch_size')}, "
            f"magnification {a.get('target_magnification')}); use another --out folder"
        )
    mpp = a.get("mpp")
    return True, {
        "n": n,
        "mpp": round(float(mpp), 6) if mpp is not None else "",
        "mpp_source": text(a.get("mpp_source", "")) or "",
    }


def _manifest_path(out: Path) -> Path:
    return out / "manifest.csv"


def _mpp_overrides(mpp_override: float | None, mpp_table: str | Path | None) -> Any:
    """One MPP that replaces every slide's metadata, or a per-slide table (which wins)."""
    from survpgc.wsi.reader import load_mpp_overrides

    return load_mpp_overrides(mpp_table) if mpp_table is not None else mpp_override


def _mpp_columns(grid: Any) -> dict[str, Any]:
    """The manifest's mpp columns of one slide's grid, and a per-slide log line when an override replaced the
    metadata's value."""
    source = grid.extra.get("mpp_source")
    category = source if source in ("override", "table", "fallback") else ("metadata" if source else "")
    if category in ("override", "table"):
        meta = grid.extra.get("mpp_metadata")
        flag = "--mpp-override" if category == "override" else "--mpp-table"
        log.warning(
            "%s: MPP %.4g um/px from %s replaces %s",
            grid.slide_id,
            grid.mpp,
            flag,
            f"{meta:.4g} um/px from the slide's metadata" if meta is not None else "the (missing) metadata value",
        )
    return {"mpp": round(float(grid.mpp), 6), "mpp_source": category}


def _mpp_settings(mpp: float | None, mpp_override: float | None, mpp_table: str | Path | None) -> None:
    """Check the MPP options up front (before any folder is made or slide is read)."""
    import math

    from survpgc.wsi.reader import MPP_RANGE

    if mpp_override is not None and mpp_table is not None:
        raise ConfigError("--mpp-override (one MPP for every slide) and --mpp-table (per slide) exclude each other")
    for option, value in (("--mpp", mpp), ("--mpp-override", mpp_override)):
        if value is None:
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and MPP_RANGE[0] <= value <= MPP_RANGE[1]):
            raise InputError(
                f"{option} {value!r} is not a plausible resolution in um/px (expected {MPP_RANGE[0]}..{MPP_RANGE[1]}, "
                "e.g. 0.25 for 40x, 0.5 for 20x)"
            )


def _slide_temporaries(out: Path, stem: str, *, qc: bool, masks: bool = False) -> None:
    """Sweep the stale temporaries of one slide's files (call while holding its claim)."""
    sweep_temporaries(out, [f"{stem}.h5"])
    if qc:
        sweep_temporaries(out / "qc", [f"{stem}.png"])
    if masks:
        sweep_temporaries(out / "masks", [f"{stem}.png"])


def _interrupted(what: str, out: Path, finished: int, total: int, detail: str) -> Interrupted:
    return Interrupted(
        f"{what} stopped by Ctrl-C: {finished} of {total} slide(s) finished in {out} ({detail}); finished files "
        "and their manifest rows are kept and nothing is half-written; rerun the same command to resume"
    )


SEGMENT_COLUMNS = ["slide_id", "status", "n_patches", "error", "mpp", "mpp_source"]


def segment_slides(
    slides: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    magnification: float = 20.0,
    patch_size: int = 256,
    preset: str = "default",
    min_tissue: float = 0.5,
    mpp: float | None = None,
    mpp_override: float | None = None,
    mpp_table: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Segmentation and patch grid only (no encoder): ``qc/<slide>.png``, ``masks/<slide>.png`` and
    ``segment.csv`` (slide_id, status, n_patches, error, mpp, mpp_source), to check a batch before a long
    extraction. One bad slide never stops the batch.

    Like :func:`extract_features`: the folder's settings are recorded in ``segmentation.json`` and a rerun
    with other settings is refused; ``segment.csv`` merges runs; slides are claimed one by one, so two
    processes on one folder share the work (a slide another process holds is left to it, with status
    ``claimed``, and not written to the manifest). ``mpp`` is used only for slides whose metadata lacks it;
    ``mpp_override`` / ``mpp_table`` replace the metadata.
    """
    from survpgc.wsi.grid import tile_slide

    _mpp_settings(mpp, mpp_override, mpp_table)
    slide_paths = list_slides(slides)
    settings = {
        "kind": "survpgc segment",
        "patch_size": int(patch_size),
        "magnification": float(magnification),
        "target_mpp": 10.0 / float(magnification) if magnification else None,
        "preset": str(preset),
        "min_tissue": float(min_tissue),
        "survpgc_version": _version(),
    }
    with output_dir(out_dir) as out:
        check_settings(out, SEGMENTATION_RECORD, settings)
        overrides = _mpp_overrides(mpp_override, mpp_table)
        rows: list[dict[str, Any]] = []
        recorded = False
        try:
            for path in slide_paths:
                stem = slide_stem(path.name)
                held = claim(out, stem)
                if held is None:
                    log.info("%s: claimed by another process on %s; left to it", stem, out)
                    rows.append({"slide_id": stem, "status": "claimed", "n_patches": 0, "error": ""})
                    continue
                with held:
                    if not recorded:
                        record_settings(out, SEGMENTATION_RECORD, settings)
                        recorded = True
                    _slide_temporaries(out, stem, qc=True, masks=True)
                    row: dict[str, Any] = {"slide_id": stem, "status": "", "n_patches": 0, "error": ""}
                    try:
                        grid = tile_slide(
                            path,
                            patch_size=patch_size,
                            target_magnification=magnification,
                            min_tissue_fraction=min_tissue,
                            segment_config=preset,
                            mpp_override=overrides,
                            mpp_fallback=mpp,
                            qc_path=out / "qc" / f"{stem}.png",
                            mask_path=out / "masks" / f"{stem}.png",
                        ).grid
                        row.update(status=grid.status, n_patches=grid.n_patches, **_mpp_columns(grid))
                    except SurvpgcError as exc:
                        row.update(status="failed", error=str(exc))
                        log.error("%s: %s", stem, exc)
                    merge_manifest(out / "segment.csv", [row], SEGMENT_COLUMNS)
                rows.append(row)
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted):
                raise
            finished = sum(r["status"] != "claimed" for r in rows)
            raise _interrupted("segment", out, finished, len(slide_paths), "QC images and segment.csv") from exc
    return rows


def _version() -> str:
    from survpgc import __version__

    return __version__


def _encoder_identity(encoder: Any, weights: str | None) -> tuple[str, str | None, int | None]:
    """Name, weight fingerprint and feature dim of the encoder asked for, as far as they are known before it
    loads (a built encoder: all three)."""
    if not isinstance(encoder, str):
        return str(encoder.name), getattr(encoder, "weights", None), int(encoder.dim)
    from survpgc.encoders.patch import get_patch_encoder_spec
    from survpgc.encoders.timm_local import TIMM_PREFIX
    from survpgc.encoders.weights import describe_file

    key = encoder.strip()
    if key.lower().startswith(TIMM_PREFIX):
        name, dim = TIMM_PREFIX + key[len(TIMM_PREFIX) :].strip(), None
    else:
        spec = get_patch_encoder_spec(key)  # an unknown name fails here, before anything is written
        name, dim = spec.name, spec.dim
    fingerprint = None
    if weights is not None and Path(weights).expanduser().is_file():
        fingerprint = describe_file(Path(weights).expanduser())
    return name, fingerprint, dim


def _legacy_settings(out: Path) -> dict[str, Any] | None:
    """Settings of a feature folder written before settings records existed, read from one of its files."""
    from survpgc.data.features import read_feature_attrs

    for h5 in sorted(out.glob("*.h5")):
        try:
            a = read_feature_attrs(h5)
        except (SurvpgcError, OSError):
            continue
        if a.get("encoder") is None:
            continue
        return {
            "source": h5.name,
            "encoder": a.get("encoder"),
            "feature_dim": a.get("encoder_dim"),
            "patch_size": a.get("patch_size"),
            "magnification": a.get("target_magnification"),
        }
    return None


def extract_features(
    slides: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    encoder: Any = "efficientnet_lite0",
    weights: str | None = None,
    magnification: float = 20.0,
    patch_size: int = 256,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    precision: str = "auto",
    shard: str | tuple[int, int] | None = None,
    mpp: float | None = None,
    mpp_override: float | None = None,
    mpp_table: str | Path | None = None,
    preset: str = "default",
    min_tissue: float = 0.5,
    float16: bool = False,
    qc: bool = True,
    progress: bool = False,
    compile: bool = False,
    overlap: bool = True,
    prefetch: int = 2,
    transform_on: str = "auto",
    backend: str = "auto",
) -> ExtractSummary:
    """Extract patch features of every slide (see module docstring). Returns an :class:`ExtractSummary`.

    ``mpp`` is the MPP of slides whose metadata lacks it (never replaces a valid value); ``mpp_override``
    replaces every slide's metadata and ``mpp_table`` (CSV ``slide_id,mpp``) the listed slides'.

    ``workers`` DataLoader worker processes read, decode and resize the patches of all slides (started once for the
    whole call; 0 reads in this process); ``prefetch`` batches per worker are read ahead. ``transform_on`` says
    where the encoder's transform (resize to its input size, normalisation) runs: ``"workers"``, or
    ``"device"`` (uint8 patches are copied, a quarter of the bytes, and transformed by the encoder's device);
    ``"auto"``: the device when it is CUDA (the transform costs a CPU worker more than reading and decoding), the
    workers otherwise.
    ``compile`` runs the encoder's forward through ``torch.compile`` (falls back to eager, with a warning, when
    compilation fails). ``backend`` is the slide reader (:func:`~survpgc.wsi.reader.open_slide`): ``"tiffslide"``
    reads SVS / generic TIFF regions about 2.5x faster than openslide's ``"auto"`` (the same pixels on the files
    measured). ``overlap`` (default) tiles the next slide and writes the previous one in background
    threads while the current one encodes; ``overlap=False`` does one step after the other. Features are the same
    bit for bit whatever ``workers``, ``prefetch`` and ``overlap`` (and, on CPU, ``transform_on``).
    """
    from survpgc.encoders.patch import create_patch_encoder

    _mpp_settings(mpp, mpp_override, mpp_table)
    _check_counts(batch_size=batch_size, workers=workers, prefetch=prefetch)
    if transform_on not in ("auto", "workers", "device"):
        raise InputError(f"transform_on must be 'auto', 'workers' or 'device', got {transform_on!r}")
    _check_backend(backend)
    shard_i, shard_n = resolve_shard(shard)
    all_slides = list_slides(slides)
    mine = [p for k, p in enumerate(all_slides) if k % shard_n == shard_i]
    name, fingerprint, dim = _encoder_identity(encoder, weights)
    settings: dict[str, Any] = {
        "kind": "survpgc extract",
        "encoder": name,
        "weights": fingerprint,
        "feature_dim": dim,
        "patch_size": int(patch_size),
        "magnification": float(magnification),
        "target_mpp": 10.0 / float(magnification) if magnification else None,
        "preset": str(preset),
        "min_tissue": float(min_tissue),
        "float16": bool(float16),
        "survpgc_version": _version(),
    }
    with output_dir(out_dir) as out:
        legacy = _legacy_settings(out)
        check_settings(out, EXTRACTION_RECORD, settings, legacy=legacy)  # before the encoder loads
        overrides = _mpp_overrides(mpp_override, mpp_table)
        device = resolve_device(device)
        enc = (
            encoder
            if not isinstance(encoder, str)
            else create_patch_encoder(encoder, weights, device=device, precision=precision)
        )
        settings.update(
            encoder=enc.name, weights=getattr(enc, "weights", None) or fingerprint, feature_dim=int(enc.dim)
        )
        if compile:
            enc = enc.compiled(batch_size=batch_size)
        if transform_on == "auto":
            transform_on = "device" if str(enc.device).startswith("cuda") else "workers"
        job = _ExtractJob(
            out, enc, patch_size, magnification, min_tissue, preset, overrides, mpp, batch_size, workers, float16, qc,
            overlap=bool(overlap), prefetch=prefetch, transform_on=transform_on, backend=backend,
        )  # fmt: skip
        summary = ExtractSummary(out, len(mine))
        summary.manifest = _manifest_path(out)
        try:
            _extract_all(mine, job, summary, settings, legacy, progress)
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted):
                raise
            finished = summary.done + summary.skipped + summary.no_tissue + summary.failed
            detail = f"{summary.done} extracted, {summary.skipped} already done"
            raise _interrupted("extract", out, finished, len(mine), detail) from exc
    return summary


def _check_backend(backend: str) -> None:
    from survpgc.wsi.reader import BACKENDS

    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"unknown slide backend {backend!r}; choose 'auto' or one of {BACKENDS}")


def _check_counts(**counts: Any) -> None:
    """``batch_size`` and ``prefetch`` >= 1, ``workers`` >= 0 (integers), before any folder is made."""
    for name, value in counts.items():
        low = 0 if name == "workers" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def _extract_all(
    mine: list[Path],
    job: _ExtractJob,
    summary: ExtractSummary,
    settings: dict[str, Any],
    legacy: dict[str, Any] | None,
    progress: bool,
) -> None:
    """Every slide of this process's share through the pipeline: claimed and tiled by the planner (a slide another
    process holds is left to it), read by the DataLoader workers, encoded here, written by the writer with its
    manifest row. On any exit, slides planned but not encoded are released and what was encoded is written."""
    t_all = time.perf_counter()
    planner = _Planner(mine, job, settings, legacy)
    source = _TaskSource(planner)
    loader = _loader(source, job)
    batches = bar = writer = None
    _use_device(job.enc.device)  # the pin-memory thread pins for the current device: make it ours (not GPU 0)
    try:
        # the workers are forked first, while no thread of ours runs (a lock held by a thread at the fork -- the
        # progress display's console, a log handler -- would stay locked in the workers): the planner thread starts
        # when the loader first asks for tasks, after the fork; the progress display and the writer after that
        batches = iter(loader)
        bar = _progress(progress, len(mine))
        writer = _Writer(job, summary, bar)
        writer.start()
        _encode_stream(batches, source, job, writer, bar)
        writer.close()
    finally:
        for work in planner.stop() + source.unfinished():
            work.release()
        if batches is not None and hasattr(batches, "_shutdown_workers"):
            batches._shutdown_workers()
        loader.dataset.close()
        if writer is not None:
            writer.close(raise_error=False)  # slides already encoded are still written (Ctrl-C keeps finished work)
        if bar is not None:
            bar[0].stop()
        summary.seconds = time.perf_counter() - t_all


@dataclass(frozen=True)
class _ExtractJob:
    """The settings every slide of one :func:`extract_features` call shares."""

    out: Path
    enc: Any
    patch_size: int
    magnification: float
    min_tissue: float
    preset: str
    mpp_overrides: Any
    mpp_fallback: float | None
    batch_size: int
    workers: int
    float16: bool
    qc: bool
    overlap: bool = True
    prefetch: int = 2
    transform_on: str = "workers"  #: "workers" or "device"
    backend: str = "auto"  #: slide reader


@dataclass(eq=False)
class _SlideWork:
    """One slide on its way through the pipeline. ``row['status']`` stays empty while the slide still has patches
    to encode; the claim is released by whoever finishes the slide (the writer), or on the way out."""

    key: int
    path: Path
    stem: str
    row: dict[str, Any]
    held: Any = None  #: the slide's claim (None: another process holds it)
    grid: Any = None
    tasks: list[Any] = field(default_factory=list)
    parts: list[Any] = field(default_factory=list)
    received: int = 0
    started: float | None = None  #: when its first batch came back
    seconds: float = 0.0  #: time spent on it: tiling + encoding + writing
    handed: bool = False  #: handed to the writer
    bar_task: Any = None

    @property
    def to_encode(self) -> bool:
        return not self.row["status"]

    def release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None


def _new_row(path: Path, stem: str, encoder: str) -> dict[str, Any]:
    return {"slide_id": stem, "path": str(path), "status": "", "n_patches": 0, "seconds": 0.0, "error": "",
            "encoder": encoder, "mpp": "", "mpp_source": ""}  # fmt: skip


class _PlannerError:
    """An error of the planner thread, passed on to the main thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class _Planner:
    """Claims the slides one after the other and decides what each needs: left to another process (claimed),
    already done (skipped), or tiled -- tissue grid and QC image -- for encoding (or no tissue, or failed).

    With ``job.overlap`` it runs in a background thread, one slide ahead of the encoder (a queue of one), so the
    next slide's segmentation overlaps the current slide's encoding while few claims are held ahead of need;
    otherwise each slide is planned when the encoder asks for it.
    """

    def __init__(self, mine: list[Path], job: _ExtractJob, settings: dict[str, Any], legacy: Any) -> None:
        self.mine = mine
        self.job = job
        self.settings = settings
        self.legacy = legacy
        self.recorded = False
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = 0

    def plan(self, key: int, path: Path) -> _SlideWork:
        job = self.job
        stem = slide_stem(path.name)
        work = _SlideWork(key, path, stem, _new_row(path, stem, job.enc.name))
        work.held = claim(job.out, stem)
        if work.held is None:
            work.row.update(status="claimed", mpp=None, mpp_source=None)
            log.info("%s: claimed by another process on %s; left to it", stem, job.out)
            return work
        t0 = time.perf_counter()
        try:
            if not self.recorded:  # the record is written with the first slide this process holds
                record_settings(job.out, EXTRACTION_RECORD, self.settings, legacy=self.legacy)
                self.recorded = True
            _slide_temporaries(job.out, stem, qc=job.qc)
            self._tile(work)
        except BaseException:
            work.release()
            raise
        work.seconds += time.perf_counter() - t0
        return work

    def _tile(self, work: _SlideWork) -> None:
        """Skip check, then the tissue grid (a failure is recorded in the row, never raised)."""
        from survpgc.wsi.grid import batch_tasks, tile_slide

        job, row, stem = self.job, work.row, work.stem
        h5 = job.out / f"{stem}.h5"
        try:
            if h5.is_file():
                ok, info = _existing_ok(h5, job.enc.name, job.patch_size, job.magnification)
                if not ok:
                    raise ConfigError(info)
                row.update(status="skipped", n_patches=int(info["n"]), mpp=info["mpp"], mpp_source=info["mpp_source"])
                return
            grid = tile_slide(
                work.path,
                patch_size=job.patch_size,
                target_magnification=job.magnification,
                min_tissue_fraction=job.min_tissue,
                segment_config=job.preset,
                mpp_override=job.mpp_overrides,
                mpp_fallback=job.mpp_fallback,
                backend=job.backend,
                qc_path=(job.out / "qc" / f"{stem}.png") if job.qc else None,
            ).grid
            row.update(_mpp_columns(grid))
            if grid.is_empty:
                row.update(status=grid.status if grid.status != "ok" else "no_tissue")
                log.warning("%s: no tissue patches (%s); no feature file written", stem, grid.status)
                return
            work.grid = grid
            work.tasks = batch_tasks(grid, job.batch_size, key=work.key, backend=job.backend)
        except SLIDE_ERRORS as exc:
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            log.error("%s: %s", stem, exc)

    # ------------------------------------------------------------------ one slide ahead, in a thread
    def next(self) -> _SlideWork | None:
        """The next planned slide (None after the last)."""
        if not self.job.overlap:
            if self._next >= len(self.mine):
                return None
            self._next += 1
            return self.plan(self._next - 1, self.mine[self._next - 1])
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="survpgc-extract-planner", daemon=True)
            self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the slide planner thread stopped without a word") from None
                continue
            if item is _END:
                return None
            if isinstance(item, _PlannerError):
                raise item.exc
            return item

    def _run(self) -> None:
        try:
            for key, path in enumerate(self.mine):
                if self._stop.is_set():
                    return
                work = self.plan(key, path)
                if not self._put(work):
                    work.release()
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the main thread, which raises it
            self._put(_PlannerError(exc))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def stop(self, wait: float = 60.0) -> list[_SlideWork]:
        """Stop planning; returns the slides planned but never handed on (their claims are still held)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)
            if self._thread.is_alive():
                log.warning("the slide planner is still busy after %.0f s; leaving it (its claim ends with us)", wait)
        left = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            if isinstance(item, _SlideWork):
                left.append(item)


class _TaskSource:
    """The DataLoader's sampler: the batch tasks of every slide, slide after slide, in order; a slide without
    patches to encode passes as one marker task (so the encoder sees every slide in order). A slide that failed
    meanwhile gets no more tasks."""

    def __init__(self, planner: _Planner) -> None:
        self.planner = planner
        self.works: dict[int, _SlideWork] = {}

    def __iter__(self) -> Iterator[Any]:
        from survpgc.wsi.grid import PatchBatchTask

        while True:
            work = self.planner.next()
            if work is None:
                return
            self.works[work.key] = work
            if not work.to_encode:
                yield PatchBatchTask(work.key, -1, str(work.path), np.zeros((0, 2), np.int64))
                continue
            for task in work.tasks:
                if not work.to_encode:  # failed: the rest of the slide is not read
                    break
                yield task

    def unfinished(self) -> list[_SlideWork]:
        return [w for w in self.works.values() if not w.handed]


def _loader(source: _TaskSource, job: _ExtractJob) -> Any:
    """One DataLoader for the whole share: its workers (started once) read, resize (and with ``transform_on=
    "workers"`` transform) the batches of slide after slide; pinned memory when the encoder runs on CUDA (copied
    with non_blocking)."""
    import torch

    from survpgc.wsi.grid import PatchBatchDataset

    extra: dict[str, Any] = {"prefetch_factor": job.prefetch} if job.workers > 0 else {}
    return torch.utils.data.DataLoader(
        PatchBatchDataset(transform=job.enc.transform if job.transform_on == "workers" else None),
        batch_size=None,
        sampler=source,
        num_workers=job.workers,
        collate_fn=_as_is,
        pin_memory=torch.device(job.enc.device).type == "cuda",
        **extra,
    )


def _as_is(item: Any) -> Any:
    return item


def _use_device(device: Any) -> None:
    """Make a CUDA ``device`` this thread's current device (no context is made on another GPU); else nothing."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.set_device(device)


def _encode_stream(batches: Any, source: _TaskSource, job: _ExtractJob, writer: _Writer, bar: Any) -> None:
    """Encode the batches as they come (in slide order); a slide is handed to the writer at its last batch, or at
    once when it has nothing to encode or fails."""
    for batch in batches:
        work = source.works.get(batch.key)
        if work is None or work.handed:  # a batch of a slide that failed already
            continue
        if not work.to_encode:
            _hand(work, source, writer, bar)
            continue
        now = time.perf_counter()
        if work.started is None:
            work.started = now
            if bar is not None:
                work.bar_task = bar[0].add_task(f"  {work.stem[:26]}", total=work.grid.n_patches)
        if batch.error is not None:
            _fail(work, batch.error, source, writer, bar)
            continue
        try:
            work.parts.append(job.enc.encode_tensor(batch.images))
        except (SurvpgcError, OSError, RuntimeError, ValueError) as exc:
            _fail(work, f"{type(exc).__name__}: {exc}", source, writer, bar)
            continue
        fault_point("encoder")
        work.received += 1
        if work.bar_task is not None:
            bar[0].advance(work.bar_task, batch.images.shape[0])
        if work.received == len(work.tasks):
            work.seconds += time.perf_counter() - work.started
            _hand(work, source, writer, bar)


def _fail(work: _SlideWork, error: str, source: _TaskSource, writer: _Writer, bar: Any) -> None:
    work.row.update(status="failed", error=error)
    work.parts.clear()
    log.error("%s: %s", work.stem, error)
    if work.started is not None:
        work.seconds += time.perf_counter() - work.started
    _hand(work, source, writer, bar)


def _hand(work: _SlideWork, source: _TaskSource, writer: _Writer, bar: Any) -> None:
    work.handed = True
    source.works.pop(work.key, None)
    if work.bar_task is not None:
        bar[0].remove_task(work.bar_task)
        work.bar_task = None
    writer.put(work)


class _Writer:
    """Writes each finished slide -- its ``.h5`` (atomic), its manifest row (merged under the folder lock) -- then
    releases its claim and counts it. With ``job.overlap`` in a background thread behind a queue of two slides, so
    writing overlaps the next slide's encoding; otherwise in the caller's thread. An error that is not a slide's
    own (the manifest cannot be merged) stops the run: it is raised in the main thread at the next hand-over."""

    def __init__(self, job: _ExtractJob, summary: ExtractSummary, bar: Any) -> None:
        self.job = job
        self.summary = summary
        self.bar = bar
        self.error: BaseException | None = None
        self._queue: queue.Queue[_SlideWork | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        if self.job.overlap:
            self._thread = threading.Thread(target=self._run, name="survpgc-extract-writer", daemon=True)
            self._thread.start()

    def put(self, work: _SlideWork) -> None:
        if self._thread is None:
            self.write(work)
            return
        while True:
            if self.error is not None:
                work.release()
                raise self.error
            try:
                self._queue.put(work, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        _use_device(self.job.enc.device)  # the current CUDA device is per thread
        while True:
            work = self._queue.get()
            if work is None:
                return
            if self.error is not None:  # stopped: what is still queued is not written
                work.release()
                continue
            try:
                self.write(work)
            except BaseException as exc:
                self.error = exc

    def close(self, *, raise_error: bool = True) -> None:
        """Write what is queued, stop the thread; raise its error (``raise_error``)."""
        if self._thread is not None and not self._closed:
            self._closed = True
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        if raise_error and self.error is not None:
            raise self.error

    def write(self, work: _SlideWork) -> None:
        import torch

        job, row, summary = self.job, work.row, self.summary
        t0 = time.perf_counter()
        try:
            if work.to_encode:
                try:
                    feats = torch.cat(work.parts).cpu().numpy()
                    work.parts.clear()
                    _write(job.out / f"{work.stem}.h5", feats, work.grid, job.enc, job.float16, row["mpp_source"])
                    row.update(status="done", n_patches=int(work.grid.n_patches))
                except SLIDE_ERRORS as exc:
                    row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                    log.error("%s: %s", work.stem, exc)
            work.seconds += time.perf_counter() - t0
            row["seconds"] = round(work.seconds, 3)
            if row["status"] == "claimed":
                summary.claimed += 1
                summary.rows.append({k: row[k] for k in ("slide_id", "path", "status", "n_patches", "seconds",
                                                         "error", "encoder")})  # fmt: skip
                return
            merge_manifest(_manifest_path(job.out), [row], MANIFEST_COLUMNS)
        finally:
            work.release()
        status = row["status"]
        if status == "done":
            summary.done += 1
            summary.n_patches += int(row["n_patches"])
        elif status in ("skipped", "failed"):
            setattr(summary, status, getattr(summary, status) + 1)
        else:
            summary.no_tissue += 1
        summary.rows.append(row)
        if self.bar is not None:
            self.bar[0].advance(self.bar[1])
        log.info("%s: %s (%d patches, %.1f s)", row["slide_id"], status, row["n_patches"], row["seconds"])


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )
    task = p.add_task("all slides", total=total)
    p.start()
    return p, task


def _write(h5: Path, feats: np.ndarray, grid, enc, float16: bool, mpp_source: str = "") -> None:
    from survpgc.data.features import write_feature_file

    attrs = {**grid.attrs(), **{k: v for k, v in enc.metadata().items() if k not in grid.attrs()}}
    attrs["encoder"] = enc.name
    attrs["encoder_dim"] = int(enc.dim)
    attrs["mpp_source"] = mpp_source or None
    write_feature_file(h5, feats.astype(np.float16 if float16 else np.float32), grid.coords, **attrs)


def read_manifests(out_dir: str | Path) -> pd.DataFrame:
    """All manifest rows of an output folder, one per slide (``manifest.csv``, and the per-shard manifests
    older versions wrote; the newest row of a slide wins)."""
    out = Path(out_dir)
    files = sorted(out.glob("manifest.shard*.csv")) + [p for p in [out / "manifest.csv"] if p.is_file()]
    if not files:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    table = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    return table.drop_duplicates("slide_id", keep="last").reset_index(drop=True)
