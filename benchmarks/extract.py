"""Extraction benchmark: where does the time of `survpgc extract` go?

Prints patches/s for
  (a) read + segment + patch: tissue segmentation, grid and reading/resizing every patch (no encoder);
  (b) the encoder's forward alone on random input tensors of the encoder's input size;
  (c) end to end (`extract_features` on the same slide);
the ratio c/b (goal ≥ 0.5 on CPU with the default encoder: the pipeline around the network costs less than
the network itself), and the process's peak memory. Uses a synthetic pyramidal slide written on the fly.

Run on demand: ``make bench`` or ``python benchmarks/extract.py [--size 6144x4096] [--workers 1]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    import torch

    from survpgc.encoders.patch import create_patch_encoder
    from survpgc.synth import generate_synthetic_cohort
    from survpgc.wsi.extract import extract_features
    from survpgc.wsi.grid import SlidePatchDataset, tile_slide

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="6144x4096", help="level-0 size of the synthetic slide")
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_synthetic_cohort(tmp / "syn", n_patients=4, seed=0, slide_size=(w, h))
        slide = sorted((tmp / "syn" / "slides").iterdir())[0]
        enc = create_patch_encoder(args.encoder, device="cpu", precision=args.precision)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; encoder {enc.name} "
              f"({enc.dim}-d, {enc.input_size} px, precision {enc.precision}); slide {w}x{h}")  # fmt: skip

        # (a) read + segment + patch (+ the transform, which runs in the reading workers)
        t0 = time.perf_counter()
        tiling = tile_slide(slide)
        ds = SlidePatchDataset(slide, tiling.grid, transform=enc.transform)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
        n = 0
        for x in loader:
            n += len(x)
        ta = time.perf_counter() - t0
        print(f"(a) read + segment + patch + transform: {n} patches in {ta:.2f} s = {n / ta:7.1f} patches/s")

        # (b) encoder forward alone
        x = torch.randn(args.batch_size, 3, enc.input_size, enc.input_size)
        enc.encode_tensor(x)  # warm-up
        reps = max(1, -(-n // args.batch_size))
        t0 = time.perf_counter()
        for _ in range(reps):
            enc.encode_tensor(x)
        tb = time.perf_counter() - t0
        rb = reps * args.batch_size / tb
        print(
            f"(b) encoder forward alone:              {reps * args.batch_size} patches in {tb:.2f} s "
            f"= {rb:7.1f} patches/s"
        )

        # (c) end to end
        t0 = time.perf_counter()
        res = extract_features([slide], tmp / "out", encoder=enc, batch_size=args.batch_size, workers=args.workers)
        tc = time.perf_counter() - t0
        rc = res.n_patches / tc
        print(f"(c) end to end (extract_features):      {res.n_patches} patches in {tc:.2f} s = {rc:7.1f} patches/s")
        print(f"ratio c/b = {rc / rb:.2f} (goal >= 0.5); peak resident memory {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
