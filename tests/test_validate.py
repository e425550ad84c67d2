"""External validation of bundles (survpgc.deploy.validate, survpgc.report.validate).

Most tests use a tiny fake bundle (any object with ``path, manifest, model_id, time_edges, risk_cutoff, card``)
and a fake predict function from a known exponential model, so the statistics can be checked against the truth
in seconds.
"""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from survpgc.deploy.validate import apparent_check, step_survival, validate_bundles
from survpgc.errors import InputError, SurvpgcError
from survpgc.survival.metrics import uno_cindex
from survpgc.survival.stats import bootstrap_indices, uno_on_resamples

EDGES = np.array([0.0, 12.0, 36.0, 60.0, np.inf])


class FakeCohort:
    def __init__(self, seed: int = 0, n: int = 300, name: str = "external"):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=n)
        self.rate = 0.015 * np.exp(0.9 * self.x)
        death = rng.exponential(1.0 / self.rate)
        censor = rng.uniform(6.0, 90.0, size=n)
        self.time = np.minimum(death, censor)
        self.event = death <= censor
        self.case_ids = [f"case-{i:03d}" for i in range(n)]
        self.name = name
        self.has_survival = True

    def summary(self):
        return {
            "name": self.name,
            "n_cases": len(self.case_ids),
            "n_events": int(self.event.sum()),
            "censoring_rate": float(1 - self.event.mean()),
            "time_median_months": float(np.median(self.time)),
            "time_range_months": [float(self.time.min()), float(self.time.max())],
        }


def fake_bundle(tmp_path: Path, model_id: str = "snn:genomic", *, scale: float = 1.0, training=None, card="# Card"):
    return SimpleNamespace(
        path=tmp_path / f"bundle-{abs(hash((model_id, scale))) % 1000}",
        manifest={"training_cohort": training or {"name": "train", "n_cases": 10}},
        model_id=model_id,
        time_edges=EDGES,
        risk_cutoff=-2.6,
        card=card,
        scale=scale,
    )


def fake_predict(bundle, cohort, *, device="cpu"):
    """The true exponential model (times ``bundle.scale`` for a miscalibrated one), at the bundle's edges."""
    rate = cohort.rate * bundle.scale
    ends = np.array([12.0, 36.0, 60.0, 120.0])
    surv = np.exp(-rate[:, None] * ends[None, :])
    risk = -surv.sum(axis=1)
    df = pd.DataFrame({"case_id": cohort.case_ids, "risk": risk})
    df["risk_group"] = np.where(risk > bundle.risk_cutoff, "high", "low")
    for k in range(4):
        df[f"surv_{k}"] = surv[:, k]
    for t in (12, 36, 60):
        df[f"S_{t}"] = np.exp(-rate * t)
    df["modalities"] = "genomic"
    return df


def test_step_survival_is_the_cv_convention():
    surv = np.array([[0.9, 0.7, 0.5, 0.3]])
    got = step_survival(EDGES, surv, [5.0, 12.0, 20.0, 36.0, 70.0])[0]
    np.testing.assert_array_equal(got, [1.0, 0.9, 0.9, 0.7, 0.5])


def test_uno_on_resamples_equals_uno_cindex_on_each_resample_with_ties():
    rng = np.random.default_rng(0)
    t = np.round(rng.uniform(1, 20, 60))  # tied times
    e = rng.uniform(size=60) < 0.5
    r = np.round(rng.normal(size=60), 1)  # tied risks
    idx = bootstrap_indices(60, 100, 3)
    got = uno_on_resamples(t, e, r, idx)
    for k, i in enumerate(idx):
        try:
            want = uno_cindex(t[i], e[i], t[i], e[i], r[i])
        except SurvpgcError:
            assert np.isnan(got[k])
            continue
        assert got[k] == pytest.approx(want, abs=1e-12)


def test_validate_one_calibrated_bundle_end_to_end(tmp_path):
    cohort = FakeCohort(0)
    out = tmp_path / "val"
    res = validate_bundles([fake_bundle(tmp_path)], cohort, out, n_bootstrap=50, predict=fake_predict,
                           created="2024-01-01")  # fmt: skip
    for name in ("metrics.csv", "calibration.csv", "comparisons.csv", "predictions.csv", "report.html"):
        assert (out / name).is_file(), name
    assert (out / "plots" / "km_snn_genomic.png").is_file()
    assert (out / "plots" / "calibration_snn_genomic.png").is_file()
    m = pd.read_csv(out / "metrics.csv").iloc[0]
    assert 0.0 <= m["cindex"] <= 1.0 and m["cindex_low"] <= m["cindex"] <= m["cindex_high"]
    assert m["cindex_uno_low"] <= m["cindex_uno"] <= m["cindex_uno_high"]
    assert m["cindex"] > 0.65  # the true model ranks well
    for t in (12, 36, 60):
        assert 0.5 < m[f"auc_{t}"] <= 1.0
        assert m[f"cal_p_{t}"] > 0.05  # the true S(t) is calibrated
        assert 0.75 < m[f"oe_{t}"] < 1.33
    assert m["dcal_p"] > 0.05
    assert 0 < m["ibs"] < 0.25
    assert m["n_high"] + m["n_low"] == 300 and m["logrank_p"] < 0.05
    assert not m["apparent"]
    cal = pd.read_csv(out / "calibration.csv")
    assert set(cal["time"]) == {12, 36, 60}
    assert cal.groupby("time")["n"].sum().eq(300).all()
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 300 and {"model", "case_id", "time", "event", "risk", "S_12"} <= set(preds.columns)
    assert pd.read_csv(out / "comparisons.csv").empty
    page = (out / "report.html").read_text()
    for section in ('id="metrics"', 'id="calibration"', 'id="km"', 'id="cards"', "data:image/png;base64"):
        assert section in page
    assert res.report == out / "report.html"


def test_a_miscalibrated_bundle_fails_calibration_and_is_compared_with_the_first(tmp_path):
    cohort = FakeCohort(1)
    good, bad = fake_bundle(tmp_path, "good"), fake_bundle(tmp_path, "bad", scale=3.0)
    res = validate_bundles([good, bad], cohort, tmp_path / "v", n_bootstrap=100, predict=fake_predict)
    m = res.metrics.set_index("model")
    assert m.loc["bad", "dcal_p"] < 0.001 and m.loc["good", "dcal_p"] > 0.05
    assert m.loc["bad", "cal_p_36"] < 0.001
    assert m.loc["bad", "oe_36"] < 0.75
    # a rate scaled by a constant keeps the ranking: the same C-index, a paired difference of 0
    assert m.loc["bad", "cindex"] == pytest.approx(m.loc["good", "cindex"])
    cmp = pd.read_csv(tmp_path / "v" / "comparisons.csv")
    assert cmp[["model", "reference"]].values.tolist() == [["bad", "good"]]
    assert cmp["delta_cindex"].iloc[0] == pytest.approx(0.0) and cmp["p_value"].iloc[0] == 1.0


def test_paired_comparison_of_a_worse_model(tmp_path):
    cohort = FakeCohort(2)

    def noisy(bundle, c, *, device="cpu"):
        df = fake_predict(bundle, c)
        if bundle.model_id == "noisy":
            df["risk"] = np.random.default_rng(0).normal(size=len(df))
        return df

    res = validate_bundles([fake_bundle(tmp_path, "true"), fake_bundle(tmp_path, "noisy")], cohort, tmp_path / "v",
                           n_bootstrap=200, predict=noisy)  # fmt: skip
    row = res.comparisons.iloc[0]
    assert row["delta_cindex"] < -0.1 and row["ci_high"] < 0 and row["p_value"] < 0.05


def test_report_escapes_model_ids_cards_and_cohort_names(tmp_path):
    cohort = FakeCohort(3, name="<img src=x onerror=alert(1)>")
    bundle = fake_bundle(tmp_path, "<script>alert(1)</script>", card="# Card\n<b>bold</b> & <script>x</script>")
    validate_bundles([bundle], cohort, tmp_path / "v", n_bootstrap=0, predict=fake_predict)
    page = (tmp_path / "v" / "report.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page and "<b>bold</b>" not in page
    assert html.escape("<script>alert(1)</script>", quote=False) in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in page


def test_apparent_performance_is_labelled(tmp_path):
    cohort = FakeCohort(4, name="tcga-x")
    bundle = fake_bundle(tmp_path, "m", training=cohort.summary())
    res = validate_bundles([bundle], cohort, tmp_path / "v", n_bootstrap=0, predict=fake_predict)
    assert bool(res.metrics["apparent"].iloc[0])
    page = (tmp_path / "v" / "report.html").read_text()
    assert "Apparent performance: m." in page and "apparent" in page
    assert any("apparent performance on the training cases" in n for n in res.notes)


def test_apparent_performance_by_hashed_training_case_ids(tmp_path):
    from survpgc.deploy.bundle import training_cases_record

    cohort = FakeCohort(4, name="tcga-x")
    ids, t, e = cohort.case_ids, cohort.time, cohort.event

    def bundle(name, *record, training=None):
        b = fake_bundle(tmp_path, name)
        b.manifest = {"format_version": 2, "training_cohort": training or {"name": "train"},
                      "training_cases": training_cases_record(*record)}  # fmt: skip
        return b

    same = bundle("same", ids, t, e)
    part = bundle("part", [*ids[:40], "x-1", "x-2"], [*t[:40], 5.0, 6.0], [*e[:40], True, False])
    # the old summary rule would call this one apparent: same name and summary, but other cases
    other = bundle("other", [f"y-{i}" for i in range(300)], t, e, training=cohort.summary())
    # the same ids, but other patients (another sample numbered alike): noted, not labelled
    alike = bundle("alike", ids, t + 1.0, e)
    res = validate_bundles([same, part, other, alike], cohort, tmp_path / "v", n_bootstrap=0, predict=fake_predict)
    m = res.metrics.set_index("model")
    assert m.loc["same", "apparent"] and m.loc["same", "apparent_label"] == "apparent (training cohort)"
    assert m.loc["same", "n_training_cases"] == 300
    assert m.loc["same", "apparent_rule"] == "case-id and survival hashes"
    assert m.loc["part", "apparent"] and m.loc["part", "n_training_cases"] == 40
    assert m.loc["part", "apparent_label"] == "apparent: 40 of 300 cases were in the training cohort"
    assert not m.loc["other", "apparent"] and m.loc["other", "n_training_cases"] == 0
    assert not m.loc["alike", "apparent"] and m.loc["alike", "n_training_cases"] == 0
    assert any(n.startswith("alike: 300 of 300 case ids are training case ids but with other survival data")
               for n in res.notes)  # fmt: skip
    page = (tmp_path / "v" / "report.html").read_text()
    assert "Apparent performance: part." in page and "40 of 300 cases were in the training cohort" in page
    assert "part · apparent (40 of 300 cases)" in page and "same · apparent<" in page
    assert "Apparent performance: other." not in page and "Apparent performance: alike." not in page
    assert not any("cohort summary" in n for n in res.notes)


def test_a_bundle_without_case_hashes_falls_back_to_the_summary_and_says_so(tmp_path):
    cohort = FakeCohort(4, name="tcga-x")
    old = fake_bundle(tmp_path, "old")
    old.manifest = {"format_version": 1, "training_cohort": cohort.summary()}
    res = validate_bundles([old], cohort, tmp_path / "v", n_bootstrap=0, predict=fake_predict)
    row = res.metrics.iloc[0]
    assert row["apparent"] and row["apparent_rule"] == "cohort summary" and pd.isna(row["n_training_cases"])
    assert any("(format version 1) records no hashed training case ids: apparent performance was judged by the "
               "cohort summary" in n for n in res.notes)  # fmt: skip


def test_apparent_check_rule():
    s = FakeCohort(5, name="tcga-x").summary()
    assert apparent_check(s, dict(s))[0]
    assert apparent_check(None, s) == (False, "")
    other = dict(s, n_cases=s["n_cases"] - 1)
    apparent, reason = apparent_check(other, s)
    assert not apparent and "cases may overlap" in reason
    assert apparent_check(dict(other, name="another"), s) == (False, "")
    shifted = dict(s, time_range_months=[s["time_range_months"][0], s["time_range_months"][1] + 1])
    assert not apparent_check(shifted, s)[0]


def test_all_cases_above_the_training_cutoff_is_noted_not_an_error(tmp_path):
    cohort = FakeCohort(6)
    bundle = fake_bundle(tmp_path)
    bundle.risk_cutoff = -100.0
    res = validate_bundles([bundle], cohort, tmp_path / "v", n_bootstrap=0, predict=fake_predict)
    assert np.isnan(res.metrics["logrank_p"].iloc[0]) and res.metrics["n_low"].iloc[0] == 0
    assert any("every case falls in the high-risk group" in n for n in res.notes)


def test_times_beyond_follow_up_are_skipped_with_a_note(tmp_path):
    cohort = FakeCohort(7)
    res = validate_bundles([fake_bundle(tmp_path)], cohort, tmp_path / "v", times=(12, 36, 200), n_bootstrap=0,
                           predict=fake_predict)  # fmt: skip
    assert set(res.calibration["time"]) == {12, 36}
    assert any("calibration at 200 months skipped" in n for n in res.notes)
    assert np.isnan(res.metrics["auc_200"].iloc[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"times": (36, 12)}, "increasing"), ({"times": (0,)}, "positive"), ({"n_bootstrap": -1}, "n-bootstrap")],
)
def test_bad_options_are_refused(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        validate_bundles([fake_bundle(tmp_path)], FakeCohort(0), tmp_path / "v", predict=fake_predict, **kwargs)
    assert not (tmp_path / "v").exists()


def test_a_cohort_without_deaths_is_refused_and_leaves_no_folder(tmp_path):
    cohort = FakeCohort(0)
    cohort.event = np.zeros_like(cohort.event)
    with pytest.raises(InputError, match="no death"):
        validate_bundles([fake_bundle(tmp_path)], cohort, tmp_path / "v", predict=fake_predict)
    assert not (tmp_path / "v").exists()


# ------------------------------------------------------------------------------------------ with a real bundle
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A genomic SNN bundle trained on a synthetic cohort (seed 2), and another sample of the same population
    (seed 3) as the external cohort."""
    from survpgc.config import load_config
    from survpgc.deploy.fit import train_bundle
    from survpgc.synth import generate_synthetic_cohort

    root = tmp_path_factory.mktemp("validate")
    generate_synthetic_cohort(root / "train", n_patients=60, seed=2, render_slides=False)
    generate_synthetic_cohort(root / "ext", n_patients=60, seed=3, render_slides=False)
    cfg = load_config(
        None,
        [f"cohort.source={root / 'train'}", "train.epochs=3", "train.batch_size=8",
         "models=[{name: snn, params: {modality: genomic}}]"],
    )  # fmt: skip
    train_bundle(cfg, root / "bundle", model_id="snn:genomic", epochs=3)
    return root


def test_cli_validate_a_real_bundle_on_another_synthetic_sample(real):
    from typer.testing import CliRunner

    from survpgc.cli import app

    out = real / "val"
    args = ["validate", "--model", str(real / "bundle"), "--model", str(real / "bundle"), "--cohort",
            str(real / "ext"), "--out", str(out), "--n-bootstrap", "50", "--times", "12,36"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "C-index" in r.output and f"report: {out / 'report.html'}" in r.output.replace("\n", "")
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 2 and m["model"].nunique() == 2  # the same bundle twice gets two labels
    assert m["cindex"].between(0, 1).all() and not m["apparent"].any()
    assert (m["cindex_low"] <= m["cindex"]).all() and (m["cindex"] <= m["cindex_high"]).all()
    assert np.isfinite(m["dcal_p"]).all()
    cmp = pd.read_csv(out / "comparisons.csv")
    assert cmp["delta_cindex"].iloc[0] == 0.0  # one bundle against itself
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 120 and preds["case_id"].nunique() == 60
    page = (out / "report.html").read_text()
    assert 'id="calibration"' in page and "Model cards" in page and "snn:genomic" in page
    # the synthetic cohort's truth gives the ceiling on the same cases, beside every bundle
    from survpgc.survival import harrell_cindex

    truth = pd.read_csv(real / "ext" / "truth.csv").set_index("case_id")["true_risk"]
    first = preds[preds["model"] == m["model"].iloc[0]]
    expected = harrell_cindex(first["time"], first["event"], truth.loc[first["case_id"]].to_numpy())
    assert np.allclose(m["oracle_cindex"], expected) and (m["oracle_cindex_low"] < expected).all()
    assert "oracle" in r.output and "oracle: the true risk of this synthetic cohort" in page


def test_a_real_bundle_on_its_own_training_cohort_is_apparent(real):
    from survpgc.data.cohort import open_cohort
    from survpgc.deploy.bundle import load_bundle

    res = validate_bundles([load_bundle(real / "bundle")], open_cohort(real / "train"), real / "apparent",
                           n_bootstrap=0)  # fmt: skip
    assert bool(res.metrics["apparent"].iloc[0])
    assert res.metrics["apparent_label"].iloc[0] == "apparent (training cohort)"
    assert res.metrics["apparent_rule"].iloc[0] == "case-id and survival hashes"
    assert "Apparent performance" in res.report.read_text()


def test_cli_labels_a_partly_seen_cohort_with_the_overlap(real, tmp_path):
    """12 training cases mixed with 28 of another sample: the C-index is partly apparent, and the CLI says so. The
    other sample numbers its cases alike (SYN-0013 ...): same ids, other patients, noted but not counted."""
    from typer.testing import CliRunner

    from survpgc.cli import app

    train, ext = pd.read_csv(real / "train" / "cohort.csv"), pd.read_csv(real / "ext" / "cohort.csv")
    (tmp_path / "mix").mkdir()
    pd.concat([train.head(12), ext.iloc[12:40]]).to_csv(tmp_path / "mix" / "cohort.csv", index=False)
    args = ["validate", "--model", str(real / "bundle"), "--cohort", str(tmp_path / "mix"), "--out",
            str(tmp_path / "v"), "--n-bootstrap", "0", "--times", "12"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "apparent: 12 of 40 cases were in the training cohort" in " ".join(r.output.split())
    assert pd.read_csv(tmp_path / "v" / "metrics.csv")["n_training_cases"].iloc[0] == 12
    page = " ".join((tmp_path / "v" / "report.html").read_text().split())
    assert "28 of 40 case ids are training case ids but with other survival data" in page


def test_cli_validate_time_unit_converts_the_cohort_times(real, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from survpgc.cli import app

    shutil.copytree(real / "ext", tmp_path / "days")
    table = pd.read_csv(real / "ext" / "cohort.csv")
    table["survival_months"] = table["survival_months"] * 30.4375  # the same follow-up, in days
    table.to_csv(tmp_path / "days" / "cohort.csv", index=False)
    base = ["validate", "--model", str(real / "bundle"), "--n-bootstrap", "0", "--times", "12,36"]
    r = CliRunner().invoke(app, [*base, "--cohort", str(real / "ext"), "--out", str(tmp_path / "months")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*base, "--cohort", str(tmp_path / "days"), "--out", str(tmp_path / "in_days"),
                                 "--time-unit", "days"])  # fmt: skip
    assert r.exit_code == 0, r.output
    a, b = (pd.read_csv(tmp_path / d / "predictions.csv") for d in ("months", "in_days"))
    np.testing.assert_allclose(b["time"], a["time"], rtol=1e-9)
    ma, mb = (pd.read_csv(tmp_path / d / "metrics.csv").iloc[0] for d in ("months", "in_days"))
    assert ma["cindex"] == mb["cindex"] and ma["auc_36"] == pytest.approx(mb["auc_36"], abs=1e-12)
    r = CliRunner().invoke(app, [*base, "--cohort", str(real / "ext"), "--out", str(tmp_path / "x"),
                                 "--time-unit", "fortnights"])  # fmt: skip
    assert r.exit_code != 0
    assert str(r.exception) == "--time-unit must be one of days, weeks, months, years; got 'fortnights'"


@pytest.fixture(scope="module")
def clinical_bundle(real):
    """A clinical-token MLP (MiniLM, default templates) trained on the synthetic training sample."""
    from survpgc.config import load_config
    from survpgc.deploy.fit import train_bundle

    cfg = load_config(None, [f"cohort.source={real / 'train'}", "train.batch_size=8",
                             "models=[{name: mlp, params: {modality: clinical}}]"])  # fmt: skip
    train_bundle(cfg, real / "clinical_bundle", epochs=1)
    return real / "clinical_bundle"


def test_cli_validate_reads_given_clinical_tokens_instead_of_encoding(real, clinical_bundle, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import survpgc.clinical.encode as encode_module
    from survpgc.cli import app
    from survpgc.clinical.encode import encode_clinical
    from survpgc.data.cohort import open_cohort
    from survpgc.deploy.bundle import load_bundle

    spec = load_bundle(clinical_bundle).inputs["clinical"]
    ext = open_cohort(real / "ext")
    kw = {k: spec[k] for k in ("n_templates", "seed", "missing", "fields")}
    encode_clinical(ext, tmp_path / "tok", encoder=spec["encoder"], templates=spec["template_set"], **kw)
    encode_clinical(ext, tmp_path / "paper", encoder=spec["encoder"], templates="survpgc-paper", **kw)

    def no_encoding(*a, **k):
        raise AssertionError("validate encoded the clinical fields although --clinical-tokens was given")

    monkeypatch.setattr(encode_module, "encode_clinical", no_encoding)
    base = ["validate", "--model", str(clinical_bundle), "--cohort", str(real / "ext"), "--n-bootstrap", "0",
            "--times", "12,36"]  # fmt: skip
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "v"), "--clinical-tokens", str(tmp_path / "tok")])
    assert r.exit_code == 0, r.output
    m = pd.read_csv(tmp_path / "v" / "metrics.csv").iloc[0]
    assert 0 <= m["cindex"] <= 1 and (pd.read_csv(tmp_path / "v" / "predictions.csv")["modalities"] == "clinical").all()
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "w"), "--clinical-tokens", str(tmp_path / "paper")])
    assert r.exit_code != 0
    assert "template set mismatch: bundle" in " ".join(str(r.exception).split())
