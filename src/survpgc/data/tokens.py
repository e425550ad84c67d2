"""Per-case token sources of the clinical and genomic modalities.

:class:`TokenSource` is the small interface the dataset reads (``dim``, ``n_tokens``, ``get(case_id)``);
:class:`InMemoryTokens` serves precomputed arrays and :class:`OmicsVectorTokens` one case's omics row as a
single token (SNN/MLP baselines). Text-encoded clinical tokens and the genomic tokenizers implement the same
interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from survpgc.errors import DataError, InputError

__all__ = ["InMemoryTokens", "OmicsVectorTokens", "TokenSource"]


class TokenSource(ABC):
    """Per-case tokens of one modality (clinical or genomic).

    Implementations set ``dim`` (token width, fixed) and ``n_tokens`` (tokens per case, or None when it
    varies) and implement :meth:`get`. A source must be picklable (DataLoader workers copy it) and must
    never fit anything on the data it serves: any fitted state (scalers, vocabularies, text encoders) is
    fitted on the training cases before the source is built.
    """

    dim: int
    n_tokens: int | None

    @abstractmethod
    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(tokens float32 (n_tokens, dim), mask bool (n_tokens,), True = real token)``, or None when the
        case lacks this modality."""

    def __contains__(self, case_id: object) -> bool:
        return self.get(str(case_id)) is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, n_tokens={self.n_tokens})"


class InMemoryTokens(TokenSource):
    """Tokens held in memory: ``mapping`` case_id -> array (n_tokens, dim); a 1-D array is one token.

    Parameters
    ----------
    mapping
        Per-case token matrices (numpy arrays or tensors); all must share ``dim`` and be finite.
    masks
        Optional per-case bool masks (n_tokens,), True = real token; missing entries mean all real.
    dim
        Token width; required only when ``mapping`` is empty.
    """

    def __init__(
        self,
        mapping: Mapping[str, Any],
        masks: Mapping[str, Any] | None = None,
        *,
        dim: int | None = None,
    ) -> None:
        masks = dict(masks or {})
        unknown = set(masks) - set(mapping)
        if unknown:
            raise InputError(f"InMemoryTokens: masks for case(s) without tokens {sorted(unknown)[:5]}")
        self._tokens: dict[str, torch.Tensor] = {}
        self._masks: dict[str, torch.Tensor] = {}
        counts: set[int] = set()
        for cid, arr in mapping.items():
            t = torch.as_tensor(np.asarray(arr.detach().cpu() if isinstance(arr, torch.Tensor) else arr))
            if t.ndim == 1:
                t = t[None, :]
            if t.ndim != 2:
                raise InputError(f"InMemoryTokens: case {cid!r} tokens must be 1-D or 2-D, got shape {tuple(t.shape)}")
            if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64, torch.bool)):
                raise InputError(f"InMemoryTokens: case {cid!r} tokens must be numeric, got {t.dtype}")
            t = t.to(torch.float32)
            if dim is None:
                dim = int(t.shape[1])
            if t.shape[1] != dim:
                raise InputError(f"InMemoryTokens: case {cid!r} has token dim {t.shape[1]}, others have {dim}")
            if not torch.isfinite(t).all():
                raise InputError(f"InMemoryTokens: case {cid!r} has NaN/inf tokens")
            if cid in masks:
                m = torch.as_tensor(np.asarray(masks[cid]))
                if m.dtype != torch.bool or m.shape != (t.shape[0],):
                    raise InputError(
                        f"InMemoryTokens: mask of case {cid!r} must be bool of shape ({t.shape[0]},), "
                        f"got {m.dtype} {tuple(m.shape)}"
                    )
            else:
                m = torch.ones(t.shape[0], dtype=torch.bool)
            self._tokens[str(cid)] = t.contiguous()
            self._masks[str(cid)] = m
            counts.add(int(t.shape[0]))
        if dim is None:
            raise InputError("InMemoryTokens: `dim` is required when the mapping is empty")
        self.dim = int(dim)
        self.n_tokens = counts.pop() if len(counts) == 1 else None

    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        t = self._tokens.get(str(case_id))
        if t is None:
            return None
        return t.clone(), self._masks[str(case_id)].clone()

    def __contains__(self, case_id: object) -> bool:
        return str(case_id) in self._tokens

    def __len__(self) -> int:
        return len(self._tokens)


class OmicsVectorTokens(TokenSource):
    """One case's omics row as a single token (1 x n_features), for SNN/MLP-style baselines.

    Values are served as given: standardise them beforehand with statistics of the training cases only.
    Cases without an omics row (or all cases when ``omics`` is None) get None, i.e. a missing modality.

    Parameters
    ----------
    omics
        DataFrame indexed by case_id with numeric columns (``Cohort.omics``), or None.
    columns
        Columns to use, in this order (default: all).
    """

    n_tokens = 1

    def __init__(self, omics: Any | None, columns: Sequence[str] | None = None) -> None:
        if omics is None:
            self.columns: list[str] = list(columns or [])
            self._index: dict[str, int] = {}
            self._values = np.zeros((0, len(self.columns)), np.float32)
        else:
            cols = list(omics.columns) if columns is None else list(columns)
            missing = [c for c in cols if c not in omics.columns]
            if missing:
                raise InputError(f"OmicsVectorTokens: unknown omics column(s) {missing[:5]}")
            try:
                values = omics[cols].to_numpy(dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InputError(f"OmicsVectorTokens: omics columns must be numeric: {exc}") from exc
            if not np.isfinite(values).all():
                raise DataError("OmicsVectorTokens: omics table contains NaN/inf values")
            self.columns = cols
            self._index = {str(c): i for i, c in enumerate(omics.index)}
            self._values = np.ascontiguousarray(values)
        self.dim = len(self.columns)

    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        i = self._index.get(str(case_id))
        if i is None:
            return None
        return torch.from_numpy(self._values[i : i + 1].copy()), torch.ones(1, dtype=torch.bool)

    def __contains__(self, case_id: object) -> bool:
        return str(case_id) in self._index
