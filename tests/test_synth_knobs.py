"""The synthetic generator's knobs: censoring, planted-texture fraction, signal per modality, expression noise,
frailty. Each changes what it names and nothing else; at their defaults the files are generator version 1's."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.errors import InputError
from survpgc.survival import harrell_cindex
from survpgc.synth import COEFFICIENTS, PATHWAYS, generate_synthetic_cohort
from survpgc.synth.options import censoring_range, parse_numbers, parse_signal

runner = CliRunner()
FAST = {"n_patients": 40, "seed": 5, "slide_size": (512, 512), "render_slides": False}
SCORES = ("texture", "stage", "age", "pathway")


def _fingerprint(root: Path) -> dict[str, str]:
    """Content hashes that do not depend on the gzip / PNG encoder: the tables, the decompressed omics, truth.json
    without its ``settings`` section, the decoded mask pixels."""

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    out = {name: sha((root / name).read_bytes()) for name in ("cohort.csv", "truth.csv")}
    out["omics.csv.gz"] = sha(gzip.decompress((root / "omics.csv.gz").read_bytes()))
    meta = json.loads((root / "truth.json").read_text())
    meta.pop("settings", None)
    out["truth.json"] = sha((json.dumps(meta, indent=2) + "\n").encode())
    h = hashlib.sha256()
    for p in sorted((root / "masks").glob("*.png")):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        h.update(p.name.encode())
        h.update(str(img.shape).encode())
        h.update(img.tobytes())
    out["masks"] = h.hexdigest()
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _differing(a: Path, b: Path) -> set[str]:
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    return {k for k in fa if fa[k] != fb[k]}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return generate_synthetic_cohort(tmp_path_factory.mktemp("base") / "cohort", **FAST)


# ------------------------------------------------------------------------------------------- defaults
def test_defaults_reproduce_generator_version_1(tmp_path):
    """Hashes of a cohort written by the generator before the knobs existed (commit 7564b85, same call)."""
    r = generate_synthetic_cohort(tmp_path / "c", n_patients=12, seed=2, slide_size=(1024, 768), render_slides=False)
    assert _fingerprint(r.out_dir) == {
        "cohort.csv": "06551e1bc66b9ddf96cb4857c6eb6e5b6b2eedcd6f40257f1f7c65e8500c9c78",
        "truth.csv": "2335370d2804ff138a2e171306dbfd46cbefdf3d720afd0e76912e5ef9774252",
        "omics.csv.gz": "ecce4cef17e1e9d2af188e2104725f2a76b61ca633af6d5ed891bf6c3cfb3bc2",
        "truth.json": "a63ef518993dd49abb95731e4cda4ff7a72bb168e595bb662371f234188eae81",
        "masks": "ac1f7f25ab319b6cad0d7a2a23fad5889690d926c4cd7c11f3c9afe8dab73b41",
    }
    meta = json.loads(r.truth_json.read_text())
    assert list(meta)[-1] == "settings" and "cindex_log_hazard" not in meta
    settings = meta["settings"]
    assert set(settings) == {"censoring", "slide_size", "planted_fraction", "signal", "omics_noise", "frailty_sd"}
    for knob in settings.values():
        assert knob["value"] == knob["default"] or knob is settings["slide_size"]
        assert knob["meaning"]
    assert settings["censoring"]["value"] == [0.6, 0.8] and "rate" not in settings["censoring"]
    assert settings["slide_size"]["value"] == [1024, 768]
    assert settings["planted_fraction"]["value"] == [0.08, 0.65]
    assert settings["signal"]["value"] == {"pathology": 1.0, "clinical": 1.0, "genomic": 1.0}
    assert settings["omics_noise"]["value"] == 1.0 and settings["frailty_sd"]["value"] == 0.0
    assert r.cindex_log_hazard is None
    assert "frailty" not in pd.read_csv(r.truth_csv).columns


def test_cli_defaults_are_the_library_defaults(base, tmp_path):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--n-patients", "40", "--seed", "5", "--width", "512", "--height", "512"]
    r = runner.invoke(app, [*args, "--no-slides"])
    assert r.exit_code == 0, r.output
    assert _differing(base.out_dir, out) == set()


def test_help_states_every_default():
    r = runner.invoke(app, ["synth", "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    for option, default in [
        ("--censoring", "[default: 0.6,0.8]"),
        ("--planted-fraction", "[default: 0.08,0.65]"),
        ("--signal", "[default: pathology=1,clinical=1,genomic=1]"),
        ("--omics-noise", "[default: 1.0]"),
        ("--frailty-sd", "[default: 0.0]"),
        ("--width", "[default: 3072]"),
        ("--height", "[default: 2048]"),
    ]:
        assert option in text and default in text.split(option, 1)[1], option


# ------------------------------------------------------------------------------------------- signal
def test_signal_zero_removes_the_pathology_signal(base, tmp_path):
    r = generate_synthetic_cohort(tmp_path / "c", signal={"pathology": 0}, **FAST)
    meta = json.loads(r.truth_json.read_text())
    assert meta["model"]["coefficients"] == {**COEFFICIENTS, "texture": 0.0}
    assert meta["settings"]["signal"]["value"] == {"pathology": 0.0, "clinical": 1.0, "genomic": 1.0}
    truth, old = pd.read_csv(r.truth_csv), pd.read_csv(base.truth_csv)
    lp = sum(COEFFICIENTS[k] * truth[f"{k}_score"] for k in ("stage", "age", "pathway"))
    np.testing.assert_allclose(truth["true_risk"], lp, atol=1e-5)
    # the slides, masks and omics are those of the default cohort: only the survival follows the new risk
    pd.testing.assert_series_equal(truth["texture_fraction"], old["texture_fraction"])
    assert _differing(base.out_dir, r.out_dir) == {"cohort.csv", "truth.csv", "truth.json"}
    assert r.cindex_true != base.cindex_true
    assert r.cindex_true == pytest.approx(
        harrell_cindex(truth["observed_time"], truth["event"].astype(bool), truth["true_risk"])
    )


def test_signal_scales_clinical_and_genomic(tmp_path):
    r = generate_synthetic_cohort(tmp_path / "c", signal={"clinical": 0, "genomic": 2.0}, **FAST)
    coef = json.loads(r.truth_json.read_text())["model"]["coefficients"]
    assert coef == {"texture": 1.0, "stage": 0.0, "age": 0.0, "pathway": 1.4}
    truth = pd.read_csv(r.truth_csv)
    x = truth[[f"{k}_score" for k in SCORES]].to_numpy()
    fit, *_ = np.linalg.lstsq(x, truth["true_risk"].to_numpy(), rcond=None)
    np.testing.assert_allclose(fit, [1.0, 0.0, 0.0, 1.4], atol=1e-4)


# ------------------------------------------------------------------------------------------- censoring
def test_censoring_rate(base, tmp_path):
    r = generate_synthetic_cohort(tmp_path / "c", censoring=0.3, **FAST)
    cohort = pd.read_csv(r.cohort_csv)
    assert r.censoring_rate == pytest.approx(0.3) and cohort["censorship"].mean() == pytest.approx(0.3)
    meta = json.loads(r.truth_json.read_text())
    np.testing.assert_allclose(meta["censoring"]["target_range"], [0.25, 0.35])
    assert meta["settings"]["censoring"]["rate"] == 0.3
    # the event times are the default cohort's: only the censoring changed
    pd.testing.assert_series_equal(pd.read_csv(r.truth_csv)["event_time"], pd.read_csv(base.truth_csv)["event_time"])
    assert _differing(base.out_dir, r.out_dir) == {"cohort.csv", "truth.csv", "truth.json"}
    # a range, through the CLI
    out = tmp_path / "cli"
    res = runner.invoke(app, ["synth", "--out", str(out), "--n-patients", "40", "--width", "512", "--height", "512",
                              "--no-slides", "--censoring", "0.1,0.2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert 0.1 <= pd.read_csv(out / "cohort.csv")["censorship"].mean() <= 0.2
    assert json.loads((out / "truth.json").read_text())["settings"]["censoring"]["value"] == [0.1, 0.2]


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.7, (0.65, 0.75)), (0.02, (0.0, 0.04)), (0.0, (0.0, 0.0)), (0.98, (0.97, 0.99))]
)
def test_a_single_rate_is_the_middle_of_its_range(rate, expected):
    lo, hi = censoring_range(rate)
    assert (lo, hi) == pytest.approx(expected) and (lo + hi) / 2 == pytest.approx(rate)
    assert censoring_range((0.6, 0.8)) == (0.6, 0.8)


# ------------------------------------------------------------------------------------------- planted fraction
def test_planted_fraction_range(tmp_path):
    r = generate_synthetic_cohort(
        tmp_path / "c", n_patients=16, seed=5, slide_size=(1024, 768), render_slides=False, planted_fraction=(0.3, 0.4)
    )
    truth = pd.read_csv(r.truth_csv)
    # the realised fraction (measured on the label map) follows the target range, up to the mask's resolution
    assert truth["texture_fraction"].between(0.25, 0.45).all()
    tex = json.loads(r.truth_json.read_text())["model"]["scores"]["texture"]
    assert tex["target_fraction_uniform"] == [0.3, 0.4]
    assert tex["mean"] == pytest.approx(0.35) and tex["sd"] == pytest.approx(0.1 / math.sqrt(12))
    np.testing.assert_allclose(truth["texture_score"], (truth["texture_fraction"] - tex["mean"]) / tex["sd"], atol=1e-4)
    assert json.loads(r.truth_json.read_text())["settings"]["planted_fraction"]["value"] == [0.3, 0.4]


# ------------------------------------------------------------------------------------------- noise
def _pathway_recovery(root: Path) -> float:
    truth = pd.read_csv(root / "truth.csv").set_index("case_id")
    om = pd.read_csv(root / "omics.csv.gz").set_index("case_id")
    p = "HALLMARK_G2M_CHECKPOINT"
    est = om[[f"{g}_rnaseq" for g in PATHWAYS[p]]].mean(axis=1)
    return float(np.corrcoef(est, truth.loc[om.index, f"activity_{p}"])[0, 1])


def test_omics_noise_hides_the_pathway_signal(base, tmp_path):
    r = generate_synthetic_cohort(tmp_path / "c", omics_noise=8.0, **FAST)
    # the same activities, the same risk and survival: only the expression table changed
    assert _differing(base.out_dir, r.out_dir) == {"omics.csv.gz", "truth.json"}
    assert _pathway_recovery(base.out_dir) > 0.95
    assert _pathway_recovery(r.out_dir) < 0.8
    meta = json.loads(r.truth_json.read_text())
    assert meta["settings"]["omics_noise"]["value"] == 8.0 and "8 * sqrt" in meta["omics"]["gene_model"]


def test_frailty(base, tmp_path):
    r = generate_synthetic_cohort(tmp_path / "c", frailty_sd=1.5, **FAST)
    truth = pd.read_csv(r.truth_csv)
    old = pd.read_csv(base.truth_csv)
    assert list(truth.columns[:4]) == ["case_id", "true_risk", "frailty", "log_hazard"]
    np.testing.assert_allclose(truth["log_hazard"], truth["true_risk"] + truth["frailty"], atol=2e-6)
    assert 0.9 < truth["frailty"].std() < 2.1
    # the true risk is the default cohort's; the frailty moves the event times only
    pd.testing.assert_series_equal(truth["true_risk"], old["true_risk"])
    assert not np.allclose(truth["event_time"], old["event_time"])
    meta = json.loads(r.truth_json.read_text())
    time, event = truth["observed_time"], truth["event"].astype(bool)
    assert meta["cindex_true"] == pytest.approx(harrell_cindex(time, event, truth["true_risk"]), abs=1e-6)
    assert meta["cindex_log_hazard"] == pytest.approx(harrell_cindex(time, event, truth["log_hazard"]), abs=1e-6)
    assert r.cindex_true == pytest.approx(meta["cindex_true"], abs=1e-6)
    assert r.cindex_log_hazard == pytest.approx(meta["cindex_log_hazard"], abs=1e-6)
    # what the inputs carry ranks worse than the full hazard
    assert meta["cindex_true"] < meta["cindex_log_hazard"] and meta["cindex_true"] < 1
    assert meta["settings"]["frailty_sd"]["value"] == 1.5 and meta["model"]["frailty_sd"] == 1.5
    assert "log_hazard" in meta["model"]["baseline"]["event_time"]
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "cli"), "--n-patients", "12", "--width", "512",
                              "--height", "512", "--no-slides", "--frailty-sd", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "full log hazard" in res.stdout


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"planted_fraction": (0.5, 0.3)}, "planted_fraction must satisfy 0 <= low < high <= 1"),
        ({"planted_fraction": (0.2, 0.2)}, "planted_fraction must satisfy"),
        ({"planted_fraction": (-0.1, 0.5)}, "planted_fraction must satisfy"),
        ({"planted_fraction": (0.1, 1.2)}, "planted_fraction must satisfy"),
        ({"planted_fraction": 0.3}, "planted_fraction must be a"),
        ({"planted_fraction": (0.1, float("nan"))}, "planted_fraction must be a"),
        ({"signal": {"path": 1}}, "signal: unknown modality 'path'"),
        ({"signal": {"pathology": -1}}, r"signal\['pathology'\] must be >= 0"),
        ({"signal": {"genomic": float("nan")}}, r"signal\['genomic'\] must be a finite number"),
        ({"signal": [1, 1, 1]}, "signal must be a mapping"),
        ({"omics_noise": -1}, "omics_noise must be >= 0"),
        ({"omics_noise": "1"}, "omics_noise must be a finite number"),
        ({"frailty_sd": -0.5}, "frailty_sd must be >= 0"),
        ({"frailty_sd": float("inf")}, "frailty_sd must be a finite number"),
        ({"censoring": 1.0}, r"censoring rate must be in \[0, 1\)"),
        ({"censoring": -0.1}, r"censoring rate must be in \[0, 1\)"),
        ({"censoring": "0.7"}, "censoring must be a target rate"),
        ({"censoring": 0.98, "n_patients": 10}, "censoring rate 0.98 .* cannot be met with 10 patients"),
    ],
)
def test_bad_knobs_refused(tmp_path, kwargs, message):
    args = {"n_patients": 8, "slide_size": (512, 512), "render_slides": False, **kwargs}
    with pytest.raises(InputError, match=message):
        generate_synthetic_cohort(tmp_path / "out", **args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--censoring", "abc"], "--censoring must be a number such as 0.7 or a range LO,HI"),
        (["--censoring", "0.1,0.2,0.3"], "--censoring must be"),
        (["--planted-fraction", "0.3"], "--planted-fraction must be a range LO,HI"),
        (["--signal", "pathology"], "--signal takes modality=multiplier items"),
        (["--signal", "pathology=x"], "--signal takes modality=multiplier items"),
        (["--signal", "foo=1"], "--signal: unknown modality 'foo'"),
        (["--frailty-sd", "-1"], "frailty_sd must be >= 0"),
    ],
)
def test_cli_refuses_bad_values_naming_the_option(tmp_path, args, message):
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", "--out", str(out), "--n-patients", "8", "--no-slides", *args])
    assert r.exit_code != 0
    assert isinstance(r.exception, InputError)
    assert re.search(message, str(r.exception)), str(r.exception)
    assert not out.exists()


def test_parsers():
    assert parse_numbers("0.7", "--x") == 0.7 and parse_numbers(" 0.6, 0.8 ", "--x") == (0.6, 0.8)
    assert parse_signal("pathology=0, genomic=2") == {"pathology": 0.0, "genomic": 2.0}
    assert parse_signal("") == {}
