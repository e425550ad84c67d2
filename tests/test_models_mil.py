"""MIL and pathology-omics baselines (ABMIL, mean-MIL, TransMIL, PORPOISE, MCAT) and the layers they add.

Model tests use small widths and seeded random bags; padded positions are filled with large junk so that
any leak of padding into a real case shows up. Layer tests compare against torch's own modules or slow
references written from the formulas.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradient_helpers import check_gradients
from survpgc.errors import InputError
from survpgc.models import create_model, get_model_spec
from survpgc.models.layers import (
    PPEG,
    GatedBilinearFusion,
    MaskedMultiheadAttention,
    MaskedTransformerLayer,
    NystromAttention,
    moore_penrose_pinv,
    omics_vector,
)
from survpgc.models.mcat import default_groups
from survpgc.survival.losses import nll_survival_loss

PATH, GEN, NB = 32, 24, 4
SMALL = {
    "abmil": {"dim": 16},
    "mean_mil": {"dim": 16},
    "transmil": {"dim": 32, "heads": 4},  # landmarks dim // 2 = 16: bags > 15 patches use the Nyström path
    "porpoise": {"dim": 16, "gate_dim": 4, "fusion_dim": 16},
    "mcat": {"dim": 16, "encoder_heads": 2, "ff_dim": 32},
}
MODELS = list(SMALL)
MULTIMODAL = ["porpoise", "mcat"]
ORDER_INVARIANT = ["abmil", "mean_mil", "porpoise", "mcat"]
ATTENTION = {"abmil": "patch", "mean_mil": "patch", "porpoise": "patch", "mcat": "genomic->patch"}
TOL = 1e-9  # the tests below compare computations that must agree exactly; in float64, see `_float64`


@pytest.fixture(autouse=True)
def _float64():
    """Every tensor and parameter of these tests is float64: float32 round-off of two routes to the same number
    depends on the CPU's kernels, the batch layout and the thread count; float64 leaves room for 1e-9."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def build(name: str, seed: int = 0, dropout: float = 0.0, **kw):
    torch.manual_seed(seed)
    return create_model(name, path_dim=PATH, gen_dim=GEN, n_bins=NB, dropout=dropout, **{**SMALL[name], **kw})


def make_cases(lengths, seed=0, missing_gen=()):
    g = torch.Generator().manual_seed(seed)
    return [
        {"path": torch.randn(n, PATH, generator=g), "gen": None if i in missing_gen else torch.randn(GEN, generator=g)}
        for i, n in enumerate(lengths)
    ]


def collate(cases, junk_seed=123, length=None):
    """Pad to the longest bag (or ``length``) with large random junk in every masked position."""
    g = torch.Generator().manual_seed(junk_seed)
    b = len(cases)
    n_max = max([c["path"].shape[0] for c in cases] + [length or 0])
    path = 1e3 * torch.randn(b, n_max, PATH, generator=g)
    path_mask = torch.zeros(b, n_max, dtype=torch.bool)
    gen = 1e3 * torch.randn(b, 1, GEN, generator=g)
    gen_mask = torch.zeros(b, 1, dtype=torch.bool)
    for i, c in enumerate(cases):
        n = c["path"].shape[0]
        path[i, :n], path_mask[i, :n] = c["path"], True
        if c["gen"] is not None:
            gen[i, 0], gen_mask[i, 0] = c["gen"], True
    return {"path": path, "path_mask": path_mask, "gen": gen, "gen_mask": gen_mask}


def run(model, batch):
    model.eval()
    with torch.no_grad():
        return model(batch, return_attention=True)


# ---------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODELS)
def test_registry_contract(name):
    spec = get_model_spec(name)
    assert "pathology" in spec.modalities
    assert ("genomic" in spec.modalities) == (name in MULTIMODAL)
    model = create_model(name, path_dim=PATH, gen_dim=GEN, n_bins=NB)  # only the shared keywords
    assert model.n_bins == NB and model.model_name == name
    out = run(model, collate(make_cases([3, 9])))
    assert out.logits.shape == (2, NB) and out.discrete


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("lengths", [(7,), (5, 17, 40)])
def test_shapes_and_head_of_fused(name, lengths):
    model = build(name)
    out = run(model, collate(make_cases(lengths)))
    b, n_max = len(lengths), max(lengths)
    assert out.logits.shape == (b, NB)
    assert torch.isfinite(out.logits).all()
    assert out.fused and all(v.shape[0] == b and v.ndim == 2 for v in out.fused.values())
    if name in MULTIMODAL:
        assert list(out.fused) == ["patch", "genomic"]
    # the fused vectors are exactly the head's input (what integrated gradients attribute over)
    with torch.no_grad():
        again = model.head(torch.cat(list(out.fused.values()), dim=-1))
    torch.testing.assert_close(again, out.logits, rtol=0, atol=1e-6)
    if name in ATTENTION:
        attn = out.attention[ATTENTION[name]]
        expected = (b, n_max) if name != "mcat" else (b, 6, n_max)
        assert attn.shape == expected
    else:
        assert out.attention is None


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name):
    model = build(name)
    model.train()
    for seed in (1, 2):  # two batches, so a unit dead by chance on one batch is unlikely on both
        batch = collate(make_cases([6, 19, 37], seed=seed))
        out = model(batch)
        loss = nll_survival_loss(out.logits, torch.tensor([0, 2, 3]), torch.tensor([True, False, True]))
        loss.backward()
    check_gradients(model, {n: p.grad for n, p in model.named_parameters()}, name)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", [1, 9, 23])  # TransMIL: exact attention for 1 and 9 patches, Nyström for 23
def test_pad_invariance(name, n):
    model = build(name)
    target, long1, long2 = make_cases([n, 41, 30], seed=n)
    alone = run(model, collate([target]))
    together = run(model, collate([long1, target, long2], junk_seed=7))
    torch.testing.assert_close(together.logits[1], alone.logits[0], rtol=0, atol=TOL)
    for key, vec in together.fused.items():
        torch.testing.assert_close(vec[1], alone.fused[key][0], rtol=0, atol=TOL)
    if name in ATTENTION:
        key = ATTENTION[name]
        a_t, a_a = together.attention[key][1], alone.attention[key][0]
        torch.testing.assert_close(a_t[..., :n], a_a, rtol=0, atol=TOL)
        assert (a_t[..., n:] == 0).all()


@pytest.mark.parametrize("name", ORDER_INVARIANT)
def test_patch_order_invariance(name):
    model = build(name)
    (case,) = make_cases([30], seed=5)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    out = run(model, collate([case]))
    out_p = run(model, collate([{**case, "path": case["path"][perm]}]))
    torch.testing.assert_close(out_p.logits, out.logits, rtol=0, atol=TOL)
    key = ATTENTION[name]
    torch.testing.assert_close(out_p.attention[key], out.attention[key][..., perm], rtol=0, atol=TOL)


@pytest.mark.parametrize("n", [9, 30])  # exact attention (PPEG only) and Nyström
def test_transmil_depends_on_patch_order(n):
    model = build("transmil")
    (case,) = make_cases([n], seed=5)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    out = run(model, collate([case]))
    out_p = run(model, collate([{**case, "path": case["path"][perm]}]))
    assert (out_p.logits - out.logits).abs().max() > 1e-4
    # with PPEG's convolutions zeroed (identity map) and exact attention, the model is order-invariant
    if n == 9:
        with torch.no_grad():
            for conv in model.ppeg.convs:
                conv.weight.zero_()
                conv.bias.zero_()
            for layer in (model.layer1, model.layer2):
                layer.attn.res_conv.weight.zero_()
        out = run(model, collate([case]))
        out_p = run(model, collate([{**case, "path": case["path"][perm]}]))
        torch.testing.assert_close(out_p.logits, out.logits, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", MODELS)
def test_single_patch_is_finite(name):
    model = build(name)
    model.train()
    batch = collate(make_cases([1, 1, 3], seed=3))
    out = model(batch)
    assert torch.isfinite(out.logits).all()
    out.logits.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    out = run(model, collate(make_cases([1], seed=3)))
    assert torch.isfinite(out.logits).all()
    if name in ATTENTION:
        torch.testing.assert_close(
            out.attention[ATTENTION[name]].sum(-1), torch.ones_like(out.attention[ATTENTION[name]].sum(-1))
        )


@pytest.mark.parametrize("name", MODELS)
def test_case_without_patches_is_finite(name):
    model = build(name)
    cases = make_cases([0, 12], seed=4)
    out = run(model, collate(cases))
    assert torch.isfinite(out.logits).all()
    assert (out.fused["patch"][0] == 0).all() or name == "transmil"  # TransMIL: the class token alone
    # its prediction is the same whatever the junk in its padded positions and whoever its neighbour is
    other = run(model, collate([cases[0], make_cases([20], seed=9)[0]], junk_seed=99))
    torch.testing.assert_close(other.logits[0], out.logits[0], rtol=0, atol=TOL)


@pytest.mark.parametrize("name", MULTIMODAL)
def test_missing_genomic(name):
    model = build(name)
    with torch.no_grad():  # move off the init (zero SNN biases would map a zero vector to zero anyway)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    cases = make_cases([8, 15, 11], seed=6, missing_gen={1})
    out = run(model, collate(cases))
    assert torch.isfinite(out.logits).all()
    assert (out.fused["genomic"][1] == 0).all()
    assert (out.fused["genomic"][[0, 2]] != 0).any()
    # the missing case does not read the junk in its omics slot ...
    junk2 = run(model, collate(cases, junk_seed=5))
    torch.testing.assert_close(junk2.logits, out.logits, rtol=0, atol=TOL)
    # ... and equals a batch without any genomic token (L = 0)
    alone = collate([cases[1]])
    alone["gen"], alone["gen_mask"] = alone["gen"][:, :0], alone["gen_mask"][:, :0]
    torch.testing.assert_close(run(model, alone).logits[0], out.logits[1], rtol=0, atol=TOL)
    # the prediction without omics still uses the pathology
    other = run(model, collate([{**cases[1], "path": cases[0]["path"]}]))
    assert (other.logits[0] - out.logits[1]).abs().max() > 1e-6
    # gradients stay finite with a missing modality
    model.train()
    model(collate(cases)).logits.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MULTIMODAL)
def test_omics_input_errors(name):
    model = build(name)
    batch = collate(make_cases([4, 5]))
    bad = {**batch, "gen": batch["gen"].repeat(1, 2, 1), "gen_mask": batch["gen_mask"].repeat(1, 2)}
    with pytest.raises(InputError, match="one token"):
        model(bad)
    with pytest.raises(InputError, match="gen_dim"):
        model({**batch, "gen": batch["gen"][..., :-1]})
    with pytest.raises(InputError, match="gen"):
        model({"path": batch["path"], "path_mask": batch["path_mask"]})


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_seed(name):
    batch = collate(make_cases([6, 25]))
    a = run(build(name, seed=11), batch).logits
    b = run(build(name, seed=11), batch).logits
    c = run(build(name, seed=12), batch).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", MODELS)
def test_dtype_cast(name):
    """``.double()`` / ``.to()`` reach every layer (the per-case layers must not shadow Module internals)."""
    model = build(name).double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in collate(make_cases([3, 20])).items()}
    out = run(model, batch)
    assert out.logits.dtype == torch.float64 and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", list(ATTENTION))
def test_attention_sums_to_one_over_real_patches(name):
    lengths = [4, 19, 33]
    out = run(build(name), collate(make_cases(lengths, seed=8)))
    attn = out.attention[ATTENTION[name]]
    for i, n in enumerate(lengths):
        a = attn[i]
        torch.testing.assert_close(a[..., :n].sum(-1), torch.ones(a.shape[:-1]), rtol=0, atol=1e-6)
        assert (a[..., :n] >= 0).all()
        assert (a[..., n:] == 0).all()


def test_mcat_groups():
    groups = default_groups(GEN)
    assert len(groups) == 6 and sorted(i for g in groups for i in g) == list(range(GEN))
    assert all(g == list(range(g[0], g[-1] + 1)) for g in groups)  # contiguous blocks
    custom = [[0, 5, 7], [1, 2], [3, 4, 6, 8, 9, 10]]
    model = build("mcat", groups=custom)
    out = run(model, collate(make_cases([5, 8])))
    assert out.attention["genomic->patch"].shape == (2, 3, 8)
    with pytest.raises(InputError, match="out of range"):
        build("mcat", groups=[[0, GEN]])
    with pytest.raises(InputError, match="gen_dim"):
        create_model("mcat", path_dim=PATH, gen_dim=4)
    # only the columns in the groups are read
    batch = collate(make_cases([5, 8]))
    batch2 = {**batch, "gen": batch["gen"].clone()}
    batch2["gen"][..., 11:] += 5.0
    torch.testing.assert_close(run(model, batch2).logits, out.logits, rtol=0, atol=TOL)


def test_porpoise_kronecker_width():
    model = build("porpoise")  # gate_dim 4 -> 5 x 5 Kronecker features
    fusion = model.head.fusion
    assert fusion.encoder1[0].in_features == 25
    assert fusion.encoder2[0].in_features == 16 + 2 * 5


# ---------------------------------------------------------------------------------------------- layers


def test_omics_vector():
    x = torch.randn(3, 1, 5)
    mask = torch.tensor([[True], [False], [True]])
    vec, present = omics_vector(x, mask, 5)
    assert present.tolist() == [True, False, True]
    assert torch.equal(vec[0], x[0, 0]) and (vec[1] == 0).all()
    vec, present = omics_vector(x[:, :0], mask[:, :0], 5)
    assert vec.shape == (3, 5) and not present.any() and (vec == 0).all()


def test_moore_penrose_pinv():
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(
        4 * torch.eye(8, dtype=torch.float64) + 0.5 * torch.randn(3, 8, 8, generator=g, dtype=torch.float64), -1
    )
    torch.testing.assert_close(moore_penrose_pinv(a, 6), torch.linalg.inv(a), rtol=0, atol=1e-8)
    # rank-deficient: the pseudo-inverse (a few iterations; rounding in the null space grows with more)
    u = torch.randn(6, 2, generator=g, dtype=torch.float64)
    r = u @ u.T
    torch.testing.assert_close(moore_penrose_pinv(r, 6), torch.linalg.pinv(r), rtol=0, atol=1e-10)
    assert (moore_penrose_pinv(r, 3) - torch.linalg.pinv(r)).abs().max() > 1e-6  # not converged yet


def _slow_nystrom(layer: NystromAttention, x: torch.Tensor) -> torch.Tensor:
    """The formula, for one case of real tokens x (n, dim), written with explicit loops."""
    h, dh, m = layer.heads, layer.dim_head, layer.landmarks
    n = x.shape[0]
    q, k, v = layer.to_qkv(x).chunk(3, -1)
    outs = []
    for head in range(h):
        qh, kh, vh = (t[:, head * dh : (head + 1) * dh] for t in (q, k, v))
        qh = qh / math.sqrt(dh)
        if n <= m:
            o = torch.softmax(qh @ kh.T, -1) @ vh
        else:
            bounds = [math.ceil(j * n / m) for j in range(m + 1)]  # segment j holds i with floor(i m / n) = j
            ql = torch.stack([qh[bounds[j] : bounds[j + 1]].mean(0) for j in range(m)])
            kl = torch.stack([kh[bounds[j] : bounds[j + 1]].mean(0) for j in range(m)])
            a1 = torch.softmax(qh @ kl.T, -1)
            a2 = torch.softmax(ql @ kl.T, -1)
            a3 = torch.softmax(ql @ kh.T, -1)
            o = a1 @ moore_penrose_pinv(a2, layer.pinv_iters) @ (a3 @ vh)
        w = layer.res_conv.weight[head, 0, :, 0]
        half = w.shape[0] // 2
        conv = torch.zeros_like(vh)
        for i in range(n):
            for t in range(w.shape[0]):
                j = i + t - half
                if 0 <= j < n:
                    conv[i] += w[t] * vh[j]
        outs.append(o + conv)
    return layer.to_out(torch.cat(outs, -1))


@pytest.mark.parametrize("n", [5, 20, 23, 47])
def test_nystrom_attention_matches_formula(n):
    torch.manual_seed(0)
    layer = NystromAttention(16, heads=2, landmarks=8).double().eval()
    x = torch.randn(2, 50, 16, dtype=torch.float64)
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[0, :n] = True
    mask[1, torch.randperm(50)[:n]] = True  # non-prefix mask
    with torch.no_grad():
        out = layer(x, mask)
        for i in range(2):
            ref = _slow_nystrom(layer, x[i, mask[i]])
            torch.testing.assert_close(out[i, mask[i]], ref, rtol=0, atol=1e-10)
            assert (out[i, ~mask[i]] == 0).all()


def test_nystrom_approximates_softmax_attention():
    """With as many landmarks as tokens and a well-conditioned kernel, Nyström = exact attention."""
    torch.manual_seed(0)
    exact = NystromAttention(8, heads=1, landmarks=64, residual_kernel=0).double()
    nys = NystromAttention(8, heads=1, landmarks=12, pinv_iters=30, residual_kernel=0).double()
    nys.load_state_dict(exact.state_dict())
    with torch.no_grad():
        exact.to_qkv.weight.mul_(6.0)  # peaked softmax: a well-conditioned landmark kernel
        nys.to_qkv.weight.copy_(exact.to_qkv.weight)
        x = torch.randn(1, 12, 8, dtype=torch.float64)
        torch.testing.assert_close(nys(x), exact(x), rtol=0, atol=1e-6)


def test_ppeg_matches_grid_reference():
    torch.manual_seed(0)
    ppeg = PPEG(4).double()
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, :5] = True
    mask[1, [0, 3, 4, 8, 9, 10, 11]] = True
    with torch.no_grad():
        out = ppeg(x, mask)
        for i in range(2):
            t = x[i, mask[i]]
            n = t.shape[0]
            side = math.ceil(math.sqrt(n))
            grid = torch.zeros(1, 4, side, side, dtype=torch.float64)
            for c in range(side * side):  # row-major, leftover cells repeat the first tokens
                grid[0, :, c // side, c % side] = t[c % n]
            ref = grid.clone()
            for conv in ppeg.convs:
                k = conv.kernel_size[0]
                ref += F.conv2d(grid, conv.weight, conv.bias, padding=k // 2, groups=4)
            ref = ref.reshape(4, side * side).T[:n]
            torch.testing.assert_close(out[i, mask[i]], ref, rtol=0, atol=1e-12)
            assert (out[i, ~mask[i]] == 0).all()


def test_masked_attention_matches_torch():
    torch.manual_seed(0)
    ours = MaskedMultiheadAttention(8, heads=2)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    q, kv = torch.randn(3, 4, 8), torch.randn(3, 7, 8)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2, 0] = False
    with torch.no_grad():
        out, attn = ours(q, kv, kv, mask)
        r_out, r_attn = ref(q, kv, kv, key_padding_mask=~mask, average_attn_weights=False)
    torch.testing.assert_close(out, r_out)
    torch.testing.assert_close(attn, r_attn)
    # a query with no valid key attends to nothing
    mask[0] = False
    out, attn = ours(q, kv, kv, mask)
    assert (attn[0] == 0).all()
    torch.testing.assert_close(out[0], ours.out.bias.expand(4, 8))


def test_masked_transformer_layer_matches_torch():
    torch.manual_seed(0)
    ours = MaskedTransformerLayer(8, heads=2, ff_dim=16, dropout=0.0).eval()
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([ours.attn.q.weight, ours.attn.k.weight, ours.attn.v.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([ours.attn.q.bias, ours.attn.k.bias, ours.attn.v.bias]))
        ref.self_attn.out_proj.load_state_dict(ours.attn.out.state_dict())
        ref.linear1.load_state_dict(ours.ff[0].state_dict())
        ref.linear2.load_state_dict(ours.ff[3].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
        x = torch.randn(2, 6, 8)
        mask = torch.ones(2, 6, dtype=torch.bool)
        mask[1, 4:] = False
        out = ours(x, mask)
        r = ref(x, src_key_padding_mask=~mask)
        torch.testing.assert_close(out[mask], r[mask], rtol=1e-5, atol=1e-5)
        assert torch.isfinite(ours(x, torch.zeros_like(mask))).all()


def test_gated_bilinear_fusion():
    torch.manual_seed(0)
    fusion = GatedBilinearFusion(6, 5, gate_dim=3, hidden=7, dropout=0.0).eval()
    x1, x2 = torch.randn(4, 6), torch.randn(4, 5)
    out = fusion(x1, x2)
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    # a reference of the first stage, from the formula
    c = torch.cat([x1, x2], -1)
    o = []
    for i, x in enumerate((x1, x2)):
        gate = torch.sigmoid(fusion.z[i](c))
        oi = F.relu(fusion.o[i][0](gate * F.relu(fusion.h[i](x))))
        o.append(torch.cat([oi, torch.ones(4, 1)], -1))
    kron = torch.stack([torch.outer(a, b).reshape(-1) for a, b in zip(o[0], o[1], strict=True)])
    ref = fusion.encoder2(torch.cat([fusion.encoder1(kron), o[0], o[1]], -1))
    torch.testing.assert_close(out, ref)
    bil = GatedBilinearFusion(6, 5, gate_dim=3, hidden=7, bilinear_gate=True)
    assert bil(x1, x2).shape == (4, 7)
