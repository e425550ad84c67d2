"""Loading local weight files into models: safe readers, strict key checks, meta-device builds, key mapping.

Used by the patch-encoder builders. Nothing here downloads anything. Checkpoints are read
with ``torch.load(..., weights_only=True)`` or safetensors, never by unpickling arbitrary objects.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from survpgc.errors import ConfigError

__all__ = [
    "WeightMapping",
    "build_on_meta",
    "check_state_dict",
    "load_into",
    "map_in_order",
    "read_state_dict",
]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_N_SHOWN = 5


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _reason(exc: BaseException) -> str:
    """The first line of an exception, shortened (torch's weights_only messages run over many lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def read_state_dict(path: str | Path, *, what: str = "checkpoint", arch: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (``.safetensors``, or ``.bin``/``.pth``/``.pt`` via ``weights_only``).

    A state dict wrapped in one of the usual containers (``{"state_dict": ...}``, ``{"model": ...}``) is
    unwrapped, and a prefix carried by every key (``module.`` from DDP, ``_orig_mod.`` from torch.compile) is
    removed. Anything that is not a mapping of names to tensors -- a truncated file, a text file, a pickle of
    other objects, random bytes -- is a :class:`ConfigError` saying ``<file> is not a checkpoint of <arch>``
    (``arch`` defaults to ``what``), with the reason.
    """
    import warnings

    p = Path(path).expanduser()
    arch = arch or what
    if not p.is_file():
        raise ConfigError(f"{what}: weights file {str(p)!r} does not exist")
    fix = "It must be a plain state dict saved with torch.save(model.state_dict(), ...) or a .safetensors file"
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(p), device="cpu")
        except Exception as exc:  # SafetensorError (header, truncation), OSError
            raise ConfigError(
                f"{what}: {str(p)!r} is not a checkpoint of {arch}: cannot read it as safetensors ({_reason(exc)}). "
                f"{fix}"
            ) from exc
    else:
        try:
            with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
                warnings.simplefilter("ignore")
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, KeyError, TypeError,
                AttributeError, IndexError, ImportError, UnicodeDecodeError, MemoryError) as exc:  # fmt: skip
            # junk bytes reach torch's legacy-format reader, which fails with e.g. KeyError: 174812789
            raise ConfigError(
                f"{what}: {str(p)!r} is not a checkpoint of {arch}: cannot read weights file ({_reason(exc)}). {fix}"
            ) from exc
    if not _is_tensor_dict(obj) and isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if _is_tensor_dict(obj.get(key)):
                log.debug("%s: using the %r entry of %s", what, key, p)
                obj = obj[key]
                break
    if not _is_tensor_dict(obj):
        kind = type(obj).__name__
        keys = list(obj)[:_N_SHOWN] if isinstance(obj, Mapping) else []
        raise ConfigError(
            f"{what}: {str(p)!r} is not a checkpoint of {arch}: it holds a {kind} (keys {keys}) rather than a state "
            "dict of tensors; save the weights with torch.save(model.state_dict(), PATH) or safetensors"
        )
    assert isinstance(obj, Mapping)
    sd = {str(k): v for k, v in obj.items()}
    for prefix in _STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _shown(keys: list[str]) -> str:
    more = f" (+{len(keys) - _N_SHOWN} more)" if len(keys) > _N_SHOWN else ""
    return ", ".join(keys[:_N_SHOWN]) + more


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str,
    source: str = "the checkpoint",
    hint: str = "",
    arch: str | None = None,
) -> None:
    """Raise :class:`ConfigError` unless ``state_dict`` has exactly the keys and shapes of ``expected``.

    The message says ``<source> is not a checkpoint of <arch>`` and names a few missing and unexpected keys
    (with counts) and the first shape mismatches.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_shown(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_shown(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es): {_shown(wrong)}")
    raise ConfigError(
        f"{what}: {source} is not a checkpoint of {arch or what} (it does not match the model architecture) -- "
        + "; ".join(parts)
        + (f". {hint}" if hint else "")
    )


def build_on_meta(builder: Callable[[], nn.Module]) -> nn.Module | None:
    """The model built on the meta device (no memory, no random init), or None when that is not possible."""
    try:
        with torch.device("meta"):
            return builder()
    except Exception as exc:  # some constructors compute values on tensors (.item(), numpy) and fail on meta
        log.debug("meta-device build failed (%s); building on CPU instead", exc)
        return None


def load_into(
    builder: Callable[[], nn.Module],
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str,
    source: str,
    hint: str = "",
    arch: str | None = None,
    prepare: Callable[[dict[str, torch.Tensor], Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """Build a model and fill it from ``state_dict`` with a strict check of keys and shapes.

    The model is first built on the meta device when possible (its tensors are then the checkpoint's own,
    cast to the model's dtypes: no random initialisation, no second copy of the weights); models with
    non-persistent buffers, or that cannot be built on meta, are built on CPU and loaded by copy.
    ``prepare(state_dict, expected)`` may rewrite the state dict first (e.g. drop a classifier head).
    """
    model = build_on_meta(builder)
    if model is not None:
        persistent = model.state_dict()
        if any(name not in persistent for name, _ in model.named_buffers()):
            model = None  # non-persistent buffers would stay on meta: build for real
    if model is None:
        model = builder()
    expected = model.state_dict()
    sd = dict(state_dict)
    if prepare is not None:
        sd = prepare(sd, expected)
    check_state_dict(expected, sd, what=what, source=source, hint=hint, arch=arch)
    on_meta = any(t.is_meta for t in expected.values())
    sd = {k: v.to(dtype=expected[k].dtype) if v.dtype != expected[k].dtype else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=on_meta)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):  # pragma: no cover - safety net
        raise ConfigError(f"{what}: some model tensors were not filled from {source}")
    return model.eval().requires_grad_(False)


@dataclass(frozen=True)
class WeightMapping:
    """Result of :func:`map_in_order`: the renamed ``state_dict`` and what was paired or left out."""

    pairs: tuple[tuple[str, str], ...]
    """(source key, target key) in order."""
    dropped: tuple[str, ...]
    """Source keys deliberately not used (e.g. a classifier the target model does not have)."""
    state_dict: dict[str, torch.Tensor]


def _role(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_in_order(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    drop_prefixes: tuple[str, ...] = (),
    what: str = "weights",
) -> WeightMapping:
    """Rename ``source`` tensors onto ``target`` keys pairwise, in order (same architecture, other naming).

    Source keys starting with one of ``drop_prefixes`` are set aside first. The remaining tensors must pair
    one-to-one with the target keys: same count, same shape and same role (the last name component, e.g.
    ``weight``, ``bias``, ``running_var``) for every pair; anything else is a :class:`ConfigError`.
    """
    dropped = tuple(k for k in source if k.startswith(drop_prefixes))
    src = [k for k in source if not k.startswith(drop_prefixes)]
    tgt = list(target)
    if len(src) != len(tgt):
        raise ConfigError(
            f"{what}: {len(src)} source tensors (after setting aside {len(dropped)}) but the model has {len(tgt)}"
        )
    bad = [
        f"#{i} {s} {tuple(source[s].shape)} -> {t} {tuple(target[t].shape)}"
        for i, (s, t) in enumerate(zip(src, tgt, strict=True))
        if tuple(source[s].shape) != tuple(target[t].shape) or _role(s) != _role(t)
    ]
    if bad:
        raise ConfigError(f"{what}: {len(bad)} tensor(s) do not pair by shape and role: {_shown(bad)}")
    pairs = tuple(zip(src, tgt, strict=True))
    return WeightMapping(pairs=pairs, dropped=dropped, state_dict={t: source[s] for s, t in pairs})
