"""End-to-end cross-validation runs on a tiny synthetic cohort: files, resume, determinism, protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from survpgc.config import load_config
from survpgc.data.features import write_feature_file
from survpgc.errors import ConfigError
from survpgc.survival import harrell_cindex
from survpgc.synth import generate_synthetic_cohort
from survpgc.train.cv import run_cv


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    syn = root / "syn"
    generate_synthetic_cohort(syn, n_patients=24, seed=2, render_slides=False)
    truth = pd.read_csv(syn / "truth.csv")
    cohort = pd.read_csv(syn / "cohort.csv")
    cohort["true_risk"] = cohort["case_id"].map(dict(zip(truth["case_id"], truth["true_risk"], strict=True)))
    cohort.to_csv(syn / "cohort.csv", index=False)
    feat = root / "features"
    feat.mkdir()
    rng = np.random.default_rng(0)
    frac = dict(zip(truth["case_id"], truth["texture_fraction"], strict=True))
    for cid, sid in zip(cohort["case_id"], cohort["slide_id"], strict=True):
        n = int(rng.integers(20, 50))
        x = rng.normal(size=(n, 16)).astype(np.float32)
        x[: int(frac[cid] * n), 0] += 3.0  # the risk-driving texture shows in feature 0
        coords = np.stack([np.arange(n) * 256, np.zeros(n, int)], axis=1)
        write_feature_file(feat / f"{Path(sid).stem}.h5", x, coords, patch_size=256, encoder="fake", slide_id=sid)
    return syn, feat


def _cfg(cohort_dir, *extra):
    syn, feat = cohort_dir
    return load_config(
        None,
        [
            f"cohort.source={syn}",
            f"pathology.feature_dir={feat}",
            "splits.folds=2",
            "train.epochs=2",
            "train.select_from_epoch=1",
            "train.batch_size=4",
            "eval.bootstrap=50",
            "eval.reference=survpgc",
            "models=[survpgc, abmil, {name: snn, params: {modality: genomic}}, coxph]",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def run_dir(cohort_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    res = run_cv(_cfg(cohort_dir), out)
    return out, res


def test_run_directory_contents(run_dir):
    out, res = run_dir
    for name in ("config.yaml", "predictions.csv", "metrics.csv", "summary.csv", "comparisons.csv", "run.log"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "splits").iterdir()) == ["fold_0.csv", "fold_1.csv", "splits.json"]
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 2 * 3  # neural models only
    assert res.n_done == res.n_total == 8
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["model"]) == {"survpgc", "abmil", "snn:genomic", "coxph"}
    assert metrics["cindex"].between(0, 1).all()
    preds = pd.read_csv(out / "predictions.csv")
    assert set(preds["split"]) == {"train", "val", "test"}
    assert {"surv_0", "surv_3"} <= set(preds.columns)
    test = preds[preds["split"] == "test"]
    assert test.groupby("model")["case_id"].nunique().eq(24).all()  # every case tested once per model
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["protocol"] == "nested").all()
    comp = pd.read_csv(out / "comparisons.csv")
    assert set(comp["model"]) == {"abmil", "snn:genomic", "coxph"} and (comp["reference"] == "survpgc").all()
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2


def test_resume_does_no_work(run_dir, cohort_dir):
    out, _ = run_dir
    before = (out / "metrics.csv").read_text()
    again = run_cv(_cfg(cohort_dir), out)
    assert again.trained == []
    assert (out / "metrics.csv").read_text() == before


def test_same_seed_same_metrics(run_dir, cohort_dir, tmp_path):
    out, _ = run_dir
    other = run_cv(_cfg(cohort_dir, "models=[survpgc, coxph]"), tmp_path / "again")
    a = pd.read_csv(out / "metrics.csv").set_index(["model", "fold"]).drop(columns="seconds")
    b = other.metrics.set_index(["model", "fold"]).drop(columns="seconds")
    pd.testing.assert_frame_equal(a.loc[b.index], b, check_dtype=False)


def test_changed_config_is_refused(run_dir, cohort_dir):
    out, _ = run_dir
    with pytest.raises(ConfigError, match=r"different configuration.*train"):
        run_cv(_cfg(cohort_dir, "train.epochs=3"), out)


def test_paper_protocol_is_labelled(cohort_dir, tmp_path):
    res = run_cv(_cfg(cohort_dir, "splits.protocol=paper", "models=[coxph]"), tmp_path / "paper")
    assert (res.summary["protocol"] == "paper").all()
    preds = pd.read_csv(tmp_path / "paper" / "predictions.csv")
    assert "val" not in set(preds["split"])  # selection set is the test fold itself
    if res.report is not None:
        assert "OPTIMISTIC" in res.report.read_text()


def test_true_risk_alone_reaches_the_oracle(cohort_dir, tmp_path):
    syn, _ = cohort_dir
    cfg = _cfg(cohort_dir, "models=[{name: coxph, params: {columns: [true_risk], penalizer: 0.01}}]")
    res = run_cv(cfg, tmp_path / "oracle")
    preds = pd.read_csv(tmp_path / "oracle" / "predictions.csv", dtype={"case_id": str})
    truth = pd.read_csv(syn / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    for k, g in preds[preds["split"] == "test"].groupby("fold"):
        oracle = harrell_cindex(g["time"], g["event"], truth.loc[g["case_id"], "true_risk"])
        got = res.metrics.set_index("fold").loc[k, "cindex"]
        assert got == pytest.approx(oracle, abs=1e-12)


def test_only_some_pairs_then_aggregate(cohort_dir, tmp_path):
    out = tmp_path / "sched"
    cfg = _cfg(cohort_dir, "models=[coxph, abmil]")
    part = run_cv(cfg, out, only_folds=[0], only_models=["coxph"])
    assert part.n_done == 1 and part.n_total == 4
    rest = run_cv(cfg, out)
    assert rest.n_done == 4 and len(rest.trained) == 3
    with pytest.raises(ConfigError, match="--fold"):
        run_cv(cfg, out, only_folds=[7])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.epochs=0", "train.epochs"),
        ("splits.protocol=cheat", "splits.protocol"),
        ("splits.folds=1", "splits.folds"),
        ("data.n_patches=-3", "data.n_patches"),
        ("eval.times=[0, 12]", "eval.times"),
        ("models=[nope]", r"models\[0\].name"),
        ("train.lr=fast", "train.lr"),
        ("trian.epochs=2", "unknown key"),
        ("train.epoch=2", "train.epoch"),
        ("genomic.kind=rna", "genomic.kind"),
        ("models=[abmil, abmil]", "duplicate model ids"),
    ],
)
def test_bad_config_values_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_missing_modality_is_refused_before_training(tmp_path):
    cfg = load_config(None, ["cohort.source=tcga-lihc", "models=[survpgc]", "splits.folds=2"])
    with pytest.raises(ConfigError, match=r"needs pathology features.*pathology.feature_dir"):
        run_cv(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "folds").exists()


def test_progress_bar_path(cohort_dir, tmp_path):
    res = run_cv(_cfg(cohort_dir, "models=[abmil]", "train.epochs=1"), tmp_path / "p", progress=True)
    assert res.n_done == 2
