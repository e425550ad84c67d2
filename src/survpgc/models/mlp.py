"""Single-modality feed-forward baselines: ``mlp`` (ReLU MLP) and ``snn`` (self-normalising network).

Input, chosen with ``modality=``:

* ``"clinical"`` (default) -- the clinical token bag ``clin`` (B, n_c, clin_dim) flattened position by
  position to (B, n_c * clin_dim). Token ``i`` is clinical field ``i`` (the dataset keeps the field order),
  so the MLP sees which field a value belongs to. Missing tokens (mask False, including a case with no
  clinical record at all) enter as zeros; positions past ``n_clin_tokens`` must be padding.
* ``"genomic"`` -- the whole omics vector, carried as one token ``gen`` (B, 1, gen_dim)
  (:class:`~survpgc.data.tokens.OmicsVectorTokens`). A case without omics enters as a zero vector.

The registry lists both models with ``modalities=("clinical",)`` (what the default reads) and
``optional_modalities=("genomic",)`` (selectable with ``modality="genomic"``). An instance's own
``modalities`` attribute names what *that* instance reads, so a trainer should ask the instance.

This module also holds small helpers shared with the fusion baselines: :func:`token_slots` (fixed-position
token bags), :func:`single_token` (one-vector bags), :func:`zero_masked`, :func:`mlp_blocks`,
:func:`check_widths`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from survpgc.errors import ConfigError, InputError
from survpgc.models.base import ModelOutput, SurvivalModel, get_bag
from survpgc.models.layers import SNNBlock, omics_vector, snn_init
from survpgc.models.registry import register_model

__all__ = ["MLPSurvival", "SNNSurvival", "check_widths", "mlp_blocks", "single_token", "token_slots", "zero_masked"]

_INPUT_MODALITIES = ("clinical", "genomic")


def zero_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` (B, L, d) with every position where ``mask`` (B, L) is False set to 0 (junk, even inf, never leaks)."""
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def token_slots(batch: dict[str, Any], modality: str, n_tokens: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed-length token bag: ``(tokens (B, n_tokens, dim), mask (B, n_tokens))``.

    Masked tokens are set to zero. A bag shorter than ``n_tokens`` (e.g. L = 0 when no case of the batch
    has the modality) is padded with masked zeros; a longer one may only hold padding past ``n_tokens``.
    """
    x, mask = get_bag(batch, modality)
    b, length, d = x.shape
    if d != dim:
        raise InputError(f"{modality} tokens have dim {d}, the model was built for {dim}")
    x = zero_masked(x, mask)
    if length > n_tokens:
        if bool(mask[:, n_tokens:].any()):
            raise InputError(
                f"{modality} bag has real tokens past position {n_tokens}; the model was built for "
                f"{n_tokens} tokens per case (n_clin_tokens)"
            )
        x, mask = x[:, :n_tokens], mask[:, :n_tokens]
    elif length < n_tokens:
        x = torch.cat([x, x.new_zeros(b, n_tokens - length, d)], dim=1)
        mask = torch.cat([mask, mask.new_zeros(b, n_tokens - length)], dim=1)
    return x, mask


def single_token(batch: dict[str, Any], modality: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-vector-per-case bag (e.g. a low-dim clinical vector): ``(vector (B, dim), present (B,))``.

    (:func:`survpgc.models.layers.omics_vector` is the genomic special case, strict about one token.)

    The bag must be (B, 1, dim) (or longer with padding only); a case whose token is masked, or a batch
    where no case has the modality (L = 0), gives a zero vector and ``present`` False.
    """
    x, mask = get_bag(batch, modality)
    b, length, d = x.shape
    if d != dim:
        raise InputError(f"{modality} vector has {d} features, the model was built for {dim}")
    if length == 0:
        return x.new_zeros(b, dim), mask.new_zeros(b)
    if length > 1 and bool(mask[:, 1:].any()):
        raise InputError(
            f"{modality} bag has {length} real tokens per case; this model expects one vector per case "
            f"with shape (B, 1, {dim})"
        )
    present = mask[:, 0]
    return zero_masked(x[:, :1], mask[:, :1])[:, 0], present


def mlp_blocks(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout, once per width in ``hidden``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


def check_widths(hidden: Sequence[int], name: str = "hidden") -> tuple[int, ...]:
    widths = tuple(hidden)
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(f"`{name}` must be a non-empty sequence of positive ints, got {hidden!r}")
    return widths


class _VectorSurvival(SurvivalModel):
    """Shared input handling of :class:`MLPSurvival` and :class:`SNNSurvival`."""

    def __init__(self, modality: str, clin_dim: int, n_clin_tokens: int, gen_dim: int, n_bins: int) -> None:
        super().__init__(n_bins)
        if modality not in _INPUT_MODALITIES:
            raise ConfigError(f"`modality` must be one of {_INPUT_MODALITIES}, got {modality!r}")
        self.modality = modality
        # what this instance reads (the registry lists the default's requirement)
        self.modalities = (modality,)
        self.optional_modalities = ()
        self.clin_dim, self.n_clin_tokens, self.gen_dim = clin_dim, n_clin_tokens, gen_dim
        self.in_dim = n_clin_tokens * clin_dim if modality == "clinical" else gen_dim

    def _input(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.modality == "clinical":
            tokens, _ = token_slots(batch, "clinical", self.n_clin_tokens, self.clin_dim)
            return tokens.flatten(1)
        x, mask = get_bag(batch, "genomic")
        return omics_vector(x, mask, self.gen_dim)[0]

    def forward(self, batch: dict[str, Any], return_attention: bool = False) -> ModelOutput:
        h = self.encoder(self._input(batch))
        return ModelOutput(logits=self.head(h), fused={self.modality: h})


@register_model(
    "mlp",
    "MLP on the flattened clinical tokens (or the omics vector with modality='genomic')",
    ("clinical",),
    optional_modalities=("genomic",),
)
class MLPSurvival(_VectorSurvival):
    """ReLU MLP baseline: (Linear -> ReLU -> Dropout) per width in ``hidden`` -> Linear -> n_bins logits.

    Parameters
    ----------
    modality
        ``"clinical"`` (flattened clinical tokens, default) or ``"genomic"`` (the omics vector).
    clin_dim, n_clin_tokens
        Clinical token dim and number of tokens per case (input n_clin_tokens * clin_dim).
    gen_dim
        Length of the omics vector (default: the 2574 RNA features of the built-in TCGA-LIHC table).
    n_bins
        Number of discrete-time bins.
    hidden
        Hidden widths (default (256, 64)).
    dropout
        Dropout after every hidden layer.

    ``fused`` holds ``{modality: last hidden (B, hidden[-1])}``, the input of ``head``.
    """

    def __init__(
        self,
        *,
        modality: str = "clinical",
        clin_dim: int = 512,
        n_clin_tokens: int = 6,
        gen_dim: int = 2574,
        n_bins: int = 4,
        hidden: Sequence[int] = (256, 64),
        dropout: float = 0.25,
    ) -> None:
        super().__init__(modality, clin_dim, n_clin_tokens, gen_dim, n_bins)
        widths = check_widths(hidden)
        self.encoder = mlp_blocks(self.in_dim, widths, dropout)
        self.head = nn.Linear(widths[-1], n_bins)


@register_model(
    "snn",
    "Self-normalising network on the flattened clinical tokens (or the omics vector with modality='genomic')",
    ("clinical",),
    optional_modalities=("genomic",),
)
class SNNSurvival(_VectorSurvival):
    """SNN baseline (Klambauer et al.; the omics arm of MCAT/Porpoise): SNNBlock (Linear -> ELU ->
    AlphaDropout) per width in ``hidden`` -> Linear -> n_bins logits, all Linear layers with
    :func:`~survpgc.models.layers.snn_init`.

    Parameters are those of :class:`MLPSurvival`; ``hidden`` defaults to (256, 256).
    ``fused`` holds ``{modality: last hidden (B, hidden[-1])}``.
    """

    def __init__(
        self,
        *,
        modality: str = "clinical",
        clin_dim: int = 512,
        n_clin_tokens: int = 6,
        gen_dim: int = 2574,
        n_bins: int = 4,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.25,
    ) -> None:
        super().__init__(modality, clin_dim, n_clin_tokens, gen_dim, n_bins)
        widths = check_widths(hidden)
        dims = (self.in_dim, *widths)
        self.encoder = nn.Sequential(*(SNNBlock(a, b, dropout) for a, b in itertools.pairwise(dims)))
        self.head = nn.Linear(widths[-1], n_bins)
        snn_init(self)
