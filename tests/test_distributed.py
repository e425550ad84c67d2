"""Data-parallel training under torch.distributed (gloo on CPU, two processes): the path users take with
``torchrun --nproc-per-node G survpgc run ...`` on several GPUs."""

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
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from survpgc.config import TrainConfig
        from survpgc.data.dataset import collate_survival
        from survpgc.data.simulate import simulate_bags
        from survpgc.models import create_model
        from survpgc.train.loop import fit

        sim = simulate_bags(24, seed=0, n_patches=(5, 15))
        for it in sim.items:
            it["bin"] = torch.tensor(1)
        sampler = torch.utils.data.DistributedSampler(sim.items, shuffle=True, seed=0)
        loader = torch.utils.data.DataLoader(sim.items, batch_size=2, sampler=sampler, collate_fn=collate_survival)
        torch.manual_seed(0)
        model = create_model("abmil", **sim.dims)
        before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
        fit(model, loader, None, TrainConfig(epochs=2, seed=0))
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        # each rank saw different cases, yet the averaged gradients keep the weights identical
        shard = sorted(int(i) for i in sampler)
        shards = [None] * world
        dist.all_gather_object(shards, shard)
        if rank == 0:
            torch.save(
                {
                    "same": all(torch.equal(gathered[0], g) for g in gathered),
                    "moved": not torch.equal(before, flat),
                    "disjoint": not set(shards[0]) & set(shards[1]),
                },
                out_file,
            )
    finally:
        dist.destroy_process_group()


def test_ddp_fit_keeps_processes_in_sync(tmp_path):
    out = tmp_path / "result.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    res = torch.load(out, weights_only=True)
    assert res == {"same": True, "moved": True, "disjoint": True}


def test_torchrun_cross_validation(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    if not torchrun:
        pytest.skip("torchrun not installed")
    from survpgc.data.features import write_feature_file
    from survpgc.synth import generate_synthetic_cohort

    syn = tmp_path / "syn"
    generate_synthetic_cohort(syn, n_patients=16, seed=1, render_slides=False)
    feat = tmp_path / "feat"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for sid in pd.read_csv(syn / "cohort.csv")["slide_id"]:
        write_feature_file(feat / f"{Path(sid).stem}.h5", rng.normal(size=(12, 8)).astype(np.float32))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        str(torchrun), "--nproc-per-node", "2", "--master-port", "29517", "-m", "survpgc.cli", "run",
        f"cohort.source={syn}", f"pathology.feature_dir={feat}", "splits.folds=2", "train.epochs=1",
        "train.select_from_epoch=1", "train.batch_size=2", "eval.bootstrap=20", "models=[abmil]", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "metrics.csv").is_file() and (out / "report.html").is_file()
    assert len(pd.read_csv(out / "metrics.csv")) == 2
    assert "rank 1 of 2" in (out / "run.rank1.log").read_text()
