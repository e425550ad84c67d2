"""Tests of survpgc.clinical: templates, normalisation, sentences, encoding cache and token loading."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from survpgc.clinical import (
    DEFAULT_FIELDS,
    FIELD_SPECS,
    POST_DIAGNOSIS_FIELDS,
    ClinicalTokens,
    build_sentences,
    draw_variant,
    encode_clinical,
    encode_clinical_cli,
    is_missing,
    list_builtin_templates,
    load_clinical_tokens,
    load_templates,
    normalize_value,
    read_clinical_manifest,
    read_template_csv,
    sentences_table,
)
from survpgc.clinical.templates import builtin_template_path
from survpgc.data.cohort import CLINICAL_FIELDS, load_builtin, open_cohort
from survpgc.data.dataset import SurvivalDataset, collate_survival
from survpgc.data.tokens import TokenSource
from survpgc.encoders.text import TextEncoder, create_text_encoder
from survpgc.errors import ConfigError, DataError, InputError
from survpgc.synth import generate_synthetic_cohort

#: SHA-256 of the paper's published templates_20.csv, which survpgc ships as the ``survpgc-paper`` set.
PAPER_TEMPLATES_20_SHA256 = "512f0dbcf31e6139d9ede34189e86de73a1970c0686852431e38d1441e8b839a"
PLACEHOLDERS = [s.placeholder for s in FIELD_SPECS.values() if s.placeholder]
_PH_RE = re.compile(r"(?<![A-Za-z])(?:" + "|".join(PLACEHOLDERS) + r")(?![A-Z])")


@pytest.fixture(scope="module")
def lihc():
    return load_builtin("tcga-lihc")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    generate_synthetic_cohort(d, n_patients=12, render_slides=False)
    return open_cohort(d)


class HashEncoder(TextEncoder):
    """Deterministic fake encoder: a vector from the SHA-256 of the sentence; counts calls and loads."""

    name = "hash"

    def __init__(self, dim: int = 8, tag: str = "v1"):
        super().__init__(normalize=False)
        self._d, self.tag, self.n_loads = dim, tag, 0
        self.seen: list[str] = []

    @property
    def identity(self) -> str:
        return f"hash|{self._d}|{self.tag}"

    @property
    def dim(self) -> int:
        return self._d

    def _load(self) -> None:
        self.n_loads += 1

    def _encode_batch(self, sentences):
        self.seen.extend(sentences)
        return torch.stack([self.vector(s) for s in sentences])

    def vector(self, s: str) -> torch.Tensor:
        h = hashlib.sha256(s.encode()).digest()
        return torch.tensor([b / 255.0 + 0.01 for b in h[: self._d]], dtype=torch.float32)


def assert_clean(sentences):
    for s in sentences:
        assert s and s == s.strip(), repr(s)
        assert "  " not in s, s
        assert not _PH_RE.search(s), f"placeholder left in {s!r}"
        assert not re.search(r"\bnan\b|\bNone\b|<NA>|\bNaT\b", s, re.IGNORECASE), s
        assert not re.search(r"\s[.,;:!?]", s), s
        assert s[-1] in ".!?", s


# ----------------------------------------------------------------------------- templates
def test_builtin_template_sets():
    assert list_builtin_templates() == ["default", "survpgc-paper"]
    assert DEFAULT_FIELDS == CLINICAL_FIELDS
    assert not set(POST_DIAGNOSIS_FIELDS) & set(DEFAULT_FIELDS)
    assert set(POST_DIAGNOSIS_FIELDS) == {"pharmaceutical_therapy", "radiation_therapy"}
    for name in list_builtin_templates():
        ts = load_templates(name)
        for f in DEFAULT_FIELDS:
            assert ts.n_variants(f) == 20
            assert len(set(ts.templates[f])) == 20
            assert all(FIELD_SPECS[f].placeholder in t for t in ts.templates[f])
            assert ts.missing[f] and all("not" in m.lower() or m.startswith("No ") for m in ts.missing[f])
        assert ts.n_variants("prior_malignancy") == 10
        assert all(re.search(r"\b(no|not|never|lacks)\b", t, re.I) for t in ts.negative["radiation_therapy"])
        assert len(ts.digest()) == 64
    assert load_templates().digest() != load_templates("survpgc-paper").digest()
    assert load_templates("default").digest() == load_templates(builtin_template_path("default")).digest()


def paper_templates_file(tmp_path: Path, n: int) -> Path:
    """The paper's ``templates_<n>.csv``: the header and first ``n`` rows of its ``templates_20.csv`` (the
    shipped ``survpgc-paper`` file), with the CRLF line ends of the published files -- byte for byte."""
    lines = builtin_template_path("survpgc-paper").read_text(encoding="utf-8").splitlines()
    path = tmp_path / f"templates_{n}.csv"
    path.write_bytes("".join(f"{line}\r\n" for line in lines[: n + 1]).encode("utf-8"))
    return path


@pytest.mark.parametrize("n", [1, 3, 5, 10, 20])
def test_paper_template_files_load(n, lihc, tmp_path):
    ts = load_templates(paper_templates_file(tmp_path, n))
    shipped = load_templates("survpgc-paper")
    for f in DEFAULT_FIELDS:
        assert ts.n_variants(f) == n
        assert ts.templates[f] == shipped.templates[f][:n]
    table = build_sentences(lihc, ts, n_templates=n, seed=1)
    assert set(table["template_index"]) <= set(range(n))
    assert_clean(table["sentence"])


def test_shipped_paper_set_is_the_papers_file(tmp_path):
    shipped = builtin_template_path("survpgc-paper")
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == PAPER_TEMPLATES_20_SHA256
    a = read_template_csv(paper_templates_file(tmp_path, 20))
    b = read_template_csv(shipped)
    assert a == b and len(a) == 10


def test_template_csv_validation(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("AGE_TEMPLATE,SEX_TEMPLATE\nThe patient is old.,Sex: SEX.\n")
    with pytest.raises(DataError, match=r"line 2, column 'AGE_TEMPLATE'.*placeholder 'AGE'"):
        read_template_csv(bad)
    bad.write_text("AGE_TEMPLATE\nAGE years and SEX.\n")
    with pytest.raises(DataError, match="another field"):
        read_template_csv(bad)
    ok = tmp_path / "mine.csv"
    ok.write_text("AGE_TEMPLATE,FOO_TEMPLATE\nAge AGE years.,x\nIn the AGEth year.,\n")
    assert read_template_csv(ok) == {"age": ["Age AGE years.", "In the AGEth year."]}
    ts = load_templates(ok)
    with pytest.raises(InputError, match="no template for field 'subtype'"):
        build_sentences(pd.DataFrame({"age": [50]}, index=pd.Index(["c1"], name="case_id")), ts)
    table = build_sentences(
        pd.DataFrame({"age": [50.7, None]}, index=pd.Index(["c1", "c2"], name="case_id")),
        ts,
        fields=["age"],
        n_templates=2,
    )
    assert set(table["sentence"]) <= {"Age 50 years.", "In the 50th year.", "The age at diagnosis was not reported."}
    with pytest.raises(InputError, match="2 variant"):
        build_sentences(
            pd.DataFrame({"age": [50]}, index=pd.Index(["c1"], name="case_id")), ts, fields=["age"], n_templates=3
        )
    with pytest.raises(InputError, match="neither a built-in"):
        load_templates(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("stage", "Stage IIIA", "stage IIIA"),
        ("stage", "stage iiia", "stage IIIA"),
        ("stage", "IVB", "stage IVB"),
        ("stage", "Stage 3A", "stage IIIA"),
        ("stage", "Stage I", "stage I"),
        ("stage", "Stage X", None),
        ("stage", "not reported", None),
        ("stage", "[Not Available]", None),
        ("edition", "7th", "7th"),
        ("edition", 7, "7th"),
        ("edition", 6.0, "6th"),
        ("edition", "seventh", "7th"),
        ("edition", "AJCC 8th edition", "8th"),
        ("edition", "1", "1st"),
        ("age", 58.9, "58"),
        ("age", np.int64(61), "61"),
        ("age", "72 years", "72"),
        ("age", "90+", "90"),
        ("age", float("nan"), None),
        ("sex", "MALE", "male"),
        ("sex", "F", "female"),
        ("race", "Black or African American", "black or african american"),
        ("race", "unknown", None),
        ("race", "[Not Evaluated]", None),
        ("text", "Hepatocellular carcinoma", "hepatocellular carcinoma"),
        ("text", "Invasive IDC  carcinoma", "invasive IDC carcinoma"),
        ("text", "--", None),
        ("bool", "YES", True),
        ("bool", 0, False),
        ("bool", None, None),
    ],
)
def test_normalize_value(kind, raw, expected):
    assert normalize_value(kind, raw) == expected


def test_normalize_errors_and_missing():
    for v in (None, float("nan"), pd.NA, "", "  ", "Not Reported", "[Unknown]", "N/A"):
        assert is_missing(v)
    assert not is_missing("white") and not is_missing(0)
    with pytest.raises(DataError, match="days"):
        normalize_value("age", 21000)
    with pytest.raises(DataError, match="not a number"):
        normalize_value("age", "sixty")
    with pytest.raises(DataError, match="yes/no"):
        normalize_value("bool", "maybe")
    with pytest.raises(InputError):
        normalize_value("weight", 3)
    cases = pd.DataFrame({"age": [50, -3]}, index=pd.Index(["ok", "TCGA-BAD"], name="case_id"))
    with pytest.raises(DataError, match=r"case 'TCGA-BAD', field 'age'"):
        build_sentences(cases, fields=["age"])


# ----------------------------------------------------------------------------- sentences
def test_same_seed_same_sentences_and_order_independent(lihc):
    a = build_sentences(lihc, n_templates=5, seed=3)
    b = build_sentences(lihc, n_templates=5, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = build_sentences(lihc, n_templates=5, seed=4)
    assert (a["sentence"] != c["sentence"]).mean() > 0.5
    shuffled = lihc.cases.sample(frac=1.0, random_state=0).iloc[:100]
    d = build_sentences(shuffled, n_templates=5, seed=3)
    key = ["case_id", "field"]
    merged = d.merge(a, on=key, suffixes=("", "_full"))
    assert len(merged) == 600 and (merged["sentence"] == merged["sentence_full"]).all()
    assert list(a.columns) == ["case_id", "field", "value", "missing", "template_index", "sentence", "masked"]
    assert list(a["field"][:6]) == list(DEFAULT_FIELDS) and a["case_id"].iloc[0] == lihc.case_ids[0]
    assert draw_variant(3, "TCGA-X", "age", 1) == 0


def test_n_templates_honoured(lihc):
    ts = load_templates()
    t3 = build_sentences(lihc, ts, n_templates=3)
    assert set(t3["template_index"]) == {0, 1, 2}
    for f in DEFAULT_FIELDS:
        rows = t3[(t3.field == f) & ~t3.missing]
        ph = FIELD_SPECS[f].placeholder
        for idx, val, sent in zip(rows["template_index"], rows["value"], rows["sentence"], strict=True):
            assert sent == ts.templates[f][idx].replace(ph, val)
    t1 = build_sentences(lihc, ts, n_templates=1)
    assert set(t1["template_index"]) == {0}
    assert t1[t1.field == "subtype"]["sentence"].nunique() == 1
    t20 = build_sentences(lihc, ts, n_templates=20)
    for f in DEFAULT_FIELDS:
        assert set(t20[t20.field == f]["template_index"]) == set(range(20)), f
    assert t20[t20.field == "subtype"]["sentence"].nunique() == 20  # one subtype in LIHC: 20 phrasings
    with pytest.raises(InputError, match="n_templates"):
        build_sentences(lihc, n_templates=0)
    with pytest.raises(InputError, match="fewer than n_templates=21"):
        build_sentences(lihc, n_templates=21)


@pytest.mark.parametrize("templates", ["default", "survpgc-paper"])
def test_no_empty_slots_placeholders_or_nan(templates, lihc, synth):
    for cohort in (lihc, synth):
        table = build_sentences(cohort, templates, n_templates=20, seed=0)
        assert_clean(table["sentence"])
        present = table[~table["missing"]]
        for val, sent in zip(present["value"], present["sentence"], strict=True):
            assert val in sent
        assert not table["masked"].any()


def test_missing_values_phrase_and_mask(lihc):
    ts = load_templates()
    phrase = build_sentences(lihc, n_templates=20)
    miss = phrase[phrase["missing"]]
    assert len(miss) == int(lihc.cases["stage"].isna().sum() + lihc.cases["race"].isna().sum()) == 30
    for f, s in zip(miss["field"], miss["sentence"], strict=True):
        assert s in ts.missing[f]
    assert "The tumour stage was not reported." in set(build_sentences(lihc)["sentence"])
    masked = build_sentences(lihc, missing="mask")
    assert (masked["masked"] == masked["missing"]).all() and masked["masked"].sum() == 30
    assert (masked.loc[masked.masked, "sentence"] == "").all() and (
        masked.loc[masked.masked, "template_index"] == -1
    ).all()
    with pytest.raises(InputError, match="missing must be"):
        build_sentences(lihc, missing="drop")


def test_absent_column_is_missing_for_every_case(caplog):
    cases = pd.DataFrame({"age": [40, 50]}, index=pd.Index(["a", "b"], name="case_id"))
    with caplog.at_level(logging.WARNING, logger="survpgc"):
        t = build_sentences(cases)
    assert "no column" in caplog.text
    assert t[t.field == "race"]["missing"].all() and not t[t.field == "age"]["missing"].any()


def test_post_diagnosis_fields_need_opt_in(caplog):
    cases = pd.DataFrame(
        {"age": [40, 50, 60], "pharmaceutical_therapy": ["yes", "No", None], "prior_malignancy": [0, 1, "no"]},
        index=pd.Index(["a", "b", "c"], name="case_id"),
    )
    with pytest.raises(InputError, match="leak"):
        build_sentences(cases, fields=["age", "pharmaceutical_therapy"])
    with pytest.raises(InputError, match="unknown clinical field"):
        build_sentences(cases, fields=["age", "treatment"])
    with caplog.at_level(logging.WARNING, logger="survpgc"):
        t = build_sentences(
            cases, fields="age,pharmaceutical_therapy,prior_malignancy", allow_post_diagnosis=True, n_templates=3
        )
    assert "leak" in caplog.text
    ts = load_templates()
    ph = t[t.field == "pharmaceutical_therapy"].set_index("case_id")
    assert ph.loc["a", "sentence"] in ts.templates["pharmaceutical_therapy"][:3]
    assert ph.loc["b", "sentence"] in ts.negative["pharmaceutical_therapy"][:3]
    assert ph.loc["c", "missing"] and "not reported" in ph.loc["c", "sentence"]
    assert list(ph["value"]) == ["yes", "no", ""]
    pm = t[t.field == "prior_malignancy"].set_index("case_id")
    assert list(pm["value"]) == ["no", "yes", "no"]
    # without the flag, pre-diagnosis extras are fine
    assert len(build_sentences(cases, fields=["prior_malignancy"])) == 3


# ----------------------------------------------------------------------------- encoding + cache
def test_encode_clinical_layout_cache_and_tokens(lihc, tmp_path):
    out = tmp_path / "clin"
    enc = HashEncoder()
    s1 = encode_clinical(lihc, out, encoder=enc, n_templates=5, seed=2)
    assert (s1.n_cases, s1.n_encoded, s1.n_cached, s1.dim) == (354, 354, 0, 8)
    assert enc.n_calls == 1 and s1.n_sentences_encoded == len(set(enc.seen)) == len(enc.seen)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "sentences.csv", "tokens"]
    assert len(list((out / "tokens").glob("*.pt"))) == 354
    assert not list(out.rglob("*.tmp"))
    # sentences.csv is exactly what was encoded
    table = sentences_table(out)
    expected = build_sentences(lihc, n_templates=5, seed=2)
    assert list(table["sentence"]) == list(expected["sentence"])
    assert list(table["case_id"]) == list(expected["case_id"])
    man = read_clinical_manifest(out)
    assert man["fields"] == list(DEFAULT_FIELDS) and man["n_templates"] == 5 and man["seed"] == 2
    assert man["encoder_identity"] == enc.identity and man["template_hash"] == load_templates().digest()
    # tokens: rows are the encoder's vectors of the case's sentences, in field order
    tok = load_clinical_tokens(out)
    assert isinstance(tok, ClinicalTokens) and isinstance(tok, TokenSource)
    assert (tok.dim, tok.n_tokens, tok.fields) == (8, 6, tuple(DEFAULT_FIELDS))
    cid = lihc.case_ids[7]
    x, m = tok.get(cid)
    sents = expected[expected.case_id == cid]["sentence"].tolist()
    torch.testing.assert_close(x, torch.stack([enc.vector(s) for s in sents]))
    assert m.dtype == torch.bool and m.all()
    # rerun: everything cached, the encoder is neither called nor loaded
    fresh = HashEncoder()
    s2 = encode_clinical(lihc, out, encoder=fresh, n_templates=5, seed=2)
    assert (s2.n_encoded, s2.n_cached, s2.n_sentences_encoded, s2.dim) == (0, 354, 0, 8)
    assert fresh.n_calls == 0 and fresh.n_loads == 0
    # a corrected value re-encodes only that case
    changed = lihc.cases.copy()
    changed.loc[cid, "stage"] = "Stage IV"
    s3 = encode_clinical(changed, out, encoder=fresh, n_templates=5, seed=2)
    assert (s3.n_encoded, s3.n_cached) == (1, 353) and fresh.n_calls == 1
    # a deleted token file is rebuilt
    (out / "tokens" / f"{cid}.pt").unlink()
    assert encode_clinical(changed, out, encoder=fresh, n_templates=5, seed=2).n_encoded == 1
    # another configuration is refused in the same folder unless overwrite
    with pytest.raises(InputError, match=r"another configuration.*n_templates"):
        encode_clinical(lihc, out, encoder=fresh, n_templates=1, seed=2)
    with pytest.raises(InputError, match="encoder_identity"):
        encode_clinical(lihc, out, encoder=HashEncoder(tag="v2"), n_templates=5, seed=2)
    s4 = encode_clinical(lihc, out, encoder=HashEncoder(), n_templates=1, seed=2, overwrite=True)
    assert (s4.n_encoded, s4.n_cached) == (354, 0)


def test_encode_clinical_mask_policy_and_subsets(lihc, tmp_path):
    enc = HashEncoder()
    s = encode_clinical(lihc, tmp_path / "m", encoder=enc, missing="mask")
    assert s.n_masked == 30
    tok = load_clinical_tokens(tmp_path / "m")
    no_stage = lihc.cases.index[lihc.cases["stage"].isna()][0]
    x, m = tok.get(no_stage)
    j = DEFAULT_FIELDS.index("stage")
    assert not m[j] and m.sum() == 5 and torch.all(x[j] == 0)
    assert "The tumour stage was not reported." not in enc.seen
    sub = load_clinical_tokens(tmp_path / "m", case_ids=lihc.case_ids[:3])
    assert sub.get(lihc.case_ids[3]) is None and sub.get(lihc.case_ids[0]) is not None
    with pytest.raises(DataError, match="no clinical tokens"):
        load_clinical_tokens(tmp_path / "m", case_ids=["TCGA-NOPE"])
    # the tokens feed SurvivalDataset / collate_survival as the clinical modality
    ds = SurvivalDataset(lihc, [no_stage, lihc.case_ids[0]], modalities=("clinical",), clinical=tok)
    batch = collate_survival([ds[0], ds[1]])
    assert batch["clin"].shape == (2, 6, 8) and batch["has_clin"].all()
    assert batch["clin_mask"][0].tolist() == m.tolist() and batch["clin_mask"][1].all()
    with pytest.raises(DataError, match="manifest"):
        load_clinical_tokens(tmp_path)


def test_encode_clinical_odd_case_ids_and_foreign_folder(tmp_path):
    cases = pd.DataFrame({"age": [40, 50], "sex": ["female", "male"]}, index=pd.Index(["a/b c", "..x"], name="case_id"))
    s = encode_clinical(cases, tmp_path / "o", encoder=HashEncoder(), fields=["age", "sex"])
    assert s.n_cases == 2
    files = sorted(p.name for p in (tmp_path / "o" / "tokens").iterdir())
    assert all("/" not in f and not f.startswith(".") for f in files) and len(files) == 2
    tok = load_clinical_tokens(tmp_path / "o")
    assert tok.get("a/b c")[0].shape == (2, 8)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a clinical-token folder"):
        encode_clinical(cases, foreign, encoder=HashEncoder(), fields=["age"])


# ----------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def minilm():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            enc = create_text_encoder("minilm")
        except ConfigError as exc:
            pytest.skip(str(exc))
        yield enc.load()
        torch.set_num_threads(threads)


def test_encode_synthetic_cohort_with_minilm(synth, minilm, tmp_path):
    s = encode_clinical(synth, tmp_path / "s", encoder=minilm, n_templates=3)
    assert (s.n_cases, s.dim, s.encoder) == (12, 384, "minilm")
    tok = load_clinical_tokens(tmp_path / "s")
    table = sentences_table(tmp_path / "s")
    cid = synth.case_ids[0]
    x, m = tok.get(cid)
    ref = minilm.encode(table[table.case_id == cid]["sentence"].tolist())
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-5)
    assert m.all() and x.shape == (6, 384)
    stage = table[table.field == "stage"].set_index("case_id")
    other = next(c for c in synth.case_ids if stage.loc[c, "value"] != stage.loc[cid, "value"])
    j = DEFAULT_FIELDS.index("stage")
    assert not torch.allclose(tok.get(other)[0][j], x[j], atol=1e-3)


def test_encode_clinical_cli_on_builtin_lihc(minilm, tmp_path):
    out = tmp_path / "lihc"
    s = encode_clinical_cli("tcga-lihc", str(out), encoder="minilm")
    assert (s.n_cases, s.n_encoded, s.dim, s.n_templates) == (354, 354, 384, 1)
    assert "354 cases" in s.describe()
    again = encode_clinical_cli("tcga-lihc", str(out), encoder="minilm")
    assert (again.n_encoded, again.n_cached) == (0, 354)
    tok = load_clinical_tokens(out)
    np.testing.assert_allclose(torch.linalg.norm(tok.get("TCGA-2Y-A9GS")[0], dim=1).numpy(), 1.0, atol=1e-5)
