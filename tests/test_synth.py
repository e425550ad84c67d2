"""The synthetic tri-modal cohort: files, slides readable by openslide and tiffslide, ground truth."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from survpgc.errors import InputError
from survpgc.survival import harrell_cindex
from survpgc.synth import (
    CLASS_CODES,
    COEFFICIENTS,
    COHORT_COLUMNS,
    MASK_DOWNSAMPLE,
    PATHWAYS,
    SynthResult,
    generate_synthetic_cohort,
)
from survpgc.synth.truth import censor_scale, censored_count_range, oracle_cindex

SMALL = {"n_patients": 10, "slide_size": (1024, 768)}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> SynthResult:
    return generate_synthetic_cohort(tmp_path_factory.mktemp("a") / "cohort", seed=0, **SMALL)


@pytest.fixture(scope="module")
def small_again(tmp_path_factory) -> SynthResult:
    return generate_synthetic_cohort(tmp_path_factory.mktemp("b") / "elsewhere", seed=0, **SMALL)


@pytest.fixture(scope="module")
def small_other_seed(tmp_path_factory) -> SynthResult:
    return generate_synthetic_cohort(tmp_path_factory.mktemp("c") / "cohort", seed=1, **SMALL)


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> SynthResult:
    return generate_synthetic_cohort(tmp_path_factory.mktemp("d") / "cohort")


# ------------------------------------------------------------------------------------------- layout
def test_files_written(small):
    root = small.out_dir
    assert isinstance(small, SynthResult) and small.n_patients == 10 and small.seed == 0
    for p in (small.cohort_csv, small.omics_csv, small.truth_csv, small.truth_json):
        assert p.is_file() and p.parent == root
    assert len(small.slide_paths) == 10 and all(p.is_file() for p in small.slide_paths)
    assert len(small.mask_paths) == 10 and all(p.is_file() for p in small.mask_paths)
    assert sorted(p.name for p in (root / "slides").iterdir()) == [f"SYN-{i:04d}-DX1.tiff" for i in range(1, 11)]
    # the temporary build directory was renamed away, nothing left next to out_dir
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_cohort_table(small):
    df = pd.read_csv(small.cohort_csv)
    assert tuple(df.columns) == COHORT_COLUMNS
    assert df["case_id"].tolist() == [f"SYN-{i:04d}" for i in range(1, 11)]
    assert (df["slide_id"] == df["case_id"] + "-DX1.tiff").all()
    assert df["age"].dtype.kind == "i" and df["age"].between(18, 100).all()
    assert set(df["sex"]) <= {"male", "female"}
    assert set(df["race"].dropna()) <= {
        "white",
        "asian",
        "black or african american",
        "american indian or alaska native",
    }
    assert df["stage"].dropna().str.fullmatch(r"Stage (I|II|III|IV)[ABC]?").all()
    assert set(df["stage_edition"]) <= {"6th", "7th"}
    assert df["subtype"].map(type).eq(str).all() and df["oncotree_code"].notna().all()
    assert set(df["censorship"]) <= {0, 1} and df["censorship"].dtype.kind == "i"
    assert (df["survival_months"] > 0).all() and np.isfinite(df["survival_months"]).all()
    assert df["race"].isna().sum() >= 1 and df["stage"].isna().sum() >= 1
    assert df["race"].notna().sum() >= 8 and df["stage"].notna().sum() >= 8
    # empty cells on disk, not "nan" strings
    raw = small.cohort_csv.read_text()
    assert "nan" not in raw.lower().replace("adenocarcinoma", "")


def test_omics_table(small):
    om = pd.read_csv(small.omics_csv)
    cohort = pd.read_csv(small.cohort_csv)
    assert om.columns[0] == "case_id"
    assert all(c.endswith("_rnaseq") for c in om.columns[1:])
    assert len(om.columns) - 1 >= 100
    assert set(om["case_id"]) < set(cohort["case_id"])  # some cases have no omics row
    assert 1 <= len(cohort) - len(om) <= 3
    values = om.drop(columns="case_id").to_numpy()
    assert np.isfinite(values).all() and abs(values.mean()) < 0.3 and 0.6 < values.std() < 1.4
    truth = json.loads(small.truth_json.read_text())
    genes = {c.removesuffix("_rnaseq") for c in om.columns[1:]}
    assert set(truth["omics"]["gene_to_pathway"]) <= genes
    assert sorted(truth["omics"]["cases_without_omics"]) == sorted(set(cohort["case_id"]) - set(om["case_id"]))


def test_loader_reads_the_cohort(small):
    cohort_mod = pytest.importorskip("survpgc.data.cohort")
    if not hasattr(cohort_mod, "load_tcga"):
        pytest.skip("load_tcga not available")
    c = cohort_mod.load_tcga(small.out_dir)
    assert len(c) == 10 and c.omics is not None and len(c.omics) < 10
    assert c.slides["slide_path"].notna().all()


# ------------------------------------------------------------------------------------------- slides
@pytest.mark.parametrize("reader", ["openslide", "tiffslide"])
def test_slides_open_with_mpp_and_levels(small, reader):
    mod = pytest.importorskip(reader)
    opener = mod.OpenSlide if reader == "openslide" else mod.TiffSlide
    with opener(str(small.slide_paths[0])) as s:
        props = s.properties
        assert float(props[f"{reader}.mpp-x"]) == 0.5 and float(props[f"{reader}.mpp-y"]) == 0.5
        assert float(props[f"{reader}.objective-power"]) == 20
        assert s.level_count == 3
        assert s.level_dimensions == ((1024, 768), (256, 192), (64, 48))
        assert tuple(s.level_downsamples) == pytest.approx((1.0, 4.0, 16.0))
        region = np.asarray(s.read_region((0, 0), 2, (64, 48)).convert("RGB"))
        assert region.shape == (48, 64, 3) and region.std() > 5


def test_openslide_and_tiffslide_agree(small):
    openslide = pytest.importorskip("openslide")
    tiffslide = pytest.importorskip("tiffslide")
    path = str(small.slide_paths[1])
    with openslide.OpenSlide(path) as a, tiffslide.TiffSlide(path) as b:
        ra = np.asarray(a.read_region((100, 200), 0, (300, 300)).convert("RGB"), dtype=int)
        rb = np.asarray(b.read_region((100, 200), 0, (300, 300)).convert("RGB"), dtype=int)
    assert np.abs(ra - rb).max() <= 2


def _region_stats(slide, labels: np.ndarray, code: int, n: int = 12) -> np.ndarray:
    """Mean RGB and dark-pixel share of ``n`` level-0 blocks well inside regions of class ``code``."""
    inside = cv2.erode((labels == code).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(inside)
    assert len(ys), f"no interior block of class {code}"
    idx = np.linspace(0, len(ys) - 1, min(n, len(ys))).astype(int)
    out = []
    for y, x in zip(ys[idx], xs[idx], strict=True):
        px = np.asarray(
            slide.read_region((int(x) * MASK_DOWNSAMPLE, int(y) * MASK_DOWNSAMPLE), 0, (16, 16)).convert("RGB"),
            dtype=float,
        ).reshape(-1, 3)
        out.append([*px.mean(0), (px.min(1) < 140).mean()])
    return np.asarray(out)


def test_mask_matches_slide_content(small):
    openslide = pytest.importorskip("openslide")
    truth = json.loads(small.truth_json.read_text())
    assert truth["masks"]["downsample"] == MASK_DOWNSAMPLE
    for slide_path, mask_path in list(zip(small.slide_paths, small.mask_paths, strict=True))[:3]:
        mask = _read_png(mask_path)
        labels = _read_png(mask_path.with_name(mask_path.stem + "_labels.png"))
        assert mask.dtype == np.uint8 and mask.shape == (768 // MASK_DOWNSAMPLE, 1024 // MASK_DOWNSAMPLE)
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, labels == CLASS_CODES["tumour"])
        with openslide.OpenSlide(str(slide_path)) as s:
            tumour = _region_stats(s, labels, CLASS_CODES["tumour"])
            background = _region_stats(s, labels, CLASS_CODES["background"])
            stroma = _region_stats(s, labels, CLASS_CODES["stroma"])
        r, g, b, dark = tumour.mean(0)
        assert r < 225 and g < r and g < b and dark > 0.15  # purple-pink with dark nuclei
        assert (background[:, :3] > 225).all() and (background[:, 3] == 0).all()  # near white, no nuclei
        assert stroma[:, 3].mean() < dark  # stroma: few nuclei
        assert stroma[:, 0].mean() > stroma[:, 1].mean() + 40  # stroma: pink


def test_texture_fraction_is_the_mask_fraction(small):
    truth = pd.read_csv(small.truth_csv)
    for mask_path, frac in zip(small.mask_paths, truth["texture_fraction"], strict=True):
        labels = _read_png(mask_path.with_name(mask_path.stem + "_labels.png"))
        tumour = (_read_png(mask_path) == 255).sum()
        assert tumour / (labels > 0).sum() == pytest.approx(frac, abs=1e-6)
    assert truth["texture_fraction"].between(0.02, 0.8).all()


# ------------------------------------------------------------------------------------------- determinism
def test_same_seed_byte_identical(small, small_again):
    a, b = _hashes(small.out_dir), _hashes(small_again.out_dir)
    assert len(a) == 4 + 10 + 2 * 10
    assert a == b


def test_other_seed_differs(small, small_other_seed):
    a, c = _hashes(small.out_dir), _hashes(small_other_seed.out_dir)
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k] != c[k]]
    assert {"cohort.csv", "omics.csv.gz", "truth.csv", "truth.json"} <= set(differing)
    assert sum(k.startswith("slides/") for k in differing) == 10


def test_without_slides_same_tables_and_masks(small, tmp_path):
    r = generate_synthetic_cohort(tmp_path / "noslides", seed=0, render_slides=False, **SMALL)
    assert r.slide_paths == () and not (r.out_dir / "slides").exists()
    a, b = _hashes(small.out_dir), _hashes(r.out_dir)
    for k, v in b.items():
        if k != "truth.json":
            assert a[k] == v, k
    assert r.cindex_true == small.cindex_true


# ------------------------------------------------------------------------------------------- ground truth
def test_truth_consistent(small):
    truth = pd.read_csv(small.truth_csv)
    meta = json.loads(small.truth_json.read_text())
    cohort = pd.read_csv(small.cohort_csv)
    assert meta["model"]["coefficients"] == COEFFICIENTS
    lp = sum(COEFFICIENTS[k] * truth[f"{k}_score"] for k in ("texture", "stage", "age", "pathway"))
    np.testing.assert_allclose(truth["true_risk"], lp, atol=1e-5)
    event = truth["event_time"] <= truth["censor_time"]
    np.testing.assert_array_equal(cohort["censorship"].to_numpy(), (~event).astype(int).to_numpy())
    expected = np.maximum(np.minimum(truth["event_time"], truth["censor_time"]), 0.5)
    np.testing.assert_allclose(cohort["survival_months"], expected, atol=0.006)
    assert meta["censoring_rate"] == pytest.approx(cohort["censorship"].mean())
    assert meta["seed"] == 0 and meta["generator_version"] and meta["generator"] == "survpgc.synth"
    assert meta["slides"]["mpp"] == 0.5 and meta["slides"]["objective_power"] == 20
    assert set(meta["omics"]["pathways"]) == set(PATHWAYS)
    # the pathway score is recoverable from the omics table (pathway-level mean expression)
    om = pd.read_csv(small.omics_csv).set_index("case_id")
    signs = meta["model"]["scores"]["pathway"]["sign"]
    est = sum(s * om[[f"{g}_rnaseq" for g in PATHWAYS[p]]].mean(axis=1) for p, s in signs.items())
    t = truth.set_index("case_id").loc[om.index, "pathway_score"]
    assert np.corrcoef(est, t)[0, 1] > 0.9


def test_default_cohort_truth(default):
    meta = json.loads(default.truth_json.read_text())
    cohort = pd.read_csv(default.cohort_csv)
    truth = pd.read_csv(default.truth_csv)
    assert len(cohort) == 40 and len(default.slide_paths) == 40
    assert 0.6 <= default.censoring_rate <= 0.8
    assert cohort["censorship"].mean() == pytest.approx(default.censoring_rate)
    assert default.cindex_true > 0.7 and meta["cindex_true"] == pytest.approx(default.cindex_true, abs=1e-6)
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    c = sksurv_metrics.concordance_index_censored(
        cohort["censorship"].eq(0).to_numpy(), cohort["survival_months"].to_numpy(), truth["true_risk"].to_numpy()
    )[0]
    assert c == pytest.approx(default.cindex_true)
    # median survival in months, realistic follow-up
    assert 1 < cohort["survival_months"].median() < 60 and cohort["survival_months"].max() > 24
    # higher tumour-texture fraction -> higher true risk
    assert np.corrcoef(truth["texture_fraction"], truth["true_risk"])[0, 1] > 0.3
    x = truth[["texture_score", "stage_score", "age_score", "pathway_score"]].to_numpy()
    coef, *_ = np.linalg.lstsq(x, truth["true_risk"].to_numpy(), rcond=None)
    np.testing.assert_allclose(coef, [COEFFICIENTS[k] for k in ("texture", "stage", "age", "pathway")], atol=1e-4)
    assert coef[0] > 0
    # the components are independent draws (no modality is a proxy of another)
    corr = np.corrcoef(x, rowvar=False)
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.5
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(default.slide_paths[-1])) as s:
        assert s.level_dimensions[0] == (3072, 2048) and s.level_count >= 2


def test_oracle_cindex_is_harrells_c(small):
    truth = pd.read_csv(small.truth_csv)
    cohort = pd.read_csv(small.cohort_csv)
    c = harrell_cindex(cohort["survival_months"], cohort["censorship"].eq(0), truth["true_risk"])
    assert c == small.cindex_true
    # no comparable pair (two deaths at the same time): NaN, written as null
    assert np.isnan(oracle_cindex(np.array([3.0, 3.0]), np.array([True, True]), np.array([0.1, 0.2])))


@pytest.mark.parametrize(("n", "censoring"), [(10, (0.6, 0.8)), (40, (0.6, 0.8)), (7, (0.0, 0.2)), (25, (0.32, 0.32))])
def test_censor_scale_censors_the_target_count(n, censoring):
    rng = np.random.default_rng(n)
    event_time = rng.weibull(1.2, n) * 80
    v = rng.exponential(1.0, n)
    scale = censor_scale(event_time, v, censoring)
    k_lo, k_hi = censored_count_range(censoring, n)
    target = int(np.clip(round(0.5 * sum(censoring) * n), k_lo, k_hi))
    assert int((scale * v < event_time).sum()) == target


def test_streams_keep_parts_apart(tmp_path):
    """Drawing the omics differently (more cases without a row) leaves masks, clinical table and risk alone."""
    args = {"n_patients": 12, "slide_size": (512, 512), "render_slides": False, "seed": 5}
    a = generate_synthetic_cohort(tmp_path / "a", omics_missing=0.1, **args)
    b = generate_synthetic_cohort(tmp_path / "b", omics_missing=0.3, **args)
    ha, hb = _hashes(a.out_dir), _hashes(b.out_dir)
    assert {k for k in ha if ha[k] != hb[k]} == {"omics.csv.gz", "truth.csv", "truth.json"}
    ta, tb = pd.read_csv(a.truth_csv), pd.read_csv(b.truth_csv)
    pd.testing.assert_frame_equal(ta.drop(columns="has_omics"), tb.drop(columns="has_omics"))
    assert ta["has_omics"].sum() > tb["has_omics"].sum()


def test_package_import_is_light():
    """Importing the package loads no heavy dependency; the names resolve on first use."""
    code = "import sys, survpgc.synth; print([m for m in ('pandas', 'cv2', 'tifffile', 'sksurv') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    import survpgc.synth as pkg

    assert pkg.generate_synthetic_cohort is generate_synthetic_cohort and pkg.MASK_DOWNSAMPLE == 16
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pkg.nope


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_patients": 3},
        {"n_patients": 4.0},
        {"n_patients": True},
        {"seed": -1},
        {"seed": "0"},
        {"slide_size": (1000, 768)},
        {"slide_size": (1024,)},
        {"slide_size": (128, 128)},
        {"censoring": (0.8, 0.6)},
        {"censoring": (0.6, 1.0)},
        {"censoring": 1.0},
        {"censoring": "0.7"},
        {"censoring": (0.61, 0.62), "n_patients": 10},
        {"omics_missing": 0.7},
        {"race_missing": -0.1},
        {"n_levels": 0},
        {"level_downsample": 1},
        {"tile_size": 100},
        {"jpeg_quality": 0},
        {"mpp": 0},
        {"mpp": float("nan")},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    args = {"n_patients": 4, "slide_size": (512, 512), **kwargs}
    with pytest.raises(InputError):
        generate_synthetic_cohort(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        generate_synthetic_cohort(out, n_patients=4, slide_size=(512, 512), render_slides=False)
    assert (out / "keep.txt").read_text() == "x"
    r = generate_synthetic_cohort(out, n_patients=4, slide_size=(512, 512), render_slides=False, overwrite=True)
    assert not (out / "keep.txt").exists() and r.cohort_csv.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # an empty existing directory is fine without overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_synthetic_cohort(empty, n_patients=4, slide_size=(512, 512), render_slides=False)
    assert (empty / "truth.json").is_file()
    # a file in the way
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        generate_synthetic_cohort(tmp_path / "file", n_patients=4, slide_size=(512, 512), overwrite=True)
