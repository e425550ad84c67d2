"""Tests of survpgc.encoders.patch: registry, EfficientNet-Lite0 weight mapping and features, transforms,
precision, UNI / timm checkpoint loading, CONCH adapter (stand-in)."""

from __future__ import annotations

import gc
import pickle
import re
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from survpgc.encoders import precision as precision_mod
from survpgc.encoders import weights as weights_mod
from survpgc.encoders.checkpoints import check_state_dict, map_in_order, read_state_dict
from survpgc.encoders.patch import (
    CONCH_CHECKPOINT_ENV,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    PATCH_ENCODERS,
    UNI_WEIGHTS_ENV,
    PatchEncoder,
    PatchEncoderSpec,
    PatchTransform,
    create_patch_encoder,
    efficientnet_lite0_weights_path,
    get_patch_encoder_spec,
    list_patch_encoders,
    map_efficientnet_lite0,
    register_patch_encoder,
    resolve_precision,
)
from survpgc.errors import ConfigError, InputError, UnknownNameError

timm = pytest.importorskip("timm")

_ROOT = Path(__file__).resolve().parent
_TILE_CANDIDATES = (_ROOT / "data" / "slides" / "he_tile_1000.png",)
_UNI_KW = {"init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True}


def _blocked(*args, **kwargs):
    raise OSError("network access attempted while the network is disabled in this test")


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No network for the whole module: offline env vars and every socket connect raises."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _blocked)
        mp.setattr(socket.socket, "connect_ex", _blocked)
        mp.setattr(socket, "create_connection", _blocked)
        yield


@pytest.fixture(scope="module")
def he_tiles() -> np.ndarray:
    """16 real H&E patches (250 x 250 px, uint8 NHWC) cut from the 1000 px tile."""
    path = next((p for p in _TILE_CANDIDATES if p.is_file()), None)
    if path is None:
        pytest.skip("H&E tile he_tile_1000.png not available")
    from PIL import Image

    im = np.asarray(Image.open(path).convert("RGB"))
    return np.stack([im[y : y + 250, x : x + 250] for y in range(0, 1000, 250) for x in range(0, 1000, 250)])


@pytest.fixture(scope="module")
def lite0_source() -> dict[str, torch.Tensor]:
    try:
        path = efficientnet_lite0_weights_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def effnet(lite0_source) -> PatchEncoder:
    return create_patch_encoder("efficientnet_lite0", precision="fp32")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ----------------------------------------------------------------------------- registry
def test_registry_lists_entries_with_their_contract():
    names = [s.name for s in list_patch_encoders()]
    assert names[:4] == ["efficientnet_lite0", "uni", "timm", "conch"]
    e, u, c = (get_patch_encoder_spec(n) for n in ("EfficientNet_Lite0", "uni", "conch"))
    assert (e.dim, e.input_size, e.gated, e.mean, e.std) == (1280, 224, False, IMAGENET_MEAN, IMAGENET_STD)
    assert e.channels_last is True and e.cpu_precision == "bf16" and e.cuda_precision in ("fp16", "bf16")
    assert (u.dim, u.input_size, u.gated, u.mean) == (1024, 224, True, IMAGENET_MEAN)
    assert UNI_WEIGHTS_ENV in u.weights and "NC" in u.license
    assert (c.dim, c.input_size, c.gated, c.mean) == (512, 448, True, OPENAI_CLIP_MEAN)
    assert CONCH_CHECKPOINT_ENV in c.weights
    assert get_patch_encoder_spec("timm:resnet50").name == "timm"
    assert e.transform() == PatchTransform(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    d = e.as_dict()
    assert "factory" not in d and d["dim"] == 1280 and d["mean"] == list(IMAGENET_MEAN)
    assert {"name", "dim", "input_size", "license", "gated", "weights", "requires", "description"} <= set(d)
    with pytest.raises(UnknownNameError, match=r"unknown patch encoder 'nope'; available: conch, efficientnet_lite0"):
        get_patch_encoder_spec("nope")
    with pytest.raises(UnknownNameError, match=r"did you mean 'efficientnet_lite0'\?.*timm:<model_name>"):
        create_patch_encoder("efficientnet_lite")
    with pytest.raises(InputError, match="already registered"):
        register_patch_encoder(e)
    with pytest.raises(InputError, match="reserved"):
        register_patch_encoder(PatchEncoderSpec("timm:x", 1, 8, "-", False, "-", (), "-", factory=lambda *a, **k: None))
    with pytest.raises(InputError, match="timm:<model_name>"):
        create_patch_encoder("timm")
    with pytest.raises(InputError, match="transform depends"):
        get_patch_encoder_spec("timm").transform()


class _Tiny(nn.Module):
    def __init__(self, out: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, out, 1)

    def forward(self, x):
        return self.conv2(self.conv(x)).mean(dim=(2, 3))


def test_custom_encoder_registration_and_output_checks(monkeypatch):
    monkeypatch.setattr(PATCH_ENCODERS, "specs", dict(PATCH_ENCODERS.specs))
    made = []

    def factory(weights=None, *, device="cpu", precision="auto", **kw):
        made.append((weights, precision, kw))
        torch.manual_seed(0)
        return PatchEncoder(
            _Tiny(), name="tiny", dim=6, transform=PatchTransform(32), device=device, precision=precision
        )

    register_patch_encoder(PatchEncoderSpec("tiny", 6, 32, "MIT", False, "none", (), "test", factory=factory))
    enc = create_patch_encoder("TINY", "w.pt", precision="fp32", batch_size=3)
    assert made == [("w.pt", "fp32", {"batch_size": 3})] and enc.channels_last  # two convolutions
    assert create_patch_encoder(enc) is enc
    with pytest.raises(InputError):
        create_patch_encoder(enc, precision="fp32")
    x = np.random.default_rng(0).integers(0, 256, size=(5, 40, 40, 3), dtype=np.uint8)
    out = enc.encode(x)
    assert out.shape == (5, 6) and out.dtype == np.float32
    np.testing.assert_allclose(enc.encode(x, batch_size=2), out, rtol=1e-5, atol=1e-6)
    assert enc.encode([]).shape == (0, 6) and enc.encode(x[:0]).shape == (0, 6)
    assert enc.encode(x[0]).shape == (1, 6)  # a single HWC image
    np.testing.assert_array_equal(enc.encode(enc.transform(x)), out)  # already transformed float batch
    np.testing.assert_array_equal(enc.encode(enc.transform(x[0])), out[:1])  # float CHW
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        enc.encode(torch.zeros(2, 32, 32, 3))
    with pytest.raises(InputError, match="batch_size"):
        enc.encode(x, batch_size=0)
    bad = PatchEncoder(_Tiny(out=5), name="bad", dim=6, transform=PatchTransform(32), precision="fp32")
    with pytest.raises(ConfigError, match=r"expected \(5, 6\)"):
        bad.encode(x)
    md = enc.metadata()
    assert md["encoder"] == "tiny" and md["encoder_dim"] == 6 and md["precision"] == "fp32"
    assert "precision=fp32" in enc.identity and "tiny" in repr(enc)


def test_device_and_precision_resolution(monkeypatch):
    with pytest.raises(InputError, match="precision"):
        resolve_precision("int8", "cpu")
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("BF16", "cpu") == "bf16"
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu", cpu_default="fp32") == "fp32"
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "meta") == "fp32"
    assert isinstance(precision_mod.cpu_has_native_bf16, types.FunctionType)
    with pytest.raises(InputError, match="invalid device"):
        PatchEncoder(_Tiny(), name="t", dim=6, transform=PatchTransform(32), device="nonsense:0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            PatchEncoder(_Tiny(), name="t", dim=6, transform=PatchTransform(32), device="cuda")


# ----------------------------------------------------------------------------- transform
def test_transform_shape_dtype_and_normalisation():
    t = PatchTransform(224)
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, size=(3, 256, 256, 3), dtype=np.uint8)
    out = t(batch)
    assert out.shape == (3, 3, 224, 224) and out.dtype == torch.float32 and out.is_contiguous()
    assert t(batch[0]).shape == (3, 224, 224)
    torch.testing.assert_close(t(batch[0]), out[0])
    torch.testing.assert_close(t([batch[0], batch[1]]), out[:2])
    torch.testing.assert_close(t(torch.from_numpy(batch)), out)
    rgba = np.concatenate([batch, np.full((3, 256, 256, 1), 7, np.uint8)], axis=-1)
    torch.testing.assert_close(t(rgba), out)  # alpha dropped

    # constant image: every pixel is (v / 255 - mean) / std, whatever the resize
    const = np.zeros((2, 256, 256, 3), np.uint8)
    const[..., 0], const[..., 1], const[..., 2] = 10, 128, 250
    got = t(const)
    want = (np.array([10, 128, 250]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(got.mean(dim=(0, 2, 3)).numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.std(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)

    # already at the input size: no resampling, exact per-pixel formula
    x = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    exact = (x.astype(np.float32) / 255 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    np.testing.assert_allclose(t(x).permute(1, 2, 0).numpy(), exact, rtol=1e-5, atol=1e-5)

    # resizing really happens (a left/right split image keeps its split)
    half = np.zeros((512, 512, 3), np.uint8)
    half[:, 256:] = 255
    r = t(half)[0]
    assert r[:, :100].max() < r[:, 124:].min()

    from PIL import Image

    torch.testing.assert_close(t(Image.fromarray(batch[0])), out[0])
    bicubic = PatchTransform(224, interpolation="bicubic")(batch)
    assert bicubic.shape == out.shape and not torch.equal(bicubic, out)
    assert pickle.loads(pickle.dumps(t)) == t  # picklable for DataLoader workers

    with pytest.raises(InputError, match="uint8"):
        t(batch.astype(np.float32))
    with pytest.raises(InputError, match="channels-last"):
        t(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(InputError, match="input_size"):
        PatchTransform(4)
    with pytest.raises(InputError, match="std"):
        PatchTransform(224, std=(0.2, 0.0, 0.2))
    with pytest.raises(InputError, match="interpolation"):
        PatchTransform(224, interpolation="lanczos")


# ----------------------------------------------------------------------------- efficientnet_lite0
def test_lite0_mapping_is_complete_and_shape_exact(lite0_source):
    assert len(lite0_source) == 296
    full = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    m = map_efficientnet_lite0(lite0_source, full)
    assert len(m.pairs) == 296 and m.dropped == ()  # every tensor used, every model tensor filled
    assert [t for _, t in m.pairs] == list(full) and [s for s, _ in m.pairs] == list(lite0_source)
    assert all(lite0_source[s].shape == full[t].shape for s, t in m.pairs)
    assert m.pairs[0] == ("_conv_stem.weight", "conv_stem.weight") and m.pairs[-1] == ("_fc.bias", "classifier.bias")

    headless = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).state_dict()
    h = map_efficientnet_lite0(lite0_source, headless)
    assert len(h.pairs) == 294 and h.dropped == ("_fc.weight", "_fc.bias") and set(h.state_dict) == set(headless)

    # a shape or role mismatch anywhere is refused, naming the tensor
    broken = dict(lite0_source)
    broken["_blocks.3._bn1.weight"] = torch.zeros(7)
    with pytest.raises(ConfigError, match=r"_blocks\.3\._bn1\.weight"):
        map_efficientnet_lite0(broken, full)
    with pytest.raises(ConfigError, match="297 source tensors"):
        map_in_order({**lite0_source, "extra.weight": torch.zeros(1)}, full)
    # bn0 weight and bias are both (32,): swapping them keeps shapes but breaks roles
    keys = list(lite0_source)
    order = [keys[0], keys[2], keys[1], *keys[3:]]
    roles = {k: lite0_source[k] for k in order}
    with pytest.raises(ConfigError, match="shape and role"):
        map_efficientnet_lite0(roles, full)


def test_lite0_encoder_holds_the_package_weights(effnet, lite0_source):
    sd = effnet.model.state_dict()
    m = map_efficientnet_lite0(lite0_source, sd)
    assert set(sd) == {t for _, t in m.pairs}
    for s, t in m.pairs:
        assert torch.equal(sd[t], lite0_source[s].to(sd[t].dtype)), t
    assert effnet.dim == 1280 and effnet.input_size == 224 and effnet.channels_last
    assert effnet.transform == PatchTransform(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    assert "efficientnet-lite0-57934424.pth" in effnet.weights


def test_lite0_imagenet_sanity_on_natural_images(effnet, lite0_source):
    """The mapped weights classify ImageNet-like photos correctly (cat, espresso) -- the mapping is right."""
    data = pytest.importorskip("skimage.data")
    try:
        cat, coffee = np.asarray(data.chelsea()), np.asarray(data.coffee())
    except Exception as exc:  # data files not bundled
        pytest.skip(f"skimage sample images unavailable: {exc}")
    full = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    full.load_state_dict(map_efficientnet_lite0(lite0_source, full.state_dict()).state_dict)
    x = torch.cat([effnet.transform(cat[None]), effnet.transform(coffee[None])])
    with torch.inference_mode():
        top1 = full(x).argmax(-1).tolist()
        pre = full.forward_head(full.forward_features(x), pre_logits=True)
    assert top1[0] in (281, 282, 283, 284, 285)  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top1[1] in (504, 967, 968)  # coffee mug / espresso / cup
    np.testing.assert_allclose(effnet.encode(x), pre.numpy(), rtol=1e-4, atol=1e-4)


def test_lite0_features_on_real_he_patches(effnet, he_tiles):
    f = effnet.encode(he_tiles)
    assert f.shape == (16, 1280) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(effnet.encode(he_tiles), f)  # deterministic
    assert (f.std(axis=0) > 1e-3).sum() > 640  # varies across patches in most dimensions
    assert (np.abs(f).sum(axis=1) > 1.0).all()  # not zero
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    assert d[~np.eye(16, dtype=bool)].min() > 1e-2  # every patch distinct
    white = effnet.encode(np.full((1, 250, 250, 3), 245, np.uint8))
    assert _cos(white, f).max() < 0.99
    np.testing.assert_allclose(effnet.encode(he_tiles, batch_size=5), f, rtol=1e-3, atol=1e-4)


def test_precision_options_give_close_features(effnet, he_tiles):
    bf16 = create_patch_encoder("efficientnet_lite0", precision="bf16")
    assert bf16.precision == "bf16" and "precision=bf16" in bf16.identity
    f32, f16 = effnet.encode(he_tiles[:8]), bf16.encode(he_tiles[:8])
    assert f16.dtype == np.float32 and f16.shape == f32.shape
    assert not np.array_equal(f16, f32)  # autocast really applied
    assert _cos(f16, f32).min() > 0.99
    nchw = create_patch_encoder("efficientnet_lite0", precision="fp32", channels_last=False)
    assert not nchw.channels_last
    np.testing.assert_allclose(nchw.encode(he_tiles[:8]), f32, rtol=1e-3, atol=1e-4)
    auto = create_patch_encoder("efficientnet_lite0")
    assert auto.precision == ("bf16" if precision_mod.cpu_has_native_bf16() else "fp32")


def test_lite0_accepts_a_timm_layout_checkpoint(tmp_path, lite0_source, effnet, he_tiles):
    full = timm.create_model("efficientnet_lite0", pretrained=False)
    sd = map_efficientnet_lite0(lite0_source, full.state_dict()).state_dict  # with classifier
    torch.save({"state_dict": sd}, tmp_path / "lite0_timm.pth")
    enc = create_patch_encoder("efficientnet_lite0", tmp_path / "lite0_timm.pth", precision="fp32")
    np.testing.assert_array_equal(enc.encode(he_tiles[:2]), effnet.encode(he_tiles[:2]))
    assert enc.weights.startswith("lite0_timm.pth:")


# ----------------------------------------------------------------------------- uni
@pytest.fixture(scope="module")
def uni_files(tmp_path_factory, he_tiles):
    """A randomly initialised ViT-L/16 (UNI architecture), saved as .bin and .safetensors, and its features."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("uni")
    torch.manual_seed(0)
    model = timm.create_model("vit_large_patch16_224", pretrained=False, **_UNI_KW).eval()
    sd = model.state_dict()
    torch.save(sd, d / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "uni.safetensors"))
    x = PatchTransform(224)(he_tiles[:2])
    with torch.inference_mode():
        ref = model(x).numpy()
    del model, sd
    gc.collect()
    return d / "pytorch_model.bin", d / "uni.safetensors", ref


@pytest.fixture()
def no_hf_cache(monkeypatch):
    monkeypatch.setattr(weights_mod, "hf_cached_file", lambda repo, names: None)
    monkeypatch.delenv(UNI_WEIGHTS_ENV, raising=False)


def test_uni_loads_a_random_vit_l16_state_dict(uni_files, he_tiles, no_hf_cache, monkeypatch):
    pth, st, ref = uni_files
    enc = create_patch_encoder("uni", weights=pth, precision="fp32")
    assert (enc.dim, enc.input_size, enc.name, enc.channels_last) == (1024, 224, "uni", False)
    got = enc.encode(he_tiles[:2])
    assert got.shape == (2, 1024)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    del enc
    gc.collect()
    monkeypatch.setenv(UNI_WEIGHTS_ENV, str(st))  # safetensors, through the environment variable
    enc = create_patch_encoder("uni", precision="fp32")
    assert enc.weights.startswith("uni.safetensors:")
    np.testing.assert_allclose(enc.encode(he_tiles[:2]), ref, rtol=1e-4, atol=1e-4)
    del enc
    gc.collect()


def test_uni_folder_with_pytorch_model_bin(uni_files, no_hf_cache):
    folder = uni_files[0].parent
    assert weights_mod.weights_file(folder, what="uni") == uni_files[0]
    with pytest.raises(ConfigError, match="holds none of"):
        weights_mod.weights_file(uni_files[0].parent.parent, what="uni")


def test_weight_discovery_order_explicit_then_env_then_hf_cache(tmp_path, monkeypatch):
    """One lookup order for every gated model: explicit path > environment variable > local HF cache."""
    explicit, from_env, cached = (tmp_path / n for n in ("explicit.bin", "env.bin", "cached.bin"))
    for p in (explicit, from_env, cached):
        p.write_bytes(b"w" * 3)
    asked: list = []

    def fake_cache(repo, names):
        asked.append((repo, tuple(names)))
        return cached

    monkeypatch.setattr(weights_mod, "hf_cached_file", fake_cache)
    monkeypatch.setenv("SURVPGC_TEST_WEIGHTS", str(from_env))

    def locate(explicit_path):
        return weights_mod.locate_weights(
            explicit_path,
            env="SURVPGC_TEST_WEIGHTS",
            repo="org/model",
            filenames=("pytorch_model.bin",),
            check=lambda p: weights_mod.weights_file(p, what="test", env="SURVPGC_TEST_WEIGHTS"),
            not_found="nothing found",
        )

    assert locate(explicit) == explicit and locate(None) == from_env and asked == []
    monkeypatch.delenv("SURVPGC_TEST_WEIGHTS")
    assert locate(None) == cached and asked == [("org/model", ("pytorch_model.bin",))]
    monkeypatch.setattr(weights_mod, "hf_cached_file", lambda repo, names: None)
    with pytest.raises(ConfigError, match=r"^nothing found$"):
        locate(None)
    with pytest.raises(ConfigError, match=r"does not exist.*never downloads"):
        locate(tmp_path / "missing.bin")
    assert weights_mod.describe_file(explicit) == "explicit.bin:3"
    before = weights_mod.folder_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    changed = weights_mod.folder_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 9}')  # same size, other content: config bytes count
    assert len({before, changed, weights_mod.folder_fingerprint(tmp_path)}) == 3


def test_uni_rejects_wrong_keys_with_a_message(tmp_path, no_hf_cache):
    bad = {
        "cls_token": torch.zeros(1, 1, 1024),
        "pos_embed": torch.zeros(1, 50, 1024),  # wrong shape
        "blocks.0.attn.qkv.weight_renamed": torch.zeros(3072, 1024),
        "head.weight": torch.zeros(1000, 1024),
    }
    torch.save(bad, tmp_path / "bad.bin")
    with pytest.raises(ConfigError) as ei:
        create_patch_encoder("uni", weights=tmp_path / "bad.bin")
    msg = str(ei.value)
    assert "missing key" in msg and "patch_embed.proj.weight" in msg
    assert "unexpected key" in msg and "blocks.0.attn.qkv.weight_renamed" in msg and "head.weight" in msg
    assert "pos_embed: (1, 50, 1024)" in msg and "vit_large_patch16_224" in msg


def test_check_state_dict_on_a_full_vit_l_with_one_renamed_key():
    with torch.device("meta"):
        expected = timm.create_model("vit_large_patch16_224", pretrained=False, **_UNI_KW).state_dict()
    assert len(expected) == 342
    check_state_dict(expected, expected, what="uni")  # identical: accepted
    renamed = {("blocks.7.ls1.scale" if k == "blocks.7.ls1.gamma" else k): v for k, v in expected.items()}
    with pytest.raises(ConfigError, match=r"1 missing key\(s\): blocks\.7\.ls1\.gamma; 1 unexpected key\(s\)"):
        check_state_dict(expected, renamed, what="uni")
    no_ls = {k: v for k, v in expected.items() if ".ls" not in k}  # a ViT-L without LayerScale
    with pytest.raises(ConfigError, match=r"48 missing key\(s\).*\(\+43 more\)"):
        check_state_dict(expected, no_ls, what="uni")


def test_uni_missing_weights_names_the_variable(tmp_path, no_hf_cache, monkeypatch):
    with pytest.raises(ConfigError, match=UNI_WEIGHTS_ENV) as ei:
        create_patch_encoder("uni")
    assert "never downloads" in str(ei.value)
    monkeypatch.setenv(UNI_WEIGHTS_ENV, str(tmp_path / "nowhere.bin"))
    with pytest.raises(ConfigError, match=rf"nowhere\.bin.*env {UNI_WEIGHTS_ENV}"):
        create_patch_encoder("uni")
    with pytest.raises(ConfigError, match=UNI_WEIGHTS_ENV):
        create_patch_encoder("uni", weights=tmp_path / "also_missing.pth")


def test_unsafe_or_odd_checkpoint_files_are_refused(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="rather than a state dict"):
        read_state_dict(tmp_path / "list.pt")
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"w": types.SimpleNamespace(a=1)}, fh, protocol=2)
    with pytest.raises(ConfigError, match="cannot read weights file"):
        read_state_dict(tmp_path / "evil.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="cannot read"):
        read_state_dict(tmp_path / "junk.safetensors")
    torch.save({"model": {"module.a": torch.ones(1), "module.b": torch.zeros(2)}, "epoch": 3}, tmp_path / "w.pt")
    assert sorted(read_state_dict(tmp_path / "w.pt")) == ["a", "b"]


# ----------------------------------------------------------------------------- timm:<name>
def test_timm_model_by_name_with_a_local_checkpoint(tmp_path, he_tiles):
    torch.manual_seed(0)
    ref = timm.create_model("resnet18", pretrained=False).eval()  # with its 1000-class head
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, tmp_path / "r18.pth")
    enc = create_patch_encoder("timm:resnet18", weights=tmp_path / "r18.pth", precision="fp32")
    assert (enc.name, enc.dim, enc.input_size, enc.channels_last) == ("timm:resnet18", 512, 224, True)
    assert enc.transform.mean == IMAGENET_MEAN and enc.transform.interpolation == "bicubic"
    x = enc.transform(he_tiles[:3])
    with torch.inference_mode():
        want = ref.forward_head(ref.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(enc.encode(he_tiles[:3]), want, rtol=1e-4, atol=1e-4)

    custom = create_patch_encoder(
        "timm:resnet18", tmp_path / "r18.pth", precision="fp32", input_size=128, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    assert custom.transform == PatchTransform(128, (0.5,) * 3, (0.5,) * 3, "bicubic")
    assert custom.encode(he_tiles[:1]).shape == (1, 512)

    with pytest.raises(ConfigError, match="never downloads"):
        create_patch_encoder("timm:resnet18")
    with pytest.raises(ConfigError, match="timm has no model"):
        create_patch_encoder("timm:resnet_does_not_exist", weights=tmp_path / "r18.pth")
    with pytest.raises(ConfigError, match="does not match the model architecture"):
        create_patch_encoder("timm:resnet34", weights=tmp_path / "r18.pth")
    with pytest.raises(ConfigError, match="does not exist"):
        create_patch_encoder("timm:resnet18", weights=tmp_path / "missing.pth")


# ----------------------------------------------------------------------------- conch (stand-in)
class _FakeConchModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 512)
        self.calls: list = []

    def encode_image(self, x, proj_contrast=True, normalize=True):
        out = self.proj(x.mean(dim=(2, 3)))
        self.calls.append((tuple(x.shape), proj_contrast, normalize, out.dtype))
        return out


@pytest.fixture()
def fake_conch(monkeypatch):
    state: dict = {"model": _FakeConchModel(), "created": []}

    def create_model_from_pretrained(model_cfg, checkpoint_path=None, device="cpu", **kw):
        state["created"].append((model_cfg, checkpoint_path, str(device)))
        return state["model"], (lambda im: im)

    pkg = types.ModuleType("conch")
    occ = types.ModuleType("conch.open_clip_custom")
    occ.create_model_from_pretrained = create_model_from_pretrained
    pkg.open_clip_custom = occ
    monkeypatch.setitem(sys.modules, "conch", pkg)
    monkeypatch.setitem(sys.modules, "conch.open_clip_custom", occ)
    monkeypatch.delenv(CONCH_CHECKPOINT_ENV, raising=False)
    return state


def test_conch_adapter_with_stand_in_module(fake_conch, tmp_path, monkeypatch, he_tiles):
    ckpt = tmp_path / "pytorch_model.bin"
    ckpt.write_bytes(b"x")
    monkeypatch.setenv(CONCH_CHECKPOINT_ENV, str(ckpt))
    enc = create_patch_encoder("conch", precision="fp32")
    assert (enc.dim, enc.input_size, enc.transform.mean, enc.transform.interpolation) == (
        512,
        448,
        OPENAI_CLIP_MEAN,
        "bicubic",
    )
    assert fake_conch["created"] == [("conch_ViT-B-16", str(ckpt), "cpu")]
    out = enc.encode(he_tiles[:3], batch_size=2)
    assert out.shape == (3, 512) and out.dtype == np.float32
    assert [c[:3] for c in fake_conch["model"].calls] == [
        ((2, 3, 448, 448), False, False),
        ((1, 3, 448, 448), False, False),
    ]
    bf = create_patch_encoder("conch", weights=tmp_path, precision="bf16")  # folder holding pytorch_model.bin
    bf.encode(he_tiles[:1])
    assert fake_conch["model"].calls[-1][3] == torch.bfloat16  # autocast active around encode_image


def test_conch_without_checkpoint_names_the_env_var(fake_conch, tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "try_to_load_from_cache", lambda *a, **k: None)  # nothing in the HF cache
    with pytest.raises(ConfigError, match=CONCH_CHECKPOINT_ENV):
        create_patch_encoder("conch")
    with pytest.raises(ConfigError, match="not found"):
        create_patch_encoder("conch", weights=tmp_path / "missing.bin")


def test_conch_package_missing_gives_install_message(monkeypatch):
    monkeypatch.delitem(sys.modules, "conch", raising=False)
    monkeypatch.delitem(sys.modules, "conch.open_clip_custom", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not Path(p, "conch").exists()])
    with pytest.raises(ConfigError, match=r"pip install git\+https://github\.com/mahmoodlab/CONCH"):
        create_patch_encoder("conch")


# ----------------------------------------------------------------------------- junk weights (issue 13)
def _junk_weight_files(folder: Path) -> dict[str, Path]:
    """A text file, random bytes, a truncated checkpoint, a pickle of plain objects, a state dict of another
    architecture (resnet18)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.bin" for name in ("text", "random", "truncated", "pickle", "other-arch")}
    files["text"].write_text("these are not weights\n")  # torch's legacy reader: KeyError: 174812789 and the like
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    torch.save({"w": torch.zeros(64, 64)}, folder / "whole.pt")
    data = (folder / "whole.pt").read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    with open(files["pickle"], "wb") as fh:
        pickle.dump({"epoch": 3, "note": "hello"}, fh)
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), files["other-arch"])
    return files


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("efficientnet_lite0", "efficientnet_lite0"),
        ("timm:resnet34", "timm resnet34"),
        ("uni", r"UNI \(timm vit_large_patch16_224\)"),
    ],
)
def test_junk_weights_say_not_a_checkpoint_of_the_architecture(tmp_path_factory, name, arch):
    files = _junk_weight_files(tmp_path_factory.mktemp("junk"))
    for kind, path in files.items():
        with pytest.raises(ConfigError) as ei:
            create_patch_encoder(name, weights=path, precision="fp32")
        msg = str(ei.value)
        assert re.search(rf"{re.escape(str(path))}'? is not a checkpoint of {arch}", msg), (kind, msg)
        assert "\n" not in msg, (kind, msg)


def test_junk_conch_checkpoint_says_not_a_checkpoint_of_conch(fake_conch, tmp_path):
    import survpgc.encoders.conch as conch_mod

    def refuse(model_cfg, checkpoint_path=None, device="cpu", **kw):
        raise KeyError(174812789)  # what torch's reader raises on a text file

    sys.modules["conch.open_clip_custom"].create_model_from_pretrained = refuse
    ckpt = tmp_path / "pytorch_model.bin"
    ckpt.write_text("not weights")
    with pytest.raises(ConfigError, match=r"pytorch_model\.bin' is not a checkpoint of CONCH conch_ViT-B-16"):
        create_patch_encoder("conch", weights=ckpt)
    assert conch_mod  # the module under test


@pytest.mark.parametrize("backend", ["sentence-transformers", "transformers"])
def test_junk_text_encoder_weights_say_not_a_checkpoint(tmp_path, backend):
    import shutil

    from safetensors.torch import save_file

    from survpgc.encoders.transformers_text import TransformersTextEncoder, minilm_model_dir

    pytest.importorskip("sentence_transformers" if backend == "sentence-transformers" else "transformers")
    src = minilm_model_dir()
    for kind in ("text", "truncated", "other-arch"):
        d = tmp_path / f"{backend}-{kind}"
        shutil.copytree(src, d)
        w = d / "model.safetensors"
        if kind == "text":
            w.write_text("not weights\n")
        elif kind == "truncated":
            w.write_bytes(w.read_bytes()[:100_000])
        else:
            save_file({"foo.weight": torch.zeros(3, 3)}, str(w))
        with pytest.raises(ConfigError, match=r"its weights are not a checkpoint of a bert model") as ei:
            TransformersTextEncoder(str(d), backend=backend).load()
        assert str(d) in str(ei.value)
