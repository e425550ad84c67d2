"""Tests of survpgc.data.features, survpgc.data.tokens and survpgc.data.dataset: feature files, token sources,
SurvivalDataset, collate_survival."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from survpgc.data.cohort import load_tcga
from survpgc.data.dataset import SurvivalDataset, collate_survival
from survpgc.data.features import feature_file_shape, read_feature_attrs, read_feature_file, write_feature_file
from survpgc.data.tokens import InMemoryTokens, OmicsVectorTokens, TokenSource
from survpgc.errors import DataError, InputError, NotFittedError
from survpgc.survival.binning import TimeBinner

DIM = 8


def make_features(n: int, offset: int = 0, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose column 0 encodes the patch index (offset + i); coords = (256 * idx, 512 * idx + 3)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n) + offset
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    feats[:, 0] = idx
    coords = np.stack([256 * idx, 512 * idx + 3], axis=1).astype(np.int64)
    return feats, coords


def patch_index(x: torch.Tensor) -> np.ndarray:
    return x[:, 0].round().to(torch.int64).numpy()


# ------------------------------------------------------------------------------- cohort fixture
SLIDES = {
    # case: [(slide stem, n_patches, suffix or None = no feature file)]
    "TCGA-AA-0001": [("TCGA-AA-0001-01Z-00-DX1", 30, ".h5")],
    "TCGA-AA-0002": [("TCGA-AA-0002-01Z-00-DX1", 10, ".h5"), ("TCGA-AA-0002-01Z-00-DX2", 7, ".h5")],
    "TCGA-AA-0003": [("TCGA-AA-0003-01Z-00-DX1", 12, None)],
    "TCGA-AA-0004": [("TCGA-AA-0004-01Z-00-DX1", 5, ".pt")],
    "TCGA-AA-0005": [("TCGA-AA-0005-01Z-00-DX1", 50, ".h5")],
}
OMICS_CASES = ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0004"]


@pytest.fixture
def cohort_dir(tmp_path: Path) -> tuple[Path, Path]:
    root, fdir = tmp_path / "coh", tmp_path / "feats"
    root.mkdir()
    fdir.mkdir()
    rows = []
    for i, (case, slides) in enumerate(SLIDES.items()):
        for j, (stem, n, sfx) in enumerate(slides):
            rows.append(
                {
                    "case_id": case,
                    "slide_id": f"{stem}.svs",
                    "age": 50 + i,
                    "sex": "male" if i % 2 else "female",
                    "race": "white",
                    "stage": "Stage II",
                    "stage_edition": "7th",
                    "subtype": "Hepatocellular carcinoma",
                    "survival_months": 10.0 * (i + 1),
                    "censorship": i % 2,
                }
            )
            if sfx is not None:
                feats, coords = make_features(n, offset=1000 * j, seed=10 * i + j)
                if sfx == ".pt":  # a .pt dict without coords
                    write_feature_file(fdir / f"{stem}.pt", feats)
                else:
                    write_feature_file(fdir / f"{stem}.h5", feats, coords, patch_size=256, encoder="toy")
    pd.DataFrame(rows).to_csv(root / "cohort.csv", index=False)
    om = pd.DataFrame(
        {"case_id": OMICS_CASES, "g1_rnaseq": [0.1, 0.2, 0.3], "g2_rnaseq": [1.0, 2.0, 3.0], "g3_cnv": [0, 1, -1]}
    )
    om.to_csv(root / "omics.csv", index=False)
    return root, fdir


@pytest.fixture
def cohort(cohort_dir):
    root, fdir = cohort_dir
    return load_tcga(root, feature_dir=fdir, on_missing_features="drop")


def clin_tokens() -> InMemoryTokens:
    # case 1: 3 tokens, last one padding; case 2: 2 tokens; case 5: 1 token; others: missing
    rng = np.random.default_rng(1)
    mapping = {
        "TCGA-AA-0001": rng.normal(size=(3, 4)),
        "TCGA-AA-0002": rng.normal(size=(2, 4)),
        "TCGA-AA-0005": rng.normal(size=4),
    }
    return InMemoryTokens(mapping, {"TCGA-AA-0001": np.array([True, True, False])})


def full_dataset(cohort, **kw) -> SurvivalDataset:
    kw.setdefault("clinical", clin_tokens())
    kw.setdefault("genomic", OmicsVectorTokens(cohort.omics))
    return SurvivalDataset(cohort, cohort.case_ids, **kw)


# ------------------------------------------------------------------------------- feature files
def test_h5_round_trip(tmp_path):
    feats, coords = make_features(20)
    p = write_feature_file(
        tmp_path / "s.h5", feats, coords, patch_size=256, mpp=0.5, encoder="uni_v1", encoder_dim=DIM, notes=None
    )
    f, c, attrs = read_feature_file(p)
    assert f.dtype == np.float32 and f.shape == (20, DIM)
    np.testing.assert_array_equal(f, feats)
    np.testing.assert_array_equal(c, coords)
    assert c.dtype == np.int64
    assert attrs["patch_size"] == 256 and attrs["mpp"] == 0.5 and attrs["encoder"] == "uni_v1"
    assert attrs["encoder_dim"] == DIM and "notes" not in attrs
    assert feature_file_shape(p) == (20, DIM)
    assert [q.name for q in tmp_path.iterdir()] == ["s.h5"]  # no temporary left behind


def test_h5_float16_kept_and_trident_attrs(tmp_path):
    feats, coords = make_features(6)
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:  # attributes on the coords dataset, as CLAM writes them
        f.create_dataset("features", data=feats.astype(np.float16))
        d = f.create_dataset("coords", data=coords.astype(np.int32))
        d.attrs["patch_level"] = 0
        f.attrs["slide_id"] = np.bytes_(b"abc")
    f16, c, attrs = read_feature_file(p)
    assert f16.dtype == np.float16
    assert c.dtype == np.int64
    assert attrs == {"patch_level": 0, "slide_id": "abc"}


def test_pt_round_trip_dict_and_tensor(tmp_path):
    feats, coords = make_features(9)
    p = write_feature_file(tmp_path / "s.pt", feats, coords, encoder="toy", patch_size=np.int64(224))
    f, c, attrs = read_feature_file(p)
    np.testing.assert_array_equal(f, feats)
    np.testing.assert_array_equal(c, coords)
    assert attrs == {"encoder": "toy", "patch_size": 224}

    torch.save(torch.from_numpy(feats).to(torch.bfloat16), tmp_path / "plain.pt")
    f, c, attrs = read_feature_file(tmp_path / "plain.pt")
    assert c is None and attrs == {}
    assert f.dtype == np.float32 and f.shape == (9, DIM)
    np.testing.assert_allclose(f, feats, rtol=1e-2, atol=1e-2)

    torch.save({"features": torch.from_numpy(feats)}, tmp_path / "nocoords.pt")
    f, c, _ = read_feature_file(tmp_path / "nocoords.pt")
    assert c is None and f.shape == (9, DIM)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _write_h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_features", "no 'features'"),
        ("nan", "NaN/inf"),
        ("inf_f16", "NaN/inf"),
        ("zero_patches", "zero patches"),
        ("coords_mismatch", "'coords' has 4 rows"),
        ("coords_shape", "shape (n_patches, 2)"),
        ("ndim", "must be 2-D"),
        ("int_features", "floating point"),
        ("not_hdf5", "cannot be read as an HDF5"),
        ("missing_file", "not found"),
        ("pt_pickle", "weights_only"),
        ("pt_not_pt", "cannot be read as a torch"),
        ("pt_dict_no_features", "no 'features'"),
        ("pt_wrong_type", "expected a 2-D tensor"),
        ("suffix", "unknown feature-file type"),
    ],
)
def test_bad_feature_files(tmp_path, case, message):
    feats, coords = make_features(5)
    p = tmp_path / f"{case}.h5"
    if case == "missing_features":
        _write_h5(p, coords=coords)
    elif case == "nan":
        bad = feats.copy()
        bad[3, 2] = np.nan
        _write_h5(p, features=bad, coords=coords)
    elif case == "inf_f16":
        bad = feats.astype(np.float16)
        bad[1, 1] = np.inf
        _write_h5(p, features=bad)
    elif case == "zero_patches":
        _write_h5(p, features=np.zeros((0, DIM), np.float32), coords=np.zeros((0, 2), np.int64))
    elif case == "coords_mismatch":
        _write_h5(p, features=feats, coords=coords[:4])
    elif case == "coords_shape":
        _write_h5(p, features=feats, coords=np.zeros((5, 3), np.int64))
    elif case == "ndim":
        _write_h5(p, features=feats[:, 0])
    elif case == "int_features":
        _write_h5(p, features=feats.astype(np.int32))
    elif case == "not_hdf5":
        p.write_text("case_id,slide_id\nA,B\n")
    elif case == "missing_file":
        pass
    elif case == "pt_pickle":
        p = tmp_path / "evil.pt"
        with open(p, "wb") as fh:
            pickle.dump({"features": _Evil()}, fh, protocol=2)
    elif case == "pt_not_pt":
        p = tmp_path / "garbage.pt"
        p.write_bytes(b"\x00\x01garbage")
    elif case == "pt_dict_no_features":
        p = tmp_path / "nofeat.pt"
        torch.save({"feats": torch.from_numpy(feats)}, p)
    elif case == "pt_wrong_type":
        p = tmp_path / "list.pt"
        torch.save([torch.from_numpy(feats)], p)
    elif case == "suffix":
        p = tmp_path / "x.npy"
        np.save(p, feats)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_feature_file(p)
    assert p.name in str(info.value)


def test_writer_validates_and_overwrites_atomically(tmp_path):
    feats, coords = make_features(5)
    bad = feats.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_feature_file(tmp_path / "a.h5", bad)
    with pytest.raises(InputError, match="4 rows"):
        write_feature_file(tmp_path / "a.h5", feats, coords[:4])
    with pytest.raises(DataError, match="unknown feature-file type"):
        write_feature_file(tmp_path / "a.txt", feats)
    assert list(tmp_path.iterdir()) == []
    write_feature_file(tmp_path / "a.h5", feats, coords)
    write_feature_file(tmp_path / "a.h5", feats[:2], coords[:2])
    assert read_feature_file(tmp_path / "a.h5")[0].shape == (2, DIM)
    assert [q.name for q in tmp_path.iterdir()] == ["a.h5"]


# ------------------------------------------------------------------------------- token sources
def test_token_sources(cohort):
    src = clin_tokens()
    assert isinstance(src, TokenSource) and src.dim == 4 and src.n_tokens is None
    x, m = src.get("TCGA-AA-0001")
    assert x.dtype == torch.float32 and x.shape == (3, 4) and m.tolist() == [True, True, False]
    assert src.get("TCGA-AA-0005")[0].shape == (1, 4)
    assert src.get("TCGA-AA-0003") is None and "TCGA-AA-0003" not in src

    om = OmicsVectorTokens(cohort.omics)
    assert om.dim == 3 and om.n_tokens == 1
    x, m = om.get("TCGA-AA-0002")
    assert x.shape == (1, 3) and m.tolist() == [True]
    np.testing.assert_allclose(x[0].numpy(), [0.2, 2.0, 1.0])
    assert om.get("TCGA-AA-0003") is None
    sub = OmicsVectorTokens(cohort.omics, columns=["g3_cnv", "g1_rnaseq"])
    np.testing.assert_allclose(sub.get("TCGA-AA-0004")[0].numpy(), [[-1.0, 0.3]], rtol=1e-6)
    with pytest.raises(InputError, match="unknown omics column"):
        OmicsVectorTokens(cohort.omics, columns=["nope"])
    assert OmicsVectorTokens(None).get("TCGA-AA-0001") is None

    with pytest.raises(InputError, match="token dim"):
        InMemoryTokens({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))})
    with pytest.raises(InputError, match="mask"):
        InMemoryTokens({"a": np.zeros((2, 3))}, {"a": np.array([1, 0])})
    with pytest.raises(InputError, match="NaN"):
        InMemoryTokens({"a": np.full((2, 3), np.nan)})
    with pytest.raises(InputError, match="dim"):
        InMemoryTokens({})
    assert InMemoryTokens({}, dim=5).dim == 5


# ------------------------------------------------------------------------------- dataset
def test_items_shapes_and_missing_modalities(cohort):
    assert cohort.feature_paths("TCGA-AA-0003") == []  # slide without features dropped, case kept
    ds = full_dataset(cohort)
    assert len(ds) == 5 and ds.dims == {"pathology": DIM, "clinical": 4, "genomic": 3}
    by_id = {ds[i]["case_id"]: ds[i] for i in range(len(ds))}

    it = by_id["TCGA-AA-0001"]
    assert it["time"].dtype == torch.float32 and it["time"].item() == pytest.approx(10.0)
    assert it["event"].dtype == torch.bool and bool(it["event"]) is True
    assert it["bin"].dtype == torch.int64 and it["bin"].item() == -1
    assert it["path"].shape == (30, DIM) and it["path"].dtype == torch.float32
    assert it["path_mask"].all() and it["path_mask"].shape == (30,)
    assert it["path_coords"].dtype == torch.int64
    assert (it["path_slide"] == 0).all()
    assert it["has_path"] and it["has_clin"] and it["has_gen"]
    assert it["clin_mask"].tolist() == [True, True, False]

    miss = by_id["TCGA-AA-0003"]  # no feature file, no clinical tokens, no omics
    assert miss["path"].shape == (0, DIM) and miss["path_mask"].shape == (0,)
    assert miss["path_coords"].shape == (0, 2) and miss["path_slide"].shape == (0,)
    assert miss["clin"].shape == (0, 4) and miss["gen"].shape == (0, 3)
    assert not miss["has_path"] and not miss["has_clin"] and not miss["has_gen"]

    pt_case = by_id["TCGA-AA-0004"]  # .pt file without coords
    assert pt_case["path"].shape == (5, DIM) and (pt_case["path_coords"] == -1).all()
    assert not pt_case["has_clin"] and pt_case["has_gen"]


def test_two_slide_case_concatenated(cohort):
    ds = SurvivalDataset(cohort, ["TCGA-AA-0002"], modalities=("pathology",))
    it = ds[0]
    assert it["path"].shape == (17, DIM)
    assert it["path_slide"].tolist() == [0] * 10 + [1] * 7
    expected = np.concatenate([np.arange(10), 1000 + np.arange(7)])
    np.testing.assert_array_equal(patch_index(it["path"]), expected)
    np.testing.assert_array_equal(it["path_coords"][:, 0].numpy(), 256 * expected)
    assert [Path(p).name for p in ds.feature_files(0)] == ["TCGA-AA-0002-01Z-00-DX1.h5", "TCGA-AA-0002-01Z-00-DX2.h5"]


def test_patch_sampling(cohort):
    ids = ["TCGA-AA-0005", "TCGA-AA-0002"]

    def make(**kw):
        return SurvivalDataset(cohort, ids, modalities=("pathology",), n_patches=20, **kw)

    ds = make(train=True, seed=3)
    a = ds[0]
    idx = patch_index(a["path"])
    assert a["path"].shape == (20, DIM) and len(set(idx.tolist())) == 20
    assert set(idx.tolist()) <= set(range(50))
    np.testing.assert_array_equal(a["path_coords"][:, 0].numpy(), 256 * idx)  # coords aligned with features
    np.testing.assert_array_equal(a["path_coords"][:, 1].numpy(), 512 * idx + 3)
    np.testing.assert_array_equal(patch_index(ds[0]["path"]), idx)  # same epoch -> same sample
    ds.set_epoch(1)
    idx1 = patch_index(ds[0]["path"])
    assert len(set(idx1.tolist())) == 20 and not np.array_equal(idx1, idx)
    # a fresh dataset with the same (seed, epoch) reproduces the samples
    ds2 = make(train=True, seed=3)
    np.testing.assert_array_equal(patch_index(ds2[0]["path"]), idx)
    ds2.set_epoch(1)
    np.testing.assert_array_equal(patch_index(ds2[0]["path"]), idx1)
    assert not np.array_equal(patch_index(make(train=True, seed=4)[0]["path"]), idx)
    # a bag smaller than n_patches is kept whole
    small = ds[1]
    assert small["path"].shape == (17, DIM) and small["path_slide"].tolist() == [0] * 10 + [1] * 7
    # evaluation: all patches, in file order
    ev = make(train=False)
    np.testing.assert_array_equal(patch_index(ev[0]["path"]), np.arange(50))
    np.testing.assert_array_equal(ev[0]["path_coords"][:, 0].numpy(), 256 * np.arange(50))
    # n_patches=None keeps every patch in training too
    full = SurvivalDataset(cohort, ids, modalities=("pathology",), n_patches=None, train=True)
    assert full[0]["path"].shape == (50, DIM)
    with pytest.raises(InputError):
        ds.set_epoch(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def test_collate_pad_invariance_and_masks(cohort):
    ds = full_dataset(cohort)
    items = [ds[i] for i in range(len(ds))]
    lengths = {"path": [30, 17, 0, 5, 50], "clin": [3, 2, 0, 0, 1], "gen": [1, 1, 0, 1, 0]}
    batch = collate_survival(items)
    assert batch["case_id"] == ds.case_ids
    assert batch["time"].shape == (5,) and batch["time"].dtype == torch.float32
    assert batch["event"].dtype == torch.bool and batch["bin"].tolist() == [-1] * 5
    assert batch["path"].shape == (5, 50, DIM) and batch["clin"].shape == (5, 3, 4) and batch["gen"].shape == (5, 1, 3)
    for key, ls in lengths.items():
        assert batch[f"{key}_mask"].dtype == torch.bool
        real = [int(batch[f"{key}_mask"][i].sum()) for i in range(5)]
        if key == "clin":
            ls = [2, 2, 0, 0, 1]  # case 1 has a padding token inside its own mask
        assert real == ls
        assert batch[f"has_{key}"].tolist() == [n > 0 for n in ls]
    assert not batch["path_mask"][2].any() and not batch["clin_mask"][2].any()
    # padding: zeros in features, -1 in coords/slide, only beyond each case's own length
    assert (batch["path"][1, 17:] == 0).all() and (batch["path_coords"][1, 17:] == -1).all()
    assert (batch["path_slide"][1, 17:] == -1).all() and batch["path_slide"][1, :17].tolist() == [0] * 10 + [1] * 7
    assert (batch["path_coords"][3, :5] == -1).all()  # file without coords
    # the pooled value of each case is the same alone and next to longer neighbours
    for key in ("path", "clin", "gen"):
        pooled = masked_mean(batch[key], batch[f"{key}_mask"])
        for i in range(5):
            alone = collate_survival([items[i]])
            assert alone[key].shape[1] == lengths[key][i]
            torch.testing.assert_close(pooled[i], masked_mean(alone[key], alone[f"{key}_mask"])[0], rtol=0, atol=1e-6)
            if lengths[key][i]:
                torch.testing.assert_close(
                    pooled[i], masked_mean(items[i][key][None], items[i][f"{key}_mask"][None])[0]
                )


def test_collate_batch_without_pathology(cohort):
    ds = full_dataset(cohort)
    miss = ds[ds.case_ids.index("TCGA-AA-0003")]
    b = collate_survival([miss, miss])
    assert b["path"].shape == (2, 0, DIM) and b["path_mask"].shape == (2, 0)
    assert b["path_coords"].shape == (2, 0, 2) and b["path_slide"].shape == (2, 0)
    assert b["clin"].shape == (2, 0, 4) and b["gen"].shape == (2, 0, 3)
    assert b["has_path"].tolist() == [False, False] and b["has_gen"].dtype == torch.bool
    with pytest.raises(InputError):
        collate_survival([])


def test_cache_avoids_disk_and_float16(cohort):
    cid = "TCGA-AA-0001"
    path = Path(cohort.feature_paths(cid)[0])
    ref = torch.from_numpy(read_feature_file(path)[0])
    ds16 = SurvivalDataset(cohort, [cid], modalities=("pathology",), cache=True, cache_dtype="float16")
    ds32 = SurvivalDataset(cohort, [cid], modalities=("pathology",), cache=True, cache_dtype="float32")
    nocache = SurvivalDataset(cohort, [cid], modalities=("pathology",))
    first16, first32 = ds16[0]["path"], ds32[0]["path"]
    assert ds16.cache_size == 1
    first16[:] = 123.0  # mutating a returned tensor must not corrupt the cache
    first32[:] = 123.0
    path.rename(path.with_suffix(".moved"))
    with pytest.raises(DataError, match="not found"):
        nocache[0]
    again16, again32 = ds16[0]["path"], ds32[0]["path"]
    assert again16.dtype == torch.float32 and again32.dtype == torch.float32
    torch.testing.assert_close(again16, ref, rtol=1e-3, atol=1e-3)
    assert not torch.equal(again16, ref)  # really went through float16
    torch.testing.assert_close(again32, ref, rtol=0, atol=0)
    ds16.clear_cache()
    with pytest.raises(DataError, match="not found"):
        ds16[0]


def test_feature_dim_mismatch_names_file(cohort):
    odd = Path(cohort.feature_paths("TCGA-AA-0002")[1])
    write_feature_file(odd, np.ones((4, DIM + 2), np.float32))
    ds = SurvivalDataset(cohort, ["TCGA-AA-0001", "TCGA-AA-0002"], modalities=("pathology",))
    assert ds[0]["path"].shape[1] == DIM
    with pytest.raises(DataError, match=f"{odd.name}: feature dim {DIM + 2} differs"):
        ds[1]


def test_bins_and_argument_checks(cohort):
    ids = cohort.case_ids
    t, e = cohort.survival(ids)
    binner = TimeBinner(2).fit(t, e)
    ds = SurvivalDataset(cohort, ids, bins=binner, modalities=("pathology",))
    assert [ds[i]["bin"].item() for i in range(len(ds))] == binner.transform(t).tolist()
    labels = np.array([1, 0, 1, 0, 1])
    ds = SurvivalDataset(cohort, ids, bins=labels, modalities=())
    assert [ds[i]["bin"].item() for i in range(5)] == labels.tolist()
    assert set(ds[0]) == {"case_id", "time", "event", "bin"}
    with pytest.raises(NotFittedError):
        SurvivalDataset(cohort, ids, bins=TimeBinner(2), modalities=())
    with pytest.raises(InputError, match="shape"):
        SurvivalDataset(cohort, ids, bins=labels[:3], modalities=())
    with pytest.raises(InputError, match="no `clinical` TokenSource"):
        SurvivalDataset(cohort, ids)
    with pytest.raises(InputError, match="unknown modality"):
        SurvivalDataset(cohort, ids, modalities=("radiology",))
    with pytest.raises(InputError, match="no case"):
        SurvivalDataset(cohort, ["nope"], modalities=())
    with pytest.raises(InputError, match="duplicates"):
        SurvivalDataset(cohort, ids[:1] * 2, modalities=())
    with pytest.raises(InputError, match="cache_dtype"):
        SurvivalDataset(cohort, ids, modalities=(), cache_dtype="bfloat16")
    with pytest.raises(InputError, match="n_patches"):
        SurvivalDataset(cohort, ids, modalities=(), n_patches=0)
    with pytest.raises(IndexError):
        ds[5]
    no_feats = load_tcga(Path(cohort.meta["root"]))
    with pytest.raises(InputError, match="no feature files"):
        SurvivalDataset(no_feats, modalities=("pathology",))
    ds = SurvivalDataset(no_feats, modalities=("pathology",), path_dim=DIM)
    assert ds[0]["path"].shape == (0, DIM) and not ds[0]["has_path"]


def test_dataloader_single_process(cohort):
    ds = full_dataset(cohort, train=True, n_patches=20)
    batches = list(DataLoader(ds, batch_size=3, collate_fn=collate_survival, num_workers=0))
    assert [len(b["case_id"]) for b in batches] == [3, 2]
    assert batches[0]["path"].shape == (3, 20, DIM)
    assert batches[1]["path"].shape == (2, 20, DIM)
    assert batches[1]["path_mask"].sum(dim=1).tolist() == [5, 20]


def test_dataloader_workers_reproducible(cohort):
    def epochs(num_workers: int) -> list[list[np.ndarray]]:
        ds = SurvivalDataset(cohort, modalities=("pathology",), train=True, n_patches=8, seed=7, cache=True)
        kw = {"persistent_workers": True} if num_workers else {}
        loader = DataLoader(ds, batch_size=3, collate_fn=collate_survival, num_workers=num_workers, **kw)
        out = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            out.append([b["path"][..., 0].round().to(torch.int64).numpy() for b in loader])
        return out

    serial, parallel = epochs(0), epochs(2)
    for es, ep in zip(serial, parallel, strict=True):
        for bs, bp in zip(es, ep, strict=True):
            np.testing.assert_array_equal(bs, bp)
    assert not np.array_equal(serial[0][0], serial[1][0])  # epochs differ, also in persistent workers


def test_read_feature_attrs_equals_the_full_read(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    for name in ("a.h5", "a.pt"):
        p = write_feature_file(tmp_path / name, x, np.zeros((5, 2), int), patch_size=256, mpp=0.5, slide_id="s1")
        attrs = read_feature_attrs(p)
        assert attrs == read_feature_file(p)[2]
        assert attrs["patch_size"] == 256 and attrs["slide_id"] == "s1"
    with pytest.raises(DataError, match="not found"):
        read_feature_attrs(tmp_path / "missing.h5")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"bad\.h5"):
        read_feature_attrs(tmp_path / "bad.h5")


def test_targets_give_bins_and_events_without_reading_items():
    """``SurvivalDataset.targets`` equals what the items carry (used to initialise the hazard bias)."""
    from survpgc.data.cohort import open_cohort
    from survpgc.data.dataset import SurvivalDataset

    cohort = open_cohort("tcga-lihc")
    ids = cohort.case_ids[:12]
    from survpgc.data.tokens import OmicsVectorTokens

    omics = OmicsVectorTokens(cohort.omics)
    ds = SurvivalDataset(cohort, ids, bins=np.arange(12) % 4, modalities=("genomic",), genomic=omics)
    bins, events = ds.targets
    assert bins.dtype == np.int64 and events.dtype == bool and len(bins) == len(events) == 12
    np.testing.assert_array_equal(bins, np.arange(12) % 4)
    np.testing.assert_array_equal(events, cohort.event[:12].astype(bool))
    np.testing.assert_array_equal(events, [bool(SurvivalDataset.__getitem__(ds, i)["event"]) for i in range(12)])
