"""Devices and processes: the one device rule of survpgc (training, extraction, encoders), moving batches,
and the few `torch.distributed` questions every layer asks (am I the writing process? wait for the others)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from survpgc.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["barrier", "is_distributed", "is_main_process", "resolve_device", "to_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` (LOCAL_RANK is 0 outside torchrun) if CUDA is available, else ``mps``
    where available, else ``cpu``; None → ``cpu``; anything else is parsed and checked (a CUDA device
    without CUDA is an error, not a silent fallback)."""
    import torch

    if device is None:
        return torch.device("cpu")
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device`` (non-blocking); other values are kept as they are."""
    import torch

    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True outside a process group, and on rank 0 inside one (the process that writes files)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process of the group (no-op outside ``torch.distributed``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
