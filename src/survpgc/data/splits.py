"""Patient-level cross-validation splits that cannot leak.

Every case (= patient; all of a patient's slides travel with it) is in exactly one test fold. Inside each
fold's training part a validation part is held out for model selection, depending on the protocol:

* ``nested`` (default) -- train / validation / test are disjoint; model selection uses validation only.
* ``paper`` -- reproduces the reference implementation, where the "validation" set used to pick the epoch
  **is the test fold**. Its numbers are optimistic and are labelled so wherever they appear.
* ``last-epoch`` -- no validation part; the last epoch is used.

Folds are stratified by event status and time quantile, deterministic by seed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import DataError, InputError
from survpgc.files import umask

__all__ = [
    "PROTOCOLS",
    "Fold",
    "Splits",
    "load_splits",
    "make_splits",
    "protocol_label",
]

log = logging.getLogger(__name__)

PROTOCOLS: dict[str, str] = {
    "nested": "nested: model selection on a validation part held out from each training fold",
    "paper": (
        "paper: OPTIMISTIC - model selection on the test fold itself, as in the reference implementation; "
        "results overestimate performance"
    ),
    "last-epoch": "last-epoch: no model selection, the last epoch of training is evaluated",
}


def protocol_label(protocol: str) -> str:
    """One-line description of a protocol, with the optimism warning for ``paper``."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


@dataclass(frozen=True)
class Fold:
    """Case ids of one fold. Under ``paper`` protocol ``val`` equals ``test``; under ``last-epoch`` it is
    empty."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def part(self, name: str) -> tuple[str, ...]:
        """``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split part {name!r}; use train, val or test")
        return getattr(self, name)


@dataclass
class Splits:
    """All folds of a cross-validation plus how they were made."""

    folds: list[Fold]
    protocol: str = "nested"
    seed: int | None = None
    source: str = "stratified k-fold"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        protocol_label(self.protocol)
        self.check()

    def __len__(self) -> int:
        return len(self.folds)

    def __iter__(self):
        return iter(self.folds)

    def __getitem__(self, i: int) -> Fold:
        return self.folds[i]

    @property
    def optimistic(self) -> bool:
        """True for the ``paper`` protocol (selection on the test fold)."""
        return self.protocol == "paper"

    @property
    def label(self) -> str:
        return protocol_label(self.protocol)

    @property
    def case_ids(self) -> list[str]:
        """All cases, in test-fold order."""
        return [c for f in self.folds for c in f.test]

    def check(self, case_ids: Iterable[str] | None = None) -> None:
        """Raise :class:`DataError` if any fold leaks or the folds do not partition the cases.

        Checks: train / val / test disjoint in every fold (except val == test under ``paper``); no case
        in two test folds; every fold uses the same cases; every case in a test fold (imported splits may
        leave some cases untested -- the paper's LIHC folds never test one case -- which is then logged and
        recorded in ``meta['untested']``); with ``case_ids``, the splits use exactly those cases.
        """
        seen: dict[str, int] = {}
        for f in self.folds:
            tr, va, te = set(f.train), set(f.val), set(f.test)
            if len(tr) != len(f.train) or len(te) != len(f.test) or len(va) != len(f.val):
                raise DataError(f"fold {f.index}: a case is listed twice within one part")
            if tr & te:
                raise DataError(f"fold {f.index}: case(s) {sorted(tr & te)[:5]} are in both train and test")
            if tr & va:
                raise DataError(f"fold {f.index}: case(s) {sorted(tr & va)[:5]} are in both train and val")
            if self.protocol == "paper":
                if va != te:
                    raise DataError(f"fold {f.index}: protocol 'paper' requires val == test")
            elif va & te:
                raise DataError(f"fold {f.index}: case(s) {sorted(va & te)[:5]} are in both val and test")
            if self.protocol == "last-epoch" and va:
                raise DataError(f"fold {f.index}: protocol 'last-epoch' has no validation part")
            for c in f.test:
                if c in seen:
                    raise DataError(f"case {c!r} is in the test part of folds {seen[c]} and {f.index}")
                seen[c] = f.index
        tested = set(seen)
        universe = set().union(*(set(f.train) | set(f.val) | set(f.test) for f in self.folds))
        for f in self.folds:
            fold_ids = set(f.train) | set(f.val) | set(f.test)
            if fold_ids != universe:
                missing = sorted(universe - fold_ids)[:5]
                raise DataError(f"fold {f.index} leaves out case(s) {missing} that other folds use")
        untested = sorted(universe - tested)
        if untested:
            msg = f"{len(untested)} case(s) are in no test fold (e.g. {untested[:3]})"
            if not self.meta.get("allow_untested"):
                raise DataError(msg + "; every case must be tested exactly once")
            if self.meta.get("untested") != untested:
                log.warning("%s; they are only ever used for training (imported splits).", msg)
            self.meta["untested"] = untested
        if case_ids is not None:
            want = set(case_ids)
            if want != universe:
                raise DataError(
                    f"splits do not match the cohort: {len(want - universe)} cohort case(s) absent from the "
                    f"splits (e.g. {sorted(want - universe)[:3]}), {len(universe - want)} split case(s) not in "
                    f"the cohort (e.g. {sorted(universe - want)[:3]})"
                )

    def to_frame(self) -> pd.DataFrame:
        """Long table ``fold, case_id, split`` (split ∈ train / val / test; under ``paper`` the test cases
        appear as ``test`` only, since val is the test fold)."""
        rows = []
        for f in self.folds:
            rows += [(f.index, c, "train") for c in f.train]
            if self.protocol != "paper":
                rows += [(f.index, c, "val") for c in f.val]
            rows += [(f.index, c, "test") for c in f.test]
        return pd.DataFrame(rows, columns=["fold", "case_id", "split"])

    def to_dir(self, path: str | Path) -> Path:
        """Write ``fold_<k>.csv`` (``case_id, split``) per fold and ``splits.json`` (protocol, seed, source).

        Written to a temporary folder and renamed into place, so a reader never sees half the folds.
        """
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            table = self.to_frame()
            for f in self.folds:
                part = table[table["fold"] == f.index][["case_id", "split"]]
                part.to_csv(tmp / f"fold_{f.index}.csv", index=False)
            meta = {
                "protocol": self.protocol,
                "protocol_label": self.label,
                "seed": self.seed,
                "source": self.source,
                "n_folds": len(self.folds),
                **self.meta,
            }
            (tmp / "splits.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
            # mkdtemp makes the folder 0700: give it the permissions an ordinary mkdir would (0777 minus umask)
            os.chmod(tmp, 0o777 & ~umask())
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


# ----------------------------------------------------------------------------------------- making
def _strata(time: np.ndarray, event: np.ndarray, n_time_bins: int, min_count: int) -> np.ndarray:
    """Stratum label per case: event × time-quantile bin, coarsened until each stratum has
    ``min_count`` cases (down to event only, then a single stratum)."""
    for nb in range(n_time_bins, 0, -1):
        if nb > 1:
            tb = pd.qcut(pd.Series(time).rank(method="first"), nb, labels=False).to_numpy()
        else:
            tb = np.zeros(len(time), dtype=int)
        labels = event.astype(int) * nb + tb
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= min_count:
            return labels
    labels = event.astype(int)
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() >= min_count:
        return labels
    return np.zeros(len(time), dtype=int)


def _stratified_folds(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Assign each case a fold 0..n_folds-1 so that every stratum spreads evenly over folds."""
    fold = np.empty(len(labels), dtype=int)
    offset = 0
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        idx = idx[rng.permutation(len(idx))]
        # round-robin continuing from the previous stratum keeps fold sizes within one of each other
        fold[idx] = (np.arange(len(idx)) + offset) % n_folds
        offset = (offset + len(idx)) % n_folds
    return fold


def _validation_part(
    ids: np.ndarray, time: np.ndarray, event: np.ndarray, fraction: float, rng: np.random.Generator, n_time_bins: int
) -> np.ndarray:
    """Boolean mask of the validation cases inside a training part, stratified like the folds."""
    n_val = max(1, round(fraction * len(ids)))
    if n_val >= len(ids):
        raise DataError(f"validation fraction {fraction} leaves no training cases out of {len(ids)}")
    labels = _strata(time, event, n_time_bins, min_count=2)
    mask = np.zeros(len(ids), dtype=bool)
    # proportional allocation per stratum (largest remainders), then random choice inside the stratum
    labs, counts = np.unique(labels, return_counts=True)
    quota = counts * n_val / len(ids)
    take = np.floor(quota).astype(int)
    rest = n_val - take.sum()
    if rest > 0:
        order = np.argsort(-(quota - take) + rng.random(len(labs)) * 1e-9, kind="stable")
        take[order[:rest]] += 1
    for lab, k in zip(labs, take, strict=True):
        idx = np.flatnonzero(labels == lab)
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask


def make_splits(
    case_ids: Sequence[str],
    time: Sequence[float] | np.ndarray,
    event: Sequence[bool] | np.ndarray,
    *,
    n_folds: int = 5,
    val_fraction: float = 0.15,
    protocol: str = "nested",
    seed: int = 0,
    n_time_bins: int = 4,
) -> Splits:
    """Patient-level stratified K-fold with a validation part inside each training part.

    Parameters
    ----------
    case_ids, time, event
        One entry per case (a :class:`~survpgc.data.cohort.Cohort` gives ``case_ids``, ``time``, ``event``).
    n_folds
        Number of test folds (every case is tested exactly once).
    val_fraction
        Share of each training part held out for model selection (``nested`` protocol).
    protocol
        ``nested`` | ``paper`` (val = test, optimistic) | ``last-epoch`` (no validation).
    seed
        Same seed, same folds.
    n_time_bins
        Time-quantile strata per event group (coarsened automatically for small cohorts).
    """
    from survpgc.survival.convention import check_survival

    protocol_label(protocol)
    ids = np.asarray([str(c) for c in case_ids], dtype=object)
    t, e = check_survival(time, event)
    if len(ids) != len(t):
        raise InputError(f"{len(ids)} case ids but {len(t)} survival times")
    if len(set(ids)) != len(ids):
        raise DataError("duplicate case ids: splits are made per patient, each case must appear once")
    if not isinstance(n_folds, int) or n_folds < 2:
        raise InputError(f"`n_folds` must be an integer >= 2, got {n_folds!r}")
    if len(ids) < n_folds:
        raise DataError(f"{len(ids)} cases cannot fill {n_folds} folds")
    n_events = int(e.sum())
    if n_events < n_folds:
        raise DataError(
            f"only {n_events} event(s) for {n_folds} folds: some test folds would have no death and no "
            "C-index; use fewer folds"
        )
    if protocol == "nested" and not 0.0 < val_fraction < 1.0:
        raise InputError(f"`val_fraction` must lie in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = _strata(t, e, n_time_bins, min_count=n_folds)
    fold_of = _stratified_folds(labels, n_folds, rng)
    folds = []
    for k in range(n_folds):
        test_mask = fold_of == k
        train_idx = np.flatnonzero(~test_mask)
        test = tuple(ids[test_mask])
        if protocol == "nested":
            vmask = _validation_part(ids[train_idx], t[train_idx], e[train_idx], val_fraction, rng, n_time_bins)
            train, val = tuple(ids[train_idx[~vmask]]), tuple(ids[train_idx[vmask]])
        elif protocol == "paper":
            train, val = tuple(ids[train_idx]), test
        else:
            train, val = tuple(ids[train_idx]), ()
        folds.append(Fold(k, train, val, test))
    return Splits(
        folds,
        protocol=protocol,
        seed=seed,
        source="stratified k-fold",
        meta={"val_fraction": val_fraction if protocol == "nested" else None, "n_time_bins": n_time_bins},
    )


# ----------------------------------------------------------------------------------------- loading
def load_splits(
    path: str | Path,
    *,
    protocol: str | None = None,
    cohort: Any | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    n_time_bins: int = 4,
) -> Splits:
    """Import splits: a folder of ``fold_<k>.csv`` (``case_id, split``) -- the paper's
    ``splits_survpgc/`` or one written by :meth:`Splits.to_dir` -- or one CSV ``case_id, fold, split``.

    ``split`` values: ``train``, ``val`` (optional) and ``test``. When the files have no ``val`` rows:
    ``protocol='paper'`` uses the test fold for selection (as the reference; optimistic),
    ``'nested'`` carves a stratified validation part out of each training part (needs ``cohort`` for
    the survival data), ``'last-epoch'`` uses none. Default protocol: ``splits.json``'s when present,
    else ``nested`` if the files have val rows, else ``paper``.

    With ``cohort``, the splits must cover exactly the cohort's cases (a clear error otherwise).
    """
    p = Path(path)
    meta: dict[str, Any] = {}
    if p.is_dir():
        files = list(p.glob("fold_*.csv"))
        if not files:
            raise DataError(f"{p}: no fold_<k>.csv files")
        bad_names = [f.name for f in files if not f.stem[len("fold_") :].isdigit()]
        if bad_names:
            raise DataError(f"{p}: expected file names fold_<integer>.csv, found {bad_names[:3]}")
        frames = []
        for f in sorted(files, key=lambda q: int(q.stem[len("fold_") :])):
            df = _read_split_csv(f, {"case_id", "split"})
            df["fold"] = int(f.stem[len("fold_") :])
            frames.append(df)
        table = pd.concat(frames, ignore_index=True)
        if (p / "splits.json").is_file():
            meta = json.loads((p / "splits.json").read_text())
    elif p.is_file():
        table = _read_split_csv(p, {"case_id", "fold", "split"})
    else:
        raise DataError(f"{p}: no such split file or folder")
    has_val = bool((table["split"] == "val").any())
    proto = protocol or meta.get("protocol") or ("nested" if has_val else "paper")
    protocol_label(proto)
    if proto == "nested" and not has_val and cohort is None:
        raise InputError(
            f"{p} has no validation rows; protocol 'nested' needs the cohort to carve them out "
            "(pass cohort=...), or choose protocol 'paper' / 'last-epoch'"
        )
    rng = np.random.default_rng(seed)
    folds = []
    for k in sorted(table["fold"].unique()):
        part = table[table["fold"] == k]
        train = tuple(part.loc[part["split"] == "train", "case_id"])
        val = tuple(part.loc[part["split"] == "val", "case_id"])
        test = tuple(part.loc[part["split"] == "test", "case_id"])
        if proto == "paper":
            train, val = train + tuple(c for c in val if c not in test), test
        elif proto == "last-epoch":
            train, val = train + val, ()
        elif not has_val:
            t, e = cohort.survival(train)
            vmask = _validation_part(np.asarray(train, dtype=object), t, e, val_fraction, rng, n_time_bins)
            tr = np.asarray(train, dtype=object)
            train, val = tuple(tr[~vmask]), tuple(tr[vmask])
        folds.append(Fold(int(k), train, val, test))
    splits = Splits(
        folds, protocol=proto, seed=seed, source=str(p), meta={"imported_from": str(p), "allow_untested": True}
    )
    if cohort is not None:
        splits.check(cohort.case_ids)
    return splits


def _read_split_csv(path: Path, required: set[str]) -> pd.DataFrame:
    from survpgc.data.cohort import read_table

    df = read_table(path, dtype={"case_id": str})
    missing = required - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)} (columns: {list(df.columns)})")
    df["case_id"] = df["case_id"].astype(str).str.strip()
    df["split"] = df["split"].astype(str).str.strip().str.lower().replace({"validation": "val", "valid": "val"})
    bad = ~df["split"].isin(["train", "val", "test"])
    if bad.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(bad.to_numpy())[:5])
        raise DataError(
            f"{path}: split value(s) {df.loc[bad, 'split'].unique()[:5].tolist()} at line(s) {rows}; "
            "use train, val or test"
        )
    keys = ["case_id", "fold"] if "fold" in df.columns else ["case_id"]
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        raise DataError(f"{path}: case(s) {df.loc[dup, 'case_id'].unique()[:5].tolist()} listed twice in one fold")
    return df
