"""Normalisation of clinical values before they are put into sentences.

Every value goes through :func:`normalize_value`, which returns

* ``None`` when the value is missing (NaN/None, empty, or a TCGA/GDC "missing" spelling such as
  ``"not reported"``, ``"unknown"``, ``"[Not Available]"``, ``"--"``);
* ``True``/``False`` for yes/no fields (prior malignancy, treatments);
* otherwise the display string that replaces the placeholder in a template.

Display forms (chosen so that sentences read naturally and equal values give equal sentences):

=================  ==============================================================================
field kind         rule
=================  ==============================================================================
age                integer years (floats are floored: completed years); 0-120, else an error
sex                ``male`` / ``female`` (``M``/``F`` accepted); other values lower-cased
stage              ``stage IIIA`` (``Stage IIIA``, ``stage iiia``, ``IIIA``, ``Stage 3A`` all map to it);
                   ``Stage X`` (not assessable) counts as missing
edition            ordinal: ``7th`` (``7``, ``7.0``, ``seventh``, ``AJCC 7th edition`` map to it)
race               lower case (``Black or African American`` -> ``black or african american``)
text (subtype)     whitespace collapsed; capitalised words lower-cased (``Hepatocellular carcinoma`` ->
                   ``hepatocellular carcinoma``), acronyms and mixed-case words kept (``IDC``, ``pT2``)
bool               ``yes/no``, ``true/false``, ``y/n``, ``1/0``
=================  ==============================================================================
"""

from __future__ import annotations

import math
import re
from numbers import Number
from typing import Any

import numpy as np

from survpgc.errors import DataError, InputError

__all__ = [
    "MISSING_SPELLINGS",
    "VALUE_KINDS",
    "is_missing",
    "normalize_age",
    "normalize_bool",
    "normalize_edition",
    "normalize_race",
    "normalize_sex",
    "normalize_stage",
    "normalize_text",
    "normalize_value",
]

#: Spellings (compared lower-case, brackets and surrounding quotes removed) that mean "missing".
MISSING_SPELLINGS: frozenset[str] = frozenset(
    {
        "",
        "nan",
        "na",
        "n/a",
        "null",
        "--",
        "-",
        "missing",
        "unknown",
        "not reported",
        "not available",
        "not applicable",
        "not evaluated",
        "not specified",
        "unspecified",
        "discrepancy",
        "unknown tumor status",
    }
)

#: Value kinds understood by :func:`normalize_value`.
VALUE_KINDS: tuple[str, ...] = ("text", "age", "sex", "stage", "edition", "race", "bool")

_ROMAN = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV"}
_ROMAN_OK = {"0", "I", "II", "III", "IV"}
_STAGE_RE = re.compile(
    r"^(?:(?:ajcc|pathologic|pathological|clinical|overall|tumou?r)\s+)*(?:stage\s*)?"
    r"(?P<num>[0-4]|i{1,3}v?|iv|x)(?P<sub>[abc]?)(?P<subn>[1-3]?)$",
    re.IGNORECASE,
)
_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
_EDITION_RE = re.compile(r"^(?:ajcc\s+)?(?P<n>\d{1,2})(?:\.0+)?\s*(?:st|nd|rd|th)?(?:\s+edition)?$", re.IGNORECASE)
_AGE_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*\+?\s*(?:years?|yrs?|y)?(?:\s+old)?$", re.IGNORECASE)
_TRUE = frozenset({"yes", "y", "true", "t", "1", "1.0"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "0.0"})


def _clean(value: Any) -> str:
    s = re.sub(r"\s+", " ", str(value)).strip()
    return s.strip("'\"").strip()


def is_missing(value: Any) -> bool:
    """Whether ``value`` means "not recorded" (NaN, None, empty or a missing spelling such as "[Not Available]")."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    s = _clean(value).lower()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1].strip()
    return s in MISSING_SPELLINGS


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def normalize_age(value: Any) -> str | None:
    """Age in completed years as a string (``58.9`` -> ``"58"``); None when missing; DataError when implausible."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"age must be a number of years, got the boolean {value!r}")
    if isinstance(value, Number):
        x = float(value)  # type: ignore[arg-type]
    else:
        m = _AGE_RE.match(_clean(value))
        if m is None:
            raise DataError(f"age {value!r} is not a number of years")
        x = float(m.group("n"))
    if not math.isfinite(x):
        return None
    if x < 0 or x > 120:
        hint = " (it looks like days; convert to years)" if abs(x) > 365 else ""
        raise DataError(f"age {value!r} is outside 0-120 years{hint}")
    return str(math.floor(x))


def normalize_sex(value: Any) -> str | None:
    """``male`` / ``female`` (``M``/``F``, any case); other values lower-cased; None when missing."""
    if is_missing(value):
        return None
    s = _clean(value).lower()
    return {"m": "male", "f": "female", "man": "male", "woman": "female"}.get(s, s)


def normalize_stage(value: Any) -> str | None:
    """``"stage IIIA"`` from ``"Stage IIIA"``, ``"stage iiia"``, ``"IIIA"``, ``"Stage 3A"``; ``Stage X`` -> None."""
    if is_missing(value):
        return None
    if isinstance(value, Number) and not isinstance(value, bool):
        value = str(int(value)) if float(value) == int(value) else str(value)  # type: ignore[arg-type]
    s = _clean(value)
    m = _STAGE_RE.match(s)
    if m is None:
        low = s.lower()
        if low in {"stage unknown", "stage x", "x"}:
            return None
        # unknown format: keep it, only lower-case a leading "Stage"
        return re.sub(r"^stage\b", "stage", s, flags=re.IGNORECASE)
    num = m.group("num").upper()
    if num == "X":
        return None
    num = _ROMAN.get(num, num)
    if num not in _ROMAN_OK:
        return re.sub(r"^stage\b", "stage", s, flags=re.IGNORECASE)
    return f"stage {num}{m.group('sub').upper()}{m.group('subn')}"


def normalize_edition(value: Any) -> str | None:
    """AJCC edition as an ordinal (``7``, ``7.0``, ``"7th"``, ``"seventh"``, ``"AJCC 7th edition"`` -> ``"7th"``)."""
    if is_missing(value):
        return None
    if isinstance(value, Number) and not isinstance(value, bool):
        x = float(value)  # type: ignore[arg-type]
        if x == int(x) and x > 0:
            return _ordinal(int(x))
        raise DataError(f"staging edition {value!r} is not a positive whole number")
    s = _clean(value)
    low = re.sub(r"\s+edition$", "", s.lower())
    low = re.sub(r"^ajcc\s+", "", low)
    if low in _ORDINAL_WORDS:
        return _ordinal(_ORDINAL_WORDS[low])
    m = _EDITION_RE.match(s)
    if m is not None and int(m.group("n")) > 0:
        return _ordinal(int(m.group("n")))
    return s.lower()


def normalize_race(value: Any) -> str | None:
    """Race in lower case, whitespace collapsed; None when missing."""
    if is_missing(value):
        return None
    return _clean(value).lower()


def normalize_text(value: Any) -> str | None:
    """Free text (subtype, diagnosis): whitespace collapsed, capitalised words lower-cased, acronyms kept."""
    if is_missing(value):
        return None
    words = _clean(value).replace("_", " ").split(" ")
    return " ".join(w.lower() if len(w) > 1 and w[0].isupper() and w[1:].islower() else w for w in words)


def normalize_bool(value: Any) -> bool | None:
    """yes/no style values to bool; None when missing; DataError for anything else."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    s = _clean(value).lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise DataError(f"{value!r} is not a yes/no value (expected yes/no, true/false, 1/0)")


_BY_KIND = {
    "text": normalize_text,
    "age": normalize_age,
    "sex": normalize_sex,
    "stage": normalize_stage,
    "edition": normalize_edition,
    "race": normalize_race,
    "bool": normalize_bool,
}


def normalize_value(kind: str, value: Any) -> str | bool | None:
    """Normalise ``value`` for a field of the given ``kind`` (one of :data:`VALUE_KINDS`)."""
    try:
        fn = _BY_KIND[kind]
    except KeyError:
        raise InputError(f"unknown value kind {kind!r}; known: {list(VALUE_KINDS)}") from None
    return fn(value)
