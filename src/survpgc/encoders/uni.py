"""The UNI patch encoder (Chen et al. 2024, 1024-d), from local weights only.

timm ``vit_large_patch16_224`` with ``init_values=1e-5``, ``dynamic_img_size=True``, no head (CLS token
features). Weights: ``weights=PATH`` (CLI ``--weights``), env ``SURVPGC_UNI_WEIGHTS``, or ``MahmoodLab/UNI``
already in the Hugging Face cache. Gated, CC-BY-NC-ND 4.0. Without them, :func:`make_uni` fails with where to put
them -- never a silent fallback; random weights of the real shapes (for speed benchmarks and tests of the
pipeline, e.g. ``benchmarks/gpu_check.py``) only by asking: ``make_uni(random_weights=True)`` (or a seed), and
the encoder's ``weights`` then says so, in every feature file written with it.

``precision="auto"`` is bf16 on GPUs with bf16 (fp16 on older ones) and on CPUs with native bf16, else fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from survpgc.devices import resolve_device
from survpgc.encoders.checkpoints import load_into, read_state_dict
from survpgc.encoders.patch_base import PatchEncoder, PatchEncoderSpec, encoder_from_spec, require_timm
from survpgc.encoders.weights import describe_file, locate_weights, weights_file
from survpgc.errors import InputError

__all__ = [
    "UNI_ARCH",
    "UNI_MODEL_KWARGS",
    "UNI_RANDOM_WEIGHTS",
    "UNI_REPO",
    "UNI_SPEC",
    "UNI_WEIGHTS_ENV",
    "make_uni",
    "uni_weights_path",
]

log = logging.getLogger(__name__)

#: Environment variable naming the local UNI weights file (``pytorch_model.bin`` or ``.safetensors``).
UNI_WEIGHTS_ENV = "SURVPGC_UNI_WEIGHTS"
#: Hugging Face repository of the UNI weights (looked up in the local cache only).
UNI_REPO = "MahmoodLab/UNI"
#: timm arguments of ``vit_large_patch16_224`` that give the UNI architecture.
UNI_MODEL_KWARGS: dict[str, Any] = {"init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True}
#: The timm architecture of UNI.
UNI_ARCH = "vit_large_patch16_224"
#: The start of the ``weights`` description of an encoder built with ``random_weights`` (also in feature files).
UNI_RANDOM_WEIGHTS = "RANDOM weights (not UNI; benchmarks and tests only)"


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
    random_weights: bool | int = False,
    **kwargs: Any,
) -> PatchEncoder:
    """The UNI encoder from local weights (see :func:`uni_weights_path`), checked strictly against ViT-L/16.

    ``random_weights=True`` (seed 0) or ``=<seed>`` builds the same architecture with timm's random
    initialisation instead -- the real shapes and cost, none of UNI's knowledge -- initialised on the CPU (the
    same seed gives the same weights whatever ``device``; a few seconds for 303 M parameters) and then moved to
    ``device``; the encoder's ``weights`` starts with :data:`UNI_RANDOM_WEIGHTS`. It cannot be combined with
    ``weights``.
    """
    timm = require_timm("uni")
    if random_weights is not False:
        return _random_uni(timm, weights, random_weights, device=device, precision=precision, **kwargs)
    path = uni_weights_path(weights)
    arch = "UNI (timm vit_large_patch16_224)"
    sd = read_state_dict(path, what="uni", arch=arch)
    model = load_into(
        lambda: timm.create_model(UNI_ARCH, pretrained=False, **UNI_MODEL_KWARGS),
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


def _random_uni(
    timm: Any, weights: Any, seed: bool | int, *, device: Any, precision: str, **kwargs: Any
) -> PatchEncoder:
    """UNI's architecture with timm's random initialisation (seeded on the CPU), moved to ``device``."""
    if weights is not None:
        raise InputError(f"uni: pass either weights ({weights!r}) or random_weights, not both")
    if seed is True:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"uni: random_weights must be True, False or a seed >= 0, got {seed!r}")
    dev = resolve_device(device)  # an impossible device fails before the 303 M parameters are drawn
    gpus = list(range(torch.cuda.device_count())) if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):  # the caller's random streams are left as they were
        torch.manual_seed(seed)
        model = timm.create_model(UNI_ARCH, pretrained=False, **UNI_MODEL_KWARGS)
    log.warning("uni: %s, seed %d -- features carry no pathology knowledge", UNI_RANDOM_WEIGHTS, seed)
    described = f"{UNI_RANDOM_WEIGHTS}, seed {seed}"
    return encoder_from_spec(UNI_SPEC, model, weights=described, device=dev, precision=precision, **kwargs)


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
    cuda_precision="bf16",  # ViT-L activations: bf16's range where the GPU has it (resolve_precision: else fp16)
)
