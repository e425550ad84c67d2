"""SurvPGC and its one-path / two-modality variants, as compositions of the shared layers.

Architecture (the reference implementation's dimensions: UNI 1024-d patches, CONCH 512-d clinical sentences,
scFoundation 4 × 768 genomic tokens): each modality is projected linearly to ``dim`` (256).
Each *path* pairs a query modality (genomic or clinical tokens) with a "patch" modality (pathology, or
clinical tokens for ``survgc``) in a :class:`~survpgc.models.layers.BidirectionalCrossAttention` layer of
its own (1 head, dim_head 128); one FeedForward and one LayerNorm are shared by all paths. Each path is
mean-pooled into (query-token mean, patch-token mean); the vectors are concatenated in path order and
mapped by Linear -> ReLU -> Linear to the hazard logits.

Missing data: padded patches and missing tokens are masked out of every softmax and mean. A case with no
token of a modality gets a zero vector for that modality's mean (and its queries output zeros), so the
model still predicts from the other inputs -- no NaN.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from survpgc.errors import ConfigError
from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import (
    BidirectionalCrossAttention,
    FeedForward,
    GatedAttentionPool,
    factored_cross_attention,
    masked_mean,
)
from survpgc.models.registry import register_model

__all__ = ["CrossAttentionSurvival", "SurvGC", "SurvPC", "SurvPGC", "SurvPGCPool", "SurvPGCSkip"]

_SHORT = {"pathology": "patch", "clinical": "clinic", "genomic": "genomic"}


class CrossAttentionSurvival(SurvivalModel):
    """Generic multi-path bidirectional cross-attention survival model.

    Parameters
    ----------
    paths
        Sequence of ``(query_modality, patch_modality)`` pairs, in concatenation order.
    path_dim, clin_dim, gen_dim
        Input feature dims (follow the encoders actually used).
    dim, heads, dim_head
        Projection width and attention shape (reference: 256, 1, 128).
    hidden
        Width of the head's hidden layer (reference: 64).
    dropout
        FeedForward dropout (reference: 0.1).
    patch_pool
        Also pool the projected patches directly with gated attention
        (:class:`~survpgc.models.layers.GatedAttentionPool`, as ABMIL) and give that vector
        (``patch[patch-pool]``, width ``dim``) to the head beside the path vectors.
        Not in the paper: an ablation that lets pathology reach the risk without passing through the query tokens.
    token_skip
        Also give the head the masked mean of each query modality's projected tokens (``clinic[clinic-skip]``,
        ``genomic[genomic-skip]``, width ``dim`` each), before any attention. Not in the paper: an ablation that
        lets the clinical and genomic tokens reach the risk without the cross-attention mixing them with patches.
    factored
        Compute the patch side of the attention re-associated around the normalised patches
        (:func:`~survpgc.models.layers.factored_cross_attention`): same function, far fewer FLOPs. False
        runs the direct computation (used by the equivalence test and the benchmark).
    """

    def __init__(
        self,
        paths: tuple[tuple[str, str], ...],
        *,
        path_dim: int = 1024,
        clin_dim: int = 512,
        gen_dim: int = 768,
        n_bins: int = 4,
        dim: int = 256,
        heads: int = 1,
        dim_head: int = 128,
        hidden: int = 64,
        dropout: float = 0.1,
        patch_pool: bool = False,
        token_skip: bool = False,
        factored: bool = True,
    ) -> None:
        super().__init__(n_bins)
        self.factored = bool(factored)
        self.paths = tuple(tuple(p) for p in paths)
        used = {m for p in self.paths for m in p}
        in_dims = {"pathology": path_dim, "clinical": clin_dim, "genomic": gen_dim}
        self.proj = nn.ModuleDict({m: nn.Linear(in_dims[m], dim) for m in sorted(used)})
        self.attn = nn.ModuleList(BidirectionalCrossAttention(dim, heads, dim_head) for _ in self.paths)
        inner = heads * dim_head
        self.ffn = FeedForward(inner, dropout=dropout)
        self.norm = nn.LayerNorm(inner)
        if patch_pool and "pathology" not in used:
            raise ConfigError("patch_pool needs a path that reads the pathology modality")
        self.patch_pool = GatedAttentionPool(dim, dim, dropout) if patch_pool else None
        #: query modalities whose projected-token mean the head also reads (``token_skip``), in path order
        self.skip = tuple(dict.fromkeys(q for q, _ in self.paths)) if token_skip else ()
        width = 2 * inner * len(self.paths) + (dim if patch_pool else 0) + dim * len(self.skip)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_bins))

    def _attend(self, tokens: dict[str, tuple[torch.Tensor, torch.Tensor]], return_attention: bool) -> list:
        """Cross-attention of every path. Paths that read the same "patch" modality share its LayerNorm
        statistics and are computed together by :func:`~survpgc.models.layers.factored_cross_attention`
        (``factored=True``); otherwise each layer runs its direct computation."""
        results: dict[int, tuple] = {}
        by_patch: dict[str, list[int]] = {}
        for i, (_, k) in enumerate(self.paths):
            by_patch.setdefault(k, []).append(i)
        for k, idx in by_patch.items():
            x, p_mask = tokens[k]
            layers = [self.attn[i] for i in idx]
            qkv_ms = [
                layer.to_qkv(layer.norm(tokens[self.paths[i][0]][0])) for i, layer in zip(idx, layers, strict=True)
            ]
            m_masks = [tokens[self.paths[i][0]][1] for i in idx]
            if self.factored:
                x_hat = F.layer_norm(x, x.shape[-1:], eps=layers[0].norm.eps)
                outs = factored_cross_attention(layers, qkv_ms, m_masks, x_hat, p_mask, return_attention)
            else:
                outs = [
                    layer.attend(qkv_m, m_mask, layer.to_qkv(layer.norm(x)), p_mask, return_attention)
                    for layer, qkv_m, m_mask in zip(layers, qkv_ms, m_masks, strict=True)
                ]
            results.update(zip(idx, outs, strict=True))
        return [results[i] for i in range(len(self.paths))]

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        tokens = {}
        for m, proj in self.proj.items():
            x, mask = get_bag(batch, m)
            tokens[m] = (proj(x), mask)
        pooled: dict[str, torch.Tensor] = {}
        attention: dict[str, torch.Tensor] = {}
        path_vecs = []
        attended = self._attend(tokens, return_attention)
        for (q, k), (out_q, out_p, attn) in zip(self.paths, attended, strict=True):
            mq_mask, pk_mask = tokens[q][1], tokens[k][1]
            out_q = self.norm(self.ffn(out_q))
            out_p = self.norm(self.ffn(out_p))
            vq, vp = masked_mean(out_q, mq_mask), masked_mean(out_p, pk_mask)
            name_q, name_p = _SHORT[q], _SHORT[k]
            pooled[f"{name_q}[{name_q}-{name_p}]"] = vq
            pooled[f"{name_p}[{name_q}-{name_p}]"] = vp
            path_vecs.append(torch.cat([vq, vp], dim=-1))
            if attn is not None:
                attention[f"{name_q}->{name_p}"] = attn["mod->patch"]
                attention[f"{name_p}->{name_q}"] = attn["patch->mod"]
                attention[f"{name_q}->{name_q}[{name_q}-{name_p}]"] = attn["mod->mod"]
                attention[f"{name_q}->{name_p}/heads"] = attn["mod->patch/heads"]
        if self.patch_pool is not None:
            x, p_mask = tokens["pathology"]
            vec, attn = self.patch_pool(x.masked_fill(~p_mask[..., None], 0.0), p_mask)
            pooled["patch[patch-pool]"] = vec
            if return_attention:
                attention["patch-pool"] = attn
        for q in self.skip:
            x, q_mask = tokens[q]
            pooled[f"{_SHORT[q]}[{_SHORT[q]}-skip]"] = masked_mean(x, q_mask)
        fused = torch.cat(list(pooled.values()), dim=-1)
        return ModelOutput(
            logits=self.head(fused),
            attention=attention or None,
            fused=pooled,
            paths=(path_vecs[0], path_vecs[1]) if len(path_vecs) == 2 else None,
        )


@register_model(
    "survpgc",
    "SurvPGC: genomic<->pathology and clinic<->pathology bidirectional cross-attention (the paper's model)",
    ("pathology", "clinical", "genomic"),
)
class SurvPGC(CrossAttentionSurvival):
    """The paper's model: path 1 genomic<->pathology, path 2 clinic<->pathology; fused vectors in the order
    genomic mean, patch mean (path 1), clinic mean, patch mean (path 2). ``ModelOutput.paths`` holds
    ([genomic ‖ patch] of path 1, [clinic ‖ patch] of path 2) for the cosine loss."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__((("genomic", "pathology"), ("clinical", "pathology")), **kwargs)


@register_model(
    "survpc",
    "SurvPC: clinic<->pathology cross-attention only (the paper's clinic + pathology model, Table 4)",
    ("pathology", "clinical"),
)
class SurvPC(CrossAttentionSurvival):
    """One path, clinical tokens <-> patches."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__((("clinical", "pathology"),), **kwargs)


@register_model(
    "survgc",
    "SurvGC: genomic tokens <-> clinical tokens cross-attention (no pathology)",
    ("clinical", "genomic"),
)
class SurvGC(CrossAttentionSurvival):
    """One path, genomic tokens as queries and clinical tokens in the place of patches."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__((("genomic", "clinical"),), **kwargs)


@register_model(
    "survpgc_pool",
    "SurvPGC plus a gated-attention-pooled patch vector read by the head (ablation, not in the paper)",
    ("pathology", "clinical", "genomic"),
)
class SurvPGCPool(CrossAttentionSurvival):
    """SurvPGC's two paths, and the projected patches pooled by gated attention (as ABMIL) into a fifth fused
    vector ``patch[patch-pool]``: the ablation that asks whether SurvPGC is limited by pathology reaching the risk
    only through its few clinical and genomic query tokens."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("patch_pool", True)
        super().__init__((("genomic", "pathology"), ("clinical", "pathology")), **kwargs)


@register_model(
    "survpgc_skip",
    "SurvPGC plus the mean projected clinical and genomic tokens read by the head directly (ablation, not in the "
    "paper)",
    ("pathology", "clinical", "genomic"),
)
class SurvPGCSkip(CrossAttentionSurvival):
    """SurvPGC's two paths, and the masked mean of the projected genomic and clinical tokens (before attention) as
    two more fused vectors: the ablation that asks whether the clinical and genomic information is lost on its
    way through the cross-attention, where each query's output mixes its modality's values with the patches'."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("token_skip", True)
        super().__init__((("genomic", "pathology"), ("clinical", "pathology")), **kwargs)
