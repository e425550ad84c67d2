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
    "PPEG",
    "BidirectionalCrossAttention",
    "FastDropout",
    "FeedForward",
    "GatedAttentionPool",
    "GatedBilinearFusion",
    "GroupSNNTokenizer",
    "MLPHead",
    "MaskedMultiheadAttention",
    "MaskedTransformerLayer",
    "NystromAttention",
    "SNNBlock",
    "cosine_path_loss",
    "factored_cross_attention",
    "masked_mean",
    "masked_softmax",
    "moore_penrose_pinv",
    "omics_vector",
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


class FastDropout(nn.Module):
    """Inverted dropout with the same distribution as :class:`torch.nn.Dropout` (each element zeroed with
    probability ``p``, survivors scaled by 1/(1-p); identity in eval mode), drawing its mask with
    ``rand_like`` -- about twice as fast on CPU as ``bernoulli_`` for the large per-patch activations."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear (no residual, as the reference)."""

    def __init__(self, dim: int, mult: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            FastDropout(dropout),
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

    def folded_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` with ``to_qkv(norm(x)) == F.linear(layer_norm_without_affine(x), W, b)``.

        Lets several layers that read the same tokens share one normalisation and one matmul
        (:class:`~survpgc.models.survpgc.CrossAttentionSurvival` does this for the patch tokens)."""
        w = self.to_qkv.weight * self.norm.weight[None, :]
        return w, self.to_qkv.weight @ self.norm.bias

    def forward(
        self,
        m: torch.Tensor,
        m_mask: torch.Tensor,
        p: torch.Tensor,
        p_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        return self.attend(
            self.to_qkv(self.norm(m)), m_mask, self.to_qkv(self.norm(p)), p_mask, return_attention=return_attention
        )

    def attend(
        self,
        qkv_m: torch.Tensor,
        m_mask: torch.Tensor,
        qkv_p: torch.Tensor,
        p_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        """The attention itself, from already projected ``qkv`` (B, M, 3·inner) and (B, L, 3·inner)."""
        b, n_m, _ = qkv_m.shape
        n_p = qkv_p.shape[1]
        qm, km, vm = (self._split(t) for t in qkv_m.chunk(3, dim=-1))
        qp, kp, vp = (self._split(t) for t in qkv_p.chunk(3, dim=-1))
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
        return out_m, out_p, _attention_maps(a_mm, a_mp, a_pm) if return_attention else None


def _attention_maps(a_mm: torch.Tensor, a_mp: torch.Tensor, a_pm: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attention maps a cross-attention layer returns: head means, plus the per-head modality->patch
    weights as used in the forward pass ((B, h, M, L), in the graph: gradients of outputs w.r.t. it exist)."""
    return {"mod->mod": a_mm.mean(1), "mod->patch": a_mp.mean(1), "patch->mod": a_pm.mean(1), "mod->patch/heads": a_mp}


def factored_cross_attention(
    layers: list[BidirectionalCrossAttention],
    qkv_ms: list[torch.Tensor],
    m_masks: list[torch.Tensor],
    x_hat: torch.Tensor,
    p_mask: torch.Tensor,
    return_attention: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]]:
    """:meth:`BidirectionalCrossAttention.attend` for several layers that read the same patch tokens,
    without ever forming the patches' q, k, v.

    The patches enter as ``x_hat`` (B, L, D): LayerNorm-normalised *without* affine; each layer's affine
    and qkv weights are folded (:meth:`BidirectionalCrossAttention.folded_qkv`), so that its patch qkv would be
    ``x_hat @ w.T + b``. Every use of the patch qkv is a product with a handful (M) of modality vectors, so
    the products are re-associated around ``x_hat``:

    * modality->patch scores ``q_m k_p^T = (q_m W_k) x_hat^T + q_m b_k``;
    * patch->modality scores ``q_p k_m^T = x_hat (k_m W_q)^T + b_q k_m^T``;
    * modality outputs from patches ``a v_p = (a x_hat) W_v^T + (a 1) b_v``.

    All layers' score vectors are stacked so the big bag is read in one matmul for the scores and one for
    the weighted sums (and a few more in backward). Cost per layer drops from L·D·3·inner to about
    3·L·D·M multiply-adds (M = 4–6 tokens) and no L × 3·inner tensor is kept for backward. Results equal the
    direct computation up to float rounding (tested, values and gradients).

    Returns one ``(m_out, p_out, attn)`` per layer, as :meth:`BidirectionalCrossAttention.attend`.
    """
    bsz, n_p, d = x_hat.shape
    parts = []
    rows = []
    for layer, qkv_m in zip(layers, qkv_ms, strict=True):
        h, dh = layer.heads, layer.dim_head
        n_m = qkv_m.shape[1]
        qm, km, vm = (layer._split(t) for t in qkv_m.chunk(3, dim=-1))  # (B, h, M, dh)
        w, b = layer.folded_qkv()
        wq, wk, wv = (t.view(h, dh, d) for t in w.chunk(3, dim=0))  # (h, dh, D)
        bq, bk, bv = (t.view(h, dh) for t in b.chunk(3, dim=0))
        qm = qm * layer.scale
        a_q = torch.einsum("bhmd,hdD->bhmD", qm, wk).reshape(bsz, h * n_m, d)
        k_q = (torch.einsum("bhmd,hdD->bhmD", km, wq) * layer.scale).reshape(bsz, h * n_m, d)
        rows += [a_q, k_q]
        parts.append((layer, h, n_m, qm, km, vm, wv, bq, bk, bv))
    scores = x_hat @ torch.cat(rows, dim=1).transpose(1, 2)  # (B, L, R): one pass over the bag
    offset = 0
    stage = []
    for layer, h, n_m, qm, km, vm, wv, bq, bk, bv in parts:
        hm = h * n_m
        s_mp = scores[..., offset : offset + hm].view(bsz, n_p, h, n_m).permute(0, 2, 3, 1)  # (B, h, M, L)
        s_pm = scores[..., offset + hm : offset + 2 * hm].view(bsz, n_p, h, n_m).transpose(1, 2)  # (B, h, L, M)
        offset += 2 * hm
        m_mask = m_masks[len(stage)]
        s_mp = s_mp + torch.einsum("bhmd,hd->bhm", qm, bk)[..., None]
        s_pm = s_pm + (torch.einsum("hd,bhmd->bhm", bq, km) * layer.scale)[:, :, None]
        s_mm = qm @ km.transpose(-1, -2)  # (B, h, M, M)
        keys_mask = torch.cat([m_mask, p_mask], dim=1)[:, None, None, :]
        a_m = masked_softmax(torch.cat([s_mm, s_mp], dim=-1), keys_mask & m_mask[:, None, :, None])
        a_mm, a_mp = a_m[..., :n_m], a_m[..., n_m:]
        a_pm = masked_softmax(s_pm, m_mask[:, None, None, :] & p_mask[:, None, :, None])  # (B, h, L, M)
        stage.append((layer, h, n_m, vm, wv, bv, a_mm, a_mp, a_pm))
    weighted = torch.cat([st[7].reshape(bsz, st[1] * st[2], n_p) for st in stage], dim=1) @ x_hat  # (B, R', D)
    offset = 0
    results = []
    for layer, h, n_m, vm, wv, bv, a_mm, a_mp, a_pm in stage:
        ax = weighted[:, offset : offset + h * n_m].view(bsz, h, n_m, d)
        offset += h * n_m
        out_m = a_mm @ vm + torch.einsum("bhmD,hdD->bhmd", ax, wv) + a_mp.sum(-1, keepdim=True) * bv[None, :, None]
        out_p = a_pm @ vm  # (B, h, L, dh)
        out_m = out_m.transpose(1, 2).reshape(bsz, n_m, layer.inner)
        out_p = out_p.transpose(1, 2).reshape(bsz, n_p, layer.inner)
        results.append((out_m, out_p, _attention_maps(a_mm, a_mp, a_pm) if return_attention else None))
    return results


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


# ---------------------------------------------------------------------------------------------------------
# Layers of the MIL / multimodal baselines (TransMIL, PORPOISE, MCAT). Same conventions as above: boolean
# masks (True = real), padded positions never reach a real one, an empty bag never gives NaN.
# ---------------------------------------------------------------------------------------------------------


def omics_vector(
    x: torch.Tensor | None, mask: torch.Tensor | None, n_features: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-case omics vector of a one-token genomic bag (the output of ``get_bag(batch, "genomic")``).

    ``x`` (B, 1, n_features) with ``mask`` (B, 1) -> ``(vector (B, n_features), present (B,) bool)``; cases
    whose token is masked get a zero vector (their padded values are never read). A bag with no token at all
    (L = 0: no case of the batch has omics) gives zeros and all-False. More than one token per case, or a
    feature count other than ``n_features``, raises :class:`~survpgc.errors.InputError`.
    """
    from survpgc.errors import InputError

    if x is None or mask is None:
        raise InputError("omics_vector: the batch has no 'gen' (genomic) tensor")
    b, n_tok = x.shape[:2]
    if n_tok == 0:
        return x.new_zeros(b, n_features), torch.zeros(b, dtype=torch.bool, device=x.device)
    if n_tok != 1:
        raise InputError(
            f"this model reads the omics vector as one token per case (B, 1, n_features), got {n_tok} tokens "
            "per case; serve omics with OmicsVectorTokens"
        )
    if x.shape[-1] != n_features:
        raise InputError(f"omics vector has {x.shape[-1]} features but the model was built with gen_dim={n_features}")
    present = mask[:, 0]
    return torch.where(present[:, None], x[:, 0], torch.zeros_like(x[:, 0])), present


def moore_penrose_pinv(x: torch.Tensor, iters: int = 6) -> torch.Tensor:
    """Iterative Moore-Penrose pseudo-inverse of the square matrices ``x`` (..., m, m), as in the
    Nyströmformer (Xiong et al. 2021; the order-3 iteration of Razavi et al. 2014):

    ``Z_0 = xᵀ / (‖x‖_1 ‖x‖_∞)`` (per matrix), then ``Z <- ¼ Z (13 I - xZ (15 I - xZ (7 I - xZ)))``.

    Converges (order 3) to the inverse of a well-conditioned ``x``, and in exact arithmetic to the
    pseudo-inverse of a singular one; in floating point, rounding in a null space grows ~3x per iteration,
    so keep to a few iterations there. Six iterations (the Nyströmformer's default) do not converge for
    badly conditioned kernels (near-uniform softmax rows); that approximation is part of the method. The
    initial scale is taken per matrix (the reference takes one scale over the whole batch, which would couple
    the cases of a batch).
    """
    abs_x = x.abs()
    norm_1 = abs_x.sum(dim=-2).amax(dim=-1)  # max column sum
    norm_inf = abs_x.sum(dim=-1).amax(dim=-1)  # max row sum
    scale = (norm_1 * norm_inf).clamp(min=torch.finfo(x.dtype).tiny)
    z = x.transpose(-1, -2) / scale[..., None, None]
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    for _ in range(iters):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


class _PerCaseModule(nn.Module):
    """Base of layers computed on the real tokens of each case: ``_compute`` maps (1, n, d) -> (1, n, out_dim)
    over real tokens only; ``forward(x, mask)`` gathers them per case and scatters back (padded outputs 0).

    Every case is computed on its own real tokens, so its result does not depend on the batch it is in
    (padding, neighbours). A batch without padding runs as one call.
    """

    out_dim: int

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or bool(mask.all()):
            return self._compute(x)
        out = x.new_zeros(*x.shape[:2], self.out_dim)
        for i in range(x.shape[0]):
            idx = mask[i].nonzero().squeeze(1)
            if idx.numel():
                out[i, idx] = self._compute(x[i, idx].unsqueeze(0))[0]
        return out


class NystromAttention(_PerCaseModule):
    """Nyström self-attention (Xiong et al. 2021) over the real tokens of each case.

    With ``q`` scaled by ``dim_head^-1/2`` and ``m`` landmarks ``q̃, k̃`` (the means of ``m`` contiguous,
    near-equal segments of the real queries / keys)::

        out = softmax(q k̃ᵀ) · pinv(softmax(q̃ k̃ᵀ)) · softmax(q̃ kᵀ) v  +  DWConv_33(v)

    where ``pinv`` is :func:`moore_penrose_pinv` (``pinv_iters`` iterations) and ``DWConv_33`` the residual
    depthwise convolution of ``v`` along the sequence (one kernel per head, zero padding at the ends of the
    real sequence). A case with ``n <= landmarks`` real tokens uses exact softmax attention ``softmax(q kᵀ)
    v`` (+ the same residual convolution) instead: there the approximation would save nothing.

    Masking: each case is computed on its own real tokens (gathered by the mask), so padded tokens neither
    enter the landmarks, nor the keys, nor the convolution; their outputs are 0.

    Parameters
    ----------
    dim, heads, dim_head
        Token width and attention shape (TransMIL: 512, 8, 64).
    landmarks
        Number of landmarks (default ``dim // 2``, as TransMIL); never more than the real tokens of a case.
    pinv_iters
        Iterations of the pseudo-inverse (6).
    residual_kernel
        Kernel of the residual depthwise convolution on ``v`` (33; 0 disables it).
    dropout
        Dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int | None = None,
        landmarks: int | None = None,
        pinv_iters: int = 6,
        residual_kernel: int = 33,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head or dim // heads
        self.landmarks = landmarks or max(dim // 2, 1)
        self.pinv_iters = pinv_iters
        self.scale = self.dim_head**-0.5
        self.inner = heads * self.dim_head
        self.out_dim = dim
        self.to_qkv = nn.Linear(dim, 3 * self.inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(self.inner, dim), nn.Dropout(dropout))
        self.res_conv = (
            nn.Conv2d(heads, heads, (residual_kernel, 1), padding=(residual_kernel // 2, 0), groups=heads, bias=False)
            if residual_kernel
            else None
        )

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        """Attention over (b, n, dim) tokens that are all real."""
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, self.dim_head).transpose(1, 2) for t in self.to_qkv(x).chunk(3, -1))
        q = q * self.scale
        m = self.landmarks
        if n <= m:
            out = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        else:
            seg = torch.arange(n, device=x.device) * m // n  # segment of each token, m near-equal segments
            counts = torch.bincount(seg, minlength=m).to(q.dtype)[:, None]
            q_l = q.new_zeros(b, self.heads, m, self.dim_head).index_add(2, seg, q) / counts
            k_l = k.new_zeros(b, self.heads, m, self.dim_head).index_add(2, seg, k) / counts
            a1 = torch.softmax(q @ k_l.transpose(-1, -2), dim=-1)  # (b, h, n, m)
            a2 = torch.softmax(q_l @ k_l.transpose(-1, -2), dim=-1)  # (b, h, m, m)
            a3 = torch.softmax(q_l @ k.transpose(-1, -2), dim=-1)  # (b, h, m, n)
            out = (a1 @ moore_penrose_pinv(a2, self.pinv_iters)) @ (a3 @ v)
        if self.res_conv is not None:
            out = out + self.res_conv(v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.inner))


class PPEG(_PerCaseModule):
    """Pyramid position encoding generator of TransMIL (Shao et al. 2021).

    The real tokens of a case (n of them, in bag order) are laid row-major on a ``ceil(sqrt(n))`` square
    grid; the cells left over are filled by repeating the first tokens (TransMIL's "squaring"). The grid is
    mapped by ``g + DWConv_7(g) + DWConv_5(g) + DWConv_3(g)`` (depthwise, zero padding) and the cells of the
    n real tokens are read back. Unlike the reference, the repeated fill tokens serve only as convolution
    context and are dropped afterwards, so every patch counts once in the attention layers and the token
    count is unchanged. Input and output exclude the class token; padded positions output 0.
    """

    def __init__(self, dim: int, kernels: tuple[int, ...] = (7, 5, 3)) -> None:
        super().__init__()
        self.out_dim = dim
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in kernels)

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        if n == 0:
            return x
        side = math.isqrt(n - 1) + 1
        fill = torch.arange(side * side, device=x.device) % n
        g = x[:, fill].transpose(1, 2).reshape(b, d, side, side)
        g = g + sum(conv(g) for conv in self.convs)
        return g.reshape(b, d, side * side).transpose(1, 2)[:, :n]


class MaskedMultiheadAttention(nn.Module):
    """Multi-head scaled dot-product attention with a boolean key mask (q, k, v and output projections).

    ``forward(query (B, Nq, dim), key (B, Nk, dim), value (B, Nk, dim), key_mask (B, Nk))`` returns
    ``(out (B, Nq, dim), attn (B, heads, Nq, Nk))``; masked keys get exactly zero weight; a query with no
    valid key attends to nothing (its output is the output projection's bias), never NaN. ``dropout``
    drops attention weights in training (the returned map is before dropout).
    """

    def __init__(self, dim: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.dim_head = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._split(self.q(query)), self._split(self.k(key)), self._split(self.v(value))
        scores = (q * self.dim_head**-0.5) @ k.transpose(-1, -2)  # (B, h, Nq, Nk)
        if key_mask is None:
            attn = torch.softmax(scores, dim=-1)
        else:
            attn = masked_softmax(scores, key_mask[:, None, None, :])
        out = (self.drop(attn) @ v).transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.out(out), attn


class MaskedTransformerLayer(nn.Module):
    """Transformer encoder layer (self-attention + ReLU feed-forward), with a boolean padding mask.

    Post-norm by default, as ``torch.nn.TransformerEncoderLayer`` (``norm_first=True`` for pre-norm).
    Real tokens attend to real tokens only; padded positions get values that no real token reads. A case
    with no real token stays finite.
    """

    def __init__(
        self, dim: int, heads: int = 8, ff_dim: int = 512, dropout: float = 0.1, norm_first: bool = False
    ) -> None:
        super().__init__()
        self.attn = MaskedMultiheadAttention(dim, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop1(self.attn(h, h, h, mask)[0])
            return x + self.drop2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x, x, x, mask)[0]))
        return self.norm2(x + self.drop2(self.ff(x)))


class GatedBilinearFusion(nn.Module):
    """Gated bilinear (Kronecker) fusion of two vectors (Pathomic Fusion / PORPOISE-MMF).

    For each modality ``i`` (with ``c = [x1 ‖ x2]``)::

        h_i = ReLU(W_i x_i),  z_i = W_zi c,  o_i = Dropout(ReLU(W_oi (sigmoid(z_i) * h_i)))   (gate_dim wide)

    then ``o_i' = [o_i, 1]``, the flattened outer product ``o_1' ⊗ o_2'`` ((gate_dim+1)² features, holding
    the unimodal terms through the appended 1s and the bimodal ones) -> Dropout -> Linear -> ReLU -> Dropout
    (``hidden``); with ``skip`` the result is concatenated with ``o_1', o_2'`` and mapped by a second
    Linear -> ReLU -> Dropout (``hidden``). ``bilinear_gate=True`` computes ``z_i`` with ``nn.Bilinear(x1,
    x2)`` (the reference's default, ~dim1·dim2·gate_dim weights each) instead of a Linear on ``c``.
    Output (B, hidden).
    """

    def __init__(
        self,
        dim1: int,
        dim2: int,
        gate_dim: int = 32,
        hidden: int = 256,
        dropout: float = 0.25,
        skip: bool = True,
        bilinear_gate: bool = False,
    ) -> None:
        super().__init__()
        self.dims = (dim1, dim2)
        self.bilinear_gate = bilinear_gate
        self.h = nn.ModuleList([nn.Linear(dim1, gate_dim), nn.Linear(dim2, gate_dim)])
        if bilinear_gate:
            self.z = nn.ModuleList([nn.Bilinear(dim1, dim2, gate_dim), nn.Bilinear(dim1, dim2, gate_dim)])
        else:
            self.z = nn.ModuleList([nn.Linear(dim1 + dim2, gate_dim), nn.Linear(dim1 + dim2, gate_dim)])
        self.o = nn.ModuleList(
            nn.Sequential(nn.Linear(gate_dim, gate_dim), nn.ReLU(), nn.Dropout(dropout)) for _ in range(2)
        )
        self.post_drop = nn.Dropout(dropout)
        k = (gate_dim + 1) ** 2
        self.encoder1 = nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.skip = skip
        skip_dim = 2 * (gate_dim + 1) if skip else 0
        self.encoder2 = nn.Sequential(nn.Linear(hidden + skip_dim, hidden), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        c = torch.cat([x1, x2], dim=-1)
        outs = []
        for i, x in enumerate((x1, x2)):
            z = self.z[i](x1, x2) if self.bilinear_gate else self.z[i](c)
            o = self.o[i](torch.sigmoid(z) * F.relu(self.h[i](x)))
            outs.append(torch.cat([o, o.new_ones(o.shape[0], 1)], dim=-1))
        o1, o2 = outs
        kron = (o1[:, :, None] * o2[:, None, :]).flatten(1)
        out = self.encoder1(self.post_drop(kron))
        if self.skip:
            out = torch.cat([out, o1, o2], dim=-1)
        return self.encoder2(out)
