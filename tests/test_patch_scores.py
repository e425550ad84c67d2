"""Per-patch scores (survpgc.explain.scores): on hand-made attention models whose risk-raising patches are
known, on every registered model that attends to patches, and the integrated gradients' completeness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from survpgc.errors import InputError
from survpgc.explain.attention import localisation_auroc
from survpgc.explain.scores import SCORES, score_patches
from survpgc.models import create_model, list_models
from survpgc.models.base import ModelOutput

SIGNED = ("relevance", "grad_input", "ig", "occlusion")


class ToyAttentionMIL(nn.Module):
    """risk = w * (attention-weighted mean of feature 0), attention = softmax(a * feature 0) over the real
    patches. ``a > 0``: the model looks at the texture patches (feature 0 = 1); ``a < 0``: it looks away from
    them, and still reads "more texture = higher risk" through the few weights they keep."""

    def __init__(self, a: float, w: float = 2.0, dim: int = 4) -> None:
        super().__init__()
        self.att = nn.Linear(dim, 1, bias=False)
        self.out = nn.Linear(dim, 1, bias=False)
        with torch.no_grad():
            self.att.weight.zero_()
            self.att.weight[0, 0] = a
            self.out.weight.zero_()
            self.out.weight[0, 0] = w

    def forward(self, batch, return_attention=False):
        x, mask = batch["path"], batch["path_mask"]
        s = self.att(x)[..., 0].masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=-1)
        pooled = torch.einsum("bl,bld->bd", a, x)
        return ModelOutput(logits=self.out(pooled), attention={"patch": a}, discrete=False)


def toy_bag(n: int = 12, planted=(2, 5, 9), pad: int = 3, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, n + pad, 4, dtype=dtype)
    x[0, :, 1:] = torch.randn(n + pad, 3, generator=g, dtype=dtype)  # features the model ignores
    x[0, list(planted), 0] = 1.0
    x[0, n:] = 7.0  # padding junk: must not matter
    mask = torch.zeros(1, n + pad, dtype=torch.bool)
    mask[0, :n] = True
    truth = np.zeros(n, bool)
    truth[list(planted)] = True
    return {"path": x, "path_mask": mask}, truth


def test_every_signed_score_ranks_the_contributing_patches_first():
    model = ToyAttentionMIL(a=1.5).double()
    batch, truth = toy_bag()
    res = score_patches(model, batch, None)
    assert res.keys == ["patch"]
    vals = res.by_key["patch"]
    assert set(SCORES) <= set(vals)
    for name in (*SIGNED, "attention"):
        assert len(vals[name]) == 12
        assert localisation_auroc(vals[name], truth) == 1.0, name
        if name in SIGNED:  # positive = raises the risk
            assert (vals[name][truth] > 0).all(), name


def test_a_model_that_looks_away_from_the_texture():
    """Attention ranks the texture patches last (AUROC 0) although they raise the risk: attention is a view,
    not an explanation. Occlusion (exact) and integrated gradients still rank them first; the first-order
    gradient x input gets their sign wrong (a texture patch made more texture-like loses attention weight)."""
    model = ToyAttentionMIL(a=-2.0).double()
    batch, truth = toy_bag()
    vals = score_patches(model, batch, None).by_key["patch"]
    assert localisation_auroc(vals["attention"], truth) == 0.0
    assert localisation_auroc(vals["occlusion"], truth) == 1.0
    assert localisation_auroc(vals["ig"], truth) == 1.0
    assert localisation_auroc(vals["relevance"], truth) == 1.0
    assert localisation_auroc(vals["grad_input"], truth) == 0.0 and (vals["grad_input"][truth] < 0).all()


@pytest.mark.parametrize("baseline", ["mean", "zero"])
def test_integrated_gradients_completeness_in_float64(baseline):
    """Sum of the per-patch attributions = risk(x) - risk(baseline) to 1e-4: on the smooth toy with the default
    32 Gauss-Legendre points; on SurvPGC (ReLU kinks: the quadrature converges like 1/steps) with 256."""
    toy = ToyAttentionMIL(a=1.0).double()
    batch, _ = toy_bag()
    res = score_patches(toy, batch, None, scores=("ig",), ig_baseline=baseline)
    total = res.by_key["patch"]["ig"].sum()
    assert total == pytest.approx(res.risk - res.ig_baseline_risk, abs=1e-4)
    assert abs(res.ig_delta) < 1e-4
    torch.manual_seed(0)
    model = create_model("survpgc", **DIMS).double().eval()
    batch = make_batch(15, pad=4, dtype=torch.float64)
    batch["path"][0, :5] += 2.0  # a few patches that stand out: the bag is far from its baseline
    res = score_patches(model, batch, None, scores=("ig",), ig_baseline=baseline, ig_steps=256)
    assert res.keys == ["clinic->patch", "genomic->patch"]
    for key in res.keys:
        total = res.by_key[key]["ig"].sum()
        assert total == pytest.approx(res.risk - res.ig_baseline_risk, abs=1e-4)
    assert abs(res.ig_delta) < 1e-4 and abs(res.risk - res.ig_baseline_risk) > 1e-2


def test_occlusion_is_the_risk_change_without_the_patch():
    torch.manual_seed(1)
    model = create_model("survpgc", **DIMS).double().eval()
    batch = make_batch(10, pad=2, dtype=torch.float64)
    vals = score_patches(model, batch, ["clinic->patch"], scores=("occlusion",)).by_key["clinic->patch"]
    with torch.no_grad():
        full = float(model(batch).risk[0])
        mask = batch["path_mask"].clone()
        mask[0, 3] = False
        without = float(model({**batch, "path_mask": mask}).risk[0])
    assert vals["occlusion"][3] == pytest.approx(full - without, abs=1e-10)


DIMS = {"path_dim": 12, "clin_dim": 8, "gen_dim": 10, "n_bins": 4}


def make_batch(n: int, pad: int = 0, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    path = torch.randn(1, n + pad, DIMS["path_dim"], generator=g)
    mask = torch.zeros(1, n + pad, dtype=torch.bool)
    mask[0, :n] = True
    batch = {
        "path": path, "path_mask": mask,
        "clin": torch.randn(1, 6, DIMS["clin_dim"], generator=g), "clin_mask": torch.ones(1, 6, dtype=torch.bool),
        "gen": torch.randn(1, 1, DIMS["gen_dim"], generator=g), "gen_mask": torch.ones(1, 1, dtype=torch.bool),
    }  # fmt: skip
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}


def _attends_to_patches(name: str) -> bool:
    torch.manual_seed(0)
    model = create_model(name, **DIMS).eval()
    with torch.no_grad():
        out = model(make_batch(5), return_attention=True)
    return bool(out.attention) and any(k == "patch" or k.endswith("->patch") for k in out.attention)


NO_RELEVANCE = ("mcat", "mean_mil")
PATCH_MODELS = [s.name for s in list_models() if s.neural and "pathology" in s.modalities]


@pytest.mark.parametrize("name", PATCH_MODELS)
def test_every_score_on_every_model_that_attends_to_patches(name):
    """Finite scores of the real patches only, padding ignored; case-level scores equal across paths. MCAT
    returns only the head mean of its co-attention (not the tensor it used) and mean-MIL constant weights:
    their relevance is NaN."""
    if not _attends_to_patches(name):
        pytest.skip(f"{name} has no attention over patches")
    torch.manual_seed(0)
    model = create_model(name, **DIMS).eval()
    batch = make_batch(9, pad=3)
    res = score_patches(model, batch, None, ig_steps=8)
    assert res.keys
    first = res.by_key[res.keys[0]]
    for key in res.keys:
        vals = res.by_key[key]
        for s in SCORES:
            assert vals[s].shape == (9,), (key, s)
            assert np.isfinite(vals[s]).all() or (name in NO_RELEVANCE and s == "relevance"), (key, s)
        for s in ("grad_input", "ig", "occlusion"):
            np.testing.assert_array_equal(vals[s], first[s])
    assert np.abs(first["ig"]).sum() > 0 and np.abs(first["occlusion"]).sum() > 0
    # changing the padding changes nothing
    junk = {**batch, "path": batch["path"].clone()}
    junk["path"][0, 9:] = 100.0
    again = score_patches(model, junk, None, ig_steps=8).by_key[res.keys[0]]
    for s in ("relevance", "grad_input", "ig", "occlusion"):
        np.testing.assert_allclose(again[s], first[s], rtol=1e-4, atol=1e-6, equal_nan=True)


def test_bad_arguments_are_refused():
    model = ToyAttentionMIL(a=1.0).double()
    batch, _ = toy_bag()
    with pytest.raises(InputError, match="unknown patch score"):
        score_patches(model, batch, None, scores=("saliency",))
    with pytest.raises(InputError, match="ig_baseline"):
        score_patches(model, batch, None, ig_baseline="median")


def test_relevance_per_head_sums_to_the_relevance():
    """With several heads each head's signed A x dR/dA is kept (relevance_h<i>); their sum is the relevance."""
    torch.manual_seed(2)
    model = create_model("survpgc", heads=2, dim_head=8, **DIMS).double().eval()
    vals = score_patches(model, make_batch(11, pad=2, dtype=torch.float64), ["clinic->patch"]).by_key["clinic->patch"]
    assert {"relevance_h0", "relevance_h1"} <= set(vals) and "relevance_h2" not in vals
    np.testing.assert_allclose(vals["relevance_h0"] + vals["relevance_h1"], vals["relevance"], atol=1e-12)
    assert not np.allclose(vals["relevance_h0"], vals["relevance_h1"])
    one = score_patches(create_model("survpgc", **DIMS).eval(), make_batch(11), None).by_key["clinic->patch"]
    assert not any(k.startswith("relevance_h") for k in one)  # one head: nothing more than the relevance
