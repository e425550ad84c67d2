"""train.init_hazard_bias: the closed-form constant hazards, the hazard head of every registered model, and a
short fit whose survival curves start at the training cases' baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from survpgc.config import TrainConfig, load_config
from survpgc.errors import ConfigError, InputError, LengthMismatchError
from survpgc.models import create_model, list_models
from survpgc.models.base import ModelOutput, SurvivalModel
from survpgc.models.heads import hazard_heads, set_hazard_bias
from survpgc.survival.losses import constant_hazard_logits, nll_survival_loss
from survpgc.train.loop import fit, init_hazard_bias, training_targets

NEURAL = [s.name for s in list_models() if s.neural]
DIMS = {"path_dim": 24, "clin_dim": 16, "gen_dim": 20}


# ------------------------------------------------------------------------------------------------ closed form
def _numerical_optimum(y, e, n_bins, alpha):
    """The best constant logits found by LBFGS on the loss itself (float64), the closed form must reach."""
    yt, et = torch.as_tensor(y), torch.as_tensor(e)
    theta = torch.zeros(n_bins, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta], max_iter=1000, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = nll_survival_loss(theta.expand(len(y), n_bins), yt, et, alpha=alpha)
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().numpy()


def _loss(logits, y, e, alpha):
    t = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    return float(nll_survival_loss(t.expand(len(y), len(t)), torch.as_tensor(y), torch.as_tensor(e), alpha=alpha))


@pytest.mark.parametrize(("seed", "n_bins", "alpha"), [(0, 4, 0.0), (1, 4, 0.0), (2, 6, 0.0), (3, 4, 0.4)])
def test_constant_hazard_logits_are_the_loss_optimum(seed, n_bins, alpha):
    rng = np.random.default_rng(seed)
    n = 150
    y = rng.integers(0, n_bins, n)
    e = rng.random(n) < 0.4
    closed = constant_hazard_logits(y, e, n_bins, alpha=alpha)
    numeric = _numerical_optimum(y, e, n_bins, alpha)
    np.testing.assert_allclose(closed, numeric, atol=1e-5)
    assert _loss(closed, y, e, alpha) <= _loss(numeric, y, e, alpha) + 1e-12
    # and it is d_k / r_k written out (alpha 0): deaths in bin k over cases whose bin is >= k
    if alpha == 0:
        h = 1 / (1 + np.exp(-closed))
        for k in range(n_bins):
            assert h[k] == pytest.approx(np.sum(e & (y == k)) / np.sum(y >= k), rel=1e-9)


def test_constant_hazard_logits_edge_cases():
    # no death in bin 0 and only deaths in the last bin: clipped to [1e-4, 1 - 1e-4]; bin 2 reached by nobody
    y = np.array([0, 0, 1, 1])
    e = np.array([False, False, True, True])
    lg = constant_hazard_logits(y, e, 3)
    h = 1 / (1 + np.exp(-lg))
    np.testing.assert_allclose(h, [1e-4, 1 - 1e-4, 0.5], rtol=1e-9)
    assert np.isfinite(lg).all()
    with pytest.raises(InputError, match=r"`bin_index` values must lie in \[0, 2\], got 0..3"):
        constant_hazard_logits([0, 3], [True, False], 3)
    with pytest.raises(LengthMismatchError, match="`bin_index` has 2 cases but `event` has 3"):
        constant_hazard_logits([0, 1], [True, False, True], 3)
    with pytest.raises(InputError, match="integer bin labels"):
        constant_hazard_logits([0.5, 1.0], [True, False], 3)
    with pytest.raises(InputError, match="at least one case"):
        constant_hazard_logits([], [], 3)


# ------------------------------------------------------------------------------------------------ hazard heads
def _batch(b=5, lmax=7, *, seed=0, has_path=None, has_clin=None, has_gen=None):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, d, n, has in (
        ("path", DIMS["path_dim"], lmax, has_path),
        ("clin", DIMS["clin_dim"], 6, has_clin),
        ("gen", DIMS["gen_dim"], 1, has_gen),
    ):
        mask = torch.ones(b, n, dtype=torch.bool)
        if has is not None:
            mask[~torch.as_tensor(has)] = False
        out[key] = torch.randn(b, n, d, generator=g) * mask[..., None]
        out[f"{key}_mask"] = mask
    out["path_mask"][0, 3:] = False  # a shorter bag
    return out


@pytest.mark.parametrize("n_bins", [4, 1, 16])
@pytest.mark.parametrize("name", NEURAL)
def test_every_model_predicts_the_prior_with_a_zero_head(name, n_bins):
    torch.manual_seed(0)
    model = create_model(name, **DIMS, n_bins=n_bins).eval()
    heads = hazard_heads(model)
    assert heads, name
    prior = np.linspace(-3.0, 1.0, n_bins)
    names = set_hazard_bias(model, prior)
    assert names == [n for n, _ in heads]
    with torch.no_grad():
        for _, layer in heads:
            layer.weight.zero_()
    expected = torch.as_tensor(prior, dtype=torch.float32).expand(5, n_bins)
    # every case, including cases missing one modality or all of them
    for kw in ({}, {"has_clin": [True, False, True, True, False]}, {"has_gen": [False, True, True, True, True]},
               {"has_path": [True, True, False, True, True]},
               {"has_path": [False] * 5, "has_clin": [False] * 5, "has_gen": [False] * 5}):  # fmt: skip
        with torch.no_grad():
            out = model(_batch(**kw))
        assert out.discrete
        torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-6, msg=f"{name} {kw}")


def test_late_fusion_has_two_heads_and_single_head_models_one():
    heads = {n: [h for h, _ in hazard_heads(create_model(n, **DIMS))] for n in ("late_fusion", "abmil", "survpgc")}
    assert heads == {"late_fusion": ["path_head.3", "clin_head"], "abmil": ["head.3"], "survpgc": ["head.2"]}


class _NoHead(SurvivalModel):
    def __init__(self):
        super().__init__(4)
        self.encoder = nn.Linear(3, 8)

    def forward(self, batch, return_attention=False):
        return ModelOutput(logits=self.encoder(batch["x"])[:, :4])


class _TwoOutputs(SurvivalModel):
    def __init__(self):
        super().__init__(4)
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, batch, return_attention=False):
        return ModelOutput(logits=self.b(self.a(batch["x"])))


def test_hazard_heads_refuses_none_or_ambiguous():
    with pytest.raises(ConfigError, match=r"model _NoHead has no nn.Linear layer with a bias and 4 outputs"):
        hazard_heads(_NoHead())
    with pytest.raises(ConfigError, match=r"model _TwoOutputs has 2 nn.Linear layers with 4 outputs \(a, b\)"):
        hazard_heads(_TwoOutputs())
    with pytest.raises(ConfigError, match="model Linear has no integer `n_bins`"):
        hazard_heads(nn.Linear(3, 4))
    with pytest.raises(InputError, match="got 3 logits for a model with n_bins=4"):
        set_hazard_bias(create_model("snn", modality="genomic", **DIMS), [0.0, 0.0, 0.0])


# ------------------------------------------------------------------------------------------------ config and fit
def test_config_key_defaults_on_and_is_strict():
    assert TrainConfig().init_hazard_bias is True and TrainConfig().batch_size == 16  # benchmarks/recipe.py
    assert load_config(None, ["train.init_hazard_bias=true"]).train.init_hazard_bias is True
    with pytest.raises(ConfigError, match=r"train\.init_hazard_bias"):
        TrainConfig(init_hazard_bias="yes")


class _Items(torch.utils.data.Dataset):
    def __init__(self, bins, events, gen):
        self.bins, self.events, self.gen = bins, events, gen

    def __len__(self):
        return len(self.bins)

    def __getitem__(self, i):
        return {
            "case_id": f"c{i}",
            "time": torch.tensor(1.0),
            "event": torch.tensor(bool(self.events[i])),
            "bin": torch.tensor(int(self.bins[i])),
            "gen": self.gen[i : i + 1],
            "gen_mask": torch.ones(1, dtype=torch.bool),
        }


def _loader(n=64, seed=0):
    rng = np.random.default_rng(seed)
    bins, events = rng.integers(0, 4, n), rng.random(n) < 0.3
    ds = _Items(bins, events, torch.randn(n, DIMS["gen_dim"]))
    return torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False), bins, events


def test_fit_starts_from_the_constant_hazards_only_when_asked():
    loader, bins, events = _loader()
    np.testing.assert_array_equal(training_targets(loader)[0], bins)
    np.testing.assert_array_equal(training_targets(loader)[1], events)
    prior = constant_hazard_logits(bins, events, 4)
    for flag in (False, True):
        torch.manual_seed(0)
        model = create_model("snn", modality="genomic", **DIMS)
        seen = []
        # lr tiny: after one epoch the bias is where the initialisation put it (to ~1e-6)
        res = fit(model, loader, None, TrainConfig(epochs=1, lr=1e-9, device="cpu", init_hazard_bias=flag),
                  on_epoch=lambda row, m=model, seen=seen: seen.append(m.head.bias.detach().clone()))  # fmt: skip
        got = seen[0].numpy()
        if flag:
            np.testing.assert_allclose(got, prior, atol=1e-4)
            np.testing.assert_allclose(res.extra["prior_logits"], prior)
        else:
            assert np.abs(got - prior).max() > 0.5 and "prior_logits" not in res.extra


class _WithTargets(_Items):
    targets = (np.array([0, 2]), np.array([1, 0]))

    def __getitem__(self, i):
        raise AssertionError("training_targets read an item although the dataset has `targets`")


class _Cached(_Items):
    cache_size = 0
    cleared = 0

    def clear_cache(self):
        self.cleared += 1


def test_training_targets_prefers_the_dataset_targets_and_leaves_no_cache():
    bins, events = training_targets(torch.utils.data.DataLoader(_WithTargets([0, 0], [0, 0], None)))
    np.testing.assert_array_equal(bins, [0, 2])
    np.testing.assert_array_equal(events, [True, False])
    ds = _Cached(np.array([1, 3]), np.array([True, False]), torch.randn(2, DIMS["gen_dim"]))
    np.testing.assert_array_equal(training_targets(ds)[0], [1, 3])
    assert ds.cleared == 1


def test_init_hazard_bias_uses_the_loss_alpha():
    bins, events = np.array([0, 0, 1, 1, 2, 3]), np.array([True, False, True, False, False, True])
    model = create_model("snn", modality="genomic", **DIMS)
    got = init_hazard_bias(model, bins, events, alpha=0.5)
    np.testing.assert_allclose(got, constant_hazard_logits(bins, events, 4, alpha=0.5))
    np.testing.assert_allclose(model.head.bias.detach().numpy(), got, atol=1e-6)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from survpgc.synth import generate_synthetic_cohort

    out = tmp_path_factory.mktemp("hz") / "syn"
    generate_synthetic_cohort(out, n_patients=80, seed=5, render_slides=False)
    return out


@pytest.mark.parametrize("flag", [True, False])
def test_bundle_survival_starts_at_kaplan_meier_with_init(synthetic, tmp_path, flag):
    """`survpgc train` (train_bundle) reads the same key; after a short fit the mean predicted S at the end of
    the first bin is within 0.05 of Kaplan-Meier with the initialisation and far from it without."""
    from survpgc.data.cohort import open_cohort
    from survpgc.deploy.bundle import load_bundle
    from survpgc.deploy.fit import train_bundle
    from survpgc.deploy.predict import predict_cohort
    from survpgc.survival import kaplan_meier

    cfg = load_config(
        None,
        [f"cohort.source={synthetic}", "models=[{name: snn, params: {modality: genomic}}]", "train.device=cpu",
         f"train.init_hazard_bias={'true' if flag else 'false'}"],
    )  # fmt: skip
    train_bundle(cfg, tmp_path / "b", epochs=3)
    bundle = load_bundle(tmp_path / "b")
    cohort = open_cohort(synthetic)
    pred = predict_cohort(bundle, cohort)
    edge = float(bundle.time_edges[1])
    km = kaplan_meier(*cohort.survival())
    before = km.times < edge  # a case at the edge is in bin 1: S_0 = P(T >= edge), KM just before the edge
    km_at = float(km.survival[before][-1]) if before.any() else 1.0
    gap = abs(float(pred["surv_0"].mean()) - km_at)
    assert (gap < 0.05) if flag else (gap > 0.2), (flag, float(pred["surv_0"].mean()), km_at)
