"""MCAT: multimodal co-attention transformer (Chen et al., ICCV 2021).

Architecture:

* genomic tokens: the omics vector (genomic token 0, (B, gen_dim)) is split into gene groups (the six gene
  families of the reference) and each group is embedded by its own two-layer SNN
  (:class:`GroupSNNTokenizer`) -> (B, G, dim);
* patches: Linear(path_dim, dim) -> ReLU -> Dropout -> (B, L, dim);
* genomic-guided co-attention: one :class:`MaskedMultiheadAttention` (1 head) with the genomic tokens as
  queries over the patch tokens (padded patches masked out) -> G "genomic-guided WSI" tokens (B, G, dim);
* per modality, a :class:`MaskedTransformerLayer` stack (2 post-norm layers, 8 heads, feed-forward 512)
  then :class:`GatedAttentionPool` then Linear -> ReLU -> Dropout: ``h_path`` from the WSI tokens,
  ``h_omic`` from the genomic tokens;
* head: ``[h_path ‖ h_omic]`` -> Linear -> ReLU -> Linear -> ReLU -> Linear -> ``n_bins``.

Patch-order invariant (the patches are only ever keys of the co-attention).

Missing data: padded patches are zeroed on input and masked out of the co-attention. A case without omics
(mask False, or a batch with no genomic token at all) gets zero genomic tokens: they are masked out of the
genomic transformer and pool, ``h_omic = 0``, and as co-attention queries they reduce to the learned query
bias, i.e. a fixed learned attention over the patches -- the pathology branch still runs. A case with no
patch gets ``h_path = 0``. Never NaN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from survpgc.errors import InputError
from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import (
    GatedAttentionPool,
    GroupSNNTokenizer,
    MaskedMultiheadAttention,
    MaskedTransformerLayer,
    omics_vector,
)
from survpgc.models.registry import register_model

__all__ = ["MCAT", "default_groups"]


def default_groups(gen_dim: int, n_groups: int = 6) -> list[list[int]]:
    """``n_groups`` contiguous, near-equal groups of column indices of the omics vector.

    The fallback when no gene-family annotation is given (tests, omics without family labels): it keeps
    MCAT's token count (6) but the groups are arbitrary blocks of columns, not gene families."""
    if gen_dim < n_groups:
        raise InputError(f"MCAT: gen_dim ({gen_dim}) must be at least the number of groups ({n_groups})")
    return [g.tolist() for g in torch.arange(gen_dim).tensor_split(n_groups)]


@register_model(
    "mcat",
    "MCAT: gene-family tokens co-attend over patches; transformer + gated pooling per modality (Chen et al. 2021)",
    ("pathology", "genomic"),
)
class MCAT(SurvivalModel):
    """Multimodal co-attention transformer.

    Parameters
    ----------
    path_dim
        Patch feature dim.
    gen_dim
        Length of the omics vector (the genomic bag is one token (B, 1, gen_dim) per case).
    n_bins
        Number of discrete-time hazard bins.
    groups
        Column indices of the omics vector per gene group (the reference: 6 gene families). ``None`` splits
        the vector into 6 contiguous blocks (:func:`default_groups`), a fallback for omics without family
        annotation.
    dim
        Token width (256).
    coattn_heads
        Heads of the genomic->patch co-attention (reference: 1).
    encoder_heads, encoder_layers, ff_dim
        Shape of each modality's transformer (reference: 8 heads, 2 layers, feed-forward 512).
    dropout
        Dropout of the embeddings, the transformers, the pools and the ``rho`` layers.

    ``fused = {"patch": h_path, "genomic": h_omic}`` (B, dim) each, concatenated in this order into the
    head; ``attention = {"genomic->patch": (B, G, L)}`` (co-attention, mean over heads) when asked.
    """

    def __init__(
        self,
        *,
        path_dim: int = 1024,
        gen_dim: int = 2000,
        n_bins: int = 4,
        groups: list[list[int]] | None = None,
        dim: int = 256,
        coattn_heads: int = 1,
        encoder_heads: int = 8,
        encoder_layers: int = 2,
        ff_dim: int = 512,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(n_bins)
        if groups is None:
            groups = default_groups(gen_dim)
        bad = [i for g in groups for i in g if not 0 <= int(i) < gen_dim]
        if bad:
            raise InputError(f"MCAT: group indices {bad[:5]} out of range for gen_dim={gen_dim}")
        self.gen_dim = gen_dim
        self.path_fc = nn.Sequential(nn.Linear(path_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.tokenizer = GroupSNNTokenizer([[int(i) for i in g] for g in groups], dim, dim, dropout)
        self.coattn = MaskedMultiheadAttention(dim, coattn_heads)
        self.path_encoder = nn.ModuleList(
            MaskedTransformerLayer(dim, encoder_heads, ff_dim, dropout) for _ in range(encoder_layers)
        )
        self.omic_encoder = nn.ModuleList(
            MaskedTransformerLayer(dim, encoder_heads, ff_dim, dropout) for _ in range(encoder_layers)
        )
        self.path_pool = GatedAttentionPool(dim, dim, dropout)
        self.omic_pool = GatedAttentionPool(dim, dim, dropout)
        self.path_rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.omic_rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, n_bins)
        )

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        x, p_mask = get_bag(batch, "pathology")
        x = x.masked_fill(~p_mask[..., None], 0.0)
        patches = self.path_fc(x)
        vec, has_omic = omics_vector(*get_bag(batch, "genomic"), n_features=self.gen_dim)
        genomic = self.tokenizer(vec) * has_omic[:, None, None].to(vec.dtype)  # (B, G, dim)
        g_mask = has_omic[:, None].expand(-1, genomic.shape[1])
        wsi, coattn = self.coattn(genomic, patches, patches, key_mask=p_mask)  # (B, G, dim), (B, h, G, L)
        for layer in self.path_encoder:
            wsi = layer(wsi)
        pooled_path, _ = self.path_pool(wsi, torch.ones_like(g_mask))
        h_path = self.path_rho(pooled_path) * p_mask.any(1, keepdim=True).to(x.dtype)
        for layer in self.omic_encoder:
            genomic = layer(genomic, g_mask)
        pooled_omic, _ = self.omic_pool(genomic, g_mask)
        h_omic = self.omic_rho(pooled_omic) * has_omic[:, None].to(x.dtype)
        return ModelOutput(
            logits=self.head(torch.cat([h_path, h_omic], dim=-1)),
            attention={"genomic->patch": coattn.mean(1)} if return_attention else None,
            fused={"patch": h_path, "genomic": h_omic},
        )
