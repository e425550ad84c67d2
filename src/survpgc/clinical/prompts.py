"""Turning a cohort's clinical fields into sentences ("prompts"), one per case and field.

The variant of a field's template used for a case is drawn deterministically from ``(seed, case_id,
field)`` with SHA-256 (:func:`draw_variant`): the same case gets the same sentence whatever the cohort
order or subset, and ``n_templates=1`` always uses the first variant.

Missing values are handled by ``missing``:

* ``"phrase"`` (default) -- the field's missing-value phrase ("The tumour stage was not reported."), which
  is encoded like any other sentence;
* ``"mask"`` -- no sentence: the token is dropped (zero vector, mask False) when encoded.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from survpgc.clinical.normalize import normalize_value
from survpgc.clinical.templates import (
    DEFAULT_FIELDS,
    FIELD_SPECS,
    POST_DIAGNOSIS_FIELDS,
    TemplateSet,
    load_templates,
    placeholder_pattern,
)
from survpgc.errors import DataError, InputError

__all__ = [
    "MISSING_POLICIES",
    "SENTENCE_COLUMNS",
    "build_sentences",
    "check_sentence",
    "draw_variant",
    "render_sentence",
    "resolve_fields",
    "sentences_by_case",
]

log = logging.getLogger(__name__)

#: How missing values become tokens.
MISSING_POLICIES: tuple[str, ...] = ("phrase", "mask")
#: Columns of the table returned by :func:`build_sentences` (and written as ``sentences.csv``).
SENTENCE_COLUMNS: tuple[str, ...] = ("case_id", "field", "value", "missing", "template_index", "sentence", "masked")

_PLACEHOLDERS = {s.placeholder: placeholder_pattern(s.placeholder) for s in FIELD_SPECS.values() if s.placeholder}
_BAD = re.compile(r"(?i:\bnan\b)|\bNone\b|\bNaT\b|<NA>|\s{2,}|\s[.,;:!?]|^\W*$")


def resolve_fields(fields: str | Sequence[str] | None = None, *, allow_post_diagnosis: bool = False) -> tuple[str, ...]:
    """Validate the fields to encode (None = the paper's six; a comma-separated string is accepted).

    Post-diagnosis fields (treatment) are refused unless ``allow_post_diagnosis`` is True, and then a
    warning about outcome leakage is logged.
    """
    if fields is None:
        out = tuple(DEFAULT_FIELDS)
    else:
        items = fields.split(",") if isinstance(fields, str) else list(fields)
        out = tuple(str(f).strip() for f in items if str(f).strip())
    if not out:
        raise InputError("no clinical field selected")
    unknown = [f for f in out if f not in FIELD_SPECS]
    if unknown:
        raise InputError(f"unknown clinical field(s) {unknown}; known: {list(FIELD_SPECS)}")
    dup = sorted({f for f in out if out.count(f) > 1})
    if dup:
        raise InputError(f"clinical field(s) listed twice: {dup}")
    post = [f for f in out if f in POST_DIAGNOSIS_FIELDS]
    if post and not allow_post_diagnosis:
        raise InputError(
            f"field(s) {post} are recorded after diagnosis (treatment) and can leak the outcome into a survival "
            "model; they are excluded by default. Pass allow_post_diagnosis=True (CLI: --allow-post-diagnosis) "
            "only if that is intended."
        )
    if post:
        log.warning(
            "including post-diagnosis field(s) %s: treatment is decided after diagnosis and often depends on the "
            "course of disease, so it can leak survival information; results are not comparable with "
            "diagnosis-time models",
            post,
        )
    return out


def draw_variant(seed: int, case_id: str, field: str, n_templates: int) -> int:
    """Template index in ``[0, n_templates)`` for one case and field, from SHA-256 of (seed, case_id, field)."""
    if n_templates <= 1:
        return 0
    h = hashlib.sha256(f"{int(seed)}\x1f{case_id}\x1f{field}".encode()).digest()
    return int.from_bytes(h[:8], "big") % int(n_templates)


def _tidy(text: str) -> str:
    s = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([.,;:!?])", r"\1", s)


def check_sentence(sentence: str, *, where: str = "") -> str:
    """Raise DataError when a sentence is empty, keeps a placeholder, has double spaces or a 'nan'/'None'."""
    left = [ph for ph, rx in _PLACEHOLDERS.items() if rx.search(sentence)]
    if left or _BAD.search(sentence):
        why = f"placeholder(s) {left} left" if left else "empty slot, double space or 'nan'/'None'"
        raise DataError(f"{where}bad sentence ({why}): {sentence!r}")
    return sentence


def render_sentence(templates: TemplateSet, field: str, value: str | bool | None, variant: int) -> str:
    """The sentence of one field for an already-normalised ``value`` (None = missing) and template ``variant``."""
    spec = FIELD_SPECS[field]
    if value is None:
        phrases = templates.missing[field]
        text = phrases[variant % len(phrases)]
    elif spec.kind == "bool":
        text = (templates.templates if value else templates.negative)[field][variant]
    else:
        text = placeholder_pattern(spec.placeholder or "").sub(
            lambda _m: str(value), templates.templates[field][variant]
        )
    return check_sentence(_tidy(text), where=f"field {field!r}: ")


def _display(value: str | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def build_sentences(
    cases: Any,
    templates: str | TemplateSet | None = None,
    *,
    n_templates: int = 1,
    seed: int = 0,
    fields: str | Sequence[str] | None = None,
    missing: str = "phrase",
    allow_post_diagnosis: bool = False,
) -> pd.DataFrame:
    """One row per case and field: the sentence that will be encoded.

    Parameters
    ----------
    cases
        A :class:`~survpgc.data.cohort.Cohort` or a DataFrame indexed by case id with one column per field
        (a field without a column is missing for every case, with a warning).
    templates
        Template set or its name/path (see :func:`~survpgc.clinical.templates.load_templates`).
    n_templates
        N_t: variants per field to draw from (rows 0..N_t-1 of each column).
    seed
        Seed of the per-(case, field) variant draw.
    fields
        Fields, in token order (default: the paper's six).
    missing
        ``"phrase"`` or ``"mask"`` (see the module docstring).
    allow_post_diagnosis
        Allow treatment fields (logs a leakage warning).

    Returns
    -------
    DataFrame with columns :data:`SENTENCE_COLUMNS`: ``value`` is the normalised value ("" when missing),
    ``missing`` whether it was missing, ``template_index`` the drawn variant (-1 when masked),
    ``sentence`` the text ("" when masked), ``masked`` True when the token is dropped.
    """
    flds = resolve_fields(fields, allow_post_diagnosis=allow_post_diagnosis)
    return _build(cases, load_templates(templates), flds, n_templates=n_templates, seed=seed, missing=missing)


def _build(
    cases: Any, ts: TemplateSet, flds: tuple[str, ...], *, n_templates: int, seed: int, missing: str
) -> pd.DataFrame:
    """:func:`build_sentences` for already-validated fields and a loaded template set."""
    if missing not in MISSING_POLICIES:
        raise InputError(f"missing must be one of {list(MISSING_POLICIES)}, got {missing!r}")
    if isinstance(n_templates, bool) or not isinstance(n_templates, int) or n_templates < 1:
        raise InputError(f"n_templates must be an integer >= 1, got {n_templates!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    df = cases.cases if hasattr(cases, "cases") and isinstance(cases.cases, pd.DataFrame) else cases
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"cases must be a Cohort or a DataFrame indexed by case id, got {type(cases).__name__}")
    ts.check(flds, n_templates)
    absent = [f for f in flds if f not in df.columns]
    if absent:
        log.warning("clinical field(s) %s have no column: missing for every case (policy %r)", absent, missing)
    ids = [str(c) for c in df.index]
    if len(set(ids)) != len(ids):
        raise DataError("duplicate case ids in the clinical table")
    values: dict[str, list[str | bool | None]] = {}
    for f in flds:
        kind = FIELD_SPECS[f].kind
        col = df[f].tolist() if f in df.columns else [None] * len(df)
        vals: list[str | bool | None] = []
        for cid, raw in zip(ids, col, strict=True):
            try:
                vals.append(normalize_value(kind, raw))
            except DataError as exc:
                raise DataError(f"case {cid!r}, field {f!r}: {exc}") from exc
        values[f] = vals
    rows: list[tuple[Any, ...]] = []
    for i, cid in enumerate(ids):
        for f in flds:
            value = values[f][i]
            if value is None and missing == "mask":
                rows.append((cid, f, "", True, -1, "", True))
                continue
            k = draw_variant(seed, cid, f, n_templates)
            rows.append((cid, f, _display(value), value is None, k, render_sentence(ts, f, value, k), False))
    return pd.DataFrame(rows, columns=list(SENTENCE_COLUMNS))


def sentences_by_case(table: pd.DataFrame) -> dict[str, list[str]]:
    """``{case_id: [sentence per field]}`` from a :func:`build_sentences` table (masked = "")."""
    out: dict[str, list[str]] = {}
    for cid, s in zip(table["case_id"], table["sentence"], strict=True):
        out.setdefault(str(cid), []).append(str(s))
    return out
