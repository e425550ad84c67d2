"""Genomic token sources for the Dataset: ``pathways``, ``families`` and ``flat`` omics vectors.

The per-group models (SurvPath: one SNN per pathway; MCAT / PORPOISE: one SNN per gene family) read one
flat omics vector per case plus ``groups`` -- lists of positions into that vector -- and build the tokens
inside the model (:class:`~survpgc.models.layers.GroupSNNTokenizer`). So every tokenizer here serves the
flat vector as **one token** (1 x n_features); :class:`GroupedOmicsTokens` also carries ``groups``
(aligned with its column order) and ``group_names`` to pass on::

    src = omics_tokens(cohort.omics, "pathways", train_ids=fold.train)   # scaler fitted on train rows only
    model = create_model("survpath", groups=src.groups, ...)
    ds = SurvivalDataset(cohort, genomic=src, ...)

``families`` defaults to all three data types (rnaseq, cnv, mut) as MCAT / PORPOISE used them;
``pathways`` to rnaseq (SurvPath used transcriptomics); ``flat`` to every omics column. Cases without an
omics row, and rows with no value at all in the selected columns, are served as None (the Dataset marks
the modality missing): a patient is never dropped for lacking omics. scFoundation embeddings are imported
by :func:`survpgc.genomics.scfoundation.load_scfoundation`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.data.tokens import OmicsVectorTokens
from survpgc.errors import InputError
from survpgc.genomics.normalize import OmicsScaler
from survpgc.genomics.signatures import DATA_TYPES, GeneSelection, _check_data_types, _split_column, select_genes

__all__ = ["OMICS_TOKENIZERS", "GroupedOmicsTokens", "omics_tokens"]

log = logging.getLogger(__name__)

#: Tokenizer kinds of :func:`omics_tokens` (``scfoundation`` is imported with ``load_scfoundation``).
OMICS_TOKENIZERS: tuple[str, ...] = ("pathways", "families", "flat")

_DEFAULTS: dict[str, tuple[str | None, tuple[str, ...] | None]] = {
    "pathways": ("combine", ("rnaseq",)),
    "families": ("families", DATA_TYPES),
    "flat": (None, None),
}


class GroupedOmicsTokens(OmicsVectorTokens):
    """A case's omics vector as one token, plus the gene groups (pathways / families) indexing into it.

    Parameters
    ----------
    omics
        DataFrame indexed by case_id (values already normalised), or None.
    groups
        Group name -> its column names (each present in ``omics``), in token order.
    columns
        The flat vector's columns, in order (default: the union of the groups in ``omics`` column order).

    Attributes ``groups`` (list of lists of positions into ``columns``), ``group_names`` and
    ``group_columns`` (name -> column names). ``groups[g]`` of a served vector equals ``omics`` restricted
    to ``group_columns[group_names[g]]``.
    """

    def __init__(
        self, omics: pd.DataFrame | None, groups: Mapping[str, Sequence[str]], columns: Sequence[str] | None = None
    ) -> None:
        if not groups:
            raise InputError("GroupedOmicsTokens: `groups` is empty")
        empty = [k for k, v in groups.items() if len(v) == 0]
        if empty:
            raise InputError(f"GroupedOmicsTokens: group(s) without columns {empty[:5]}")
        wanted = {str(c) for v in groups.values() for c in v}
        if columns is None:
            if omics is None:
                raise InputError("GroupedOmicsTokens: give `columns` when `omics` is None")
            columns = [str(c) for c in omics.columns if str(c) in wanted]
        super().__init__(omics, list(columns))
        pos = {c: i for i, c in enumerate(self.columns)}
        absent = sorted(wanted - set(pos))
        if absent:
            raise InputError(f"GroupedOmicsTokens: group column(s) not in the vector's columns {absent[:5]}")
        self.group_names: list[str] = [str(k) for k in groups]
        self.group_columns: dict[str, list[str]] = {str(k): [str(c) for c in v] for k, v in groups.items()}
        self.groups: list[list[int]] = [[pos[str(c)] for c in v] for v in groups.values()]

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def __repr__(self) -> str:
        return f"GroupedOmicsTokens(dim={self.dim}, n_groups={self.n_groups}, n_cases={len(self._index)})"


def _cases_of(omics: Any) -> pd.DataFrame | None:
    """A Cohort or a DataFrame -> the omics DataFrame (None when the cohort has none)."""
    if omics is None or isinstance(omics, pd.DataFrame):
        return omics
    if hasattr(omics, "omics") and hasattr(omics, "cases"):
        return omics.omics
    raise InputError(f"expected a Cohort or an omics DataFrame, got {type(omics).__name__}")


def omics_tokens(
    omics: Any,
    kind: str = "pathways",
    *,
    train_ids: Iterable[str] | None = None,
    signatures: str | Path | Mapping[str, Sequence[str]] | None = None,
    data_types: str | Sequence[str] | None = None,
    min_coverage: float = 0.0,
    min_genes: int = 1,
    scaler: OmicsScaler | str | None = "zscore",
    log_transform: bool = False,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> OmicsVectorTokens:
    """Build a genomic :class:`~survpgc.data.tokens.TokenSource` for one fold.

    Parameters
    ----------
    omics
        ``Cohort`` or its ``omics`` DataFrame (raw or prepared by ``prepare_omics``).
    kind
        ``pathways`` (SurvPath), ``families`` (MCAT / PORPOISE) -> :class:`GroupedOmicsTokens`; ``flat``
        (SNN / MLP) -> :class:`~survpgc.data.tokens.OmicsVectorTokens`.
    train_ids
        The training cases of the fold: the scaler is fitted on their omics rows only (train ids without
        an omics row are skipped). Required unless ``scaler`` is None or an already fitted scaler.
    signatures, data_types, min_coverage, min_genes
        Gene selection (:func:`~survpgc.genomics.signatures.select_genes`); defaults per kind (module
        docstring). For ``flat`` without ``signatures``, every column of ``data_types`` (default: all).
    scaler
        ``"zscore"`` / ``"minmax"`` (a new :class:`OmicsScaler` fitted on ``train_ids``), an
        :class:`OmicsScaler` (fitted on ``train_ids`` unless already fitted), or None (values as given).
    log_transform
        ``log1p`` before scaling (raw counts / TPM), when ``scaler`` is a method name.
    groups
        Precomputed groups (e.g. ``groups.json`` of ``prepare_omics``) instead of selecting genes.

    The result carries ``.selection`` (the :class:`GeneSelection`, or None) and ``.scaler`` (fitted, or None).
    """
    if kind not in OMICS_TOKENIZERS:
        raise InputError(f"omics tokenizer `kind` must be one of {list(OMICS_TOKENIZERS)}, got {kind!r}")
    df = _cases_of(omics)
    if df is None:
        raise InputError("the cohort has no omics table: genomic tokens cannot be built")
    grp, columns, selection = _select_columns(df, kind, groups, signatures, data_types, min_coverage, min_genes)
    sub = _without_empty_rows(df[columns])
    sub, fitted = _scale(df, sub, columns, scaler, log_transform, train_ids)
    src: OmicsVectorTokens = GroupedOmicsTokens(sub, grp, columns) if grp is not None else OmicsVectorTokens(sub)
    src.selection = selection  # type: ignore[attr-defined]
    src.scaler = fitted  # type: ignore[attr-defined]
    return src


def _select_columns(
    df: pd.DataFrame,
    kind: str,
    groups: Mapping[str, Sequence[str]] | None,
    signatures: str | Path | Mapping[str, Sequence[str]] | None,
    data_types: str | Sequence[str] | None,
    min_coverage: float,
    min_genes: int,
) -> tuple[dict[str, list[str]] | None, list[str], GeneSelection | None]:
    """``(groups or None for flat, the vector's columns, the gene selection or None)`` of one tokenizer kind."""
    default_sig, default_types = _DEFAULTS[kind]
    if groups is not None:
        if kind == "flat":
            raise InputError("`groups` applies to the 'pathways' / 'families' tokenizers, not 'flat'")
        grp = {str(k): [str(c) for c in v] for k, v in groups.items()}
        wanted = {c for v in grp.values() for c in v}
        absent = sorted(wanted - {str(c) for c in df.columns})
        if absent:
            raise InputError(f"group column(s) absent from the omics table {absent[:5]}")
        return grp, [str(c) for c in df.columns if str(c) in wanted], None
    if kind == "flat" and signatures is None:
        if data_types is None:
            return None, [str(c) for c in df.columns], None
        dts = _check_data_types(data_types)
        columns = [str(c) for c in df.columns if _split_column(str(c))[1] in dts]
        if not columns:
            raise InputError(f"the omics table has no column of data type(s) {list(dts)}")
        return None, columns, None
    selection = select_genes(
        df.columns,
        signatures if signatures is not None else (default_sig or "combine"),
        data_types if data_types is not None else (default_types or ("rnaseq",)),
        min_coverage=min_coverage,
        min_genes=min_genes,
    )
    return (None if kind == "flat" else selection.groups), selection.columns, selection


def _without_empty_rows(sub: pd.DataFrame) -> pd.DataFrame:
    """Rows with at least one value in the selected columns (the others: genomic modality missing)."""
    empty_rows = sub.isna().all(axis=1)
    if empty_rows.any():
        log.info(
            "%d case(s) have no value in the %d selected omics columns (e.g. %s): genomic modality marked missing",
            int(empty_rows.sum()),
            sub.shape[1],
            sub.index[empty_rows][:3].tolist(),
        )
        sub = sub.loc[~empty_rows.to_numpy()]
    return sub


def _scale(
    df: pd.DataFrame,
    sub: pd.DataFrame,
    columns: list[str],
    scaler: OmicsScaler | str | None,
    log_transform: bool,
    train_ids: Iterable[str] | None,
) -> tuple[pd.DataFrame, OmicsScaler | None]:
    """``(values served, fitted scaler or None)``: the scaler is fitted on the training cases' rows only
    (unless already fitted) and applied to every kept row; None serves the values as float32."""
    if scaler is None:
        return sub.astype(np.float32), None
    fitted = OmicsScaler(method=scaler, log=log_transform) if isinstance(scaler, str) else scaler
    if not isinstance(fitted, OmicsScaler):
        raise InputError(f"`scaler` must be 'zscore', 'minmax', an OmicsScaler or None, got {scaler!r}")
    if fitted.is_fitted:
        known = set(fitted.columns_ or [])
        lacking = [c for c in columns if c not in known]
        if lacking:
            raise InputError(
                f"the fitted scaler has no statistics for {len(lacking)} selected column(s) (e.g. {lacking[:3]}); "
                "fit it on the same columns"
            )
    else:
        if train_ids is None:
            raise InputError(
                "pass `train_ids` (the training cases of the fold): the omics scaler is fitted on them only"
            )
        ids = [str(i) for i in train_ids]
        rows = sub.index.intersection(pd.Index(ids))
        if len(rows) == 0:
            raise InputError("none of the `train_ids` has an omics row: cannot fit the omics scaler")
        fitted.fit(sub.loc[rows])
    return fitted.transform(df.loc[sub.index])[columns], fitted
