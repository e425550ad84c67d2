"""Contract tests over the whole model registry, plus SurvPGC's reference architecture."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gradient_helpers import check_gradients
from survpgc.errors import ConfigError, UnknownNameError
from survpgc.models import create_model, get_model_spec, list_models
from survpgc.models.layers import cosine_path_loss
from survpgc.survival.losses import nll_survival_loss

DIMS = {"path_dim": 24, "clin_dim": 16, "gen_dim": 20, "n_bins": 4}
N_CLIN = 6
ORDER_DEPENDENT = {"transmil"}  # positional encoding by design
NEURAL = [s.name for s in list_models() if s.neural]


def make_batch(lengths, *, seed=0, n_clin=N_CLIN, n_gen=1, junk=0.0, has_clin=None, has_gen=None, dtype=None):
    """Padded batch with bags of the given lengths; padded positions hold `junk` noise. ``dtype`` casts the
    float tensors (float64 where two computations of the same function are compared: float32 round-off
    depends on the CPU's kernels and thread count)."""
    g = torch.Generator().manual_seed(seed)
    b, lmax = len(lengths), max(lengths)
    path = torch.randn(b, lmax, DIMS["path_dim"], generator=g)
    mask = torch.zeros(b, lmax, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
        path[i, n:] = junk * torch.randn(lmax - n, DIMS["path_dim"], generator=g)
    clin_mask = torch.ones(b, n_clin, dtype=torch.bool)
    gen_mask = torch.ones(b, n_gen, dtype=torch.bool)
    if has_clin is not None:
        clin_mask[~torch.as_tensor(has_clin)] = False
    if has_gen is not None:
        gen_mask[~torch.as_tensor(has_gen)] = False
    clin = torch.randn(b, n_clin, DIMS["clin_dim"], generator=g) * clin_mask[..., None]
    gen = torch.randn(b, n_gen, DIMS["gen_dim"], generator=g) * gen_mask[..., None]
    batch = {"path": path, "path_mask": mask, "clin": clin, "clin_mask": clin_mask, "gen": gen, "gen_mask": gen_mask}
    if dtype is not None:
        batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    return batch


def build(name, seed=0, dtype=None):
    torch.manual_seed(seed)
    m = create_model(name, **DIMS)
    if dtype is not None:
        m = m.to(dtype)
    return m.eval()


def slice_case(batch, i, length):
    out = {}
    for k, v in batch.items():
        v = v[i : i + 1]
        if k in ("path", "path_mask"):
            v = v[:, :length]
        out[k] = v
    return out


def test_registry_lists_every_model_of_the_paper():
    names = {s.name for s in list_models()}
    expected = {
        "survpgc", "survpc", "survgc", "survpath", "mcat", "porpoise", "abmil", "transmil", "mean_mil",
        "mlp", "snn", "late_fusion", "concat_fusion", "encoded_fusion", "coxph",
    }  # fmt: skip
    assert expected <= names, expected - names
    for s in list_models():
        assert s.description and s.modalities
        assert set(s.modalities) <= {"pathology", "clinical", "genomic"}
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        get_model_spec("nope")
    with pytest.raises(ConfigError, match="does not accept"):
        create_model("survpgc", n_layers=3)


def test_unknown_names_raise_one_error_class_in_every_registry():
    """Models, patch encoders and text encoders: the same UnknownNameError (a ConfigError), naming the kind,
    the bad name, close matches and the available names."""
    from survpgc.encoders.patch import get_patch_encoder_spec
    from survpgc.encoders.text import get_text_encoder_spec

    errors = []
    for lookup, bad in (
        (get_model_spec, "abmill"),
        (get_patch_encoder_spec, "unii"),
        (get_text_encoder_spec, "minilmm"),
    ):
        with pytest.raises(UnknownNameError) as ei:
            lookup(bad)
        errors.append(ei.value)
    model, patch, text = errors
    assert all(type(e) is UnknownNameError and isinstance(e, ConfigError) for e in errors)
    assert [(e.kind, e.name) for e in errors] == [
        ("model", "abmill"),
        ("patch encoder", "unii"),
        ("text encoder", "minilmm"),
    ]
    assert str(model).startswith("unknown model 'abmill' (did you mean 'abmil'?); available: abmil, ")
    assert "survpgc" in model.available and "transmil" in str(model)
    assert str(patch).startswith("unknown patch encoder 'unii' (did you mean 'uni'?); available: conch, ")
    assert str(text).startswith("unknown text encoder 'minilmm' (did you mean 'minilm'?); available: conch, minilm")
    with pytest.raises(UnknownNameError, match=r"^unknown model 'zzz'; available: abmil, ") as far:
        get_model_spec("zzz")
    assert "did you mean" not in str(far.value)
    again = pickle.loads(pickle.dumps(model))  # crosses process boundaries intact
    assert type(again) is UnknownNameError and str(again) == str(model) and again.available == model.available


@pytest.mark.parametrize("name", NEURAL)
def test_shapes_batch_1_and_3(name):
    m = build(name)
    for lengths in ([7], [5, 11, 2]):
        out = m(make_batch(lengths))
        b = len(lengths)
        assert out.logits.shape[0] == b
        if out.discrete:
            assert out.logits.shape == (b, DIMS["n_bins"])
            assert out.survival.shape == (b, DIMS["n_bins"])
        assert out.risk.shape == (b,)
        assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", NEURAL)
def test_every_parameter_gets_a_gradient(name):
    m = build(name, dtype=torch.float64)  # eval mode: dropout off, so no gradient is zero by chance
    grads = {n: torch.zeros_like(p) for n, p in m.named_parameters()}
    for seed in range(3):
        batch = make_batch([9, 4, 13], seed=seed, dtype=torch.float64)
        out = m(batch)
        if out.discrete:
            loss = nll_survival_loss(out.logits, torch.tensor([0, 2, 3]), torch.tensor([True, False, True]))
        else:
            loss = out.logits.sum()
        if out.paths is not None:
            loss = loss + cosine_path_loss(*out.paths, margin=-1.0)
        m.zero_grad()
        loss.backward()
        for n, p in m.named_parameters():
            if p.grad is not None:
                grads[n] += p.grad.abs()
    check_gradients(m, grads, name)


@pytest.mark.parametrize("name", NEURAL)
def test_pad_invariance(name):
    m = build(name, dtype=torch.float64)
    batch = make_batch([6, 15, 3], seed=1, junk=50.0, dtype=torch.float64)
    with torch.no_grad():
        together = m(batch).logits
        for i, n in enumerate([6, 15, 3]):
            alone = m(slice_case(batch, i, n)).logits
            torch.testing.assert_close(together[i : i + 1], alone, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", [n for n in NEURAL if "pathology" in get_model_spec(n).modalities])
def test_patch_order(name):
    m = build(name, dtype=torch.float64)
    batch = make_batch([12], seed=2, dtype=torch.float64)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = dict(batch, path=batch["path"][:, perm])
    with torch.no_grad():
        a, b = m(batch).logits, m(shuffled).logits
    if name in ORDER_DEPENDENT:
        assert not torch.allclose(a, b, atol=1e-6)
    else:
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", NEURAL)
def test_no_nan_single_patch_and_missing_modalities(name):
    m = build(name)
    with torch.no_grad():
        assert torch.isfinite(m(make_batch([1])).logits).all()
        out = m(make_batch([3, 1], has_clin=[False, True], has_gen=[True, False]))
        assert torch.isfinite(out.logits).all()
        if "pathology" in get_model_spec(name).modalities:
            b = make_batch([4, 4])
            b["path_mask"][1] = False  # second case has no patches at all
            assert torch.isfinite(m(b).logits).all()


@pytest.mark.parametrize("name", NEURAL)
def test_deterministic_under_seed(name):
    batch = make_batch([5, 8], seed=3)
    with torch.no_grad():
        a = build(name, seed=7)(batch).logits
        b = build(name, seed=7)(batch).logits
        c = build(name, seed=8)(batch).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)


# ------------------------------------------------------------------------------ SurvPGC specifics
def test_survpgc_reference_dims_parameter_count():
    m = create_model("survpgc")
    # 0.85 M in the paper's reference: projections 1024/512/768 -> 256, two attention layers, shared FFN/LN, head
    assert m.n_parameters() == 854_852


def test_survpgc_attention_maps():
    torch.manual_seed(0)
    m = create_model("survpgc", **DIMS).eval()
    batch = make_batch([10, 4], n_gen=4, seed=5)
    batch["clin_mask"][1, 2] = False  # a missing clinical field
    with torch.no_grad():
        out = m(batch, return_attention=True)
    a = out.attention
    assert a["clinic->patch"].shape == (2, N_CLIN, 10)
    assert a["patch->clinic"].shape == (2, 10, N_CLIN)
    assert a["genomic->patch"].shape == (2, 4, 10)
    # clinic queries: one softmax over [clinic tokens ‖ patches] sums to 1 over real keys (0 for the
    # missing field, whose query is masked too)
    rows = a["clinic->patch"].sum(-1) + a["clinic->clinic[clinic-patch]"].sum(-1)
    torch.testing.assert_close(rows, batch["clin_mask"].float())
    assert (a["clinic->clinic[clinic-patch]"][1, :, 2] == 0).all()
    # patch queries over clinical tokens: sum to 1 for real patches, 0 on padding, 0 weight on missing field
    p2c = a["patch->clinic"]
    torch.testing.assert_close(p2c[0].sum(-1), torch.ones(10))
    torch.testing.assert_close(p2c[1, :4].sum(-1), torch.ones(4))
    assert (p2c[1, 4:] == 0).all() and (p2c[1, :, 2] == 0).all()
    assert (a["clinic->patch"][1, :, 4:] == 0).all()
    assert list(out.fused) == [
        "genomic[genomic-patch]", "patch[genomic-patch]", "clinic[clinic-patch]", "patch[clinic-patch]"
    ]  # fmt: skip
    g, c = out.paths
    assert g.shape == c.shape == (2, 256)


def test_survpgc_pool_adds_one_pooled_patch_vector_and_keeps_survpgc_otherwise():
    """The ablation model: SurvPGC's four path vectors unchanged (same weights give the same vectors) plus a
    gated-attention-pooled patch vector of width ``dim`` that the head reads; its attention is 0 on padding and
    sums to 1 over real patches."""
    torch.manual_seed(0)
    pool = create_model("survpgc_pool", **DIMS).eval()
    base = create_model("survpgc", **DIMS).eval()
    shared = {k: v for k, v in pool.state_dict().items() if not k.startswith(("patch_pool.", "head."))}
    base.load_state_dict({**base.state_dict(), **shared})
    batch = make_batch([10, 4], n_gen=4, seed=5)
    with torch.no_grad():
        out, ref = pool(batch, return_attention=True), base(batch)
    assert list(out.fused) == [*ref.fused, "patch[patch-pool]"]
    for k, v in ref.fused.items():
        torch.testing.assert_close(out.fused[k], v)
    assert out.fused["patch[patch-pool]"].shape == (2, 256)
    assert pool.head[0].in_features == base.head[0].in_features + 256
    a = out.attention["patch-pool"]
    torch.testing.assert_close(a.sum(-1), torch.ones(2))
    assert (a[1, 4:] == 0).all()
    with pytest.raises(ConfigError, match="patch_pool needs"):
        create_model("survgc", patch_pool=True, **DIMS)


def test_survpgc_skip_adds_the_mean_projected_query_tokens():
    """The other ablation: the four path vectors unchanged, plus per query modality the masked mean of its
    projected tokens (a missing clinical field is left out of the mean)."""
    torch.manual_seed(0)
    skip = create_model("survpgc_skip", **DIMS).eval()
    base = create_model("survpgc", **DIMS).eval()
    base.load_state_dict({**base.state_dict(), **{k: v for k, v in skip.state_dict().items() if "head" not in k}})
    batch = make_batch([10, 4], n_gen=4, seed=5)
    batch["clin_mask"][1, 2] = False
    with torch.no_grad():
        out, ref = skip(batch), base(batch)
        clin = skip.proj["clinical"](batch["clin"])
        gen = skip.proj["genomic"](batch["gen"])
    assert list(out.fused) == [*ref.fused, "genomic[genomic-skip]", "clinic[clinic-skip]"]
    for k, v in ref.fused.items():
        torch.testing.assert_close(out.fused[k], v)
    torch.testing.assert_close(out.fused["genomic[genomic-skip]"], gen.mean(1))
    keep = torch.tensor([0, 1, 3, 4, 5])
    torch.testing.assert_close(out.fused["clinic[clinic-skip]"][1], clin[1, keep].mean(0))
    assert skip.head[0].in_features == base.head[0].in_features + 2 * 256


def test_cosine_path_loss():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    # target -1: max(0, cos - margin): (1 - 0.2) and max(0, -1 - 0.2) = 0
    assert cosine_path_loss(a, b, margin=0.2).item() == pytest.approx(0.4)
    ref = torch.nn.CosineEmbeddingLoss(margin=0.2)(a, b, -torch.ones(2))
    assert cosine_path_loss(a, b, margin=0.2).item() == pytest.approx(ref.item())


@pytest.mark.parametrize("name", ["survpgc", "survpc", "survpath"])
def test_cross_attention_cost_is_linear_in_patches(name):
    """No patch-to-patch term: the FLOPs of one forward pass grow by the same amount for every added block
    of patches (a quadratic term would make the increments grow)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    m = create_model(name, **DIMS).eval()

    def flops(n):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            m(make_batch([n], n_gen=1))
        return fc.get_total_flops()

    f1, f2, f3 = flops(500), flops(1000), flops(1500)
    assert f2 - f1 == f3 - f2 > 0
    out = m(make_batch([3000], n_gen=1), return_attention=True)
    assert all(v.shape.count(3000) <= 1 for v in out.attention.values())  # no (L, L) map either
    assert np.isfinite(out.risk.detach().numpy()).all()


@pytest.mark.parametrize("heads", [1, 2])
def test_survpgc_factored_attention_equals_direct_computation(heads):
    """The re-associated patch attention is the same function as each layer's own LayerNorm + qkv."""
    torch.manual_seed(0)
    m = create_model("survpgc", **DIMS, heads=heads, dim_head=16).eval().double()  # float64: see make_batch
    for layer in m.attn:  # non-trivial LayerNorm affine parameters
        torch.nn.init.normal_(layer.norm.weight, 1.0, 0.3)
        torch.nn.init.normal_(layer.norm.bias, 0.0, 0.3)
    batch = make_batch([9, 4], n_gen=4, seed=11, junk=30.0, dtype=torch.float64)
    batch["clin_mask"][1, 3] = False
    m.factored = True
    fused = m(batch, return_attention=True)
    fused.logits.sum().backward()
    g_fused = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.factored = False  # each layer's own norm + qkv over the patches
    plain = m(batch, return_attention=True)
    plain.logits.sum().backward()
    torch.testing.assert_close(fused.logits, plain.logits, atol=1e-10, rtol=1e-10)
    for k in plain.attention:
        torch.testing.assert_close(fused.attention[k], plain.attention[k], atol=1e-10, rtol=1e-10)
    for n, p in m.named_parameters():  # and the same gradients
        torch.testing.assert_close(g_fused[n], p.grad, atol=1e-10, rtol=1e-9)


def test_fast_dropout_matches_dropout_statistics():
    from survpgc.models.layers import FastDropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    d = FastDropout(0.25).train()
    y = d(x)
    assert abs((y == 0).float().mean().item() - 0.25) < 0.005
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased, like nn.Dropout
    assert torch.equal(d.eval()(x), x)
    with pytest.raises(ValueError):
        FastDropout(1.0)
