"""``prepare_omics``: select the signature genes of a cohort's omics table and write it with its coverage.

Files written to ``out_dir`` (each atomically: temporary file in the same folder, then rename):

* ``omics_selected.csv.gz`` -- ``case_id`` then the selected columns (the flat vector, in the omics table's
  column order), one row per case with omics. Values are **not normalised**: normalisation is fitted per
  fold on the training cases (:class:`~survpgc.genomics.normalize.OmicsScaler`, or ``omics_tokens``).
* ``groups.json`` -- kept pathway -> its column names (pathways in signature-file order, columns in
  matrix column order); the positions of these columns in the matrix are the ``groups`` of SurvPath /
  MCAT.
* ``coverage.csv`` -- one row per pathway, kept or dropped (see
  :class:`~survpgc.genomics.signatures.GeneSelection`).
* ``coverage.txt`` -- a short summary: how many signature genes are measured per data type, pathways
  kept / dropped, flat-vector size.
* ``omics_manifest.json`` -- parameters, the summary numbers and the file names.

:func:`read_prepared_omics` reads the matrix and groups back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from survpgc.errors import DataError, InputError
from survpgc.files import atomic_write, atomic_write_text
from survpgc.genomics.signatures import GeneSelection, select_genes

__all__ = ["PREPARED_FILES", "PreparedOmics", "prepare_omics", "read_prepared_omics"]

log = logging.getLogger(__name__)

#: File names written by :func:`prepare_omics`.
PREPARED_FILES: dict[str, str] = {
    "matrix": "omics_selected.csv.gz",
    "groups": "groups.json",
    "coverage": "coverage.csv",
    "summary": "coverage.txt",
    "manifest": "omics_manifest.json",
}


@dataclass(frozen=True)
class PreparedOmics:
    """What :func:`prepare_omics` wrote."""

    out_dir: Path
    files: dict[str, Path]
    selection: GeneSelection
    n_cases_omics: int
    n_cases: int

    def summary_text(self) -> str:
        """Cases with omics, then :meth:`GeneSelection.summary_text`."""
        return f"cases with omics: {self.n_cases_omics} of {self.n_cases}\n" + self.selection.summary_text()


def prepare_omics(
    cohort: Any,
    signatures: str | Path | Mapping[str, Sequence[str]] = "combine",
    data_types: str | Sequence[str] = ("rnaseq",),
    *,
    out_dir: str | Path,
    min_coverage: float = 0.0,
    min_genes: int = 1,
) -> PreparedOmics:
    """Select the genes of ``signatures`` in ``cohort.omics`` and write the matrix, groups and coverage.

    ``cohort`` is a :class:`~survpgc.data.cohort.Cohort` or anything :func:`~survpgc.data.cohort.open_cohort`
    accepts (built-in name or folder). Selection arguments as in
    :func:`~survpgc.genomics.signatures.select_genes` (default: keep every pathway with at least one
    measured gene). Existing files of the same names in ``out_dir`` are replaced.
    """
    cohort, omics = _cohort_omics(cohort)
    selection = select_genes(omics.columns, signatures, data_types, min_coverage=min_coverage, min_genes=min_genes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / v for k, v in PREPARED_FILES.items()}
    matrix = omics[selection.columns].copy()
    matrix.index = matrix.index.rename("case_id")
    result = PreparedOmics(out_dir=out, files=files, selection=selection, n_cases_omics=len(omics), n_cases=len(cohort))
    _write_prepared(result, matrix, cohort_name=cohort.name)
    s = selection.summary
    log.info(
        "%s: %d of %d %s genes measured in %s; %d of %d pathways kept; %d columns x %d cases written to %s",
        cohort.name,
        s["n_genes_present"],
        s["n_signature_genes"],
        selection.signatures,
        "+".join(selection.data_types),
        s["n_pathways_kept"],
        s["n_pathways"],
        len(selection.columns),
        len(matrix),
        out,
    )
    return result


def _cohort_omics(cohort: Any) -> tuple[Any, pd.DataFrame]:
    """The cohort (opened when given by name or folder) and its non-empty omics table."""
    if isinstance(cohort, (str, Path)):
        from survpgc.data.cohort import open_cohort

        cohort = open_cohort(cohort)
    if not (hasattr(cohort, "omics") and hasattr(cohort, "cases")):
        raise InputError(f"prepare_omics expects a Cohort, a built-in name or a folder, got {type(cohort).__name__}")
    omics = cohort.omics
    if omics is None or omics.shape[1] == 0:
        raise DataError(f"cohort {cohort.name!r} has no omics table (omics.csv.gz): nothing to prepare")
    return cohort, omics


def _write_prepared(result: PreparedOmics, matrix: pd.DataFrame, *, cohort_name: str) -> None:
    """Write the selected matrix, the groups, the coverage report, the summary text and the manifest."""
    files, selection = result.files, result.selection
    atomic_write(
        files["matrix"],
        lambda t: matrix.to_csv(t, compression={"method": "gzip", "mtime": 0}, float_format="%.9g"),
    )
    atomic_write_text(files["groups"], json.dumps(selection.groups, indent=1) + "\n")
    atomic_write(files["coverage"], lambda t: selection.coverage.to_csv(t, index=False, float_format="%.6g"))
    text = f"cohort: {cohort_name}\n" + result.summary_text()
    text += "values in omics_selected.csv.gz are NOT normalised: fit the scaler on each fold's training cases.\n"
    atomic_write_text(files["summary"], text)
    manifest = {
        "cohort": cohort_name,
        "signatures": selection.signatures,
        "data_types": list(selection.data_types),
        "min_coverage": selection.min_coverage,
        "min_genes": selection.min_genes,
        "n_cases": result.n_cases,
        "n_cases_omics": result.n_cases_omics,
        "summary": selection.summary,
        "files": {k: v.name for k, v in files.items()},
        "normalised": False,
    }
    atomic_write_text(files["manifest"], json.dumps(manifest, indent=1) + "\n")


def read_prepared_omics(out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """``(matrix indexed by case_id, groups)`` from a :func:`prepare_omics` folder, checked for consistency."""
    d = Path(out_dir)
    mpath, gpath = d / PREPARED_FILES["matrix"], d / PREPARED_FILES["groups"]
    for p in (mpath, gpath):
        if not p.is_file():
            raise DataError(f"{p}: not found (run `survpgc prepare-omics` first)")
    matrix = pd.read_csv(mpath, index_col="case_id", dtype={"case_id": str})
    try:
        groups = json.loads(gpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{gpath}: not valid JSON: {exc}") from exc
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise DataError(f"{gpath}: expected an object pathway -> list of column names")
    absent = sorted({c for v in groups.values() for c in v} - set(matrix.columns))
    if absent:
        raise DataError(f"{gpath}: group column(s) absent from {mpath.name}: {absent[:5]}")
    return matrix, {str(k): [str(c) for c in v] for k, v in groups.items()}
