"""The UNI patch encoder (Chen et al. 2024, 1024-d), from local weights only.

timm ``vit_large_patch16_224`` with ``init_values=1e-5``, ``dynamic_img_size=True``, no head (CLS token
features). Weights: ``weights=PATH`` (CLI ``--weights``), env ``SURVPGC_UNI_WEIGHTS``, or ``MahmoodLab/UNI``
already in the Hugging Face cache. Gated, CC-BY-NC-ND 4.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from survpgc.encoders.checkpoints import load_into, read_state_dict
from survpgc.encoders.patch_base import PatchEncoder, PatchEncoderSpec, encoder_from_spec, require_timm
from survpgc.encoders.weights import describe_file, locate_weights, weights_file

__all__ = ["UNI_MODEL_KWARGS", "UNI_REPO", "UNI_SPEC", "UNI_WEIGHTS_ENV", "make_uni", "uni_weights_path"]

#: Environment variable naming the local UNI weights file (``pytorch_model.bin`` or ``.safetensors``).
UNI_WEIGHTS_ENV = "SURVPGC_UNI_WEIGHTS"
#: Hugging Face repository of the UNI weights (looked up in the local cache only).
UNI_REPO = "MahmoodLab/UNI"
#: timm arguments of ``vit_large_patch16_224`` that give the UNI architecture.
UNI_MODEL_KWARGS: dict[str, Any] = {"init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True}


def uni_weights_path(weights: str | Path | None = None) -> Path:
    """The UNI weights file: ``weights``, else env :data:`UNI_WEIGHTS_ENV`, else the local Hugging Face cache."""
    return locate_weights(
        weights,
        env=UNI_WEIGHTS_ENV,
        repo=UNI_REPO,
        filenames=("pytorch_model.bin",),
        check=lambda p: weights_file(p, what="uni", env=UNI_WEIGHTS_ENV),
        not_found=(
            f"no UNI weights found: set {UNI_WEIGHTS_ENV}=/path/to/pytorch_model.bin (or pass --weights / "
            f"weights=...), or have {UNI_REPO} in the local Hugging Face cache (HF_HOME / HF_HUB_CACHE). The weights "
            f"are gated (CC-BY-NC-ND 4.0): request access at https://huggingface.co/{UNI_REPO} and download them "
            "yourself; survpgc never downloads."
        ),
    )


def make_uni(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    **kwargs: Any,
) -> PatchEncoder:
    """The UNI encoder from local weights (see :func:`uni_weights_path`), checked strictly against ViT-L/16."""
    path = uni_weights_path(weights)
    timm = require_timm("uni")
    arch = "UNI (timm vit_large_patch16_224)"
    sd = read_state_dict(path, what="uni", arch=arch)
    model = load_into(
        lambda: timm.create_model("vit_large_patch16_224", pretrained=False, **UNI_MODEL_KWARGS),
        sd,
        what="uni",
        source=str(path),
        arch=arch,
        hint=(
            "UNI expects the state dict of timm vit_large_patch16_224(init_values=1e-5, num_classes=0, "
            "dynamic_img_size=True), i.e. MahmoodLab/UNI pytorch_model.bin"
        ),
    )
    return encoder_from_spec(UNI_SPEC, model, weights=describe_file(path), device=device, precision=precision, **kwargs)


UNI_SPEC = PatchEncoderSpec(
    name="uni",
    dim=1024,
    input_size=224,
    license="CC-BY-NC-ND-4.0 (non-commercial; gated on Hugging Face)",
    gated=True,
    weights=(
        f"local pytorch_model.bin / .safetensors: weights=... (--weights), env {UNI_WEIGHTS_ENV}, "
        f"or {UNI_REPO} already in the Hugging Face cache"
    ),
    requires=("timm",),
    description="UNI pathology foundation model, ViT-L/16 (timm vit_large_patch16_224, LayerScale), CLS token",
    factory=make_uni,
    channels_last=False,
)
