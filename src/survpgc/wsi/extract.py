"""Feature extraction: slides in, one CLAM/TRIDENT ``.h5`` per slide out -- resumable, atomic, shardable.

Per slide: tissue segmentation and patch grid (:func:`survpgc.wsi.grid.tile_slide`), patches read by
DataLoader workers (:class:`~survpgc.wsi.grid.SlidePatchDataset`, with the encoder's transform), batched
inference under ``torch.inference_mode`` with the encoder's precision (bf16 autocast on capable CPUs,
fp16/bf16 on GPUs), and an atomic write of ``<out>/<slide stem>.h5`` with datasets ``features``,
``coords`` and the geometry and encoder attributes (:func:`survpgc.data.features.write_feature_file`).
A QC thumbnail goes to ``<out>/qc/<slide stem>.png``.

* Resumable: a finished ``.h5`` (written under a temporary name, renamed when complete) is skipped on rerun;
  partial outputs never exist under the final name, so they are redone.
* One bad slide never stops the batch: its error is recorded in the manifest and the others go on; the
  summary says how many failed (the CLI exits non-zero then).
* ``manifest.csv`` records per slide: status (done / skipped / no_tissue / failed), n_patches, seconds,
  error. Sharded runs write ``manifest.shard<i>-of-<n>.csv`` each.
* Sharding: ``shard=(i, n)`` processes the slides whose index in the sorted list is ``i mod n``; under
  ``torchrun`` it is taken from RANK / WORLD_SIZE, and LOCAL_RANK picks the GPU.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.data.cohort import read_table
from survpgc.data.slides import SLIDE_SUFFIXES, slide_stem
from survpgc.devices import resolve_device
from survpgc.errors import ConfigError, DataError, SurvpgcError
from survpgc.files import atomic_write

__all__ = ["ExtractSummary", "extract_features", "list_slides", "read_manifests", "resolve_shard", "segment_slides"]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["slide_id", "path", "status", "n_patches", "seconds", "error", "encoder"]


@dataclass
class ExtractSummary:
    out_dir: Path
    n_slides: int
    done: int = 0
    skipped: int = 0
    no_tissue: int = 0
    failed: int = 0
    n_patches: int = 0
    seconds: float = 0.0
    manifest: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def describe(self) -> str:
        rate = self.n_patches / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.n_slides} slide(s): {self.done} extracted, {self.skipped} already done, "
            f"{self.no_tissue} without tissue, {self.failed} failed; {self.n_patches} patches in "
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


def _manifest_path(out: Path, shard: tuple[int, int]) -> Path:
    return out / ("manifest.csv" if shard[1] == 1 else f"manifest.shard{shard[0]}-of-{shard[1]}.csv")


def _write_manifest(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] = MANIFEST_COLUMNS) -> None:
    table = pd.DataFrame(rows, columns=list(columns))
    atomic_write(path, lambda t: table.to_csv(t, index=False))


def _mpp_overrides(mpp: float | None, mpp_table: str | Path | None) -> Any:
    """One MPP for every slide, or a per-slide table (which wins)."""
    from survpgc.wsi.reader import load_mpp_overrides

    return load_mpp_overrides(mpp_table) if mpp_table is not None else mpp


def segment_slides(
    slides: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    magnification: float = 20.0,
    patch_size: int = 256,
    preset: str = "default",
    min_tissue: float = 0.5,
    mpp: float | None = None,
    mpp_table: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Segmentation and patch grid only (no encoder): ``qc/<slide>.png``, ``masks/<slide>.png`` and
    ``segment.csv`` (slide_id, status, n_patches, error), to check a batch before a long extraction.
    One bad slide never stops the batch."""
    from survpgc.wsi.grid import tile_slide

    out = Path(out_dir)
    overrides = _mpp_overrides(mpp, mpp_table)
    rows = []
    for path in list_slides(slides):
        stem = slide_stem(path.name)
        try:
            grid = tile_slide(
                path,
                patch_size=patch_size,
                target_magnification=magnification,
                min_tissue_fraction=min_tissue,
                segment_config=preset,
                mpp_override=overrides,
                qc_path=out / "qc" / f"{stem}.png",
                mask_path=out / "masks" / f"{stem}.png",
            ).grid
            rows.append({"slide_id": stem, "status": grid.status, "n_patches": grid.n_patches, "error": ""})
        except SurvpgcError as exc:
            rows.append({"slide_id": stem, "status": "failed", "n_patches": 0, "error": str(exc)})
            log.error("%s: %s", stem, exc)
    _write_manifest(out / "segment.csv", rows, ["slide_id", "status", "n_patches", "error"])
    return rows


def _existing_ok(h5: Path, encoder_name: str, patch_size: int, magnification: float) -> tuple[bool, str]:
    import h5py

    try:
        with h5py.File(h5, "r") as f:
            a = dict(f.attrs)
            n = int(f["features"].shape[0])
    except (OSError, KeyError) as exc:
        return False, f"existing {h5.name} is unreadable ({exc}); delete it to redo the slide"
    enc = a.get("encoder")
    enc = enc.decode() if isinstance(enc, bytes) else enc
    same = enc == encoder_name and int(a.get("patch_size", -1)) == patch_size
    same = same and abs(float(a.get("target_magnification", -1)) - magnification) < 1e-6
    if not same:
        return False, (
            f"{h5.name} exists with other settings (encoder {enc}, patch_size {a.get('patch_size')}, "
            f"magnification {a.get('target_magnification')}); use another --out folder"
        )
    return True, str(n)


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
    mpp_table: str | Path | None = None,
    preset: str = "default",
    min_tissue: float = 0.5,
    float16: bool = False,
    qc: bool = True,
    progress: bool = False,
) -> ExtractSummary:
    """Extract patch features of every slide (see module docstring). Returns an :class:`ExtractSummary`."""

    from survpgc.encoders.patch import create_patch_encoder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shard_i, shard_n = resolve_shard(shard)
    all_slides = list_slides(slides)
    mine = [p for k, p in enumerate(all_slides) if k % shard_n == shard_i]
    device = resolve_device(device)
    enc = (
        encoder
        if not isinstance(encoder, str)
        else create_patch_encoder(encoder, weights, device=device, precision=precision)
    )
    job = _ExtractJob(
        out, enc, patch_size, magnification, min_tissue, preset, _mpp_overrides(mpp, mpp_table), batch_size, workers,
        float16, qc,
    )  # fmt: skip
    summary = ExtractSummary(out, len(mine))
    manifest = _manifest_path(out, (shard_i, shard_n))
    summary.manifest = manifest
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    bar = _progress(progress, len(mine))
    for path in mine:
        row = _extract_slide(path, job, summary, bar)
        rows.append(row)
        _write_manifest(manifest, rows)
        if bar is not None:
            bar[0].advance(bar[1])
        log.info("%s: %s (%d patches, %.1f s)", row["slide_id"], row["status"], row["n_patches"], row["seconds"])
    if bar is not None:
        bar[0].stop()
    summary.seconds = time.perf_counter() - t_all
    summary.rows = rows
    return summary


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
    batch_size: int
    workers: int
    float16: bool
    qc: bool


def _extract_slide(path: Path, job: _ExtractJob, summary: ExtractSummary, bar: Any) -> dict[str, Any]:
    """One slide: skipped when its finished file exists, else tiled, encoded and written. Returns its manifest
    row and counts it in ``summary``; a failure is recorded, never raised."""
    stem = slide_stem(path.name)
    h5 = job.out / f"{stem}.h5"
    row: dict[str, Any] = {"slide_id": stem, "path": str(path), "status": "", "n_patches": 0, "seconds": 0.0,
                           "error": "", "encoder": job.enc.name}  # fmt: skip
    t0 = time.perf_counter()
    try:
        if h5.is_file():
            ok, info = _existing_ok(h5, job.enc.name, job.patch_size, job.magnification)
            if not ok:
                raise ConfigError(info)
            row.update(status="skipped", n_patches=int(info))
            summary.skipped += 1
        else:
            _tile_encode_write(path, stem, h5, job, summary, row, bar)
    except (SurvpgcError, OSError, RuntimeError, ValueError) as exc:
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        summary.failed += 1
        log.error("%s: %s", stem, exc)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _tile_encode_write(
    path: Path, stem: str, h5: Path, job: _ExtractJob, summary: ExtractSummary, row: dict[str, Any], bar: Any
) -> None:
    """Tissue grid of one slide, then (when it has patches) its features written to ``h5``."""
    from survpgc.wsi.grid import SlidePatchDataset, tile_slide

    grid = tile_slide(
        path,
        patch_size=job.patch_size,
        target_magnification=job.magnification,
        min_tissue_fraction=job.min_tissue,
        segment_config=job.preset,
        mpp_override=job.mpp_overrides,
        qc_path=(job.out / "qc" / f"{stem}.png") if job.qc else None,
    ).grid
    if grid.is_empty:
        row.update(status=grid.status if grid.status != "ok" else "no_tissue")
        summary.no_tissue += 1
        log.warning("%s: no tissue patches (%s); no feature file written", stem, grid.status)
        return
    dataset = SlidePatchDataset(path, grid, transform=job.enc.transform)
    feats = _encode_grid(job.enc, dataset, job.batch_size, job.workers, bar=bar, label=stem)
    _write(h5, feats, grid, job.enc, job.float16)
    row.update(status="done", n_patches=int(grid.n_patches))
    summary.done += 1
    summary.n_patches += int(grid.n_patches)


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


def _encode_grid(enc, dataset, batch_size: int, workers: int, *, bar=None, label: str = "") -> np.ndarray:
    """Encode every patch of one slide; with a progress display, a per-slide bar counts the patches."""
    import torch

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, shuffle=False, persistent_workers=False
    )
    task = bar[0].add_task(f"  {label[:26]}", total=len(dataset)) if bar is not None else None
    parts = []
    with torch.inference_mode():
        for x in loader:
            parts.append(enc.encode_tensor(x).float().cpu().numpy())
            if task is not None:
                bar[0].advance(task, len(x))
    if task is not None:
        bar[0].remove_task(task)
    return np.concatenate(parts, axis=0)


def _write(h5: Path, feats: np.ndarray, grid, enc, float16: bool) -> None:
    from survpgc.data.features import write_feature_file

    attrs = {**grid.attrs(), **{k: v for k, v in enc.metadata().items() if k not in grid.attrs()}}
    attrs["encoder"] = enc.name
    attrs["encoder_dim"] = int(enc.dim)
    write_feature_file(h5, feats.astype(np.float16 if float16 else np.float32), grid.coords, **attrs)


def read_manifests(out_dir: str | Path) -> pd.DataFrame:
    """All manifest rows of an output folder (sharded or not)."""
    out = Path(out_dir)
    files = sorted(out.glob("manifest*.csv"))
    if not files:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
