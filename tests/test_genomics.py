"""Tests of survpgc.genomics: signatures and coverage, fold-safe normalisation, tokenizers, scFoundation
import, prepare_omics."""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from survpgc.data.cohort import Cohort, load_builtin, open_cohort
from survpgc.data.dataset import SurvivalDataset
from survpgc.data.tokens import OmicsVectorTokens
from survpgc.errors import DataError, InputError, NotFittedError
from survpgc.genomics import (
    GroupedOmicsTokens,
    OmicsScaler,
    ScFoundationTokens,
    feature_map,
    load_scfoundation,
    load_signatures,
    omics_tokens,
    prepare_omics,
    read_prepared_omics,
    select_genes,
)
from survpgc.models.layers import GroupSNNTokenizer


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lihc() -> Cohort:
    return load_builtin("tcga-lihc")


@pytest.fixture(scope="module")
def synth_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    from survpgc.synth import generate_synthetic_cohort

    d = tmp_path_factory.mktemp("synth") / "cohort"
    generate_synthetic_cohort(d, n_patients=10, render_slides=False)
    return open_cohort(d)


def raw_signature_csv(name: str) -> dict[str, set[str]]:
    """Independent reading of a shipped signature file: pathway -> set of gene symbols."""
    text = (resources.files("survpgc") / "resources" / "pathways" / name).read_text(encoding="utf-8")
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return {c: {g.strip() for g in df[c] if g.strip()} for c in df.columns}


def small_cohort(n: int = 6, with_omics: tuple[int, ...] = (0, 1, 2, 3)) -> Cohort:
    ids = [f"C{i}" for i in range(n)]
    cases = pd.DataFrame(
        {"time": np.arange(1, n + 1, dtype=float), "event": np.arange(n) % 2 == 0},
        index=pd.Index(ids, name="case_id"),
    )
    rng = np.random.default_rng(0)
    om = pd.DataFrame(
        rng.normal(size=(len(with_omics), 3)).astype(np.float32),
        index=pd.Index([ids[i] for i in with_omics], name="case_id"),
        columns=["TP53_rnaseq", "KRAS_rnaseq", "MYC_cnv"],
    )
    return Cohort(name="small", cases=cases, omics=om)


# ------------------------------------------------------------------------------------------- signatures
def test_shipped_signature_sets_load() -> None:
    combine = load_signatures("combine")
    assert len(combine) == 331
    assert len({g for v in combine.values() for g in v}) == 4999
    hallmarks = load_signatures("hallmarks")
    assert len(hallmarks) == 50 and all(k.startswith("HALLMARK_") for k in hallmarks)
    families = load_signatures("families")
    assert list(families) == [
        "Tumor Suppressor Genes",
        "Oncogenes",
        "Protein Kinases",
        "Cell Differentiation Markers",
        "Transcription Factors",
        "Cytokines and Growth Factors",
    ]
    raw = raw_signature_csv("combine_signatures.csv")
    assert {k: set(v) for k, v in combine.items()} == raw
    # duplicates removed, file order kept
    assert all(len(v) == len(set(v)) for v in families.values())
    with pytest.raises(InputError, match="unknown signature set"):
        load_signatures("nope")


def test_gmt_and_custom_signatures(tmp_path: Path) -> None:
    gmt = tmp_path / "s.gmt"
    gmt.write_text("P1\tdesc\tTP53\tKRAS\tTP53\nP2\thttp://x\tMYC\n", encoding="utf-8")
    assert load_signatures(gmt) == {"P1": ["TP53", "KRAS"], "P2": ["MYC"]}
    csv = tmp_path / "s.csv"
    csv.write_text("A,B\nTP53,MYC\nKRAS,\n", encoding="utf-8")
    assert load_signatures(csv) == {"A": ["TP53", "KRAS"], "B": ["MYC"]}
    with pytest.raises(DataError, match="without any gene"):
        load_signatures({"A": ["TP53"], "B": []})


def test_lihc_combine_rnaseq_coverage_numbers(lihc: Cohort) -> None:
    sel = select_genes(lihc.omics, "combine", ("rnaseq",))
    s = sel.summary
    # the number the issue asks to make visible, recomputed independently below
    assert s["n_signature_genes"] == 4999
    assert s["genes_present_by_type"] == {"rnaseq": 768, "cnv": 247, "mut": 22}
    assert s["n_genes_present"] == 768
    assert s["n_columns_outside"] == 1550 - 768
    assert s["n_pathways_no_gene"] == 149
    assert (s["n_pathways_kept"], s["n_pathways_dropped"]) == (182, 149)
    assert len(sel.columns) == 768 and all(c.endswith("_rnaseq") for c in sel.columns)

    raw = raw_signature_csv("combine_signatures.csv")
    rnaseq_genes = {c.removesuffix("_rnaseq") for c in lihc.omics.columns if c.endswith("_rnaseq")}
    assert len(set().union(*raw.values()) & rnaseq_genes) == 768
    cov = sel.coverage.set_index("pathway")
    for p, genes in raw.items():
        k = len(genes & rnaseq_genes)
        assert cov.loc[p, "n_genes"] == len(genes)
        assert cov.loc[p, "n_present_rnaseq"] == k
        assert cov.loc[p, "coverage"] == pytest.approx(k / len(genes))
        assert bool(cov.loc[p, "kept"]) == (k >= 1)
        if k:
            assert set(sel.groups[p]) == {f"{g}_rnaseq" for g in genes & rnaseq_genes}
    assert sel.dropped == [p for p in raw if not raw[p] & rnaseq_genes]
    assert set(cov.loc[sel.dropped, "reason"]) == {"no measured gene"}

    # all three data types: 996 genes measured in any of them
    s3 = select_genes(lihc.omics, "combine", "rnaseq,cnv,mut").summary
    assert (s3["n_genes_present"], s3["n_pathways_kept"], s3["n_columns"]) == (996, 208, 1037)


def test_lihc_min_coverage_drops_and_lists(lihc: Cohort) -> None:
    sel = select_genes(lihc.omics, "combine", min_coverage=0.1)
    cov = sel.coverage
    assert sel.summary["n_pathways_kept"] == 153 and len(sel.dropped) == 178
    low = cov.loc[cov["coverage"] < 0.1, "pathway"].tolist()
    assert sel.dropped == low
    assert (cov.loc[cov["kept"], "coverage"] >= 0.1).all()
    assert all(r.startswith(("coverage", "no measured")) for r in cov.loc[~cov["kept"], "reason"])
    assert set(sel.groups) == set(cov.loc[cov["kept"], "pathway"])
    # min_genes
    sel5 = select_genes(lihc.omics, "combine", min_genes=5)
    assert (sel5.coverage.loc[sel5.coverage["kept"], "n_present"] >= 5).all()
    assert sel5.summary["n_pathways_kept"] == int((sel.coverage["n_present"] >= 5).sum())


def test_lihc_hallmarks_and_families(lihc: Cohort) -> None:
    h = select_genes(lihc.omics, "hallmarks")
    assert (h.summary["n_pathways"], h.summary["n_pathways_kept"], h.summary["n_genes_present"]) == (50, 50, 688)
    f = select_genes(lihc.omics, "families")
    assert (f.summary["n_pathways"], f.summary["n_pathways_kept"], len(f.columns)) == (6, 6, 1550)
    f3 = select_genes(lihc.omics, "families", ("rnaseq", "cnv", "mut"))
    assert (len(f3.groups), len(f3.columns), f3.summary["n_genes_present"]) == (6, 1708, 1620)


def test_feature_map_and_select_rules() -> None:
    cols = ["tp53", "KRAS_rnaseq", "KRAS_cnv", "MYC_mut", "HLA_A_cnv", "other"]
    fm = feature_map(cols)
    assert fm["TP53"] == {"rnaseq": "tp53"}  # plain symbol = expression, case-insensitive key
    assert fm["KRAS"] == {"rnaseq": "KRAS_rnaseq", "cnv": "KRAS_cnv"}
    assert fm["HLA_A"] == {"cnv": "HLA_A_cnv"}
    with pytest.raises(DataError, match="both map to gene"):
        feature_map(["TP53", "TP53_rnaseq"])
    sig = {"P1": ["MYC", "KRAS", "TP53", "ABSENT"], "P2": ["HLA_A"], "P3": ["NOPE"]}
    sel = select_genes(cols, sig, ("rnaseq", "cnv", "mut"))
    # columns: union in the table's order; groups in table order too
    assert sel.columns == ["tp53", "KRAS_rnaseq", "KRAS_cnv", "MYC_mut", "HLA_A_cnv"]
    assert sel.groups == {"P1": ["tp53", "KRAS_rnaseq", "KRAS_cnv", "MYC_mut"], "P2": ["HLA_A_cnv"]}
    assert sel.group_indices() == [[0, 1, 2, 3], [4]]
    assert sel.dropped == ["P3"]
    row = sel.coverage.set_index("pathway").loc["P1"]
    assert (row["n_present"], row["n_present_rnaseq"], row["n_present_cnv"], row["n_present_mut"]) == (3, 2, 1, 1)
    assert row["genes_missing"] == "ABSENT" and row["coverage"] == pytest.approx(0.75)
    assert select_genes(cols, sig, ("cnv",)).groups == {"P1": ["KRAS_cnv"], "P2": ["HLA_A_cnv"]}
    with pytest.raises(DataError, match="no pathway"):
        select_genes(["A_rnaseq"], sig)
    with pytest.raises(InputError, match="data_types"):
        select_genes(cols, sig, ("protein",))
    with pytest.raises(InputError, match="min_coverage"):
        select_genes(cols, sig, min_coverage=1.5)


# ------------------------------------------------------------------------------------------- normalisation
def frame(values: np.ndarray, prefix: str = "r") -> pd.DataFrame:
    return pd.DataFrame(
        values, index=[f"{prefix}{i}" for i in range(len(values))], columns=[f"G{j}" for j in range(values.shape[1])]
    )


def test_scaler_never_sees_test_rows() -> None:
    rng = np.random.default_rng(1)
    train = frame(rng.normal(3.0, 2.0, size=(40, 5)), "tr")
    test = frame(rng.normal(3.0, 2.0, size=(10, 5)), "te")
    test_planted = test.copy()
    test_planted.iloc[0, 2] = 1e6  # an extreme value in a test row
    test_planted.iloc[1, 3] = -1e6

    for method in ("zscore", "minmax"):
        ref = OmicsScaler(method).fit(train)
        scaler = OmicsScaler(method).fit(train)
        full = scaler.transform(pd.concat([train, test_planted]))
        for attr in ("median_", "center_", "scale_"):
            np.testing.assert_array_equal(getattr(scaler, attr), getattr(ref, attr))
        pd.testing.assert_frame_equal(full.loc[train.index], ref.transform(train))
        assert full.loc["te0", "G2"] > 1e4  # the extreme value is scaled, not fitted on

    # the fold pipeline: statistics come from the train ids only, whatever the test rows hold
    all_rows = pd.concat([train, test])
    planted_rows = pd.concat([train, test_planted])
    a = omics_tokens(all_rows, "flat", train_ids=train.index)
    b = omics_tokens(planted_rows, "flat", train_ids=train.index)
    np.testing.assert_allclose(b.scaler.center_, train.to_numpy().mean(axis=0))
    np.testing.assert_allclose(b.scaler.scale_, train.to_numpy().std(axis=0))
    assert b.scaler.train_ids_ == list(train.index) and b.scaler.n_train_ == 40
    for cid in train.index:
        torch.testing.assert_close(a.get(cid)[0], b.get(cid)[0], rtol=0, atol=0)
    expected = (train.to_numpy() - train.to_numpy().mean(0)) / train.to_numpy().std(0)
    np.testing.assert_allclose(b.get("tr3")[0][0].numpy(), expected[3], rtol=1e-5, atol=1e-5)


def test_zscore_train_mean0_sd1_and_constant_columns() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(5.0, 3.0, size=(30, 4))
    x[:, 3] = 7.0  # constant on train
    train = frame(x)
    z = OmicsScaler().fit_transform(train).to_numpy(dtype=np.float64)
    np.testing.assert_allclose(z[:, :3].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[:, :3].std(0), 1.0, atol=1e-5)
    scaler = OmicsScaler().fit(train)
    assert scaler.constant_.tolist() == [False, False, False, True]
    new = frame(np.array([[0.0, 0.0, 0.0, 100.0]]), "x")
    assert scaler.transform(new).iloc[0, 3] == 0.0  # constant column -> 0 for every row
    assert (z[:, 3] == 0).all()


def test_minmax_range_and_clip() -> None:
    rng = np.random.default_rng(3)
    train = frame(rng.uniform(-5, 20, size=(25, 3)))
    m = OmicsScaler("minmax").fit_transform(train).to_numpy()
    np.testing.assert_allclose(m.min(0), -1.0, atol=1e-6)
    np.testing.assert_allclose(m.max(0), 1.0, atol=1e-6)
    hi = train.max().to_numpy()
    lo = train.min().to_numpy()
    beyond = frame((hi + (hi - lo))[None, :], "x")  # one range above the max -> 3
    np.testing.assert_allclose(OmicsScaler("minmax").fit(train).transform(beyond).to_numpy(), 3.0, rtol=1e-5)
    np.testing.assert_allclose(OmicsScaler("minmax", clip=True).fit(train).transform(beyond).to_numpy(), 1.0)
    with pytest.raises(InputError, match="clip"):
        OmicsScaler("zscore", clip=True)
    with pytest.raises(InputError, match="method"):
        OmicsScaler("rank")


def test_log_option() -> None:
    rng = np.random.default_rng(4)
    counts = frame(rng.poisson(50, size=(20, 3)).astype(float))
    got = OmicsScaler("zscore", log=True).fit_transform(counts).to_numpy()
    lx = np.log1p(counts.to_numpy())
    np.testing.assert_allclose(got, (lx - lx.mean(0)) / lx.std(0), rtol=1e-5, atol=1e-5)
    neg = counts.copy()
    neg.iloc[4, 1] = -0.5
    with pytest.raises(DataError, match=r"log=True.*negative.*G1"):
        OmicsScaler(log=True).fit(neg)
    fitted = OmicsScaler(log=True).fit(counts)
    with pytest.raises(DataError, match="negative"):
        fitted.transform(neg)


def test_nan_imputed_with_train_median() -> None:
    train = frame(np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0], [100.0, 40.0], [np.nan, 50.0]]))
    test = frame(np.array([[np.nan, np.nan], [1000.0, 1000.0], [1000.0, 1000.0]]), "te")
    scaler = OmicsScaler().fit(train)
    np.testing.assert_allclose(scaler.median_, [2.5, 35.0])  # medians of the observed train values
    out = scaler.transform(pd.concat([train, test]))
    as_median = scaler.transform(frame(np.array([[2.5, 35.0]]), "m"))
    np.testing.assert_allclose(out.loc["te0"].to_numpy(), as_median.iloc[0].to_numpy())
    np.testing.assert_allclose(out.loc["r1", "G1"], as_median.iloc[0, 1])
    # statistics are computed after imputation: train rows come out with mean 0 / sd 1
    z = out.loc[train.index].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-5)


def test_scaler_errors_and_roundtrip(tmp_path: Path) -> None:
    train = frame(np.arange(12, dtype=float).reshape(4, 3))
    with pytest.raises(NotFittedError):
        OmicsScaler().transform(train)
    bad = train.copy()
    bad.iloc[0, 0] = np.inf
    with pytest.raises(DataError, match="infinite"):
        OmicsScaler().fit(bad)
    scaler = OmicsScaler("minmax").fit(train)
    with pytest.raises(DataError, match="G2"):
        scaler.transform(train[["G0", "G1"]])
    path = scaler.save(tmp_path / "s" / "scaler.json")
    again = OmicsScaler.load(path)
    pd.testing.assert_frame_equal(again.transform(train), scaler.transform(train))
    assert again.train_ids_ == ["r0", "r1", "r2", "r3"]


# ------------------------------------------------------------------------------------------- tokenizers
def test_pathway_groups_index_the_flat_vector(lihc: Cohort) -> None:
    src = omics_tokens(lihc, "pathways", scaler=None)
    assert isinstance(src, GroupedOmicsTokens)
    assert src.n_tokens == 1 and src.dim == 768 and src.n_groups == 182
    assert src.groups == src.selection.group_indices(src.columns)
    raw = raw_signature_csv("combine_signatures.csv")
    case = lihc.omics.index[7]
    vec = src.get(case)[0][0].numpy()
    for g, name in enumerate(src.group_names):
        members = [c for c in lihc.omics.columns if c.endswith("_rnaseq") and c.removesuffix("_rnaseq") in raw[name]]
        np.testing.assert_array_equal(vec[src.groups[g]], lihc.omics.loc[case, members].to_numpy(np.float32))
    # a case without an omics row -> None, never an exception or a dropped patient
    no_omics = [c for c in lihc.case_ids if c not in lihc.omics.index]
    assert len(no_omics) == 23
    assert src.get(no_omics[0]) is None and no_omics[0] not in src
    # the groups drive the per-pathway SNNs
    x = torch.stack([src.get(c)[0] for c in lihc.omics.index[:3]])  # (3, 1, 768)
    assert GroupSNNTokenizer(src.groups, dim=8, hidden=8)(x).shape == (3, 182, 8)


def test_families_and_flat_tokens(lihc: Cohort) -> None:
    train = lihc.case_ids[:250]
    fam = omics_tokens(lihc, "families", train_ids=train)
    assert fam.group_names[0] == "Tumor Suppressor Genes" and fam.n_groups == 6
    assert fam.dim == 1708 and {c.rsplit("_", 1)[1] for c in fam.columns} == {"rnaseq", "cnv", "mut"}
    transformed = fam.scaler.transform(lihc.omics[fam.columns])
    case = lihc.omics.index[-1]
    for g, name in enumerate(fam.group_names):
        cols = fam.group_columns[name]
        np.testing.assert_allclose(
            fam.get(case)[0][0, fam.groups[g]].numpy(), transformed.loc[case, cols].to_numpy(), rtol=1e-6
        )
    # a scaler fitted before (e.g. loaded from a run directory) is reused as is, on a subset of its columns too
    reused = omics_tokens(lihc, "families", scaler=fam.scaler, data_types="rnaseq")
    assert reused.scaler is fam.scaler and reused.dim == 1550
    torch.testing.assert_close(reused.get(case)[0][0], fam.get(case)[0][0, : reused.dim])
    with pytest.raises(InputError, match="no statistics"):
        omics_tokens(lihc, "flat", scaler=fam.scaler)
    flat = omics_tokens(lihc, "flat", train_ids=train)
    assert type(flat) is OmicsVectorTokens and flat.dim == 2574 and flat.n_tokens == 1
    flat_rna = omics_tokens(lihc, "flat", train_ids=train, data_types="rnaseq", scaler="minmax")
    assert flat_rna.dim == 1550
    assert pickle.loads(pickle.dumps(fam)).groups == fam.groups
    with pytest.raises(InputError, match="train_ids"):
        omics_tokens(lihc, "pathways")
    with pytest.raises(InputError, match="kind"):
        omics_tokens(lihc, "genes", train_ids=train)


def test_missing_omics_is_a_mask_not_a_dropped_patient() -> None:
    cohort = small_cohort()
    om = cohort.omics.copy()
    om.loc["C3"] = np.nan  # a row with no value at all
    cohort = Cohort(name="small", cases=cohort.cases, omics=om)
    src = omics_tokens(cohort, "pathways", train_ids=["C0", "C1", "C2", "C4"], signatures={"P": ["TP53", "KRAS"]})
    assert src.get("C3") is None and src.get("C5") is None and src.get("C0") is not None
    ds = SurvivalDataset(cohort, modalities=("genomic",), genomic=src)
    assert len(ds) == 6
    has = [bool(ds[i]["has_gen"]) for i in range(6)]
    assert has == [True, True, True, False, False, False]
    # precomputed groups (groups.json) give the same tokens
    again = omics_tokens(cohort, "pathways", train_ids=["C0", "C1", "C2"], groups=src.group_columns)
    torch.testing.assert_close(again.get("C1")[0], src.get("C1")[0])


# ------------------------------------------------------------------------------------------- scFoundation
IDS = ["C0", "C1", "C2", "C4", "C5"]


def emb(n: int = 5, width: int = 3072, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def check_tokens(src: ScFoundationTokens, e: np.ndarray, ids: list[str]) -> None:
    assert (src.n_tokens, src.dim, len(src)) == (4, 768, len(ids))
    for i, cid in enumerate(ids):
        x, m = src.get(cid)
        assert x.shape == (4, 768) and m.all()
        for k in range(4):  # token k = values [768k, 768(k+1))
            np.testing.assert_array_equal(x[k].numpy(), e.reshape(len(ids), -1)[i, 768 * k : 768 * (k + 1)])


def test_scfoundation_formats(tmp_path: Path) -> None:
    cohort = small_cohort()
    e = emb()
    # .npy + sidecar ids (one per line, optional header)
    np.save(tmp_path / "emb.npy", e)
    (tmp_path / "emb.ids.txt").write_text("case_id\n" + "\n".join(IDS) + "\n", encoding="utf-8")
    src = load_scfoundation(tmp_path / "emb.npy", cases=cohort)
    check_tokens(src, e, IDS)
    assert src.get("C3") is None  # cohort case without an embedding -> missing modality
    # .npy + ids list, 3-D layout
    np.save(tmp_path / "emb3.npy", e.reshape(5, 4, 768))
    check_tokens(load_scfoundation(tmp_path / "emb3.npy", ids=IDS, cases=cohort.case_ids), e, IDS)
    # .npy + ids from the expression CSV fed to scFoundation
    pd.DataFrame({"case_id": IDS, "TP53": range(5)}).to_csv(tmp_path / "expr.csv", index=False)
    check_tokens(load_scfoundation(tmp_path / "emb.npy", ids=tmp_path / "expr.csv"), e, IDS)
    # .npz
    np.savez(tmp_path / "emb.npz", embeddings=e, ids=np.array(IDS))
    check_tokens(load_scfoundation(tmp_path / "emb.npz", cases=cohort), e, IDS)
    # .h5 with byte-string ids
    with h5py.File(tmp_path / "emb.h5", "w") as f:
        f["embeddings"] = e
        f["case_ids"] = np.array([s.encode() for s in IDS])
    check_tokens(load_scfoundation(tmp_path / "emb.h5", cases=cohort), e, IDS)
    # .csv: case_id + 3072 value columns
    df = pd.DataFrame(e, columns=[f"f{i}" for i in range(3072)])
    df.insert(0, "case_id", IDS)
    df.to_csv(tmp_path / "emb.csv", index=False, float_format="%.9g")
    check_tokens(load_scfoundation(tmp_path / "emb.csv", cases=cohort), e, IDS)
    # in a Dataset: the case without an embedding is kept with an empty genomic bag
    ds = SurvivalDataset(cohort, modalities=("genomic",), genomic=src)
    assert [bool(ds[i]["has_gen"]) for i in range(6)] == [True, True, True, False, True, True]
    assert ds[0]["gen"].shape == (4, 768)


def test_scfoundation_shape_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "bad.npy", emb(width=3000))
    with pytest.raises(DataError) as err:
        load_scfoundation(tmp_path / "bad.npy", ids=IDS)
    msg = str(err.value)
    assert "(5, 3000)" in msg and "3072" in msg and "4 × 768" in msg
    np.save(tmp_path / "bad3.npy", emb(width=3072).reshape(5, 8, 384))
    with pytest.raises(DataError, match=re.escape("(5, 8, 384)")):
        load_scfoundation(tmp_path / "bad3.npy", ids=IDS)
    np.save(tmp_path / "pooled.npy", emb(width=768))
    with pytest.raises(DataError, match="n_tokens=1"):
        load_scfoundation(tmp_path / "pooled.npy", ids=IDS)
    assert load_scfoundation(tmp_path / "pooled.npy", ids=IDS, n_tokens=1).n_tokens == 1
    np.save(tmp_path / "ok.npy", emb())
    with pytest.raises(DataError, match=r"5 embedding row.*4 case id"):
        load_scfoundation(tmp_path / "ok.npy", ids=IDS[:4])
    with pytest.raises(DataError, match="sidecar"):
        load_scfoundation(tmp_path / "ok.npy")
    nan = emb()
    nan[2, 10] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(DataError, match="'C2'"):
        load_scfoundation(tmp_path / "nan.npy", ids=IDS)
    with pytest.raises(InputError, match="unsupported"):
        (tmp_path / "x.parquet").write_bytes(b"")
        load_scfoundation(tmp_path / "x.parquet")


def test_scfoundation_id_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cohort = small_cohort()
    np.savez(tmp_path / "dup.npz", embeddings=emb(), ids=np.array(["C0", "C1", "C1", "C2", "C0"]))
    with pytest.raises(DataError, match=r"duplicate case id\(s\) 'C1', 'C0'|duplicate case id\(s\) 'C0', 'C1'"):
        load_scfoundation(tmp_path / "dup.npz")
    ids = ["C0", "C1", "TCGA-XX-0001", "C2", "GHOST"]
    np.savez(tmp_path / "unk.npz", embeddings=emb(), ids=np.array(ids))
    with pytest.raises(DataError, match=r"2 embedding id\(s\) are not cases.*'TCGA-XX-0001', 'GHOST'"):
        load_scfoundation(tmp_path / "unk.npz", cases=cohort)
    with caplog.at_level(logging.WARNING, logger="survpgc"):
        src = load_scfoundation(tmp_path / "unk.npz", cases=cohort, on_unknown="drop")
    assert src.case_ids == ["C0", "C1", "C2"] and "GHOST" in caplog.text
    # TCGA sample barcodes instead of case ids get a hint
    np.savez(tmp_path / "bar.npz", embeddings=emb(1), ids=np.array(["TCGA-AB-1234-01A"]))
    with pytest.raises(DataError, match="12 characters"):
        load_scfoundation(tmp_path / "bar.npz", cases=["TCGA-AB-1234"])
    with pytest.raises(InputError, match="on_unknown"):
        load_scfoundation(tmp_path / "unk.npz", on_unknown="ignore")
    with pytest.raises(InputError, match=r"\.npy files only"):
        load_scfoundation(tmp_path / "unk.npz", ids=ids)


# ------------------------------------------------------------------------------------------- prepare_omics
def check_prepared(out: Path, cohort: Cohort) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    for name in ("omics_selected.csv.gz", "groups.json", "coverage.csv", "coverage.txt", "omics_manifest.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    matrix, groups = read_prepared_omics(out)
    in_groups = {c for v in groups.values() for c in v}
    assert set(matrix.columns) == in_groups
    order = {c: i for i, c in enumerate(matrix.columns)}
    assert all([order[c] for c in v] == sorted(order[c] for c in v) for v in groups.values())
    assert list(matrix.index) == list(cohort.omics.index)
    np.testing.assert_allclose(
        matrix.to_numpy(), cohort.omics.loc[matrix.index, matrix.columns].to_numpy(), rtol=1e-6, atol=1e-6
    )
    raw = json.loads((out / "groups.json").read_text())
    assert list(raw) == list(groups)
    return matrix, groups


def test_prepare_omics_lihc(lihc: Cohort, tmp_path: Path) -> None:
    res = prepare_omics(lihc, "combine", ("rnaseq",), out_dir=tmp_path / "o")
    matrix, groups = check_prepared(tmp_path / "o", lihc)
    assert matrix.shape == (331, 768) and len(groups) == 182
    cov = pd.read_csv(tmp_path / "o" / "coverage.csv")
    assert len(cov) == 331 and int(cov["kept"].sum()) == 182 and int(cov["n_present_rnaseq"].max()) == 107
    text = (tmp_path / "o" / "coverage.txt").read_text()
    assert "rnaseq  768 of 4999" in text and "kept 182 of 331 pathways" in text and "331 of 354" in text
    manifest = json.loads((tmp_path / "o" / "omics_manifest.json").read_text())
    assert manifest["summary"]["n_genes_present"] == 768 and manifest["normalised"] is False
    assert res.selection.columns == list(matrix.columns)
    # the prepared folder drives the tokenizer
    src = omics_tokens(matrix, "pathways", groups=groups, scaler=None)
    assert src.groups == [[list(matrix.columns).index(c) for c in v] for v in groups.values()]
    # rerun with other options replaces the files
    prepare_omics("tcga-lihc", "hallmarks", "rnaseq,cnv", out_dir=tmp_path / "o", min_coverage=0.1)
    matrix2, groups2 = check_prepared(tmp_path / "o", lihc)
    assert len(groups2) == int(pd.read_csv(tmp_path / "o" / "coverage.csv")["kept"].sum())
    assert any(c.endswith("_cnv") for c in matrix2.columns)


def test_prepare_omics_synthetic(synth_cohort: Cohort, tmp_path: Path) -> None:
    for sig in ("hallmarks", "combine"):
        out = tmp_path / sig
        prepare_omics(synth_cohort, sig, out_dir=out)
        matrix, groups = check_prepared(out, synth_cohort)
        assert len(matrix) == len(synth_cohort.omics) < len(synth_cohort) and groups
    no_omics = Cohort(name="x", cases=synth_cohort.cases, omics=None)
    with pytest.raises(DataError, match="no omics"):
        prepare_omics(no_omics, out_dir=tmp_path / "none")
