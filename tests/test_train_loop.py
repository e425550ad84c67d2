"""The one-fold training loop: it learns, selects epochs as the reference, schedules the LR, checks config."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import survpgc.train.loop as loop
from survpgc.config import TrainConfig
from survpgc.data.dataset import collate_survival
from survpgc.data.simulate import simulate_bags
from survpgc.errors import ConfigError
from survpgc.models import create_model
from survpgc.survival import TimeBinner, harrell_cindex
from survpgc.train.loop import fit, predict


@pytest.fixture(scope="module")
def sim():
    s = simulate_bags(140, seed=3, n_patches=(20, 60))
    tr = np.arange(90)
    binner = TimeBinner(4).fit(s.time[tr], s.event[tr])
    for i, it in enumerate(s.items):
        it["bin"] = torch.tensor(int(binner.transform([s.time[i]])[0]))
    return s


def loader(sim, idx, batch_size=1, shuffle=False):
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(
        [sim.items[i] for i in idx], batch_size=batch_size, shuffle=shuffle, collate_fn=collate_survival, generator=g
    )


def test_survpgc_learns_the_simulated_signal(sim):
    torch.manual_seed(0)
    m = create_model("survpgc", **sim.dims)
    res = fit(
        m,
        loader(sim, range(90), shuffle=True),
        loader(sim, range(90, 115), 8),
        TrainConfig(epochs=6, select_from_epoch=3),
    )
    assert 3 <= res.best_epoch <= 6 and len(res.history) == 6
    pred = predict(m, loader(sim, range(115, 140), 8))
    c = harrell_cindex(pred["time"], pred["event"], pred["risk"])
    oracle = harrell_cindex(sim.time[115:], sim.event[115:], sim.true_risk[115:])
    assert c > 0.6, (c, oracle)
    assert pred["survival"].shape == (25, 4)
    # selected weights are the ones the model holds
    assert all(torch.equal(v, m.state_dict()[k].cpu()) for k, v in res.state_dict.items())


def test_same_seed_same_history(sim):
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = create_model("abmil", **sim.dims)
        cfg = TrainConfig(epochs=2, seed=5)
        runs.append(fit(m, loader(sim, range(40), shuffle=True), loader(sim, range(40, 60), 8), cfg).history)
    assert runs[0] == runs[1]


def test_selection_window_and_ties_go_to_later_epoch(sim, monkeypatch):
    scores = iter([0.9, 0.5, 0.6, 0.7, 0.7, 0.65])  # epoch 1 is best overall but outside the window
    monkeypatch.setattr(loop, "_val_cindex", lambda pred: next(scores))
    m = create_model("mean_mil", **sim.dims)
    res = fit(m, loader(sim, range(20)), loader(sim, range(20, 30), 8), TrainConfig(epochs=6, select_from_epoch=3))
    assert res.best_epoch == 5  # 0.7 at epochs 4 and 5: the later one
    assert "epochs 3-6" in res.selection
    res = fit(m, loader(sim, range(20)), None, TrainConfig(epochs=2))
    assert res.best_epoch == 2 and res.selection == "last epoch"


def test_cosine_schedule_with_warmup():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = loop._make_scheduler(opt, TrainConfig(epochs=4, lr=1.0, warmup_epochs=1), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear warm-up over epoch 1
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))  # then monotone cosine decay
    assert lrs[-1] < 0.01


def test_cosine_loss_option(sim):
    m = create_model("survpgc", **sim.dims)
    fit(m, loader(sim, range(10)), None, TrainConfig(epochs=1, beta=0.3))
    with pytest.raises(ConfigError, match="two paths"):
        fit(create_model("abmil", **sim.dims), loader(sim, range(10)), None, TrainConfig(epochs=1, beta=0.3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "train.epochs"),
        ({"lr": -1}, "train.lr"),
        ({"optimizer": "lion"}, "train.optimizer"),
        ({"precision": "fp8"}, "train.precision"),
        ({"alpha": 2}, "train.alpha"),
        ({"scheduler": "step"}, "train.scheduler"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_keep_large_allocations_is_idempotent():
    import sys

    from survpgc.train._alloc import keep_large_allocations

    first = keep_large_allocations()
    assert keep_large_allocations() == first
    if sys.platform.startswith("linux"):
        assert first is True


def test_auto_precision_is_bf16_only_for_patch_models_on_capable_hardware(monkeypatch):
    assert TrainConfig().precision == "auto"
    cpu = torch.device("cpu")
    survpgc, mlp = create_model("survpgc"), create_model("mlp")
    monkeypatch.setattr(loop, "bf16_supported", lambda device: True)
    assert loop._autocast_dtype(TrainConfig(), cpu, survpgc) is torch.bfloat16
    assert loop._autocast_dtype(TrainConfig(), cpu, mlp) is None
    assert loop._autocast_dtype(TrainConfig(precision="fp32"), cpu, survpgc) is None
    monkeypatch.setattr(loop, "bf16_supported", lambda device: False)
    assert loop._autocast_dtype(TrainConfig(), cpu, survpgc) is None
    assert loop._autocast_dtype(TrainConfig(precision="bf16"), cpu, mlp) is torch.bfloat16
