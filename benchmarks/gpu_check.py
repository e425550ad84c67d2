"""One-command check of survpgc on a GPU (or, at small sizes, on the CPU): speed and correctness of the CUDA paths.

    bash benchmarks/gpu_check.sh                  # a GPU machine: cuda, full sizes, < 8 minutes on one GPU
    bash benchmarks/gpu_check.sh --device cpu     # small sizes on the CPU (the test suite's smoke run)

Prints the device it runs on first, then
1. extraction with the UNI architecture (ViT-L/16, 1024-d, RANDOM weights: the real shapes and cost, no
   pathology knowledge; ``--encoder vit-tiny`` / ``efficientnet_lite0`` for small runs) on synthetic pyramidal
   slides written on the spot (:func:`survpgc.synth.generate_synthetic_cohort`): end-to-end patches/s of
   :func:`survpgc.wsi.extract.extract_features` and the encoder alone;
2. the training step of survpgc (:func:`survpgc.train.loop.train_step`: batch 1, d = 1024, RAdam) at 4k / 16k /
   64k patches in fp32 and bf16 on the device -- with the batch coming from host memory as in ``fit`` and, on a
   GPU, already on it -- beside the host CPU (fp32, all its threads) and the README's 2-core CPU figures;
3. checks of the training paths on the device: every batch reaches it, fp32 / bf16 / fp16 (gradient scaler)
   give finite losses, the selected weights come back as CPU float32 tensors and predict on the CPU what the
   device model predicts;
4. the C-index of a short synthetic cross-validation (``survpgc run``'s :func:`survpgc.train.cv.run_cv`) on the
   device vs the CPU -- same cohort, folds and seed, fp32 both, plus the device's ``auto`` precision -- which
   must agree within ``--c-tolerance``; the device run's checkpoints reopened on the CPU
   (:class:`survpgc.rundir.RunContext`) must predict its risks; with ``--ddp`` (default on a GPU) the same run
   through ``torchrun`` (one process per visible GPU, nccl).

Exit status: 0 every check passed, 1 a check failed (listed at the end), 2 the check could not start (e.g.
``--device cuda`` without CUDA). ``--json FILE`` also writes every number measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

#: README "Benchmarks": survpgc training step, batch 1, fp32, on the project's 2-core CPU (ms per step).
README_CPU_MS = {4096: 58.0, 16384: 237.0, 65536: 868.0}

#: The label of the reference run of the C-index comparison.
REF = "cpu fp32 (reference)"

#: The sizes of each profile (overridable by the options).
PROFILES: dict[str, dict[str, Any]] = {
    "full": {  # a GPU: < 8 minutes on one H100 / H200 class GPU with 16 host cores
        "slides": 16, "slide_size": 8192, "encoder": "uni", "extract_batch": 256,
        "workers": min(8, max(1, (os.cpu_count() or 2) - 2)),
        "sizes": "4096,16384,65536", "repeats": 5, "host_cpu": True,
        "cv_patients": 120, "cv_patches": "100,400", "cv_dim": 64, "cv_folds": 3, "cv_epochs": 8,
        "cv_models": "survpgc,abmil", "ddp": True,
    },
    "small": {  # the CPU: < 60 s on 2 cores
        "slides": 4, "slide_size": 2048, "encoder": "vit-tiny", "extract_batch": 32, "workers": 0,
        "sizes": "1024,4096", "repeats": 3, "host_cpu": False,
        "cv_patients": 24, "cv_patches": "20,50", "cv_dim": 16, "cv_folds": 2, "cv_epochs": 2,
        "cv_models": "abmil", "ddp": False,
    },
}  # fmt: skip


class Report:
    """What the run printed and measured; failures make the exit status 1."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        print(f"   [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok


def say(text: str = "") -> None:
    print(text, flush=True)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------- 1. extraction
def _one_cohort(args: tuple[str, int, int]) -> list[str]:
    """Write a 4-patient synthetic cohort with slides (a worker process); return its slide paths."""
    from survpgc.synth import generate_synthetic_cohort

    out, seed, size = args
    generate_synthetic_cohort(out, n_patients=4, seed=seed, slide_size=(size, size))
    return [str(p) for p in sorted((Path(out) / "slides").iterdir())]


def make_slides(root: Path, n_slides: int, size: int) -> list[Path]:
    """``n_slides`` (rounded up to 4) pyramidal TIFFs of ``size`` x ``size`` px at 0.5 um/px, cohorts written in
    parallel processes, gathered under unique names in ``root/slides``."""
    n_cohorts = max(1, -(-n_slides // 4))
    jobs = [(str(root / f"cohort{k}"), 100 + k, size) for k in range(n_cohorts)]
    procs = max(1, min(n_cohorts, (os.cpu_count() or 2) // 2))
    if procs > 1:
        with ProcessPoolExecutor(procs, mp_context=get_context("fork")) as pool:
            lists = list(pool.map(_one_cohort, jobs))
    else:
        lists = [_one_cohort(j) for j in jobs]
    dest = root / "slides"
    dest.mkdir()
    slides = []
    for k, paths in enumerate(lists):
        for p in map(Path, paths):
            target = dest / f"c{k}-{p.name}"
            p.rename(target)
            slides.append(target)
    return slides


def make_encoder(name: str, device, precision: str):
    """The extraction encoder: ``uni`` (UNI architecture, random weights), ``vit-tiny`` (a ViT-Ti/16 of the same
    family, random weights) or a registered name with local weights (``efficientnet_lite0``)."""
    from survpgc.encoders.patch import create_patch_encoder

    if name == "uni":
        return create_patch_encoder("uni", random_weights=True, device=device, precision=precision)
    if name == "vit-tiny":
        import timm
        import torch

        from survpgc.encoders.patch_base import PatchEncoder
        from survpgc.encoders.transforms import PatchTransform
        from survpgc.encoders.uni import UNI_MODEL_KWARGS

        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **UNI_MODEL_KWARGS)
        return PatchEncoder(
            model,
            name="vit_tiny_random",
            dim=192,
            transform=PatchTransform(224),
            device=device,
            precision=precision,
            weights="RANDOM weights (benchmark)",
            cuda_precision="bf16",
        )
    return create_patch_encoder(name, device=device, precision=precision)


def extraction(rep: Report, root: Path, device, opts: argparse.Namespace) -> None:
    import torch

    from survpgc.wsi.extract import extract_features

    t0 = time.perf_counter()
    slides = make_slides(root, opts.slides, opts.slide_size)
    say(f"   {len(slides)} synthetic slides of {opts.slide_size}x{opts.slide_size} px written in "
        f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    enc = make_encoder(opts.encoder, device, opts.precision)
    n_params = sum(p.numel() for p in enc.model.parameters())
    say(f"   encoder {enc.name} ({enc.dim}-d, {n_params / 1e6:.1f} M parameters, {enc.precision}; "
        f"weights: {enc.weights})")  # fmt: skip
    # the encoder alone: transformed float batches already on the device
    bs = opts.extract_batch
    x = torch.randn(bs, 3, enc.input_size, enc.input_size, device=device)
    enc.encode_tensor(x)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while n < 4 * bs or time.perf_counter() - t0 < opts.encoder_seconds:
        enc.encode_tensor(x)
        n += bs
    sync(device)
    enc_rate = n / (time.perf_counter() - t0)
    # end to end: read, segment, tile, decode in workers, encode, write .h5 (+ QC thumbnails)
    t0 = time.perf_counter()
    res = extract_features(slides, root / "features", encoder=enc, batch_size=bs, workers=opts.workers,
                           device=str(device))  # fmt: skip
    e2e_s = time.perf_counter() - t0
    e2e_rate = res.n_patches / e2e_s
    say(f"   encoder alone:  {enc_rate:9.1f} patches/s (batch {bs}, {n} patches)")
    say(f"   end to end:     {e2e_rate:9.1f} patches/s ({res.n_patches} patches of {res.done} slides in "
        f"{e2e_s:.1f} s, {opts.workers} workers; ratio to the encoder {e2e_rate / enc_rate:.2f})")  # fmt: skip
    if device.type == "cuda":
        say(f"   peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    rep.results["extraction"] = {
        "encoder": enc.name, "precision": enc.precision, "weights": enc.weights, "batch": bs,
        "workers": opts.workers, "slides": len(slides), "patches": res.n_patches,
        "encoder_patches_per_s": enc_rate, "end_to_end_patches_per_s": e2e_rate, "end_to_end_s": e2e_s,
    }  # fmt: skip
    rep.check(res.ok and res.done == len(slides) and res.n_patches > 0, f"extraction: {res.describe()}")


# ----------------------------------------------------------------------------------------------- 2. steps
def step_batch(n_p: int, seed: int = 0) -> dict:
    """One case of survpgc's inputs (as benchmarks/models.py): n_p patches of 1024-d, 6 clinical tokens of
    512-d, 4 genomic tokens of 768-d."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "path": torch.randn(1, n_p, 1024, generator=g), "path_mask": torch.ones(1, n_p, dtype=torch.bool),
        "clin": torch.randn(1, 6, 512, generator=g), "clin_mask": torch.ones(1, 6, dtype=torch.bool),
        "gen": torch.randn(1, 4, 768, generator=g), "gen_mask": torch.ones(1, 4, dtype=torch.bool),
        "bin": torch.tensor([1]), "event": torch.tensor([True]),
    }  # fmt: skip


def time_steps(device, n_p: int, precision: str, repeats: int, *, on_device: bool = False) -> tuple[float, float]:
    """Median ms of one :func:`train_step` of a fresh survpgc, and peak GPU memory (GiB; NaN on CPU)."""
    import torch

    from survpgc.config import TrainConfig
    from survpgc.devices import to_device
    from survpgc.models import create_model
    from survpgc.train.loop import grad_scaler, train_step

    torch.manual_seed(0)
    model = create_model("survpgc", path_dim=1024, clin_dim=512, gen_dim=768).to(device).train()
    opt = torch.optim.RAdam(model.parameters(), lr=5e-4, weight_decay=1e-3)
    cfg = TrainConfig(precision=precision)
    scaler = grad_scaler(device, precision)
    batch = step_batch(n_p)
    if on_device:
        batch = to_device(batch, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(2 + repeats):
        sync(device)
        t0 = time.perf_counter()
        train_step(model, batch, opt, cfg, device=device, precision=precision, scaler=scaler)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times) * 1e3, peak


def training_steps(rep: Report, root: Path, device, opts: argparse.Namespace) -> None:
    import torch

    sizes = [int(s) for s in opts.sizes.split(",")]
    precisions = opts.step_precisions.split(",")
    gpu = device.type == "cuda"
    host = opts.host_cpu and device.type != "cpu"
    cols = [f"{p} ms" for p in precisions]
    if gpu:
        cols += [f"{p} on-GPU ms" for p in precisions] + [f"{p} GiB" for p in precisions]
    if host:
        cols.append("host CPU fp32 ms")
    cols.append("README CPU fp32 ms")
    say(f"   survpgc, batch 1, d = 1024, RAdam; median of {opts.repeats} steps after 2 warm-up"
        + ("; 'ms' includes the copy of the batch from host memory (as fit), 'on-GPU' starts from a batch "
           "already on the GPU" if gpu else ""))  # fmt: skip
    say("   " + f"{'patches':>8}" + "".join(f"{c:>20}" for c in cols))
    rows = []
    for n_p in sizes:
        row: dict[str, Any] = {"patches": n_p}
        cells = []
        for p in precisions:
            ms, peak = time_steps(device, n_p, p, opts.repeats)
            row[f"{p}_ms"], row[f"{p}_peak_gib"] = ms, peak
            cells.append(f"{ms:20.1f}")
        if gpu:
            for p in precisions:
                ms, _ = time_steps(device, n_p, p, opts.repeats, on_device=True)
                row[f"{p}_on_device_ms"] = ms
                cells.append(f"{ms:20.1f}")
            cells += [f"{row[f'{p}_peak_gib']:20.2f}" for p in precisions]
        if host:
            ms, _ = time_steps(torch.device("cpu"), n_p, "fp32", max(1, min(opts.repeats, 3)))
            row["host_cpu_fp32_ms"] = ms
            cells.append(f"{ms:20.1f}")
        ref = README_CPU_MS.get(n_p)
        row["readme_cpu_fp32_ms"] = ref
        cells.append(f"{ref:20.0f}" if ref else f"{'-':>20}")
        say("   " + f"{n_p:>8}" + "".join(cells))
        rows.append(row)
    if host or gpu:
        for r in rows:
            if "host_cpu_fp32_ms" in r:
                best = min(r[f"{p}_ms"] for p in precisions)
                say(f"   {r['patches']:>8} patches: {r['host_cpu_fp32_ms'] / best:.1f}x faster than the host CPU")
    rep.results["training_steps"] = rows
    finite = all(all(v == v for k, v in r.items() if k.endswith("_ms") and v is not None) for r in rows)
    rep.check(finite, f"training steps ran at {', '.join(map(str, sizes))} patches in {', '.join(precisions)}")


# ----------------------------------------------------------------------------------------------- 3. path checks
def path_checks(rep: Report, root: Path, device, opts: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from survpgc.config import TrainConfig
    from survpgc.data.dataset import collate_survival
    from survpgc.data.simulate import simulate_bags
    from survpgc.models import create_model
    from survpgc.train.loop import fit, predict

    sim = simulate_bags(48, seed=0, n_patches=(30, 120))
    for i, it in enumerate(sim.items):
        it["bin"] = torch.tensor(int(np.searchsorted(np.quantile(sim.time, [0.25, 0.5, 0.75]), sim.time[i])))

    def loader(idx, bs, shuffle=False):
        g = torch.Generator().manual_seed(0)
        return torch.utils.data.DataLoader([sim.items[i] for i in idx], batch_size=bs, shuffle=shuffle,
                                           collate_fn=collate_survival, generator=g)  # fmt: skip

    results = {}
    for precision in ("fp32", "bf16", "fp16"):
        torch.manual_seed(0)
        model = create_model("survpgc", **sim.dims)
        seen: set[str] = set()
        hook = model.register_forward_pre_hook(lambda mod, a, seen=seen: seen.add(str(a[0]["path"].device)))
        cfg = TrainConfig(epochs=3, select_from_epoch=1, precision=precision, device=str(device), batch_size=4)
        res = fit(model, loader(range(32), 4, True), loader(range(32, 48), 16), cfg)
        hook.remove()
        losses = [r["train_loss"] for r in res.history]
        on_device = str(next(model.parameters()).device)
        cpu_state = all(v.device.type == "cpu" for v in res.state_dict.values())
        f32 = all(v.dtype == torch.float32 for v in res.state_dict.values() if v.is_floating_point())
        # the selected weights, on the CPU, predict what the device model predicts (fp32 both)
        on_dev = predict(model, loader(range(32, 48), 16), device=device, precision="fp32")["risk"]
        cpu_model = create_model("survpgc", **sim.dims)
        cpu_model.load_state_dict(res.state_dict)
        on_cpu = predict(cpu_model, loader(range(32, 48), 16), device="cpu", precision="fp32")["risk"]
        diff = float(np.abs(on_dev - on_cpu).max())
        extra = f", {res.extra['fp16_skipped_steps']} fp16 step(s) skipped" if "fp16_skipped_steps" in res.extra else ""
        rep.check(
            seen == {str(device)} and on_device == str(device) and res.precision == precision
            and all(np.isfinite(losses)) and cpu_state and f32 and diff < opts.risk_tolerance,
            f"fit in {precision} on {device}: batches on {sorted(seen)}, model on {on_device}, losses "
            f"{', '.join(f'{v:.3f}' for v in losses)}{extra}; selected weights on the CPU "
            f"({'float32' if f32 else 'NOT float32'}) predict the device's risks within {diff:.1e}",
        )  # fmt: skip
        results[precision] = {"losses": losses, "max_risk_diff_cpu": diff, **res.extra}
    rep.results["path_checks"] = results


# ----------------------------------------------------------------------------------------------- 4. CV C-index
def cv_cohort(root: Path, opts: argparse.Namespace) -> tuple[Path, Path]:
    """A synthetic cohort (no slides) and patch features whose first dimension carries the planted texture."""
    import numpy as np
    import pandas as pd

    from survpgc.data.features import write_feature_file
    from survpgc.synth import generate_synthetic_cohort

    syn, feat = root / "syn", root / "cv_features"
    generate_synthetic_cohort(syn, n_patients=opts.cv_patients, seed=7, render_slides=False)
    truth = pd.read_csv(syn / "truth.csv")
    frac = dict(zip(truth["case_id"], truth["texture_fraction"], strict=True))
    cohort = pd.read_csv(syn / "cohort.csv")
    feat.mkdir()
    rng = np.random.default_rng(0)
    lo, hi = (int(v) for v in opts.cv_patches.split(","))
    for cid, sid in zip(cohort["case_id"], cohort["slide_id"], strict=True):
        n = int(rng.integers(lo, hi + 1))
        x = rng.normal(size=(n, opts.cv_dim)).astype(np.float32)
        x[: int(frac[cid] * n), 0] += 1.0
        coords = np.stack([np.arange(n) * 256, np.zeros(n, int)], axis=1)
        write_feature_file(feat / f"{Path(sid).stem}.h5", x, coords, patch_size=256, encoder="synthetic", slide_id=sid)
    return syn, feat


def cv_overrides(syn: Path, feat: Path, opts: argparse.Namespace) -> list[str]:
    models = ", ".join(opts.cv_models.split(","))
    return [
        f"cohort.source={syn}", f"pathology.feature_dir={feat}", f"splits.folds={opts.cv_folds}",
        f"train.epochs={opts.cv_epochs}", f"train.select_from_epoch={max(1, opts.cv_epochs // 2)}",
        "eval.bootstrap=50", f"models=[{models}]", "seed=0",
    ]  # fmt: skip


def cv_summary(run: Path) -> tuple[dict[str, float], Any]:
    import pandas as pd

    metrics = pd.read_csv(run / "metrics.csv")
    preds = pd.read_csv(run / "predictions.csv")
    return metrics.groupby("model")["cindex"].mean().to_dict(), preds


def reopen_on_cpu(run: Path, preds) -> float:
    """Largest |risk| difference between the run's test predictions and its checkpoints reopened on the CPU."""
    import numpy as np
    import torch

    from survpgc.data.dataset import collate_survival
    from survpgc.rundir import RunContext
    from survpgc.train.loop import predict

    ctx = RunContext(run)
    worst = 0.0
    for model_id in ctx.model_ids:
        for k in ctx.trained_folds(model_id):
            loaded = ctx.load(model_id, k, device="cpu")
            ids = list(ctx.splits[k].test)
            dl = torch.utils.data.DataLoader(loaded.dataset(ids), batch_size=8, collate_fn=collate_survival)
            got = predict(loaded.model, dl, device="cpu", precision="fp32")
            want = preds[(preds["model"] == model_id) & (preds["fold"] == k) & (preds["split"] == "test")]
            want = want.set_index("case_id").loc[got["case_id"], "risk"].to_numpy(float)
            worst = max(worst, float(np.abs(got["risk"] - want).max()))
    return worst


def cross_validation(rep: Report, root: Path, device, opts: argparse.Namespace) -> None:
    import numpy as np
    from scipy.stats import spearmanr

    from survpgc.config import load_config
    from survpgc.train.cv import run_cv

    syn, feat = cv_cohort(root, opts)
    base = cv_overrides(syn, feat, opts)
    say(f"   {opts.cv_patients} synthetic patients, {opts.cv_dim}-d features ({opts.cv_patches} patches), "
        f"{opts.cv_folds} folds, {opts.cv_epochs} epochs, models {opts.cv_models}")  # fmt: skip
    runs = [(REF, "cpu", "fp32"), (f"{device} fp32", str(device), "fp32")]
    if device.type == "cuda":
        runs.append((f"{device} auto", str(device), "auto"))
    out: dict[str, Any] = {}
    for label, dev, precision in runs:
        run = root / f"run{len(out)}"
        t0 = time.perf_counter()
        run_cv(load_config(None, [*base, f"train.device={dev}", f"train.precision={precision}"]), run)
        c, preds = cv_summary(run)
        used = sorted({json.loads(p.read_text())["precision"] for p in (run / "folds").glob("*.json")})
        out[label] = {"cindex": c, "seconds": time.perf_counter() - t0, "run": run, "preds": preds, "precision": used}
        say(f"   {label:<22} C-index " + ", ".join(f"{m} {v:.3f}" for m, v in c.items())
            + f"  ({time.perf_counter() - t0:.1f} s; trained in {'/'.join(used)})")  # fmt: skip
    ref = out[REF]
    for label, *_ in runs[1:]:
        got = out[label]
        for m, c_cpu in ref["cindex"].items():
            d = got["cindex"][m] - c_cpu
            a = ref["preds"][(ref["preds"]["split"] == "test") & (ref["preds"]["model"] == m)]
            b = got["preds"][(got["preds"]["split"] == "test") & (got["preds"]["model"] == m)]
            rho = spearmanr(a["risk"].to_numpy(), b["risk"].to_numpy()).statistic if len(a) > 2 else float("nan")
            rep.check(abs(d) <= opts.c_tolerance, f"{m}: C-index {label} {got['cindex'][m]:.3f} vs {REF} "
                      f"{c_cpu:.3f} (difference {d:+.3f}, tolerance {opts.c_tolerance}); test-risk Spearman "
                      f"{rho:.3f}")  # fmt: skip
    dev_run = out[f"{device} fp32"]
    diff = reopen_on_cpu(dev_run["run"], dev_run["preds"])
    rep.check(diff < opts.risk_tolerance, f"the {device} fp32 run's checkpoints reopened on the CPU predict its test "
              f"risks within {diff:.1e} (tolerance {opts.risk_tolerance})")  # fmt: skip
    results = {k: {kk: vv for kk, vv in v.items() if kk not in ("run", "preds")} for k, v in out.items()}
    results["reopen_max_risk_diff"] = diff
    if opts.ddp:
        results["torchrun"] = torchrun_run(rep, root, base, device, ref["cindex"], opts)
    rep.results["cross_validation"] = json.loads(json.dumps(results, default=lambda o: float(np.asarray(o))))


def torchrun_run(rep: Report, root: Path, base: list[str], device, c_cpu: dict[str, float], opts) -> dict[str, Any]:
    """The device fp32 run through torchrun: one process per visible GPU (nccl), one process on the CPU (gloo)."""
    import torch

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    nproc = torch.cuda.device_count() if device.type == "cuda" else 1
    dev = "cuda" if device.type == "cuda" else "cpu"
    run = root / "run_torchrun"
    cmd = [str(torchrun), "--nproc-per-node", str(nproc), "--master-port", str(opts.master_port), "-m", "survpgc.cli",
           "run", *base, "train.precision=fp32", "--device", dev, "--out", str(run)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.torchrun_timeout)
    seconds = time.perf_counter() - t0
    if not rep.check(proc.returncode == 0, f"torchrun --nproc-per-node {nproc} survpgc run --device {dev} exited "
                     f"{proc.returncode} in {seconds:.1f} s"):  # fmt: skip
        say("   " + proc.stderr[-2000:].replace("\n", "\n   "))
        return {"returncode": proc.returncode}
    log = (run / "run.log").read_text()
    backend = "nccl" if device.type == "cuda" else "gloo"
    rep.check(f"rank 0 of {nproc} ({backend})" in log, f"torchrun: process group of {nproc} over {backend} (run.log)")
    c, _ = cv_summary(run)
    for m, v in c.items():
        rep.check(abs(v - c_cpu[m]) <= opts.c_tolerance, f"{m}: C-index torchrun x{nproc} {v:.3f} vs {REF} "
                  f"{c_cpu[m]:.3f} (difference {v - c_cpu[m]:+.3f})")  # fmt: skip
    return {"nproc": nproc, "backend": backend, "cindex": c, "seconds": seconds}


# ----------------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cuda | cuda:i | cpu | auto (default; cuda when available)")
    ap.add_argument("--profile", choices=sorted(PROFILES), help="sizes: full (default on a GPU) | small (CPU)")
    ap.add_argument("--only", default="extract,steps,checks,cv", help="sections to run, comma-separated")
    ap.add_argument("--slides", type=int, help="synthetic slides (rounded up to 4)")
    ap.add_argument("--slide-size", type=int, help="level-0 side of each slide in px (multiple of 1024)")
    ap.add_argument("--encoder", help="uni (random weights) | vit-tiny (random weights) | efficientnet_lite0")
    ap.add_argument("--precision", default="auto", help="extraction precision: auto | fp32 | bf16 | fp16")
    ap.add_argument("--extract-batch", type=int, help="patches per encoder batch")
    ap.add_argument("--workers", type=int, help="extraction DataLoader workers")
    ap.add_argument("--encoder-seconds", type=float, default=3.0, help="time the encoder alone this long")
    ap.add_argument("--sizes", help="patches per bag of the step timing, comma-separated")
    ap.add_argument("--step-precisions", default="fp32,bf16", help="precisions of the step timing")
    ap.add_argument("--repeats", type=int, help="timed steps per configuration")
    ap.add_argument("--host-cpu", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the step on the host CPU (fp32)")  # fmt: skip
    ap.add_argument("--cv-patients", type=int)
    ap.add_argument("--cv-patches", help="min,max patches per synthetic case")
    ap.add_argument("--cv-dim", type=int, help="feature dimension of the synthetic cohort")
    ap.add_argument("--cv-folds", type=int)
    ap.add_argument("--cv-epochs", type=int)
    ap.add_argument("--cv-models", help="comma-separated model names")
    ap.add_argument("--c-tolerance", type=float, default=0.05, help="largest |C(device) - C(cpu)| accepted")
    ap.add_argument("--risk-tolerance", type=float, default=1e-3, help="largest |risk| difference GPU vs CPU")
    ap.add_argument("--ddp", action=argparse.BooleanOptionalAction, default=None, help="the CV run via torchrun")
    ap.add_argument("--master-port", type=int, default=29547)
    ap.add_argument("--torchrun-timeout", type=float, default=300.0)
    ap.add_argument("--keep", help="keep the slides, features and runs in this folder (default: a temporary one)")
    ap.add_argument("--json", help="write every number measured to this file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from survpgc.devices import describe_device, resolve_device
    from survpgc.errors import SurvpgcError

    opts = parse(argv)
    try:
        device = resolve_device(opts.device)
    except SurvpgcError as exc:
        say(f"gpu_check: cannot start: {exc}")
        return 2
    profile = opts.profile or ("full" if device.type == "cuda" else "small")
    for key, value in PROFILES[profile].items():
        if getattr(opts, key, None) is None:
            setattr(opts, key, value)
    sections = [s.strip() for s in opts.only.split(",") if s.strip()]
    where = describe_device(device)
    say("=" * 100)
    say(f"survpgc gpu_check -- RUNNING ON {where}")
    say(f"profile {profile}; host: {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads; CUDA available: {torch.cuda.is_available()}")  # fmt: skip
    say("=" * 100)
    rep = Report()
    rep.results.update(device=where, device_type=device.type, profile=profile, sections=sections)
    steps = {
        "extract": ("extraction with the UNI architecture" if opts.encoder == "uni" else "extraction", extraction),
        "steps": ("training step time", training_steps),
        "checks": ("training paths on the device", path_checks),
        "cv": ("cross-validation C-index, device vs CPU", cross_validation),
    }
    unknown = [s for s in sections if s not in steps]
    if unknown:
        say(f"gpu_check: unknown section(s) {unknown}; choose from {list(steps)}")
        return 2
    t_all = time.perf_counter()
    root = Path(opts.keep) if opts.keep else Path(tempfile.mkdtemp(prefix="survpgc_gpu_check_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        for i, key in enumerate(sections, 1):
            title, fn = steps[key]
            say(f"\n[{i}/{len(sections)}] {title} ({device})")
            t0 = time.perf_counter()
            sub = root / key
            sub.mkdir(exist_ok=True)
            try:
                fn(rep, sub, device, opts)
            except Exception as exc:  # one broken section must not hide the others' results
                traceback.print_exc()
                rep.check(False, f"{key}: {type(exc).__name__}: {exc}")
            say(f"   ({time.perf_counter() - t0:.1f} s)")
    finally:
        if not opts.keep:
            shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t_all
    rep.results.update(seconds=total, failures=rep.failures)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rep.results, indent=1, default=str))
    say("\n" + "=" * 100)
    verdict = "PASS" if not rep.failures else f"FAIL ({len(rep.failures)} check(s))"
    say(f"gpu_check on {where}: {verdict} in {total:.0f} s")
    for f in rep.failures:
        say(f"   failed: {f}")
    say("=" * 100)
    return 0 if not rep.failures else 1


if __name__ == "__main__":
    sys.exit(main())
