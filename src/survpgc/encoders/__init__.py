"""Encoders that turn raw inputs into feature vectors. Nothing is ever downloaded at run time.

Entry points:

* :mod:`survpgc.encoders.patch` -- patch (image tile) encoders: ``create_patch_encoder``, the registry
  (``efficientnet_lite0``, ``uni``, ``timm:<model_name>``, ``conch``).
* :mod:`survpgc.encoders.text` -- text encoders for clinical sentences: ``create_text_encoder``, the registry
  (``minilm``, ``conch``, local or cached models).

Building blocks: :mod:`~survpgc.encoders.patch_base` and :mod:`~survpgc.encoders.text_base` (the encoder
interfaces and registry specs), :mod:`~survpgc.encoders.transforms` (patch transforms),
:mod:`~survpgc.encoders.precision` (autocast rules), :mod:`~survpgc.encoders.weights` (finding local weights:
paths, environment variables, the Hugging Face cache, fingerprints), :mod:`~survpgc.encoders.checkpoints`
(reading and checking state dicts), :mod:`~survpgc.encoders.registry` (the registry class), and one module per
model family (:mod:`~survpgc.encoders.efficientnet`, :mod:`~survpgc.encoders.uni`,
:mod:`~survpgc.encoders.timm_local`, :mod:`~survpgc.encoders.conch`, :mod:`~survpgc.encoders.transformers_text`).

Submodules are imported on demand (``from survpgc.encoders.text import create_text_encoder``) so that
importing this package stays cheap (no torch).
"""
