"""Synthetic whole-slide images for the WSI tests: an H&E-like scene and a pyramidal TIFF writer.

``render_scene`` draws tissue (a few irregular blobs with pink stroma, purple nuclei and a hole) on a white
background at a given size; the same ``seed`` gives the same scene, and rendering at twice the size then
area-downsampling by 2 gives the same scene at half the resolution.  ``write_pyramid`` writes a tiled JPEG
TIFF, either in the Aperio SVS layout (``ImageDescription`` with ``AppMag`` and ``MPP``, which openslide and
tiffslide read) or as a plain generic TIFF without any resolution metadata (``mpp=None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile


def render_scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 ``(height, width, 3)``: white background, tissue blobs with texture; geometry scales with size."""
    rng = np.random.default_rng(seed)
    s = width / 4096.0  # scene units: everything scales with the width
    # tissue shape: union of ellipses on a 1/16 grid, roughened with smooth noise
    gw, gh = max(8, width // 16), max(8, height // 16)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    field = np.zeros((gh, gw), np.float32)
    for cx, cy, rx, ry, ang in (
        (0.30, 0.40, 0.20, 0.28, 20),
        (0.68, 0.55, 0.22, 0.25, -30),
        (0.52, 0.22, 0.12, 0.08, 0),
    ):
        t = np.deg2rad(ang)
        dx, dy = xx / gw - cx, yy / gh - cy
        u = (dx * np.cos(t) + dy * np.sin(t)) / rx
        v = (-dx * np.sin(t) + dy * np.cos(t)) / ry
        field = np.maximum(field, np.exp(-0.5 * (u * u + v * v) * 4))
    noise = cv2.GaussianBlur(rng.standard_normal((gh, gw)).astype(np.float32), (0, 0), 3)
    field += 0.6 * noise / (noise.std() + 1e-6) * 0.15
    # a hole in the big blob
    hole = ((xx / gw - 0.68) / 0.06) ** 2 + ((yy / gh - 0.55) / 0.08) ** 2 < 1
    field[hole] = 0
    tissue = cv2.resize((field > 0.45).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR) > 0
    # stain densities: eosin base with smooth variation, hematoxylin from nuclei
    vary = cv2.resize(
        cv2.GaussianBlur(rng.standard_normal((gh, gw)).astype(np.float32), (0, 0), 2),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    eosin = np.where(tissue, 0.45 + 0.08 * vary, 0.0).astype(np.float32)
    nuc = np.zeros((height, width), np.uint8)
    r = max(2, round(6 * s))
    n = int(0.3 * tissue.sum() / (np.pi * r * r))
    xs = rng.integers(0, width, n)
    ys = rng.integers(0, height, n)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        if tissue[y, x]:
            cv2.circle(nuc, (x, y), r, 255, -1)
    hema = cv2.GaussianBlur(nuc.astype(np.float32) / 255.0, (0, 0), max(0.8, 1.2 * s)) * 1.1
    od = np.array([[0.65, 0.75, 0.30], [0.10, 0.95, 0.50]], np.float32)
    rgb = np.empty((height, width, 3), np.uint8)
    for c in range(3):
        rgb[:, :, c] = np.clip(255.0 * np.exp(-(hema * od[0, c] + eosin * od[1, c])), 0, 255).astype(np.uint8)
    return rgb


def downsample2(rgb: np.ndarray) -> np.ndarray:
    """Area downsampling by exactly 2 (the same scene at half the resolution)."""
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def _aperio_description(w0: int, h0: int, w: int, h: int, tile: int, mpp: float, power: float) -> str:
    head = f"Aperio Image Library v12.0.0 (survpgc test)\r\n{w0}x{h0} "
    head += f"[0,0 {w0}x{h0}] ({tile}x{tile}) JPEG/RGB Q=90" if (w, h) == (w0, h0) else f"-> {w}x{h} - JPEG/RGB Q=90"
    return f"{head}|AppMag = {power:g}|MPP = {mpp:g}|Filename = test"


def write_pyramid(
    path: Path,
    rgb: np.ndarray,
    *,
    mpp: float | None,
    objective_power: float | None = None,
    downsamples: Sequence[int] = (1, 4, 16),
    tile: int = 256,
    quality: int = 90,
) -> Path:
    """Write ``rgb`` as a tiled JPEG pyramid; Aperio layout when ``mpp`` is given, else generic without MPP."""
    h0, w0 = rgb.shape[:2]
    levels = [rgb if d == 1 else cv2.resize(rgb, (w0 // d, h0 // d), interpolation=cv2.INTER_AREA) for d in downsamples]
    common: dict[str, object] = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": quality},
        "software": False,
        "metadata": None,
        "tile": (tile, tile),
    }
    with tifffile.TiffWriter(path) as tif:
        for level in levels:
            kw = dict(common)
            if mpp is not None:
                power = objective_power if objective_power is not None else 10.0 / mpp
                kw["description"] = _aperio_description(w0, h0, level.shape[1], level.shape[0], tile, mpp, power)
                kw["resolution"] = (1e4 / mpp, 1e4 / mpp)
                kw["resolutionunit"] = "CENTIMETER"
            else:
                kw["resolutionunit"] = "NONE"
            tif.write(level, **kw)
    return path


def small_slide_set(
    folder: Path, n: int = 3, *, size: tuple[int, int] = (2048, 1536), mpp: float | None = 0.5
) -> list[Path]:
    """``n`` small synthetic SVS slides ``s0.svs`` ... in ``folder`` (different scenes; about 24 patches of
    128 px at 20x each -- use ``patch_size=128``). Fast to write and to tile."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_pyramid(folder / f"s{i}.svs", render_scene(*size, seed=i), mpp=mpp, downsamples=(1, 4)) for i in range(n)
    ]


def tiny_encoder(name: str = "tiny", dim: int = 8):
    """A patch encoder that is fast on CPU (mean colour of a 16-px patch, through a fixed linear map)."""
    import torch
    from torch import nn

    from survpgc.encoders.patch_base import PatchEncoder
    from survpgc.encoders.transforms import PatchTransform

    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, dim))
    return PatchEncoder(
        model, name=name, dim=dim, transform=PatchTransform(16), precision="fp32", weights="tiny:0", channels_last=False
    )


def tmp_files(folder: Path) -> list[Path]:
    """The temporaries (``.<name>.tmp``) left anywhere under ``folder``, sorted."""
    return sorted(folder.rglob(".*.tmp"))


def all_claims_free(out: Path, stems: list[str]) -> bool:
    """Whether every slide stem's claim in ``out`` can be taken now (nothing still holds one); taken claims are
    released again."""
    from survpgc.locks import claim

    held = [claim(out, s) for s in stems]
    for h in held:
        if h is not None:
            h.release()
    return all(h is not None for h in held)
