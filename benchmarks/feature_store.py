"""Feature store benchmark: reading sampled patches at scale, memory, and bag-length buckets.

Run on demand: ``OMP_NUM_THREADS=1 python benchmarks/feature_store.py [--cases 300] [--patches 20000]``.
Writes a synthetic cohort of ``--cases`` slides x ``--patches`` patches x ``--dim`` float16 features (one .h5
per slide, as ``survpgc extract --float16`` writes them; the default is 300 x 20k x 1024 = 12.3 GB) under
``--dir`` (default: a new folder in the system temporary folder), builds its feature store (as ``survpgc store
build``), and deletes both at the end (``--keep`` keeps them). Training samples ``--n-patches`` (4096) patches
per case, as ``data.n_patches``.

Prints
1. the sizes and the time to write the cohort and build the store;
2. data only: patients/s of one epoch reading the sampled bags, cold (each file's pages dropped from the page
   cache first, as for a cohort larger than memory) and warm, for the current whole-file reads, the sampled
   rows of each .h5 (h5py point selection), and the store;
3. a SurvPGC training step loop (fp32, RAdam, batch ``--batch``, ``--steps`` batches, cold cache) reading with
   the store (with and without the read-ahead of the next batch that ``make_loader`` asks for) and with
   whole-file reads, against the same steps on preloaded tensors (compute alone), with DataLoader workers 0 and
   1: ratios to compute alone (goal >= 0.9 for the store);
4. peak resident memory of a data-only epoch, each in a fresh process, at two cohort sizes: the store, whole-file
   reads without a cache, the current unbounded cache (``data.cache``) and the cache bounded by ``data.cache_gb``;
5. bag-length buckets (``data.bucket``): a cohort of mixed bag lengths (log-uniform 256 .. ``--patches``,
   sampled to at most ``--n-patches``), SurvPGC training steps on preloaded tensors of every batch of one epoch,
   random batches vs buckets (pools of 8 batches) at batch 8 and 16: padding share, patients/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------------------------ helpers
def vm(key: str) -> float:
    """``VmHWM`` / ``VmRSS`` of this process in MB (from /proc; ru_maxrss keeps a parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def drop_page_cache(paths) -> None:
    """Drop these files' pages from the page cache (POSIX_FADV_DONTNEED: no root needed, only our files)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_cohort(root: Path, n_cases: int, n_patches, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """A TCGA-layout cohort folder and a feature folder of one float16 .h5 per case (``n_patches``: an int or a
    per-case list)."""
    import pandas as pd

    from survpgc.data.features import write_feature_file

    coh, feats = root / "cohort", root / "features"
    coh.mkdir(parents=True, exist_ok=True)
    feats.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = [n_patches] * n_cases if isinstance(n_patches, int) else list(n_patches)
    base = rng.standard_normal((max(lengths), dim), dtype=np.float32).astype(np.float16)
    rows = []
    for i in range(n_cases):
        case = f"TCGA-ZZ-{i:04d}"
        stem = f"{case}-01Z-00-DX1"
        rows.append({"case_id": case, "slide_id": f"{stem}.svs", "survival_months": float(rng.uniform(1, 100)),
                     "censorship": int(rng.integers(0, 2)), "age": 60, "sex": "male"})  # fmt: skip
        n = lengths[i]
        x = base[:n].copy()
        x[:, 0] = i  # column 0 names the case
        coords = np.stack([np.arange(n) * 256, np.full(n, i)], axis=1)
        write_feature_file(feats / f"{stem}.h5", x, coords, patch_size=256, encoder="synthetic", encoder_dim=dim)
    pd.DataFrame(rows).to_csv(coh / "cohort.csv", index=False)
    return coh, feats


def open_dataset(coh: Path, feats: Path, *, store=None, cache=False, cache_gb=None, n_patches=4096, n_cases=None,
                 tokens=True):  # fmt: skip
    from survpgc.data.cohort import load_tcga
    from survpgc.data.dataset import SurvivalDataset
    from survpgc.data.tokens import InMemoryTokens

    cohort = load_tcga(coh, feature_dir=feats)
    ids = cohort.case_ids[: n_cases or len(cohort.case_ids)]
    kw = {}
    mods = ("pathology",)
    if tokens:
        g = torch.Generator().manual_seed(0)
        kw["clinical"] = InMemoryTokens({c: torch.randn(6, 512, generator=g) for c in ids})
        kw["genomic"] = InMemoryTokens({c: torch.randn(4, 768, generator=g) for c in ids})
        mods = ("pathology", "clinical", "genomic")
    return SurvivalDataset(
        cohort, ids, bins=np.arange(len(ids)) % 4, modalities=mods, n_patches=n_patches, train=True, cache=cache,
        cache_bytes=None if cache_gb is None else int(cache_gb * 1e9), store=store, seed=0, **kw,
    )  # fmt: skip


def h5_sampled(ds, index: int) -> dict:
    """The sampled bag of case ``index`` read with h5py point selection (the alternative to a store)."""
    import h5py

    (path,) = ds.feature_files(index)
    with h5py.File(path, "r") as f:
        fds = f["features"]
        n = fds.shape[0]
        idx = ds._sample(n, index)
        x = torch.from_numpy(fds[()] if idx is None else fds[idx]).float()
    return {"case_id": str(index), "path": x, "path_mask": torch.ones(len(x), dtype=torch.bool)}


def data_epoch(ds, order, batch: int, reader=None) -> float:
    """Seconds to read (and collate) every case of ``order`` once."""
    from survpgc.data.dataset import collate_survival

    read = reader or (lambda d, i: d[i])
    t0 = time.perf_counter()
    for s in range(0, len(order), batch):
        collate_survival([read(ds, int(i)) for i in order[s : s + batch]])
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ training steps
def survpgc_model(dim: int):
    from survpgc.models import create_model

    torch.manual_seed(0)
    return create_model("survpgc", path_dim=dim, clin_dim=512, gen_dim=768).train()


def stepper(model):
    """One fp32 optimisation step of the training loop itself (:func:`survpgc.train.loop.train_step`)."""
    from survpgc.config import TrainConfig
    from survpgc.train._alloc import keep_large_allocations
    from survpgc.train.loop import train_step

    keep_large_allocations()
    opt = torch.optim.RAdam(model.parameters(), lr=5e-4, weight_decay=1e-3)
    cfg, cpu = TrainConfig(device="cpu", precision="fp32"), torch.device("cpu")

    def step(batch) -> None:
        train_step(model, batch, opt, cfg, device=cpu, precision="fp32")

    return step


def loop_seconds(step, batches) -> float:
    t0 = time.perf_counter()
    for b in batches:
        step(b)
    return time.perf_counter() - t0


def training_loops(coh, feats, store_dir, files, store_files, args) -> None:
    from itertools import islice

    from survpgc.inputs import make_loader

    steps, bs = args.steps, args.batch
    print(f"\n3. SurvPGC training loop: {steps} steps of batch {bs} at n_patches {args.n_patches}, fp32, "
          f"{torch.get_num_threads()} thread(s), cold page cache")  # fmt: skip
    model = survpgc_model(args.dim)
    step = stepper(model)
    ds = open_dataset(coh, feats, store=store_dir, n_patches=args.n_patches)
    ds.set_epoch(1)
    loader = make_loader(ds, bs, True, 0, 0)
    pre = list(islice(iter(loader), 2))  # preloaded tensors, cycled
    step(pre[0])  # warm-up (allocator, kernels)
    t_compute = loop_seconds(step, [pre[k % 2] for k in range(steps)])
    del pre
    rows = [("compute alone (preloaded tensors)", "-", t_compute)]
    for workers in (0, 1):
        for label, kw, paths in (
            ("store", {"store": store_dir}, store_files),
            ("store without read-ahead", {"store": store_dir}, store_files),
            ("whole-file reads (today)", {}, files),
        ):
            ds = open_dataset(coh, feats, n_patches=args.n_patches, **kw)
            if label == "store without read-ahead":
                ds.prefetch = lambda indices: None  # make_loader's PrefetchBatches then announces to nobody
            ds.set_epoch(2 + workers)
            drop_page_cache(paths)
            loader = make_loader(ds, bs, True, workers, 0)
            t = loop_seconds(step, islice(iter(loader), steps))
            rows.append((label, str(workers), t))
            del loader
    print(f"{'reading':<36} {'workers':>7} {'s':>7} {'patients/s':>10} {'vs compute':>10}")
    for label, w, t in rows:
        print(f"{label:<36} {w:>7} {t:7.1f} {steps * bs / t:10.2f} {t_compute / t:10.2f}")


# ------------------------------------------------------------------------------------------ memory
def rss_one(args) -> None:
    """One data-only epoch in this fresh process; prints {base: resident MB before, peak} as JSON."""
    method, n = args.rss_one[0], int(args.rss_one[1])
    coh, feats, store = Path(args.rss_paths[0]), Path(args.rss_paths[1]), Path(args.rss_paths[2])
    kw = {
        "store": {"store": store},
        "files": {},
        "cache": {"cache": True},
        "cache_gb": {"cache": True, "cache_gb": args.rss_cache_gb},
    }[method]
    ds = open_dataset(coh, feats, n_patches=args.n_patches, n_cases=n, tokens=False, **kw)
    base = vm("VmRSS")
    ds.set_epoch(1)
    data_epoch(ds, np.random.default_rng(1).permutation(len(ds)), args.batch)
    print(json.dumps({"base": base, "peak": vm("VmHWM"), "cached": ds.cached_bytes}))


def memory(coh, feats, store_dir, args) -> None:
    n = args.cases
    small = [max(2, n // 16), max(4, n // 8)]  # the unbounded cache grows with the cohort: keep it small
    plans = [("store", [n // 2, n]), ("files", [n // 2, n]), ("cache_gb", [n // 2, n]), ("cache", small)]
    gb = args.patches * args.dim * 2 / 1e9
    print(f"\n4. peak resident memory of a data-only epoch (fresh process each; batch {args.batch}; "
          f"{gb * 1e3:.0f} MB of features per case)")  # fmt: skip
    print(f"{'reading':<44} {'cases':>6} {'peak MB':>8} {'above start':>11}")
    for method, sizes in plans:
        for m in sizes:
            cmd = [sys.executable, str(HERE), "--rss-one", method, str(m), "--rss-paths", str(coh), str(feats),
                   str(store_dir), "--n-patches", str(args.n_patches), "--batch", str(args.batch),
                   "--rss-cache-gb", str(args.rss_cache_gb)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                print(f"{method:<44} {m:>6} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            label = {
                "store": "store",
                "files": "whole-file reads, no cache",
                "cache": "whole-file reads, data.cache (no bound)",
                "cache_gb": f"whole-file reads, data.cache_gb={args.rss_cache_gb}",
            }[method]
            print(f"{label:<44} {m:>6} {r['peak']:8.0f} {r['peak'] - r['base']:11.0f}", flush=True)


# ------------------------------------------------------------------------------------------ buckets
def buckets(args) -> None:
    from survpgc.data.buckets import BucketBatchSampler, padding_share
    from survpgc.data.dataset import collate_survival

    rng = np.random.default_rng(1)
    n = args.bucket_cases
    total = np.exp(rng.uniform(np.log(256), np.log(args.patches), size=n)).astype(int)
    lengths = np.minimum(total, args.n_patches)
    print(f"\n5. bag-length buckets: {n} cases, bags log-uniform 256..{args.patches} patches sampled to at most "
          f"{args.n_patches} (median {int(np.median(lengths))}); one epoch of SurvPGC steps, preloaded "
          "tensors")  # fmt: skip
    model = survpgc_model(args.dim)
    step = stepper(model)
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(args.n_patches, args.dim, generator=g)
    clin, gen = torch.randn(6, 512, generator=g), torch.randn(4, 768, generator=g)

    def item(i: int) -> dict:
        k = int(lengths[i])
        return {"case_id": str(i), "time": torch.tensor(1.0), "event": torch.tensor(bool(i % 2)),
                "bin": torch.tensor(i % 4), "path": pool[:k], "path_mask": torch.ones(k, dtype=torch.bool),
                "has_path": torch.tensor(True), "clin": clin, "clin_mask": torch.ones(6, dtype=torch.bool),
                "has_clin": torch.tensor(True), "gen": gen, "gen_mask": torch.ones(4, dtype=torch.bool),
                "has_gen": torch.tensor(True)}  # fmt: skip

    step(collate_survival([item(0), item(1)]))  # warm-up
    print(f"{'batch':>5} {'batches':<22} {'padding':>8} {'s/epoch':>8} {'patients/s':>10} {'vs random':>9}")
    for bs in (8, 16):
        perm = np.random.default_rng(0).permutation(n)
        plain = [perm[i : i + bs].tolist() for i in range(0, n, bs)]
        bucketed = BucketBatchSampler(lengths, bs, pool=8, seed=0).batches(1)
        base = None
        for label, batches in (("random", plain), ("buckets (pool 8)", bucketed)):
            t = loop_seconds(step, (collate_survival([item(i) for i in b]) for b in batches))
            base = base or t
            print(f"{bs:>5} {label:<22} {padding_share(lengths, batches):8.1%} {t:8.1f} {n / t:10.2f} "
                  f"{base / t:8.2f}x", flush=True)  # fmt: skip


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=300, help="synthetic cases (one slide each)")
    ap.add_argument("--patches", type=int, default=20000, help="patches per slide")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--n-patches", type=int, default=4096, help="patches sampled per case (data.n_patches)")
    ap.add_argument("--batch", type=int, default=16, help="batch size of the reading and training loops")
    ap.add_argument("--steps", type=int, default=10, help="training steps per reading method (section 3)")
    ap.add_argument("--bucket-cases", type=int, default=160, help="cases of the bucket section (5)")
    ap.add_argument("--dir", default=None, help="where to write the synthetic cohort (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic cohort and store")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: data,train,memory,buckets")
    ap.add_argument("--rss-cache-gb", type=float, default=1.0, help="data.cache_gb of the memory section")
    ap.add_argument("--rss-one", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--rss-paths", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_one:
        rss_one(args)
        return
    skip = set(filter(None, args.skip.split(",")))
    from survpgc.data.store import build_store
    from survpgc.train._alloc import keep_large_allocations

    keep_large_allocations()  # as training does: padded batches reuse their memory

    root = Path(tempfile.mkdtemp(prefix="survpgc-store-bench-", dir=args.dir))
    t_start = time.perf_counter()
    try:
        gb = args.cases * args.patches * args.dim * 2 / 1e9
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs; {root}")
        print(f"1. synthetic cohort: {args.cases} cases x {args.patches} patches x {args.dim} float16 = {gb:.2f} GB")
        t0 = time.perf_counter()
        coh, feats = make_cohort(root, args.cases, args.patches, args.dim)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = build_store(feats, root / "store")
        t_build = time.perf_counter() - t0
        print(f"   written in {t_write:.0f} s; store built in {t_build:.0f} s ({gb / t_build:.2f} GB/s): "
              f"{res.describe()}")  # fmt: skip
        files = sorted(feats.glob("*.h5"))
        store_files = [root / "store" / "features.npy", root / "store" / "coords.npy"]
        if "data" not in skip:
            n = args.cases
            print(f"\n2. data only: one epoch of {n} cases, {args.n_patches} patches sampled per case, batch "
                  f"{args.batch} collated")  # fmt: skip
            print(f"{'reading':<36} {'cold s':>7} {'patients/s':>10} {'warm s':>7} {'patients/s':>10}")
            results = {}
            for label, kw, paths, reader in (
                ("whole-file reads (today)", {}, files, None),
                ("h5 sampled rows (h5py)", {}, files, h5_sampled),
                ("store", {"store": root / "store"}, store_files, None),
            ):
                ds = open_dataset(coh, feats, n_patches=args.n_patches, tokens=False, **kw)
                order = np.random.default_rng(0).permutation(len(ds))
                drop_page_cache(paths)
                ds.set_epoch(1)
                cold = data_epoch(ds, order, args.batch, reader)
                warm = data_epoch(ds, order, args.batch, reader)
                results[label] = (cold, warm)
                print(f"{label:<36} {cold:7.1f} {n / cold:10.1f} {warm:7.1f} {n / warm:10.1f}", flush=True)
            c0, w0 = results["whole-file reads (today)"]
            c1, w1 = results["store"]
            print(f"store vs whole-file reads: {c0 / c1:.1f}x cold, {w0 / w1:.1f}x warm")
        if "train" not in skip:
            training_loops(coh, feats, root / "store", files, store_files, args)
        if "memory" not in skip:
            memory(coh, feats, root / "store", args)
        if "buckets" not in skip:
            buckets(args)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s" + ("" if args.keep else f"; removed {root}"))


if __name__ == "__main__":
    main()
