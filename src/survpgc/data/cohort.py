"""Validated patient cohorts: survival, clinical fields, omics and slides per case.

A :class:`Cohort` holds, per case (= patient, the unit of splitting):

* ``cases`` -- a DataFrame indexed by ``case_id`` with ``time`` (months > 0), ``event`` (bool, True =
  death) and the clinical fields (the paper's six: subtype, age, sex, stage, stage_edition, race; any
  other columns are kept);
* ``omics`` -- an optional DataFrame indexed by ``case_id`` (numeric columns), possibly for a subset of
  the cases;
* ``slides`` -- a DataFrame with one row per slide: ``case_id``, ``slide_id``, ``slide_path`` and
  ``feature_path`` (either may be missing). Several slides of one case are pooled into one bag later.

Missing modalities are kept and marked (:meth:`Cohort.modality_table`), never silently dropped.

Loaders: :func:`load_cohort` (generic CSV/TSV with a :class:`ColumnMapping`), :func:`load_tcga` (the
TCGA directory layout: ``cohort.csv``, ``omics.csv.gz``, ``splits_survpgc/``) and :func:`load_builtin`
(data shipped with survpgc, e.g. ``tcga-lihc``).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from survpgc.data.slides import slide_stem
from survpgc.errors import DataError, InputError

__all__ = [
    "BUILTIN_COHORTS",
    "CLINICAL_FIELDS",
    "PLAUSIBLE_MEDIAN_MONTHS",
    "Cohort",
    "ColumnMapping",
    "builtin_path",
    "list_builtin",
    "load_builtin",
    "load_cohort",
    "load_tcga",
    "months_per_unit",
    "open_cohort",
    "read_table",
    "time_unit_warning",
]

log = logging.getLogger(__name__)

#: The paper's six clinical fields, in the order prompts are built.
CLINICAL_FIELDS: tuple[str, ...] = ("subtype", "age", "sex", "stage", "stage_edition", "race")

#: Built-in cohorts shipped inside the package (small public TCGA-derived tables).
BUILTIN_COHORTS: dict[str, str] = {"tcga-lihc": "tcga/lihc"}

#: One day in months (365.25 / 12 days per month): the default floor for zero survival times.
ONE_DAY_MONTHS = 12.0 / 365.25

_TIME_UNITS = {"months": 1.0, "days": 12.0 / 365.25, "years": 12.0, "weeks": 7.0 * 12.0 / 365.25}
_ENDPOINTS = {"os": "", "dss": "_dss", "pfs": "_pfs"}
Policy = Literal["error", "drop"]
_FEATURE_SUFFIXES = (".h5", ".pt")


# ----------------------------------------------------------------------------------------- reading
#: Byte-order marks and the encoding each one means (UTF-32 before UTF-16: its LE mark starts with UTF-16's).
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)
#: The column separators a table may use, and their names in messages.
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
_SAVE_AS_UTF8 = "save it as UTF-8 (Excel: 'CSV UTF-8'; or `iconv -f <encoding> -t utf-8`)"


def _head(p: Path, n: int = 1 << 16) -> bytes:
    """The first ``n`` bytes of a file (decompressed when it ends in ``.gz``)."""
    try:
        if p.name.lower().endswith(".gz"):
            with gzip.open(p, "rb") as f:
                return f.read(n)
        with p.open("rb") as f:
            return f.read(n)
    except (OSError, EOFError) as exc:
        raise DataError(f"{p}: cannot be read: {exc}") from exc


def _sniff_encoding(p: Path, head: bytes) -> tuple[str, str]:
    """``(encoding for pandas, the head as text)``: a byte-order mark decides; without one, UTF-8 is required."""
    for bom, encoding, codec in _BOMS:
        if head.startswith(bom):
            return encoding, head[len(bom) :].decode(codec, errors="ignore")
    if b"\x00" in head[:4096]:
        raise DataError(f"{p}: looks like UTF-16 or UTF-32 text without a byte-order mark (NUL bytes); {_SAVE_AS_UTF8}")
    try:
        return "utf-8", head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut by the sniffing window
            line = head[: exc.start].count(b"\n") + 1
            raise DataError(
                f"{p}: not UTF-8 text (byte 0x{head[exc.start]:02x} on line {line}; "
                f"probably Latin-1 or "
                f"Windows-1252); {_SAVE_AS_UTF8}"
            ) from None
        return "utf-8", head[: exc.start].decode("utf-8")


def _sniff_delimiter(p: Path, header: str) -> str:
    """The separator of the header line: the most frequent of comma, semicolon and tab outside quotes; the
    suffix decides for a one-column table (``.tsv``/``.txt``/``.tab``: tab, else comma)."""
    bare = re.sub(r'"[^"]*"', "", header)
    counts = {d: bare.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if counts[best]:
        return best
    name = p.name.lower().removesuffix(".gz")
    return "\t" if name.endswith((".tsv", ".txt", ".tab")) else ","


def read_table(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read a user's CSV/TSV table (optionally gzipped); every failure is one :class:`DataError` naming the file.

    The one reader of user tables in survpgc (cohort, omics, slide, split, template and signature tables):

    * **encoding** -- a byte-order mark decides (UTF-8-BOM, UTF-16, UTF-32 are read correctly); without one
      the file must be UTF-8 (otherwise: an error saying what was seen and how to re-save it);
    * **separator** -- sniffed from the header line: comma, semicolon or tab, whichever occurs most (outside
      quotes); the suffix decides only for a one-column table;
    * **header** -- a column named twice is an error naming the column (pandas would silently rename the
      second one to ``name.1``);
    * **empty** -- an empty file, or one with a header but no data row (unless ``nrows`` is given), is an
      error.

    ``kwargs`` go to :func:`pandas.read_csv` (``dtype``, ``keep_default_na``, ``nrows`` ...).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    encoding, text = _sniff_encoding(p, _head(p))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{p}: the file is empty; expected a header line, then one row per record")
    sep = _sniff_delimiter(p, lines[0])
    header = next(csv.reader([lines[0]], delimiter=sep), [])
    names = [h.strip() for h in header]
    dup = sorted({h for h in names if names.count(h) > 1})
    if dup:
        where = ", ".join(
            f"{d!r} (columns {', '.join(str(i + 1) for i, h in enumerate(names) if h == d)})" for d in dup[:5]
        )
        raise DataError(
            f"{p}: column name(s) {where} appear more than once in the header; name each column once "
            "(remove or rename the duplicate)"
        )
    try:
        df = pd.read_csv(p, sep=sep, encoding=encoding, **kwargs)
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not valid {encoding} text (at byte {exc.start}); {_SAVE_AS_UTF8}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: the file is empty; expected a header line, then one row per record") from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{p}: cannot be read as a {_DELIMITERS[sep]}-separated table: {reason}") from None
    if len(df) == 0 and "nrows" not in kwargs:
        raise DataError(f"{p}: has a header line but no data rows")
    return df


def _lines(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> list[int]:
    """File lines (header = line 1) of the masked rows. A table read from a file keeps its row labels 0, 1, ...
    through every filter, so a label ``i`` is line ``i + 2`` even after rows were dropped."""
    idx = np.flatnonzero(np.asarray(mask))
    labels = df.index[idx] if pd.api.types.is_integer_dtype(df.index) else idx
    return [int(i) + 2 for i in labels]


def _rows(df: pd.DataFrame, mask: np.ndarray | pd.Series, limit: int = 5) -> str:
    """Human-readable file rows (header = line 1) of the masked entries."""
    lines = _lines(df, mask)
    shown = ", ".join(str(i) for i in lines[:limit])
    more = f" (+{len(lines) - limit} more)" if len(lines) > limit else ""
    return f"line(s) {shown}{more}"


def _cells(df: pd.DataFrame, mask: np.ndarray | pd.Series, col: str, limit: int = 5) -> str:
    """``line 3 (-2.5), line 9 (-1)``: file lines and values of ``col`` of the masked rows."""
    lines, values = _lines(df, mask), df.loc[np.asarray(mask), col].tolist()
    shown = ", ".join(f"line {i} ({v})" for i, v in zip(lines[:limit], values[:limit], strict=False))
    return shown + (f" (+{len(lines) - limit} more)" if len(lines) > limit else "")


def _drop_exact_duplicates(df: pd.DataFrame, src: str, notes: list[str]) -> pd.DataFrame:
    """Exact duplicate rows (every column equal to an earlier row) are dropped with a warning naming their
    lines: they carry no conflicting information, the first copy is kept."""
    dup = df.duplicated(keep="first").to_numpy()
    if dup.any():
        notes.append(f"{src}: {int(dup.sum())} exact duplicate row(s) dropped ({_rows(df, dup)}); the first copy kept")
        log.warning("%s", notes[-1])
        df = df.loc[~dup]
    return df


#: Where a policy argument of the loaders is set outside Python (run config key, command-line option).
_POLICY_KEYS = {
    "on_invalid_survival": " (`cohort.on_invalid_survival: drop` in a run config, `--on-invalid drop` in the CLI)",
    "on_missing_features": " (`cohort.on_missing_features: drop` in a run config)",
}


def _apply_policy(policy: str, message: str, arg: str) -> None:
    if policy == "error":
        raise DataError(
            f"{message}. Fix the file or pass {arg}='drop'{_POLICY_KEYS.get(arg, '')} to drop them with a warning."
        )
    if policy == "drop":
        log.warning("%s; dropped (%s='drop').", message, arg)
        return
    raise InputError(f"`{arg}` must be 'error' or 'drop', got {policy!r}")


# ----------------------------------------------------------------------------------------- mapping
@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a user's clinical table hold what.

    Exactly one of ``event`` (1 = death observed) and ``censorship`` (1 = censored) must be given.
    ``clinical`` maps survpgc field names (see :data:`CLINICAL_FIELDS`) to the table's column names;
    fields absent from the mapping and the table are simply missing for every case.
    """

    case_id: str = "case_id"
    time: str = "survival_months"
    event: str | None = None
    censorship: str | None = "censorship"
    time_unit: str = "months"
    slide_id: str | None = "slide_id"
    clinical: Mapping[str, str] = field(default_factory=lambda: {f: f for f in CLINICAL_FIELDS})

    def __post_init__(self) -> None:
        if (self.event is None) == (self.censorship is None):
            raise InputError("ColumnMapping: give exactly one of `event` (1 = death) or `censorship` (1 = censored)")
        if self.time_unit not in _TIME_UNITS:
            raise InputError(f"ColumnMapping.time_unit must be one of {sorted(_TIME_UNITS)}, got {self.time_unit!r}")

    @classmethod
    def tcga(cls, endpoint: str = "os") -> ColumnMapping:
        """The layout of the TCGA tables (``survival_months[_dss|_pfs]``, ``censorship[...]``)."""
        ep = endpoint.lower()
        if ep not in _ENDPOINTS:
            raise InputError(f"endpoint must be one of {sorted(_ENDPOINTS)}, got {endpoint!r}")
        sfx = _ENDPOINTS[ep]
        return cls(time=f"survival_months{sfx}", censorship=f"censorship{sfx}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnMapping:
        """Build from a config mapping; unknown keys are an error."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown column-mapping key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(d))


# ----------------------------------------------------------------------------------------- cohort
@dataclass
class Cohort:
    """A validated multimodal survival cohort (see module docstring for the layout)."""

    name: str
    cases: pd.DataFrame
    omics: pd.DataFrame | None = None
    slides: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["case_id", "slide_id", "slide_path", "feature_path"])
    )
    endpoint: str = "os"
    meta: dict[str, Any] = field(default_factory=dict)
    #: False for a prediction-only cohort (no survival columns: ``time`` NaN, ``event`` False for every case)
    has_survival: bool = True

    def __post_init__(self) -> None:
        c = self.cases
        if c.index.name != "case_id":
            raise InputError("Cohort.cases must be indexed by 'case_id'")
        if c.index.has_duplicates:
            dup = c.index[c.index.duplicated()].unique().tolist()[:5]
            raise DataError(f"cohort {self.name!r}: duplicate case ids {dup}")
        for col in ("time", "event"):
            if col not in c.columns:
                raise InputError(f"Cohort.cases needs a {col!r} column")
        if len(c) == 0:
            raise DataError(f"cohort {self.name!r} has no cases")
        if c["event"].dtype != bool:
            raise InputError("Cohort.cases['event'] must be bool (True = death observed)")
        t = c["time"].to_numpy(dtype=np.float64)
        if self.has_survival and not np.all(np.isfinite(t) & (t > 0)):
            raise DataError(f"cohort {self.name!r}: survival times must be finite and > 0 months")
        if self.omics is not None:
            extra = self.omics.index.difference(c.index)
            if len(extra):
                raise DataError(f"cohort {self.name!r}: omics rows for unknown cases {extra[:5].tolist()}")
        if len(self.slides):
            extra = pd.Index(self.slides["case_id"]).difference(c.index)
            if len(extra):
                raise DataError(f"cohort {self.name!r}: slides for unknown cases {extra[:5].tolist()}")
        for col in ("case_id", "slide_id", "slide_path", "feature_path"):
            if col not in self.slides.columns:
                self.slides[col] = pd.Series(dtype=object)

    # ---------------------------------------------------------------- basic accessors
    @property
    def case_ids(self) -> list[str]:
        """Case ids in cohort order."""
        return self.cases.index.tolist()

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def time(self) -> np.ndarray:
        """Survival times in months, shape (n_cases,)."""
        return self.cases["time"].to_numpy(dtype=np.float64)

    @property
    def event(self) -> np.ndarray:
        """Event indicators (True = death observed), shape (n_cases,)."""
        return self.cases["event"].to_numpy(dtype=bool)

    @property
    def clinical_fields(self) -> list[str]:
        """The paper's clinical fields present as columns (possibly with missing values)."""
        return [f for f in CLINICAL_FIELDS if f in self.cases.columns]

    def survival(self, case_ids: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(time, event)`` arrays for the given cases (all cases when None), in the given order."""
        sub = self.cases if case_ids is None else self.cases.loc[list(case_ids)]
        return sub["time"].to_numpy(dtype=np.float64), sub["event"].to_numpy(dtype=bool)

    def slides_of(self, case_id: str) -> pd.DataFrame:
        """The slide rows of one case (possibly empty)."""
        return self.slides[self.slides["case_id"] == case_id]

    def feature_paths(self, case_id: str) -> list[Path]:
        """Feature files of all slides of a case (missing ones skipped)."""
        rows = self.slides_of(case_id)["feature_path"].dropna()
        return [Path(p) for p in rows]

    # ---------------------------------------------------------------- modalities
    def modality_table(self) -> pd.DataFrame:
        """One row per case, bool columns ``clinical``, ``omics``, ``slides``, ``slide_files``, ``features``.

        ``clinical`` is True when at least one clinical field is non-missing; ``slides`` when the case has
        at least one slide id listed; ``slide_files`` when a slide file was found on disk; ``features``
        when at least one slide has a feature file.
        """
        idx = self.cases.index
        fields = self.clinical_fields
        clinical = self.cases[fields].notna().any(axis=1) if fields else pd.Series(False, index=idx, dtype=bool)
        omics = idx.isin(self.omics.index) if self.omics is not None else np.zeros(len(idx), bool)
        slide_cases = set(self.slides["case_id"])
        file_cases = set(self.slides.loc[self.slides["slide_path"].notna(), "case_id"])
        feat_cases = set(self.slides.loc[self.slides["feature_path"].notna(), "case_id"])
        return pd.DataFrame(
            {
                "clinical": clinical.to_numpy(dtype=bool),
                "omics": np.asarray(omics, dtype=bool),
                "slides": idx.isin(list(slide_cases)),
                "slide_files": idx.isin(list(file_cases)),
                "features": idx.isin(list(feat_cases)),
            },
            index=idx,
        )

    def modality_counts(self) -> pd.DataFrame:
        """How many cases have each combination of modalities (columns: combination, n_cases)."""
        mt = self.modality_table()
        labels = mt.apply(lambda r: " + ".join(c for c in mt.columns if r[c]) or "(none)", axis=1)
        counts = labels.value_counts().rename_axis("combination").reset_index(name="n_cases")
        return counts.sort_values(["n_cases", "combination"], ascending=[False, True]).reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """Cases, events, censoring, follow-up and modality coverage, as plain Python values."""
        t, e = self.time, self.event
        mt = self.modality_table()
        missing = {f: int(self.cases[f].isna().sum()) for f in self.clinical_fields}
        known = self.has_survival  # a prediction-only cohort has no times and events to summarise
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "n_cases": len(self),
            "n_events": int(e.sum()) if known else None,
            "censoring_rate": float(1.0 - e.mean()) if known else None,
            "time_median_months": float(np.median(t)) if known else None,
            "time_range_months": [float(t.min()), float(t.max())] if known else None,
            "n_slides": len(self.slides),
            "n_omics_features": 0 if self.omics is None else int(self.omics.shape[1]),
            "coverage": {c: int(mt[c].sum()) for c in mt.columns},
            "combinations": dict(zip(*self.modality_counts().to_dict("list").values(), strict=True)),
            "clinical_missing": missing,
            **({"notes": list(self.meta.get("notes", []))} if self.meta.get("notes") else {}),
        }

    def subset(self, case_ids: Iterable[str]) -> Cohort:
        """A new cohort restricted to ``case_ids`` (order kept; unknown ids are an error)."""
        ids = list(case_ids)
        unknown = pd.Index(ids).difference(self.cases.index)
        if len(unknown):
            raise InputError(f"cohort {self.name!r} has no case(s) {unknown[:5].tolist()}")
        omics = None if self.omics is None else self.omics.loc[self.omics.index.intersection(ids)]
        slides = self.slides[self.slides["case_id"].isin(ids)].reset_index(drop=True)
        return replace(self, cases=self.cases.loc[ids].copy(), omics=omics, slides=slides, meta=dict(self.meta))


# ----------------------------------------------------------------------------------------- loading
def _find_feature(feature_dir: Path, slide_id: str) -> Path | None:
    stem = slide_stem(slide_id)
    for name in (stem, str(slide_id)):
        for sfx in _FEATURE_SUFFIXES:
            p = feature_dir / f"{name}{sfx}"
            if p.is_file():
                return p
    return None


def _parse_survival(
    df: pd.DataFrame, m: ColumnMapping, src: str, on_invalid: Policy, min_time: float | None
) -> tuple[pd.DataFrame, list[str]]:
    """Add ``time`` (months) / ``event`` columns; returns the kept rows and notes.

    A negative time is invalid data (``on_invalid``: an error naming its line and value by default) and is
    never floored. A time of exactly 0 is floored to ``min_time`` months with a warning when ``min_time`` is
    given (TCGA records deaths / last contacts on the day of diagnosis as 0), else it is invalid too.
    """
    notes: list[str] = []
    ev_col = m.event if m.event is not None else m.censorship
    for col in (m.time, ev_col):
        if col not in df.columns:
            raise DataError(f"{src}: column {col!r} not found (columns: {list(df.columns)[:12]}...)")
    raw_time = pd.to_numeric(df[m.time], errors="coerce")
    time = raw_time * _TIME_UNITS[m.time_unit]
    raw_ev = pd.to_numeric(df[ev_col], errors="coerce")
    t = time.to_numpy(dtype=float)
    bad_time = ~np.isfinite(t)
    bad_ev = ~raw_ev.isin([0, 1]).to_numpy()
    negative = (~bad_time) & (t < 0)
    zero = (~bad_time) & (t == 0)
    if zero.any() and min_time is not None:
        notes.append(
            f"{int(zero.sum())} case(s) with survival time 0 set to {min_time:.4g} months ({_rows(df, zero)} of {src})"
        )
        log.warning("%s", notes[-1])
        time = time.where(~zero, min_time)
        zero = np.zeros(len(df), bool)
    problems = []
    if bad_time.any():
        problems.append(f"{int(bad_time.sum())} missing/non-numeric {m.time!r} at {_rows(df, bad_time)}")
    if negative.any():
        problems.append(f"{int(negative.sum())} negative {m.time!r} at {_cells(df, negative, m.time)}")
    if zero.any():
        problems.append(f"{int(zero.sum())} zero {m.time!r} at {_rows(df, zero)}")
    if bad_ev.any():
        problems.append(f"{int(bad_ev.sum())} {ev_col!r} value(s) missing or not 0/1 at {_rows(df, bad_ev)}")
    drop = bad_time | negative | zero | bad_ev
    if drop.any():
        _apply_policy(on_invalid, f"{src}: invalid survival data: " + "; ".join(problems), "on_invalid_survival")
        notes.append(f"dropped {int(drop.sum())} case(s) with invalid survival data")
    out = df.loc[~drop].copy()
    out["time"] = time[~drop].astype(np.float64)
    ev = raw_ev[~drop].astype(int) == 1
    out["event"] = ev if m.event is not None else ~ev
    out["event"] = out["event"].astype(bool)
    _check_time_unit(raw_time[~drop].to_numpy(dtype=float), m, src, notes)
    return out, notes


#: Median follow-ups outside this range (months) are implausible for a survival cohort: the unit is
#: probably wrong (days given as months give medians in the hundreds; months given as years in the hundreds).
PLAUSIBLE_MEDIAN_MONTHS = (1.0, 240.0)


def months_per_unit(unit: str) -> float:
    """Months in one ``unit`` (``days``, ``weeks``, ``months``, ``years``; a month is 365.25 / 12 days)."""
    if unit not in _TIME_UNITS:
        raise InputError(f"time unit must be one of {', '.join(_TIME_UNITS)}; got {unit!r}")
    return _TIME_UNITS[unit]


def time_unit_warning(raw: Any, unit: str, src: str) -> str | None:
    """The warning for survival times whose median, read in ``unit``, is outside
    :data:`PLAUSIBLE_MEDIAN_MONTHS` (naming the unit under which it would be plausible and how to set it);
    None when the median is plausible."""
    arr = np.asarray(raw, dtype=np.float64)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if not len(arr):
        return None
    med = float(np.median(arr))
    months = med * months_per_unit(unit)
    lo, hi = PLAUSIBLE_MEDIAN_MONTHS
    if lo <= months <= hi:
        return None
    fits = {u: med * f for u, f in _TIME_UNITS.items() if u != unit and lo <= med * f <= hi}
    text = (
        f"{src}: median follow-up {med:.4g} {unit} = {months:.4g} months is implausible (expected {lo:g}-{hi:g} months)"
    )
    if fits:
        best = min(fits, key=lambda u: abs(np.log(fits[u] / 24.0)))
        text += (
            f"; the times look like {best} (median {fits[best]:.3g} months). If so, set `cohort.time_unit: {best}` "
            f"in the run config, `--time-unit {best}` on the command line, or time_unit={best!r} in Python"
        )
    return text


def _check_time_unit(raw: np.ndarray, m: ColumnMapping, src: str, notes: list[str]) -> None:
    text = time_unit_warning(raw, m.time_unit, src)
    if text:
        notes.append(text)
        log.warning("%s", text)


def _parse_omics(omics: pd.DataFrame, src: str, case_col: str, nonfinite: str) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    if case_col not in omics.columns:
        raise DataError(f"{src}: column {case_col!r} not found (first columns: {list(omics.columns)[:5]})")
    if omics.columns.has_duplicates:
        dup_cols = omics.columns[omics.columns.duplicated()].unique().tolist()
        raise DataError(f"{src}: column(s) {dup_cols[:5]} appear more than once; name each column once")
    omics = omics.copy()
    omics[case_col] = omics[case_col].astype(str).str.strip()
    omics = _drop_exact_duplicates(omics, src, notes)
    dup = omics[case_col].duplicated()
    if dup.any():
        raise DataError(
            f"{src}: duplicate case id(s) {omics.loc[dup, case_col].unique()[:5].tolist()} at {_rows(omics, dup)}"
        )
    omics = omics.set_index(case_col)
    non_numeric = [c for c in omics.columns if not pd.api.types.is_numeric_dtype(omics[c])]
    if non_numeric:
        raise DataError(
            f"{src}: non-numeric omics column(s) {non_numeric[:5]}"
            + (f" (+{len(non_numeric) - 5} more)" if len(non_numeric) > 5 else "")
            + "; omics values must be numbers"
        )
    values = omics.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = omics.columns[bad.any(axis=0)].tolist()
        rows, cidx = np.nonzero(bad)
        cells = ", ".join(
            f"case {omics.index[r]!r} column {omics.columns[c]!r}" for r, c in zip(rows[:5], cidx[:5], strict=True)
        )
        more = f" (+{int(bad.sum()) - 5} more)" if bad.sum() > 5 else ""
        msg = f"{src}: {int(bad.sum())} NaN/inf value(s) in {len(cols)} column(s): {cells}{more}"
        if nonfinite == "error":
            raise DataError(
                f"{msg}. Fix the file, or set `cohort.omics_nonfinite: drop_columns` or `zero` in the run config "
                "(--omics-nonfinite on the command line, omics_nonfinite= in Python)"
            )
        if nonfinite == "drop_columns":
            omics = omics.drop(columns=cols)
            notes.append(f"{msg}; those columns were dropped (cohort.omics_nonfinite=drop_columns)")
        elif nonfinite == "zero":
            omics = omics.mask(~np.isfinite(omics.to_numpy(dtype=np.float64)), 0.0)
            notes.append(f"{msg}; set to 0 (cohort.omics_nonfinite=zero; no statistic fitted, so no leakage)")
        else:
            raise InputError(f"`omics_nonfinite` must be 'error', 'drop_columns' or 'zero', got {nonfinite!r}")
        log.warning("%s", notes[-1])
    return omics.astype(np.float32), notes


def load_cohort(
    clinical: str | Path | pd.DataFrame,
    *,
    mapping: ColumnMapping | None = None,
    omics: str | Path | pd.DataFrame | None = None,
    slides: str | Path | pd.DataFrame | None = None,
    slide_dir: str | Path | None = None,
    feature_dir: str | Path | None = None,
    name: str | None = None,
    endpoint: str = "os",
    on_invalid_survival: Policy = "error",
    on_unmatched: Policy = "error",
    on_missing_features: Policy = "error",
    omics_nonfinite: str = "error",
    min_time: float | None = None,
    time_unit: str | None = None,
    survival: Literal["required", "optional"] = "required",
) -> Cohort:
    """Load and validate a cohort from a clinical table and optional omics / slide tables.

    Parameters
    ----------
    clinical
        CSV/TSV path (or DataFrame) with one row per case -- or one row per slide, when a case has
        several slides and all its non-slide columns agree. Tables are read by :func:`read_table`
        (encoding and separator sniffed). An exact duplicate row (every column equal to an earlier row)
        is dropped with a warning naming its line; rows of one case that disagree are an error.
    mapping
        Column names (default: the TCGA layout, ``survival_months`` + ``censorship``).
    omics
        Table with the mapping's case-id column and numeric feature columns (one row per case).
    slides
        Table ``case_id, slide_id`` (one row per slide) when slides are not in the clinical table.
    slide_dir
        Folder holding the slide files (``slide_path`` is filled for the ones found).
    feature_dir
        Folder of feature files named ``<slide stem>.h5`` / ``.pt`` (CLAM/TRIDENT layout).
    on_invalid_survival
        Missing / non-positive times and events other than 0/1: ``'error'`` or ``'drop'`` (warned).
    on_unmatched
        Omics rows or slides whose case id matches no case: ``'error'`` or ``'drop'``.
    on_missing_features
        With ``feature_dir``, slides without a feature file: ``'error'`` or ``'drop'`` the slide (the case
        stays, marked as lacking pathology).
    omics_nonfinite
        NaN/inf in omics: ``'error'`` (naming case and column), ``'drop_columns'`` or ``'zero'`` (the run
        config's ``cohort.omics_nonfinite``).
    min_time
        If given, survival times of exactly 0 are set to this value (months) with a warning instead of being
        invalid. Negative times are always invalid.
    time_unit
        Unit of the time column (``days``, ``weeks``, ``months``, ``years``), converted to months here;
        overrides ``mapping.time_unit``. A median follow-up outside 1-240 months after conversion is warned
        about, naming the unit the times look like.
    survival
        ``"optional"``: a table without the time column (or with it empty in every row) loads as a
        prediction-only cohort (``has_survival`` False: ``time`` NaN, ``event`` False); a table with
        survival data is validated as usual. ``"required"`` (default): survival columns must be there.
    """
    if survival not in ("required", "optional"):
        raise InputError(f"`survival` must be 'required' or 'optional', got {survival!r}")
    m = mapping or ColumnMapping()
    if time_unit is not None:
        m = replace(m, time_unit=time_unit)
    src, df = _read_clinical(clinical, m)
    dup_notes: list[str] = []
    df = _drop_exact_duplicates(df, src, dup_notes)
    has_survival = survival == "required" or (m.time in df.columns and df[m.time].notna().any())
    if has_survival:
        df, notes = _parse_survival(df, m, src, on_invalid_survival, min_time)
    else:
        notes = [f"{src}: no survival data (column {m.time!r} absent or empty): a prediction-only cohort"]
        log.info("%s", notes[0])
        df = df.assign(time=np.nan, event=False)
    notes = dup_notes + notes
    df, slide_col, slide_rows = _split_slide_rows(df, m, src)
    cases = _case_table(df, m, slide_col, src)
    slide_rows = _slide_table(slide_rows, slides, cases.index, src, on_unmatched)
    slide_rows["slide_path"] = None
    slide_rows["feature_path"] = None
    if slide_dir is not None:
        slide_rows["slide_path"] = _find_slide_files(slide_rows, Path(slide_dir), notes)
    if feature_dir is not None:
        slide_rows = _attach_feature_files(slide_rows, Path(feature_dir), on_missing_features, notes)
    om = None
    if omics is not None:
        om = _load_omics(omics, m.case_id, cases.index, omics_nonfinite, on_unmatched, notes)
    cohort_name = name or (Path(src).parent.name if not isinstance(clinical, pd.DataFrame) else "cohort")
    return Cohort(
        name=cohort_name,
        cases=cases,
        omics=om,
        slides=slide_rows[["case_id", "slide_id", "slide_path", "feature_path"]],
        endpoint=endpoint,
        meta={"source": src, "notes": notes},
        has_survival=has_survival,
    )


def _read_clinical(clinical: str | Path | pd.DataFrame, m: ColumnMapping) -> tuple[str, pd.DataFrame]:
    """``(source name, table)`` of the clinical table, with stripped, non-empty case ids and a fresh index."""
    if isinstance(clinical, pd.DataFrame):
        src, df = "<clinical table>", clinical.copy()
    else:
        src, df = str(clinical), read_table(clinical, dtype={m.case_id: str})
    if m.case_id not in df.columns:
        raise DataError(f"{src}: column {m.case_id!r} not found (columns: {list(df.columns)[:12]})")
    df[m.case_id] = df[m.case_id].astype(str).str.strip()
    empty_id = df[m.case_id].isin(["", "nan", "None"])
    if empty_id.any():
        raise DataError(f"{src}: empty {m.case_id!r} at {_rows(df, empty_id)}")
    return src, df.reset_index(drop=True)


def _split_slide_rows(df: pd.DataFrame, m: ColumnMapping, src: str) -> tuple[pd.DataFrame, str | None, pd.DataFrame]:
    """``(one row per case, slide-id column or None, slide rows case_id/slide_id)`` of the clinical table.

    Several rows per case are allowed only as several slides whose case-level columns agree.
    """
    slide_col = m.slide_id if (m.slide_id and m.slide_id in df.columns) else None
    slide_rows = pd.DataFrame(columns=["case_id", "slide_id"])
    if slide_col:
        slide_rows = df[[m.case_id, slide_col]].dropna().rename(columns={m.case_id: "case_id", slide_col: "slide_id"})
        slide_rows["slide_id"] = slide_rows["slide_id"].astype(str).str.strip()
    dup = df[m.case_id].duplicated(keep=False)
    if dup.any():
        case_cols = [c for c in df.columns if c != slide_col]
        conflicting = df.loc[dup].groupby(m.case_id)[case_cols].nunique(dropna=False).gt(1).any(axis=1)
        if slide_col is None or conflicting.any():
            bad_ids = conflicting[conflicting].index.tolist() if slide_col else df.loc[dup, m.case_id].unique().tolist()
            raise DataError(
                f"{src}: duplicate case id(s) {bad_ids[:5]} at {_rows(df, df[m.case_id].isin(bad_ids))}"
                + (" with conflicting values" if slide_col else "")
                + "; each case must appear once (several rows are allowed only for several slides of one case)"
            )
        df = df.drop_duplicates(subset=[m.case_id], keep="first")
    return df, slide_col, slide_rows


def _case_table(df: pd.DataFrame, m: ColumnMapping, slide_col: str | None, src: str) -> pd.DataFrame:
    """The cases table: indexed by ``case_id``, clinical columns under survpgc's field names, the raw survival
    and slide columns dropped, empty strings as missing."""
    cases = df.set_index(m.case_id)
    cases.index.name = "case_id"
    rename = {}
    for fld, col in m.clinical.items():
        if col in cases.columns and col != fld:
            rename[col] = fld
    cases = cases.rename(columns=rename)
    for fld in m.clinical:
        if fld not in cases.columns:
            log.debug("clinical field %r not in %s: missing for every case", fld, src)
    drop_cols = [c for c in (m.time, m.event, m.censorship, slide_col) if c and c in cases.columns]
    drop_cols = [c for c in drop_cols if c not in ("time", "event")]
    cases = cases.drop(columns=drop_cols)
    # normalise empty strings to missing in text fields
    for col in cases.columns:
        if cases[col].dtype == object:
            cases[col] = cases[col].map(lambda v: np.nan if isinstance(v, str) and v.strip() == "" else v)
    return cases


def _slide_table(
    slide_rows: pd.DataFrame,
    slides: str | Path | pd.DataFrame | None,
    case_index: pd.Index,
    src: str,
    on_unmatched: Policy,
) -> pd.DataFrame:
    """Slide rows of the clinical table plus those of the ``slides`` table; slides of unknown cases handled by
    ``on_unmatched``; a slide listed for two cases is an error."""
    if slides is not None:
        ssrc = "<slides table>" if isinstance(slides, pd.DataFrame) else str(slides)
        st = slides.copy() if isinstance(slides, pd.DataFrame) else read_table(slides, dtype=str)
        for col in ("case_id", "slide_id"):
            if col not in st.columns:
                raise DataError(f"{ssrc}: column {col!r} not found (columns: {list(st.columns)})")
        st = st[["case_id", "slide_id"]].astype(str)
        slide_rows = pd.concat([slide_rows, st], ignore_index=True)
    slide_rows = slide_rows.drop_duplicates().reset_index(drop=True)  # one (case, slide) pair listed twice
    unmatched = ~slide_rows["case_id"].isin(case_index)
    if unmatched.any():
        _apply_policy(
            on_unmatched,
            f"{int(unmatched.sum())} slide(s) belong to no case in {src}: "
            f"{slide_rows.loc[unmatched, 'slide_id'].head(5).tolist()}",
            "on_unmatched",
        )
        slide_rows = slide_rows.loc[~unmatched].reset_index(drop=True)
    dup_slide = slide_rows["slide_id"].duplicated(keep=False)
    if dup_slide.any():
        raise DataError(
            f"slide id(s) {slide_rows.loc[dup_slide, 'slide_id'].unique()[:5].tolist()} are listed for "
            "more than one case; a slide belongs to exactly one patient"
        )
    return slide_rows


def _find_slide_files(slide_rows: pd.DataFrame, sd: Path, notes: list[str]) -> list[str | None]:
    """``slide_path`` of each slide row: ``<sd>/<slide_id>`` when that file exists, else None (noted)."""
    if not sd.is_dir():
        raise DataError(f"slide folder {sd} does not exist")
    paths = [sd / s if (sd / s).is_file() else None for s in slide_rows["slide_id"]]
    n_missing = sum(p is None for p in paths)
    if n_missing:
        notes.append(f"{n_missing} slide file(s) not found in {sd}")
        log.warning("%s", notes[-1])
    return [str(p) if p else None for p in paths]


def _attach_feature_files(slide_rows: pd.DataFrame, fd: Path, on_missing: Policy, notes: list[str]) -> pd.DataFrame:
    """Fill ``feature_path`` from ``fd``; slides without a feature file are handled by ``on_missing``."""
    if not fd.is_dir():
        raise DataError(f"feature folder {fd} does not exist")
    found = [_find_feature(fd, s) for s in slide_rows["slide_id"]]
    missing = np.array([p is None for p in found], dtype=bool)
    if missing.any():
        _apply_policy(
            on_missing,
            f"{int(missing.sum())} of {len(found)} slide(s) have no feature file "
            f"(<slide stem>.h5 or .pt) in {fd}: {slide_rows.loc[missing, 'slide_id'].head(5).tolist()}",
            "on_missing_features",
        )
        notes.append(f"{int(missing.sum())} slide(s) without feature files dropped")
        slide_rows = slide_rows.loc[~missing].reset_index(drop=True)
        found = [p for p in found if p is not None]
    slide_rows["feature_path"] = [str(p) for p in found]
    return slide_rows


def _load_omics(
    omics: str | Path | pd.DataFrame,
    case_col: str,
    case_index: pd.Index,
    nonfinite: str,
    on_unmatched: Policy,
    notes: list[str],
) -> pd.DataFrame:
    """The validated omics table indexed by case id; rows of unknown cases handled by ``on_unmatched``."""
    osrc = "<omics table>" if isinstance(omics, pd.DataFrame) else str(omics)
    raw = omics if isinstance(omics, pd.DataFrame) else read_table(omics, dtype={case_col: str})
    om, om_notes = _parse_omics(raw, osrc, case_col, nonfinite)
    notes += om_notes
    unmatched_o = ~om.index.isin(case_index)
    if unmatched_o.any():
        _apply_policy(
            on_unmatched,
            f"{osrc}: {int(unmatched_o.sum())} omics row(s) match no case: {om.index[unmatched_o][:5].tolist()}",
            "on_unmatched",
        )
        om = om.loc[~unmatched_o]
    n_without = int((~case_index.isin(om.index)).sum())
    if n_without:
        notes.append(f"{n_without} case(s) have no omics row (kept, marked as missing omics)")
        log.info("%s", notes[-1])
    return om


def load_tcga(
    path: str | Path,
    *,
    endpoint: str = "os",
    feature_dir: str | Path | None = None,
    slide_dir: str | Path | None = None,
    name: str | None = None,
    on_invalid_survival: Policy = "error",
    on_unmatched: Policy = "drop",
    on_missing_features: Policy = "error",
    omics_nonfinite: str = "error",
    min_time: float | None = ONE_DAY_MONTHS,
    time_unit: str = "months",
    survival: Literal["required", "optional"] = "required",
) -> Cohort:
    """Load a cohort directory in the TCGA layout: ``cohort.csv``, optional ``omics.csv.gz``.

    ``endpoint`` selects ``os`` (``survival_months``/``censorship``), ``dss`` or ``pfs`` (the ``_dss`` /
    ``_pfs`` columns, where they exist). Survival times of 0 (5 LIHC cases, all censored) are set to
    ``min_time`` (one day) by default, with a warning; pass ``min_time=None`` to treat them as invalid.
    Omics rows of cases absent from ``cohort.csv`` are dropped with a warning by default
    (``on_unmatched='drop'``; the LIHC omics table has 2 such rows).
    A ``slides/`` sub-folder is used as ``slide_dir`` when present and none is given.
    ``time_unit`` is the unit of the survival columns (``months`` in TCGA tables; ``days``, ``weeks``,
    ``years`` are converted to months). Negative times are an error (``on_invalid_survival``).
    ``survival="optional"``: a ``cohort.csv`` without survival columns loads as a prediction-only cohort
    (see :func:`load_cohort`).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected cohort.csv, omics.csv.gz, splits_survpgc/)")
    table = root / "cohort.csv"
    if not table.is_file():
        raise DataError(f"{root}: cohort.csv not found")
    ep = endpoint.lower()
    mapping = replace(ColumnMapping.tcga(ep), time_unit=time_unit)
    header = read_table(table, nrows=0).columns
    if mapping.time not in header and survival != "optional":
        raise DataError(f"{table}: endpoint {endpoint!r} needs column {mapping.time!r}, which is absent")
    omics_path = next((p for p in (root / "omics.csv.gz", root / "omics.csv") if p.is_file()), None)
    if slide_dir is None and (root / "slides").is_dir():
        slide_dir = root / "slides"
    cohort = load_cohort(
        table,
        mapping=mapping,
        omics=omics_path,
        slide_dir=slide_dir,
        feature_dir=feature_dir,
        name=name or root.name,
        endpoint=ep,
        on_invalid_survival=on_invalid_survival,
        on_unmatched=on_unmatched,
        on_missing_features=on_missing_features,
        omics_nonfinite=omics_nonfinite,
        min_time=min_time,
        survival=survival,
    )
    # drop the other endpoints' columns: they are outcomes, never features
    outcome_cols = [c for c in cohort.cases.columns if c.startswith(("survival_months", "censorship"))]
    cohort.cases = cohort.cases.drop(columns=outcome_cols)
    cohort.meta["root"] = str(root)
    if (root / "splits_survpgc").is_dir():
        cohort.meta["paper_splits"] = str(root / "splits_survpgc")
    return cohort


def list_builtin() -> list[str]:
    """Names of the cohorts shipped with survpgc."""
    return sorted(BUILTIN_COHORTS)


def builtin_path(name: str) -> Path:
    """Folder of a built-in cohort inside the installed package."""
    key = name.lower()
    if key not in BUILTIN_COHORTS:
        raise InputError(
            f"unknown built-in cohort {name!r}; built-in: {list_builtin()}. "
            "Other cohorts (e.g. TCGA-BRCA) load from a folder: load_tcga(PATH)."
        )
    return Path(str(resources.files("survpgc") / "resources" / BUILTIN_COHORTS[key]))


def load_builtin(name: str = "tcga-lihc", **kwargs: Any) -> Cohort:
    """Load a built-in cohort (``tcga-lihc``: 354 cases, 125 deaths; omics for 331)."""
    return load_tcga(builtin_path(name), name=name.lower(), **kwargs)


def open_cohort(source: str | Path, **kwargs: Any) -> Cohort:
    """A built-in name (``tcga-lihc``) or a folder in the TCGA layout."""
    if str(source).lower() in BUILTIN_COHORTS:
        return load_builtin(str(source), **kwargs)
    return load_tcga(source, **kwargs)
