"""Whole-slide reader, tissue segmentation and patch grid (survpgc.wsi) on real and synthetic slides."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("openslide")
pytest.importorskip("tiffslide")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from survpgc.data.slides import slide_stem  # noqa: E402
from survpgc.errors import ConfigError, DataError, InputError  # noqa: E402
from survpgc.wsi import (  # noqa: E402
    SEGMENT_PRESETS,
    PatchGrid,
    SegmentConfig,
    SlidePatchDataset,
    TissueMask,
    load_mpp_overrides,
    make_patch_grid,
    open_slide,
    patch_size_level0,
    read_patches,
    segment_tissue,
    tile_slide,
)
from wsi_helpers import downsample2, render_scene, write_pyramid  # noqa: E402

SLIDES = Path(__file__).parent / "data" / "slides"
CMU = SLIDES / "cmu_small_region.svs"
#: Patches kept on cmu_small_region.svs with the defaults (256 px at 20x, preset "default", fraction >= 0.5).
CMU_DEFAULT_PATCHES = 27


def _png(path: Path) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, f"{path} is not a PNG"
    return img


# ============================================================================================ reader
@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_cmu_opens_with_both_backends(backend: str) -> None:
    with open_slide(CMU, backend=backend) as s:
        assert s.backend == backend
        assert s.slide_id == "cmu_small_region"
        assert s.dimensions == (2220, 2967)
        assert s.level_count == 1 and s.level_downsamples == (1.0,)
        assert s.mpp == pytest.approx(0.499)
        assert s.mpp_source == f"{backend} metadata"
        assert s.objective_power == 20
        assert s.magnification == pytest.approx(20.04, abs=0.01)
        region = s.read_region((1000, 1500), 0, (64, 48))
        assert region.shape == (48, 64, 3) and region.dtype == np.uint8
        assert region.mean() < 230  # tissue there, not background
        thumb = s.thumbnail(256)
        assert max(thumb.shape[:2]) == 256 and thumb.shape[:2] == (256, 192)
    with pytest.raises(InputError, match="closed"):
        s.read_region((0, 0), 0, (4, 4))


def test_backends_agree_on_pixels() -> None:
    with open_slide(CMU, backend="openslide") as a, open_slide(CMU, backend="tiffslide") as b:
        ra = a.read_region((700, 900), 0, (128, 128)).astype(int)
        rb = b.read_region((700, 900), 0, (128, 128)).astype(int)
    assert np.abs(ra - rb).mean() < 2.0  # same JPEG tiles, possibly different decoders


def test_auto_backend_and_pickle_reopens() -> None:
    s = open_slide(CMU)
    assert s.backend == "openslide"
    clone = pickle.loads(pickle.dumps(s))
    try:
        assert clone is not s and clone.dimensions == s.dimensions and clone.mpp == s.mpp
        np.testing.assert_array_equal(clone.read_region((10, 20), 0, (8, 8)), s.read_region((10, 20), 0, (8, 8)))
    finally:
        clone.close()
        s.close()


def test_read_downsampled_in_blocks_matches_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import survpgc.wsi.reader as reader

    with open_slide(CMU) as s:
        whole = s.read_downsampled(8).astype(np.float32)
        monkeypatch.setattr(reader, "_CHUNK", 700)  # 4 x 5 blocks
        blocks = s.read_downsampled(8).astype(np.float32)
    assert whole.shape == blocks.shape == (371, 278, 3)
    assert np.abs(whole - blocks).mean() < 1.5


def test_read_region_argument_errors() -> None:
    with open_slide(CMU) as s:
        with pytest.raises(InputError, match="level 1 out of range"):
            s.read_region((0, 0), 1, (4, 4))
        with pytest.raises(InputError, match="positive"):
            s.read_region((0, 0), 0, (0, 4))
        assert s.best_level_for_downsample(64) == 0


def test_unreadable_svs_opens_but_reading_is_a_clear_data_error() -> None:
    s = open_slide(SLIDES / "unreadable.svs")  # the header is fine
    assert s.dimensions == (16, 16)
    with pytest.raises(DataError, match=r"unreadable\.svs: cannot read region.*corrupt"):
        s.read_region((0, 0), 0, (16, 16))
    s.close()
    with pytest.raises(DataError, match=r"unreadable\.svs"):
        tile_slide(SLIDES / "unreadable.svs")


def test_unopenable_tiff_is_a_clear_data_error() -> None:
    with pytest.raises(DataError, match=r"unopenable\.tiff: cannot be opened \(openslide: .*; tiffslide: .*\)"):
        open_slide(SLIDES / "unopenable.tiff")
    for backend in ("openslide", "tiffslide"):
        with pytest.raises(DataError, match="cannot be opened"):
            open_slide(SLIDES / "unopenable.tiff", backend=backend)


def test_missing_file_and_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(ConfigError, match="unknown slide backend"):
        open_slide(CMU, backend="bioformats")
    junk = tmp_path / "junk.svs"
    junk.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(DataError, match=r"junk\.svs: cannot be opened"):
        open_slide(junk)


def test_batch_of_good_and_bad_slides_completes_the_good_ones(tmp_path: Path) -> None:
    batch = [
        CMU,
        SLIDES / "unreadable.svs",
        SLIDES / "small.svs",
        SLIDES / "unopenable.tiff",
        SLIDES / "he_tile_1000.png",
    ]
    results: dict[str, PatchGrid] = {}
    errors: dict[str, str] = {}
    for path in batch:
        try:
            tiling = tile_slide(path, mpp_override={"he_tile_1000": 0.5}, qc_path=tmp_path / f"{path.stem}.png")
            results[path.name] = tiling.grid
        except DataError as exc:
            errors[path.name] = str(exc)
    assert sorted(errors) == ["unopenable.tiff", "unreadable.svs"]
    assert all(name in msg for name, msg in errors.items())
    assert results["cmu_small_region.svs"].n_patches == CMU_DEFAULT_PATCHES
    assert results["small.svs"].status == "too_small" and results["small.svs"].n_patches == 0
    assert results["he_tile_1000.png"].status == "ok" and results["he_tile_1000.png"].n_patches == 9
    assert (tmp_path / "cmu_small_region.png").is_file() and (tmp_path / "small.png").is_file()


def test_plain_image_backend() -> None:
    with open_slide(SLIDES / "he_tile_1000.png") as s:
        assert s.backend == "image" and s.level_count == 1 and s.dimensions == (1000, 1000)
        assert s.mpp is None and s.objective_power is None
        edge = s.read_region((990, 990), 0, (20, 20))  # half outside: padded with white
        assert edge.shape == (20, 20, 3)
        assert (edge[10:, :] == 255).all() and (edge[:, 10:] == 255).all()
        assert edge[:10, :10].mean() < 250


# ============================================================================================ MPP
def test_missing_mpp_is_a_clear_error_and_overrides_fix_it(tmp_path: Path) -> None:
    scene = render_scene(1024, 768, seed=3)
    path = write_pyramid(tmp_path / "nompp.tiff", scene, mpp=None, downsamples=(1, 4))
    with open_slide(path) as s:
        assert s.mpp is None and s.mpp_source is None
        for call in (lambda: make_patch_grid(s), lambda: segment_tissue(s), lambda: s.require_mpp()):
            with pytest.raises(DataError, match=r"nompp\.tiff: MPP .* missing") as info:
                call()
            msg = str(info.value)
            assert "override table" in msg and "slide_id,mpp" in msg and "--mpp" in msg
    with open_slide(path, mpp_override=0.5) as s:
        assert s.mpp == 0.5 and s.mpp_source == "override"
        assert make_patch_grid(s, patch_size=64).n_patches > 0
    table = tmp_path / "mpp.csv"
    table.write_text("slide_id,mpp\nnompp.tiff,0.25\nother,0.5\n", encoding="utf-8")
    overrides = load_mpp_overrides(table)
    assert overrides == {"nompp": 0.25, "other": 0.5}
    with open_slide(path, mpp_override=overrides) as s:  # a per-slide table: the source says so
        assert s.mpp == 0.25 and s.mpp_source == "table"
        grid = make_patch_grid(s, patch_size=64)
        assert grid.mpp == 0.25 and grid.patch_size_level0 == 128
    with open_slide(CMU, mpp_override=overrides) as s:  # not in the table: metadata kept
        assert s.mpp == pytest.approx(0.499) and s.mpp_source == "openslide metadata"


def test_mpp_fallback_is_used_only_when_the_metadata_lacks_it(tmp_path: Path) -> None:
    path = write_pyramid(tmp_path / "nompp.tiff", render_scene(1024, 768, seed=3), mpp=None, downsamples=(1, 4))
    with open_slide(path, mpp_fallback=0.5) as s:
        assert (s.mpp, s.mpp_source, s.mpp_metadata) == (0.5, "fallback", None)
        assert pickle.loads(pickle.dumps(s)).mpp_source == "fallback"
    with open_slide(CMU, mpp_fallback=0.25) as s:  # valid metadata wins over the fallback
        assert s.mpp == pytest.approx(0.499) and s.mpp_source == "openslide metadata"
        assert s.mpp_metadata == pytest.approx(0.499)
    with open_slide(CMU, mpp_override=0.25, mpp_fallback=0.3) as s:  # an override replaces it
        assert (s.mpp, s.mpp_source) == (0.25, "override") and s.mpp_metadata == pytest.approx(0.499)
    with open_slide(SLIDES / "boxes.tiff", mpp_fallback=0.5) as s:  # implausible 352.8 um/px tags: fallback
        assert (s.mpp, s.mpp_source) == (0.5, "fallback")
    with open_slide(CMU, mpp_override={"cmu_small_region": 0.25}) as s:
        assert pickle.loads(pickle.dumps(s)).mpp_source == "table"
    with pytest.raises(InputError, match="fallback MPP 500"):
        open_slide(CMU, mpp_fallback=500)
    assert tile_slide(CMU, mpp_fallback=0.25).grid.n_patches == 27  # the 0.499 um/px of the metadata


def test_implausible_resolution_tags_count_as_missing_mpp() -> None:
    with open_slide(SLIDES / "boxes.tiff") as s:  # 72 dpi default resolution = 352.8 um/px
        assert s.level_count == 4 and s.mpp is None
        with pytest.raises(DataError, match=r"implausible 352\.8 um/px.*override table"):
            s.require_mpp()
    with open_slide(SLIDES / "boxes.tiff", mpp_override=4.0) as s:
        assert s.mpp == 4.0


def test_mpp_override_validation(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="plausible"):
        open_slide(CMU, mpp_override=300.0)
    with pytest.raises(InputError, match="must be a number"):
        open_slide(CMU, mpp_override="fast")  # type: ignore[arg-type]
    bad_cols = tmp_path / "a.csv"
    bad_cols.write_text("slide,mpp\nx,0.5\n", encoding="utf-8")
    with pytest.raises(DataError, match="needs the columns slide_id,mpp"):
        load_mpp_overrides(bad_cols)
    bad_value = tmp_path / "b.csv"
    bad_value.write_text("slide_id,mpp\nx,0.5\ny,abc\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 3 \(y\): mpp 'abc' is not a number"):
        load_mpp_overrides(bad_value)
    conflict = tmp_path / "c.csv"
    conflict.write_text("slide_id,mpp\nx.svs,0.5\nx,0.25\n", encoding="utf-8")
    with pytest.raises(DataError, match="listed twice"):
        load_mpp_overrides(conflict)
    with pytest.raises(DataError, match="does not exist"):
        load_mpp_overrides(tmp_path / "none.csv")


def test_slide_stem() -> None:
    assert slide_stem("dir/TCGA-AA-1234-01Z-00-DX1.ABC.svs") == "TCGA-AA-1234-01Z-00-DX1.ABC"
    assert slide_stem("x.TIFF") == "x" and slide_stem("plain") == "plain" and slide_stem(".svs") == ".svs"


# ============================================================================ segmentation + grid on the real slide
def test_cmu_default_patch_count_is_stable_and_qc_is_written(tmp_path: Path) -> None:
    grids = []
    for run, backend in enumerate(["openslide", "openslide", "tiffslide"]):
        grid, tissue = tile_slide(
            CMU, backend=backend, qc_path=tmp_path / f"qc{run}.png", mask_path=tmp_path / f"mask{run}.png"
        )
        grids.append(grid)
        assert not tissue.is_empty and tissue.status == "ok" and tissue.n_regions >= 1
        assert 0.2 < tissue.tissue_fraction < 0.5
    for g in grids:
        assert g.n_patches == CMU_DEFAULT_PATCHES and g.status == "ok"
        np.testing.assert_array_equal(g.coords, grids[0].coords)
    g = grids[0]
    assert g.patch_size == 256 and g.patch_size_level0 == 257 and g.read_level == 0 and g.read_size == 257
    assert g.coords.dtype == np.int64 and g.coords.shape == (CMU_DEFAULT_PATCHES, 2)
    assert (g.coords % 257 == 0).all()
    assert (g.coords + 257 <= np.array([2220, 2967])).all()
    assert (g.tissue_fractions >= 0.5).all()
    order = np.lexsort((g.coords[:, 0], g.coords[:, 1]))
    np.testing.assert_array_equal(order, np.arange(g.n_patches))  # row-major
    assert g.attrs() == {
        "patch_size": 256,
        "patch_size_level0": 257,
        "target_magnification": 20.0,
        "mpp": pytest.approx(0.499),
        "slide_id": "cmu_small_region",
        "level0_width": 2220,
        "level0_height": 2967,
    }
    mask = _png(tmp_path / "mask0.png")
    assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255} and (mask == 255).mean() > 0.2
    qc = _png(tmp_path / "qc0.png")  # BGR
    assert max(qc.shape[:2]) == 1024
    green = (qc[:, :, 1] > 150) & (qc[:, :, 0] < 80) & (qc[:, :, 2] < 80)
    assert green.sum() > 500
    # patches read at 20x are 256 px, mostly tissue
    with open_slide(CMU) as s:
        patches = read_patches(s, g.coords[:4], g)
    assert patches.shape == (4, 256, 256, 3) and patches.dtype == np.uint8
    assert patches.mean() < 215


def test_cmu_presets_and_thresholds() -> None:
    with open_slide(CMU) as s:
        counts = {name: make_patch_grid(s, segment_config=name).n_patches for name in SEGMENT_PRESETS}
        tissue = segment_tissue(s)
        loose = make_patch_grid(s, tissue, min_tissue_fraction=0.0).n_patches
        strict = make_patch_grid(s, tissue, min_tissue_fraction=1.0).n_patches
    assert counts["default"] == CMU_DEFAULT_PATCHES
    assert all(c > 0 for c in counts.values())
    assert counts["lenient"] > counts["default"]
    assert strict < CMU_DEFAULT_PATCHES < loose


def test_cmu_patch_dataset_with_dataloader_workers() -> None:
    with open_slide(CMU) as s:
        grid = make_patch_grid(s)
        expected = read_patches(s, grid.coords, grid)
    ds = SlidePatchDataset(CMU, grid, transform=_to_chw, return_coords=True)
    assert len(ds) == CMU_DEFAULT_PATCHES
    img0, xy0 = ds[0]  # opens the slide in this process ...
    assert img0.shape == (3, 256, 256) and img0.dtype == torch.float32
    np.testing.assert_array_equal(xy0, grid.coords[0])
    clone = pickle.loads(pickle.dumps(ds))  # ... which pickling drops
    assert clone._slide is None
    loader = DataLoader(ds, batch_size=8, num_workers=2, shuffle=False)
    images, coords = [], []
    for batch_img, batch_xy in loader:
        images.append(batch_img)
        coords.append(batch_xy)
    got = torch.cat(images).numpy()
    assert got.shape == (CMU_DEFAULT_PATCHES, 3, 256, 256)
    np.testing.assert_array_equal(torch.cat(coords).numpy(), grid.coords)
    np.testing.assert_allclose(got, expected.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    raw = SlidePatchDataset(CMU, grid)
    assert raw[-1].shape == (256, 256, 3) and raw[-1].dtype == np.uint8
    with pytest.raises(IndexError):
        raw[CMU_DEFAULT_PATCHES]
    raw.close()
    ds.close()


def _to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


# ============================================================================================ synthetic pyramids
@pytest.fixture(scope="module")
def scene_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same scene at 40x (0.25 um/px) and at 20x (0.5 um/px, the 40x pixels area-downsampled by 2)."""
    d = tmp_path_factory.mktemp("pyramids")
    scene40 = render_scene(4096, 3072, seed=0)
    scene20 = downsample2(scene40)
    return {
        "40x": write_pyramid(d / "scene_40x.svs", scene40, mpp=0.25, objective_power=40, downsamples=(1, 4, 16)),
        "40x_ds2": write_pyramid(d / "scene_40x_ds2.svs", scene40, mpp=0.25, objective_power=40, downsamples=(1, 2, 8)),
        "20x": write_pyramid(d / "scene_20x.svs", scene20, mpp=0.5, objective_power=20, downsamples=(1, 4)),
    }


@pytest.mark.parametrize("variant", ["40x", "40x_ds2"])
def test_40x_and_20x_scans_give_the_same_physical_patches(scene_pair: dict[str, Path], variant: str) -> None:
    with open_slide(scene_pair[variant]) as s40, open_slide(scene_pair["20x"]) as s20:
        assert s40.mpp == 0.25 and s40.objective_power == 40 and s20.mpp == 0.5 and s20.objective_power == 20
        g40, t40 = tile_slide(s40, patch_size=128)
        g20, t20 = tile_slide(s20, patch_size=128)
        assert g40.patch_size_level0 == 256 and g20.patch_size_level0 == 128
        assert t40.mask.shape == t20.mask.shape  # segmented at the same physical resolution
        if variant == "40x":  # no level at downsample 2: read level 0 (256 px) and shrink to 128
            assert (g40.read_level, g40.read_size) == (0, 256)
        else:  # level 1 is exactly the 20x resolution
            assert (g40.read_level, g40.read_size, g40.read_downsample) == (1, 128, 2.0)
        assert (g20.read_level, g20.read_size) == (0, 128)
        assert g20.n_patches >= 15
        assert abs(g40.n_patches - g20.n_patches) <= 2
        a = {tuple(xy) for xy in (g40.coords // 2).tolist()}
        b = {tuple(xy) for xy in g20.coords.tolist()}
        assert (g40.coords % 2 == 0).all()
        assert len(a ^ b) <= 2
        common = np.array(sorted(a & b), np.int64)
        p40 = read_patches(s40, common * 2, g40).astype(np.float32)
        p20 = read_patches(s20, common, g20).astype(np.float32)
    assert p40.shape == p20.shape == (len(common), 128, 128, 3)
    diff = np.abs(p40 - p20).mean(axis=(1, 2, 3))
    assert diff.max() < 4.0, diff
    # and the comparison is sensitive: neighbouring patches differ a lot
    assert np.abs(p40[1:] - p20[:-1]).mean() > 5 * diff.mean()


def test_area_thresholds_are_physical(scene_pair: dict[str, Path]) -> None:
    """The same config finds the same regions (and holes) at 40x and 20x."""
    with open_slide(scene_pair["40x"]) as s40, open_slide(scene_pair["20x"]) as s20:
        for cfg in ("default", "biopsy"):
            t40 = segment_tissue(s40, cfg, patch_size=128)
            t20 = segment_tissue(s20, cfg, patch_size=128)
            assert t40.n_regions == t20.n_regions >= 2
            assert [len(h) for h in t40.hole_contours] == [len(h) for h in t20.hole_contours]
            assert sum(len(h) for h in t40.hole_contours) >= 1  # the scene's hole
            assert np.mean(t40.mask != t20.mask) < 0.01


def test_blank_slide_gives_zero_patches_not_a_crash(tmp_path: Path) -> None:
    white = np.full((1536, 2048, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    faint = np.clip(240 + rng.normal(0, 2, white.shape), 0, 255).astype(np.uint8)  # grey paper noise
    ramp = np.linspace(0.0, 1.0, 2048, dtype=np.float32)[None, :, None]  # uneven, slightly yellow glass
    tinted = np.broadcast_to(245 - ramp * np.array([0, 4, 12], np.float32), white.shape).astype(np.uint8)
    for name, img in (("white", white), ("faint", faint), ("tinted", tinted)):
        path = write_pyramid(tmp_path / f"{name}.svs", img, mpp=0.5, downsamples=(1, 4))
        grid, tissue = tile_slide(path, qc_path=tmp_path / f"{name}_qc.png", mask_path=tmp_path / f"{name}_m.png")
        assert tissue.is_empty and tissue.status == "no_tissue" and tissue.n_regions == 0
        assert grid.status == "no_tissue" and grid.is_empty and len(grid) == 0
        assert grid.n_candidates == 8 * 6
        assert grid.coords.shape == (0, 2) and grid.coords.dtype == np.int64
        assert (tmp_path / f"{name}_qc.png").is_file() and (_png(tmp_path / f"{name}_m.png") == 0).all()
        with open_slide(path) as s:
            assert read_patches(s, grid.coords, grid).shape == (0, 256, 256, 3)
        assert len(SlidePatchDataset(path, grid)) == 0


# ============================================================================================ units
def test_fraction_in_boxes_is_the_exact_area_integral() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((30, 40)) < 0.4
    tm = TissueMask(
        slide_id="t",
        mask=mask,
        downsample=(8.0, 8.0),
        level0_size=(320, 240),
        tissue_contours=(),
        hole_contours=(),
        threshold=0.0,
        config=SegmentConfig(),
    )
    full = np.repeat(np.repeat(mask, 8, axis=0), 8, axis=1)  # the mask at level 0
    boxes = np.array([[0, 0], [5, 3], [13, 77], [300, 200], [-10, -10], [310, 230]], np.int64)
    size = 21
    got = tm.fraction_in_boxes(boxes, size)
    for (x, y), f in zip(boxes.tolist(), got, strict=True):
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, 320), min(y + size, 240)
        want = full[y0:y1, x0:x1].sum() / size**2
        assert f == pytest.approx(want, abs=1e-5)
    assert tm.fraction_in_boxes(np.zeros((0, 2)), 8).shape == (0,)


def test_patch_size_level0_rounding() -> None:
    assert patch_size_level0(256, 20, 0.25) == 512
    assert patch_size_level0(256, 20, 0.499) == 257
    assert patch_size_level0(224, 10, 0.5) == 448
    with pytest.raises(InputError):
        patch_size_level0(0, 20, 0.5)
    with pytest.raises(InputError):
        patch_size_level0(256, 0, 0.5)


def test_segment_config_validation_and_presets() -> None:
    assert SegmentConfig.preset("default") == SegmentConfig()
    assert SegmentConfig.preset("biopsy", max_holes=3).max_holes == 3
    with pytest.raises(ConfigError, match="unknown segmentation preset"):
        SegmentConfig.preset("huge")
    with pytest.raises(ConfigError, match="median_blur must be odd"):
        SegmentConfig(median_blur=4)
    with pytest.raises(ConfigError, match="threshold"):
        SegmentConfig(threshold=300)
    with pytest.raises(ConfigError, match="min_tissue_area"):
        SegmentConfig(min_tissue_area=-1)
    with pytest.raises(ConfigError, match="no field"):
        SegmentConfig().replace(sthresh=8)


def test_grid_argument_errors(tmp_path: Path) -> None:
    with open_slide(CMU) as s:
        with pytest.raises(InputError, match="min_tissue_fraction"):
            make_patch_grid(s, min_tissue_fraction=1.5)
        tissue = segment_tissue(s)
    other = shutil.copy(SLIDES / "he_tile_1000.png", tmp_path / "tile.png")
    with open_slide(other, mpp_override=0.5) as s2, pytest.raises(InputError, match="tissue mask is for"):
        make_patch_grid(s2, tissue)


def test_mpp_table_is_read_like_every_user_table(tmp_path: Path) -> None:
    """UTF-16 (Excel "Unicode text") and semicolon-separated MPP tables are read; an empty one is one error."""
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("slide_id,mpp\nA.svs,0.25\nB,0.5\n", encoding="utf-16")
    assert load_mpp_overrides(utf16) == {"A": 0.25, "B": 0.5}
    semi = tmp_path / "semi.csv"
    semi.write_text("slide_id;mpp\nA;0.25\n", encoding="utf-8")
    assert load_mpp_overrides(semi) == {"A": 0.25}
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        load_mpp_overrides(empty)
