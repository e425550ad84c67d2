"""Model benchmark: forward+backward time and peak memory per registered model and bag size.

Run on demand (``make bench`` or ``python benchmarks/models.py [--models a,b] [--sizes 1024,4096]``).
Each configuration runs in a fresh subprocess so that its peak resident memory is its own.

Prints
1. per model and bag size n_p (d = 1024): one training step (forward + backward + RAdam) at batch 1 and at
   batch 8 (bags padded to n_p, lengths n_p/2..n_p), ms per step, its ratio to n_p = 1k (linear growth
   => ratios ≈ 1, 4, 16, 64), and peak RSS;
2. SurvPGC training throughput (patients/s) at n_p = 4096: a re-implementation of the reference's training
   step (unfused per-path LayerNorm + qkv, fp32, batch 1) vs survpgc's step in fp32 and with bf16 autocast,
   batch 1 and batch 8, with achieved GFLOP/s (torch's FLOP counter) next to the measured GEMM peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn

D = 1024
DEFAULT_SIZES = (1024, 4096, 16384, 65536)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_batch(b: int, n_p: int, gen_dim: int, n_gen: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = [n_p] if b == 1 else [n_p // 2 + (n_p // 2) * i // (b - 1) for i in range(b)]
    mask = torch.zeros(b, n_p, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return {
        "path": torch.randn(b, n_p, D, generator=g),
        "path_mask": mask,
        "clin": torch.randn(b, 6, 512, generator=g),
        "clin_mask": torch.ones(b, 6, dtype=torch.bool),
        "gen": torch.randn(b, n_gen, gen_dim, generator=g),
        "gen_mask": torch.ones(b, n_gen, dtype=torch.bool),
        "bin": torch.randint(0, 4, (b,), generator=g),
        "event": torch.rand(b, generator=g) < 0.4,
    }


def model_inputs(name: str) -> tuple[dict, int, int]:
    """(create_model kwargs, gen_dim, n_gen tokens): SurvPGC-style models read 4 × 768 genomic tokens
    (scFoundation's shape); the others one omics vector of 2000 features."""
    gen_dim, n_gen = (768, 4) if name in ("survpgc", "survgc") else (2000, 1)
    return {"path_dim": D, "clin_dim": 512, "gen_dim": gen_dim}, gen_dim, n_gen


def train_step_fn(model, batch, bf16: bool = False):
    from survpgc.survival.losses import nll_survival_loss
    from survpgc.train._alloc import keep_large_allocations

    keep_large_allocations()  # as survpgc.train.loop.fit does

    opt = torch.optim.RAdam(model.parameters(), lr=5e-4, weight_decay=1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(batch)
        loss = nll_survival_loss(out.logits.float(), batch["bin"], batch["event"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_it(fn, warmup: int = 2, repeats: int = 5, budget_s: float = 20.0) -> float:
    for _ in range(warmup):
        fn()
    times = []
    t_start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget_s:
            break
    return min(times)


def run_one(name: str, n_p: int, b: int) -> dict:
    from survpgc.models import create_model

    torch.manual_seed(0)
    kwargs, gen_dim, n_gen = model_inputs(name)
    model = create_model(name, **kwargs).train()
    batch = make_batch(b, n_p, gen_dim, n_gen)
    base = rss_mb()
    step = train_step_fn(model, batch)
    sec = time_it(step, warmup=1, repeats=3)
    return {"model": name, "n_p": n_p, "batch": b, "ms": sec * 1e3, "peak_mb": rss_mb(), "input_mb": base}


# ------------------------------------------------------------------------------------------ reference step
class ReferenceStyleSurvPGC(nn.Module):
    """The reference implementation's computation, re-implemented for timing: per path, the modality and
    patch tokens are concatenated into one sequence, each path applies its own LayerNorm and bias-free qkv
    to the whole sequence, modality queries attend over all tokens and patch queries over modality tokens,
    FeedForward + LayerNorm shared, mean pools, head. No masks (batch 1), fp32."""

    def __init__(self) -> None:
        super().__init__()
        self.wsi = nn.Linear(D, 256)
        self.clin = nn.Linear(512, 256)
        self.gen = nn.Linear(768, 256)
        self.norms = nn.ModuleList(nn.LayerNorm(256) for _ in range(2))
        self.qkv = nn.ModuleList(nn.Linear(256, 384, bias=False) for _ in range(2))
        self.ffn = nn.Sequential(
            nn.LayerNorm(128), nn.Linear(128, 128), nn.GELU(), nn.Dropout(0.1), nn.Linear(128, 128)
        )
        self.ln = nn.LayerNorm(128)
        self.head = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 4))

    def path(self, i: int, mod: torch.Tensor, wsi: torch.Tensor) -> torch.Tensor:
        n_m = mod.shape[1]
        x = torch.cat([mod, wsi], dim=1)
        q, k, v = self.qkv[i](self.norms[i](x)).chunk(3, dim=-1)
        q = q * 128**-0.5
        q_m, q_p = q[:, :n_m], q[:, n_m:]
        k_m, v_m = k[:, :n_m], v[:, :n_m]
        out_m = torch.softmax(q_m @ k.transpose(-1, -2), -1) @ v
        out_p = torch.softmax(q_p @ k_m.transpose(-1, -2), -1) @ v_m
        out = self.ln(self.ffn(torch.cat([out_m, out_p], dim=1)))
        return torch.cat([out[:, :n_m].mean(1), out[:, n_m:].mean(1)], dim=-1)

    def forward(self, batch: dict):
        wsi = self.wsi(batch["path"])
        g = self.path(0, self.gen(batch["gen"]), wsi)
        c = self.path(1, self.clin(batch["clin"]), wsi)

        class Out:
            pass

        o = Out()
        o.logits = self.head(torch.cat([g, c], dim=-1))
        return o


def gemm_peak(dtype: torch.dtype) -> float:
    a = torch.randn(4096, 1024).to(dtype)
    b = torch.randn(1024, 1024).to(dtype)
    sec = time_it(lambda: a @ b, warmup=3, repeats=10)
    return 2 * 4096 * 1024 * 1024 / sec / 1e9


def step_flops(model, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from survpgc.survival.losses import nll_survival_loss

    with FlopCounterMode(display=False) as fc:
        out = model(batch)
        nll_survival_loss(out.logits, batch["bin"], batch["event"]).backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def throughput() -> None:
    from survpgc.models import create_model

    n_p = 4096
    peak32, peak16 = gemm_peak(torch.float32), gemm_peak(torch.bfloat16)
    print(f"\nmeasured GEMM peak (4096x1024 @ 1024x1024): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    print(f"SurvPGC training step, n_p = {n_p}, d = {D}, RAdam")
    rows = []
    torch.manual_seed(0)
    ref = ReferenceStyleSurvPGC().train()
    b1 = make_batch(1, n_p, 768, 4)
    flops = step_flops(ref, b1)
    sec = time_it(train_step_fn(ref, b1), repeats=10)
    rows.append(("reference-style (fp32, batch 1)", 1 / sec, flops / sec / 1e9))
    ours = create_model("survpgc").train()
    b8 = make_batch(8, n_p, 768, 4)
    flops_ours = {1: step_flops(ours, b1), 8: step_flops(ours, b8)}  # counted, padding included
    for label, b, bf16 in (
        ("survpgc fp32, batch 1", 1, False),
        ("survpgc bf16 autocast, batch 1", 1, True),
        ("survpgc fp32, batch 8 (padded)", 8, False),
        ("survpgc bf16 autocast, batch 8 (padded)", 8, True),
    ):
        batch = b1 if b == 1 else b8
        sec = time_it(train_step_fn(ours, batch, bf16=bf16), repeats=10)
        rows.append((label, b / sec, flops_ours[b] / sec / 1e9))
    base = rows[0][1]
    print(f"{'configuration':<42} {'patients/s':>11} {'vs ref':>7} {'GFLOP/s':>8}")
    for label, pps, gf in rows:
        print(f"{label:<42} {pps:11.1f} {pps / base:6.2f}x {gf:8.0f}")
    print(
        f"(FLOPs per step, counted by torch: reference-style batch 1 {flops / 1e9:.2f} G, survpgc batch 1 "
        f"{flops_ours[1] / 1e9:.2f} G, batch 8 padded {flops_ours[8] / 1e9:.2f} G)"
    )


def bf16_check(n_patients: int = 200, folds: int = 5, epochs: int = 10) -> None:
    """Does bf16 autocast change what SurvPGC learns? 5-fold CV on the feature-level simulation, fp32 vs
    bf16 with identical seeds and splits; prints test C-index per fold and the mean ± sd difference."""
    import numpy as np

    from survpgc.config import TrainConfig
    from survpgc.data.dataset import collate_survival
    from survpgc.data.simulate import simulate_bags
    from survpgc.data.splits import make_splits
    from survpgc.models import create_model
    from survpgc.survival import TimeBinner, harrell_cindex
    from survpgc.train.loop import fit, predict

    sim = simulate_bags(n_patients, seed=0, n_patches=(200, 600), path_dim=256, clin_dim=64, gen_dim=64)
    idx = {c: i for i, c in enumerate(sim.case_ids)}
    splits = make_splits(sim.case_ids, sim.time, sim.event, n_folds=folds, seed=0)

    def loader(ids, bs, shuffle):
        g = torch.Generator().manual_seed(0)
        return torch.utils.data.DataLoader(
            [sim.items[idx[c]] for c in ids], batch_size=bs, shuffle=shuffle, collate_fn=collate_survival, generator=g
        )

    res = {"fp32": [], "bf16": []}
    t = {"fp32": 0.0, "bf16": 0.0}
    for f in splits:
        tr = [idx[c] for c in f.train]
        binner = TimeBinner(4).fit(sim.time[tr], sim.event[tr])
        for it in sim.items:
            it["bin"] = torch.tensor(int(binner.transform([float(it["time"])])[0]))
        for prec in ("fp32", "bf16"):
            torch.manual_seed(f.index)
            m = create_model("survpgc", **sim.dims)
            cfg = TrainConfig(epochs=epochs, select_from_epoch=max(1, epochs // 2), precision=prec, seed=f.index)
            t0 = time.perf_counter()
            fit(m, loader(f.train, 1, True), loader(f.val, 16, False), cfg)
            t[prec] += time.perf_counter() - t0
            p = predict(m, loader(f.test, 16, False), precision=prec)
            res[prec].append(harrell_cindex(p["time"], p["event"], p["risk"]))
    a, b = np.array(res["fp32"]), np.array(res["bf16"])
    oracle = harrell_cindex(sim.time, sim.event, sim.true_risk)
    print(
        f"\nbf16 check: SurvPGC, {folds}-fold CV on the simulation ({n_patients} patients, {epochs} epochs, "
        f"oracle C {oracle:.3f})"
    )
    print("fold  " + "  ".join(f"{k:>6}" for k in range(folds)) + "    mean ± sd   train s")
    print("fp32  " + "  ".join(f"{x:6.3f}" for x in a) + f"   {a.mean():.3f} ± {a.std(ddof=1):.3f}  {t['fp32']:7.1f}")
    print("bf16  " + "  ".join(f"{x:6.3f}" for x in b) + f"   {b.mean():.3f} ± {b.std(ddof=1):.3f}  {t['bf16']:7.1f}")
    d = b - a
    print(f"bf16 - fp32: {d.mean():+.3f} ± {d.std(ddof=1):.3f} (paired over folds)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma-separated model names (default: all neural models)")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "N_P", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--skip-table", action="store_true", help="only the SurvPGC throughput comparison")
    ap.add_argument("--bf16-check", action="store_true", help="only the fp32 vs bf16 C-index comparison")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), int(args.one[2]))))
        return
    if args.bf16_check:
        bf16_check()
        return
    from survpgc.models import list_models

    names = args.models.split(",") if args.models else [s.name for s in list_models() if s.neural]
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    if not args.skip_table:
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; d = {D}; one training step (fwd+bwd+RAdam)"
        )
        print(f"{'model':<15} {'batch':>5} " + " ".join(f"{'n_p=' + str(s):>22}" for s in sizes))
        env = dict(os.environ)
        for name in names:
            for b in batches:
                cells, first = [], None
                for n_p in sizes:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--one", name, str(n_p), str(b)],
                        capture_output=True,
                        text=True,
                        env=env,
                        timeout=900,
                    )
                    if proc.returncode != 0:
                        cells.append(f"{'failed':>22}")
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    first = first or r["ms"]
                    cells.append(f"{r['ms']:8.0f}ms x{r['ms'] / first:5.1f} {r['peak_mb']:5.0f}MB")
                print(f"{name:<15} {b:>5} " + " ".join(cells), flush=True)
    if not args.models or "survpgc" in names:
        throughput()
        bf16_check()


if __name__ == "__main__":
    main()
