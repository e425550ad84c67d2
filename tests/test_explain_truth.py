"""Interpretation against ground truth on the synthetic cohort (see survpgc.synth).

* IG shares follow the signal: with the clinical information removed from the cohort (every patient gets
  the same clinical record) SurvPGC's attribution moves toward the genomic-pathology path, and with the
  genomic information removed (every patient gets the same omics row) toward the clinic-pathology path,
  each compared with the intact cohort.

Localisation against the planted texture is checked end to end by the reduced truth study
(``tests/test_truth_study.py::test_reduced_study_meets_the_documented_floor``); patch scores one by one in
``tests/test_patch_scores.py``. This test trains real models (about a minute on 2 cores).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survpgc.config import load_config
from survpgc.data.features import write_feature_file
from survpgc.explain.attribution import explain_attribution
from survpgc.synth import generate_synthetic_cohort
from survpgc.train.cv import run_cv

log = logging.getLogger(__name__)

pytestmark = pytest.mark.slow  # trains real models end to end; `make test-fast` skips it

CLINICAL_COLUMNS = ("age", "sex", "race", "stage", "stage_edition", "subtype")


def _ig_run(root: Path, base: Path, remove: str) -> pd.DataFrame:
    """Copy of the cohort with one modality's information removed (``none``: intact), SurvPGC CV, IG."""
    import shutil

    syn = root / f"no_{remove}"
    shutil.copytree(base, syn)
    if remove == "clinical":  # every patient gets the first patient's clinical record
        cohort = pd.read_csv(syn / "cohort.csv")
        for c in CLINICAL_COLUMNS:
            cohort[c] = cohort[c].iloc[0]
        cohort.to_csv(syn / "cohort.csv", index=False)
    elif remove == "genomic":  # every patient gets the first omics row
        omics = pd.read_csv(syn / "omics.csv.gz")
        cols = [c for c in omics.columns if c != "case_id"]
        omics[cols] = np.tile(omics[cols].iloc[[0]].to_numpy(), (len(omics), 1))
        omics.to_csv(syn / "omics.csv.gz", index=False)
    cfg = load_config(
        None,
        [
            f"cohort.source={syn}",
            f"pathology.feature_dir={base.parent / 'features'}",
            "genomic.kind=pathways",
            "genomic.signatures=hallmarks",
            "splits.folds=2",
            "train.epochs=20",
            "train.select_from_epoch=10",
            "train.batch_size=4",
            "eval.bootstrap=20",
            "models=[survpgc]",
        ],
    )
    out = root / f"run_no_{remove}"
    res = run_cv(cfg, out)
    ig = explain_attribution(out, n_steps=32, baseline="train-mean", refresh_report=False)
    log.info("no %s: C-index %.3f", remove, res.summary["cindex_mean"].iloc[0])
    return ig["patients"]


@pytest.fixture(scope="module")
def ig_shares(tmp_path_factory):
    root = tmp_path_factory.mktemp("ig")
    base = root / "base"
    generate_synthetic_cohort(base, n_patients=120, seed=3, render_slides=False, censoring=(0.3, 0.5))
    cohort = pd.read_csv(base / "cohort.csv")
    feat = root / "features"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for sid in cohort["slide_id"]:  # uninformative pathology: both paths read the same noise
        x = rng.normal(size=(8, 8)).astype(np.float32)
        write_feature_file(feat / f"{Path(sid).stem}.h5", x, np.zeros((8, 2), int), patch_size=256, slide_id=sid)
    return {r: _ig_run(root, base, r) for r in ("clinical", "none", "genomic")}


def test_ig_shares_follow_the_signal(ig_shares):
    share = {r: p["path:genomic-patch"] for r, p in ig_shares.items()}
    print("genomic-patch IG share (train-mean baseline): " + ", ".join(
        f"{r} removed {s.mean():.3f} ± {s.std():.3f}" for r, s in share.items()))  # fmt: skip
    assert share["clinical"].mean() > share["none"].mean() > share["genomic"].mean()
    assert share["clinical"].mean() - share["genomic"].mean() > 0.1
