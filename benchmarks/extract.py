"""Extraction benchmark: where does the time of `survpgc extract` go, and how many reading workers does a GPU need?

Prints patches/s for
  (a) read + segment + patch: tissue segmentation, grid and reading/resizing every patch (no encoder);
  (b) the encoder's forward alone on random input tensors of the encoder's input size;
  (c) end to end (`extract_features` on the same slide);
the ratio c/b (goal ≥ 0.5 on CPU with the default encoder: the pipeline around the network costs less than
the network itself), and the process's peak memory. Then, over all the synthetic slides (issue 16):
  (d) the data path alone, as `extract_features` runs it (one DataLoader over the batches of every slide, grids
      made beforehand): read + decode, and read + decode + transform, with 0, 1 and 2 workers; the time to the
      first batch (worker start-up) and the rate per worker;
  (e) one DataLoader per slide (workers restarted per slide, as before issue 16) against the one loader;
  (f) the encoder alone: as built (channels-last for convolutional networks), the other memory format, and with
      `--compile` the torch.compile'd forward (its compile time apart);
  (g) end to end over all slides with 0 and 2 workers, writer overlap on and off;
  (h) the projection for a GPU: workers needed for 3,000 patches/s = 3000 / (rate of one worker), printed as
      ratios for read + decode and read + decode + transform; and peak resident memory (main process, workers).
Uses synthetic pyramidal slides written on the fly (``--mpp 0.25`` gives 40x scans: 512-px regions resized to
256 px, the usual case for UNI at 20x).

Run on demand: ``make bench`` or ``python benchmarks/extract.py [--size 6144x4096] [--workers 1] [--slides 4]
[--mpp 0.25] [--compile] [--device cuda --encoder uni:random --batch-size 256]``. Under 5 minutes on 2 CPU cores
with the defaults (compile adds minutes). On a GPU, (d) and (h) still time the CPU workers.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

TARGET = 3000.0  # patches/s wanted end to end on one GPU (issue 16)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def children_peak_mb() -> float:
    """Largest peak resident memory of a finished child process (the DataLoader workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def read_rate(
    grids, batch_size: int, workers: int, transform, prefetch: int = 2, reader: str = "auto"
) -> tuple[int, float, float]:
    """(patches, seconds, seconds to the first batch) of the extraction's data path over ``grids``."""
    import torch

    from survpgc.wsi.grid import PatchBatchDataset, batch_tasks

    tasks = [t for k, g in enumerate(grids) for t in batch_tasks(g, batch_size, key=k, backend=reader)]
    extra = {"prefetch_factor": prefetch} if workers else {}
    ds = PatchBatchDataset(transform=transform)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, sampler=tasks, num_workers=workers, collate_fn=_as_is, **extra
    )
    t0 = time.perf_counter()
    first = None
    n = 0
    for b in loader:
        if first is None:
            first = time.perf_counter() - t0
        assert b.error is None, b.error
        n += b.images.shape[0]
    ds.close()
    return n, time.perf_counter() - t0, first or 0.0


def per_slide_loaders(slides, grids, batch_size: int, workers: int, transform, reader: str) -> tuple[int, float]:
    """One DataLoader per slide (its workers started and stopped for each slide), as extraction did before."""
    import torch

    from survpgc.wsi.grid import SlidePatchDataset

    t0 = time.perf_counter()
    n = 0
    for path, grid in zip(slides, grids, strict=True):
        ds = SlidePatchDataset(path, grid, transform=transform, backend=reader)
        for x in torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers):
            n += len(x)
    return n, time.perf_counter() - t0


def _as_is(item):
    return item


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def encoder_rate(enc, batch_size: int, n: int) -> float:
    import torch

    x = torch.randn(batch_size, 3, enc.input_size, enc.input_size, device=enc.device)
    enc.encode_tensor(x)  # warm-up
    sync(enc.device)
    reps = max(1, -(-n // batch_size))
    t0 = time.perf_counter()
    for _ in range(reps):
        enc.encode_tensor(x)
    sync(enc.device)
    return reps * batch_size / (time.perf_counter() - t0)


def make_encoder(name: str, device: str, precision: str):
    """The encoder by registry name; ``uni:random`` is UNI's architecture with random weights (speed only)."""
    from survpgc.encoders.patch import create_patch_encoder

    if name == "uni:random":
        from survpgc.encoders.uni import make_uni

        return make_uni(random_weights=True, device=device, precision=precision)
    return create_patch_encoder(name, device=device, precision=precision)


def main() -> None:
    import torch

    from survpgc.synth import generate_synthetic_cohort
    from survpgc.wsi.extract import extract_features
    from survpgc.wsi.grid import SlidePatchDataset, tile_slide

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="6144x4096", help="level-0 size of the synthetic slides")
    ap.add_argument("--encoder", default="efficientnet_lite0", help="a registered name, or uni:random")
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:i] (the encoder's device)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--slides", type=int, default=4, help="synthetic slides for (d)-(g) (at least 4)")
    ap.add_argument("--mpp", type=float, default=0.5, help="level-0 um/px of the slides (0.25: 40x scans)")
    ap.add_argument("--reader", default="auto", help="slide reader for (d)-(g): auto | openslide | tiffslide")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd encoder (slow to compile)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    bs = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        power = round(10 / args.mpp)
        generate_synthetic_cohort(
            tmp / "syn", n_patients=max(4, args.slides), seed=0, slide_size=(w, h), mpp=args.mpp, objective_power=power
        )
        slides = sorted((tmp / "syn" / "slides").iterdir())
        slide = slides[0]
        enc = make_encoder(args.encoder, args.device, args.precision)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; encoder {enc.name} "
              f"({enc.dim}-d, {enc.input_size} px, precision {enc.precision}, channels_last {enc.channels_last}); "
              f"{len(slides)} slides {w}x{h} at {args.mpp} um/px")  # fmt: skip

        # (a) read + segment + patch (+ the transform, which runs in the reading workers)
        t0 = time.perf_counter()
        tiling = tile_slide(slide)
        ds = SlidePatchDataset(slide, tiling.grid, transform=enc.transform)
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, num_workers=args.workers)
        n = 0
        for x in loader:
            n += len(x)
        ta = time.perf_counter() - t0
        print(f"(a) read + segment + patch + transform: {n} patches in {ta:.2f} s = {n / ta:7.1f} patches/s")

        # (b) encoder forward alone
        rb = encoder_rate(enc, bs, n)
        print(f"(b) encoder forward alone:              {rb:7.1f} patches/s")

        # (c) end to end
        t0 = time.perf_counter()
        res = extract_features([slide], tmp / "out", encoder=enc, batch_size=bs, workers=args.workers)
        tc = time.perf_counter() - t0
        rc = res.n_patches / tc
        print(f"(c) end to end (extract_features):      {res.n_patches} patches in {tc:.2f} s = {rc:7.1f} patches/s")
        print(f"ratio c/b = {rc / rb:.2f} (goal >= 0.5); peak resident memory {peak_mb():.0f} MB")

        # (d) the data path alone over every slide
        t0 = time.perf_counter()
        grids = [tile_slide(s, backend=args.reader).grid for s in slides]
        t_grid = time.perf_counter() - t0
        total = sum(g.n_patches for g in grids)
        print(f"\n(d) data path over {len(slides)} slides, reader {args.reader} ({total} patches; segmentation + grids "
              f"{t_grid:.2f} s = {t_grid / len(slides):.2f} s per slide, done by the planner thread):")  # fmt: skip
        rates: dict[tuple[str, int], float] = {}
        for label, transform in (("read + decode", None), ("read + decode + transform", enc.transform)):
            for workers in (0, 1, 2):
                n, t, first = read_rate(grids, bs, workers, transform, reader=args.reader)
                rates[label, workers] = n / t
                print(f"    {label:<26} {workers} worker(s): {n / t:7.1f} patches/s (first batch after {first:.2f} s)")

        # (e) one DataLoader per slide vs one for all slides
        n_old, t_old = per_slide_loaders(slides, grids, bs, 2, enc.transform, args.reader)
        n_new, t_new, _ = read_rate(grids, bs, 2, enc.transform, reader=args.reader)
        print(f"(e) 2 workers, {len(slides)} slides: one DataLoader per slide {n_old / t_old:7.1f} patches/s "
              f"({t_old:.2f} s), one for all slides {n_new / t_new:7.1f} patches/s ({t_new:.2f} s); "
              f"restart cost {(t_old - t_new) / len(slides):+.2f} s per slide")  # fmt: skip

        # (f) the encoder alone
        r_enc = encoder_rate(enc, bs, total // 2)
        print(f"(f) encoder alone, channels_last {enc.channels_last}: {r_enc:7.1f} patches/s", end="")
        enc.channels_last = not enc.channels_last
        enc.model = enc.model.to(memory_format=torch.channels_last if enc.channels_last else torch.contiguous_format)
        r_other = encoder_rate(enc, bs, total // 2)
        enc.channels_last = not enc.channels_last
        enc.model = enc.model.to(memory_format=torch.channels_last if enc.channels_last else torch.contiguous_format)
        print(f"; channels_last {not enc.channels_last}: {r_other:7.1f} patches/s (ratio {r_enc / r_other:.2f})")
        if args.compile:
            import warnings

            compiled = enc.compiled(batch_size=bs)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                compiled.encode_tensor(torch.randn(bs, 3, enc.input_size, enc.input_size, device=enc.device))
                sync(enc.device)
            t_compile = time.perf_counter() - t0
            if not compiled.is_compiled:
                why = caught[-1].message if caught else ""
                print(f"    torch.compile failed after {t_compile:.1f} s, eager used: {why}")
            else:
                r_comp = encoder_rate(compiled, bs, total // 2)
                print(f"    torch.compile: {r_comp:7.1f} patches/s (ratio to eager {r_comp / r_enc:.2f}; "
                      f"first batch with compilation {t_compile:.1f} s)")  # fmt: skip

        # (g) end to end over every slide
        runs = [(0, True, "auto"), (2, True, "auto"), (2, False, "auto")]
        if str(enc.device).startswith("cuda"):  # auto transforms on the GPU there; the workers' transform beside it
            runs.append((2, True, "workers"))
        for workers, overlap, where in runs:
            out = tmp / f"e2e-{workers}-{overlap}-{where}"
            t0 = time.perf_counter()
            res = extract_features(
                slides,
                out,
                encoder=enc,
                batch_size=bs,
                workers=workers,
                overlap=overlap,
                transform_on=where,
                backend=args.reader,
            )
            t = time.perf_counter() - t0
            rate = res.n_patches / t
            print(f"(g) end to end, {workers} worker(s), overlap {overlap!s:<5}, transform {where:<7}: "
                  f"{res.n_patches} patches in {t:6.2f} s = {rate:7.1f} patches/s "
                  f"(ratio to the encoder alone {rate / r_enc:.2f})")  # fmt: skip

        # (h) projection
        print(f"(h) for {TARGET:.0f} patches/s on one GPU (rate of one worker here):")
        for label in ("read + decode", "read + decode + transform"):
            one = rates[label, 1]
            print(f"    {label:<26} {one:7.1f} patches/s per worker -> {TARGET / one:5.1f} workers "
                  f"(2 workers give {rates[label, 2] / one:.2f}x one worker on {_cores()} cores)")  # fmt: skip
        print(f"    peak resident memory: main process {peak_mb():.0f} MB, largest worker {children_peak_mb():.0f} MB")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
