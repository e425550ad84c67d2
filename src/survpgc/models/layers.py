"""Shared building blocks, written once and composed by every model.

All pooling / attention layers take boolean masks (True = real token) and never let padded positions
change the result; an all-masked bag pools to a zero vector (never NaN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BidirectionalCrossAttention",
    "FeedForward",
    "GatedAttentionPool",
    "GroupSNNTokenizer",
    "MLPHead",
    "SNNBlock",
    "cosine_path_loss",
    "masked_mean",
    "masked_softmax",
    "snn_init",
]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, L, d) using only positions where mask (B, L) is True; zeros when none."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is True (broadcastable); rows with no True
    position give all zeros instead of NaN."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    attn = torch.softmax(scores, dim=dim)
    return attn * mask.to(attn.dtype)


def snn_init(module: nn.Module) -> None:
    """Self-normalising init for Linear layers: N(0, 1/fan_in), zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.weight.shape[1]))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SNNBlock(nn.Sequential):
    """Self-normalising block: Linear -> ELU -> AlphaDropout."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.25) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), nn.ELU(), nn.AlphaDropout(dropout))


class MLPHead(nn.Sequential):
    """Linear -> ReLU -> (Dropout) -> Linear, the classifier of most models."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, out_dim))
        super().__init__(*layers)


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear (no residual, as the reference)."""

    def __init__(self, dim: int, mult: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedAttentionPool(nn.Module):
    """Gated attention pooling (ABMIL): a_i = w^T (tanh(V h_i) * sigmoid(U h_i)), softmax over real
    instances. Returns the pooled vector (B, d) and the attention (B, L) (0 on padding)."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.b = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.w(self.a(x) * self.b(x)).squeeze(-1)  # (B, L)
        attn = masked_softmax(scores, mask)
        return torch.einsum("bl,bld->bd", attn, x), attn


class BidirectionalCrossAttention(nn.Module):
    """Modality tokens <-> patch tokens, without patch-to-patch attention (cost linear in patches).

    Given modality tokens ``m`` (B, M, dim) and patch tokens ``p`` (B, L, dim), after a LayerNorm and one
    bias-free ``to_qkv`` projection:

    * modality queries attend over ``[m ‖ p]`` in one softmax;
    * patch queries attend over ``m`` only (values from the modality tokens).

    No residual and no output projection (as the reference). Padded patches and missing modality tokens
    are excluded through the masks; a query with no valid key outputs zeros.

    Returns ``(m_out (B, M, inner), p_out (B, L, inner), attn)`` where ``attn`` (when requested) holds
    ``"mod->mod"`` (B, M, M), ``"mod->patch"`` (B, M, L) (the patch part of the modality queries' joint
    softmax) and ``"patch->mod"`` (B, L, M), averaged over heads.
    """

    def __init__(self, dim: int = 256, heads: int = 1, dim_head: int = 128) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.inner = heads * dim_head
        self.scale = dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, self.inner * 3, bias=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, h*dh) -> (B, h, N, dh)
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def forward(
        self,
        m: torch.Tensor,
        m_mask: torch.Tensor,
        p: torch.Tensor,
        p_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        b, n_m, _ = m.shape
        n_p = p.shape[1]
        qm, km, vm = (self._split(t) for t in self.to_qkv(self.norm(m)).chunk(3, dim=-1))
        qp, kp, vp = (self._split(t) for t in self.to_qkv(self.norm(p)).chunk(3, dim=-1))
        qm = qm * self.scale
        qp = qp * self.scale
        # modality queries over [modality ‖ patches], one softmax
        s_mm = qm @ km.transpose(-1, -2)  # (B, h, M, M)
        s_mp = qm @ kp.transpose(-1, -2)  # (B, h, M, L)
        keys_mask = torch.cat([m_mask, p_mask], dim=1)[:, None, None, :]  # (B, 1, 1, M+L)
        # padded / missing queries get all-zero attention rows (their outputs are zero and never pooled)
        a_m = masked_softmax(torch.cat([s_mm, s_mp], dim=-1), keys_mask & m_mask[:, None, :, None])
        a_mm, a_mp = a_m[..., :n_m], a_m[..., n_m:]
        out_m = a_mm @ vm + a_mp @ vp  # (B, h, M, dh)
        # patch queries over modality tokens only
        a_pm = masked_softmax(qp @ km.transpose(-1, -2), m_mask[:, None, None, :] & p_mask[:, None, :, None])
        out_p = a_pm @ vm  # (B, h, L, dh)
        out_m = out_m.transpose(1, 2).reshape(b, n_m, self.inner)
        out_p = out_p.transpose(1, 2).reshape(b, n_p, self.inner)
        attn = None
        if return_attention:
            attn = {"mod->mod": a_mm.mean(1), "mod->patch": a_mp.mean(1), "patch->mod": a_pm.mean(1)}
        return out_m, out_p, attn


def cosine_path_loss(a: torch.Tensor, b: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """CosineEmbeddingLoss with target -1: mean(max(0, cos(a, b) - margin)) -- pushes the two path
    embeddings apart (SurvPGC's optional auxiliary loss)."""
    return F.relu(F.cosine_similarity(a, b, dim=-1) - margin).mean()


class GroupSNNTokenizer(nn.Module):
    """One small SNN per gene group (pathway / gene family) turning a flat omics vector into tokens.

    Group ``g`` reads the columns ``groups[g]`` of the input vector and applies
    Linear(|g|, hidden) -> ELU -> AlphaDropout -> Linear(hidden, dim) -> ELU -> AlphaDropout (as SurvPath /
    MCAT). All groups run as one batched matmul over zero-padded, masked weights, so 331 pathways cost one
    einsum rather than 331 small layers.

    Input (B, n_features) (or (B, 1, n_features)); output (B, n_groups, dim).
    """

    def __init__(self, groups: list[list[int]], dim: int = 256, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        if not groups or any(len(g) == 0 for g in groups):
            raise ValueError("GroupSNNTokenizer needs non-empty groups of feature indices")
        n_g = len(groups)
        width = max(len(g) for g in groups)
        index = torch.zeros(n_g, width, dtype=torch.long)
        valid = torch.zeros(n_g, width, dtype=torch.bool)
        for i, g in enumerate(groups):
            index[i, : len(g)] = torch.as_tensor(list(g), dtype=torch.long)
            valid[i, : len(g)] = True
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        self.w1 = nn.Parameter(torch.empty(n_g, width, hidden))
        self.b1 = nn.Parameter(torch.zeros(n_g, hidden))
        self.w2 = nn.Parameter(torch.empty(n_g, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(n_g, dim))
        sizes = valid.sum(1).clamp(min=1).float()
        with torch.no_grad():  # SNN init: N(0, 1/fan_in) per group
            self.w1.normal_().mul_((1.0 / sizes.sqrt())[:, None, None])
            self.w1.mul_(valid[..., None].float())
            self.w2.normal_().mul_(1.0 / math.sqrt(hidden))
        self.drop = nn.AlphaDropout(dropout)
        self.n_groups, self.dim = n_g, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x[:, 0]
        g = x[:, self.index] * self.valid.to(x.dtype)  # (B, G, width)
        w1 = self.w1 * self.valid[..., None].to(self.w1.dtype)  # padded inputs never get weight
        h = self.drop(F.elu(torch.einsum("bgw,gwh->bgh", g, w1) + self.b1))
        return self.drop(F.elu(torch.einsum("bgh,ghd->bgd", h, self.w2) + self.b2))
