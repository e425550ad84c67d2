"""The eval transform of patch encoders: uint8 RGB patches -> resized, normalised float tensors.

:class:`PatchTransform` is picklable, so it can run in DataLoader workers, or on an accelerator with ``device=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from survpgc.errors import InputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "PatchTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Accepted ``interpolation`` values.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _as_uint8_nhwc(images: Any) -> tuple[torch.Tensor, bool]:
    """(N, H, W, 3) uint8 tensor and whether the input was a single image."""
    if hasattr(images, "mode") and hasattr(images, "convert") and not isinstance(images, np.ndarray):  # PIL
        images = np.asarray(images.convert("RGB"))
    if isinstance(images, list | tuple):
        if not images:
            raise InputError("transform(): empty list of images")
        images = np.stack([np.asarray(im) for im in images])
    if isinstance(images, np.ndarray):
        arr = np.ascontiguousarray(images)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    elif isinstance(images, torch.Tensor):
        t = images
    else:
        raise InputError(
            f"transform() takes uint8 numpy arrays or tensors (H, W, 3) / (N, H, W, 3), got {type(images)}"
        )
    if t.dtype != torch.uint8:
        raise InputError(
            f"transform() expects uint8 RGB images (0-255), got dtype {t.dtype}; an already transformed float "
            "batch (N, 3, H, W) goes straight to encode()"
        )
    single = t.ndim == 3
    if single:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] not in (3, 4) or t.shape[1] < 1 or t.shape[2] < 1:
        raise InputError(
            f"transform() expects channels-last RGB(A) images (H, W, 3|4) or (N, H, W, 3|4), got shape {tuple(t.shape)}"
        )
    return t[..., :3], single


@dataclass(frozen=True)
class PatchTransform:
    """Eval transform of an encoder: uint8 RGB -> float in [0, 1] -> resize to ``input_size`` -> normalise.

    Takes one image (H, W, 3) -- numpy, tensor or PIL -- and returns (3, S, S), or a batch (N, H, W, 3) /
    list of images and returns (N, 3, S, S); float32, contiguous. A fourth (alpha) channel is dropped.
    Resizing uses antialiased interpolation and maps the whole patch onto S x S (no crop). Picklable, so it
    can run in DataLoader workers; ``device=`` runs it on an accelerator instead.
    """

    input_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 8:
            raise InputError(f"input_size must be an integer >= 8, got {self.input_size!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise InputError(f"mean/std must be 3 values each with std > 0, got {self.mean!r} / {self.std!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def __call__(self, images: Any, device: str | torch.device | None = None) -> torch.Tensor:
        t, single = _as_uint8_nhwc(images)
        if device is not None:
            t = t.to(device, non_blocking=True)
        # NCHW in uint8 first (a quarter of the bytes to move), then float: resizing a contiguous NCHW batch is
        # about twice as fast on CPU as resizing the channels-last view; normalised in place. Same values as
        # resizing the view and normalising out of place, bit for bit.
        x = t.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
        size = self.input_size
        if tuple(x.shape[-2:]) != (size, size):
            if self.interpolation == "nearest":
                x = F.interpolate(x, size=(size, size), mode="nearest")
            else:
                x = F.interpolate(x, size=(size, size), mode=self.interpolation, antialias=True, align_corners=False)
                if self.interpolation == "bicubic":
                    x = x.clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std).contiguous()
        return x[0] if single else x
