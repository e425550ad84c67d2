"""ABMIL: gated attention multiple-instance learning over patch features (Ilse et al., ICML 2018).

Architecture: patch features -> Linear(path_dim, dim) -> ReLU -> Dropout -> :class:`GatedAttentionPool`
(hidden ``dim``) -> :class:`MLPHead` (Linear -> ReLU -> Dropout -> Linear) -> ``n_bins`` hazard logits.
Permutation invariant in the patches.

Missing data: padded patches are zeroed on input and get zero attention. A case with no patch (all-False
mask) pools to a zero vector, so its logits are the head's response to zeros (the same for every such case)
-- never NaN.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import GatedAttentionPool, MLPHead
from survpgc.models.registry import register_model

__all__ = ["ABMIL"]


@register_model("abmil", "ABMIL: gated attention pooling of patch features (Ilse et al. 2018)", ("pathology",))
class ABMIL(SurvivalModel):
    """Gated attention MIL.

    Parameters
    ----------
    path_dim
        Patch feature dim.
    n_bins
        Number of discrete-time hazard bins.
    dim
        Width of the patch embedding, the attention network and the head's hidden layer (256).
    dropout
        Dropout after the embedding, in the attention network and in the head.

    ``fused = {"patch": pooled (B, dim)}``, the head's input; ``attention = {"patch": (B, L)}`` when asked.
    """

    def __init__(
        self,
        *,
        path_dim: int = 1024,
        n_bins: int = 4,
        dim: int = 256,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(n_bins)
        self.fc = nn.Sequential(nn.Linear(path_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.pool = GatedAttentionPool(dim, dim, dropout)
        self.head = MLPHead(dim, dim, n_bins, dropout)

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        x, mask = get_bag(batch, "pathology")
        x = x.masked_fill(~mask[..., None], 0.0)
        pooled, attn = self.pool(self.fc(x), mask)
        return ModelOutput(
            logits=self.head(pooled),
            attention={"patch": attn} if return_attention else None,
            fused={"patch": pooled},
        )
