"""The one forward contract of every survival model.

Input: the batch dict of :func:`survpgc.data.dataset.collate_survival` --
``path`` (B, L, d_path) + ``path_mask`` (B, L), ``clin`` (B, n_c, d_clin) + ``clin_mask``, ``gen``
(B, n_g, d_gen) + ``gen_mask``; masks are True for real patches / tokens. A model reads only the
modalities it uses; a missing modality for a case is an all-False mask (see each model's docstring for
what it then does -- never NaN).

Output: :class:`ModelOutput` with hazard logits (B, n_bins) and, derived from them, hazards, the survival
curve and the risk (higher = worse); optionally attention maps and the fused vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from survpgc.errors import InputError
from survpgc.survival.losses import risk_from_logits, survival_from_logits

__all__ = ["ModelOutput", "SurvivalModel", "get_bag"]

BAG_KEYS = {"pathology": "path", "clinical": "clin", "genomic": "gen"}


@dataclass
class ModelOutput:
    """What a model returns.

    Attributes
    ----------
    logits
        (B, n_bins) hazard logits of the discrete-time model (for risk-only heads, (B, 1) log hazard ratios
        and ``discrete`` False).
    attention
        Optional dict of attention maps, e.g. ``"clinic->patch"`` (B, n_clinic, L),
        ``"patch->clinic"`` (B, L, n_clinic), ``"genomic->patch"``, ``"patch->genomic"``, ``"patch"``
        (B, L) for attention-pooling models. Padded positions hold 0. Cross-attention models also return
        ``"clinic->patch/heads"`` (B, heads, n_clinic, L): the per-head weights exactly as used in the
        forward pass (part of the autograd graph, so gradients of the risk with respect to them exist;
        :mod:`survpgc.explain.attention` uses them for relevance).
    fused
        Optional dict of named fused vectors (B, k) in the order the model concatenates them (for IG).
    paths
        Optional pair of path embeddings for the cosine loss (SurvPGC).
    """

    logits: torch.Tensor
    attention: dict[str, torch.Tensor] | None = None
    fused: dict[str, torch.Tensor] | None = None
    paths: tuple[torch.Tensor, torch.Tensor] | None = None
    discrete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hazards(self) -> torch.Tensor:
        """(B, n_bins) hazards sigmoid(logits)."""
        return torch.sigmoid(self.logits)

    @property
    def survival(self) -> torch.Tensor:
        """(B, n_bins) S_k = prod_{j<=k} (1 - h_j)."""
        return survival_from_logits(self.logits)

    @property
    def risk(self) -> torch.Tensor:
        """(B,) risk, higher = worse: -sum_k S_k for discrete heads, the log hazard ratio otherwise."""
        if self.discrete:
            return risk_from_logits(self.logits)
        return self.logits.reshape(-1)


def get_bag(batch: dict[str, Any], modality: str, *, required: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens (B, L, d), mask (B, L) bool)`` of a modality from a batch.

    A missing mask means every token is real. A missing modality raises :class:`InputError` naming the key.
    """
    key = BAG_KEYS[modality]
    if key not in batch:
        if not required:
            return None, None  # type: ignore[return-value]
        raise InputError(f"batch has no {key!r} ({modality}) tensor; this model needs it")
    x = batch[key]
    if x.ndim == 2:  # (B, d): a single token per case
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise InputError(f"batch[{key!r}] must have shape (B, L, d), got {tuple(x.shape)}")
    mask = batch.get(f"{key}_mask")
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    elif mask.shape != x.shape[:2]:
        raise InputError(f"batch[{key + '_mask'!r}] has shape {tuple(mask.shape)}, expected {tuple(x.shape[:2])}")
    return x, mask.bool()


class SurvivalModel(nn.Module):
    """Base class: subclasses implement ``forward(batch, return_attention=False) -> ModelOutput``."""

    model_name: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ()
    optional_modalities: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n_bins: int = 4) -> None:
        super().__init__()
        if not isinstance(n_bins, int) or n_bins < 1:
            raise InputError(f"n_bins must be a positive integer, got {n_bins!r}")
        self.n_bins = n_bins

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
