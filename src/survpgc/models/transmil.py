"""TransMIL: transformer-based correlated MIL (Shao et al., NeurIPS 2021).

Architecture: patch features -> Linear(path_dim, dim) -> ReLU; a learned class token is prepended; then

    Nyström layer 1 -> PPEG (on the patch tokens) -> Nyström layer 2 -> LayerNorm -> class token -> Linear

where a Nyström layer is the pre-norm residual ``x + NystromAttention(LayerNorm(x))`` (no feed-forward, as
the reference) and PPEG the pyramid position encoding (depthwise convolutions with kernels 7, 5, 3 over the
patches laid on a square grid). See :class:`~survpgc.models.layers.NystromAttention` and
:class:`~survpgc.models.layers.PPEG` for the details: both compute each case on its own real patches, so a
case's output does not depend on padding or on the other cases of the batch; a case with at most
``landmarks`` tokens (class token included) uses exact softmax attention. The model depends on patch order
by design (PPEG, Nyström segments, the residual convolution): feed patches in a fixed (e.g. coordinate)
order.

Missing data: a case with no patch (all-False mask) runs on the class token alone -- a constant output for
such cases, never NaN. No attention map is returned: the class-token row of a Nyström attention is not a
distribution over patches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import PPEG, NystromAttention
from survpgc.models.registry import register_model

__all__ = ["TransMIL"]


class _NystromLayer(nn.Module):
    """Pre-norm residual Nyström self-attention: ``x + attn(LayerNorm(x))``; padded positions untouched."""

    def __init__(self, dim: int, heads: int, landmarks: int | None, pinv_iters: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(
            dim, heads, dim // heads, landmarks=landmarks, pinv_iters=pinv_iters, residual_kernel=33, dropout=dropout
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x), mask)


@register_model(
    "transmil",
    "TransMIL: Nyström-attention transformer with pyramid position encoding over patches (Shao et al. 2021)",
    ("pathology",),
)
class TransMIL(SurvivalModel):
    """TransMIL.

    Parameters
    ----------
    path_dim
        Patch feature dim.
    n_bins
        Number of discrete-time hazard bins.
    dim, heads
        Token width and attention heads (reference: 512, 8; ``dim`` must be divisible by ``heads``).
    landmarks
        Nyström landmarks (default ``dim // 2``, as the reference).
    pinv_iters
        Iterations of the Moore-Penrose pseudo-inverse (6).
    dropout
        Dropout after each attention's output projection (reference: 0.1).

    ``fused = {"patch": normalised class token (B, dim)}``, the head's input.
    """

    def __init__(
        self,
        *,
        path_dim: int = 1024,
        n_bins: int = 4,
        dim: int = 512,
        heads: int = 8,
        landmarks: int | None = None,
        pinv_iters: int = 6,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(n_bins)
        if dim % heads:
            raise ValueError(f"TransMIL: dim ({dim}) must be divisible by heads ({heads})")
        self.fc = nn.Sequential(nn.Linear(path_dim, dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.layer1 = _NystromLayer(dim, heads, landmarks, pinv_iters, dropout)
        self.ppeg = PPEG(dim)
        self.layer2 = _NystromLayer(dim, heads, landmarks, pinv_iters, dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_bins)

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        x, mask = get_bag(batch, "pathology")
        x = x.masked_fill(~mask[..., None], 0.0)
        b = x.shape[0]
        h = torch.cat([self.cls_token.expand(b, -1, -1), self.fc(x)], dim=1)
        m = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        h = self.layer1(h, m)
        h = torch.cat([h[:, :1], self.ppeg(h[:, 1:], mask)], dim=1)
        h = self.layer2(h, m)
        cls = self.norm(h[:, 0])
        return ModelOutput(logits=self.head(cls), fused={"patch": cls})
