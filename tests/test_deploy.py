"""survpgc train / predict: bundles on a tiny synthetic cohort (round trip, refusals, prediction-only cohorts)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survpgc.config import load_config
from survpgc.data.cohort import open_cohort
from survpgc.data.features import write_feature_file
from survpgc.deploy.bundle import (
    InputMismatchError,
    Overlap,
    case_ids_digest,
    load_bundle,
    salted_case_hashes,
    training_overlap,
)
from survpgc.deploy.fit import train_bundle
from survpgc.deploy.predict import predict_cohort, predict_to_dir
from survpgc.errors import ConfigError, DataError, InputError
from survpgc.synth import generate_synthetic_cohort
from survpgc.train.cv import run_cv


def _features(cohort_csv: Path, feat: Path, *, dim: int = 16, seed: int = 0, **attrs) -> None:
    feat.mkdir(parents=True, exist_ok=True)
    cohort = pd.read_csv(cohort_csv)
    rng = np.random.default_rng(seed)
    for sid in cohort["slide_id"]:
        n = int(rng.integers(10, 30))
        x = rng.normal(size=(n, dim)).astype(np.float32)
        coords = np.stack([np.arange(n) * 256, np.zeros(n, int)], axis=1)
        kw = {"patch_size": 256, "encoder": "fake", "target_magnification": 20.0, **attrs}
        write_feature_file(feat / f"{Path(sid).stem}.h5", x, coords, slide_id=sid, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    syn = root / "syn"
    generate_synthetic_cohort(syn, n_patients=24, seed=2, render_slides=False)
    _features(syn / "cohort.csv", root / "features")
    return syn, root / "features"


def _cfg(data, *extra):
    syn, feat = data
    return load_config(
        None,
        [
            f"cohort.source={syn}",
            f"pathology.feature_dir={feat}",
            "splits.folds=2",
            "train.epochs=2",
            "train.select_from_epoch=1",
            "train.batch_size=4",
            "eval.bootstrap=20",
            "models=[abmil, {name: snn, params: {modality: genomic}}]",
            *extra,
        ],
    )


def _cohort(data, **kw):
    syn, feat = data
    return open_cohort(syn, feature_dir=feat, **kw)


@pytest.fixture(scope="module")
def abmil_bundle(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "abmil"
    res = train_bundle(_cfg(data), out, model_id="abmil", epochs=1)
    return out, res


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    run_cv(_cfg(data), out)
    return out


# ------------------------------------------------------------------------------------------ format and round trip
def test_bundle_files_and_manifest(abmil_bundle):
    out, _ = abmil_bundle
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.safetensors", "model_card.md"]
    assert not list(out.parent.glob(".*.tmp"))
    b = load_bundle(out)
    m = b.manifest
    assert m["format_version"] == 2 and m["kind"] == "refit" and m["model"]["family"] == "neural"
    assert m["model"]["name"] == "abmil" and m["training"]["epochs"] == 1
    assert m["inputs"]["pathology"] == {"encoder": "fake", "dim": 16, "patch_size": 256, "target_magnification": 20.0}
    assert b.time_edges[0] == 0 and np.isinf(b.time_edges[-1]) and len(b.time_edges) == 5
    assert m["training_cohort"]["n_cases"] == 24 and m["training_cohort"]["median_followup_months"] > 0
    assert "Intended use" in b.card and "Known limits" in b.card
    json.loads((out / "bundle.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert b"pickle" not in (out / "model.safetensors").read_bytes()[:200]


def test_bundle_records_hashed_training_case_ids_not_the_ids(abmil_bundle, data):
    out, _ = abmil_bundle
    text = (out / "bundle.json").read_text()
    rec = load_bundle(out).manifest["training_cases"]
    ids = _cohort(data).case_ids
    assert rec["n"] == 24 and len(rec["case_sha256"]) == 24 and rec["case_sha256"] == sorted(rec["case_sha256"])
    assert rec["ids_sha256"] == case_ids_digest(reversed(ids))  # order-free
    assert rec["case_sha256"] == salted_case_hashes(ids, rec["salt"])
    assert not any(c in text for c in ids)  # no id in the manifest
    cohort = _cohort(data)
    man = load_bundle(out).manifest
    assert training_overlap(man, ids) == Overlap(True, 24, None)
    assert training_overlap(man, ids, cohort.time, cohort.event) == Overlap(True, 24, 24)
    later = cohort.time + np.arange(24) % 2  # every other case followed one month longer
    assert training_overlap(man, ids, later, cohort.event) == Overlap(True, 24, 12)
    assert training_overlap(man, [*ids[:5], "other-1"]) == Overlap(False, 5, None)
    assert training_overlap({"format_version": 1}, ids) is None


def test_pathology_keys_derive_from_the_run_feature_settings():
    from survpgc.deploy.bundle import PATHOLOGY_KEYS, pathology_keys
    from survpgc.inputs import FEATURE_SETTINGS

    assert pathology_keys() == PATHOLOGY_KEYS
    assert set(PATHOLOGY_KEYS) == set(FEATURE_SETTINGS) - {"encoder_dim"} | {"weights", "dim"}
    # a setting added to the run's list is recorded and compared by bundles too
    assert "new_setting" in pathology_keys((*FEATURE_SETTINGS, "new_setting"))


def test_round_trip_is_bit_for_bit(abmil_bundle, data):
    out, res = abmil_bundle
    df = predict_cohort(load_bundle(out), _cohort(data))
    assert df["case_id"].tolist() == res.train_predictions["case_id"].tolist()
    np.testing.assert_array_equal(df["risk"].to_numpy(), res.train_predictions["risk"].to_numpy())
    b = load_bundle(out)
    assert b.risk_cutoff == float(np.median(df["risk"]))
    assert (df["risk_group"] == np.where(df["risk"] > b.risk_cutoff, "high", "low")).all()
    surv = df[[f"surv_{k}" for k in range(4)]].to_numpy()
    assert (np.diff(surv, axis=1) <= 0).all()
    assert {"S_12", "S_36", "S_60", "modalities"} <= set(df.columns)
    assert (df["modalities"] == "pathology").all()


def test_genomic_round_trip_and_missing_genes(data, tmp_path, caplog):
    out = tmp_path / "snn"
    res = train_bundle(_cfg(data), out, model_id="snn:genomic", epochs=1)
    b = load_bundle(out)
    assert b.manifest["members"][0]["genomic_scaler"]["train_ids"] == []  # no patient ids shipped
    cohort = _cohort(data)
    df = predict_cohort(b, cohort)
    np.testing.assert_array_equal(df["risk"].to_numpy(), res.train_predictions["risk"].to_numpy())
    genes = b.manifest["inputs"]["genomic"]["columns"]
    few = cohort.omics.drop(columns=genes[:1])  # within the 5 % tolerance: filled, warned
    cohort.omics = few
    with caplog.at_level(logging.WARNING, logger="survpgc"):
        predict_cohort(b, cohort)
    assert "lacks 1 of the bundle's" in caplog.text
    cohort.omics = few.drop(columns=genes[1 : max(2, len(genes) // 5)])
    with pytest.raises(InputMismatchError, match=r"^genes mismatch: bundle .* expects \d+ omics columns.*lacks"):
        predict_cohort(b, cohort)


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"encoder": "uni"}, r"^patch encoder mismatch: bundle .* expects 'fake', the feature files .* have 'uni'"),
        ({"dim": 8}, r"^feature dim mismatch: bundle .* expects 16, .* have 8"),
        ({"target_magnification": 40.0}, r"^magnification mismatch: bundle .* expects 20.0, .* have 40.0"),
    ],
)
def test_other_features_are_refused(abmil_bundle, data, tmp_path, attrs, match):
    syn, _ = data
    dim = attrs.pop("dim", 16)
    _features(syn / "cohort.csv", tmp_path / "f", dim=dim, **attrs)
    with pytest.raises(InputMismatchError, match=match):
        predict_cohort(load_bundle(abmil_bundle[0]), open_cohort(syn, feature_dir=tmp_path / "f"))


@pytest.mark.parametrize(
    ("attrs", "error", "match"),
    [
        ({"target_magnification": 40.0}, InputMismatchError, r"^magnification mismatch: bundle .* expects 20.0, .*"
         r"have 40.0 \(e.g. .*odd\.h5\)"),
        ({"encoder_dim": 99}, DataError, r"^feature files disagree on encoder_dim: .* has 16, .*odd\.h5 has 99"),
    ],
)  # fmt: skip
def test_one_odd_feature_file_is_refused_naming_it(abmil_bundle, data, tmp_path, attrs, error, match):
    """Only the first file's header and shape are read whole; every other file's header once, against the bundle
    and the first file."""
    syn, feat = data
    shutil.copytree(feat, tmp_path / "f")
    stems = [Path(sid).stem for sid in pd.read_csv(syn / "cohort.csv")["slide_id"]]
    x = np.random.default_rng(0).normal(size=(12, 16)).astype(np.float32)
    base = {"patch_size": 256, "encoder": "fake", "target_magnification": 20.0, "encoder_dim": 16}
    write_feature_file(tmp_path / "f" / f"{stems[0]}.h5", x, None, **base)
    write_feature_file(tmp_path / "f" / f"{stems[7]}.h5", x, None, **{**base, **attrs})
    cohort = open_cohort(syn, feature_dir=tmp_path / "f")
    with pytest.raises(error, match=match.replace("odd", stems[7])):
        predict_cohort(load_bundle(abmil_bundle[0]), cohort)


def test_other_format_version_is_refused(abmil_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(abmil_bundle[0], copy)
    m = json.loads((copy / "bundle.json").read_text())
    m["format_version"] = 3
    (copy / "bundle.json").write_text(json.dumps(m))
    with pytest.raises(InputMismatchError, match=r"bundle format version 3 .* reads format versions 1, 2; use"):
        load_bundle(copy)


def test_a_format_1_bundle_without_case_hashes_still_predicts(abmil_bundle, data, tmp_path):
    copy = tmp_path / "v1"
    shutil.copytree(abmil_bundle[0], copy)
    m = json.loads((copy / "bundle.json").read_text())
    m["format_version"] = 1
    del m["training_cases"], m["model"]["family"]
    (copy / "bundle.json").write_text(json.dumps(m))
    old = load_bundle(copy)
    assert old.family == "neural"
    df = predict_cohort(old, _cohort(data))
    np.testing.assert_array_equal(df["risk"].to_numpy(), abmil_bundle[1].train_predictions["risk"].to_numpy())


def test_changed_weights_are_refused(abmil_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(abmil_bundle[0], copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(Exception, match="checksum"):
        load_bundle(copy)


def test_epochs_needed_and_unknown_model_refused(data, tmp_path):
    with pytest.raises(ConfigError, match="how many epochs"):
        train_bundle(_cfg(data), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match=r"--model 'nope' is not in"):
        train_bundle(_cfg(data), tmp_path / "z", model_id="nope", epochs=1)


def test_non_empty_out_is_refused(abmil_bundle, data):
    with pytest.raises(InputError, match="not empty"):
        train_bundle(_cfg(data), abmil_bundle[0], epochs=1)


# ------------------------------------------------------------------------------------------ from a run
def test_from_run_takes_the_median_epoch(run_dir, data, tmp_path):
    out = tmp_path / "b"
    train_bundle(None, out, model_id="abmil", from_run=run_dir)
    m = load_bundle(out).manifest
    sel = m["training"]["selected_epochs"]
    assert len(sel) == 2 and m["training"]["epochs"] == int(np.floor(np.median(sel) + 0.5))
    assert m["cv_metrics"]["cindex_mean"] is not None


def test_from_run_with_another_config_is_refused(run_dir, data, tmp_path):
    with pytest.raises(ConfigError, match=r"^--from-run .*data.n_bins: run has 4, this config has 3"):
        train_bundle(_cfg(data, "data.n_bins=3"), tmp_path / "b", model_id="abmil", from_run=run_dir)
    bad = "models=[{name: abmil, params: {dropout: 0.5}}]"
    with pytest.raises(ConfigError, match=r"model 'abmil': run has abmil \{\}"):
        train_bundle(_cfg(data, bad), tmp_path / "c", from_run=run_dir)


def test_ensemble_of_fold_models(run_dir, data, tmp_path):
    out = tmp_path / "ens"
    res = train_bundle(None, out, model_id="snn:genomic", from_run=run_dir, ensemble=True)
    b = load_bundle(out)
    assert b.kind == "ensemble" and [m["fold"] for m in b.manifest["members"]] == [0, 1]
    df = predict_cohort(b, _cohort(data))
    np.testing.assert_allclose(df["risk"].to_numpy(), res.train_predictions["risk"].to_numpy(), rtol=0, atol=1e-12)
    surv = df[[c for c in df.columns if c.startswith("surv_")]].to_numpy()
    assert (np.diff(surv, axis=1) <= 1e-12).all()


# ------------------------------------------------------------------------------------------ prediction-only cohorts
def test_predict_cohort_without_survival(abmil_bundle, data, tmp_path):
    syn, feat = data
    new = tmp_path / "new"
    new.mkdir()
    table = pd.read_csv(syn / "cohort.csv").drop(columns=["survival_months", "censorship"])
    table.to_csv(new / "cohort.csv", index=False)
    with pytest.raises(Exception, match="survival_months"):
        open_cohort(new)  # survival stays required by default
    res = predict_to_dir(abmil_bundle[0], new, tmp_path / "p", feature_dir=feat)
    csv = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(csv) == 24 and csv["risk"].notna().all()
    html = (tmp_path / "p" / "predict.html").read_text()
    assert "predictions.csv" in html and "<script" not in html
    assert res.predictions["risk_group"].isin(["high", "low"]).all()


def test_missing_pathology_is_masked(abmil_bundle, data, tmp_path):
    syn, _ = data
    df = predict_cohort(load_bundle(abmil_bundle[0]), open_cohort(syn))  # no feature_dir: no pathology
    assert (df["modalities"] == "none").all() and df["risk"].notna().all()


# ------------------------------------------------------------------------------------------ clinical text tokens
@pytest.fixture(scope="module")
def clinical_bundle(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("clin") / "mlp"
    cfg = _cfg(data, "models=[{name: mlp, params: {modality: clinical}}]")
    res = train_bundle(cfg, out, epochs=1)
    return out, res


def test_clinical_round_trip(clinical_bundle, data):
    out, res = clinical_bundle
    b = load_bundle(out)
    spec = b.manifest["inputs"]["clinical"]
    assert spec["encoder"] == "minilm" and spec["templates"]["name"] == "default"
    assert "MiniLM" in b.card and "not CONCH" in b.card
    df = predict_cohort(b, _cohort(data))
    np.testing.assert_array_equal(df["risk"].to_numpy(), res.train_predictions["risk"].to_numpy())


def test_other_text_encoder_or_templates_are_refused(clinical_bundle, data, tmp_path):
    from survpgc.clinical.encode import encode_clinical

    cohort = _cohort(data)
    encode_clinical(cohort, tmp_path / "tok", templates="survpgc-paper")
    with pytest.raises(
        InputMismatchError, match=r"^template set mismatch: bundle .* expects 'default .*has 'survpgc-pa"
    ):
        predict_cohort(load_bundle(clinical_bundle[0]), cohort, clinical_tokens=tmp_path / "tok")
    copy = tmp_path / "b"
    shutil.copytree(clinical_bundle[0], copy)
    m = json.loads((copy / "bundle.json").read_text())
    m["inputs"]["clinical"]["encoder_identity"] = "minilm|other-weights"
    (copy / "bundle.json").write_text(json.dumps(m))
    with pytest.raises(InputMismatchError, match=r"^text encoder mismatch: bundle .* expects 'minilm \(minilm\|other"):
        predict_cohort(load_bundle(copy), cohort)


# ------------------------------------------------------------------------------------------ command line
def test_cli_train_and_predict(run_dir, data, tmp_path):
    from typer.testing import CliRunner

    from survpgc.cli import app

    syn, feat = data
    r = CliRunner().invoke(app, ["train", "--from-run", str(run_dir), "--model", "abmil", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "bundle:" in r.output
    r = CliRunner().invoke(
        app, ["predict", "--model", str(tmp_path / "m"), "--cohort", str(syn), "--feature-dir", str(feat),
              "--out", str(tmp_path / "p")]
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "predictions.csv").is_file() and (tmp_path / "p" / "predict.html").is_file()


def test_predict_heatmaps_are_drawn_and_linked_without_changing_predictions(abmil_bundle, data, tmp_path):
    syn, feat = data
    out, _ = abmil_bundle
    plain = predict_to_dir(out, syn, tmp_path / "plain", feature_dir=feat)
    drawn = predict_to_dir(out, syn, tmp_path / "maps", feature_dir=feat, heatmaps=True, max_heatmaps=2)
    pd.testing.assert_frame_equal(plain.predictions, drawn.predictions)  # explaining changes no prediction
    cases = drawn.predictions["case_id"].tolist()[:2]
    page = drawn.html.read_text()
    assert "<th>heatmaps</th>" in page and "<th>heatmaps</th>" not in plain.html.read_text()
    for case in cases:
        overlays = sorted((tmp_path / "maps" / "heatmaps" / case).glob("*_relevance_overlay.png"))
        assert len(overlays) == 1 and overlays[0].stat().st_size > 0
        assert f'href="heatmaps/{case}/{overlays[0].name}"' in page
        scores = pd.read_csv(next((tmp_path / "maps" / "heatmaps" / case).glob("*_scores.csv")))
        assert np.isfinite(scores["relevance"]).all() and len(scores) > 0
    third = drawn.predictions["case_id"].iloc[2]
    assert not (tmp_path / "maps" / "heatmaps" / third).exists()  # --max-heatmaps 2


# ------------------------------------------------------------------------------------------ batched prediction
@pytest.fixture(scope="module")
def setups(data, tmp_path_factory):
    """Untrained abmil, survpgc and snn (genomic) with their evaluation datasets, as `survpgc train` builds them."""
    from survpgc.data.splits import Fold
    from survpgc.inputs import RunInputs, fold_setup, model_modalities
    from survpgc.survival.binning import TimeBinner

    cfg = _cfg(data, "models=[abmil, survpgc, {name: snn, params: {modality: genomic}}]")
    work = tmp_path_factory.mktemp("setups")
    inputs = RunInputs(cfg, splits_dir=work / "splits", clinical_dir=work / "clinical", write_splits=False)
    ids = tuple(inputs.cohort.case_ids)
    binner = TimeBinner(cfg.data.n_bins).fit(*inputs.cohort.survival())
    out = {}
    for entry in cfg.models:
        setup = fold_setup(entry, inputs, Fold(0, ids, (), ()), binner, model_modalities(entry)[0])
        out[entry.id] = (setup.model.eval(), setup.dataset(ids, False))
    return out


@pytest.mark.parametrize("model_id", ["abmil", "survpgc", "snn:genomic"])
def test_batched_prediction_equals_one_case_at_a_time(setups, model_id):
    import torch

    from survpgc.deploy.predict import predict_batched

    model, ds = setups[model_id]
    threads = torch.get_num_threads()
    (single,) = predict_batched([model], ds, max_cases=1)  # one case per batch: no padding
    assert torch.get_num_threads() == threads  # collation runs on one thread, then the setting is restored
    assert np.ptp(single["risk"]) > 0 and single["survival"].shape == (24, 4)
    variants = [{}, {"max_cases": 5}]  # one padded batch of 24; batches of 5
    if model_id == "abmil":
        variants.append({"max_elements": 16 * 100})  # batches of about 100 padded patches
    for kw in variants:
        (got,) = predict_batched([model], ds, **kw)
        np.testing.assert_allclose(got["risk"], single["risk"], rtol=1e-5, atol=0)
        np.testing.assert_allclose(got["survival"], single["survival"], rtol=1e-5, atol=1e-7)


def test_prediction_batches_bags_of_similar_length(setups, monkeypatch):
    import survpgc.data.dataset as dataset_module
    from survpgc.deploy.predict import predict_batched

    real, seen = dataset_module.collate_survival, []

    def spy(items):
        batch = real(items)
        seen.append((batch["path_mask"].numel(), int(batch["path_mask"].sum())))
        return batch

    monkeypatch.setattr(dataset_module, "collate_survival", spy)
    model, ds = setups["abmil"]
    predict_batched([model], ds, max_cases=4)
    padded, patches = sum(p for p, _ in seen), sum(n for _, n in seen)
    assert len(seen) == 6 and patches == sum(len(ds[i]["path"]) for i in range(len(ds)))
    assert padded <= 1.1 * patches  # in cohort order: about 1.3 for bags of 10-29 patches in batches of 4


def test_an_ensemble_reads_each_feature_file_once(run_dir, data, tmp_path, monkeypatch):
    import survpgc.data.dataset as dataset_module

    out = tmp_path / "ens"
    res = train_bundle(None, out, model_id="abmil", from_run=run_dir, ensemble=True)
    real, reads = dataset_module.read_feature_file, []
    monkeypatch.setattr(dataset_module, "read_feature_file", lambda p: reads.append(str(p)) or real(p))
    cohort = _cohort(data)
    df = predict_cohort(load_bundle(out), cohort)
    files = cohort.slides["feature_path"].dropna().astype(str).tolist()
    assert sorted(reads) == sorted(files)  # two members, one read per file
    np.testing.assert_array_equal(df["risk"].to_numpy(), res.train_predictions["risk"].to_numpy())
