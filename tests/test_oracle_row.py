"""`survpgc run` on a cohort with planted truth reports the oracle (Harrell's C of the true risk on the same
folds' test cases) beside the models: metrics.csv, summary.csv, the CLI table, notes and report.html. A real
cohort has none."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.report.blocks import mean_sd
from survpgc.survival import event_from_censorship, harrell_cindex
from survpgc.synth import generate_synthetic_cohort
from survpgc.synth.truth import read_truth

runner = CliRunner()
BRCA = Path(__file__).parent / "data" / "tcga_brca_sample"
FAST = ["splits.folds=3", "train.epochs=2", "train.select_from_epoch=1", "train.batch_size=8", "eval.bootstrap=20"]
MODELS = "models=[coxph, {name: snn, params: {modality: genomic}}]"


def _run(out: Path, source: Path | str, *extra: str):
    r = runner.invoke(app, ["run", "--out", str(out), f"cohort.source={source}", *FAST, *extra], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    syn = tmp_path_factory.mktemp("oracle") / "syn"
    generate_synthetic_cohort(syn, n_patients=30, seed=8, slide_size=(512, 512), render_slides=False,
                              censoring=(0.3, 0.5))  # fmt: skip
    return syn


@pytest.fixture(scope="module")
def synthetic_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle_run") / "run"
    r = _run(out, cohort, MODELS)
    return out, r.stdout


def _expected_oracle(syn: Path, run: Path) -> dict[int, float]:
    """Harrell's C of truth.csv's true_risk on each fold's test cases, from the files alone."""
    truth = pd.read_csv(syn / "truth.csv", dtype={"case_id": str}).set_index("case_id")["true_risk"]
    cases = pd.read_csv(syn / "cohort.csv", dtype={"case_id": str}).set_index("case_id")
    out = {}
    for path in sorted((run / "splits").glob("fold_*.csv")):
        split = pd.read_csv(path, dtype={"case_id": str})
        test = split.loc[split["split"] == "test", "case_id"]
        time = cases.loc[test, "survival_months"].to_numpy(float)
        event = event_from_censorship(cases.loc[test, "censorship"]).astype(bool)
        out[int(path.stem.split("_")[1])] = harrell_cindex(time, event, truth.loc[test].to_numpy(float))
    return out


@pytest.mark.slow  # one 3-fold run of two models (about 30 s on a shared CPU)
def test_oracle_in_metrics_and_summary(cohort, synthetic_run):
    out, _ = synthetic_run
    expected = _expected_oracle(cohort, out)
    assert len(expected) == 3
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["model"]) == {"coxph", "snn:genomic"}  # the oracle is no model row
    for _, row in metrics.iterrows():
        assert row["oracle_cindex"] == pytest.approx(expected[int(row["fold"])], abs=1e-12)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["model"].tolist() == ["coxph", "snn:genomic"]
    vals = np.array(list(expected.values()))
    np.testing.assert_allclose(summary["oracle_cindex_mean"], vals.mean(), atol=1e-12)
    np.testing.assert_allclose(summary["oracle_cindex_sd"], vals.std(ddof=1), atol=1e-12)
    assert (summary["oracle_cindex_n"] == 3).all()
    # the comparisons stay model vs model
    comp = pd.read_csv(out / "comparisons.csv")
    assert set(comp["model"]) | set(comp["reference"]) == {"coxph", "snn:genomic"}


@pytest.mark.slow  # one 3-fold run of two models (about 30 s on a shared CPU)
def test_oracle_in_cli_table_notes_and_report(cohort, synthetic_run):
    out, stdout = synthetic_run
    vals = np.array(list(_expected_oracle(cohort, out).values()))
    shown = mean_sd(vals.mean(), vals.std(ddof=1))
    line = next(ln for ln in stdout.splitlines() if "oracle (true risk)" in ln and "│" in ln)
    assert shown in line and "│ 3 " in line and " 30 " in line
    assert "not a trained model" in stdout
    notes = (out / "notes.txt").read_text()
    assert f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f} over 3 fold(s)" in notes and "not a trained model" in notes
    html = (out / "report.html").read_text()
    assert "Oracle C-index (true risk, ceiling)" in html and shown in html
    assert "not a trained model" in html


@pytest.mark.slow  # one 3-fold run of two models (about 30 s on a shared CPU)
def test_rebuilt_report_keeps_the_oracle(synthetic_run, tmp_path):
    from survpgc.report.run import rebuild_report
    from survpgc.rundir import RunContext

    out, _ = synthetic_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    page = rebuild_report(RunContext(copy))
    assert "Oracle C-index (true risk, ceiling)" in Path(page).read_text()


def test_fold_with_a_case_without_truth(cohort, tmp_path):
    syn = tmp_path / "syn"
    shutil.copytree(cohort, syn)
    truth = pd.read_csv(syn / "truth.csv", dtype={"case_id": str})
    dropped = truth["case_id"].iloc[0]
    truth.iloc[1:].to_csv(syn / "truth.csv", index=False)
    out = tmp_path / "run"
    _run(out, syn, "models=[coxph]")
    metrics = pd.read_csv(out / "metrics.csv")
    split = [p for p in (out / "splits").glob("fold_*.csv")
             if dropped in set(pd.read_csv(p).query("split == 'test'")["case_id"])]  # fmt: skip
    k = int(split[0].stem.split("_")[1])
    assert np.isnan(metrics.loc[metrics["fold"] == k, "oracle_cindex"]).all()
    assert metrics.loc[metrics["fold"] != k, "oracle_cindex"].notna().all()
    notes = (out / "notes.txt").read_text()
    assert f"oracle fold {k}: 1 test case(s) have no true risk in truth.csv (e.g. {dropped})" in notes
    assert "over 2 fold(s)" in notes
    assert (pd.read_csv(out / "summary.csv")["oracle_cindex_n"] == 2).all()


def test_real_cohort_has_no_oracle(tmp_path):
    out = tmp_path / "run"
    r = _run(out, BRCA, "models=[coxph]", "splits.folds=2")
    assert "oracle (true risk)" not in r.stdout and "not a trained model" not in r.stdout
    assert "oracle_cindex" not in pd.read_csv(out / "metrics.csv").columns
    assert not any(c.startswith("oracle") for c in pd.read_csv(out / "summary.csv").columns)
    notes = out / "notes.txt"
    assert not notes.exists() or "oracle" not in notes.read_text()
    assert "Oracle C-index" not in (out / "report.html").read_text()


def test_truth_without_true_risk_is_no_truth(cohort, tmp_path):
    syn = tmp_path / "syn"
    shutil.copytree(cohort, syn)
    pd.read_csv(syn / "truth.csv").drop(columns="true_risk").to_csv(syn / "truth.csv", index=False)
    assert read_truth(syn) is None
    out = tmp_path / "run"
    _run(out, syn, "models=[coxph]", "splits.folds=2")
    assert "oracle_cindex" not in pd.read_csv(out / "metrics.csv").columns


def test_read_truth(tmp_path):
    assert read_truth(tmp_path) is None
    pd.DataFrame({"case_id": ["0001", "0002", "0003"], "true_risk": [0.5, np.nan, -1.0]}).to_csv(
        tmp_path / "truth.csv", index=False
    )
    # ids stay text (no "1" for "0001"); a case without a finite true risk is left out
    assert read_truth(tmp_path) == {"0001": 0.5, "0003": -1.0}
