"""Omics normalisation fitted on the training cases of a fold only.

:class:`OmicsScaler` learns per-column statistics with :meth:`~OmicsScaler.fit` on the training rows and
applies them unchanged with :meth:`~OmicsScaler.transform` to any rows (train, validation, test). Steps,
in order:

1. ``log=True``: ``log1p`` of the raw values (for raw counts / TPM). Negative values are an error (the
   table is then already normalised, e.g. the z-scored TCGA ``_rnaseq`` columns shipped with survpgc).
2. Missing values (NaN) are imputed with the **training median** of the column (after the log). A column
   with no value at all in the training rows imputes 0 and is treated as constant (warning).
3. ``method="zscore"`` (default): ``(x - mean) / sd`` with the training mean and population sd
   (``ddof=0``, so the training rows come out with mean 0 and sd 1 exactly). ``method="minmax"``: the
   training range ``[min, max]`` is mapped linearly onto ``[-1, 1]`` (the reference baselines' choice).
   Values outside the training range map outside ``[-1, 1]`` unless ``clip=True`` (not clipped by default,
   as scikit-learn's ``MinMaxScaler(feature_range=(-1, 1))`` used by the baselines).
4. Columns constant on the training rows (sd or range ~ 0) carry no learnable scale: they output 0 for
   every row, train or not.

Infinite values are an error in both ``fit`` and ``transform``. The fitted state is plain numbers
(:meth:`~OmicsScaler.to_dict`, :meth:`~OmicsScaler.save`, :meth:`~OmicsScaler.load`) so it can be stored
in a run directory next to the fold's checkpoint.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import DataError, InputError, NotFittedError

__all__ = ["SCALER_METHODS", "OmicsScaler"]

log = logging.getLogger(__name__)

#: Normalisation methods of :class:`OmicsScaler`.
SCALER_METHODS: tuple[str, ...] = ("zscore", "minmax")

_REL_TOL = 1e-9  # a column whose sd / half-range is below this (relative to its magnitude) is constant


def _matrix(df: Any, where: str) -> np.ndarray:
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"OmicsScaler.{where} expects a pandas DataFrame (rows = cases), got {type(df).__name__}")
    if df.shape[0] == 0:
        raise InputError(f"OmicsScaler.{where}: the table has no rows")
    if df.columns.has_duplicates:
        dup = df.columns[df.columns.duplicated()].unique().tolist()
        raise InputError(f"OmicsScaler.{where}: duplicate column(s) {dup[:5]}")
    nonnum = [str(c) for c, t in df.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if nonnum:
        raise DataError(f"OmicsScaler.{where}: non-numeric column(s) {nonnum[:5]}")
    x = df.to_numpy(dtype=np.float64, copy=True)
    inf = np.isinf(x)
    if inf.any():
        r, c = np.argwhere(inf)[0]
        raise DataError(
            f"OmicsScaler.{where}: {int(inf.sum())} infinite value(s), e.g. case {df.index[r]!r}, column "
            f"{df.columns[c]!r}"
        )
    return x


class OmicsScaler:
    """Per-column omics normaliser fitted on training rows only (see the module docstring).

    Parameters
    ----------
    method
        ``"zscore"`` (default) or ``"minmax"`` (to ``[-1, 1]``).
    log
        Apply ``log1p`` first (raw counts / TPM; negative values raise :class:`~survpgc.errors.DataError`).
    clip
        ``minmax`` only: clip transformed values to ``[-1, 1]``.

    Fitted attributes: ``columns_`` (order of the output), ``median_`` (imputation values, after the
    log), ``center_`` and ``scale_`` (``(x - center) / scale``; for minmax center = mid-range, scale =
    half-range), ``constant_`` (bool per column), ``n_train_`` and ``train_ids_``.
    """

    def __init__(self, method: str = "zscore", log: bool = False, clip: bool = False) -> None:
        if method not in SCALER_METHODS:
            raise InputError(f"OmicsScaler: `method` must be one of {list(SCALER_METHODS)}, got {method!r}")
        if clip and method != "minmax":
            raise InputError("OmicsScaler: `clip=True` only applies to method='minmax'")
        self.method = method
        self.log = bool(log)
        self.clip = bool(clip)
        self.columns_: list[str] | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def is_fitted(self) -> bool:
        return self.columns_ is not None

    def _check_fitted(self) -> None:
        if self.columns_ is None:
            raise NotFittedError("OmicsScaler is not fitted: call fit(train_df) on the training cases first")

    def _log(self, x: np.ndarray, df: pd.DataFrame, where: str) -> np.ndarray:
        if not self.log:
            return x
        neg = x < 0  # NaN compares False
        if neg.any():
            cols = [str(df.columns[j]) for j in np.flatnonzero(neg.any(axis=0))]
            raise DataError(
                f"OmicsScaler.{where}: log=True needs non-negative values (raw counts / TPM), but "
                f"{int(neg.sum())} value(s) in {len(cols)} column(s) are negative (e.g. {cols[:3]}, min "
                f"{np.nanmin(x):.4g}); the table looks already normalised/log-transformed: use log=False"
            )
        return np.log1p(x)

    # ------------------------------------------------------------------ fit / transform
    def fit(self, train_df: pd.DataFrame) -> OmicsScaler:
        """Learn the statistics from the training rows ``train_df`` (cases x features)."""
        x = self._log(_matrix(train_df, "fit"), train_df, "fit")
        nan = np.isnan(x)
        empty = nan.all(axis=0)
        if empty.any():
            cols = [str(train_df.columns[j]) for j in np.flatnonzero(empty)]
            log.warning(
                "OmicsScaler.fit: %d column(s) have no value in the training rows (e.g. %s); they output 0",
                len(cols),
                cols[:3],
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            median = np.nanmedian(x, axis=0)
        median = np.where(empty, 0.0, median)
        if nan.any():
            x = np.where(nan, median[None, :], x)
        if self.method == "zscore":
            center, scale = x.mean(axis=0), x.std(axis=0, ddof=0)
        else:
            lo, hi = x.min(axis=0), x.max(axis=0)
            center, scale = (hi + lo) / 2.0, (hi - lo) / 2.0
        constant = empty | (scale <= _REL_TOL * np.maximum(1.0, np.abs(center)))
        self.columns_ = [str(c) for c in train_df.columns]
        self.median_ = median
        self.center_ = center
        self.scale_ = np.where(constant, 1.0, scale)
        self.constant_ = constant
        self.n_train_ = int(x.shape[0])
        self.train_ids_ = [str(i) for i in train_df.index]
        log.debug(
            "OmicsScaler(%s, log=%s) fitted on %d rows x %d columns (%d constant, %d NaN imputed)",
            self.method,
            self.log,
            self.n_train_,
            len(self.columns_),
            int(constant.sum()),
            int(nan.sum()),
        )
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Normalise ``df`` with the fitted statistics; returns float32 with the fitted columns, same index.

        ``df`` must hold every fitted column (extra columns are ignored); NaN is imputed with the training
        median.
        """
        self._check_fitted()
        assert self.columns_ is not None
        missing = [c for c in self.columns_ if c not in df.columns]
        if missing:
            raise DataError(
                f"OmicsScaler.transform: {len(missing)} fitted column(s) absent from the table (e.g. {missing[:5]})"
            )
        sub = df[self.columns_]
        x = self._log(_matrix(sub, "transform"), sub, "transform")
        nan = np.isnan(x)
        if nan.any():
            x = np.where(nan, self.median_[None, :], x)
            log.debug("OmicsScaler.transform: %d NaN value(s) imputed with training medians", int(nan.sum()))
        z = (x - self.center_[None, :]) / self.scale_[None, :]
        z[:, self.constant_] = 0.0
        if self.clip:
            np.clip(z, -1.0, 1.0, out=z)
        return pd.DataFrame(z.astype(np.float32), index=df.index.copy(), columns=list(self.columns_))

    def fit_transform(self, train_df: pd.DataFrame) -> pd.DataFrame:
        """``fit(train_df).transform(train_df)``."""
        return self.fit(train_df).transform(train_df)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The configuration and fitted state as JSON-compatible values."""
        self._check_fitted()
        return {
            "method": self.method,
            "log": self.log,
            "clip": self.clip,
            "columns": list(self.columns_ or []),
            "median": self.median_.tolist(),
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
            "constant": self.constant_.tolist(),
            "n_train": self.n_train_,
            "train_ids": list(self.train_ids_),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OmicsScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        try:
            s = cls(method=d["method"], log=d["log"], clip=d.get("clip", False))
            cols = [str(c) for c in d["columns"]]
            arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("median", "center", "scale")}
            constant = np.asarray(d["constant"], dtype=bool)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"OmicsScaler.from_dict: malformed scaler state: {exc!r}") from exc
        if any(a.shape != (len(cols),) for a in (*arrays.values(), constant)):
            raise DataError("OmicsScaler.from_dict: statistics do not match the number of columns")
        s.columns_ = cols
        s.median_, s.center_, s.scale_ = arrays["median"], arrays["center"], arrays["scale"]
        s.constant_ = constant
        s.n_train_ = int(d.get("n_train", 0))
        s.train_ids_ = [str(i) for i in d.get("train_ids", [])]
        return s

    def save(self, path: str | Path) -> Path:
        """Write the fitted state as JSON (atomically: temporary file, then rename)."""
        from survpgc.files import atomic_write_text

        p = atomic_write_text(path, json.dumps(self.to_dict()))
        return p

    @classmethod
    def load(cls, path: str | Path) -> OmicsScaler:
        """Read a scaler written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: scaler file not found")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}: not a scaler JSON file: {exc}") from exc
        return cls.from_dict(d)

    def __repr__(self) -> str:
        fitted = f", fitted on {self.n_train_} rows x {len(self.columns_)} columns" if self.columns_ else ""
        return f"OmicsScaler(method={self.method!r}, log={self.log}, clip={self.clip}{fitted})"
