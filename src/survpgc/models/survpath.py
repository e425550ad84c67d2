"""SurvPath (Jaume et al., CVPR 2024): biological-pathway tokens <-> patch tokens cross-attention.

The omics vector (one ``gen`` token per case, (B, 1, gen_dim)) is split into gene groups (pathways); one
small SNN per group (:class:`~survpgc.models.layers.GroupSNNTokenizer`) turns each group into a token of
width ``dim``. Pathway tokens and the projected patches then meet in SurvPGC's attention pattern with one
path (:class:`~survpgc.models.survpgc.CrossAttentionSurvival` with ``paths=(("genomic", "pathology"),)``):
pathway queries attend over [pathways ‖ patches], patch queries over pathways, no patch-to-patch
attention; FeedForward + LayerNorm, mean of each side, concatenation, Linear -> ReLU -> Linear.

The tokenizer replaces the genomic projection of the parent (its tokens are already at ``dim``).

Missing data: a case without omics (masked ``gen`` token, or L = 0) has all its pathway tokens masked, so
its pathway queries output zeros and its patches attend to nothing (zero patch mean); a case without
patches gets a zero patch mean. Never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from survpgc.errors import ConfigError
from survpgc.models.base import ModelOutput, get_bag
from survpgc.models.layers import GroupSNNTokenizer, omics_vector
from survpgc.models.mlp import zero_masked
from survpgc.models.registry import register_model
from survpgc.models.survpgc import CrossAttentionSurvival

__all__ = ["SurvPath", "contiguous_groups"]


def contiguous_groups(n_features: int, n_groups: int) -> list[list[int]]:
    """Split feature indices 0..n_features-1 into ``n_groups`` contiguous, near-equal chunks (sizes differ by
    at most one) -- the fallback grouping when no pathway definition is given."""
    if not isinstance(n_groups, int) or n_groups < 1:
        raise ConfigError(f"`n_groups` must be a positive integer, got {n_groups!r}")
    if n_groups > n_features:
        raise ConfigError(f"`n_groups`={n_groups} exceeds the {n_features} omics features (gen_dim)")
    return [chunk.tolist() for chunk in np.array_split(np.arange(n_features), n_groups)]


def _check_groups(groups: Sequence[Sequence[int]], n_features: int) -> list[list[int]]:
    out = []
    for i, g in enumerate(groups):
        idx = [int(j) for j in g]
        if not idx:
            raise ConfigError(f"SurvPath group {i} is empty; every pathway needs at least one feature")
        bad = [j for j in idx if not 0 <= j < n_features]
        if bad:
            raise ConfigError(f"SurvPath group {i} has feature indices {bad[:5]} outside [0, {n_features}) (gen_dim)")
        out.append(idx)
    if not out:
        raise ConfigError("SurvPath needs at least one group of feature indices")
    return out


@register_model(
    "survpath",
    "SurvPath: pathway tokens (one SNN per gene group) <-> patch tokens cross-attention",
    ("pathology", "genomic"),
)
class SurvPath(CrossAttentionSurvival):
    """SurvPath.

    Parameters
    ----------
    groups
        Gene groups: for each pathway, the column indices of its genes in the omics vector. ``None`` (the
        documented fallback when no pathway table is at hand) splits the vector into ``n_groups`` contiguous
        chunks (:func:`contiguous_groups`).
    n_groups
        Number of chunks of the fallback (ignored when ``groups`` is given).
    path_dim, gen_dim
        Patch-feature dim and omics-vector length (default gen_dim: the 2574 RNA features of the built-in
        TCGA-LIHC table).
    clin_dim, n_clin_tokens
        Unused (accepted so one config can pass every dim to every model).
    n_bins
        Number of discrete-time bins.
    dim, heads, dim_head, hidden
        Token width, attention shape and head hidden width (as SurvPGC: 256, 1, 128, 64).
    snn_hidden
        Hidden width of each pathway SNN (256).
    dropout
        AlphaDropout of the pathway SNNs (0.25).
    ffn_dropout
        Dropout of the FeedForward after attention (0.1, as SurvPGC).

    Output: ``attention`` ``"genomic->patch"`` (B, n_groups, L), ``"patch->genomic"`` (B, L, n_groups) and
    ``"genomic->genomic[genomic-patch]"`` (B, n_groups, n_groups); ``fused`` ``{"genomic[genomic-patch]",
    "patch[genomic-patch]"}`` (B, heads * dim_head) each.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]] | None = None,
        *,
        n_groups: int = 8,
        path_dim: int = 1024,
        clin_dim: int = 512,
        n_clin_tokens: int = 6,
        gen_dim: int = 2574,
        n_bins: int = 4,
        dim: int = 256,
        heads: int = 1,
        dim_head: int = 128,
        hidden: int = 64,
        snn_hidden: int = 256,
        dropout: float = 0.25,
        ffn_dropout: float = 0.1,
    ) -> None:
        super().__init__(
            (("genomic", "pathology"),),
            path_dim=path_dim,
            clin_dim=clin_dim,
            gen_dim=gen_dim,
            n_bins=n_bins,
            dim=dim,
            heads=heads,
            dim_head=dim_head,
            hidden=hidden,
            dropout=ffn_dropout,
        )
        resolved = contiguous_groups(gen_dim, n_groups) if groups is None else _check_groups(groups, gen_dim)
        self.gen_dim = gen_dim
        self.n_groups = len(resolved)
        self.tokenizer = GroupSNNTokenizer(resolved, dim, snn_hidden, dropout)
        self.proj["genomic"] = nn.Identity()  # the tokenizer already outputs dim-wide tokens

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        x, mask = get_bag(batch, "genomic")
        vec, present = omics_vector(x, mask, self.gen_dim)
        tokens = self.tokenizer(vec)  # (B, n_groups, dim)
        path, path_mask = get_bag(batch, "pathology")
        inner = {
            "path": zero_masked(path, path_mask),
            "path_mask": path_mask,
            "gen": tokens,
            "gen_mask": present[:, None].expand(-1, self.n_groups),
        }
        return super().forward(inner, return_attention=return_attention)
