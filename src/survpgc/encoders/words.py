"""``words``: a lexical baseline text encoder -- a hashed bag of words, no weights, nothing to load.

A sentence is lower-cased and split into words (runs of letters and digits); each word adds ±1 to one of
:data:`WORDS_DIM` buckets, bucket and sign both taken from a BLAKE2b hash of the word (the hashing trick: two
words that share a bucket add with independent signs). The vector is the same on every machine and in every
batch. Every distinct word keeps its own direction, so a categorical value written as a word ("stage IIIA",
"female") becomes, in effect, a one-hot of that value beside the template's shared words; numbers are words
too (no order between ages or stages).

What it is for: the clinical sentences of the templates differ from patient to patient in one or two words
("The tumour is stage II." / "... stage IIIA."), and a pretrained sentence model may map them close together.
Training the same model on this encoder's tokens tells whether the text model's representation, rather than
the model reading the tokens, limits what the clinical modality contributes. It is a baseline, not a
replacement for a text model: it knows no synonyms and no order.
"""

from __future__ import annotations

import hashlib
import re

import torch

from survpgc.encoders.text_base import TextEncoder, TextEncoderSpec

__all__ = ["WORDS_DIM", "WORDS_SPEC", "WordsTextEncoder", "word_bucket"]

#: Output width (the number of hash buckets).
WORDS_DIM = 512
_WORD = re.compile(r"[a-z0-9]+")


def word_bucket(word: str, dim: int = WORDS_DIM) -> tuple[int, float]:
    """``(bucket, sign)`` of one (lower-case) word: the first 8 bytes of its BLAKE2b digest, bucket = value mod
    ``dim``, sign from the highest bit."""
    value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return value % dim, (1.0 if value >> 63 == 0 else -1.0)


class WordsTextEncoder(TextEncoder):
    """Hashed bag of words (see the module docstring); ``normalize`` (default True) L2-normalises the rows."""

    name = "words"

    @property
    def identity(self) -> str:
        return f"words:v1:blake2b8:dim={WORDS_DIM}:normalize={self.normalize}"

    @property
    def dim(self) -> int:
        return WORDS_DIM

    def _load(self) -> None:
        """Nothing to load."""

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        out = torch.zeros(len(sentences), WORDS_DIM, dtype=torch.float32)
        for i, sentence in enumerate(sentences):
            for word in _WORD.findall(sentence.lower()):
                bucket, sign = word_bucket(word)
                out[i, bucket] += sign
        return out


def make_words(**kwargs) -> WordsTextEncoder:
    """The ``words`` encoder (``normalize``, ``device``, ``batch_size`` as every text encoder)."""
    return WordsTextEncoder(**kwargs)


WORDS_SPEC = TextEncoderSpec(
    name="words",
    dim=WORDS_DIM,
    license="none needed (no weights)",
    gated=False,
    weights="none: a hashed bag of words",
    requires=(),
    description="lexical baseline: hashed bag of words (BLAKE2b, 512 buckets, signed), L2-normalised; tests "
    "whether a text model's representation limits the clinical modality",
    factory=make_words,
)
