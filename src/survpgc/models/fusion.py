"""The paper's clinic + pathology integration baselines (Table 4), all on an ABMIL pathology branch.

* ``late_fusion`` (a) -- a pathology-only model and a clinical-only model each predict hazard logits; the
  prediction combines them.
* ``concat_fusion`` (b) -- a low-dimensional clinical vector is concatenated with the pathology embedding.
* ``encoded_fusion`` (c) -- the clinical tokens are first encoded to a high-dimensional vector, then
  concatenated with the pathology embedding.

The pathology branch is :class:`PathologyABMIL`: per patch Linear -> ReLU -> Dropout, then gated attention
pooling (:class:`~survpgc.models.layers.GatedAttentionPool`) to one embedding per case.

Missing data: padded patches and masked tokens never reach a result (they are zeroed before any layer and
excluded from every pooling). A case with no patches gets a zero pathology embedding; a case with no
clinical token gets a zero clinical vector (``concat_fusion``, ``encoded_fusion``). ``late_fusion``
instead averages only the branches a case has (see :class:`LateFusion`). Never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from survpgc.errors import ConfigError, InputError
from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import GatedAttentionPool, MLPHead, masked_mean
from survpgc.models.mlp import check_widths, mlp_blocks, single_token, token_slots, zero_masked
from survpgc.models.registry import register_model

__all__ = ["ConcatFusion", "EncodedFusion", "LateFusion", "PathologyABMIL"]

_CLIN_MODES = ("tokens", "vector")


class PathologyABMIL(nn.Module):
    """ABMIL pathology encoder: Linear(path_dim, dim) -> ReLU -> Dropout per patch, then gated attention
    pooling. ``forward(x (B, L, path_dim), mask (B, L)) -> (embedding (B, dim), attention (B, L))``; a case
    with no patch (or L = 0) gets a zero embedding and zero attention."""

    def __init__(self, path_dim: int, dim: int = 256, attn_hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(path_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.pool = GatedAttentionPool(dim, attn_hidden, dropout)
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pool(self.fc(zero_masked(x, mask)), mask)


class _PathologyFusion(SurvivalModel):
    """Common constructor part: the ABMIL pathology branch and the stored dims."""

    def __init__(
        self, path_dim: int, clin_dim: int, n_clin_tokens: int, n_bins: int, dim: int, attn_hidden: int, dropout: float
    ) -> None:
        super().__init__(n_bins)
        self.path_dim, self.clin_dim, self.n_clin_tokens = path_dim, clin_dim, n_clin_tokens
        self.path_encoder = PathologyABMIL(path_dim, dim, attn_hidden, dropout)

    def _encode_pathology(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embedding (B, dim), attention (B, L), has_patches (B,))."""
        x, mask = get_bag(batch, "pathology")
        emb, attn = self.path_encoder(x, mask)
        return emb, attn, mask.any(dim=1)


@register_model(
    "late_fusion",
    "Late fusion: ABMIL pathology model and clinical MLP, hazard logits averaged (paper Table 4a)",
    ("pathology", "clinical"),
)
class LateFusion(_PathologyFusion):
    """Late fusion of a pathology-only and a clinical-only survival model.

    * pathology branch: :class:`PathologyABMIL` -> MLPHead(dim, head_hidden, n_bins);
    * clinical branch: the clinical tokens flattened by position (n_clin_tokens * clin_dim) ->
      (Linear -> ReLU -> Dropout) per width of ``clin_hidden`` -> Linear -> n_bins;
    * logits = w * pathology logits + (1 - w) * clinical logits, with w = 0.5 (the mean; default) or, with
      ``learn_weight=True``, w = sigmoid(a) for one learnable scalar a initialised at 0 (so training starts
      from the mean).

    A case missing one modality (no patch, or no clinical token) is predicted by the other branch alone
    (the weights are renormalised over the branches the case has); a case with neither uses both branches'
    input-free outputs. ``fused`` holds the two branch logits ``{"pathology", "clinical"}`` (B, n_bins).
    """

    def __init__(
        self,
        *,
        path_dim: int = 1024,
        clin_dim: int = 512,
        n_clin_tokens: int = 6,
        n_bins: int = 4,
        dim: int = 256,
        attn_hidden: int = 256,
        head_hidden: int = 64,
        clin_hidden: Sequence[int] = (256, 64),
        dropout: float = 0.25,
        learn_weight: bool = False,
    ) -> None:
        super().__init__(path_dim, clin_dim, n_clin_tokens, n_bins, dim, attn_hidden, dropout)
        widths = check_widths(clin_hidden, "clin_hidden")
        self.path_head = MLPHead(dim, head_hidden, n_bins, dropout)
        self.clin_encoder = mlp_blocks(n_clin_tokens * clin_dim, widths, dropout)
        self.clin_head = nn.Linear(widths[-1], n_bins)
        self.mix = nn.Parameter(torch.zeros(())) if learn_weight else None

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        emb, attn, has_path = self._encode_pathology(batch)
        logit_p = self.path_head(emb)
        tokens, clin_mask = token_slots(batch, "clinical", self.n_clin_tokens, self.clin_dim)
        logit_c = self.clin_head(self.clin_encoder(tokens.flatten(1)))
        w = torch.sigmoid(self.mix) if self.mix is not None else logit_p.new_tensor(0.5)
        has_clin = clin_mask.any(dim=1)
        neither = ~(has_path | has_clin)
        w_p = (w * (has_path | neither).to(w.dtype)).unsqueeze(1)
        w_c = ((1 - w) * (has_clin | neither).to(w.dtype)).unsqueeze(1)
        logits = (w_p * logit_p + w_c * logit_c) / (w_p + w_c).clamp(min=1e-6)
        return ModelOutput(
            logits=logits,
            attention={"patch": attn} if return_attention else None,
            fused={"pathology": logit_p, "clinical": logit_c},
        )


@register_model(
    "concat_fusion",
    "Concatenation fusion: ABMIL pathology embedding ‖ low-dim clinical vector -> MLP (paper Table 4b)",
    ("pathology", "clinical"),
)
class ConcatFusion(_PathologyFusion):
    """Early fusion by concatenating the clinical features with the pathology embedding.

    The clinical vector (B, clin_dim) is, with ``clin_mode``:

    * ``"tokens"`` (default) -- the masked mean of the clinical tokens (works on the same batches as every
      other clinic model);
    * ``"vector"`` -- a low-dimensional clinical feature vector (one-hot / standardised columns) carried as
      one ``clin`` token (B, 1, n_clin_features); pass ``clin_dim=n_clin_features``.

    Then [pathology embedding (dim) ‖ clinical vector (clin_dim)] -> MLPHead(hidden) -> n_bins. A case with
    no clinical token gets a zero clinical vector. ``fused``: ``{"pathology" (B, dim), "clinical"
    (B, clin_dim)}``. ``n_clin_tokens`` is only kept for the config.
    """

    def __init__(
        self,
        *,
        clin_mode: str = "tokens",
        path_dim: int = 1024,
        clin_dim: int = 512,
        n_clin_tokens: int = 6,
        n_bins: int = 4,
        dim: int = 256,
        attn_hidden: int = 256,
        hidden: int = 64,
        dropout: float = 0.25,
    ) -> None:
        if clin_mode not in _CLIN_MODES:
            raise ConfigError(f"`clin_mode` must be one of {_CLIN_MODES}, got {clin_mode!r}")
        super().__init__(path_dim, clin_dim, n_clin_tokens, n_bins, dim, attn_hidden, dropout)
        self.clin_mode = clin_mode
        self.head = MLPHead(dim + clin_dim, hidden, n_bins, dropout)

    def _clinical(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.clin_mode == "vector":
            return single_token(batch, "clinical", self.clin_dim)[0]
        x, mask = get_bag(batch, "clinical")
        if x.shape[-1] != self.clin_dim:
            raise InputError(
                f"clinical tokens have dim {x.shape[-1]}, the model was built for clin_dim={self.clin_dim}"
            )
        return masked_mean(zero_masked(x, mask), mask)

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        emb, attn, _ = self._encode_pathology(batch)
        clin = self._clinical(batch)
        return ModelOutput(
            logits=self.head(torch.cat([emb, clin], dim=-1)),
            attention={"patch": attn} if return_attention else None,
            fused={"pathology": emb, "clinical": clin},
        )


@register_model(
    "encoded_fusion",
    "Encoded fusion: clinical tokens encoded to 256-d by an MLP, ‖ ABMIL pathology embedding -> MLP (Table 4c)",
    ("pathology", "clinical"),
)
class EncodedFusion(_PathologyFusion):
    """Fusion after encoding the clinical data to a high-dimensional vector.

    The clinical tokens, flattened by position (n_clin_tokens * clin_dim, masked tokens as zeros), pass
    (Linear -> ReLU -> Dropout) per width of ``clin_hidden`` (default one layer to 256); the encoding is set
    to zero for a case with no clinical token. Then [pathology embedding (dim) ‖ clinical encoding] ->
    MLPHead(hidden) -> n_bins. ``fused``: ``{"pathology" (B, dim), "clinical" (B, clin_hidden[-1])}``.
    """

    def __init__(
        self,
        *,
        path_dim: int = 1024,
        clin_dim: int = 512,
        n_clin_tokens: int = 6,
        n_bins: int = 4,
        dim: int = 256,
        attn_hidden: int = 256,
        clin_hidden: Sequence[int] = (256,),
        hidden: int = 64,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(path_dim, clin_dim, n_clin_tokens, n_bins, dim, attn_hidden, dropout)
        widths = check_widths(clin_hidden, "clin_hidden")
        self.clin_encoder = mlp_blocks(n_clin_tokens * clin_dim, widths, dropout)
        self.head = MLPHead(dim + widths[-1], hidden, n_bins, dropout)

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        emb, attn, _ = self._encode_pathology(batch)
        tokens, clin_mask = token_slots(batch, "clinical", self.n_clin_tokens, self.clin_dim)
        clin = self.clin_encoder(tokens.flatten(1)) * clin_mask.any(dim=1, keepdim=True).to(tokens.dtype)
        return ModelOutput(
            logits=self.head(torch.cat([emb, clin], dim=-1)),
            attention={"patch": attn} if return_attention else None,
            fused={"pathology": emb, "clinical": clin},
        )
