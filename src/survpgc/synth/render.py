"""Tissue layout and H&E-like rendering of one synthetic slide, and its masks.

:func:`layout` draws where the tissue is and which texture class every region has (tumour, stroma,
lymphocyte, necrosis), as label maps at level-0 / 4 and at the mask resolution (level-0 /
:data:`MASK_DOWNSAMPLE`); :func:`render_he` turns the finer label map into a level-0 RGB image (stain
densities per class, collagen fibres, nuclei, grain, Beer-Lambert).  OpenCV is imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.errors import DataError

__all__ = [
    "CLASS_CODES",
    "MASK_DOWNSAMPLE",
    "layout",
    "masks_json",
    "render_he",
    "smooth_noise",
    "tumour_fraction",
    "tumour_mask",
    "write_png",
]

#: The masks are stored at level-0 size divided by this factor.
MASK_DOWNSAMPLE = 16

#: Texture classes of the label map (``masks/<stem>_labels.png``).
CLASS_CODES: dict[str, int] = {"background": 0, "tumour": 1, "stroma": 2, "lymphocyte": 3, "necrosis": 4}

# optical densities of the two stains (rows: hematoxylin, eosin; cols: R, G, B)
_STAIN_OD = np.array([[0.65, 0.75, 0.30], [0.10, 0.95, 0.50]], dtype=np.float32)
# per class: base hematoxylin, base eosin
_BASE_HE = np.array(
    [
        [0.01, 0.03],  # background
        [0.22, 0.38],  # tumour: purple-tinged cytoplasm
        [0.04, 0.45],  # stroma: pink (fibres add eosin)
        [0.10, 0.22],  # lymphocyte
        [0.08, 0.25],  # necrosis: pale pink
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class _NucleusSpec:
    cover: float  # expected fraction of the class area covered by nuclei
    radius: tuple[float, float]  # semi-major axis range (level-0 px)
    aspect: tuple[float, float]  # minor / major axis range
    ink: tuple[float, float]  # hematoxylin density range
    aligned: bool = False  # oriented along the fibre direction


_NUCLEI: dict[int, _NucleusSpec] = {
    1: _NucleusSpec(cover=0.40, radius=(7.0, 11.0), aspect=(0.6, 1.0), ink=(0.95, 1.35)),
    2: _NucleusSpec(cover=0.035, radius=(9.0, 13.0), aspect=(0.18, 0.3), ink=(1.0, 1.3), aligned=True),
    3: _NucleusSpec(cover=0.50, radius=(4.0, 5.5), aspect=(0.85, 1.0), ink=(1.5, 1.9)),
    4: _NucleusSpec(cover=0.03, radius=(1.5, 3.0), aspect=(0.5, 1.0), ink=(0.5, 0.9)),
}


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Standardised Gaussian-blurred white noise (float32)."""
    import cv2

    x = rng.standard_normal(shape).astype(np.float32)
    x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (x - x.mean()) / (x.std() + 1e-6)


# ============================================================================================ layout
def layout(rng: np.random.Generator, width: int, height: int, tumour_target: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture label maps at level-0 / 4 and level-0 / 16 (the mask resolution).

    About ``tumour_target`` of the tissue gets the tumour texture; the rest is split between stroma,
    lymphocytes and necrosis by smooth random fields.
    """
    import cv2

    h16, w16 = height // MASK_DOWNSAMPLE, width // MASK_DOWNSAMPLE
    h4, w4 = height // 4, width // 4
    field, thr = _tissue_field(rng, h16, w16)
    f_t, f_o = _texture_fields(rng, h16, w16)

    def up(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (w4, h4), interpolation=cv2.INTER_LINEAR)

    rough = 0.02 * smooth_noise(rng, (h4, w4), 3.0)
    tissue4 = (up(field) + rough) > thr
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    tissue4 = cv2.morphologyEx(tissue4.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    t4 = up(f_t) + 2.0 * rough
    q = float(np.quantile(t4[tissue4], 1.0 - tumour_target)) if tissue4.any() else np.inf
    others = np.stack([up(f) for f in f_o])
    labels4 = np.zeros((h4, w4), np.uint8)
    labels4[tissue4] = (2 + np.argmax(others, axis=0)).astype(np.uint8)[tissue4]
    labels4[tissue4 & (t4 > q)] = CLASS_CODES["tumour"]
    return labels4, _majority_downsample(labels4, h16, w16)


def _tissue_field(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """A tissue-likeness field (a few rotated elliptical bumps, roughened, kept off the border) and the
    threshold above which it is tissue (30-50 % of the slide)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    field = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0.25, 0.75, 2)
        sy, sx = rng.uniform(0.12, 0.28, 2)
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / sx
        v = (-dx * np.sin(th) + dy * np.cos(th)) / sy
        field = np.maximum(field, np.exp(-0.5 * (u * u + v * v)))
    field += 0.25 * smooth_noise(rng, (h, w), max(1.5, min(h, w) / 20))
    edge = np.minimum.reduce([xx, 1 - xx, yy, 1 - yy])
    field *= np.clip(edge / 0.06, 0, 1)
    coverage = rng.uniform(0.3, 0.5)
    return field, float(np.quantile(field, 1.0 - coverage))


def _texture_fields(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The tumour field and the three fields (stroma, lymphocyte, necrosis) that share the rest."""
    sig = max(1.0, min(h, w) / 30)
    f_t = smooth_noise(rng, (h, w), sig)
    f_o = np.stack([smooth_noise(rng, (h, w), sig * 0.8) for _ in range(3)])
    f_o += np.array([0.9, -0.1, -0.5], np.float32)[:, None, None]
    return f_t, f_o


def _majority_downsample(labels4: np.ndarray, h16: int, w16: int) -> np.ndarray:
    """Majority vote of 4x4 blocks: the label map at the mask resolution."""
    onehot = np.stack([(labels4 == c).astype(np.float32) for c in range(len(CLASS_CODES))], axis=-1)
    share = onehot.reshape(h16, 4, w16, 4, len(CLASS_CODES)).mean(axis=(1, 3))
    return np.argmax(share, axis=-1).astype(np.uint8)


# ============================================================================================ rendering
def render_he(rng: np.random.Generator, labels4: np.ndarray, width: int, height: int) -> np.ndarray:
    """An H&E-like RGB image (uint8, height x width x 3) of the label map (level-0 / 4).

    Stain densities (hematoxylin, eosin) are built per class at half resolution (base colour, stroma
    fibres, necrotic blotches), softened and upsampled; nuclei (filled ellipses) and grain are added at
    full resolution; Beer-Lambert with fixed stain optical densities turns densities into RGB.
    """
    import cv2

    hema, eosin, theta = _stain_densities(rng, labels4, width, height)
    nuc = cv2.GaussianBlur(_nuclei_ink(rng, labels4, width, height, theta), (0, 0), 0.9).astype(np.float32)
    # grain (chromatin texture in nuclei, fine noise elsewhere), then Beer-Lambert
    grain = cv2.resize(rng.standard_normal((height // 2, width // 2), dtype=np.float32), (width, height))
    hema += nuc * (1.0 / 120.0) * (1.0 + 0.15 * grain)
    eosin += 0.02 * grain
    np.maximum(hema, 0, out=hema)
    np.maximum(eosin, 0, out=eosin)
    channels = []
    for c in range(3):
        od = cv2.addWeighted(hema, -float(_STAIN_OD[0, c]), eosin, -float(_STAIN_OD[1, c]), 0.0)
        channels.append(cv2.convertScaleAbs(cv2.exp(od), alpha=255.0))
    return cv2.merge(channels)


def _stain_densities(
    rng: np.random.Generator, labels4: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Level-0 hematoxylin and eosin densities without nuclei, and the slide-wide fibre direction."""
    import cv2

    h2, w2 = height // 2, width // 2
    lab2 = cv2.resize(labels4, (w2, h2), interpolation=cv2.INTER_NEAREST)
    hema2 = _BASE_HE[:, 0][lab2]
    eosin2 = _BASE_HE[:, 1][lab2]
    # stroma: wavy collagen fibres along a slide-wide direction (period ~11 px at level 0)
    theta = float(rng.uniform(0, np.pi))
    yy, xx = np.mgrid[0:h2, 0:w2].astype(np.float32)
    warp = cv2.resize(smooth_noise(rng, (h2 // 24 + 2, w2 // 24 + 2), 1.0), (w2, h2))
    phase = (xx * np.float32(np.cos(theta)) + yy * np.float32(np.sin(theta))) * np.float32(2 * np.pi / 5.5)
    phase += 5.0 * warp
    fib = np.square(0.5 + 0.5 * np.sin(phase))
    fib *= 0.55 + 0.45 * cv2.resize(smooth_noise(rng, (h2 // 12 + 2, w2 // 12 + 2), 1.0), (w2, h2))
    eosin2 += 0.35 * fib * (lab2 == CLASS_CODES["stroma"])
    # necrosis: blotchy pale eosin, smudged hematoxylin
    blot = cv2.resize(smooth_noise(rng, (h2 // 8 + 2, w2 // 8 + 2), 1.2), (w2, h2))
    necro = lab2 == CLASS_CODES["necrosis"]
    eosin2 += 0.12 * blot * necro
    hema2 += 0.06 * np.maximum(blot, 0) * necro
    # soften the class borders, then to full resolution
    hema = cv2.resize(cv2.GaussianBlur(hema2, (0, 0), 1.2), (width, height), interpolation=cv2.INTER_LINEAR)
    eosin = cv2.resize(cv2.GaussianBlur(eosin2, (0, 0), 1.2), (width, height), interpolation=cv2.INTER_LINEAR)
    return hema, eosin, theta


def _nuclei_ink(rng: np.random.Generator, labels4: np.ndarray, width: int, height: int, theta: float) -> np.ndarray:
    """Nuclei as filled ellipses (uint8 ink) with random size, shape, orientation and ink, placed by class."""
    import cv2

    ink = np.zeros((height, width), np.uint8)
    for code, spec in _NUCLEI.items():
        mean_area = np.pi * np.mean(spec.radius) ** 2 * np.mean(spec.aspect)
        m = int(rng.poisson(spec.cover * height * width / mean_area))
        ys = rng.integers(0, height, m)
        xs = rng.integers(0, width, m)
        ax = np.rint(rng.uniform(*spec.radius, m)).astype(int)
        minor = np.maximum(1, np.rint(ax * rng.uniform(*spec.aspect, m))).astype(int)
        ang = (np.degrees(theta) + rng.normal(0, 12, m)) if spec.aligned else rng.uniform(0, 180, m)
        val = np.rint(rng.uniform(*spec.ink, m) * 120).astype(int)
        keep = labels4[ys // 4, xs // 4] == code
        rows = zip(
            xs[keep].tolist(),
            ys[keep].tolist(),
            ax[keep].tolist(),
            minor[keep].tolist(),
            ang[keep].tolist(),
            val[keep].tolist(),
            strict=True,
        )
        for x, y, a, b, g, v in rows:
            cv2.ellipse(ink, (x, y), (a, b), g, 0, 360, v, -1)
    return ink


# ============================================================================================ masks
def tumour_mask(labels: np.ndarray) -> np.ndarray:
    """255 where the label map has the tumour texture, else 0."""
    return np.where(labels == CLASS_CODES["tumour"], 255, 0)


def tumour_fraction(labels: np.ndarray) -> float:
    """Tumour pixels / tissue (non-background) pixels of a label map."""
    tissue = labels > 0
    return float((labels == CLASS_CODES["tumour"]).sum() / max(int(tissue.sum()), 1))


def write_png(path: Path, array: np.ndarray) -> None:
    """``array`` as a uint8 PNG (the bytes depend on the pixels only)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array, dtype=np.uint8))
    if not ok:  # pragma: no cover - cv2 failure
        raise DataError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def masks_json(width: int, height: int) -> dict[str, Any]:
    """The ``masks`` section of truth.json for level-0 slides of ``width`` x ``height``."""
    return {
        "dir": "masks",
        "downsample": MASK_DOWNSAMPLE,
        "size": [width // MASK_DOWNSAMPLE, height // MASK_DOWNSAMPLE],
        "tumour_mask": "masks/<stem>.png (uint8, 255 = tumour-like texture, 0 = other)",
        "label_map": "masks/<stem>_labels.png (uint8 class codes)",
        "classes": dict(CLASS_CODES),
    }
