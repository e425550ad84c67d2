"""Output folders that two processes can share without mixing or repeating work.

Three tools, used by every command that writes a folder (``extract``, ``run``, ...):

- :func:`output_dir` checks up front that the folder can be written (before an encoder loads or a slide is
  read) and, when the command fails before writing anything, removes the folder it created, so a failed
  command leaves no empty ``--out`` behind.
- :func:`folder_lock` is an exclusive lock on the folder for short critical sections (the settings record, the
  manifest merge, the run-level tables). A second process waits up to ``wait`` seconds, then gets a
  :class:`~survpgc.errors.BusyError` naming the holder's pid, host, command and start time.
- :func:`claim` is a non-blocking claim of one work item (a slide, a fold × model pair): two processes on one
  folder take the items the other has not claimed, and neither repeats the other's work. Claims and locks are
  ``flock`` locks (the ``filelock`` package), so they vanish with their process, even after ``kill -9``.

:func:`sweep_temporaries` removes the temporary files a killed process left (``.<name>.<random>.tmp`` from
:func:`survpgc.files.atomic_write`); call it only while holding the lock or the claim of what they belong to.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from survpgc.errors import BusyError, InputError
from survpgc.files import atomic_write_text, safe_name

__all__ = [
    "LOCK_NAME",
    "Claim",
    "claim",
    "folder_lock",
    "output_dir",
    "sweep_temporaries",
]

#: The lock file of a folder (its holder's description is beside it, in ``<LOCK_NAME>.json``).
LOCK_NAME = ".survpgc.lock"
_CLAIMS = ".claims"


def _holder_info() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _describe_holder(info_file: Path) -> str:
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} (`{info['command']}`, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its pid was not recorded)"


def _file_lock(path: Path):
    from filelock import FileLock

    return FileLock(str(path), thread_local=False)


@contextmanager
def folder_lock(folder: str | os.PathLike[str], *, wait: float = 0.0, what: str = "folder") -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created when absent) for the ``with`` block.

    ``wait`` is how many seconds to wait for another holder (0: refuse at once; negative: wait for ever).
    Raises :class:`BusyError` naming the holder when the lock is not free in time.
    """
    from filelock import Timeout

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    lock = _file_lock(root / LOCK_NAME)
    info = root / f"{LOCK_NAME}.json"
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise BusyError(
            f"{what} {root} is in use by {_describe_holder(info)}; wait for it to finish, or write to another folder"
        ) from None
    try:
        atomic_write_text(info, json.dumps(_holder_info()))
        yield
    finally:
        lock.release()


class Claim:
    """A held claim of one work item; release it with :meth:`release` or by leaving its ``with`` block."""

    def __init__(self, lock, name: str, path: Path) -> None:
        self._lock = lock
        self.name = name
        self.path = path

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(folder: str | os.PathLike[str], name: str) -> Claim | None:
    """Claim work item ``name`` of ``folder`` without waiting; ``None`` when another process holds it."""
    from filelock import Timeout

    claims = Path(folder) / _CLAIMS
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / f"{safe_name(name)}.lock"
    lock = _file_lock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return Claim(lock, name, path)


def holder_of(folder: str | os.PathLike[str]) -> str:
    """Who holds (or last held) the lock of ``folder``, in words (for messages)."""
    return _describe_holder(Path(folder) / f"{LOCK_NAME}.json")


def sweep_temporaries(
    folder: str | os.PathLike[str], names: Iterable[str] | None = None, *, recursive: bool = False
) -> list[Path]:
    """Remove the temporary files of :func:`survpgc.files.atomic_write` left by a killed process.

    ``names``: only the temporaries of these final file names (``.<name>.<random>.tmp``); ``None``: every
    ``.*.tmp`` file. ``recursive`` also sweeps sub-folders. Returns the removed paths.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    patterns = [f".{n}.*.tmp" for n in names] if names is not None else [".*.tmp"]
    removed: list[Path] = []
    for pattern in patterns:
        for p in root.rglob(pattern) if recursive else root.glob(pattern):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _bookkeeping_only(root: Path) -> bool:
    """True when ``root`` holds nothing but lock files and claims (nothing a user would want to keep)."""
    for p in root.iterdir():
        if p.name == _CLAIMS and p.is_dir():
            continue
        if p.name.startswith(LOCK_NAME):
            continue
        return False
    return True


@contextmanager
def output_dir(path: str | os.PathLike[str], *, option: str = "--out") -> Iterator[Path]:
    """Create the output folder ``path`` and check up front that files can be written there.

    Raises :class:`InputError` naming the folder and the option it came from when it cannot be created or
    written. When the ``with`` block raises and the folder was created here and holds nothing but lock
    files, it is removed again: a command that fails at once leaves no empty folder behind.
    """
    root = Path(path)
    created = not root.exists()
    if root.exists() and not root.is_dir():
        raise InputError(f"{option} {root} exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".survpgc-write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink(missing_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot write to {option} {root}: {reason}") from None
    try:
        yield root
    except BaseException:
        if created and root.is_dir() and _bookkeeping_only(root):
            shutil.rmtree(root, ignore_errors=True)
        raise
