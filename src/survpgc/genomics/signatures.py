"""Pathway / gene-family signatures and gene selection with a per-pathway coverage report.

Signature sets shipped with survpgc (``survpgc/resources/pathways/``):

* ``combine`` -- 331 pathways (Reactome + MSigDB Hallmarks, as in SurvPath), 4999 distinct genes;
* ``hallmarks`` -- the 50 MSigDB Hallmark pathways;
* ``families`` -- the 6 gene families of MCAT / PORPOISE (tumour suppressors, oncogenes, protein kinases,
  cell differentiation markers, transcription factors, cytokines and growth factors).

A signature file is a CSV with one column per pathway and gene symbols down the column (ragged, empty
cells); a user file in that layout, or an MSigDB ``.gmt`` file, can be passed by path instead of a name.

**Which omics columns belong to a gene.** A column ``<GENE>_<type>`` with ``type`` one of
:data:`DATA_TYPES` (``rnaseq``, ``cnv``, ``mut``) is gene ``GENE`` of that data type. A column without one
of those suffixes is read as a plain gene symbol and counted as ``rnaseq`` (an expression matrix with genes
as columns); a table holding both ``TP53`` and ``TP53_rnaseq`` is ambiguous and raises
:class:`~survpgc.errors.DataError`. Symbols are matched case-insensitively (HGNC symbols are unique
regardless of case, and tables differ in ``C1orf61`` vs ``C1ORF61``).

**Which pathways are kept.** A pathway is kept when at least ``min_genes`` of its genes (default 1) are
measured in one of the selected data types *and* its coverage (measured genes / listed genes) is at least
``min_coverage`` (default 0.0). These defaults never change the number of tokens of the reference
architectures for a reason other than "nothing measured" (with 0.1, one of the 6 MCAT families would go on
TCGA-LIHC); raise ``min_coverage`` (e.g. 0.1) to drop pathways that are mostly unmeasured. Every dropped
pathway is listed in the coverage report with the reason. The overall numbers (how many of the signature
genes are measured at all) are logged at INFO level and written by
:func:`survpgc.genomics.prepare.prepare_omics`: on the built-in TCGA-LIHC table only 768 of the 4999
``combine`` genes are measured in rnaseq.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from survpgc.errors import DataError, InputError

__all__ = [
    "DATA_TYPES",
    "SIGNATURE_SETS",
    "GeneSelection",
    "feature_map",
    "load_signatures",
    "select_genes",
]

log = logging.getLogger(__name__)

#: Signature sets shipped with the package: name -> file in ``survpgc/resources/pathways``.
SIGNATURE_SETS: dict[str, str] = {
    "combine": "combine_signatures.csv",
    "hallmarks": "hallmarks_signatures.csv",
    "families": "gene_families.csv",
}

#: Data types recognised from the column suffix ``<GENE>_<type>``.
DATA_TYPES: tuple[str, ...] = ("rnaseq", "cnv", "mut")

#: Data type given to plain gene-symbol columns (no recognised suffix).
PLAIN_DATA_TYPE = "rnaseq"


# ----------------------------------------------------------------------------------------- loading
def _resource_text(filename: str) -> str:
    return (resources.files("survpgc") / "resources" / "pathways" / filename).read_text(encoding="utf-8")


def _dedupe(genes: Iterable[str]) -> list[str]:
    """Strip, drop empty cells and repeated symbols (case-insensitive), keep file order."""
    seen: set[str] = set()
    out: list[str] = []
    for g in genes:
        s = str(g).strip()
        if not s or s.upper() in seen:
            continue
        seen.add(s.upper())
        out.append(s)
    return out


def _from_csv_text(text: str, src: str) -> dict[str, list[str]]:
    import io

    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{src}: cannot be read as a signature CSV (one column per pathway): {exc}") from exc
    return _from_frame(df, src)


def _from_frame(df: pd.DataFrame, src: str) -> dict[str, list[str]]:
    """Pathway -> genes of a signature table (one column per pathway, gene symbols down the column)."""
    names = [str(c).strip() for c in df.columns]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{src}: duplicate pathway column(s) {dup[:5]}")
    return {str(c).strip(): _dedupe(df[c].tolist()) for c in df.columns}


def _from_gmt_text(text: str, src: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            raise DataError(f"{src}: line {lineno} is not GMT (name<TAB>description<TAB>gene...)")
        name = parts[0].strip()
        if name in out:
            raise DataError(f"{src}: pathway {name!r} listed twice (line {lineno})")
        out[name] = _dedupe(parts[2:])
    return out


def load_signatures(signatures: str | Path | Mapping[str, Sequence[str]] = "combine") -> dict[str, list[str]]:
    """Pathway -> gene symbols (file order, duplicates and empty cells removed), in pathway file order.

    ``signatures`` is a shipped set name (:data:`SIGNATURE_SETS`: ``combine``, ``hallmarks``,
    ``families``), the path of a CSV in the same layout or of an MSigDB ``.gmt`` file, or an already built
    mapping (validated and copied). Pathways listing no gene at all are an error.
    """
    if isinstance(signatures, Mapping):
        sig = {str(k): _dedupe(v if not isinstance(v, str) else [v]) for k, v in signatures.items()}
        src = "signatures mapping"
    else:
        key = str(signatures)
        if key.lower() in SIGNATURE_SETS:
            src = f"built-in signature set {key.lower()!r}"
            sig = _from_csv_text(_resource_text(SIGNATURE_SETS[key.lower()]), src)
        else:
            p = Path(key)
            if not p.is_file():
                raise InputError(
                    f"unknown signature set {key!r}: give one of {sorted(SIGNATURE_SETS)} or the path of a CSV "
                    "(one column per pathway, gene symbols down the column) or a .gmt file"
                )
            src = str(p)
            if p.suffix.lower() == ".gmt":
                sig = _from_gmt_text(p.read_text(encoding="utf-8"), src)
            else:
                from survpgc.data.cohort import read_table

                sig = _from_frame(read_table(p, dtype=str, keep_default_na=False), src)
    if not sig:
        raise DataError(f"{src}: no pathways")
    empty = [k for k, v in sig.items() if not v]
    if empty:
        raise DataError(f"{src}: pathway(s) without any gene {empty[:5]}")
    return sig


# ----------------------------------------------------------------------------------------- columns
def _split_column(col: str) -> tuple[str, str]:
    """``'TP53_cnv'`` -> ``('TP53', 'cnv')``; a plain symbol -> ``(symbol, PLAIN_DATA_TYPE)``."""
    stem, sep, suffix = col.rpartition("_")
    if sep and stem and suffix.lower() in DATA_TYPES:
        return stem, suffix.lower()
    return col, PLAIN_DATA_TYPE


def feature_map(columns: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Gene symbol (upper case) -> {data type -> column name} for the columns of an omics table.

    See the module docstring for the naming rule; two columns mapping to the same gene and data type
    (e.g. ``TP53`` and ``TP53_rnaseq``, or ``TP53_rnaseq`` and ``tp53_rnaseq``) raise
    :class:`~survpgc.errors.DataError`.
    """
    out: dict[str, dict[str, str]] = {}
    for c in columns:
        col = str(c)
        gene, dtype = _split_column(col)
        slot = out.setdefault(gene.upper(), {})
        if dtype in slot:
            raise DataError(
                f"omics columns {slot[dtype]!r} and {col!r} both map to gene {gene!r}, data type {dtype!r}; "
                "rename one (columns are '<GENE>_<rnaseq|cnv|mut>', plain symbols count as rnaseq)"
            )
        slot[dtype] = col
    return out


def _check_data_types(data_types: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(data_types, str):
        data_types = [t for t in data_types.replace(" ", "").split(",") if t]
    dts = tuple(dict.fromkeys(str(t).lower() for t in data_types))
    bad = [t for t in dts if t not in DATA_TYPES]
    if not dts or bad:
        raise InputError(f"`data_types` must be a non-empty subset of {list(DATA_TYPES)}, got {list(data_types)}")
    return dts


# ----------------------------------------------------------------------------------------- selection
@dataclass
class GeneSelection:
    """The result of :func:`select_genes`.

    Attributes
    ----------
    columns
        Selected omics columns (each once), in the order of the omics table: the flat vector.
    groups
        Kept pathway -> its columns, pathways in signature-file order, columns in ``columns`` order. A
        column may belong to several pathways.
    coverage
        One row per pathway of the signature set (kept or not): ``pathway``, ``n_genes`` (listed),
        ``n_present_<type>`` per selected data type, ``n_present`` (genes measured in at least one
        selected type), ``coverage`` (= n_present / n_genes), ``n_columns``, ``kept``, ``reason`` (why
        dropped, empty when kept), ``genes_present`` and ``genes_missing`` (``;``-separated).
    summary
        Overall numbers (plain Python values), see :meth:`summary_text`.
    """

    signatures: str
    data_types: tuple[str, ...]
    min_coverage: float
    min_genes: int
    columns: list[str]
    groups: dict[str, list[str]]
    coverage: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped(self) -> list[str]:
        """Pathways dropped for low coverage, in signature-file order."""
        return self.coverage.loc[~self.coverage["kept"], "pathway"].tolist()

    @property
    def group_names(self) -> list[str]:
        """Kept pathways, in token order."""
        return list(self.groups)

    def group_indices(self, columns: Sequence[str] | None = None) -> list[list[int]]:
        """Per kept pathway, the positions of its columns in ``columns`` (default: :attr:`columns`) -- the
        ``groups`` argument of the per-pathway SNN tokenizers (SurvPath, MCAT)."""
        cols = list(self.columns if columns is None else columns)
        pos = {c: i for i, c in enumerate(cols)}
        missing = sorted({c for g in self.groups.values() for c in g if c not in pos})
        if missing:
            raise InputError(f"group column(s) absent from the given column list: {missing[:5]}")
        return [[pos[c] for c in g] for g in self.groups.values()]

    def summary_text(self) -> str:
        """A short human-readable summary (what ``coverage.txt`` holds)."""
        s = self.summary
        lines = [
            f"signature set: {s['signatures']} ({s['n_pathways']} pathways, {s['n_signature_genes']} distinct genes)",
            f"data types: {', '.join(self.data_types)}",
            "signature genes measured in the omics table, per data type:",
        ]
        for dt in DATA_TYPES:
            if dt in s["genes_present_by_type"]:
                n = s["genes_present_by_type"][dt]
                lines.append(
                    f"  {dt:<7} {n} of {s['n_signature_genes']} ({n / s['n_signature_genes']:.1%})"
                    f"{'' if dt in self.data_types else '  (not selected)'}"
                )
        lines += [
            f"  selected types, any: {s['n_genes_present']} of {s['n_signature_genes']} "
            f"({s['n_genes_present'] / s['n_signature_genes']:.1%})",
            f"omics columns of the selected types not in any signature: {s['n_columns_outside']}",
            f"pathway coverage (measured / listed genes): median {s['coverage_median']:.3f}, "
            f"min {s['coverage_min']:.3f}, max {s['coverage_max']:.3f}; "
            f"{s['n_pathways_no_gene']} pathway(s) with no measured gene",
            f"kept {s['n_pathways_kept']} of {s['n_pathways']} pathways "
            f"(min_genes={self.min_genes}, min_coverage={self.min_coverage:g}); dropped {s['n_pathways_dropped']}",
            f"selected columns (flat vector): {s['n_columns']}",
        ]
        if self.dropped:
            shown = ", ".join(self.dropped[:10])
            more = f" (+{len(self.dropped) - 10} more, see coverage.csv)" if len(self.dropped) > 10 else ""
            lines.append(f"dropped: {shown}{more}")
        return "\n".join(lines) + "\n"


def select_genes(
    omics_columns: Iterable[Any] | pd.DataFrame,
    signatures: str | Path | Mapping[str, Sequence[str]] = "combine",
    data_types: str | Sequence[str] = ("rnaseq",),
    *,
    min_coverage: float = 0.0,
    min_genes: int = 1,
) -> GeneSelection:
    """Select the omics columns of the genes of a signature set and report per-pathway coverage.

    Parameters
    ----------
    omics_columns
        The omics table (``Cohort.omics``) or its column names.
    signatures
        A shipped set (``combine``, ``hallmarks``, ``families``), a signature file path or a mapping.
    data_types
        Data types to use (subset of :data:`DATA_TYPES`, or ``"rnaseq,cnv"``); a gene contributes one
        column per selected type it is measured in.
    min_coverage, min_genes
        Keep a pathway only when at least ``min_genes`` of its genes are measured (in any selected type)
        and measured / listed >= ``min_coverage``.

    Nothing is fitted to the values, only column names are read, so selecting on the whole table leaks
    no outcome information. Raises :class:`~survpgc.errors.DataError` when no pathway is kept.
    """
    cols = list(omics_columns.columns) if isinstance(omics_columns, pd.DataFrame) else list(omics_columns)
    dts = _check_data_types(data_types)
    _check_thresholds(min_coverage, min_genes)
    sig = load_signatures(signatures)
    sig_name = _signature_set_name(signatures)
    fmap = feature_map(cols)
    order = {str(c): i for i, c in enumerate(cols)}

    coverage, groups = _pathway_coverage(sig, fmap, dts, order, min_coverage=min_coverage, min_genes=min_genes)
    if not groups:
        raise DataError(
            f"no pathway of {sig_name or 'the signatures'} is kept with data types {list(dts)} "
            f"(min_genes={min_genes}, min_coverage={min_coverage:g}): the omics columns name none of its genes "
            f"(columns look like {[str(c) for c in cols[:3]]}; expected '<GENE>_<rnaseq|cnv|mut>' or gene symbols)"
        )
    columns = sorted({c for g in groups.values() for c in g}, key=order.get)
    summary = _selection_summary(
        sig, fmap, dts, coverage, sig_name=sig_name, n_kept=len(groups), n_columns=len(columns)
    )
    summary.update(min_genes=min_genes, min_coverage=float(min_coverage))
    sel = GeneSelection(
        signatures=summary["signatures"],
        data_types=dts,
        min_coverage=float(min_coverage),
        min_genes=min_genes,
        columns=columns,
        groups=groups,
        coverage=coverage,
        summary=summary,
    )
    _log_selection(sel)
    return sel


def _check_thresholds(min_coverage: float, min_genes: int) -> None:
    if not 0.0 <= float(min_coverage) <= 1.0:
        raise InputError(f"`min_coverage` must be in [0, 1], got {min_coverage!r}")
    if isinstance(min_genes, bool) or not isinstance(min_genes, int) or min_genes < 1:
        raise InputError(f"`min_genes` must be an integer >= 1, got {min_genes!r}")


def _signature_set_name(signatures: str | Path | Mapping[str, Sequence[str]]) -> str:
    """A shipped set's name (lower case), a file path as given, or ``""`` for a mapping."""
    if isinstance(signatures, Mapping):
        return ""
    return str(signatures).lower() if str(signatures).lower() in SIGNATURE_SETS else str(signatures)


def _drop_reason(n_present: int, cov: float, *, min_genes: int, min_coverage: float) -> str:
    """Why a pathway with ``n_present`` measured genes and coverage ``cov`` is dropped; ``""`` = kept."""
    if n_present < min_genes:
        return "no measured gene" if not n_present else f"{n_present} measured gene(s) < min_genes={min_genes}"
    if cov < min_coverage:
        return f"coverage {cov:.3f} < min_coverage={min_coverage:g}"
    return ""


def _pathway_coverage(
    sig: Mapping[str, list[str]],
    fmap: Mapping[str, Mapping[str, str]],
    dts: tuple[str, ...],
    order: Mapping[str, int],
    *,
    min_coverage: float,
    min_genes: int,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The coverage report (one row per pathway, see :class:`GeneSelection`) and kept pathway -> columns."""
    rows: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    for pathway, genes in sig.items():
        present_by = {dt: [g for g in genes if dt in fmap.get(g.upper(), {})] for dt in dts}
        present = [g for g in genes if any(dt in fmap.get(g.upper(), {}) for dt in dts)]
        gcols = sorted((fmap[g.upper()][dt] for g in present for dt in dts if dt in fmap[g.upper()]), key=order.get)
        cov = len(present) / len(genes)
        reason = _drop_reason(len(present), cov, min_genes=min_genes, min_coverage=min_coverage)
        row: dict[str, Any] = {"pathway": pathway, "n_genes": len(genes)}
        row.update({f"n_present_{dt}": len(present_by[dt]) for dt in dts})
        present_set = set(present)
        missing = [g for g in genes if g not in present_set]
        row.update(
            n_present=len(present),
            coverage=cov,
            n_columns=len(gcols),
            kept=not reason,
            reason=reason,
            genes_present=";".join(present),
            genes_missing=";".join(missing),
        )
        rows.append(row)
        if not reason:
            groups[pathway] = gcols
    return pd.DataFrame(rows), groups


def _selection_summary(
    sig: Mapping[str, list[str]],
    fmap: Mapping[str, Mapping[str, str]],
    dts: tuple[str, ...],
    coverage: pd.DataFrame,
    *,
    sig_name: str,
    n_kept: int,
    n_columns: int,
) -> dict[str, Any]:
    """The overall numbers of :attr:`GeneSelection.summary` (thresholds added by the caller)."""
    sig_genes = {g.upper() for genes in sig.values() for g in genes}
    by_type = {dt: sum(1 for g in sig_genes if dt in fmap.get(g, {})) for dt in DATA_TYPES}
    any_sel = sum(1 for g in sig_genes if any(dt in fmap.get(g, {}) for dt in dts))
    outside = sum(1 for g, slot in fmap.items() if g not in sig_genes for dt in dts if dt in slot)
    cv = coverage["coverage"]
    return {
        "signatures": sig_name or "custom",
        "data_types": list(dts),
        "n_pathways": len(sig),
        "n_signature_genes": len(sig_genes),
        "genes_present_by_type": {dt: by_type[dt] for dt in DATA_TYPES if by_type[dt] or dt in dts},
        "n_genes_present": any_sel,
        "n_columns_outside": outside,
        "coverage_median": float(cv.median()),
        "coverage_min": float(cv.min()),
        "coverage_max": float(cv.max()),
        "n_pathways_no_gene": int((coverage["n_present"] == 0).sum()),
        "n_pathways_kept": n_kept,
        "n_pathways_dropped": len(sig) - n_kept,
        "n_columns": n_columns,
    }


def _log_selection(sel: GeneSelection) -> None:
    """The overall numbers at INFO; dropped pathways, if any, at WARNING."""
    s = sel.summary
    log.info(
        "%s: %d of %d signature genes measured (%s); kept %d of %d pathways, %d columns",
        s["signatures"],
        s["n_genes_present"],
        s["n_signature_genes"],
        ", ".join(f"{dt} {s['genes_present_by_type'][dt]}" for dt in sel.data_types),
        s["n_pathways_kept"],
        s["n_pathways"],
        s["n_columns"],
    )
    if s["n_pathways_dropped"]:
        log.warning(
            "%s: %d of %d pathway(s) dropped (%d with no measured gene; min_genes=%d, min_coverage=%g), e.g. %s; "
            "see the coverage report",
            s["signatures"],
            s["n_pathways_dropped"],
            s["n_pathways"],
            s["n_pathways_no_gene"],
            sel.min_genes,
            s["min_coverage"],
            ", ".join(sel.dropped[:3]),
        )
