"""Bundles trained on the real TCGA-LIHC tables meet breast-cancer (TCGA-BRCA) input: refused, not misapplied."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from survpgc.config import load_config
from survpgc.data.cohort import open_cohort
from survpgc.deploy.bundle import InputMismatchError, check_population, load_bundle
from survpgc.deploy.fit import train_bundle
from survpgc.deploy.predict import predict_cohort

BRCA = Path(__file__).parent / "data" / "tcga_brca_sample"


@pytest.fixture(scope="module")
def lihc_genomic_bundle(tmp_path_factory):
    cfg = load_config(
        None,
        [
            "cohort.source=tcga-lihc",
            "genomic.kind=flat",
            "train.batch_size=16",
            "models=[{name: snn, params: {modality: genomic}}]",
        ],
    )
    out = tmp_path_factory.mktemp("lihc") / "snn"
    train_bundle(cfg, out, epochs=1)
    return load_bundle(out)


def test_bundle_records_the_training_subtypes(lihc_genomic_bundle):
    assert lihc_genomic_bundle.manifest["training_cohort"]["subtypes"] == {"Hepatocellular carcinoma": 354}


def test_lihc_bundle_refuses_brca_tumours_in_one_line(lihc_genomic_bundle):
    brca = open_cohort(BRCA, survival="optional")
    with pytest.raises(InputMismatchError) as exc:
        predict_cohort(lihc_genomic_bundle, brca)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("population mismatch: bundle ")
    assert "['Hepatocellular carcinoma']" in msg and "40 of 40 cases of other subtypes" in msg
    assert "'Ductal and Lobular Neoplasms' (37)" in msg and "--allow-other-population" in msg


def test_forced_prediction_on_brca_warns_about_subtypes(lihc_genomic_bundle, caplog):
    """The bundle's 1,550 LIHC rnaseq genes all exist in the BRCA table: the genes alone cannot tell the two
    cancers apart, which is why the bundle records and checks the training subtypes."""
    brca = open_cohort(BRCA, survival="optional")
    with caplog.at_level(logging.WARNING):
        df = predict_cohort(lihc_genomic_bundle, brca, allow_other_population=True)
    assert len(df) == 40 and df["risk"].notna().all()
    text = caplog.text
    assert "40 of 40 cases have subtypes the bundle was not trained on" in text
    assert len(lihc_genomic_bundle.inputs["genomic"]["columns"]) == 1550 and "genes" not in text


def test_lihc_bundle_predicts_lihc_without_population_warning(lihc_genomic_bundle, caplog):
    lihc = open_cohort("tcga-lihc")
    with caplog.at_level(logging.WARNING):
        df = predict_cohort(lihc_genomic_bundle, lihc)
    assert len(df) == 354
    assert "not trained on" not in caplog.text


def test_population_check_rules(lihc_genomic_bundle):
    """A minority of unseen subtypes is a warning; no recorded subtypes (older bundles) is no check."""

    class Fake:
        name = "mixed"

        def __init__(self, subtypes):
            import pandas as pd

            ids = pd.Index([f"c{i}" for i in range(len(subtypes))], name="case_id")
            self.cases = pd.DataFrame({"subtype": subtypes}, index=ids)

    check_population(lihc_genomic_bundle, Fake(["Hepatocellular carcinoma"] * 3 + ["Other"]))  # 1 of 4: warned
    with pytest.raises(InputMismatchError):
        check_population(lihc_genomic_bundle, Fake(["Hepatocellular carcinoma"] + ["Other"] * 3))
    check_population(lihc_genomic_bundle, Fake([None, None]))  # subtypes unknown: nothing to compare
