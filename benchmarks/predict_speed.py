"""Prediction benchmark: how fast does a bundle score new patients from cached patch features?

Writes a synthetic cohort of ``--n`` patients (no rendered slides) with one feature file per slide
(``--patches`` x ``--dim``, float16 as `survpgc extract --float16` writes them) and trains a bundle for one epoch on
it (or reuses such a folder: ``--data DIR``, kept with ``--keep DIR``). Then it times
:func:`survpgc.deploy.predict.predict_cohort` on all patients ``--repeats`` times, each in a fresh process (the
bundle loaded from disk, input checks included; the cohort opened before the clock starts), and prints the mean
± sd of the seconds and patients/s, each run's CPU time (all threads; less sensitive than the wall time to other
processes on the machine), and each process's peak RSS (and its RSS before predicting: imports and the opened
cohort).

Run on demand: ``python benchmarks/predict_speed.py [--n 1000] [--model abmil] [--patches 256] [--dim 512]
[--repeats 3]``. To compare two versions of survpgc on the same files, prepare once with ``--keep DIR`` and run
each version with ``--data DIR`` (e.g. ``PYTHONPATH=/path/to/other/src``; a bundle of format version 1 is read by
both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from survpgc.data.cohort import open_cohort
from survpgc.deploy.bundle import load_bundle
from survpgc.deploy.predict import predict_cohort

def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss keeps the parent's peak across exec on Linux)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

root = Path(sys.argv[1])
cohort = open_cohort(root / "syn", feature_dir=root / "feat")
before = peak_mb()
t0, c0 = time.perf_counter(), time.process_time()
df = predict_cohort(load_bundle(root / "bundle"), cohort)
sec, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = peak_mb()
import survpgc, torch
print(json.dumps({"n": len(df), "seconds": sec, "cpu_seconds": cpu, "peak_mb": peak, "before_mb": before,
                  "survpgc": str(Path(survpgc.__file__).parent), "threads": torch.get_num_threads()}))
"""


def prepare(root: Path, n: int, model: str, patches: int, dim: int) -> None:
    import numpy as np
    import pandas as pd

    from survpgc.config import load_config
    from survpgc.data.features import write_feature_file
    from survpgc.deploy.fit import train_bundle
    from survpgc.synth import generate_synthetic_cohort

    t0 = time.perf_counter()
    generate_synthetic_cohort(root / "syn", n_patients=n, seed=0, render_slides=False)
    table = pd.read_csv(root / "syn" / "cohort.csv")
    rng = np.random.default_rng(0)
    (root / "feat").mkdir()
    for sid in table["slide_id"]:
        x = rng.normal(size=(patches, dim)).astype(np.float16)
        write_feature_file(root / "feat" / f"{Path(sid).stem}.h5", x, None, encoder="fake", patch_size=256)
    print(f"cohort + {len(table)} feature files written in {time.perf_counter() - t0:.1f} s")
    cfg = load_config(
        None,
        [f"cohort.source={root / 'syn'}", f"pathology.feature_dir={root / 'feat'}", f"models=[{model}]",
         "train.batch_size=8", "train.device=cpu", "splits.folds=2"],
    )  # fmt: skip
    t0 = time.perf_counter()
    train_bundle(cfg, root / "bundle", epochs=1)
    print(f"bundle trained (1 epoch) in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="patients")
    ap.add_argument(
        "--model", default="abmil", help="model entry (e.g. abmil, '{name: snn, params: {modality: genomic}}')"
    )
    ap.add_argument("--patches", type=int, default=256, help="patches per slide")
    ap.add_argument("--dim", type=int, default=512, help="feature dim")
    ap.add_argument("--repeats", type=int, default=3, help="timed predictions, each in a fresh process")
    ap.add_argument("--data", type=Path, default=None, help="a folder prepared before (--keep): syn/, feat/, bundle/")
    ap.add_argument("--keep", type=Path, default=None, help="prepare into this (new) folder and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or args.keep or Path(tmp)
        if args.data is None:
            prepare(root, args.n, args.model, args.patches, args.dim)
        runs = []
        for k in range(args.repeats):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(root)], check=True, capture_output=True, text=True, env=os.environ
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = runs[-1]
            rate = r["n"] / r["seconds"]
            print(f"run {k + 1}: {r['n']} patients in {r['seconds']:.2f} s ({rate:.0f} patients/s; CPU time "
                  f"{r['cpu_seconds']:.1f} s); peak RSS {r['peak_mb']:.0f} MB ({r['before_mb']:.0f} MB before "
                  "predicting)")  # fmt: skip
        sec = [r["seconds"] for r in runs]
        cpu = [r["cpu_seconds"] for r in runs]
        rate = [r["n"] / s for r, s in zip(runs, sec, strict=True)]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
        print(
            f"survpgc {runs[0]['survpgc']}, torch threads {runs[0]['threads']}, OMP_NUM_THREADS "
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}: "
            f"{statistics.mean(sec):.2f} ± {sd(sec):.2f} s, {statistics.mean(rate):.0f} ± {sd(rate):.0f} patients/s "
            f"(CPU time {statistics.mean(cpu):.1f} ± {sd(cpu):.1f} s) over {len(runs)} runs; peak RSS "
            f"{max(r['peak_mb'] for r in runs):.0f} MB"
        )


if __name__ == "__main__":
    main()
