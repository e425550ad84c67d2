"""Fault injection: `survpgc extract` and `survpgc run` killed with SIGKILL at their most dangerous points.

Each command runs in a subprocess with ``SURVPGC_FAULT=<point>[@k]`` (survpgc.faults), which SIGKILLs it there:
inside the encoder, during an HDF5 write, while the manifest is written; while a checkpoint is written, just
before a fold record, while the report is built. The same command is then rerun without the fault. Its outputs
must equal those of an uninterrupted run -- bit for bit for the deterministic data (features, coordinates,
predictions, metrics, checkpoints) -- and no temporary file may be left anywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from survpgc.data.features import write_feature_file
from survpgc.synth import generate_synthetic_cohort

pytestmark = pytest.mark.slow


def _survpgc(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SURVPGC_FAULT"}
    env["OMP_NUM_THREADS"] = "1"
    if fault:
        env["SURVPGC_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "survpgc.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


def _kill_chain_beside_reference(args_for, points: list[str]) -> tuple[Path, Path]:
    """Run the command uninterrupted into one folder while, beside it, the same command into another folder is
    killed at each point in turn (each rerun resumes the previous one's leftovers and is killed at the next
    point), then rerun to the end. Returns (reference folder, resumed folder)."""

    def reference() -> Path:
        args, out = args_for("reference")
        r = _survpgc(args)
        assert r.returncode == 0, r.stderr[-2000:]
        return out

    def chain() -> Path:
        args, out = args_for("killed")
        for point in points:
            killed = _survpgc(args, fault=point)
            assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr[-2000:])
        resumed = _survpgc(args)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert _temporaries(out) == []
        return out

    with ThreadPoolExecutor(2) as pool:
        ref, out = pool.submit(reference), pool.submit(chain)
        return ref.result(), out.result()


# ---------------------------------------------------------------- extract


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    syn = tmp_path_factory.mktemp("fault-synth") / "syn"
    generate_synthetic_cohort(syn, n_patients=4, seed=11, slide_size=(1536, 1024))
    return syn / "slides"


def _h5(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        return f["features"][:], f["coords"][:], {k: f.attrs[k] for k in f.attrs}


def _manifest(out: Path) -> pd.DataFrame:
    m = pd.read_csv(out / "manifest.csv").sort_values("slide_id").reset_index(drop=True)
    volatile = [c for c in m.columns if c in ("seconds", "time", "started", "finished") or "second" in c]
    return m.drop(columns=volatile)


def test_extract_killed_anywhere_resumes_to_identical_outputs(slides, tmp_path):
    def args_for(name: str) -> tuple[list[str], Path]:
        out = tmp_path / name
        return ["extract", "--slides", str(slides), "--out", str(out), "--batch-size", "16"], out

    ref, out = _kill_chain_beside_reference(args_for, ["encoder@2", "h5-write@2", "manifest"])
    ref_files = sorted(p.name for p in ref.glob("*.h5"))
    assert len(ref_files) == 4
    assert sorted(p.name for p in out.glob("*.h5")) == ref_files
    for name in ref_files:
        fa, ca, aa = _h5(ref / name)
        fb, cb, ab = _h5(out / name)
        np.testing.assert_array_equal(fa, fb, err_msg=f"{name} features")
        np.testing.assert_array_equal(ca, cb, err_msg=f"{name} coords")
        assert aa.keys() == ab.keys(), name
    pd.testing.assert_frame_equal(_manifest(ref), _manifest(out), obj="manifest")
    assert sorted(p.name for p in (out / "qc").iterdir()) == sorted(p.name for p in (ref / "qc").iterdir())


# ---------------------------------------------------------------- run


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-run")
    syn = root / "syn"
    generate_synthetic_cohort(syn, n_patients=16, seed=12, render_slides=False)
    feat = root / "features"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for sid in pd.read_csv(syn / "cohort.csv")["slide_id"]:
        n = int(rng.integers(10, 30))
        x = rng.normal(size=(n, 8)).astype(np.float32)
        coords = np.stack([np.arange(n) * 256, np.zeros(n, int)], axis=1)
        write_feature_file(feat / f"{Path(sid).stem}.h5", x, coords, patch_size=256, encoder="fake", slide_id=sid)
    return syn, feat


def test_run_killed_anywhere_resumes_to_identical_outputs(cohort, tmp_path):
    syn, feat = cohort

    def args_for(name: str) -> tuple[list[str], Path]:
        out = tmp_path / name
        return [
            "run",
            f"cohort.source={syn}",
            f"pathology.feature_dir={feat}",
            "splits.folds=2",
            "train.epochs=2",
            "train.select_from_epoch=1",
            "train.batch_size=4",
            "eval.bootstrap=20",
            "models=[abmil, {name: snn, params: {modality: genomic}}]",
            "eval.reference=abmil",
            "--out",
            str(out),
        ], out

    ref, out = _kill_chain_beside_reference(args_for, ["checkpoint@2", "fold-record@2", "report"])
    ckpts = sorted(p.name for p in (ref / "checkpoints").glob("*.safetensors"))
    assert len(ckpts) == 4
    for table in ("predictions", "metrics", "summary"):
        a = pd.read_csv(ref / f"{table}.csv")
        b = pd.read_csv(out / f"{table}.csv")
        drop = [c for c in a.columns if "second" in c]
        pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop), obj=table)
    assert sorted(p.name for p in (out / "checkpoints").glob("*.safetensors")) == ckpts
    for name in ckpts:
        assert (ref / "checkpoints" / name).read_bytes() == (out / "checkpoints" / name).read_bytes(), name
    assert (out / "report.html").is_file()
