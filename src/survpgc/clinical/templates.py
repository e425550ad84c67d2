"""Sentence templates for clinical fields.

A template set holds, per clinical field, up to N synonymous sentence templates (the "variants") plus a few
phrases used when the value is missing. Templates are stored as CSV files in the column layout of the
SurvPGC paper's template tables, so the paper's own files load with the same reader:

* one column per field, named ``<FIELD>_TEMPLATE`` (see :data:`FIELD_SPECS` for the names), one row per
  variant; columns may have different lengths (empty cells at the bottom are ignored);
* a value template contains its field's placeholder in upper case (``SUBTYPE``, ``AGE``, ``SEX``,
  ``TUMORSTAGE``, ``EDITION``, ``RACE``, ``DIAGNOSIS``), e.g. ``The patient is AGE years old.``;
* yes/no fields (prior malignancy, treatments) have no placeholder: the column holds affirmative and
  negated statements together, and a statement that contains a negation word (no, not, never, lacks,
  without, n't) is used for the value "no", any other for "yes" (this is how the paper's table is laid out);
* missing-value phrases live in a second file with the same columns (one phrase per row, no placeholders):
  ``The tumour stage was not reported.``

Built-in sets (:func:`list_builtin_templates`): ``default`` -- survpgc's own 20 variants per field, and
``survpgc-paper`` -- the paper's published ``templates_20.csv`` (its ``templates_N.csv`` files are the first
N rows of it, so ``n_templates=N`` reproduces them). Both use survpgc's missing-value phrases unless another
file is given.

Variant *i* of a field is row *i* of its column; choosing ``n_templates=N`` uses rows 0..N-1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from survpgc.data.cohort import CLINICAL_FIELDS
from survpgc.errors import DataError, InputError

__all__ = [
    "BUILTIN_TEMPLATES",
    "DEFAULT_FIELDS",
    "FIELD_SPECS",
    "POST_DIAGNOSIS_FIELDS",
    "FieldSpec",
    "TemplateSet",
    "builtin_template_path",
    "list_builtin_templates",
    "load_templates",
    "placeholder_pattern",
    "read_template_csv",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldSpec:
    """How one clinical field is written into sentences.

    ``column`` is the template-table column (``aliases``: other accepted spellings), ``placeholder`` the
    upper-case word replaced by the value (None for yes/no statements), ``kind`` the normaliser used
    (:data:`survpgc.clinical.normalize.VALUE_KINDS`). ``post_diagnosis`` marks information recorded after
    diagnosis (treatment): it can leak the outcome and is only used on explicit request.
    """

    name: str
    column: str
    placeholder: str | None
    kind: str
    post_diagnosis: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""


_SPECS = (
    FieldSpec("subtype", "SUBTYPE_TEMPLATE", "SUBTYPE", "text", description="histological subtype"),
    FieldSpec("age", "AGE_TEMPLATE", "AGE", "age", description="age at diagnosis (years)"),
    FieldSpec("sex", "SEX_TEMPLATE", "SEX", "sex", description="sex"),
    FieldSpec("stage", "TUMORSTAGE_TEMPLATE", "TUMORSTAGE", "stage", description="AJCC tumour stage"),
    FieldSpec("stage_edition", "STAGEEDITION_TEMPLATE", "EDITION", "edition", description="AJCC staging edition"),
    FieldSpec("race", "RACE_TEMPLATE", "RACE", "race", description="race"),
    FieldSpec("primary_diagnosis", "PRIMARY_TEMPLATE", "DIAGNOSIS", "text", description="primary diagnosis"),
    FieldSpec(
        "prior_malignancy",
        "PRIOR_TEMPLATE",
        None,
        "bool",
        aliases=("PIROR_TEMPLATE",),
        description="prior malignancy (yes/no)",
    ),
    FieldSpec(
        "pharmaceutical_therapy",
        "TREATMENT_TEMPLATE1",
        None,
        "bool",
        post_diagnosis=True,
        description="pharmaceutical therapy received (yes/no; post-diagnosis)",
    ),
    FieldSpec(
        "radiation_therapy",
        "TREATMENT_TEMPLATE2",
        None,
        "bool",
        post_diagnosis=True,
        description="radiation therapy received (yes/no; post-diagnosis)",
    ),
)

#: Known fields by name, in a fixed order (the paper's six first).
FIELD_SPECS: Mapping[str, FieldSpec] = MappingProxyType({s.name: s for s in _SPECS})
#: Fields encoded by default: the paper's six, in cohort order.
DEFAULT_FIELDS: tuple[str, ...] = tuple(CLINICAL_FIELDS)
#: Fields recorded after diagnosis (possible outcome leakage): opt-in only.
POST_DIAGNOSIS_FIELDS: tuple[str, ...] = tuple(s.name for s in _SPECS if s.post_diagnosis)
#: Built-in template sets: name -> (templates file, missing-phrases file) under resources/templates.
BUILTIN_TEMPLATES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"default": ("default.csv", "default_missing.csv"), "survpgc-paper": ("survpgc_paper.csv", "default_missing.csv")}
)

_NEGATION = re.compile(r"\b(?:no|not|never|lacks?|without|none)\b|n't\b|n’t\b", re.IGNORECASE)


def placeholder_pattern(placeholder: str) -> re.Pattern[str]:
    """Regex of a placeholder word: not preceded by a letter, not followed by an upper-case letter.

    ``AGE`` matches in ``AGE years`` and ``AGEth`` but not inside ``TUMORSTAGE``.
    """
    return re.compile(rf"(?<![A-Za-z]){re.escape(placeholder)}(?![A-Z])")


_PLACEHOLDER_RES = {s.placeholder: placeholder_pattern(s.placeholder) for s in _SPECS if s.placeholder}


def _column_map() -> dict[str, str]:
    out: dict[str, str] = {}
    for s in _SPECS:
        for col in (s.column, *s.aliases):
            out[col.upper()] = s.name
    return out


def _placeholders_in(text: str) -> list[str]:
    return [ph for ph, rx in _PLACEHOLDER_RES.items() if rx.search(text)]


def read_template_csv(path: str | Path, *, kind: str = "templates") -> dict[str, list[str]]:
    """Read a template table (paper column layout) into ``{field: [variant, ...]}``.

    ``kind="templates"``: value templates must contain their field's placeholder and no other one; yes/no
    columns must contain none. ``kind="missing"``: phrases must contain no placeholder. Unknown columns are
    ignored with a warning; empty cells are skipped.
    """
    if kind not in ("templates", "missing"):
        raise InputError(f"kind must be 'templates' or 'missing', got {kind!r}")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: template file not found")
    from survpgc.data.cohort import read_table

    df = read_table(p, dtype=str, keep_default_na=False)  # encoding and separator sniffed; one-line errors
    cmap = _column_map()
    out: dict[str, list[str]] = {}
    unknown = []
    for col in df.columns:
        key = str(col).strip().upper()
        if key not in cmap:
            unknown.append(str(col))
            continue
        name = cmap[key]
        if name in out:
            raise DataError(f"{p}: two columns map to field {name!r} (column {col!r})")
        spec = FIELD_SPECS[name]
        cells: list[str] = []
        for i, raw in enumerate(df[col].tolist()):
            text = re.sub(r"\s+", " ", str(raw)).strip()
            if not text:
                continue
            where = f"{p}: line {i + 2}, column {col!r}"
            found = _placeholders_in(text)
            if kind == "missing" or spec.placeholder is None:
                if found:
                    what = "a missing-value phrase" if kind == "missing" else "a yes/no statement"
                    raise DataError(f"{where}: {what} must not contain placeholder(s) {found}: {text!r}")
            else:
                if spec.placeholder not in found:
                    raise DataError(f"{where}: template lacks its placeholder {spec.placeholder!r}: {text!r}")
                others = [f for f in found if f != spec.placeholder]
                if others:
                    raise DataError(f"{where}: template holds another field's placeholder {others}: {text!r}")
            cells.append(text)
        if cells:
            out[name] = cells
    if unknown:
        log.warning("%s: ignored unknown template column(s) %s; known: %s", p, unknown, sorted(cmap))
    if not out:
        raise DataError(f"{p}: no template column found; expected some of {sorted(cmap)}")
    return out


def _freeze(d: Mapping[str, Iterable[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({k: tuple(v) for k, v in d.items()})


@dataclass(frozen=True)
class TemplateSet:
    """Template variants and missing-value phrases per field.

    ``templates[field]`` are the value templates (for yes/no fields: the affirmative statements),
    ``negative[field]`` the negated statements of yes/no fields, ``missing[field]`` the phrases used when the
    value is missing.
    """

    name: str
    templates: Mapping[str, tuple[str, ...]]
    missing: Mapping[str, tuple[str, ...]]
    negative: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", _freeze(self.templates))
        object.__setattr__(self, "missing", _freeze(self.missing))
        object.__setattr__(self, "negative", _freeze(self.negative))
        for f in (*self.templates, *self.missing, *self.negative):
            if f not in FIELD_SPECS:
                raise InputError(f"template set {self.name!r}: unknown field {f!r}; known: {list(FIELD_SPECS)}")

    @property
    def fields(self) -> tuple[str, ...]:
        """Fields with value templates, in :data:`FIELD_SPECS` order."""
        return tuple(f for f in FIELD_SPECS if f in self.templates or f in self.negative)

    def n_variants(self, field_name: str) -> int:
        """Usable variants of a field (yes/no fields: the smaller of affirmative and negated)."""
        pos = len(self.templates.get(field_name, ()))
        if FIELD_SPECS[field_name].kind == "bool":
            return min(pos, len(self.negative.get(field_name, ())))
        return pos

    def check(self, fields: Iterable[str], n_templates: int) -> None:
        """Raise InputError unless every field has ``n_templates`` variants and a missing-value phrase."""
        for f in fields:
            if f not in FIELD_SPECS:
                raise InputError(f"unknown clinical field {f!r}; known: {list(FIELD_SPECS)}")
            n = self.n_variants(f)
            if n == 0:
                need = "; yes/no fields need affirmative and negated rows" if FIELD_SPECS[f].kind == "bool" else ""
                raise InputError(
                    f"template set {self.name!r} has no template for field {f!r} (column {FIELD_SPECS[f].column}{need})"
                )
            if n < n_templates:
                raise InputError(
                    f"template set {self.name!r} has {n} variant(s) for field {f!r}, fewer than n_templates="
                    f"{n_templates}; lower n_templates or add rows to column {FIELD_SPECS[f].column}"
                )
            if not self.missing.get(f):
                raise InputError(f"template set {self.name!r} has no missing-value phrase for field {f!r}")

    def digest(self) -> str:
        """SHA-256 of the content (templates, negations, missing phrases, placeholders): the cache identity."""
        payload = {
            "templates": {k: list(v) for k, v in sorted(self.templates.items())},
            "negative": {k: list(v) for k, v in sorted(self.negative.items())},
            "missing": {k: list(v) for k, v in sorted(self.missing.items())},
            "placeholders": {s.name: s.placeholder for s in _SPECS},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def to_frame(self) -> pd.DataFrame:
        """Long table ``field, role (value|negated|missing), index, text`` (for inspection)."""
        rows: list[dict[str, Any]] = []
        for role, d in (("value", self.templates), ("negated", self.negative), ("missing", self.missing)):
            for f in FIELD_SPECS:
                for i, t in enumerate(d.get(f, ())):
                    rows.append({"field": f, "role": role, "index": i, "text": t})
        return pd.DataFrame(rows, columns=["field", "role", "index", "text"])

    def __repr__(self) -> str:
        counts = ", ".join(f"{f}={self.n_variants(f)}" for f in self.fields)
        return f"TemplateSet({self.name!r}, {counts})"


def list_builtin_templates() -> list[str]:
    """Names of the template sets shipped with survpgc."""
    return list(BUILTIN_TEMPLATES)


def builtin_template_path(name: str, *, missing: bool = False) -> Path:
    """Path of a built-in template file (``missing=True``: its missing-phrase file)."""
    key = name.lower()
    if key not in BUILTIN_TEMPLATES:
        raise InputError(f"unknown built-in template set {name!r}; built-in: {list_builtin_templates()}")
    fname = BUILTIN_TEMPLATES[key][1 if missing else 0]
    return Path(str(resources.files("survpgc") / "resources" / "templates" / fname))


def load_templates(source: str | Path | TemplateSet | None = None, *, missing: str | Path | None = None) -> TemplateSet:
    """Load a template set.

    Parameters
    ----------
    source
        A built-in name (``default``, ``survpgc-paper``; None = ``default``), a CSV path in the paper's
        column layout (e.g. the paper's ``templates_20.csv`` or your edited copy of survpgc's
        ``default.csv``), or an existing :class:`TemplateSet` (returned as is).
    missing
        CSV of missing-value phrases (same columns, one phrase per row); None = survpgc's built-in phrases.
    """
    if isinstance(source, TemplateSet):
        if missing is not None:
            raise InputError("`missing` cannot be combined with an already-built TemplateSet")
        return source
    src = "default" if source is None else str(source)
    if src.lower() in BUILTIN_TEMPLATES:
        path, name = builtin_template_path(src), src.lower()
        default_missing = builtin_template_path(src, missing=True)
    else:
        path = Path(src).expanduser()
        if not path.is_file():
            raise InputError(
                f"template set {src!r} is neither a built-in ({list_builtin_templates()}) nor an existing CSV file"
            )
        name = path.stem
        default_missing = builtin_template_path("default", missing=True)
    raw = read_template_csv(path, kind="templates")
    miss_path = default_missing if missing is None else Path(missing).expanduser()
    miss = read_template_csv(miss_path, kind="missing")
    templates: dict[str, list[str]] = {}
    negative: dict[str, list[str]] = {}
    for f, cells in raw.items():
        if FIELD_SPECS[f].kind == "bool":
            negative[f] = [c for c in cells if _NEGATION.search(c)]
            templates[f] = [c for c in cells if not _NEGATION.search(c)]
        else:
            templates[f] = cells
    ts = TemplateSet(
        name=name, templates=templates, missing=miss, negative=negative, source=f"{path} (missing: {miss_path})"
    )
    log.debug("loaded %r from %s", ts, ts.source)
    return ts
