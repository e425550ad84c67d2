"""The parallel extraction data path (issue 16): one pool of DataLoader workers reading the batches of every slide,
the next slide tiled and the previous one written in background threads, an optional compiled encoder.

What must hold whatever the parallelism: features bit-identical for 0, 1 or 2 workers with or without overlap;
one bad slide (unreadable tiles, a failed write) never stops the batch and is recorded with a clean message;
a failed compilation falls back. (Ctrl-C with 0 and 2 workers: tests/test_extract_integrity.py.)
"""

from __future__ import annotations

import pickle
import shutil
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from survpgc.encoders.patch_base import PatchEncoder
from survpgc.encoders.transforms import PatchTransform
from survpgc.errors import ConfigError, DataError, InputError
from survpgc.wsi.extract import extract_features
from survpgc.wsi.grid import PatchBatchDataset, PatchBatchTask, batch_tasks, read_patches, tile_slide
from survpgc.wsi.reader import open_slide

sys.path.insert(0, str(Path(__file__).parent))
from wsi_helpers import all_claims_free, small_slide_set, tiny_encoder, tmp_files

FIXTURES = Path(__file__).parent / "data" / "slides"


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pslides") / "s"
    small_slide_set(folder, 3)
    return folder


def conv_encoder() -> PatchEncoder:
    """A small convolutional encoder in channels-last memory, bicubic resize to 64 px (fast on CPU)."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.1, 0.1)
        model[1].running_var.uniform_(0.5, 1.5)
    transform = PatchTransform(64, interpolation="bicubic")
    return PatchEncoder(model, name="conv", dim=16, transform=transform, precision="fp32", weights="conv:1")


def _h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["features"][:], f["coords"][:]


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv").drop(columns=["seconds"])


# ======================================================================== bit-identical whatever the parallelism
@pytest.mark.parametrize("make_encoder", [tiny_encoder, conv_encoder], ids=["tiny", "conv-channels-last"])
def test_features_are_bit_identical_for_any_workers_and_overlap(tmp_path, slides, make_encoder):
    enc = make_encoder()
    ref = tmp_path / "w0-seq"
    first = extract_features(slides, ref, encoder=enc, patch_size=128, batch_size=7, workers=0, overlap=False)
    assert first.done == 3 and first.n_patches > 3 * 7  # several batches per slide, the last one shorter
    names = sorted(p.name for p in ref.glob("*.h5"))
    for workers, overlap, prefetch, where in ((0, True, 2, "auto"), (1, False, 2, "workers"), (2, True, 1, "auto"),
                                              (2, True, 3, "device"), (0, False, 2, "device")):  # fmt: skip
        out = tmp_path / f"w{workers}-{overlap}-{prefetch}-{where}"
        res = extract_features(slides, out, encoder=enc, patch_size=128, batch_size=7, workers=workers,
                               overlap=overlap, prefetch=prefetch, transform_on=where)  # fmt: skip
        assert (res.done, res.n_patches) == (3, first.n_patches)
        assert [r["slide_id"] for r in res.rows] == ["s0", "s1", "s2"]  # rows in slide order
        assert sorted(p.name for p in out.glob("*.h5")) == names
        for name in names:
            fa, ca = _h5(ref / name)
            fb, cb = _h5(out / name)
            assert np.array_equal(fa, fb), (workers, overlap, prefetch, where, name)
            assert np.array_equal(ca, cb)
        pd.testing.assert_frame_equal(_manifest(ref).drop(columns=["path"]), _manifest(out).drop(columns=["path"]))
        assert not tmp_files(out)


def test_features_equal_those_of_the_encoder_on_read_patches(tmp_path, slides):
    """The pipeline computes what encoding the grid's patches directly gives (same batches)."""
    enc = conv_encoder()
    path = sorted(slides.iterdir())[1]
    extract_features([path], tmp_path / "o", encoder=enc, patch_size=128, batch_size=5, workers=2)
    feats, coords = _h5(tmp_path / "o" / "s1.h5")
    grid = tile_slide(path, patch_size=128).grid
    with open_slide(path) as s:
        patches = read_patches(s, grid.coords, grid)
    direct = np.concatenate(
        [enc.encode_tensor(enc.transform(patches[i : i + 5])).numpy() for i in range(0, len(patches), 5)]
    )
    assert np.array_equal(coords, grid.coords) and np.array_equal(feats, direct)


def test_tiffslide_reader_in_the_workers(tmp_path, slides):
    """``backend="tiffslide"`` (faster on SVS/TIFF) reads the same grid; its decoder gives the same pixels here."""
    enc = tiny_encoder()
    a = extract_features(slides, tmp_path / "a", encoder=enc, patch_size=128, batch_size=8)
    b = extract_features(
        slides, tmp_path / "b", encoder=enc, patch_size=128, batch_size=8, workers=1, backend="tiffslide"
    )
    assert a.done == b.done == 3 and a.n_patches == b.n_patches
    for name in ("s0.h5", "s1.h5", "s2.h5"):
        fa, ca = _h5(tmp_path / "a" / name)
        fb, cb = _h5(tmp_path / "b" / name)
        assert np.array_equal(ca, cb)
        np.testing.assert_allclose(fa, fb, rtol=0, atol=0.05)  # decoders may differ by a grey level or two


# ======================================================================== one bad slide never stops the batch
def test_unreadable_tiles_in_a_worker_fail_that_slide_only_with_a_clean_message(tmp_path, slides):
    src = tmp_path / "slides"
    src.mkdir()
    for p in sorted(slides.iterdir())[:2]:
        shutil.copy(p, src / p.name)
    shutil.copy(FIXTURES / "unreadable.svs", src / "bad.svs")  # opens, its tiles cannot be decoded
    res = extract_features(src, tmp_path / "o", encoder=tiny_encoder(), patch_size=128, batch_size=8, workers=2)
    status = {r["slide_id"]: r["status"] for r in res.rows}
    assert status == {"bad": "failed", "s0": "done", "s1": "done"} and res.failed == 1
    error = pd.read_csv(tmp_path / "o" / "manifest.csv").set_index("slide_id").loc["bad", "error"]
    assert error.startswith("DataError: slide ") and "Traceback" not in error and "worker" not in error
    assert not (tmp_path / "o" / "bad.h5").exists() and not tmp_files(tmp_path / "o")
    assert all_claims_free(tmp_path / "o", ["bad", "s0", "s1"])


def test_a_failed_write_fails_that_slide_and_the_next_ones_go_on(tmp_path, slides, monkeypatch):
    import survpgc.wsi.extract as ex

    real = ex._write

    def disk_full_for_s1(h5, *a, **k):
        if h5.name == "s1.h5":
            raise OSError(28, "No space left on device")
        return real(h5, *a, **k)

    monkeypatch.setattr(ex, "_write", disk_full_for_s1)
    res = extract_features(slides, tmp_path / "o", encoder=tiny_encoder(), patch_size=128, batch_size=8, workers=1)
    assert {r["slide_id"]: r["status"] for r in res.rows} == {"s0": "done", "s1": "failed", "s2": "done"}
    man = pd.read_csv(tmp_path / "o" / "manifest.csv").set_index("slide_id")
    assert "No space left on device" in man.loc["s1", "error"]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.h5")) == ["s0.h5", "s2.h5"]


def test_a_manifest_that_cannot_be_merged_stops_the_run_and_releases_every_claim(tmp_path, slides, monkeypatch):
    import survpgc.wsi.extract as ex

    real = ex.merge_manifest
    calls = {"n": 0}

    def broken_second_time(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise DataError("manifest.csv: cannot read the manifest (test)")
        return real(*a, **k)

    monkeypatch.setattr(ex, "merge_manifest", broken_second_time)
    out = tmp_path / "o"
    with pytest.raises(DataError, match="cannot read the manifest"):
        extract_features(slides, out, encoder=tiny_encoder(), patch_size=128, batch_size=8, workers=2)
    assert all_claims_free(out, ["s0", "s1", "s2"]) and not tmp_files(out)
    monkeypatch.setattr(ex, "merge_manifest", real)
    again = extract_features(slides, out, encoder=tiny_encoder(), patch_size=128, batch_size=8)
    assert again.skipped + again.done == 3 and again.ok


def test_progress_display_with_workers(tmp_path, slides):
    """The progress display (a thread of rich's) and the writer start after the workers are forked."""
    res = extract_features(slides, tmp_path / "o", encoder=tiny_encoder(), patch_size=128, batch_size=8, workers=2,
                           progress=True)  # fmt: skip
    assert res.done == 3 and res.n_patches > 0


# ======================================================================== the reading dataset
def test_patch_batch_dataset_reads_in_workers_and_never_opens_in_the_parent(slides):
    paths = sorted(slides.iterdir())
    grids = [tile_slide(p, patch_size=128).grid for p in paths]
    tasks = [t for k, g in enumerate(grids) for t in batch_tasks(g, 10, key=k)]
    tasks.insert(3, PatchBatchTask(99, -1, "", np.zeros((0, 2), np.int64)))  # a marker reads nothing
    assert [t.n_patches for t in batch_tasks(grids[0], 10)][-1] == (grids[0].n_patches % 10 or 10)
    ds = PatchBatchDataset(transform=None, max_open=2)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, sampler=tasks, num_workers=2, collate_fn=lambda b: b, prefetch_factor=2
    )
    got = list(loader)
    assert ds._open_slides == {} and ds._pid is None  # the parent never opened a slide
    assert [(b.key, b.index) for b in got] == [(t.key, t.index) for t in tasks]
    marker = got[3]
    assert marker.images is None and marker.error is None
    for k, g in enumerate(grids):
        images = torch.cat([b.images for b in got if b.key == k]).numpy()
        with open_slide(paths[k]) as s:
            assert np.array_equal(images, read_patches(s, g.coords, g))
    assert pickle.loads(pickle.dumps(ds))._open_slides == {}
    # in this process: at most max_open slides stay open, and an unreadable slide gives an error, not an exception
    for t in tasks[:6] + tasks[-2:]:
        ds[t]
    assert len(ds._open_slides) <= 2
    bad = PatchBatchTask(7, 0, str(FIXTURES / "unreadable.svs"), np.zeros((1, 2), np.int64), 0, 64, 64)
    result = ds[bad]
    assert result.images is None and result.error.startswith("DataError: slide ") and result.key == 7
    ds.close()
    assert ds._open_slides == {}


def test_counts_are_checked_before_the_folder_is_made(tmp_path, slides):
    for kw in ({"workers": -1}, {"batch_size": 0}, {"prefetch": 0}, {"workers": 1.5}):
        with pytest.raises(InputError, match="must be an integer"):
            extract_features(slides, tmp_path / "o", encoder=tiny_encoder(), **kw)
    with pytest.raises(InputError, match="transform_on must be"):
        extract_features(slides, tmp_path / "o", encoder=tiny_encoder(), transform_on="gpu")
    with pytest.raises(ConfigError, match="unknown slide backend 'pillow'"):
        extract_features(slides, tmp_path / "o", encoder=tiny_encoder(), backend="pillow")
    assert not (tmp_path / "o").exists()


def _transform_as_before(tf: PatchTransform, images: np.ndarray) -> torch.Tensor:
    """The transform as it was written before issue 16: resize the channels-last view, normalise out of place."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    size = (tf.input_size, tf.input_size)
    if tf.interpolation == "nearest":
        x = torch.nn.functional.interpolate(x, size=size, mode="nearest")
    else:
        x = torch.nn.functional.interpolate(x, size=size, mode=tf.interpolation, antialias=True, align_corners=False)
        if tf.interpolation == "bicubic":
            x = x.clamp_(0.0, 1.0)
    mean = torch.tensor(tf.mean).view(1, 3, 1, 1)
    return ((x - mean) / torch.tensor(tf.std).view(1, 3, 1, 1)).contiguous()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_faster_transform_gives_the_same_values_bit_for_bit(interpolation):
    rng = np.random.default_rng(3)
    tf = PatchTransform(224, interpolation=interpolation)
    for shape in ((4, 256, 256, 3), (3, 200, 200, 3), (2, 512, 512, 3)):
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        got = tf(images)
        assert got.is_contiguous() and torch.equal(got, _transform_as_before(tf, images)), shape


# ======================================================================== torch.compile
def test_compiled_encoder_pads_to_one_shape_and_matches_eager():
    enc = conv_encoder()
    x = enc.transform(np.random.default_rng(0).integers(0, 255, (13, 80, 80, 3), dtype=np.uint8))
    seen: list[int] = []

    def recording_backend(gm, example_inputs):
        seen.append(len(example_inputs))
        return gm.forward

    twin = enc.compiled(batch_size=8, backend=recording_backend)
    assert twin.name == enc.name and twin.identity == enc.identity and twin.model is enc.model
    out = torch.cat([twin.encode_tensor(x[:8]), twin.encode_tensor(x[8:])])  # 8, then 5 padded to 8
    assert twin.is_compiled and len(seen) == 1  # one graph for both batches
    np.testing.assert_allclose(out.numpy(), enc.encode_tensor(x).numpy(), rtol=1e-5, atol=1e-6)
    assert out.shape == (13, 16)


def test_compilation_failure_falls_back_to_eager_with_a_warning(tmp_path, slides):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler here (test)")

    enc = conv_encoder()
    x = enc.transform(np.random.default_rng(1).integers(0, 255, (6, 70, 70, 3), dtype=np.uint8))
    twin = enc.compiled(batch_size=8, backend=broken_backend)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed .*running it eagerly"):
        out = twin.encode_tensor(x)
    assert not twin.is_compiled
    assert torch.equal(out, enc.encode_tensor(x))  # exactly the eager result
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, then quietly eager
        assert torch.equal(twin.encode_tensor(x), out)


def test_extract_compile_option_reaches_the_encoder(tmp_path, slides, monkeypatch):
    asked: list[int | None] = []
    real = PatchEncoder.compiled

    def eager_backend_compiled(self, *, batch_size=None, **kw):
        asked.append(batch_size)
        return real(self, batch_size=batch_size, backend="eager")

    monkeypatch.setattr(PatchEncoder, "compiled", eager_backend_compiled)
    enc = tiny_encoder()
    a = extract_features(slides, tmp_path / "a", encoder=enc, patch_size=128, batch_size=16, compile=True)
    b = extract_features(slides, tmp_path / "b", encoder=enc, patch_size=128, batch_size=16)
    assert asked == [16] and a.done == b.done == 3
    for name in ("s0.h5", "s1.h5", "s2.h5"):
        np.testing.assert_allclose(_h5(tmp_path / "a" / name)[0], _h5(tmp_path / "b" / name)[0], rtol=1e-5, atol=1e-6)


def test_cli_extract_has_compile_and_passes_it(tmp_path, monkeypatch):
    import survpgc.wsi.extract as ex
    from survpgc.cli import app

    seen: dict = {}

    def fake(slides, out, **kw):
        seen.update(kw)
        return ex.ExtractSummary(Path(out), 0)

    monkeypatch.setattr(ex, "extract_features", fake)
    r = CliRunner().invoke(app, ["extract", "--slides", str(tmp_path), "--out", str(tmp_path / "o"), "--compile",
                                 "--workers", "3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert seen["compile"] is True and seen["workers"] == 3 and seen["transform_on"] == "auto"
    r = CliRunner().invoke(app, ["extract", "--slides", str(tmp_path), "--out", str(tmp_path / "o"),
                                 "--transform-on", "device"])  # fmt: skip
    assert r.exit_code == 0 and seen["compile"] is False and seen["transform_on"] == "device"
    assert seen["backend"] == "auto"
