"""Any timm model as a patch encoder: ``timm:<model_name>`` with a local checkpoint, no head.

Its transform comes from the model's timm data config (training input size, mean/std, interpolation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from survpgc.encoders.checkpoints import load_into, read_state_dict
from survpgc.encoders.patch_base import PatchEncoder, PatchEncoderSpec, require_timm
from survpgc.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, PatchTransform
from survpgc.encoders.weights import describe_file, weights_file
from survpgc.errors import ConfigError, InputError

__all__ = ["TIMM_PREFIX", "TIMM_SPEC", "make_timm_encoder"]

log = logging.getLogger(__name__)

#: Prefix of patch-encoder names that stand for a timm model (``timm:resnet50``).
TIMM_PREFIX = "timm:"


def _model_dim(model: nn.Module) -> int:
    dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"cannot tell the feature width of {type(model).__name__} (no num_features)")
    return dim


def _load_headless(timm: Any, model_name: str, path: Path, *, what: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """The timm model without its classifier, filled from ``path``; head tensors of the checkpoint are ignored."""
    mkw = {**model_kwargs, "num_classes": 0}

    def builder() -> nn.Module:
        return timm.create_model(model_name, pretrained=False, **mkw)

    def prepare(sd: dict[str, torch.Tensor], expected: Any) -> dict[str, torch.Tensor]:
        # a checkpoint saved with its classifier: drop the head tensors the headless model does not have
        extra = [k for k in sd if k not in expected]
        head = [k for k in extra if k.split(".")[0] in ("fc", "head", "classifier", "last_linear", "heads")]
        if head:
            log.info("%s: ignoring %d classifier tensor(s) of the checkpoint (%s ...)", what, len(head), head[0])
        return {k: v for k, v in sd.items() if k not in head}

    arch = f"timm {model_name}"
    sd = read_state_dict(path, what=what, arch=arch)
    return load_into(builder, sd, what=what, source=str(path), prepare=prepare, arch=arch)


def _timm_transform(
    model: nn.Module,
    *,
    what: str,
    input_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    interpolation: str | None,
) -> PatchTransform:
    """The eval transform from the model's timm data config, with the given values taking precedence."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)  # the training input size, not a larger test size
    h, w = cfg["input_size"][-2:]
    size = int(input_size) if input_size is not None else int(h)
    if input_size is None and h != w:
        raise ConfigError(f"{what}: non-square input size {(h, w)}; pass input_size=S to use S x S patches")
    interp = interpolation or (cfg.get("interpolation") if cfg.get("interpolation") in INTERPOLATIONS else "bilinear")
    return PatchTransform(
        input_size=size,
        mean=tuple(mean) if mean is not None else tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(std) if std is not None else tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=interp,
    )


def make_timm_encoder(
    model_name: str,
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | None = None,
    **kwargs: Any,
) -> PatchEncoder:
    """Any timm model by name (``model_name`` without the ``timm:`` prefix), headless, from a local checkpoint.

    The transform comes from the model's timm data config unless ``input_size``/``mean``/``std``/
    ``interpolation`` are given; a classifier head saved in the checkpoint is ignored.
    """
    what = f"{TIMM_PREFIX}{model_name}"
    timm = require_timm(what)
    if not model_name or not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:8] if model_name else []
        raise ConfigError(f"{what}: timm has no model {model_name!r}" + (f"; similar: {close}" if close else ""))
    if weights is None:
        raise ConfigError(
            f"{what}: pass a local checkpoint with weights=PATH (CLI --weights); survpgc never downloads weights"
        )
    path = weights_file(weights, what=what)
    model = _load_headless(timm, model_name, path, what=what, model_kwargs=model_kwargs or {})
    transform = _timm_transform(
        model, what=what, input_size=input_size, mean=mean, std=std, interpolation=interpolation
    )
    return PatchEncoder(
        model,
        name=what,
        dim=_model_dim(model),
        transform=transform,
        device=device,
        precision=precision,
        weights=describe_file(path),
        **kwargs,
    )


def _make_timm_entry(weights: str | Path | None = None, **kwargs: Any) -> PatchEncoder:
    raise InputError("name the timm model: create_patch_encoder('timm:<model_name>', weights=PATH)")


#: The registry entry that stands for every ``timm:<model_name>`` (it cannot be built by itself).
TIMM_SPEC = PatchEncoderSpec(
    name="timm",
    dim=None,
    input_size=None,
    license="that of the checkpoint you supply",
    gated=False,
    weights="local checkpoint: weights=PATH (--weights); use the name timm:<model_name>",
    requires=("timm",),
    description="any timm model by name (timm:<model_name>), headless, transform from its timm data config",
    factory=_make_timm_entry,
    mean=None,
    std=None,
)
