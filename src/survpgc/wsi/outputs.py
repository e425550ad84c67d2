"""The bookkeeping of a slide output folder (``extract`` / ``segment``): settings record and merged manifest.

* **Settings record** (``extraction.json`` / ``segmentation.json``): how every file of the folder was made
  (encoder and weight fingerprint, feature dim, patch size, magnification / target mpp, segmentation preset,
  min tissue, float16, survpgc version). It is written atomically on first use, under the folder lock, and a
  later command is checked against it *before* its encoder loads: a mismatch is refused with one line that
  names both values of each differing setting (``key: folder X vs requested Y``), so a folder never mixes
  files made with other settings. A folder written before records existed is checked against the attributes
  of its feature files instead (and then gets its record).
* **Manifest** (``manifest.csv`` / ``segment.csv``): one row per slide, merged across runs and processes
  under the folder lock -- a slide's latest row replaces its older row, other slides' rows are kept, so no
  run ever drops another's history. A ``skipped`` row (the file was already there) never replaces the
  ``done`` row of the run that made it.

Both are folder-level files: their stale temporaries (``kill -9`` during a write) are swept while the folder
lock is held.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from survpgc.data.features import EXTRACTION_RECORD
from survpgc.errors import ConfigError, DataError
from survpgc.faults import fault_point
from survpgc.files import atomic_write, atomic_write_text, read_settings, same_setting
from survpgc.locks import folder_lock, sweep_temporaries

__all__ = [
    "EXTRACTION_RECORD",
    "LOCK_WAIT",
    "SEGMENTATION_RECORD",
    "check_settings",
    "merge_manifest",
    "read_settings",
    "record_settings",
]

#: Settings record of a segmentation folder (``survpgc segment``).
SEGMENTATION_RECORD = "segmentation.json"
#: Seconds a process waits for another's short critical section (settings record, manifest merge).
LOCK_WAIT = 120.0
#: Keys that only describe the record (never compared).
_INFO_KEYS = ("survpgc_version", "created", "kind")


def _conflicts(folder: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    out = []
    for key, value in requested.items():
        if key in _INFO_KEYS or value is None:
            continue
        have = folder.get(key)
        if have is None:  # not known for the folder (older record, or unknown before the encoder loaded)
            continue
        if not same_setting(have, value):
            out.append(f"{key}: folder {have!r} vs requested {value!r}")
    return out


def check_settings(
    folder: Path,
    name: str,
    requested: Mapping[str, Any],
    *,
    legacy: Mapping[str, Any] | None = None,
    option: str = "--out",
) -> dict[str, Any] | None:
    """Refuse ``requested`` settings that differ from the folder's record (or, without a record, from
    ``legacy``: the settings read from the folder's existing files). Returns the folder's record (or None)."""
    record = read_settings(folder, name)
    have = record if record is not None else legacy
    if have is None:
        return None
    conflicts = _conflicts(have, requested)
    if conflicts:
        where = f"{folder / name}" if record is not None else f"its existing files ({have.get('source', '?')})"
        raise ConfigError(
            f"{option} {folder} was made with other settings ({'; '.join(conflicts)}; recorded in {where}); "
            f"write these results to another {option} folder, or rerun with the folder's settings"
        )
    return record


def record_settings(
    folder: Path,
    name: str,
    settings: Mapping[str, Any],
    *,
    legacy: Mapping[str, Any] | None = None,
    option: str = "--out",
) -> dict[str, Any]:
    """Check ``settings`` against the folder's record again and write the record when it is absent (or lacks
    keys now known), atomically and under the folder lock. Returns the record as written."""
    with folder_lock(folder, wait=LOCK_WAIT, what=f"{option} folder"):
        sweep_temporaries(folder, [name])
        record = check_settings(folder, name, settings, legacy=legacy, option=option)
        merged = dict(settings)
        if record is not None:
            merged = {**settings, **{k: v for k, v in record.items() if v is not None}}
        else:
            merged.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
        if merged != record:
            atomic_write_text(folder / name, json.dumps(merged, indent=2, sort_keys=True) + "\n")
        return merged


def _read_manifest(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the manifest ({exc}); move it aside (its rows are rebuilt as slides are redone)"
        ) from None


def merge_manifest(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, option: str = "--out"
) -> pd.DataFrame:
    """Merge ``rows`` (one per slide, keyed by ``slide_id``) into the manifest ``path`` under the folder lock.

    A slide's new row replaces its old one -- except that a ``skipped`` row never replaces a ``done`` row --
    and every other slide's row is kept. Rows are sorted by slide id; the file is written atomically.
    """
    folder = path.parent
    new = pd.DataFrame([{c: _cell(r.get(c, "")) for c in columns} for r in rows], columns=list(columns), dtype=str)
    with folder_lock(folder, wait=LOCK_WAIT, what=f"{option} folder"):
        sweep_temporaries(folder, [path.name])
        old = _read_manifest(path) if path.is_file() else pd.DataFrame(columns=list(columns), dtype=str)
        if "slide_id" in old.columns and len(old):
            done = set(old.loc[old["status"] == "done", "slide_id"]) if "status" in old.columns else set()
            keep_old = new["status"].eq("skipped") & new["slide_id"].isin(done)
            new = new.loc[~keep_old]
            old = old.loc[~old["slide_id"].isin(set(new["slide_id"]))]
        cols = list(columns) + [c for c in old.columns if c not in columns]
        table = pd.concat([old.reindex(columns=cols), new.reindex(columns=cols)], ignore_index=True).fillna("")
        table = table.sort_values("slide_id", kind="stable").reset_index(drop=True)

        def write(tmp: Path) -> None:
            table.to_csv(tmp, index=False)
            fault_point("manifest")

        atomic_write(path, write)
    return table


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)
