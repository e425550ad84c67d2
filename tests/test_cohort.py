"""Cohort loading and validation: built-in TCGA-LIHC, generic tables, and each error on a crafted table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survpgc.data.cohort import (
    Cohort,
    ColumnMapping,
    builtin_path,
    list_builtin,
    load_builtin,
    load_cohort,
    load_tcga,
    open_cohort,
)
from survpgc.errors import DataError, InputError


@pytest.fixture(scope="module")
def lihc():
    return load_builtin("tcga-lihc")


def test_builtin_lihc_counts(lihc):
    s = lihc.summary()
    assert s["n_cases"] == 354
    assert s["n_events"] == 125
    assert s["coverage"]["omics"] == 331
    assert s["combinations"] == {"clinical + omics + slides": 331, "clinical + slides": 23}
    assert s["clinical_missing"]["stage"] == 21 and s["clinical_missing"]["race"] == 9
    assert lihc.time.min() > 0  # the five zero times were floored to one day, not dropped
    assert lihc.cases["event"].dtype == bool
    # outcome columns never survive as features
    assert not [c for c in lihc.cases.columns if c.startswith(("censorship", "survival_months"))]
    assert set(lihc.clinical_fields) == {"subtype", "age", "sex", "stage", "stage_edition", "race"}
    assert lihc.omics.shape == (331, 2574)
    assert "tcga-lihc" in list_builtin()


#: SHA-256 of the TCGA-LIHC table as published with the paper's data (checked once against the original).
LIHC_COHORT_SHA256 = "c4daefd3864c124d2f969bbd03cd442dad9c9f615e78bb82816b0c0a6f4cf0cc"


def test_builtin_is_the_published_table():
    import hashlib

    assert hashlib.sha256((builtin_path("tcga-lihc") / "cohort.csv").read_bytes()).hexdigest() == LIHC_COHORT_SHA256


def test_censorship_converted_once(lihc):
    raw = pd.read_csv(builtin_path("tcga-lihc") / "cohort.csv", dtype={"case_id": str}).set_index("case_id")
    np.testing.assert_array_equal(lihc.event, raw.loc[lihc.case_ids, "censorship"].to_numpy() == 0)


def test_endpoints():
    pfs = load_builtin("tcga-lihc", endpoint="pfs")
    raw = pd.read_csv(builtin_path("tcga-lihc") / "cohort.csv")
    assert pfs.event.sum() == int((raw["censorship_pfs"] == 0).sum())
    with pytest.raises(DataError, match="censorship_dss"):
        load_builtin("tcga-lihc", endpoint="dss")  # 7 missing DSS events: error by default...
    dss = load_builtin("tcga-lihc", endpoint="dss", on_invalid_survival="drop")  # ...or dropped on request
    assert len(dss) == 347
    with pytest.raises(InputError, match="endpoint"):
        load_builtin("tcga-lihc", endpoint="rfs")
    with pytest.raises(InputError, match="built-in"):
        load_builtin("tcga-xyz")


def test_open_cohort_and_subset(lihc):
    sub = lihc.subset(lihc.case_ids[:10])
    assert len(sub) == 10 and len(sub.slides) == 10
    assert set(sub.omics.index) <= set(sub.case_ids)
    with pytest.raises(InputError, match="no case"):
        lihc.subset(["nope"])
    assert len(open_cohort("tcga-lihc")) == 354


# ------------------------------------------------------------------- crafted tables
HEADER = "case_id,slide_id,age,sex,race,stage,stage_edition,subtype,survival_months,censorship\n"


def _write(tmp_path: Path, body: str, name: str = "cohort.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + body)
    return p


GOOD = (
    "A,A-1.svs,50,male,white,Stage I,7th,HCC,10.5,0\n"
    "B,B-1.svs,61,female,,Stage II,7th,HCC,20,1\n"
    "C,C-1.svs,70,male,asian,,6th,HCC,5,0\n"
)


def test_generic_loader_good(tmp_path):
    c = load_cohort(_write(tmp_path, GOOD))
    assert c.case_ids == ["A", "B", "C"]
    np.testing.assert_array_equal(c.event, [True, False, True])
    assert pd.isna(c.cases.loc["B", "race"]) and pd.isna(c.cases.loc["C", "stage"])


def test_several_slides_per_case(tmp_path):
    body = GOOD + "A,A-2.svs,50,male,white,Stage I,7th,HCC,10.5,0\n"
    c = load_cohort(_write(tmp_path, body))
    assert len(c) == 3
    assert sorted(c.slides_of("A")["slide_id"]) == ["A-1.svs", "A-2.svs"]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (GOOD + "A,A-2.svs,51,male,white,Stage I,7th,HCC,10.5,0\n", r"duplicate case id.*'A'.*line\(s\) 2, 5"),
        ("A,A.svs,50,male,white,Stage I,7th,HCC,,0\n", r"missing/non-numeric 'survival_months' at line\(s\) 2"),
        ("A,A.svs,50,male,white,Stage I,7th,HCC,-3,0\n", r"1 negative 'survival_months' at line 2 \(-3\)"),
        ("A,A.svs,50,male,white,Stage I,7th,HCC,3,2\n", r"'censorship' value\(s\) missing or not 0/1 at line\(s\) 2"),
        ("A,A.svs,50,male,white,Stage I,7th,HCC,3,yes\n", r"'censorship'.*line\(s\) 2"),
    ],
)
def test_validation_errors_name_file_row_column(tmp_path, body, match):
    p = _write(tmp_path, body)
    with pytest.raises(DataError, match=match) as info:
        load_cohort(p)
    assert str(p) in str(info.value)


def test_invalid_survival_drop_policy(tmp_path, caplog):
    p = _write(tmp_path, GOOD + "D,D.svs,50,male,white,Stage I,7th,HCC,0,1\n")
    c = load_cohort(p, on_invalid_survival="drop")
    assert c.case_ids == ["A", "B", "C"]
    assert "dropped" in caplog.text
    c2 = load_cohort(p, min_time=0.5)
    assert c2.cases.loc["D", "time"] == 0.5
    with pytest.raises(InputError, match="on_invalid_survival"):
        load_cohort(_write(tmp_path, "A,A.svs,1,m,w,S,7th,H,0,1\n", "x.csv"), on_invalid_survival="ignore")


def test_missing_columns_and_files(tmp_path):
    (tmp_path / "bad.csv").write_text("id,time\nA,3\n")
    with pytest.raises(DataError, match="column 'case_id' not found"):
        load_cohort(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="not found"):
        load_cohort(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="column 'survival_months' not found"):
        load_cohort(tmp_path / "bad.csv", mapping=ColumnMapping(case_id="id"))


def test_mapping_event_column_and_units(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("pid\tdays\tdead\tAge\nA\t365.25\t1\t40\nB\t730.5\t0\t50\n")
    m = ColumnMapping(
        case_id="pid", time="days", event="dead", censorship=None, time_unit="days", clinical={"age": "Age"}
    )
    c = load_cohort(p, mapping=m)
    np.testing.assert_allclose(c.time, [12.0, 24.0])
    np.testing.assert_array_equal(c.event, [True, False])
    assert c.cases.loc["A", "age"] == 40
    with pytest.raises(InputError, match="exactly one"):
        ColumnMapping(event="x", censorship="y")
    with pytest.raises(InputError, match="unknown column-mapping"):
        ColumnMapping.from_dict({"case": "x"})


def test_omics_validation(tmp_path):
    p = _write(tmp_path, GOOD)
    om = tmp_path / "omics.csv"
    om.write_text("case_id,G1_rnaseq,G2_rnaseq\nA,0.1,0.2\nB,0.3,0.4\nZ,1,1\n")
    with pytest.raises(DataError, match=r"omics row\(s\) match no case: \['Z'\]"):
        load_cohort(p, omics=om)
    c = load_cohort(p, omics=om, on_unmatched="drop")
    assert c.modality_table()["omics"].tolist() == [True, True, False]  # C kept, marked missing
    om.write_text("case_id,G1_rnaseq,G2_rnaseq\nA,nan,0.2\nB,0.3,inf\n")
    with pytest.raises(
        DataError,
        match=r"2 NaN/inf value\(s\) in 2 column\(s\): case 'A' column 'G1_rnaseq', case 'B' column 'G2_rnaseq'",
    ):
        load_cohort(p, omics=om)
    assert load_cohort(p, omics=om, omics_nonfinite="drop_columns").omics.shape == (2, 0)
    z = load_cohort(p, omics=om, omics_nonfinite="zero").omics
    assert z.loc["A", "G1_rnaseq"] == 0 and z.loc["B", "G2_rnaseq"] == 0
    om.write_text("case_id,G1_rnaseq\nA,high\n")
    with pytest.raises(DataError, match="non-numeric omics column"):
        load_cohort(p, omics=om)
    om.write_text("case_id,G1_rnaseq\nA,1\nA,2\n")
    with pytest.raises(DataError, match=r"duplicate case id\(s\) \['A'\]"):
        load_cohort(p, omics=om)


def test_slides_and_features(tmp_path):
    p = _write(tmp_path, GOOD)
    slides = tmp_path / "slides.csv"
    slides.write_text("case_id,slide_id\nB,B-2.svs\nQ,Q-1.svs\n")
    with pytest.raises(DataError, match=r"1 slide\(s\) belong to no case"):
        load_cohort(p, slides=slides)
    c = load_cohort(p, slides=slides, on_unmatched="drop")
    assert sorted(c.slides_of("B")["slide_id"]) == ["B-1.svs", "B-2.svs"]
    feat = tmp_path / "feat"
    feat.mkdir()
    (feat / "A-1.h5").write_bytes(b"")
    (feat / "B-1.pt").write_bytes(b"")
    with pytest.raises(DataError, match=r"1 of 3 slide\(s\) have no feature file.*C-1.svs"):
        load_cohort(p, feature_dir=feat)
    c = load_cohort(p, feature_dir=feat, on_missing_features="drop")
    mt = c.modality_table()
    assert mt["features"].tolist() == [True, True, False]
    assert c.feature_paths("A") == [feat / "A-1.h5"]
    with pytest.raises(DataError, match="does not exist"):
        load_cohort(p, feature_dir=tmp_path / "nope")
    dup = tmp_path / "dup.csv"
    dup.write_text("case_id,slide_id\nB,A-1.svs\n")
    with pytest.raises(DataError, match="more than one case"):
        load_cohort(p, slides=dup)


def test_tcga_layout_with_slide_folder(tmp_path):
    root = tmp_path / "coh"
    root.mkdir()
    _write(root, GOOD)
    (root / "slides").mkdir()
    (root / "slides" / "A-1.svs").write_bytes(b"x")
    c = load_tcga(root)
    mt = c.modality_table()
    assert mt["slides"].all() and mt["slide_files"].tolist() == [True, False, False]
    assert any("not found" in n for n in c.meta["notes"])
    with pytest.raises(DataError, match=r"cohort\.csv not found"):
        load_tcga(tmp_path)


def test_cohort_invariants():
    cases = pd.DataFrame({"time": [1.0, 2.0], "event": [True, False]}, index=pd.Index(["a", "a"], name="case_id"))
    with pytest.raises(DataError, match="duplicate"):
        Cohort("x", cases)
    cases = pd.DataFrame({"time": [0.0], "event": [True]}, index=pd.Index(["a"], name="case_id"))
    with pytest.raises(DataError, match="> 0"):
        Cohort("x", cases)


def test_feature_files_follow_the_extraction_naming_rule(tmp_path):
    """`survpgc extract` names features by `slide_stem` (image suffixes stripped too); the loader must agree."""
    body = "A,A-1.png,50,male,white,Stage I,7th,HCC,10.5,0\nB,B-1.svs,61,female,,Stage II,7th,HCC,20,1\n"
    p = _write(tmp_path, body)
    feat = tmp_path / "feat"
    feat.mkdir()
    (feat / "A-1.h5").write_bytes(b"")
    (feat / "B-1.h5").write_bytes(b"")
    c = load_cohort(p, feature_dir=feat)
    assert c.feature_paths("A") == [feat / "A-1.h5"] and c.feature_paths("B") == [feat / "B-1.h5"]
