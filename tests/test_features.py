"""Feature files in the TRIDENT layout: what TRIDENT's readers look up on ``coords``, files TRIDENT wrote, and
the round trip of every attribute."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from survpgc.data.cohort import load_cohort
from survpgc.data.dataset import SurvivalDataset
from survpgc.data.features import (
    TRIDENT_COORDS_ATTRS,
    read_feature_attrs,
    read_feature_file,
    trident_coords_attrs,
    write_feature_file,
)

#: What TRIDENT writes on ``coords`` and its readers (feature extraction, visualisation, slide encoders such as
#: TITAN, which takes ``coords.attrs['patch_size_level0']``) read from there. Spelled out on purpose: the test
#: must fail if our writer and TRIDENT's names drift apart.
TRIDENT_NAMES = (
    "patch_size",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
    "name",
    "savetodir",
)
SLIDE_MPP = 0.2527  # a typical 40x scan
TARGET_MAG = 20.0
PATCH = 256


def _features(n: int = 7, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    coords = np.stack([np.arange(n) * 1013, np.arange(n) * 2026 + 5], axis=1).astype(np.int64)
    return feats, coords


def _grid_attrs(**extra) -> dict:
    """The attributes feature extraction writes (patch grid geometry + encoder fields)."""
    return {
        "patch_size": PATCH,
        "patch_size_level0": round(PATCH * (10 / TARGET_MAG) / SLIDE_MPP),
        "target_magnification": TARGET_MAG,
        "mpp": SLIDE_MPP,
        "slide_id": "TCGA-AA-0001-01Z-00-DX1",
        "level0_width": 40000,
        "level0_height": 30000,
        "encoder": "uni_v1",
        "encoder_dim": 5,
        **extra,
    }


def test_trident_reads_its_geometry_from_our_coords_dataset(tmp_path: Path) -> None:
    feats, coords = _features()
    p = write_feature_file(tmp_path / "TCGA-AA-0001-01Z-00-DX1.h5", feats, coords, **_grid_attrs())
    assert set(TRIDENT_NAMES) == set(TRIDENT_COORDS_ATTRS)
    with h5py.File(p, "r") as f:  # plain h5py, the way TRIDENT opens a feature file
        np.testing.assert_array_equal(f["features"][:], feats)
        np.testing.assert_array_equal(f["coords"][:], coords)
        a = f["coords"].attrs
        missing = [k for k in TRIDENT_NAMES if k not in a]
        assert not missing, f"coords.attrs lacks {missing}"
        patch_size, ps0 = int(a["patch_size"]), int(a["patch_size_level0"])
        l0_mag, target = float(a["level0_magnification"]), float(a["target_magnification"])
        assert patch_size == PATCH
        assert ps0 == round(PATCH * (10 / TARGET_MAG) / SLIDE_MPP) == 507  # patch_size * target mpp / level-0 mpp
        assert l0_mag == pytest.approx(10 / SLIDE_MPP) and target == TARGET_MAG
        assert round(patch_size * l0_mag / target) == ps0  # how TRIDENT derives the level-0 patch from the two
        assert int(a["overlap"]) == 0 and a["name"] == "TCGA-AA-0001-01Z-00-DX1"
        assert a["savetodir"] == str(tmp_path)
        assert a["mpp"] == SLIDE_MPP and a["level0_width"] == 40000  # our own geometry next to TRIDENT's
        assert f["features"].attrs["name"] == "TCGA-AA-0001-01Z-00-DX1"
        assert f.attrs["encoder"] == "uni_v1" and f.attrs["patch_size_level0"] == ps0  # root kept for old readers


def test_level0_geometry_is_derived_when_not_given(tmp_path: Path) -> None:
    feats, coords = _features()
    attrs = {"patch_size": 224, "target_magnification": 10.0, "mpp": 0.5}
    p = write_feature_file(tmp_path / "s.h5", feats, coords, **attrs)
    with h5py.File(p, "r") as f:
        a = dict(f["coords"].attrs)
    assert a["level0_magnification"] == 20.0 and a["patch_size_level0"] == 448
    assert a["name"] == "s"  # no slide_id: the file stem, as TRIDENT names files by slide
    geo = trident_coords_attrs({"level0_magnification": 40, "patch_size": 256, "target_magnification": 20}, p)
    assert geo["patch_size_level0"] == 512 and "mpp" not in geo


def _write_trident_file(path: Path, feats: np.ndarray, coords: np.ndarray, *, ps0: bool = True) -> None:
    """A feature file as TRIDENT writes it: geometry only on ``coords``, name/savetodir on ``features``."""
    with h5py.File(path, "w") as f:
        fds = f.create_dataset("features", data=feats)
        fds.attrs["name"] = "slideA"
        fds.attrs["savetodir"] = "/jobs/trident/features_uni_v1"
        cds = f.create_dataset("coords", data=coords)
        cds.attrs["patch_size"] = 256
        if ps0:
            cds.attrs["patch_size_level0"] = 512
        cds.attrs["level0_magnification"] = 40
        cds.attrs["target_magnification"] = 20
        cds.attrs["overlap"] = 0
        cds.attrs["name"] = "slideA"
        cds.attrs["savetodir"] = "/jobs/trident"


@pytest.mark.parametrize("ps0", [True, False])
def test_a_trident_written_file_reads_with_our_geometry_names(tmp_path: Path, ps0: bool) -> None:
    feats, coords = _features()
    p = tmp_path / "slideA.h5"
    _write_trident_file(p, feats, coords, ps0=ps0)
    f, c, attrs = read_feature_file(p)
    np.testing.assert_array_equal(f, feats)
    np.testing.assert_array_equal(c, coords)
    assert attrs["patch_size"] == 256 and attrs["patch_size_level0"] == 512
    assert attrs["target_magnification"] == 20 and attrs["level0_magnification"] == 40
    assert attrs["mpp"] == pytest.approx(0.25) and attrs["slide_id"] == "slideA"
    assert read_feature_attrs(p) == attrs


def test_survival_dataset_uses_a_trident_written_file(tmp_path: Path) -> None:
    feats_a, coords_a = _features(7, seed=1)
    feats_b, coords_b = _features(4, seed=2)
    fdir = tmp_path / "features"
    fdir.mkdir()
    _write_trident_file(fdir / "slideA.h5", feats_a, coords_a)
    write_feature_file(fdir / "slideB.h5", feats_b, coords_b, **_grid_attrs(slide_id="slideB"))
    table = pd.DataFrame(
        {
            "case_id": ["c1", "c2"],
            "survival_months": [12.0, 30.0],
            "censorship": [0, 1],
            "slide_id": ["slideA.svs", "slideB.svs"],
        }
    )
    cohort = load_cohort(table, feature_dir=fdir)
    ds = SurvivalDataset(cohort, modalities=("pathology",))
    assert ds.dims["pathology"] == 5
    item = ds[0]
    np.testing.assert_array_equal(item["path"].numpy(), feats_a)
    np.testing.assert_array_equal(item["path_coords"].numpy(), coords_a)
    geo = read_feature_attrs(ds.feature_files(0)[0])
    assert geo["patch_size_level0"] == 512 and geo["mpp"] == pytest.approx(0.25) and geo["slide_id"] == "slideA"
    np.testing.assert_array_equal(ds[1]["path_coords"].numpy(), coords_b)
    assert read_feature_attrs(ds.feature_files(1)[0])["patch_size_level0"] == 507


@pytest.mark.parametrize("suffix", [".h5", ".pt"])
def test_every_attribute_round_trips(tmp_path: Path, suffix: str) -> None:
    feats, coords = _features()
    attrs = _grid_attrs(
        mean=[0.485, 0.456, 0.406],
        interpolation="bicubic",
        precision="bf16",
        input_size=224,
        flag=True,
        overlap=0,
        level0_magnification=39.5726,
    )
    p = write_feature_file(tmp_path / f"s{suffix}", feats, coords, skipped=None, **attrs)
    _, _, got = read_feature_file(p)
    for k, v in attrs.items():
        expected = pytest.approx(v) if isinstance(v, float) else v
        assert got[k] == expected, k
    assert "skipped" not in got
    if suffix == ".h5":
        with h5py.File(p, "r") as f:
            on_coords = {k: f["coords"].attrs[k] for k in f["coords"].attrs}
            at_root = {k: f.attrs[k] for k in f.attrs}
        assert set(TRIDENT_NAMES) <= set(on_coords)
        assert on_coords["level0_magnification"] == pytest.approx(39.5726)  # a given value wins over 10 / mpp
        assert set(attrs) == set(at_root)  # the root holds exactly the given attributes
        assert got["name"] == attrs["slide_id"] and got["savetodir"] == str(tmp_path)
    else:
        assert set(got) == set(attrs)


def test_an_old_file_with_root_attributes_only_still_reads(tmp_path: Path) -> None:
    feats, coords = _features()
    p = tmp_path / "old.h5"
    with h5py.File(p, "w") as f:  # the layout survpgc wrote before coords carried the geometry
        f.create_dataset("features", data=feats)
        f.create_dataset("coords", data=coords)
        for k, v in _grid_attrs().items():
            f.attrs[k] = v
    attrs = read_feature_attrs(p)
    assert {k: attrs[k] for k in _grid_attrs()} == _grid_attrs()
    assert "level0_magnification" not in attrs and "name" not in attrs
