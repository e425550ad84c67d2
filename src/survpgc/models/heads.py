"""The hazard head(s) of a discrete-time survival model: the final layer(s) that write the ``n_bins`` logits.

Used to start training from the training cases' constant hazards (``train.init_hazard_bias``): with the head's
bias set to those logits, a model whose head weights are zero predicts exactly the Kaplan-Meier-like baseline,
and training only has to learn how cases differ from it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from survpgc.errors import ConfigError, InputError

__all__ = ["hazard_heads", "set_hazard_bias"]


def hazard_heads(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """``[(name, layer), ...]``: the final hazard layer(s) of ``model``, in ``named_modules`` order.

    A hazard layer is an ``nn.Linear`` with a bias and ``out_features == model.n_bins``. Inside each top-level
    submodule whose name ends in ``head`` (``head``, ``path_head``, ``clin_head``, ...) the last such layer is
    that head's output; a model with several heads (late fusion: a convex mix of a pathology and a clinical
    head) has one per head. A model without a ``*head`` submodule must hold exactly one such layer.

    Raises :class:`~survpgc.errors.ConfigError` naming the model when it has no ``n_bins`` attribute, no
    such layer, or several outside ``*head`` submodules (which one writes the logits is then unknown).
    """
    name = type(model).__name__
    n_bins = getattr(model, "n_bins", None)
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(
            f"model {name} has no integer `n_bins`, so its hazard layer is unknown; train.init_hazard_bias needs "
            "a discrete-time survival model (set train.init_hazard_bias: false)"
        )
    found = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == n_bins and m.bias is not None
    ]
    by_head: dict[str, tuple[str, nn.Linear]] = {}
    for n, m in found:
        top = n.split(".", 1)[0]
        if top.endswith("head"):
            by_head[top] = (n, m)  # the last one inside that head
    if by_head:
        return list(by_head.values())
    if len(found) == 1:
        return found
    if not found:
        raise ConfigError(
            f"model {name} has no nn.Linear layer with a bias and {n_bins} outputs (n_bins), so train.init_hazard_bias "
            "cannot set its baseline hazards; set train.init_hazard_bias: false"
        )
    raise ConfigError(
        f"model {name} has {len(found)} nn.Linear layers with {n_bins} outputs ({', '.join(n for n, _ in found)}) "
        "and none inside a submodule named '*head', so which one writes the hazard logits is unknown; name the "
        "output layer's module '...head' or set train.init_hazard_bias: false"
    )


@torch.no_grad()
def set_hazard_bias(model: nn.Module, logits: Any) -> list[str]:
    """Set the bias of every hazard head of ``model`` (:func:`hazard_heads`) to ``logits`` (shape (n_bins,));
    returns the names of the layers set. Weights are left as initialised."""
    heads = hazard_heads(model)
    n_bins = model.n_bins
    values = torch.as_tensor(logits, dtype=torch.float64).reshape(-1)
    if values.shape[0] != n_bins:
        raise InputError(f"hazard bias: got {values.shape[0]} logits for a model with n_bins={n_bins}")
    if not torch.isfinite(values).all():
        raise InputError(f"hazard bias: logits must be finite, got {values.tolist()}")
    for _, layer in heads:
        layer.bias.copy_(values.to(device=layer.bias.device, dtype=layer.bias.dtype))
    return [n for n, _ in heads]
