"""Import scFoundation cell embeddings as genomic tokens (4 x 768 per case).

scFoundation's own embedding script (``output_type='cell'``, ``pool_type='all'``) writes one row of
3072 = 4 x 768 values per input row (four pooled 768-d vectors concatenated: last token, second-last
token, max-pool, mean-pool). survpgc does not run the model; it reads that output keyed by case id:

* ``.npy`` -- the array (N x 3072, or N x 4 x 768) as the script saves it; the case ids come from ``ids``
  (a list, or a file) or from a sidecar next to it: ``<stem>.ids.txt``, ``<stem>_ids.txt``,
  ``<stem>.ids.csv`` or ``<stem>_ids.csv``. A ``.txt`` id file holds one id per line (an optional header
  ``case_id``); a ``.csv``/``.tsv`` id file (e.g. the expression table fed to scFoundation) its
  ``case_id`` column, else its first column.
* ``.npz`` -- arrays ``embeddings`` and ``ids`` (or ``case_ids``), ids saved as a string array.
* ``.h5`` / ``.hdf5`` -- datasets ``embeddings`` and ``case_ids`` (or ``ids``).
* ``.csv`` / ``.tsv`` (optionally ``.gz``) -- a ``case_id`` column (else a non-numeric first column) and
  3072 value columns.

Row ``i`` of a 2-D array is reshaped row-major into (4, 768): values ``[768k, 768(k+1))`` are token ``k``.
Validation: the shape must be N x 3072 or N x 4 x 768 (``n_tokens`` x ``dim``, configurable), the
number of ids must equal N, ids must be unique and non-empty, values finite; ids unknown to the cohort are
an error naming them (``on_unknown='drop'`` drops them with a warning). Cohort cases without an embedding
are kept: :meth:`ScFoundationTokens.get` returns None for them (missing modality).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from survpgc.data.tokens import TokenSource
from survpgc.errors import DataError, InputError

__all__ = ["ScFoundationTokens", "load_scfoundation", "read_scfoundation"]

log = logging.getLogger(__name__)

SCF_TOKENS, SCF_DIM = 4, 768
_SIDECARS = (".ids.txt", "_ids.txt", ".ids.csv", "_ids.csv")
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")


def _names(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(s) for s in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _suffix(p: Path) -> str:
    name = p.name.lower().removesuffix(".gz")
    return Path(name).suffix


def _to_str_ids(values: Any) -> list[str]:
    out = []
    for v in np.asarray(values).ravel().tolist():
        out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return [s.strip() for s in out]


def _read_id_file(p: Path) -> list[str]:
    from survpgc.data.cohort import read_table

    if not p.is_file():
        raise DataError(f"{p}: id file not found")
    if _suffix(p) == ".txt":
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln]
        if lines and lines[0].lower() in ("case_id", "id", "ids", "case_ids"):
            lines = lines[1:]
        return lines
    df = read_table(p, dtype=str, keep_default_na=False)
    col = "case_id" if "case_id" in df.columns else df.columns[0]
    return [str(s).strip() for s in df[col].tolist()]


def _ids_for_npy(p: Path, ids: Any) -> tuple[list[str], str]:
    if ids is None:
        for sfx in _SIDECARS:
            cand = p.with_name(p.name[: -len(p.suffix)] + sfx)
            if cand.is_file():
                return _read_id_file(cand), str(cand)
        expected = ", ".join(p.name[: -len(p.suffix)] + s for s in _SIDECARS)
        raise DataError(
            f"{p}: a .npy file holds no case ids; pass ids=[...] or ids=<file>, or put a sidecar next to it "
            f"({expected})"
        )
    if isinstance(ids, (str, Path)):
        return _read_id_file(Path(ids)), str(ids)
    return [str(i).strip() for i in ids], "`ids`"


def _pick(keys: Iterable[str], options: Sequence[str], src: str, what: str) -> str:
    keys = list(keys)
    for k in options:
        if k in keys:
            return k
    raise DataError(f"{src}: no {what} array (expected one of {list(options)}; found {keys})")


def read_scfoundation(path: str | Path, ids: Sequence[str] | str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Read an scFoundation embedding file: ``(raw array as stored, case ids)`` -- no shape check yet.

    ``ids`` is used for ``.npy`` only (the other formats carry their ids; passing both is an error).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: scFoundation embedding file not found")
    sfx = _suffix(p)
    if ids is not None and sfx != ".npy":
        raise InputError(f"{p}: `ids` applies to .npy files only; {sfx} files carry their own case ids")
    if sfx == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{p}: cannot be read as a numeric .npy array: {exc}") from exc
        id_list, _ = _ids_for_npy(p, ids)
        return arr, id_list
    if sfx == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                ek = _pick(z.files, ("embeddings", "embedding", "emb"), str(p), "embeddings")
                ik = _pick(z.files, ("ids", "case_ids"), str(p), "ids")
                return np.asarray(z[ek]), _to_str_ids(z[ik])
        except ValueError as exc:
            raise DataError(
                f"{p}: cannot read it without unpickling ({exc}); save ids as a string array, "
                "e.g. np.savez(path, embeddings=emb, ids=np.array(ids, dtype=str))"
            ) from exc
    if sfx in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(p, "r") as f:
                ek = _pick(f.keys(), ("embeddings", "embedding", "emb"), str(p), "embeddings")
                ik = _pick(f.keys(), ("case_ids", "ids"), str(p), "case ids")
                return np.asarray(f[ek][()]), _to_str_ids(f[ik][()])
        except OSError as exc:
            raise DataError(f"{p}: cannot be read as HDF5: {exc}") from exc
    if sfx in _TABLE_SUFFIXES:
        import pandas as pd

        from survpgc.data.cohort import read_table

        df = read_table(p)
        if "case_id" in df.columns:
            idcol = "case_id"
        elif len(df.columns) and not pd.api.types.is_numeric_dtype(df[df.columns[0]]):
            idcol = df.columns[0]
            log.info("%s: no 'case_id' column; using the first column %r as case ids", p, idcol)
        else:
            raise DataError(f"{p}: needs a 'case_id' column (then the embedding value columns)")
        values = df.drop(columns=[idcol])
        bad = [str(c) for c, t in values.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
        if bad:
            raise DataError(f"{p}: non-numeric embedding column(s) {bad[:5]}")
        return values.to_numpy(dtype=np.float32), [str(s).strip() for s in df[idcol].tolist()]
    raise InputError(f"{p}: unsupported embedding file type {sfx!r}; use .npy (+ ids), .npz, .h5 or .csv")


def _as_tokens(arr: np.ndarray, n_tokens: int, dim: int, src: str) -> np.ndarray:
    expected = f"N × {n_tokens * dim} (= {n_tokens} × {dim} per case) or N × {n_tokens} × {dim}"
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{src}: embeddings must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == n_tokens * dim:
        out = arr.reshape(arr.shape[0], n_tokens, dim)
    elif arr.ndim == 3 and arr.shape[1:] == (n_tokens, dim):
        out = arr
    else:
        hint = ""
        if arr.ndim == 2 and arr.shape[1] == dim:
            hint = f"; it looks like a single pooled {dim}-d vector per case (use n_tokens=1 for that)"
        raise DataError(f"{src}: embeddings have shape {tuple(arr.shape)}; expected {expected}{hint}")
    return np.ascontiguousarray(out, dtype=np.float32)


class ScFoundationTokens(TokenSource):
    """scFoundation embeddings as ``n_tokens`` x ``dim`` tokens per case (see the module docstring).

    ``embeddings`` (N, n_tokens, dim) aligned with ``case_ids`` (unique). ``get`` returns None for any
    other case.
    """

    def __init__(self, embeddings: np.ndarray, case_ids: Sequence[str]) -> None:
        arr = np.asarray(embeddings)
        if arr.ndim != 3:
            raise InputError(f"ScFoundationTokens: embeddings must be (N, n_tokens, dim), got {tuple(arr.shape)}")
        ids = [str(c) for c in case_ids]
        if len(ids) != arr.shape[0]:
            raise InputError(f"ScFoundationTokens: {len(ids)} ids for {arr.shape[0]} embeddings")
        self._values = np.ascontiguousarray(arr, dtype=np.float32)
        self._index = {c: i for i, c in enumerate(ids)}
        if len(self._index) != len(ids):
            raise InputError("ScFoundationTokens: duplicate case ids")
        self.n_tokens = int(arr.shape[1])
        self.dim = int(arr.shape[2])

    @property
    def case_ids(self) -> list[str]:
        return list(self._index)

    def get(self, case_id: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        i = self._index.get(str(case_id))
        if i is None:
            return None
        return torch.from_numpy(self._values[i].copy()), torch.ones(self.n_tokens, dtype=torch.bool)

    def __contains__(self, case_id: object) -> bool:
        return str(case_id) in self._index

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"ScFoundationTokens(n_cases={len(self)}, n_tokens={self.n_tokens}, dim={self.dim})"


def load_scfoundation(
    path: str | Path,
    *,
    ids: Sequence[str] | str | Path | None = None,
    cases: Any = None,
    on_unknown: str = "error",
    n_tokens: int = SCF_TOKENS,
    dim: int = SCF_DIM,
) -> ScFoundationTokens:
    """Read and validate an scFoundation embedding file into a :class:`ScFoundationTokens`.

    Parameters
    ----------
    path
        ``.npy`` / ``.npz`` / ``.h5`` / ``.csv`` (module docstring).
    ids
        Case ids of the rows of a ``.npy`` file (a list or an id file); default: the sidecar file.
    cases
        A ``Cohort`` or its case ids: embeddings of other ids are ``on_unknown`` (``'error'`` -- default --
        or ``'drop'`` with a warning); cohort cases without an embedding are logged and served as None.
    n_tokens, dim
        Expected token layout (scFoundation ``pool_type='all'``: 4 x 768).
    """
    if on_unknown not in ("error", "drop"):
        raise InputError(f"`on_unknown` must be 'error' or 'drop', got {on_unknown!r}")
    for name, v in (("n_tokens", n_tokens), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"`{name}` must be a positive integer, got {v!r}")
    src = str(path)
    raw, id_list = read_scfoundation(path, ids)
    arr = _as_tokens(raw, n_tokens, dim, src)
    if len(id_list) != arr.shape[0]:
        raise DataError(f"{src}: {arr.shape[0]} embedding row(s) but {len(id_list)} case id(s); they must match")
    blank = [i for i, c in enumerate(id_list) if not c]
    if blank:
        raise DataError(f"{src}: empty case id(s) at row(s) {blank[:10]}")
    dups = [c for c, k in Counter(id_list).items() if k > 1]
    if dups:
        raise DataError(f"{src}: duplicate case id(s) {_names(dups)}; each case needs exactly one embedding")
    nonfinite = ~np.isfinite(arr).all(axis=(1, 2))
    if nonfinite.any():
        bad = [id_list[i] for i in np.flatnonzero(nonfinite)]
        raise DataError(f"{src}: NaN/inf embedding values for case(s) {_names(bad)}")

    if cases is not None:
        known_list = [str(c) for c in (cases.case_ids if hasattr(cases, "case_ids") else cases)]
        known = set(known_list)
        unknown = [c for c in id_list if c not in known]
        if unknown:
            msg = f"{src}: {len(unknown)} embedding id(s) are not cases of the cohort: {_names(unknown)}"
            prefix = {c[:12] for c in unknown} & known
            if prefix:
                msg += (
                    f" ({len(prefix)} match a case after truncation to 12 characters: TCGA sample/aliquot "
                    "barcodes? write the 12-character case ids)"
                )
            if on_unknown == "error":
                raise DataError(msg + ". Fix the ids or pass on_unknown='drop'")
            log.warning("%s; dropped (on_unknown='drop')", msg)
            keep = np.array([c in known for c in id_list], dtype=bool)
            arr, id_list = arr[keep], [c for c in id_list if c in known]
        have = set(id_list)
        without = [c for c in known_list if c not in have]
        if without:
            log.info(
                "%d of %d cohort case(s) have no scFoundation embedding (e.g. %s): genomic modality marked missing",
                len(without),
                len(known_list),
                without[:3],
            )
    log.debug("%s: %d scFoundation embeddings of %d x %d", src, arr.shape[0], n_tokens, dim)
    return ScFoundationTokens(arr, id_list)
