"""Which parameters of a model can receive a gradient, for the "every parameter learns" contract tests.

One kind of parameter never can: a bias that adds the same constant to every attention score of a query
before a softmax -- the score layer ``w`` of gated attention pooling, and the key projection's bias of
softmax attention (q·(k_j + b) = q·k_j + q·b for every key j). The softmax removes any constant shared by
all scores, so the gradient of such a bias is exactly zero. In float32 round-off makes it look non-zero on
some CPUs and exactly zero on others; the contract tests therefore run in float64 and name these biases
explicitly instead of relying on round-off.
"""

from __future__ import annotations

import torch

#: A gradient this small (float64, summed over batches) counts as none.
DEAD = 1e-12


def shift_invariant_biases(model: torch.nn.Module) -> set[str]:
    """Names of the biases that a softmax makes gradient-free (see the module docstring)."""
    from survpgc.models.layers import GatedAttentionPool, MaskedMultiheadAttention

    found = set()
    for name, mod in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(mod, GatedAttentionPool) and mod.w.bias is not None:
            found.add(f"{prefix}w.bias")
        if isinstance(mod, MaskedMultiheadAttention) and mod.k.bias is not None:
            found.add(f"{prefix}k.bias")
    return found


def check_gradients(model: torch.nn.Module, grads: dict[str, torch.Tensor], label: str = "") -> None:
    """Every parameter has a gradient, except exactly the shift-invariant biases, whose gradient is zero."""
    dead = {n for n, g in grads.items() if g is None or float(g.abs().max()) <= DEAD}
    invariant = shift_invariant_biases(model)
    assert dead == invariant, f"{label}: parameters without gradient {sorted(dead - invariant)}"
    for n, g in grads.items():
        assert g is None or torch.isfinite(g).all(), f"{label}: non-finite gradient in {n}"
