"""Mean-pooling MIL baseline: an MLP on the mean of the real patch features.

Architecture: masked mean of the patch features (B, path_dim) -> Linear(path_dim, dim) -> ReLU -> Dropout ->
Linear(dim, n_bins). Permutation invariant in the patches.

Missing data: padded patches are excluded from the mean. A case with no patch (all-False mask) has a zero
mean, so its logits are the head's response to zeros -- never NaN.
"""

from __future__ import annotations

from typing import Any

from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import MLPHead, masked_mean
from survpgc.models.registry import register_model

__all__ = ["MeanMIL"]


@register_model("mean_mil", "Mean-pooling MIL: an MLP on the mean patch feature", ("pathology",))
class MeanMIL(SurvivalModel):
    """MLP on the masked patch mean.

    Parameters
    ----------
    path_dim
        Patch feature dim.
    n_bins
        Number of discrete-time hazard bins.
    dim
        Hidden width of the MLP (256).
    dropout
        Dropout after the hidden layer.

    ``fused = {"patch": mean (B, path_dim)}``, the head's input; ``attention = {"patch": (B, L)}`` (uniform
    weights 1/n over the n real patches, 0 on padding) when asked, so heat-map code can treat every MIL
    model alike.
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
        self.head = MLPHead(path_dim, dim, n_bins, dropout)

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        x, mask = get_bag(batch, "pathology")
        x = x.masked_fill(~mask[..., None], 0.0)
        mean = masked_mean(x, mask)
        attention = None
        if return_attention:
            w = mask.to(x.dtype)
            attention = {"patch": w / w.sum(1, keepdim=True).clamp(min=1.0)}
        return ModelOutput(logits=self.head(mean), attention=attention, fused={"patch": mean})
