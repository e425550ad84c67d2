"""Encode a cohort's clinical sentences into per-case token tensors, with an on-disk cache.

Output folder written by :func:`encode_clinical`::

    OUT/
      manifest.json      configuration (encoder + identity, template set + SHA-256, n_templates, seed,
                         missing policy, fields), dim, the cases of the last run and their token files
      sentences.csv      case_id, field, value, missing, template_index, sentence, masked -- exactly what was
                         encoded (masked rows: empty sentence, template_index -1)
      tokens/<case>.pt   one file per case: {"case_id": str, "fields": [str], "sentences": [str],
                         "tokens": float32 (n_fields, dim), "mask": bool (n_fields,), "key": str}

Token row *i* is field ``fields[i]``; a masked field (``missing="mask"``) has a zero row and mask False.
Files are written under a temporary name and renamed, so a crash never leaves a half-written file.

Cache: each case file stores a key = SHA-256 of (encoder identity, template-set hash, n_templates, seed,
missing policy, fields, case id, the case's sentences). A rerun re-encodes only cases whose key changed (e.g.
a corrected clinical value) or whose file is missing; identical sentences are encoded once per run. The text
model is not even loaded when every case is cached. An output folder holds one configuration: rerunning with
another encoder/template set/N_t/seed/fields into the same folder is refused unless ``overwrite=True``.

Use the tokens with :func:`load_clinical_tokens`, a :class:`~survpgc.data.tokens.TokenSource`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from survpgc.clinical.prompts import _build, resolve_fields
from survpgc.clinical.templates import TemplateSet, load_templates
from survpgc.data.tokens import InMemoryTokens
from survpgc.errors import DataError, InputError
from survpgc.files import atomic_write, atomic_write_text

__all__ = [
    "MANIFEST_NAME",
    "SENTENCES_NAME",
    "TOKENS_DIRNAME",
    "ClinicalEncodingSummary",
    "ClinicalTokens",
    "encode_clinical",
    "encode_clinical_cli",
    "load_clinical_tokens",
    "read_clinical_manifest",
    "sentences_table",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SENTENCES_NAME = "sentences.csv"
TOKENS_DIRNAME = "tokens"
_FORMAT = "survpgc-clinical-tokens"
_VERSION = 1
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")


@dataclass(frozen=True)
class ClinicalEncodingSummary:
    """What :func:`encode_clinical` did."""

    out_dir: str
    n_cases: int
    n_encoded: int
    n_cached: int
    n_sentences_encoded: int
    n_masked: int
    dim: int
    fields: tuple[str, ...]
    encoder: str
    template_set: str
    template_hash: str
    n_templates: int
    seed: int
    missing: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON-serialisable)."""
        d = asdict(self)
        d["fields"] = list(self.fields)
        return d

    def describe(self) -> str:
        """One-paragraph human-readable report."""
        return (
            f"{self.n_cases} cases x {len(self.fields)} fields -> {self.out_dir} (dim {self.dim}, encoder "
            f"{self.encoder}, templates {self.template_set} N_t={self.n_templates} seed={self.seed}, missing="
            f"{self.missing}): {self.n_encoded} encoded ({self.n_sentences_encoded} distinct sentences), "
            f"{self.n_cached} cached, {self.n_masked} masked tokens, {self.seconds:.1f} s"
        )


class ClinicalTokens(InMemoryTokens):
    """Clinical tokens read by :func:`load_clinical_tokens`: an :class:`InMemoryTokens` that also knows
    ``fields`` (token order) and the folder's ``manifest``."""

    def __init__(
        self,
        mapping: dict[str, Any],
        masks: dict[str, Any],
        *,
        dim: int,
        fields: Sequence[str],
        manifest: dict[str, Any],
    ) -> None:
        super().__init__(mapping, masks, dim=dim)
        self.fields = tuple(fields)
        self.manifest = manifest

    def __repr__(self) -> str:
        return (
            f"ClinicalTokens(n_cases={len(self._tokens)}, dim={self.dim}, fields={list(self.fields)}, "
            f"encoder={self.manifest.get('encoder')!r})"
        )


# ----------------------------------------------------------------------------- file helpers
def _case_filename(case_id: str) -> str:
    if _SAFE.match(case_id):
        return f"{case_id}.pt"
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)[:80].lstrip(".") or "case"
    return f"{stem}-{hashlib.sha1(case_id.encode()).hexdigest()[:10]}.pt"


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def read_clinical_manifest(path: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a clinical-token folder (DataError when absent or of another format)."""
    p = Path(path)
    f = p / MANIFEST_NAME if p.is_dir() or not p.suffix else p
    if not f.is_file():
        raise DataError(f"{f}: no clinical-token manifest; run encode_clinical / `survpgc encode-clinical` first")
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{f}: unreadable manifest: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != _FORMAT:
        raise DataError(f"{f}: not a survpgc clinical-token manifest (format {m.get('format')!r})")
    if int(m.get("version", 0)) > _VERSION:
        raise DataError(f"{f}: manifest version {m.get('version')} is newer than this survpgc ({_VERSION}); upgrade")
    return m


def _load_case_file(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated / foreign pickle
        raise DataError(f"{path}: unreadable clinical-token file: {exc}") from exc
    if not isinstance(obj, dict) or not {"tokens", "mask", "key", "case_id"} <= set(obj):
        raise DataError(f"{path}: not a survpgc clinical-token file")
    return obj


# ----------------------------------------------------------------------------- encoding
def encode_clinical(
    cohort: Any,
    out_dir: str | Path,
    *,
    encoder: Any = "minilm",
    n_templates: int = 1,
    seed: int = 0,
    templates: str | Path | TemplateSet | None = None,
    fields: str | Sequence[str] | None = None,
    missing: str = "phrase",
    allow_post_diagnosis: bool = False,
    device: str = "cpu",
    batch_size: int | None = None,
    overwrite: bool = False,
) -> ClinicalEncodingSummary:
    """Turn each case's clinical fields into sentences, encode them, and write per-case token tensors.

    Parameters
    ----------
    cohort
        A :class:`~survpgc.data.cohort.Cohort`, a DataFrame indexed by case id, or a cohort name/folder
        (opened with :func:`~survpgc.data.cohort.open_cohort`).
    out_dir
        Output folder (layout in the module docstring); created if needed.
    encoder
        Registered name (``minilm``, ``conch``), local model folder, cached hub id, or a
        :class:`~survpgc.encoders.text.TextEncoder` instance.
    n_templates, seed, templates, fields, missing, allow_post_diagnosis
        See :func:`~survpgc.clinical.prompts.build_sentences`.
    device
        Passed to the encoder when it is given by name.
    batch_size
        Sentences per encoder batch (None: the encoder's own default, 64 for the built-in ones).
    overwrite
        Replace tokens of another configuration found in ``out_dir``.
    """
    t0 = time.perf_counter()
    cohort = _open_cohort(cohort)
    flds = resolve_fields(fields, allow_post_diagnosis=allow_post_diagnosis)
    ts = load_templates(templates)
    table = _build(cohort, ts, flds, n_templates=n_templates, seed=seed, missing=missing)
    enc = _text_encoder(encoder, device=device, batch_size=batch_size)
    config = _run_config(enc, ts, flds, n_templates=n_templates, seed=seed, missing=missing)
    config_key = _sha(json.dumps(config, sort_keys=True))
    out = Path(out_dir).expanduser()
    tok_dir = out / TOKENS_DIRNAME
    _start_out_dir(out, config, config_key, overwrite)

    grid = _SentenceGrid.from_table(table, n_fields=len(flds))
    keys = [grid.cache_key(config_key, i) for i in range(len(grid.ids))]
    todo, cached_dims = _stale_cases(tok_dir, grid.ids, keys)
    unique, vectors = _encode_distinct(enc, grid, todo, batch_size=batch_size)
    dim = _token_dim(out, enc, todo, cached_dims)
    _write_case_files(tok_dir, grid, todo, keys, vectors, fields=flds, dim=dim)

    atomic_write_text(out / SENTENCES_NAME, table.to_csv(index=False))
    _write_manifest(out, config, config_key, template_source=ts.source, dim=dim, ids=grid.ids)
    summary = ClinicalEncodingSummary(
        out_dir=str(out),
        n_cases=len(grid.ids),
        n_encoded=len(todo),
        n_cached=len(grid.ids) - len(todo),
        n_sentences_encoded=len(unique),
        n_masked=int(grid.masked.sum()),
        dim=int(dim),
        fields=tuple(flds),
        encoder=enc.name,
        template_set=ts.name,
        template_hash=config["template_hash"],
        n_templates=int(n_templates),
        seed=int(seed),
        missing=missing,
        seconds=time.perf_counter() - t0,
    )
    log.debug("%s", summary.describe())
    return summary


def _open_cohort(cohort: Any) -> Any:
    """A cohort given by name or folder is opened; anything else is returned as is."""
    if isinstance(cohort, (str, Path)):
        from survpgc.data.cohort import open_cohort

        return open_cohort(cohort)
    return cohort


def _text_encoder(encoder: Any, *, device: str, batch_size: int | None) -> Any:
    """The :class:`~survpgc.encoders.text.TextEncoder` to use (created, not loaded, when given by name)."""
    from survpgc.encoders.text import TextEncoder, create_text_encoder

    if isinstance(encoder, TextEncoder):
        return encoder
    return create_text_encoder(encoder, device=device, **({} if batch_size is None else {"batch_size": batch_size}))


def _run_config(
    enc: Any, ts: TemplateSet, flds: Sequence[str], *, n_templates: int, seed: int, missing: str
) -> dict[str, Any]:
    """Everything that decides the tokens of a run; an output folder holds one such configuration."""
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "encoder": enc.name,
        "encoder_identity": enc.identity,
        "template_set": ts.name,
        "template_hash": ts.digest(),
        "n_templates": int(n_templates),
        "seed": int(seed),
        "missing": missing,
        "fields": list(flds),
    }


def _start_out_dir(out: Path, config: dict[str, Any], config_key: str, overwrite: bool) -> None:
    """Check (or clear) the output folder, create ``tokens/`` and, when absent, a provisional manifest
    (``complete`` False) so that an interrupted run can resume."""
    _prepare_out_dir(out, config, config_key, overwrite)
    (out / TOKENS_DIRNAME).mkdir(parents=True, exist_ok=True)
    if not (out / MANIFEST_NAME).is_file():
        atomic_write_text(
            out / MANIFEST_NAME, json.dumps({**config, "config_key": config_key, "complete": False}, indent=2)
        )


@dataclass(frozen=True)
class _SentenceGrid:
    """The sentence table as a case x field grid: ``sent[i, j]`` and ``masked[i, j]`` for case ``ids[i]``."""

    ids: list[str]
    sent: np.ndarray
    masked: np.ndarray

    @classmethod
    def from_table(cls, table: pd.DataFrame, *, n_fields: int) -> _SentenceGrid:
        ids = list(dict.fromkeys(table["case_id"].tolist()))
        sent = table["sentence"].to_numpy(dtype=object).reshape(len(ids), n_fields)
        masked = table["masked"].to_numpy(dtype=bool).reshape(len(ids), n_fields)
        return cls(ids, sent, masked)

    def cache_key(self, config_key: str, i: int) -> str:
        """Cache key of case ``i``: the run configuration, the case id and the case's sentences and masks."""
        payload = json.dumps([list(self.sent[i]), self.masked[i].tolist()], ensure_ascii=False)
        return _sha(config_key, self.ids[i], payload)


def _stale_cases(tok_dir: Path, ids: Sequence[str], keys: Sequence[str]) -> tuple[list[int], set[int]]:
    """Positions of the cases to (re-)encode -- no file, an unreadable one or another key -- and the token
    dims of the cached files that are kept."""
    todo: list[int] = []
    dims: set[int] = set()
    for i, cid in enumerate(ids):
        path = tok_dir / _case_filename(cid)
        if path.is_file():
            try:
                old = _load_case_file(path)
            except DataError as exc:
                log.warning("%s; re-encoding case %s", exc, cid)
                old = None
            if old is not None and old.get("key") == keys[i] and old.get("case_id") == cid:
                dims.add(int(old["tokens"].shape[1]))
                continue
        todo.append(i)
    return todo, dims


def _encode_distinct(
    enc: Any, grid: _SentenceGrid, todo: Sequence[int], *, batch_size: int | None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Encode each distinct unmasked sentence of the cases in ``todo`` once: (sentences, sentence -> vector)."""
    unique = sorted({str(s) for i in todo for s, m in zip(grid.sent[i], grid.masked[i], strict=True) if not m})
    vectors: dict[str, np.ndarray] = {}
    if unique:
        log.info("encoding %d distinct sentences for %d case(s) with %s", len(unique), len(todo), enc.name)
        arr = enc.encode(unique, batch_size=batch_size)
        vectors = dict(zip(unique, arr, strict=True))
    return unique, vectors


def _token_dim(out: Path, enc: Any, todo: Sequence[int], cached_dims: set[int]) -> int:
    """The token dim of the folder: the encoder's when something is encoded (it must match the cached files),
    else the cached files' (the model is then never loaded)."""
    if todo:
        dim = enc.dim
        if cached_dims and cached_dims != {dim}:
            raise DataError(f"{out}: cached tokens have dim {sorted(cached_dims)}, the encoder gives {dim}")
        return dim
    if cached_dims:
        return cached_dims.pop()
    return enc.dim  # no case at all (cannot happen for a valid cohort) -> ask the encoder


def _write_case_files(
    tok_dir: Path,
    grid: _SentenceGrid,
    todo: Sequence[int],
    keys: Sequence[str],
    vectors: dict[str, np.ndarray],
    *,
    fields: Sequence[str],
    dim: int,
) -> None:
    """Write ``tokens/<case>.pt`` of each case in ``todo`` (masked fields: zero row, mask False)."""
    for i in todo:
        cid = grid.ids[i]
        x = np.zeros((len(fields), dim), dtype=np.float32)
        for j in range(len(fields)):
            if not grid.masked[i, j]:
                x[j] = vectors[str(grid.sent[i, j])]
        payload = {
            "case_id": cid,
            "fields": list(fields),
            "sentences": [str(s) for s in grid.sent[i]],
            "tokens": torch.from_numpy(x),
            "mask": torch.from_numpy(~grid.masked[i].copy()),
            "key": keys[i],
        }
        path = tok_dir / _case_filename(cid)
        atomic_write(path, lambda t, obj=payload: torch.save(obj, t))


def _write_manifest(
    out: Path, config: dict[str, Any], config_key: str, *, template_source: Any, dim: int, ids: Sequence[str]
) -> None:
    """The final ``manifest.json`` (``complete`` True) of a finished run."""
    from survpgc import __version__

    manifest = {
        **config,
        "config_key": config_key,
        "template_source": template_source,
        "dim": int(dim),
        "n_fields": len(config["fields"]),
        "n_cases": len(ids),
        "cases": list(ids),
        "files": {cid: f"{TOKENS_DIRNAME}/{_case_filename(cid)}" for cid in ids},
        "layout": "tokens/<case>.pt: tokens float32 (n_fields, dim), mask bool (n_fields,), row i = fields[i]",
        "survpgc_version": __version__,
        "complete": True,
    }
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False))


def _prepare_out_dir(out: Path, config: dict[str, Any], config_key: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    man = out / MANIFEST_NAME
    if man.is_file():
        try:
            old = read_clinical_manifest(out)
        except DataError:
            old = {}
        if old.get("config_key") == config_key:
            return
        diff = sorted(k for k in config if old.get(k) != config[k])
        if not overwrite:
            raise InputError(
                f"{out} holds clinical tokens of another configuration (differs in {diff}); use another output "
                "folder or overwrite=True (CLI: --overwrite) to replace them"
            )
        log.warning("%s: replacing clinical tokens of another configuration (differs in %s)", out, diff)
        tok = out / TOKENS_DIRNAME
        if tok.is_dir():
            for p in tok.glob("*.pt"):
                p.unlink()
        for name in (MANIFEST_NAME, SENTENCES_NAME):
            (out / name).unlink(missing_ok=True)
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"{out} is not empty and holds no {MANIFEST_NAME}: not a clinical-token folder; choose an empty or new "
            "folder (or overwrite=True to write into it anyway)"
        )


# ----------------------------------------------------------------------------- loading
def load_clinical_tokens(path: str | Path, case_ids: Sequence[str] | None = None) -> ClinicalTokens:
    """Tokens written by :func:`encode_clinical`, as a :class:`~survpgc.data.tokens.TokenSource`.

    ``case_ids`` restricts (and must be a subset of) the cases of the folder's last run; default all of them.
    """
    root = Path(path)
    man = read_clinical_manifest(root)
    if not man.get("complete", False):
        raise DataError(f"{root}: the encoding run did not finish; rerun encode-clinical with the same settings")
    files: dict[str, str] = man.get("files", {})
    ids = list(man.get("cases", [])) if case_ids is None else [str(c) for c in case_ids]
    unknown = [c for c in ids if c not in files]
    if unknown:
        raise DataError(f"{root}: no clinical tokens for case(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    dim, n_fields = int(man["dim"]), int(man["n_fields"])
    mapping: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    for cid in ids:
        p = root / files[cid]
        if not p.is_file():
            raise DataError(f"{p}: token file of case {cid!r} is missing; rerun encode-clinical into {root}")
        obj = _load_case_file(p)
        t, m = obj["tokens"], obj["mask"]
        if tuple(t.shape) != (n_fields, dim) or tuple(m.shape) != (n_fields,) or m.dtype != torch.bool:
            raise DataError(
                f"{p}: tokens {tuple(t.shape)} / mask {tuple(m.shape)} {m.dtype}; expected ({n_fields}, {dim}) / "
                f"({n_fields},) bool"
            )
        mapping[cid], masks[cid] = t, m
    return ClinicalTokens(mapping, masks, dim=dim, fields=man["fields"], manifest=man)


# ----------------------------------------------------------------------------- CLI glue
def encode_clinical_cli(
    cohort: str,
    out: str,
    *,
    encoder: str = "minilm",
    n_templates: int = 1,
    seed: int = 0,
    templates: str | None = None,
    missing_phrases: str | None = None,
    missing: str = "phrase",
    fields: str | None = None,
    allow_post_diagnosis: bool = False,
    device: str = "cpu",
    batch_size: int = 64,
    overwrite: bool = False,
    endpoint: str = "os",
    on_invalid: str = "error",
    time_unit: str = "months",
    omics_nonfinite: str = "error",
) -> ClinicalEncodingSummary:
    """Everything ``survpgc encode-clinical`` does: open the cohort, load templates, encode, return a summary."""
    from survpgc.data.cohort import open_cohort

    c = open_cohort(
        cohort,
        endpoint=endpoint,
        on_invalid_survival=on_invalid,
        time_unit=time_unit,
        omics_nonfinite=omics_nonfinite,
    )
    ts = load_templates(templates, missing=missing_phrases)
    return encode_clinical(
        c,
        out,
        encoder=encoder,
        n_templates=n_templates,
        seed=seed,
        templates=ts,
        fields=fields,
        missing=missing,
        allow_post_diagnosis=allow_post_diagnosis,
        device=device,
        batch_size=batch_size,
        overwrite=overwrite,
    )


def sentences_table(path: str | Path) -> pd.DataFrame:
    """The ``sentences.csv`` of a clinical-token folder."""
    f = Path(path) / SENTENCES_NAME
    if not f.is_file():
        raise DataError(f"{f}: not found")
    return pd.read_csv(f, dtype={"case_id": str, "sentence": str, "value": str}, keep_default_na=False)
