"""The survival convention of survpgc, enforced at every boundary.

* ``time``  -- float64, months, finite and strictly positive;
* ``event`` -- bool, ``True`` = death (the event) observed, ``False`` = censored;
* ``risk``  -- float64, finite; **higher = worse** (shorter expected survival).

External conventions are converted here and only here:

* :func:`event_from_censorship` -- the reference implementations' ``censorship`` column
  (1 = censored, 0 = event observed);
* :func:`lifelines_score_from_risk` -- lifelines' concordance expects *higher = longer survival*.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from survpgc.errors import (
    EmptyInputError,
    InputError,
    InvalidEventError,
    InvalidRiskError,
    InvalidTimeError,
    LengthMismatchError,
    NoEventError,
)

__all__ = [
    "SurvivalArrays",
    "as_1d_array",
    "check_risk",
    "check_survival",
    "event_from_censorship",
    "lifelines_score_from_risk",
    "to_structured",
]


class SurvivalArrays(NamedTuple):
    """Validated survival data: ``time`` (float64, n) and ``event`` (bool, n)."""

    time: np.ndarray
    event: np.ndarray


def as_1d_array(values: Any, name: str) -> np.ndarray:
    """Turn a list / tuple / numpy array / pandas Series / torch tensor into a 1-D numpy array.

    Parameters
    ----------
    values
        Any 1-D array-like. A 2-D input with one column (n × 1) is accepted and flattened.
    name
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of shape (n,)

    Raises
    ------
    InputError
        When the input is not one-dimensional or cannot be converted.
    EmptyInputError
        When the input holds no element.
    """
    if values is None:
        raise InputError(f"`{name}` is None; expected a 1-D array of per-case values")
    # torch tensors: detach and move to CPU without importing torch here.
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()
    elif hasattr(values, "to_numpy"):  # pandas Series / Index / single-column DataFrame
        values = values.to_numpy()
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise InputError(f"`{name}` cannot be converted to an array: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 0:
        raise InputError(f"`{name}` is a scalar; expected a 1-D array of per-case values")
    if arr.ndim != 1:
        raise InputError(f"`{name}` must be 1-D (one value per case), got shape {arr.shape}")
    if arr.size == 0:
        raise EmptyInputError(f"`{name}` is empty; at least one case is needed")
    return arr


def _to_float(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == object or arr.dtype.kind in "USV":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"`{name}` holds non-numeric values: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise InputError(f"`{name}` must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _first_bad(mask: np.ndarray, arr: np.ndarray, limit: int = 5) -> str:
    idx = np.flatnonzero(mask)[:limit]
    shown = ", ".join(f"[{i}]={_plain(arr[i])!r}" for i in idx)
    more = f" (and {int(mask.sum()) - len(idx)} more)" if mask.sum() > len(idx) else ""
    return shown + more


def _check_time(time: Any, name: str) -> np.ndarray:
    arr = _to_float(as_1d_array(time, name), name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidTimeError(
            f"`{name}` has {int(bad.sum())} NaN/inf value(s) at {_first_bad(bad, arr)}; "
            "survival times must be finite months > 0"
        )
    bad = arr <= 0
    if bad.any():
        raise InvalidTimeError(
            f"`{name}` has {int(bad.sum())} non-positive value(s) at {_first_bad(bad, arr)}; "
            "survival times must be > 0 months (a time of 0 usually means a data-entry problem)"
        )
    return arr


def _check_event(event: Any, name: str) -> np.ndarray:
    arr = as_1d_array(event, name)
    if arr.dtype == bool:
        return arr.copy()
    if arr.dtype == object:
        ok = np.array([isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)) for v in arr])
        if not ok.all():
            raise InvalidEventError(
                f"`{name}` holds non-numeric value(s) at {_first_bad(~ok, arr)}; "
                "events must be 0/1 or True/False (True = death observed)"
            )
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidEventError(f"`{name}` cannot be read as 0/1: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise InvalidEventError(
            f"`{name}` has dtype {arr.dtype}; events must be 0/1 or True/False (True = death observed)"
        )
    with np.errstate(invalid="ignore"):
        bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        raise InvalidEventError(
            f"`{name}` has {int(bad.sum())} value(s) other than 0/1/True/False at "
            f"{_first_bad(bad, arr)}; True/1 = death observed, False/0 = censored"
        )
    return arr == 1


def check_survival(
    time: Any,
    event: Any,
    *,
    require_event: bool = False,
    time_name: str = "time",
    event_name: str = "event",
) -> SurvivalArrays:
    """Validate survival data at a boundary and return it in the survpgc convention.

    Parameters
    ----------
    time
        Shape (n,), months, finite and > 0. Lists, numpy, pandas and torch are accepted.
    event
        Shape (n,), 0/1 or bool; ``True`` = death observed, ``False`` = censored.
    require_event
        Raise :class:`NoEventError` when no case has an observed event.
    time_name, event_name
        Names used in error messages (e.g. ``"train_time"``).

    Returns
    -------
    SurvivalArrays
        ``time`` as float64 (n,), ``event`` as bool (n,). Copies; the input is never modified.

    Raises
    ------
    EmptyInputError, LengthMismatchError, InvalidTimeError, InvalidEventError, NoEventError
    """
    t = _check_time(time, time_name)
    e = _check_event(event, event_name)
    if t.shape[0] != e.shape[0]:
        raise LengthMismatchError(
            f"`{time_name}` has {t.shape[0]} cases but `{event_name}` has {e.shape[0]}; "
            "they must describe the same cases"
        )
    if require_event and not e.any():
        raise NoEventError(
            f"`{event_name}` has no observed event among {e.shape[0]} case(s) (all censored); "
            "this metric needs at least one death"
        )
    return SurvivalArrays(t, e)


def check_risk(risk: Any, n: int | None = None, *, name: str = "risk") -> np.ndarray:
    """Validate a risk score vector (higher = worse): finite float64 of shape (n,)."""
    arr = _to_float(as_1d_array(risk, name), name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidRiskError(
            f"`{name}` has {int(bad.sum())} NaN/inf value(s) at {_first_bad(bad, arr)}; "
            "risk scores must be finite (did the model diverge?)"
        )
    if n is not None and arr.shape[0] != n:
        raise LengthMismatchError(f"`{name}` has {arr.shape[0]} values but there are {n} cases")
    return arr


def event_from_censorship(censorship: Any, name: str = "censorship") -> np.ndarray:
    """Convert the anchors' ``censorship`` (1 = censored, 0 = death observed) to ``event`` (bool).

    This is the only place in survpgc where that column's orientation is interpreted.
    """
    censored = _check_event(censorship, name)
    return ~censored


def lifelines_score_from_risk(risk: np.ndarray) -> np.ndarray:
    """lifelines' ``concordance_index`` expects *higher = longer survival*: negate our risk."""
    return -np.asarray(risk, dtype=np.float64)


def to_structured(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """scikit-survival's structured array (fields ``event``, ``time``) from validated arrays."""
    out = np.empty(len(time), dtype=[("event", bool), ("time", np.float64)])
    out["event"] = event
    out["time"] = time
    return out
