"""Precision rules of encoders: what ``precision="auto"`` means on a device, and the matching autocast.

``"auto"`` is bf16 on CPUs that compute bf16 natively (fp32 on others) and fp16 on CUDA; ``"fp32"``,
``"bf16"`` and ``"fp16"`` are taken as given. Other device types run in fp32.
"""

from __future__ import annotations

from typing import Any

import torch

from survpgc.errors import InputError

__all__ = ["PRECISIONS", "autocast", "cpu_has_native_bf16", "resolve_precision"]

#: Accepted ``precision`` values.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context for a resolved ``precision`` on ``device`` (disabled for fp32)."""
    dtype = _DTYPES.get(precision)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
