"""PORPOISE-MMF: pathology-omics multimodal fusion (Chen et al., Cancer Cell 2022).

Architecture:

* pathology branch: patch features -> Linear(path_dim, dim) -> ReLU -> Dropout -> :class:`GatedAttentionPool`
  -> Linear(dim, dim) -> ReLU -> Dropout -> ``h_path`` (B, dim);
* omics branch: the omics vector (genomic token 0, (B, gen_dim)) -> two :class:`SNNBlock` (dim) with SNN
  init -> ``h_omic`` (B, dim);
* head: :class:`GatedBilinearFusion` (each modality reduced and gated to ``gate_dim`` (32), appended with 1,
  Kronecker product (33 x 33 = 1089) -> ``fusion_dim`` (256), with skip connection) -> Linear -> ``n_bins``.

Missing data: padded patches are zeroed on input and get zero attention. A case without omics (mask False,
or a batch with no genomic token at all) gets ``h_omic = 0``; a case with no patch gets ``h_path = 0``.
The fusion then still works: through the appended 1s, the Kronecker product keeps the other modality's
unimodal terms, so the prediction rests on the modality present -- never NaN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import GatedAttentionPool, GatedBilinearFusion, SNNBlock, omics_vector, snn_init
from survpgc.models.registry import register_model

__all__ = ["PORPOISE", "FusionHead"]


class FusionHead(nn.Module):
    """``[h_path ‖ h_omic]`` -> :class:`GatedBilinearFusion` -> Linear -> logits.

    Takes the concatenation of the fused vectors (so ``head(cat(fused.values()))`` gives the logits, as for
    every model) and splits it back into the two modalities."""

    def __init__(self, dim1: int, dim2: int, n_bins: int, gate_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dims = (dim1, dim2)
        self.fusion = GatedBilinearFusion(dim1, dim2, gate_dim=gate_dim, hidden=hidden, dropout=dropout)
        self.classifier = nn.Linear(hidden, n_bins)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x1, x2 = z.split(self.dims, dim=-1)
        return self.classifier(self.fusion(x1, x2))


@register_model(
    "porpoise",
    "PORPOISE-MMF: gated-attention MIL + SNN omics, gated bilinear (Kronecker) fusion (Chen et al. 2022)",
    ("pathology", "genomic"),
)
class PORPOISE(SurvivalModel):
    """PORPOISE multimodal fusion model.

    Parameters
    ----------
    path_dim
        Patch feature dim.
    gen_dim
        Length of the omics vector (the genomic bag is one token (B, 1, gen_dim) per case).
    n_bins
        Number of discrete-time hazard bins.
    dim
        Width of both modality embeddings (256).
    gate_dim
        Width of each gated modality vector before the Kronecker product (32 -> 33 x 33).
    fusion_dim
        Width of the fusion encoder (256).
    dropout
        Dropout of every branch and of the fusion.

    ``fused = {"patch": h_path, "genomic": h_omic}`` (B, dim) each, the head's input in this order;
    ``attention = {"patch": (B, L)}`` when asked.
    """

    def __init__(
        self,
        *,
        path_dim: int = 1024,
        gen_dim: int = 2000,
        n_bins: int = 4,
        dim: int = 256,
        gate_dim: int = 32,
        fusion_dim: int = 256,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(n_bins)
        self.gen_dim = gen_dim
        self.path_fc = nn.Sequential(nn.Linear(path_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.path_pool = GatedAttentionPool(dim, dim, dropout)
        self.path_rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.omic = nn.Sequential(SNNBlock(gen_dim, dim, dropout), SNNBlock(dim, dim, dropout))
        snn_init(self.omic)
        self.head = FusionHead(dim, dim, n_bins, gate_dim, fusion_dim, dropout)

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        x, p_mask = get_bag(batch, "pathology")
        x = x.masked_fill(~p_mask[..., None], 0.0)
        pooled, attn = self.path_pool(self.path_fc(x), p_mask)
        has_path = p_mask.any(1, keepdim=True).to(x.dtype)
        h_path = self.path_rho(pooled) * has_path
        vec, has_omic = omics_vector(*get_bag(batch, "genomic"), n_features=self.gen_dim)
        h_omic = self.omic(vec) * has_omic[:, None].to(vec.dtype)
        fused = {"patch": h_path, "genomic": h_omic}
        return ModelOutput(
            logits=self.head(torch.cat([h_path, h_omic], dim=-1)),
            attention={"patch": attn} if return_attention else None,
            fused=fused,
        )
