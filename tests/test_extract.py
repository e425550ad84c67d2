"""Feature extraction end to end: real SVS fixtures, synthetic slides, resume, sharding, CLI exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.data.cohort import load_tcga
from survpgc.data.dataset import SurvivalDataset, collate_survival
from survpgc.data.features import read_feature_file
from survpgc.errors import ConfigError
from survpgc.synth import generate_synthetic_cohort
from survpgc.wsi.extract import extract_features, read_manifests, resolve_shard

FIXTURES = Path(__file__).parent / "data" / "slides"


@pytest.fixture(scope="module")
def encoder():
    from survpgc.encoders.patch import create_patch_encoder

    return create_patch_encoder("efficientnet_lite0", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "syn"
    generate_synthetic_cohort(out, n_patients=4, seed=5, slide_size=(2048, 1536))
    return out


def test_real_fixtures_bad_slides_do_not_stop_the_batch(tmp_path, encoder):
    src = tmp_path / "slides"
    src.mkdir()
    for name in ("cmu_small_region.svs", "unreadable.svs", "unopenable.tiff"):
        shutil.copy(FIXTURES / name, src / name)
    res = extract_features(src, tmp_path / "out", encoder=encoder, batch_size=16)
    status = {r["slide_id"]: r["status"] for r in res.rows}
    assert status == {"cmu_small_region": "done", "unreadable": "failed", "unopenable": "failed"}
    assert not res.ok and res.failed == 2
    feats, coords, attrs = read_feature_file(tmp_path / "out" / "cmu_small_region.h5")
    assert feats.shape == (27, 1280) and coords.shape == (27, 2)
    assert attrs["encoder"] == "efficientnet_lite0" and attrs["encoder_dim"] == 1280
    assert attrs["patch_size"] == 256 and attrs["target_magnification"] == 20.0
    assert attrs["level0_width"] == 2220 and attrs["level0_height"] == 2967 and attrs["mpp"] == pytest.approx(0.499)
    with h5py.File(tmp_path / "out" / "cmu_small_region.h5", "r") as f:  # the geometry where TRIDENT keeps it
        geo = dict(f["coords"].attrs)
    assert geo["patch_size_level0"] == attrs["patch_size_level0"] == round(256 * 0.5 / 0.499)
    assert geo["level0_magnification"] == pytest.approx(10 / 0.499) and geo["target_magnification"] == 20.0
    assert geo["name"] == "cmu_small_region" and geo["overlap"] == 0
    assert (tmp_path / "out" / "qc" / "cmu_small_region.png").stat().st_size > 1000
    man = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert "cannot be opened" in man.set_index("slide_id").loc["unopenable", "error"]
    # rerun: the finished slide is skipped, nothing rewritten
    mtime = (tmp_path / "out" / "cmu_small_region.h5").stat().st_mtime_ns
    again = extract_features(src, tmp_path / "out", encoder=encoder, batch_size=16)
    assert {r["slide_id"]: r["status"] for r in again.rows}["cmu_small_region"] == "skipped"
    assert (tmp_path / "out" / "cmu_small_region.h5").stat().st_mtime_ns == mtime


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, encoder, synth):
    slides = sorted((synth / "slides").iterdir())
    full = extract_features(synth / "slides", tmp_path / "a", encoder=encoder, batch_size=32)
    assert full.done == 4
    extract_features(slides[:2], tmp_path / "b", encoder=encoder, batch_size=32)  # "interrupted" after 2
    (tmp_path / "b" / ".partial.h5.tmp").write_bytes(b"junk of a killed write")  # never under a final name
    resumed = extract_features(synth / "slides", tmp_path / "b", encoder=encoder, batch_size=32)
    assert (resumed.skipped, resumed.done) == (2, 2)
    for s in slides:
        name = s.name.rsplit(".", 1)[0] + ".h5"
        with h5py.File(tmp_path / "a" / name) as fa, h5py.File(tmp_path / "b" / name) as fb:
            np.testing.assert_array_equal(fa["features"][:], fb["features"][:])
            np.testing.assert_array_equal(fa["coords"][:], fb["coords"][:])


def test_synthetic_cohort_features_load_in_the_dataset(tmp_path, encoder, synth):
    feat = tmp_path / "feat"
    extract_features(synth / "slides", feat, encoder=encoder, batch_size=32)
    cohort = load_tcga(synth, feature_dir=feat)
    assert cohort.modality_table()["features"].all()
    ds = SurvivalDataset(cohort, modalities=("pathology",), n_patches=None)
    batch = collate_survival([ds[i] for i in range(len(ds))])
    assert batch["path"].shape[-1] == 1280 and batch["path_mask"].any(dim=1).all()


def test_sharding_covers_every_slide_once(tmp_path, encoder, synth):
    for i in range(3):
        extract_features(synth / "slides", tmp_path / "s", encoder=encoder, batch_size=32, shard=f"{i}/3")
    man = read_manifests(tmp_path / "s")
    assert sorted(man["slide_id"]) == sorted(p.name.rsplit(".", 1)[0] for p in (synth / "slides").iterdir())
    assert man["slide_id"].is_unique
    assert resolve_shard(None) == (0, 1)
    with pytest.raises(ConfigError, match="i/n"):
        resolve_shard("2-3")
    with pytest.raises(ConfigError, match="0 <= i < n"):
        resolve_shard("3/3")


def test_clam_style_h5_loads_unchanged(tmp_path):
    """A CLAM h5 (features + coords, no survpgc attributes) is read as it is."""
    p = tmp_path / "clam.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("features", data=np.random.default_rng(0).normal(size=(5, 1024)).astype(np.float32))
        f.create_dataset("coords", data=np.arange(10).reshape(5, 2))
    feats, coords, _ = read_feature_file(p)
    assert feats.shape == (5, 1024) and coords.tolist()[1] == [2, 3]


def test_cli_exit_code_and_other_settings_refused(tmp_path, synth):
    runner = CliRunner()
    src = tmp_path / "slides"
    src.mkdir()
    shutil.copy(FIXTURES / "cmu_small_region.svs", src)
    shutil.copy(FIXTURES / "unopenable.tiff", src)
    args = ["extract", "--slides", str(src), "--out", str(tmp_path / "o"), "--precision", "fp32", "--batch-size", "16"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "1 extracted" in r.stdout
    before = (tmp_path / "o" / "manifest.csv").read_bytes()
    r = runner.invoke(app, [*args[:-2], "--batch-size", "16", "--patch-size", "224"])
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError)
    assert "patch_size: folder 256 vs requested 224" in str(r.exception) and "another --out" in str(r.exception)
    assert (tmp_path / "o" / "manifest.csv").read_bytes() == before  # the refused run changed nothing


def test_progress_display_path(tmp_path, encoder):
    src = tmp_path / "slides"
    src.mkdir()
    shutil.copy(FIXTURES / "cmu_small_region.svs", src)
    res = extract_features(src, tmp_path / "o", encoder=encoder, batch_size=8, progress=True)
    assert res.done == 1 and res.n_patches == 27


def test_segment_command(tmp_path):
    src = tmp_path / "slides"
    src.mkdir()
    shutil.copy(FIXTURES / "cmu_small_region.svs", src)
    shutil.copy(FIXTURES / "unopenable.tiff", src)
    r = CliRunner().invoke(app, ["segment", "--slides", str(src), "--out", str(tmp_path / "seg")])
    assert r.exit_code == 1  # one slide failed
    table = pd.read_csv(tmp_path / "seg" / "segment.csv").set_index("slide_id")
    assert table.loc["cmu_small_region", "n_patches"] == 27 and table.loc["unopenable", "status"] == "failed"
    assert (tmp_path / "seg" / "qc" / "cmu_small_region.png").is_file()
    assert (tmp_path / "seg" / "masks" / "cmu_small_region.png").is_file()
