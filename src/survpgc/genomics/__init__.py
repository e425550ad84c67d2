"""Genomics: gene selection by pathway signatures, fold-safe normalisation, genomic token sources.

* :mod:`~survpgc.genomics.signatures` -- shipped signature sets (``combine`` 331 pathways, ``hallmarks``
  50, ``families`` 6), :func:`select_genes` with a per-pathway coverage report;
* :mod:`~survpgc.genomics.normalize` -- :class:`OmicsScaler` (z-score / min-max to [-1, 1], log1p,
  training-median imputation), fitted on the training cases of a fold only;
* :mod:`~survpgc.genomics.tokens` -- :func:`omics_tokens` (``pathways``, ``families``, ``flat``) and
  :class:`GroupedOmicsTokens` (flat vector + ``groups`` for per-pathway SNNs);
* :mod:`~survpgc.genomics.scfoundation` -- :func:`load_scfoundation` (scFoundation embeddings, 4 x 768);
* :mod:`~survpgc.genomics.prepare` -- :func:`prepare_omics` (``survpgc prepare-omics``).

Names are imported lazily on first access, so ``import survpgc.genomics`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DATA_TYPES": "signatures",
    "SIGNATURE_SETS": "signatures",
    "GeneSelection": "signatures",
    "feature_map": "signatures",
    "load_signatures": "signatures",
    "select_genes": "signatures",
    "SCALER_METHODS": "normalize",
    "OmicsScaler": "normalize",
    "OMICS_TOKENIZERS": "tokens",
    "GroupedOmicsTokens": "tokens",
    "omics_tokens": "tokens",
    "ScFoundationTokens": "scfoundation",
    "load_scfoundation": "scfoundation",
    "read_scfoundation": "scfoundation",
    "PREPARED_FILES": "prepare",
    "PreparedOmics": "prepare",
    "prepare_omics": "prepare",
    "read_prepared_omics": "prepare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'survpgc.genomics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"survpgc.genomics.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
