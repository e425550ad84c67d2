"""Baselines: SurvPath, MLP / SNN, the clinic + pathology fusion models (Table 4) and the Cox PH model."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from gradient_helpers import check_gradients
from survpgc.data.dataset import collate_survival
from survpgc.errors import ConfigError, InputError, NotFittedError
from survpgc.models import create_model, get_model_spec
from survpgc.models.coxph import DEFAULT_COLUMNS, ClinicalDesign, CoxPHBaseline, main_stage
from survpgc.models.layers import masked_mean
from survpgc.models.survpath import SurvPath, contiguous_groups
from survpgc.survival.losses import nll_survival_loss

PATH_DIM, CLIN_DIM, N_C, GEN_DIM, CLIN_VEC, N_BINS = 12, 10, 6, 20, 5, 4
DIMS = {"path_dim": PATH_DIM, "clin_dim": CLIN_DIM, "gen_dim": GEN_DIM, "n_bins": N_BINS}
ATTN_SMALL = {"dim": 16, "attn_hidden": 8}

# variant id -> (registry name, extra kwargs, modalities it reads)
VARIANTS = {
    "survpath": ("survpath", {"n_groups": 4, "dim": 16, "dim_head": 8, "hidden": 8, "snn_hidden": 8}, {"path", "gen"}),
    "survpath_groups": (
        "survpath",
        {"groups": [[0, 5, 7], [1, 2], [19, 3, 4, 10]], "dim": 16, "heads": 2, "dim_head": 4, "snn_hidden": 8},
        {"path", "gen"},
    ),
    "mlp": ("mlp", {"hidden": (16, 8)}, {"clin"}),
    "mlp_genomic": ("mlp", {"modality": "genomic", "hidden": (16, 8)}, {"gen"}),
    "snn": ("snn", {"hidden": (16, 8)}, {"clin"}),
    "snn_genomic": ("snn", {"modality": "genomic", "hidden": (16,)}, {"gen"}),
    "late_fusion": ("late_fusion", {**ATTN_SMALL, "head_hidden": 8, "clin_hidden": (16, 8)}, {"path", "clin"}),
    "late_fusion_learned": (
        "late_fusion",
        {**ATTN_SMALL, "head_hidden": 8, "clin_hidden": (8,), "learn_weight": True},
        {"path", "clin"},
    ),
    "concat_fusion": ("concat_fusion", {**ATTN_SMALL, "hidden": 8}, {"path", "clin"}),
    "concat_fusion_vector": (
        "concat_fusion",
        {**ATTN_SMALL, "clin_mode": "vector", "clin_dim": CLIN_VEC},
        {"path", "clin"},
    ),
    "encoded_fusion": ("encoded_fusion", {**ATTN_SMALL, "clin_hidden": (16,), "hidden": 8}, {"path", "clin"}),
}
NAMES = ("survpath", "mlp", "snn", "late_fusion", "concat_fusion", "encoded_fusion")
WITH_PATCHES = [v for v, (_, _, reads) in VARIANTS.items() if "path" in reads]


def build(variant, seed=0, **over):
    name, kwargs, _ = VARIANTS[variant]
    torch.manual_seed(seed)
    return create_model(name, **{**DIMS, **kwargs, **over})


def f64(batch):
    """The batch in float64: tests that compare two routes to the same number (padded vs alone, permuted
    patches) or look for exactly-zero gradients run in float64, where round-off does not depend on the CPU."""
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}


def no_dropout(variant):
    return {"dropout": 0.0, **({"ffn_dropout": 0.0} if VARIANTS[variant][0] == "survpath" else {})}


def clin_vector(variant):
    return VARIANTS[variant][1].get("clin_mode") == "vector"


def item(g, i, n_patches=5, clin=True, gen=True, missing_fields=(), vector=False):
    """One dataset item in SurvivalDataset's format (empty bag = missing modality)."""
    n_c, d_c = (1, CLIN_VEC) if vector else (N_C, CLIN_DIM)
    clin_t = torch.randn(n_c, d_c, generator=g) if clin else torch.zeros(0, d_c)
    clin_m = torch.ones(clin_t.shape[0], dtype=torch.bool)
    if clin:
        clin_m[list(missing_fields)] = False
    gen_t = torch.randn(1, GEN_DIM, generator=g) if gen else torch.zeros(0, GEN_DIM)
    return {
        "case_id": f"c{i}",
        "time": float(i + 1),
        "event": bool(i % 2),
        "bin": i % N_BINS,
        "path": torch.randn(n_patches, PATH_DIM, generator=g),
        "path_mask": torch.ones(n_patches, dtype=torch.bool),
        "clin": clin_t,
        "clin_mask": clin_m,
        "gen": gen_t,
        "gen_mask": torch.ones(gen_t.shape[0], dtype=torch.bool),
    }


def batch_of(variant, cases, seed=0):
    """Collated batch; ``cases`` is a list of ``item`` keyword dicts."""
    g = torch.Generator().manual_seed(seed)
    return collate_survival([item(g, i, vector=clin_vector(variant), **c) for i, c in enumerate(cases)])


def junk(batch, seed=123, scale=1e3, extra=0):
    """Pad path / clin bags with ``extra`` masked positions and fill every masked position with large noise."""
    g = torch.Generator().manual_seed(seed)
    out = dict(batch)
    for key in ("path", "clin", "gen"):
        x, m = out[key], out[f"{key}_mask"]
        if extra and key != "gen":
            x = torch.cat([x, torch.zeros(x.shape[0], extra, x.shape[2])], dim=1)
            m = torch.cat([m, torch.zeros(m.shape[0], extra, dtype=torch.bool)], dim=1)
        x = x.clone()
        x[~m] = scale * torch.randn(int((~m).sum()), x.shape[2], generator=g)
        out[key], out[f"{key}_mask"] = x, m
    return out


def finite(out):
    tensors = [out.logits, *(out.fused or {}).values(), *(out.attention or {}).values()]
    return all(torch.isfinite(t).all() for t in tensors)


# ============================================================================ registry
def test_registry_specs_and_dims_only_construction():
    for name in NAMES:
        spec = get_model_spec(name)
        assert spec.neural and spec.description
        m = create_model(name, **DIMS)  # only the shared dims
        assert m.n_bins == N_BINS and m.n_parameters() > 0
        create_model(name, **DIMS, n_clin_tokens=N_C)  # the clinical token count too
    assert get_model_spec("survpath").modalities == ("pathology", "genomic")
    for name in ("mlp", "snn"):
        spec = get_model_spec(name)
        assert spec.modalities == ("clinical",) and spec.optional_modalities == ("genomic",)
        assert create_model(name, **DIMS).modalities == ("clinical",)
        assert create_model(name, **DIMS, modality="genomic").modalities == ("genomic",)
        with pytest.raises(ConfigError, match="modality"):
            create_model(name, modality="pathology")
    for name in ("late_fusion", "concat_fusion", "encoded_fusion"):
        assert get_model_spec(name).modalities == ("pathology", "clinical")
    spec = get_model_spec("coxph")
    assert spec.factory is CoxPHBaseline and not spec.neural and spec.modalities == ("clinical",)
    assert create_model("coxph", penalizer=0.3).penalizer == 0.3
    with pytest.raises(ConfigError, match="does not accept"):
        create_model("mlp", n_layers=3)


def test_default_dims_parameter_counts():
    counts = {name: create_model(name).n_parameters() for name in NAMES}
    # mlp: 3072*256+256 + 256*64+64 + 64*4+4 (6 clinical tokens of 512 flattened)
    assert counts["mlp"] == 3072 * 256 + 256 + 256 * 64 + 64 + 64 * 4 + 4
    assert counts["snn"] == 3072 * 256 + 256 + 256 * 256 + 256 + 256 * 4 + 4
    abmil = 1024 * 256 + 256 + 2 * (256 * 256 + 256) + 256 + 1  # Linear + gated attention (a, b, w)
    assert counts["concat_fusion"] == abmil + (256 + 512) * 64 + 64 + 64 * 4 + 4
    assert counts["encoded_fusion"] == abmil + 3072 * 256 + 256 + 512 * 64 + 64 + 64 * 4 + 4


# ============================================================================ generic neural contract
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_batch_1_and_3(variant):
    m = build(variant).eval()
    for cases in ([{"n_patches": 7}], [{"n_patches": 5}, {"n_patches": 11}, {"n_patches": 2}]):
        b, length = len(cases), max(c["n_patches"] for c in cases)
        with torch.no_grad():
            out = m(batch_of(variant, cases), return_attention=True)
        assert out.discrete and out.logits.shape == (b, N_BINS)
        assert out.risk.shape == (b,) and out.survival.shape == (b, N_BINS)
        assert finite(out)
        assert all(v.shape[0] == b and v.ndim == 2 for v in out.fused.values())
        name = VARIANTS[variant][0]
        if name == "survpath":
            g = m.n_groups
            assert out.attention["genomic->patch"].shape == (b, g, length)
            assert out.attention["patch->genomic"].shape == (b, length, g)
            assert list(out.fused) == ["genomic[genomic-patch]", "patch[genomic-patch]"]
        elif "path" in VARIANTS[variant][2]:
            assert out.attention["patch"].shape == (b, length)
            torch.testing.assert_close(out.attention["patch"].sum(1), torch.ones(b))
            assert list(out.fused) == ["pathology", "clinical"]
        else:
            assert out.attention is None
        if name == "late_fusion":
            w = torch.sigmoid(m.mix) if m.mix is not None else 0.5
            torch.testing.assert_close(out.logits, w * out.fused["pathology"] + (1 - w) * out.fused["clinical"])
        else:  # fused vectors are exactly the head's input, in order
            with torch.no_grad():
                torch.testing.assert_close(m.head(torch.cat(list(out.fused.values()), dim=-1)), out.logits)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient(variant):
    m = build(variant, **no_dropout(variant)).train().double()
    grads = {n: torch.zeros_like(p) for n, p in m.named_parameters()}
    for seed, cases in enumerate(([{"n_patches": 6}, {"n_patches": 3}, {"n_patches": 9}], [{"n_patches": 4}] * 4)):
        batch = f64(batch_of(variant, cases, seed=seed))
        loss = nll_survival_loss(m(batch).logits, batch["bin"], batch["event"])
        m.zero_grad()
        loss.backward()
        for n, p in m.named_parameters():
            assert p.grad is not None, n
            grads[n] += p.grad.abs()
    check_gradients(m, grads, variant)


@pytest.mark.parametrize("position", [0, 1])
@pytest.mark.parametrize("variant", VARIANTS)
def test_pad_invariance(variant, position):
    m = build(variant).eval().double()
    case = {"n_patches": 4, "missing_fields": () if clin_vector(variant) else (2,)}
    alone = f64(junk(batch_of(variant, [case], seed=5)))
    neighbour = {"n_patches": 13}
    cases = [case, neighbour] if position == 0 else [neighbour, case]
    together = junk(batch_of(variant, cases, seed=5) if position == 0 else _same_case_second(variant, case), extra=3)
    together = f64(together)
    with torch.no_grad():
        a, t = m(alone, return_attention=True), m(together, return_attention=True)
    torch.testing.assert_close(t.logits[position : position + 1], a.logits, atol=1e-9, rtol=1e-9)
    for k in a.fused:
        torch.testing.assert_close(t.fused[k][position : position + 1], a.fused[k], atol=1e-9, rtol=1e-9)


def _same_case_second(variant, case):
    """Batch [neighbour, case] where ``case`` has exactly the tensors it has in ``batch_of([case], seed=5)``."""
    g = torch.Generator().manual_seed(5)
    first = item(g, 0, vector=clin_vector(variant), **case)
    other = item(torch.Generator().manual_seed(9), 1, vector=clin_vector(variant), n_patches=13)
    return collate_survival([other, first])


@pytest.mark.parametrize("variant", WITH_PATCHES)
def test_patch_order_invariance(variant):
    m = build(variant).eval().double()
    batch = f64(batch_of(variant, [{"n_patches": 10}, {"n_patches": 6}], seed=2))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shuffled = dict(batch, path=batch["path"][:, perm], path_mask=batch["path_mask"][:, perm])
    with torch.no_grad():
        a, b = m(batch, return_attention=True), m(shuffled, return_attention=True)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-9, rtol=1e-9)
    key = "genomic->patch" if VARIANTS[variant][0] == "survpath" else "patch"
    torch.testing.assert_close(a.attention[key][..., perm], b.attention[key], atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_nan_single_patch_and_missing_modalities(variant):
    m = build(variant).train()
    scenarios = [
        [{"n_patches": 1}],
        [{"n_patches": 3, "clin": False}, {"n_patches": 2}],
        [{"n_patches": 3, "gen": False}, {"n_patches": 2}],
        [{"n_patches": 3, "clin": False, "gen": False}, {"n_patches": 5}],
        [{"n_patches": 2, "clin": False}],  # no case of the batch has clinical tokens: L = 0
        [{"n_patches": 2, "gen": False}],
    ]
    for cases in scenarios:
        out = m(junk(batch_of(variant, cases)), return_attention=True)
        assert finite(out), cases
        out.logits.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None), cases
        m.zero_grad()
    for batch in (batch_of(variant, [{"n_patches": 4}, {"n_patches": 3}]), batch_of(variant, [{"n_patches": 4}])):
        batch = dict(batch)
        batch["path_mask"] = batch["path_mask"].clone()
        batch["path_mask"][-1] = False  # the last case has no patches at all
        out = m(junk(batch), return_attention=True)
        assert finite(out)
    empty = batch_of(variant, [{"n_patches": 3}])  # no case of the batch has patches: L = 0
    empty = dict(empty, path=empty["path"][:, :0], path_mask=empty["path_mask"][:, :0])
    assert finite(m(empty, return_attention=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic_under_seed(variant):
    batch = batch_of(variant, [{"n_patches": 5}, {"n_patches": 8}], seed=3)
    outs = []
    for seed in (7, 7, 8):
        m = build(variant, seed=seed).train()  # dropout active: seeded too
        torch.manual_seed(0)
        outs.append(m(batch).logits.detach())
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    assert not torch.equal(outs[0], outs[2])


# ============================================================================ mlp / snn
@pytest.mark.parametrize("name", ["mlp", "snn"])
def test_vector_models_missing_tokens_are_zeros_and_position_matters(name):
    m = build(name).eval()
    batch = junk(batch_of(name, [{"missing_fields": (2, 4)}, {"clin": False}]))
    zeroed = dict(batch, clin=batch["clin"].clone(), clin_mask=torch.ones_like(batch["clin_mask"]))
    zeroed["clin"][~batch["clin_mask"]] = 0.0
    with torch.no_grad():
        out, ref = m(batch), m(zeroed)
        torch.testing.assert_close(out.logits, ref.logits)
        # the case without a clinical record is the all-zero input
        torch.testing.assert_close(out.logits[1], m.head(m.encoder(torch.zeros(1, N_C * CLIN_DIM)))[0])
        # flattened by position: swapping two real fields changes the prediction
        swapped = dict(batch, clin=batch["clin"][:, [1, 0, 2, 3, 4, 5]])
        assert not torch.allclose(m(swapped).logits[0], out.logits[0])
    # reads only the clinical bag; other modalities may be absent
    only = {"clin": batch["clin"], "clin_mask": batch["clin_mask"]}
    torch.testing.assert_close(m(only).logits, out.logits)
    with pytest.raises(InputError, match="dim"):
        m({"clin": torch.zeros(1, N_C, CLIN_DIM + 1)})
    with pytest.raises(InputError, match="past position"):
        m({"clin": torch.zeros(1, N_C + 1, CLIN_DIM)})


@pytest.mark.parametrize("name", ["mlp_genomic", "snn_genomic"])
def test_vector_models_genomic(name):
    m = build(name).eval()
    batch = junk(batch_of(name, [{"gen": False}, {}]))
    only = {"gen": batch["gen"], "gen_mask": batch["gen_mask"]}
    with torch.no_grad():
        out = m(only)
        torch.testing.assert_close(out.logits[1], m.head(m.encoder(batch["gen"][1, :1]))[0])
        torch.testing.assert_close(out.logits[0], m.head(m.encoder(torch.zeros(1, GEN_DIM)))[0])
    with pytest.raises(InputError, match="features"):
        m({"gen": torch.zeros(2, 1, GEN_DIM + 3)})


def test_snn_init_and_blocks():
    m = create_model("snn", modality="genomic", gen_dim=400, hidden=(300,))
    lin = m.encoder[0][0]
    assert isinstance(m.encoder[0][1], torch.nn.ELU) and isinstance(m.encoder[0][2], torch.nn.AlphaDropout)
    assert abs(lin.weight.std().item() - 400**-0.5) < 0.1 * 400**-0.5
    assert torch.count_nonzero(lin.bias) == 0 and torch.count_nonzero(m.head.bias) == 0


# ============================================================================ survpath
def test_contiguous_groups():
    assert contiguous_groups(10, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [j for g in contiguous_groups(2574, 8) for j in g] == list(range(2574))
    with pytest.raises(ConfigError, match="exceeds"):
        contiguous_groups(3, 4)
    with pytest.raises(ConfigError, match="n_groups"):
        contiguous_groups(3, 0)


def test_survpath_groups_select_features_and_validate():
    m = build("survpath_groups").eval()
    assert isinstance(m.proj["genomic"], torch.nn.Identity)  # tokens come from the tokenizer, at dim
    assert m.n_groups == 3 and m.tokenizer.n_groups == 3
    batch = batch_of("survpath_groups", [{"n_patches": 6}], seed=4)
    outside = dict(batch, gen=batch["gen"].clone())
    outside["gen"][..., [6, 8, 9, 11, 18]] += 5.0  # features in no group
    inside = dict(batch, gen=batch["gen"].clone())
    inside["gen"][..., 19] += 5.0
    with torch.no_grad():
        ref = m(batch).logits
        torch.testing.assert_close(m(outside).logits, ref)
        assert not torch.allclose(m(inside).logits, ref)
    fallback = build("survpath")
    assert fallback.n_groups == 4 and fallback.tokenizer.index.shape == (4, 5)
    with pytest.raises(ConfigError, match="outside"):
        SurvPath(groups=[[0, 1], [GEN_DIM]], **DIMS)
    with pytest.raises(ConfigError, match="empty"):
        SurvPath(groups=[[0], []], **DIMS)
    with pytest.raises(InputError, match="gen_dim"):
        m(dict(batch, gen=torch.zeros(1, 1, GEN_DIM + 1)))


def test_survpath_missing_omics_and_attention_rows():
    m = build("survpath").eval()
    batch = junk(batch_of("survpath", [{"n_patches": 5, "gen": False}, {"n_patches": 3}]))
    with torch.no_grad():
        out = m(batch, return_attention=True)
    a = out.attention
    assert (a["patch->genomic"][0] == 0).all() and (a["genomic->patch"][0] == 0).all()
    assert (out.fused["genomic[genomic-patch]"][0] == 0).all()
    # pathway queries: one softmax over [pathways ‖ patches]; patch queries over pathways
    rows = a["genomic->patch"][1].sum(-1) + a["genomic->genomic[genomic-patch]"][1].sum(-1)
    torch.testing.assert_close(rows, torch.ones(m.n_groups))
    assert (a["genomic->patch"][1, :, 3:] == 0).all()
    torch.testing.assert_close(a["patch->genomic"][1, :3].sum(-1), torch.ones(3))


# ============================================================================ fusion
def test_late_fusion_missing_branch_uses_the_other():
    m = build("late_fusion").eval()
    batch = junk(batch_of("late_fusion", [{"n_patches": 3, "clin": False}, {"n_patches": 4}, {"n_patches": 2}]))
    batch["path_mask"] = batch["path_mask"].clone()
    batch["path_mask"][2] = False
    with torch.no_grad():
        out = m(batch)
    f = out.fused
    torch.testing.assert_close(out.logits[0], f["pathology"][0])
    torch.testing.assert_close(out.logits[1], (f["pathology"][1] + f["clinical"][1]) / 2)
    torch.testing.assert_close(out.logits[2], f["clinical"][2])
    learned = build("late_fusion_learned").eval()
    with torch.no_grad():
        learned.mix.fill_(1.3)
        out = learned(batch)
    w = torch.sigmoid(torch.tensor(1.3))
    torch.testing.assert_close(out.logits[1], w * out.fused["pathology"][1] + (1 - w) * out.fused["clinical"][1])
    torch.testing.assert_close(out.logits[2], out.fused["clinical"][2])


def test_concat_fusion_clinical_vector():
    m = build("concat_fusion").eval()
    batch = junk(batch_of("concat_fusion", [{"missing_fields": (0, 3)}, {"clin": False}]))
    with torch.no_grad():
        out = m(batch)
    clean = batch["clin"] * batch["clin_mask"][..., None]
    torch.testing.assert_close(out.fused["clinical"], masked_mean(clean, batch["clin_mask"]))
    assert (out.fused["clinical"][1] == 0).all()
    assert out.fused["pathology"].shape == (2, 16)
    vec = build("concat_fusion_vector").eval()
    batch = batch_of("concat_fusion_vector", [{}, {"clin": False}])
    with torch.no_grad():
        out = vec(batch)
    torch.testing.assert_close(out.fused["clinical"][0], batch["clin"][0, 0])
    assert out.fused["clinical"].shape == (2, CLIN_VEC) and (out.fused["clinical"][1] == 0).all()
    with pytest.raises(InputError, match="one vector per case"):
        vec(dict(batch, clin=torch.zeros(2, 2, CLIN_VEC), clin_mask=torch.ones(2, 2, dtype=torch.bool)))
    with pytest.raises(ConfigError, match="clin_mode"):
        create_model("concat_fusion", clin_mode="onehot")


def test_encoded_fusion_clinical_encoding():
    m = build("encoded_fusion").eval()
    batch = junk(batch_of("encoded_fusion", [{}, {"clin": False}]))
    with torch.no_grad():
        out = m(batch)
    assert out.fused["clinical"].shape == (2, 16) and out.fused["pathology"].shape == (2, 16)
    assert (out.fused["clinical"][1] == 0).all() and (out.fused["clinical"][0] != 0).any()


# ============================================================================ Cox PH
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Stage I", "I"), ("Stage II", "II"), ("Stage IIIA", "III"), ("Stage IIIC", "III"), ("Stage IV", "IV"),
        ("Stage IVB", "IV"), ("stage iiib", "III"), ("IIA", "II"), ("Stage 0", "0"), ("Stage IA1", "I"),
        ("Stage X", None), ("[Discrepancy]", None), (None, None), (float("nan"), None),
    ],
)  # fmt: skip
def test_main_stage(raw, expected):
    assert main_stage(raw) == expected


def toy_cases():
    return pd.DataFrame(
        {
            "age": [50.0, 60.0, np.nan, 70.0, 40.0, 66.0],
            "sex": ["male", "female", "male", "male", "female", "male"],
            "race": ["white", "asian", None, "white", "asian", "white"],
            "stage": ["Stage I", "Stage IIIA", "Stage IIIB", np.nan, "Stage I", "Stage II"],
            "stage_edition": ["7th"] * 6,
            "subtype": ["HCC"] * 6,
        },
        index=[f"c{i}" for i in range(6)],
    )


def test_design_matrix_encoding():
    cases = toy_cases()
    d = ClinicalDesign()
    x = d.fit_transform(cases)
    # constant stage_edition / subtype dropped; reference = most frequent level, explicit missing levels
    assert list(x.columns) == [
        "age",
        "sex=female",
        "race=asian",
        "race=missing",
        "stage=II",
        "stage=III",
        "stage=missing",
    ]
    ages = np.array([50.0, 60.0, 70.0, 40.0, 66.0])
    mean, sd = ages.mean(), ages.std()
    np.testing.assert_allclose(x["age"].to_numpy(), (np.array([50, 60, 60, 70, 40, 66]) - mean) / sd)  # median 60
    assert d.levels_["sex"][0] == "male" and d.levels_["race"][0] == "white" and d.levels_["stage"][0] == "I"
    np.testing.assert_array_equal(x["stage=III"].to_numpy(), [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(x["stage=missing"].to_numpy(), [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(x["race=missing"].to_numpy(), [0, 0, 1, 0, 0, 0])
    assert x.index.equals(cases.index)
    with pytest.raises(NotFittedError):
        ClinicalDesign().transform(cases)
    with pytest.raises(InputError, match="lack"):
        d.transform(cases.drop(columns=["race"]))


def test_design_unseen_category_is_reference_with_warning(caplog):
    d = ClinicalDesign().fit(toy_cases())
    new = toy_cases().iloc[:2].copy()
    new.loc["c0", "race"] = "pacific islander"
    new.loc["c1", "stage"] = "Stage IV"
    with caplog.at_level(logging.WARNING, logger="survpgc.models.coxph"):
        x = d.transform(new)
    assert x.loc["c0", ["race=asian", "race=missing"]].tolist() == [0.0, 0.0]
    assert x.loc["c1", ["stage=II", "stage=III", "stage=missing"]].tolist() == [0.0, 0.0, 0.0]
    assert "pacific islander" in caplog.text and "'IV'" in caplog.text


def test_design_is_fitted_on_training_rows_only():
    train, test = toy_cases(), toy_cases().rename(index=lambda s: "t" + s)
    d = ClinicalDesign().fit(train)
    stats = (dict(d.numeric_), dict(d.levels_), list(d.columns_))
    before = d.transform(train)
    test.loc[:, "age"] = [1000.0, 2000.0, np.nan, 0.0, 5.0, 7.0]
    test.loc[:, "stage"] = "Stage IV"
    xt = d.transform(test)
    assert (dict(d.numeric_), dict(d.levels_), list(d.columns_)) == stats
    pd.testing.assert_frame_equal(d.transform(train), before)
    mean, sd, median = d.numeric_["age"]
    np.testing.assert_allclose(xt["age"].to_numpy(), (np.array([1000, 2000, median, 0, 5, 7]) - mean) / sd)


@pytest.fixture(scope="module")
def lihc_split():
    from survpgc.data.cohort import load_builtin

    cases = load_builtin("tcga-lihc").cases
    idx = np.random.default_rng(0).permutation(len(cases))
    cut = int(0.8 * len(cases))
    return cases.iloc[idx[:cut]], cases.iloc[idx[cut:]]


@pytest.mark.parametrize(("penalizer", "l1_ratio"), [(0.1, 0.0), (0.05, 0.3)])
def test_cox_coefficients_equal_lifelines(lihc_split, penalizer, l1_ratio):
    from lifelines import CoxPHFitter

    train, _ = lihc_split
    model = CoxPHBaseline(penalizer=penalizer, l1_ratio=l1_ratio).fit(train, train["time"], train["event"])
    x = ClinicalDesign(DEFAULT_COLUMNS).fit_transform(train)
    df = x.assign(T=train["time"].to_numpy(), E=train["event"].astype(int).to_numpy())
    ref = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio).fit(df, duration_col="T", event_col="E")
    assert list(model.params_.index) == list(x.columns)
    np.testing.assert_allclose(model.params_.to_numpy(), ref.params_.to_numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(model.predict_risk(train), x.to_numpy() @ ref.params_.to_numpy(), atol=1e-9)


def test_cox_lihc_fit_predict(lihc_split):
    from survpgc.survival.metrics import harrell_cindex

    train, test = lihc_split
    model = create_model("coxph").fit(train)
    assert "subtype" not in " ".join(model.design_.columns_)  # one subtype in LIHC: constant, dropped
    risk_train, risk_test = model.predict_risk(train), model.predict_risk(test)
    assert risk_test.shape == (len(test),) and np.isfinite(risk_test).all()
    c_train = harrell_cindex(train["time"], train["event"], risk_train)
    c_test = harrell_cindex(test["time"], test["event"], risk_test)
    print(f"LIHC Cox PH C-index: train {c_train:.4f}, test {c_test:.4f}")
    assert c_train > 0.5
    times = [6.0, 12.0, 36.0, 60.0]
    surv = model.predict_survival(test, times)
    assert surv.shape == (len(test), len(times)) and ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 1e-12).all()
    order = np.argsort(risk_test)  # proportional hazards: higher risk -> lower survival at every time
    assert (np.diff(surv[order], axis=0) <= 1e-9).all()


def test_cox_errors():
    with pytest.raises(NotFittedError):
        CoxPHBaseline().predict_risk(toy_cases())
    with pytest.raises(ConfigError, match="penalizer"):
        CoxPHBaseline(penalizer=-1)
    with pytest.raises(ConfigError, match="l1_ratio"):
        CoxPHBaseline(l1_ratio=2)
    cases = toy_cases().assign(time=[5.0, 3.0, 8.0, 1.0, 9.0, 4.0], event=[1, 0, 1, 1, 0, 1])
    model = CoxPHBaseline(penalizer=0.5).fit(cases)
    with pytest.raises(InputError, match="times"):
        model.predict_survival(cases, [])
