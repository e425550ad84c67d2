"""The patch encoder: an image model with its eval transform and run settings, and the spec of a registry entry.

Every registered builder returns a :class:`PatchEncoder`; :class:`PatchEncoderSpec` is what the registry of
:mod:`survpgc.encoders.patch` knows of an entry (contract, licence, where its weights come from, factory).
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from survpgc.devices import resolve_device
from survpgc.encoders.precision import autocast, resolve_precision
from survpgc.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, PatchTransform
from survpgc.errors import ConfigError, InputError

__all__ = ["PatchEncoder", "PatchEncoderSpec", "encoder_from_spec", "require_timm"]

log = logging.getLogger(__name__)


def _has_convolutions(model: nn.Module) -> bool:
    """More than one 2-D convolution (a ViT's patch embedding alone does not count)."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def _default_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _is_compiler_error(exc: BaseException) -> bool:
    """An error raised by torch.compile's machinery (dynamo, inductor, a backend), not by the model itself."""
    mod = type(exc).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor", "torch._subclasses", "torch.fx"))


class _CompiledForward:
    """``forward(model, x)`` through ``torch.compile``, padded to a fixed batch; eager again (with a warning) when
    compilation fails. Errors of the model itself (e.g. out of memory) are raised as they are."""

    def __init__(
        self,
        forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        model: nn.Module,
        *,
        name: str,
        pad_to: int | None,
        backend: str | Callable[..., Any],
        mode: str | None,
    ) -> None:
        self.eager = forward
        self.name = name
        self.pad_to = pad_to
        self.failed = False
        self.ok = False  #: compiled at least once

        def run(x: torch.Tensor) -> torch.Tensor:
            return forward(model, x)

        self.fn = torch.compile(run, backend=backend, mode=mode, dynamic=False)

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.eager(model, x)
        n = int(x.shape[0])
        xp = x
        if self.pad_to is not None and n < self.pad_to:
            # an input like the full batches (memory format, inference tensor or not), so the graph is reused
            with torch.inference_mode(x.is_inference()):
                xp = torch.cat([x, x.new_zeros((self.pad_to - n, *x.shape[1:]))])
                if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
                    xp = xp.contiguous(memory_format=torch.channels_last)
        try:
            out = self.fn(xp)
        except Exception as exc:
            if self.ok and not _is_compiler_error(exc):
                raise
            self.failed = True
            why = " ".join(str(exc).split("Set TORCHDYNAMO_VERBOSE")[0].split())[:300]  # one line
            msg = (
                f"patch encoder {self.name!r}: torch.compile failed ({type(exc).__name__}: {why}); "
                "running it eagerly (uncompiled) instead"
            )
            log.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            return self.eager(model, x)
        self.ok = True
        return out[:n]


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
        with torch.inference_mode(), autocast(self.device, self.precision):
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

    def compiled(
        self, *, batch_size: int | None = None, backend: str | Callable[..., Any] = "inductor", mode: str | None = None
    ) -> PatchEncoder:
        """A copy of this encoder (same model, weights, transform, name and identity) whose forward runs through
        ``torch.compile``.

        Compilation happens at the first batch. Batches smaller than ``batch_size`` are padded with zeros to it and
        the padding rows dropped, so one compiled graph serves every batch (no recompilation for a slide's last,
        shorter batch). When compilation fails (no C++ compiler, an unsupported operation, ...), a warning says
        why and the copy runs eagerly from then on, with the same results as this encoder.
        """
        import copy

        twin = copy.copy(self)
        twin._forward = _CompiledForward(
            self._forward, self.model, name=self.name, pad_to=batch_size, backend=backend, mode=mode
        )
        return twin

    @property
    def is_compiled(self) -> bool:
        """Whether the forward runs compiled (False once compilation has failed and it fell back to eager)."""
        return isinstance(self._forward, _CompiledForward) and not self._forward.failed

    def __repr__(self) -> str:
        return (
            f"PatchEncoder(name={self.name!r}, dim={self.dim}, input_size={self.input_size}, "
            f"device={str(self.device)!r}, precision={self.precision!r}, channels_last={self.channels_last})"
        )


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


def encoder_from_spec(spec: PatchEncoderSpec, model: nn.Module, *, weights: str, **kwargs: Any) -> PatchEncoder:
    """The encoder of a registry entry with a fixed contract: its name, dim, transform and precision defaults."""
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


def require_timm(what: str) -> Any:
    """The ``timm`` module; ConfigError naming the encoder and the install command when it is missing."""
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        raise ConfigError(f"patch encoder {what!r} needs timm: pip install 'survpgc[wsi]'") from exc
