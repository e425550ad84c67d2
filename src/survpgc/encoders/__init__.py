"""Encoders that turn raw inputs into feature vectors.

* :mod:`survpgc.encoders.text` -- text encoders for clinical sentences (``minilm``, ``conch``, local models).

Submodules are imported on demand (``from survpgc.encoders.text import create_text_encoder``) so that
importing this package stays cheap.
"""
