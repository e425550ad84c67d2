"""Atomic file writes: nothing half-written ever appears under a final name.

Every writer in survpgc goes through :func:`atomic_write`: the content is written to a temporary file in
the destination folder (``.<name>.<random>.tmp``) and renamed over the destination when complete; on any
error the temporary file is removed and the destination is left as it was. The file gets the permissions
an ordinary ``open(path, "w")`` would give it (0666 minus the umask), not the temporary file's private 0600.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from survpgc.errors import DataError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_settings",
    "safe_name",
    "same_setting",
    "umask",
]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then rename it to ``path`` (folders are created)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions an ordinary open() would (0666 minus umask)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def umask() -> int:
    """The process umask (read by setting and restoring it; the two calls are adjacent, so the window in
    which another thread could create a file under the temporary value is a few instructions)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda t: t.write_bytes(data))


def safe_name(name: str) -> str:
    """A model id (or any label) as a file-name part (``snn:genomic`` -> ``snn_genomic``).

    The one function that turns ids into file names: the run directory names its files with it, and the config
    refuses model ids that would collide under it.
    """
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def same_setting(a: object, b: object) -> bool:
    """Whether two recorded settings are the same (feature-file attributes, folder records, bundle specs).

    Numbers compare with a relative tolerance of 1e-6 (a magnification read back from HDF5 or JSON), booleans
    only with booleans, lists and tuples element by element; anything else with ``==``.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_setting(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def read_settings(folder: Path, name: str) -> dict[str, Any] | None:
    """The settings record ``folder/name``, or None when the folder has none."""
    p = folder / name
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{p}: the settings record of this folder is not valid JSON ({exc}); it says how the files beside it "
            "were made -- restore it, or write to another --out folder"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{p}: the settings record of this folder is not a JSON object; write to another --out folder")
    return data
