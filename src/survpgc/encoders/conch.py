"""CONCH (Lu et al. 2024), a pathology vision-language model, as a patch encoder and as a text encoder.

Both use the ``conch`` package (``pip install git+https://github.com/mahmoodlab/CONCH.git``) and the gated
checkpoint ``pytorch_model.bin`` on disk: an explicit path (``weights=`` / ``checkpoint=``), env
``SURVPGC_CONCH_CHECKPOINT``, or ``MahmoodLab/conch`` already in the Hugging Face cache. Licence CC-BY-NC-ND 4.0
(non-commercial). The vision tower gives 512-d features of 448 px patches (CLIP mean/std, bicubic); the text
tower 512-d sentence vectors (``encode_text(normalize=False)``, normalised by survpgc when asked).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from survpgc.devices import resolve_device
from survpgc.encoders.patch_base import PatchEncoder, PatchEncoderSpec, encoder_from_spec
from survpgc.encoders.text_base import TextEncoder, TextEncoderSpec
from survpgc.encoders.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from survpgc.encoders.weights import describe_file, locate_weights
from survpgc.errors import ConfigError

__all__ = [
    "CONCH_CHECKPOINT_ENV",
    "CONCH_PATCH_SPEC",
    "CONCH_REPO",
    "CONCH_TEXT_SPEC",
    "ConchTextEncoder",
    "conch_checkpoint",
    "conch_module",
    "make_conch_patch_encoder",
]

#: Environment variable naming the local CONCH checkpoint file (``pytorch_model.bin``).
CONCH_CHECKPOINT_ENV = "SURVPGC_CONCH_CHECKPOINT"
#: Hugging Face repository of the CONCH weights (looked up in the local cache only).
CONCH_REPO = "MahmoodLab/conch"
_CONCH_INSTALL = "pip install git+https://github.com/mahmoodlab/CONCH.git"


def conch_module(kind: str) -> ModuleType:
    """``conch.open_clip_custom``; ConfigError naming the ``kind`` of encoder and how to install it otherwise."""
    try:
        return importlib.import_module("conch.open_clip_custom")
    except ImportError as exc:
        raise ConfigError(
            f"{kind} 'conch' needs the CONCH package (module 'conch'): {_CONCH_INSTALL}; its weights are "
            f"gated: request access at https://huggingface.co/{CONCH_REPO} and set {CONCH_CHECKPOINT_ENV}"
        ) from exc


def _checkpoint_file(checkpoint: str | Path) -> Path:
    p = Path(checkpoint).expanduser()
    if p.is_dir():
        p = p / "pytorch_model.bin"
    if not p.is_file():
        raise ConfigError(
            f"CONCH checkpoint {str(p)!r} not found; pass the path of pytorch_model.bin (checkpoint=... or env "
            f"{CONCH_CHECKPOINT_ENV}). The weights are gated: request access at "
            f"https://huggingface.co/{CONCH_REPO} and download them yourself; survpgc never downloads."
        )
    return p


def conch_checkpoint(checkpoint: str | Path | None = None) -> Path:
    """The CONCH checkpoint: ``checkpoint`` (a file, or a folder holding ``pytorch_model.bin``), else env
    :data:`CONCH_CHECKPOINT_ENV`, else ``MahmoodLab/conch`` in the local Hugging Face cache."""
    return locate_weights(
        checkpoint,
        env=CONCH_CHECKPOINT_ENV,
        repo=CONCH_REPO,
        filenames=("pytorch_model.bin",),
        check=_checkpoint_file,
        not_found=(
            f"no CONCH checkpoint found: set {CONCH_CHECKPOINT_ENV}=/path/to/pytorch_model.bin (or pass "
            f"checkpoint=...), or have {CONCH_REPO} in the local Hugging Face cache (HF_HOME / HF_HUB_CACHE). The "
            f"weights are gated (CC-BY-NC-ND 4.0): request access at https://huggingface.co/{CONCH_REPO}; survpgc "
            "never downloads."
        ),
    )


def _create_model(occ: ModuleType, model_cfg: str, checkpoint: Path, device: torch.device) -> Any:
    """The CONCH model from ``create_model_from_pretrained`` (its first element when it returns a tuple)."""
    arch = f"CONCH {model_cfg}"
    try:  # the package reads it with torch.load, whose default (torch >= 2.6) is weights_only=True
        res = occ.create_model_from_pretrained(model_cfg, checkpoint_path=str(checkpoint), device=str(device))
    except Exception as exc:  # whatever the package raises on a checkpoint of another model
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"CONCH: {str(checkpoint)!r} is not a checkpoint of {arch} ({type(exc).__name__}: {reason})"
        ) from exc
    return res[0] if isinstance(res, tuple) else res


# ----------------------------------------------------------------------------- vision tower
def _conch_forward(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.encode_image(x, proj_contrast=False, normalize=False)


def make_conch_patch_encoder(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    model_cfg: str = "conch_ViT-B-16",
    **kwargs: Any,
) -> PatchEncoder:
    """The CONCH vision tower as a patch encoder (``encode_image(proj_contrast=False, normalize=False)``)."""
    occ = conch_module("patch encoder")
    ckpt = conch_checkpoint(weights)
    dev = resolve_device(device)
    model = _create_model(occ, model_cfg, ckpt, dev)
    if not isinstance(model, nn.Module) or not callable(getattr(model, "encode_image", None)):
        raise ConfigError("CONCH: create_model_from_pretrained did not return a model with encode_image()")
    return encoder_from_spec(
        CONCH_PATCH_SPEC,
        model,
        weights=describe_file(ckpt),
        device=dev,
        precision=precision,
        forward=_conch_forward,
        **kwargs,
    )


CONCH_PATCH_SPEC = PatchEncoderSpec(
    name="conch",
    dim=512,
    input_size=448,
    license="CC-BY-NC-ND-4.0 (non-commercial; gated on Hugging Face)",
    gated=True,
    weights=(
        f"local pytorch_model.bin: weights=..., env {CONCH_CHECKPOINT_ENV}, or {CONCH_REPO} already in the "
        "Hugging Face cache"
    ),
    requires=("conch",),
    description="CONCH vision tower (encode_image, proj_contrast=False, normalize=False), 448 px, CLIP mean/std",
    factory=make_conch_patch_encoder,
    mean=OPENAI_CLIP_MEAN,
    std=OPENAI_CLIP_STD,
    interpolation="bicubic",
    channels_last=False,
)


# ----------------------------------------------------------------------------- text tower
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
        conch_module("text encoder")
        self.checkpoint = conch_checkpoint(checkpoint)
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
        occ = conch_module("text encoder")
        model = _create_model(occ, self.model_cfg, self.checkpoint, self.device)
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


CONCH_TEXT_SPEC = TextEncoderSpec(
    name="conch",
    dim=512,
    license="CC-BY-NC-ND-4.0 (non-commercial; gated on Hugging Face)",
    gated=True,
    weights=(
        f"local pytorch_model.bin: checkpoint=..., env {CONCH_CHECKPOINT_ENV}, "
        f"or {CONCH_REPO} already in the Hugging Face cache"
    ),
    requires=("conch",),
    description="CONCH pathology vision-language model, text tower (encode_text)",
    factory=ConchTextEncoder,
)
