"""Cox model bundles (survpgc train / predict / validate with coxph): no pickle, the same predictions as the fitted
model, and refusals of cohorts that lack the clinical columns of the design."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survpgc.config import load_config
from survpgc.data.cohort import open_cohort
from survpgc.deploy.bundle import InputMismatchError, load_bundle
from survpgc.deploy.fit import train_bundle
from survpgc.deploy.predict import predict_cohort
from survpgc.errors import ConfigError
from survpgc.synth import generate_synthetic_cohort

BRCA = Path(__file__).parent / "data" / "tcga_brca_sample"


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("coxph")
    generate_synthetic_cohort(root / "train", n_patients=60, seed=2, render_slides=False)
    generate_synthetic_cohort(root / "ext", n_patients=60, seed=3, render_slides=False)
    return root


@pytest.fixture(scope="module")
def cox(syn):
    cfg = load_config(None, [f"cohort.source={syn / 'train'}", "models=[{name: coxph, params: {penalizer: 0.05}}]"])
    res = train_bundle(cfg, syn / "bundle")  # no --epochs: closed form
    return syn / "bundle", res


def test_coxph_bundle_has_no_pickle_and_records_its_design(cox):
    from safetensors.numpy import load_file

    out, _ = cox
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.safetensors", "model_card.md"]
    b = load_bundle(out)
    m = b.manifest
    assert b.family == "coxph" and m["format_version"] == 2 and m["model"]["params"] == {"penalizer": 0.05}
    assert m["training"]["epochs"] is None and "closed form" in m["training"]["epochs_source"]
    design = m["members"][0]["coxph_design"]
    assert m["inputs"]["clinical_table"]["columns"] == [*design["numeric"], *design["categorical"]]
    assert list(m["inputs"]) == ["clinical_table"]
    assert "age" in design["numeric"] and set(design["numeric"]["age"]) == {"mean", "sd", "median"}
    assert "stage" in design["categorical"] and design["categorical"]["stage"]["reference"]
    arrays = load_file(str(out / "model.safetensors"))
    assert sorted(arrays) == ["m0.baseline_cumhaz", "m0.coefficients", "m0.norm_mean", "m0.times"]
    assert all(a.dtype == np.float64 for a in arrays.values())
    assert len(arrays["m0.coefficients"]) == len(design["design_columns"]) == len(m["training"]["coefficients"])
    assert list(arrays["m0.times"]) == m["members"][0]["survival_times"] and len(arrays["m0.times"]) == 4
    assert b"pickle" not in (out / "model.safetensors").read_bytes()[:300]
    assert "Cox proportional-hazards" in b.card and "coefficients (log hazard ratio" in b.card
    json.loads((out / "bundle.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


def test_coxph_round_trip_equals_the_fitted_model(cox, syn):
    from survpgc.models.coxph import CoxPHBaseline

    out, res = cox
    cohort = open_cohort(syn / "train")
    df = predict_cohort(load_bundle(out), cohort)
    assert df["case_id"].tolist() == res.train_predictions["case_id"].tolist()
    np.testing.assert_array_equal(df["risk"].to_numpy(), res.train_predictions["risk"].to_numpy())
    cols = [f"surv_{k}" for k in range(4)]
    np.testing.assert_array_equal(df[cols].to_numpy(), res.train_predictions[cols].to_numpy())
    # and the same as a Cox model fitted the way cross-validation fits it, at the bundle's bin ends
    cases = cohort.cases.loc[cohort.case_ids]
    model = CoxPHBaseline(penalizer=0.05).fit(cases)
    ends = load_bundle(out).manifest["members"][0]["survival_times"]
    np.testing.assert_allclose(df["risk"].to_numpy(), model.predict_risk(cases), rtol=0, atol=1e-12)
    np.testing.assert_allclose(df[cols].to_numpy(), model.predict_survival(cases, ends), rtol=0, atol=1e-12)
    assert (np.diff(df[cols].to_numpy(), axis=1) <= 0).all()
    assert load_bundle(out).risk_cutoff == float(np.median(df["risk"]))
    assert (df["modalities"] == "clinical").all()


def test_coxph_bundle_refuses_a_cohort_without_a_design_column(cox, syn, tmp_path, caplog):
    out, _ = cox
    table = pd.read_csv(syn / "ext" / "cohort.csv")
    (tmp_path / "nostage").mkdir()
    table.drop(columns=["stage"]).to_csv(tmp_path / "nostage" / "cohort.csv", index=False)
    with pytest.raises(InputMismatchError) as exc:
        predict_cohort(load_bundle(out), open_cohort(tmp_path / "nostage"))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"clinical columns mismatch: bundle {out} needs the clinical column(s) [")
    assert "(its Cox design), the table of cohort 'nostage' lacks ['stage'] (it has [" in msg
    (tmp_path / "empty").mkdir()
    table.assign(stage=np.nan).to_csv(tmp_path / "empty" / "cohort.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="survpgc"):
        df = predict_cohort(load_bundle(out), open_cohort(tmp_path / "empty"))
    assert "has no value in clinical column(s) ['stage'] of the bundle's Cox design" in caplog.text
    assert df["risk"].notna().all()


def test_coxph_ensemble_and_epochs_are_refused(syn, tmp_path):
    cfg = load_config(None, [f"cohort.source={syn / 'train'}", "models=[coxph]"])
    with pytest.raises(ConfigError, match=r"^--epochs does not apply to 'coxph': a Cox model is fitted in closed"):
        train_bundle(cfg, tmp_path / "a", epochs=3)
    with pytest.raises(ConfigError, match=r"^--ensemble: a run keeps no fitted 'coxph' fold models"):
        train_bundle(cfg, tmp_path / "b", ensemble=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_train_predict_validate_a_coxph_bundle(syn, tmp_path):
    from typer.testing import CliRunner

    from survpgc.cli import app

    run = CliRunner()
    r = run.invoke(app, ["train", f"cohort.source={syn / 'train'}", "models=[coxph]", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "bundle:" in r.output and "model coxph" in r.output
    r = run.invoke(app, ["predict", "--model", str(tmp_path / "m"), "--cohort", str(syn / "ext"), "--out",
                         str(tmp_path / "p")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "p" / "predictions.csv")) == 60
    r = run.invoke(app, ["validate", "--model", str(tmp_path / "m"), "--cohort", str(syn / "ext"), "--out",
                         str(tmp_path / "v"), "--n-bootstrap", "20", "--times", "12,36"])  # fmt: skip
    assert r.exit_code == 0, r.output
    m = pd.read_csv(tmp_path / "v" / "metrics.csv").iloc[0]
    assert m["model_id"] == "coxph" and 0 <= m["cindex"] <= 1 and not m["apparent"]
    assert np.isfinite(m["dcal_p"]) and np.isfinite(m["oracle_cindex"])
    r = run.invoke(app, ["validate", "--model", str(tmp_path / "m"), "--cohort", str(syn / "train"), "--out",
                         str(tmp_path / "self"), "--n-bootstrap", "0", "--times", "12"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "coxph: apparent (training cohort)" in " ".join(r.output.split())


# ------------------------------------------------------------------------------------------ real tables
@pytest.fixture(scope="module")
def lihc_cox(tmp_path_factory):
    out = tmp_path_factory.mktemp("lihc") / "cox"
    train_bundle(load_config(None, ["cohort.source=tcga-lihc", "models=[coxph]"]), out)
    return load_bundle(out)


def test_lihc_coxph_bundle_refuses_brca_tumours_and_brca_without_its_columns(lihc_cox, tmp_path):
    brca = open_cohort(BRCA, survival="optional")
    with pytest.raises(InputMismatchError, match=r"^population mismatch: bundle .* 40 of 40 cases of other subtypes"):
        predict_cohort(lihc_cox, brca)
    df = predict_cohort(lihc_cox, brca, allow_other_population=True)  # the design's columns are all there
    assert len(df) == 40 and df["risk"].notna().all()
    need = lihc_cox.inputs["clinical_table"]["columns"]
    assert {"age", "stage"} <= set(need)
    (tmp_path / "brca").mkdir()
    pd.read_csv(BRCA / "cohort.csv").drop(columns=["race"]).to_csv(tmp_path / "brca" / "cohort.csv", index=False)
    short = open_cohort(tmp_path / "brca", survival="optional")
    with pytest.raises(InputMismatchError, match=r"the table of cohort 'brca' lacks \['race'\]"):
        predict_cohort(lihc_cox, short, allow_other_population=True)


def test_coxph_predict_says_it_uses_no_clinical_tokens_and_draws_no_heatmaps(cox, syn, tmp_path, caplog):
    from survpgc.deploy.predict import predict_to_dir

    with caplog.at_level(logging.WARNING, logger="survpgc"):
        res = predict_to_dir(cox[0], syn / "ext", tmp_path / "p", clinical_tokens=tmp_path / "tok", heatmaps=True)
    assert len(res.predictions) == 60 and not (tmp_path / "p" / "heatmaps").exists()
    assert "is a Cox model on the clinical columns of the cohort table: the clinical tokens" in caplog.text
    assert "is a Cox model, which reads no pathology: no heatmaps to draw" in caplog.text


def test_cox_state_export_checks_its_inputs():
    from survpgc.errors import InputError
    from survpgc.models.coxph import ClinicalDesign, CoxPHBaseline, CoxPHState

    cases = open_cohort("tcga-lihc").cases
    model = CoxPHBaseline().fit(cases)
    state = model.export_state([6.0, 24.0])
    again = ClinicalDesign.from_dict(json.loads(json.dumps(state.design.to_dict())))
    assert again.columns_ == model.design_.columns_ and again.numeric_ == model.design_.numeric_
    np.testing.assert_array_equal(again.transform(cases), model.design_matrix(cases))
    with pytest.raises(InputError, match="increasing finite times"):
        model.export_state([24.0, 6.0])
    with pytest.raises(InputError, match="not a ClinicalDesign state"):
        ClinicalDesign.from_dict({"columns": ["age"]})
    with pytest.raises(InputError, match=r"design columns but coefficients \(2,\)"):
        CoxPHState(state.design, [0.1, 0.2], state.norm_mean, state.times, state.baseline_cumhaz)


@pytest.mark.slow  # a whole CV run with its report
def test_coxph_bundle_from_a_cv_run_records_its_metrics(syn, tmp_path):
    from survpgc.train.cv import run_cv

    cfg = load_config(None, [f"cohort.source={syn / 'train'}", "models=[coxph]", "splits.folds=2", "eval.bootstrap=5"])
    run_cv(cfg, tmp_path / "run")
    res = train_bundle(None, tmp_path / "b", from_run=tmp_path / "run")
    m = load_bundle(tmp_path / "b").manifest
    assert m["training"]["from_run"] == str(tmp_path / "run") and m["training"]["epochs"] is None
    assert m["cv_metrics"]["cindex_mean"] is not None
    assert "cross-validation" in load_bundle(tmp_path / "b").card
    assert len(res.train_predictions) == 60
