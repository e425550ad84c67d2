"""The CUDA paths of training and extraction, checked on CPU-only machines by the same logic.

Every decision a GPU run takes -- which device ``cuda`` means under torchrun, bf16 / fp16 / fp32, the process
group's backend, DDP's device arguments -- is a function of a described device, called here with CUDA
monkeypatched in; what runs (fp16 autocast with its gradient scaler, a process group of one process, the CPU copy
of the selected weights, the UNI architecture with random weights) runs here on the CPU. The same code on a GPU:
``bash benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import survpgc.devices as devices
import survpgc.train.loop as loop
from survpgc.config import TrainConfig
from survpgc.data.dataset import collate_survival
from survpgc.data.simulate import simulate_bags
from survpgc.errors import ConfigError, InputError
from survpgc.models import create_model


@pytest.fixture()
def fake_cuda(monkeypatch):
    """CUDA 'available' with two GPUs; ``set(capability, bf16)`` describes them."""
    state = {"cap": (9, 0), "bf16": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: state["cap"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"GPU sm{state['cap'][0]}{state['cap'][1]}")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: state["bf16"])
    monkeypatch.delenv("LOCAL_RANK", raising=False)

    def describe(cap, bf16):
        state.update(cap=cap, bf16=bf16)

    return describe


# ----------------------------------------------------------------------------- devices
def test_cuda_means_the_local_rank_gpu_and_bad_indices_are_refused(fake_cuda, monkeypatch):
    assert devices.resolve_device("cuda") == torch.device("cuda", 0)
    assert devices.resolve_device("auto") == torch.device("cuda", 0)
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process on this node
    assert devices.resolve_device("cuda") == torch.device("cuda", 1)
    assert devices.resolve_device("auto") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(InputError, match=r"cuda:2, but 2 GPU\(s\) are visible"):
        devices.resolve_device("cuda")
    with pytest.raises(InputError, match="cuda:5"):
        devices.resolve_device("cuda:5")
    assert devices.resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_cuda_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        devices.resolve_device("cuda")
    assert devices.resolve_device("auto").type in ("cpu", "mps")


def test_device_caps_count_only_native_bf16(fake_cuda):
    fake_cuda((9, 0), True)
    assert devices.device_caps(torch.device("cuda", 0)) == devices.DeviceCaps("cuda", True, "GPU sm90")
    fake_cuda((7, 0), True)  # V100: torch can emulate bf16, which is slow -- not native
    assert devices.device_caps(torch.device("cuda", 0)).bf16 is False
    fake_cuda((8, 0), False)
    assert devices.device_caps(torch.device("cuda", 0)).bf16 is False
    cpu = devices.device_caps("cpu")
    assert cpu.type == "cpu" and isinstance(cpu.bf16, bool)
    assert devices.describe_device("cpu").startswith("cpu (")


def test_process_group_backend_and_ddp_arguments_follow_the_training_device():
    assert devices.process_group_backend(torch.device("cuda", 1)) == "nccl"
    assert devices.process_group_backend("cpu") == "gloo"
    assert loop._ddp_kwargs(torch.device("cuda", 1)) == {"device_ids": [1], "output_device": 1}
    assert loop._ddp_kwargs(torch.device("cpu")) == {"device_ids": None}
    with pytest.raises(ConfigError, match="indexed CUDA device"):
        loop._ddp_kwargs(torch.device("cuda"))


def test_to_device_moves_tensors_and_keeps_the_rest():
    batch = {"path": torch.ones(2, 3), "case_id": ["a", "b"], "bin": torch.tensor([0, 1])}
    out = devices.to_device(batch, torch.device("meta"))  # a non-CPU device every machine has
    assert out["path"].device.type == "meta" and out["bin"].device.type == "meta"
    assert out["case_id"] == ["a", "b"]
    same = devices.to_device(batch, torch.device("cpu"))
    assert same["path"] is batch["path"]  # already there: no copy, no pinning


def test_init_distributed_picks_the_backend_of_the_training_device(fake_cuda, monkeypatch):
    import torch.distributed as dist

    import survpgc.train.cv as cv

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append({"set_device": dev}))
    for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(k, raising=False)
    assert cv._init_distributed("cuda") is False and calls == []  # not under torchrun
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert cv._init_distributed("cuda") is True
    assert calls == [{"set_device": torch.device("cuda", 1)}, {"backend": "nccl", "device_id": torch.device("cuda", 1)}]
    calls.clear()
    assert cv._init_distributed("cpu") is True  # train.device=cpu on a GPU machine: never nccl
    assert calls == [{"backend": "gloo", "device_id": None}]
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc-per-node 1: a group of one, the same code path
    calls.clear()
    assert cv._init_distributed("auto") is True and calls[-1]["backend"] == "nccl"


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize(
    ("precision", "device", "bf16", "patches", "expected"),
    [
        ("auto", "cuda", True, True, "bf16"),  # A100 / H100 / H200
        ("auto", "cuda", False, True, "fp16"),  # V100 / T4: fp16 with a gradient scaler
        ("auto", "cuda", True, False, "fp32"),  # small clinical / omics models stay in fp32
        ("auto", "cpu", True, True, "bf16"),  # AVX512-BF16 / AMX
        ("auto", "cpu", False, True, "fp32"),
        ("auto", "mps", False, True, "fp32"),
        ("fp32", "cuda", True, True, "fp32"),
        ("bf16", "cpu", False, False, "bf16"),  # asked for: taken as given
        ("fp16", "cpu", False, True, "fp16"),
    ],
)
def test_training_precision_table(precision, device, bf16, patches, expected):
    assert loop.training_precision(precision, device, bf16_native=bf16, reads_patches=patches) == expected


def test_training_precision_on_described_gpus(fake_cuda):
    survpgc, mlp = create_model("survpgc"), create_model("mlp")
    gpu = torch.device("cuda", 0)
    fake_cuda((9, 0), True)
    assert loop._precision(TrainConfig(), gpu, survpgc) == "bf16"
    assert loop._precision(TrainConfig(), gpu, mlp) == "fp32"
    fake_cuda((7, 5), True)  # T4
    assert loop._precision(TrainConfig(), gpu, survpgc) == "fp16"
    assert loop._autocast_dtype(TrainConfig(), gpu, survpgc) is torch.float16
    assert loop._precision(TrainConfig(precision="bf16"), gpu, survpgc) == "bf16"
    assert loop.grad_scaler(torch.device("cpu"), "fp16").is_enabled()
    assert not loop.grad_scaler(torch.device("cpu"), "bf16").is_enabled()
    with pytest.raises(ConfigError, match=r"train\.precision"):
        loop.training_precision("fp8", "cuda", bf16_native=True, reads_patches=True)


@pytest.fixture(scope="module")
def sim():
    s = simulate_bags(48, seed=4, n_patches=(10, 30))
    for i, it in enumerate(s.items):
        it["bin"] = torch.tensor(int(s.time[i] > np.median(s.time)) * 2 + int(s.event[i]))
    return s


def _loader(sim, idx, bs=4, shuffle=False):
    g = torch.Generator().manual_seed(0)
    items = [sim.items[i] for i in idx]
    return torch.utils.data.DataLoader(items, batch_size=bs, shuffle=shuffle, collate_fn=collate_survival, generator=g)


def test_fp16_with_gradient_scaler_trains_and_keeps_float32_cpu_weights(sim):
    torch.manual_seed(0)
    model = create_model("abmil", **sim.dims)
    seen = []
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[0]["path"].device))
    res = loop.fit(model, _loader(sim, range(32), shuffle=True), _loader(sim, range(32, 48), 8),
                   TrainConfig(epochs=3, select_from_epoch=1, precision="fp16", seed=0, lr=1e-3))  # fmt: skip
    assert res.precision == "fp16" and isinstance(res.extra["fp16_skipped_steps"], int)
    assert all(np.isfinite(r["train_loss"]) for r in res.history)
    assert set(seen) == {loop.resolve_device("auto")}  # every batch on the training device
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in res.state_dict.values())
    assert all(v.dtype == torch.float32 for k, v in res.state_dict.items() if v.is_floating_point())
    # the selected weights are a copy: training further does not change them
    before = {k: v.clone() for k, v in res.state_dict.items()}
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in res.state_dict.items())


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_lowered(sim):
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = create_model("abmil", **sim.dims)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = next(iter(_loader(sim, range(8))))
    cfg = TrainConfig(max_grad_norm=1.0)
    with pytest.raises(ConfigError, match="gradient scaler"):
        loop.train_step(model, batch, opt, cfg, device=cpu, precision="fp16")
    before = [p.detach().clone() for p in model.parameters()]
    huge = torch.amp.GradScaler("cpu", init_scale=2.0**120)  # the scaled fp32 gradients overflow
    loop.train_step(model, batch, opt, cfg, device=cpu, precision="fp16", scaler=huge)
    assert huge.get_scale() < 2.0**120
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # step skipped
    loop.train_step(model, batch, opt, cfg, device=cpu, precision="fp16", scaler=loop.grad_scaler(cpu, "fp16"))
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_process_group_of_one_trains_under_ddp_like_a_plain_fit(sim, tmp_path, monkeypatch):
    import torch.distributed as dist

    def run():
        torch.manual_seed(0)
        m = create_model("abmil", **sim.dims)
        return loop.fit(m, _loader(sim, range(32), shuffle=True), None, TrainConfig(epochs=2, seed=0)).state_dict

    plain = run()
    wrapped = []
    real = loop._distributed
    monkeypatch.setattr(loop, "_distributed", lambda m, d: wrapped.append(real(m, d)) or wrapped[-1])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        ddp = run()
    finally:
        dist.destroy_process_group()
    assert type(wrapped[0]).__name__ == "DistributedDataParallel"
    for k, v in plain.items():
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- torchrun, one process
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from survpgc.data.features import write_feature_file
    from survpgc.synth import generate_synthetic_cohort

    root = tmp_path_factory.mktemp("cuda_paths")
    generate_synthetic_cohort(root / "syn", n_patients=16, seed=1, render_slides=False)
    feat = root / "feat"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for sid in pd.read_csv(root / "syn" / "cohort.csv")["slide_id"]:
        write_feature_file(feat / f"{Path(sid).stem}.h5", rng.normal(size=(12, 8)).astype(np.float32))
    return root


@pytest.mark.slow  # two CV runs, one through torchrun
def test_torchrun_with_one_process_matches_a_plain_run_and_its_checkpoints_open_on_cpu(cohort, tmp_path):
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from survpgc.cli import app
    from survpgc.rundir import RunContext

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    if not torchrun:
        pytest.skip("torchrun not installed")
    args = [
        f"cohort.source={cohort / 'syn'}", f"pathology.feature_dir={cohort / 'feat'}", "splits.folds=2",
        "train.epochs=2", "train.select_from_epoch=1", "train.batch_size=4", "eval.bootstrap=10", "models=[abmil]",
    ]  # fmt: skip
    plain = tmp_path / "plain"
    r = CliRunner().invoke(app, ["run", *args, "--device", "cpu", "--out", str(plain)])
    assert r.exit_code == 0, r.output
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(torchrun), "--nproc-per-node", "1", "--master-port", "29531", "-m", "survpgc.cli", "run", *args,
           "--device", "cpu", "--out", str(tmp_path / "ddp")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "ddp" / "run.log").read_text()
    assert "rank 0 of 1 (gloo)" in log  # a process group of one: DDP's code path
    a, b = (pd.read_csv(d / "predictions.csv") for d in (plain, tmp_path / "ddp"))
    np.testing.assert_allclose(b["risk"], a["risk"], rtol=0, atol=1e-5)
    assert "device: cpu" in (plain / "config.yaml").read_text()
    # the checkpoints hold CPU tensors and reopen on the CPU
    ck = load_file(str(plain / "checkpoints" / "abmil_fold0.safetensors"))
    assert all(v.device.type == "cpu" for v in ck.values())
    loaded = RunContext(plain).load("abmil", 0, device="cpu")
    assert next(loaded.model.parameters()).device.type == "cpu"


# ----------------------------------------------------------------------------- UNI architecture, random weights
def test_uni_random_weights_only_when_asked(monkeypatch):
    import survpgc.encoders.weights as weights_mod
    from survpgc.encoders.patch import create_patch_encoder
    from survpgc.encoders.precision import resolve_precision
    from survpgc.encoders.uni import UNI_ARCH, UNI_MODEL_KWARGS, UNI_RANDOM_WEIGHTS, UNI_SPEC, UNI_WEIGHTS_ENV

    monkeypatch.setattr(weights_mod, "hf_cached_file", lambda repo, names: None)
    monkeypatch.delenv(UNI_WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError, match="no UNI weights found"):  # never a silent fallback to random weights
        create_patch_encoder("uni")
    with pytest.raises(InputError, match="not both"):
        create_patch_encoder("uni", weights="x.bin", random_weights=True)
    with pytest.raises(InputError, match="seed >= 0"):
        create_patch_encoder("uni", random_weights=-1)
    rng = torch.get_rng_state()
    enc = create_patch_encoder("uni", random_weights=True, precision="fp32")
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is untouched
    assert (enc.name, enc.dim, enc.input_size) == ("uni", 1024, 224)
    assert enc.weights == f"{UNI_RANDOM_WEIGHTS}, seed 0" and enc.metadata()["weights"] == enc.weights
    import timm

    with torch.device("meta"):  # the real shapes: those of timm's ViT-L/16 with UNI's arguments
        ref = timm.create_model(UNI_ARCH, pretrained=False, **UNI_MODEL_KWARGS).state_dict()
    got = enc.model.state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert sum(v.numel() for v in got.values()) > 3.0e8
    feats = enc.encode(np.random.default_rng(0).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8))
    assert feats.shape == (2, 1024) and np.isfinite(feats).all()
    # auto precision on GPUs: bf16 where native, fp16 on older GPUs
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", "cuda", cuda_default=UNI_SPEC.cuda_precision) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", "cuda", cuda_default=UNI_SPEC.cuda_precision) == "fp16"
