"""Devices and processes: the one device rule of survpgc (training, extraction, encoders), what a device can
compute, moving batches, and the few `torch.distributed` questions every layer asks (am I the writing process?
wait for the others; which backend; am I in a process group at all).

CUDA rules (the same code runs on CPU-only machines, where the CUDA branches are decided by pure functions that
the tests call with a described device):

* ``cuda`` without an index means ``cuda:LOCAL_RANK`` under ``torchrun`` (each process its own GPU), else the
  current CUDA device; an index beyond the visible GPUs is an error, never a silent fallback.
* the process group of a ``torchrun`` launch uses ``nccl`` when the training device is a GPU and ``gloo``
  otherwise (:func:`process_group_backend`): a ``train.device=cpu`` run on a GPU machine never hands CPU tensors
  to nccl.
* batches reach a GPU by non-blocking copies from page-locked (pinned) memory (:func:`to_device`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from survpgc.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeviceCaps",
    "barrier",
    "describe_device",
    "device_caps",
    "in_process_group",
    "is_distributed",
    "is_main_process",
    "process_group_backend",
    "resolve_device",
    "to_device",
]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` (LOCAL_RANK is 0 outside torchrun) if CUDA is available, else ``mps``
    where available, else ``cpu``; None → ``cpu``; anything else is parsed and checked (a CUDA device
    without CUDA is an error, not a silent fallback). ``cuda`` without an index gets one: LOCAL_RANK under
    torchrun, else the current CUDA device; ``cuda:i`` with i beyond the visible GPUs is an error."""
    import torch

    if device is None:
        return torch.device("cpu")
    if str(device) == "auto":
        if torch.cuda.is_available():
            return _cuda_device(None)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
        return _cuda_device(dev.index, asked=str(device))
    return dev


def _cuda_device(index: int | None, asked: str = "auto") -> torch.device:
    """``cuda:<index>``: the index given, else LOCAL_RANK under torchrun, else the current CUDA device."""
    import torch

    n = torch.cuda.device_count()
    if index is None:
        local = os.environ.get("LOCAL_RANK")
        index = int(local) if local is not None else torch.cuda.current_device()
    if not 0 <= index < n:
        raise InputError(
            f"device {asked!r} is cuda:{index}, but {n} GPU(s) are visible (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); under torchrun use at most {n} process(es) per node"
        )
    return torch.device("cuda", index)


@dataclass(frozen=True)
class DeviceCaps:
    """What a device computes well: its type (``cpu``, ``cuda``, ``mps``), whether it has native bf16 (CUDA
    compute capability >= 8.0; AVX512-BF16 / AMX on x86 CPUs), and a name for people."""

    type: str
    bf16: bool
    name: str = ""


def device_caps(device: str | torch.device) -> DeviceCaps:
    """The :class:`DeviceCaps` of a device of this machine (emulated bf16 does not count as bf16)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        major, _minor = torch.cuda.get_device_capability(index)
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation argument
            native = torch.cuda.is_bf16_supported()
        return DeviceCaps("cuda", bool(native and major >= 8), torch.cuda.get_device_name(index))
    if dev.type == "cpu":
        return DeviceCaps("cpu", _cpu_bf16(), _cpu_name())
    return DeviceCaps(dev.type, False, dev.type)


def _cpu_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def describe_device(device: str | torch.device) -> str:
    """One line saying where work runs, e.g. ``cuda:0 (NVIDIA H200, 139.8 GiB, compute 9.0, native bf16)`` or
    ``cpu (Intel Xeon, 2 threads, no native bf16)``."""
    import torch

    dev = torch.device(device)
    caps = device_caps(dev)
    bf16 = "native bf16" if caps.bf16 else "no native bf16"
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        return (
            f"{dev} ({p.name}, {p.total_memory / 2**30:.1f} GiB, compute {p.major}.{p.minor}, {bf16}; "
            f"torch {torch.__version__}, CUDA {torch.version.cuda})"
        )
    if dev.type == "cpu":
        return f"cpu ({caps.name}, {torch.get_num_threads()} threads, {bf16}; torch {torch.__version__})"
    return f"{dev} (torch {torch.__version__})"


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device``; other values are kept as they are.

    To a GPU, CPU tensors are first page-locked (pinned; skipped when the loader already pinned them) and
    copied without blocking, so the copy overlaps the host's work; kernels that read them are queued behind
    the copy on the same stream, so the result is the same as a blocking copy."""
    import torch

    pin = device.type == "cuda"
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            if pin and v.device.type == "cpu" and not v.is_pinned():
                v = v.pin_memory()
            v = v.to(device, non_blocking=True)
        out[k] = v
    return out


def process_group_backend(device: str | torch.device) -> str:
    """The ``torch.distributed`` backend for processes training on ``device``: ``nccl`` for CUDA, else ``gloo``."""
    import torch

    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def in_process_group() -> bool:
    """True inside an initialised ``torch.distributed`` process group of any size (one process under
    ``torchrun --nproc-per-node 1`` included)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group of more than one process."""
    import torch.distributed as dist

    return in_process_group() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True outside a process group, and on rank 0 inside one (the process that writes files)."""
    import torch.distributed as dist

    return not in_process_group() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process of the group (no-op outside ``torch.distributed``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
