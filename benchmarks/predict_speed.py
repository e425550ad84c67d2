"""Prediction benchmark: how fast does a bundle score new patients from cached patch features?

Writes a synthetic cohort of ``--n`` patients (no rendered slides) with one feature file per slide
(``--patches`` x ``--dim``, float16 as `survpgc extract --float16` writes them), trains a bundle for one epoch
on it, then times :func:`survpgc.deploy.predict.predict_cohort` on all patients (the bundle loaded from disk,
input checks included) and prints patients/s and the process's peak RSS.

Run on demand: ``python benchmarks/predict_speed.py [--n 1000] [--model abmil] [--patches 256] [--dim 512]``.
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
    import numpy as np
    import pandas as pd

    from survpgc.config import load_config
    from survpgc.data.cohort import open_cohort
    from survpgc.data.features import write_feature_file
    from survpgc.deploy.bundle import load_bundle
    from survpgc.deploy.fit import train_bundle
    from survpgc.deploy.predict import predict_cohort
    from survpgc.synth import generate_synthetic_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="patients")
    ap.add_argument(
        "--model", default="abmil", help="model entry (e.g. abmil, '{name: snn, params: {modality: genomic}}')"
    )
    ap.add_argument("--patches", type=int, default=256, help="patches per slide")
    ap.add_argument("--dim", type=int, default=512, help="feature dim")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generate_synthetic_cohort(root / "syn", n_patients=args.n, seed=0, render_slides=False)
        table = pd.read_csv(root / "syn" / "cohort.csv")
        rng = np.random.default_rng(0)
        (root / "feat").mkdir()
        for sid in table["slide_id"]:
            x = rng.normal(size=(args.patches, args.dim)).astype(np.float16)
            write_feature_file(root / "feat" / f"{Path(sid).stem}.h5", x, None, encoder="fake", patch_size=256)
        print(f"cohort + {len(table)} feature files written in {time.perf_counter() - t0:.1f} s")
        cfg = load_config(
            None,
            [f"cohort.source={root / 'syn'}", f"pathology.feature_dir={root / 'feat'}", f"models=[{args.model}]",
             "train.batch_size=8", "train.device=cpu", "splits.folds=2"],
        )  # fmt: skip
        t0 = time.perf_counter()
        train_bundle(cfg, root / "bundle", epochs=1)
        print(f"bundle trained (1 epoch) in {time.perf_counter() - t0:.1f} s")
        cohort = open_cohort(root / "syn", feature_dir=root / "feat")
        t0 = time.perf_counter()
        df = predict_cohort(load_bundle(root / "bundle"), cohort)
        sec = time.perf_counter() - t0
        print(
            f"predicted {len(df)} patients in {sec:.2f} s: {len(df) / sec:.0f} patients/s; peak RSS {peak_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
