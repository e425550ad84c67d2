"""The text encoder interface and the spec of a text-encoder registry entry.

A :class:`TextEncoder` maps sentences to float32 vectors in batches under :func:`torch.inference_mode`;
its :attr:`TextEncoder.identity` is computed without loading the weights and keys the clinical-token cache.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from survpgc.devices import resolve_device
from survpgc.encoders.registry import SpecRegistry
from survpgc.errors import ConfigError, InputError

__all__ = ["TEXT_ENCODERS", "TextEncoder", "TextEncoderSpec", "check_batch_size"]


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` when it is an integer >= 1; InputError otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


class TextEncoder(ABC):
    """Maps sentences to vectors: ``encode(list[str]) -> float32 array (n, dim)``.

    Subclasses implement :attr:`identity`, :attr:`dim`, :meth:`_load` (load weights once, lazily) and
    :meth:`_encode_batch` (one batch -> tensor (b, d), before normalisation). ``n_calls`` and
    ``n_sentences`` count :meth:`encode` calls and sentences encoded (for cache checks and logs).
    """

    name: str = "text"

    def __init__(self, *, normalize: bool = True, device: str | torch.device | None = "cpu", batch_size: int = 64):
        self.normalize = bool(normalize)
        self.device = resolve_device(device)
        self.batch_size = check_batch_size(batch_size)
        self.n_calls = 0
        self.n_sentences = 0
        self._loaded = False

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the vectors could change (model, weights, pooling, normalisation)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Output width."""

    @abstractmethod
    def _load(self) -> None:
        """Load the model (called once, on first use)."""

    @abstractmethod
    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        """Vectors (b, d) of one batch, before the optional L2 normalisation."""

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._loaded

    def load(self) -> TextEncoder:
        """Load the weights now (otherwise done on first :meth:`encode`)."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def encode(self, sentences: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Encode sentences in batches; returns float32 (n, dim), L2-normalised rows when ``normalize``."""
        if isinstance(sentences, str):
            raise InputError("encode() takes a sequence of sentences, not a single string")
        items = list(sentences)
        bad = [i for i, s in enumerate(items) if not isinstance(s, str) or not s.strip()]
        if bad:
            raise InputError(f"encode(): sentence(s) at position(s) {bad[:5]} are empty or not strings")
        bs = self.batch_size if batch_size is None else check_batch_size(batch_size)
        self.load()
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), bs):
                emb = self._encode_batch(items[start : start + bs]).to(torch.float32)
                if self.normalize:
                    emb = F.normalize(emb, dim=-1)
                chunks.append(emb.cpu().numpy())
        out = np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)
        if out.shape != (len(items), self.dim):
            raise ConfigError(
                f"text encoder {self.name!r} returned shape {out.shape}, expected ({len(items)}, {self.dim})"
            )
        if not np.isfinite(out).all():
            raise ConfigError(f"text encoder {self.name!r} returned NaN/inf vectors")
        self.n_calls += 1
        self.n_sentences += len(items)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, normalize={self.normalize}, device={str(self.device)!r})"


@dataclass(frozen=True)
class TextEncoderSpec:
    """A registered text encoder: output ``dim``, ``license``, ``gated`` weights, how ``weights`` are found."""

    name: str
    dim: int | None
    license: str
    gated: bool
    weights: str
    requires: tuple[str, ...]
    description: str
    factory: Callable[..., TextEncoder] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain values (without the factory)."""
        d = asdict(self)
        d.pop("factory")
        d["requires"] = list(self.requires)
        return d


#: The text-encoder registry (filled by :mod:`survpgc.encoders.text`).
TEXT_ENCODERS: SpecRegistry[TextEncoderSpec] = SpecRegistry("text encoder")
