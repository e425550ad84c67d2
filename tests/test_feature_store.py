"""Tests of survpgc.data.store (the feature store), survpgc.data.buckets (batches of similar bag length), the
bounded feature cache of SurvivalDataset, and their config keys and loader wiring."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from survpgc.config import DataConfig
from survpgc.data.buckets import BucketBatchSampler, PrefetchBatches, padding_share
from survpgc.data.cohort import load_tcga
from survpgc.data.dataset import SurvivalDataset, collate_survival
from survpgc.data.features import read_feature_file, write_feature_file
from survpgc.data.store import FeatureStore, build_store
from survpgc.errors import ConfigError, DataError, InputError
from survpgc.inputs import make_loader

DIM = 8
# case: patches per slide (two slides for some cases; None = a slide without a feature file)
CASES = {
    "TCGA-AA-0001": [60],
    "TCGA-AA-0002": [12, 30],
    "TCGA-AA-0003": [None],
    "TCGA-AA-0004": [7],
    "TCGA-AA-0005": [45],
    "TCGA-AA-0006": [25, 9, 40],
    "TCGA-AA-0007": [3],
}
ITEM_KEYS = ("path", "path_mask", "path_coords", "path_slide", "has_path")


def _cohort_dir(root: Path, *, dtype=np.float16, pt_case: str = "TCGA-AA-0004") -> tuple[Path, Path]:
    coh, feats = root / "coh", root / "feats"
    coh.mkdir(parents=True)
    feats.mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for i, (case, slides) in enumerate(CASES.items()):
        for j, n in enumerate(slides):
            stem = f"{case}-01Z-00-DX{j + 1}"
            rows.append({"case_id": case, "slide_id": f"{stem}.svs", "survival_months": 5.0 * (i + 1),
                         "censorship": i % 2, "age": 50 + i})  # fmt: skip
            if n is None:
                continue
            x = rng.normal(size=(n, DIM)).astype(dtype)
            x[:, 0] = 1000 * j + np.arange(n)  # column 0 names the patch
            coords = np.stack([np.arange(n) * 256, np.full(n, 100 * i + j)], axis=1)
            if case == pt_case:  # a .pt file without coords
                write_feature_file(feats / f"{stem}.pt", x)
            else:
                write_feature_file(feats / f"{stem}.h5", x, coords, patch_size=256, encoder="toy", encoder_dim=DIM)
    pd.DataFrame(rows).to_csv(coh / "cohort.csv", index=False)
    return coh, feats


@pytest.fixture
def cohort16(tmp_path):
    coh, feats = _cohort_dir(tmp_path)
    return load_tcga(coh, feature_dir=feats, on_missing_features="drop"), feats


def _same_items(a: dict, b: dict) -> None:
    for k in ITEM_KEYS:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------- equality with and without
@pytest.mark.parametrize("train", [True, False])
def test_store_items_and_batches_are_bit_identical(cohort16, tmp_path, train):
    cohort, feats = cohort16
    res = build_store(feats, tmp_path / "store")
    assert res.files == 9 and res.rows == sum(n for s in CASES.values() for n in s if n) and not res.up_to_date
    kw = {"modalities": ("pathology",), "train": train, "n_patches": 20, "seed": 5}
    files = SurvivalDataset(cohort, **kw)
    store = SurvivalDataset(cohort, store=tmp_path / "store", **kw)
    assert store.dims == files.dims == {"pathology": DIM}
    np.testing.assert_array_equal(store.bag_lengths(), files.bag_lengths())
    assert store.bag_lengths().tolist() == ([20, 20, 0, 7, 20, 20, 3] if train else [60, 42, 0, 7, 45, 74, 3])
    for epoch in (1, 2, 3):
        files.set_epoch(epoch)
        store.set_epoch(epoch)
        for i in range(len(files)):
            _same_items(files[i], store[i])
        # through the loader: same batches, in the same order
        batches_f = list(make_loader(files, 3, True, 0, 11))
        batches_s = list(make_loader(store, 3, True, 0, 11))
        assert [b["case_id"] for b in batches_f] == [b["case_id"] for b in batches_s]
        for bf, bs in zip(batches_f, batches_s, strict=True):
            for k in ITEM_KEYS:
                assert torch.equal(bf[k], bs[k]), k
    if train:  # sampling really changes with the epoch, and multi-slide bags mix their slides
        files.set_epoch(1)
        a = files[5]["path_slide"].unique().tolist()
        assert a == [0, 1, 2]


def test_float32_files_equal_the_float16_cache_or_a_float32_store(tmp_path):
    coh, feats = _cohort_dir(tmp_path, dtype=np.float32)
    cohort = load_tcga(coh, feature_dir=feats, on_missing_features="drop")
    build_store(feats, tmp_path / "s16")
    build_store(feats, tmp_path / "s32", dtype="float32")
    kw = {"modalities": ("pathology",), "train": True, "n_patches": 16, "seed": 1}
    cached16 = SurvivalDataset(cohort, cache=True, cache_dtype="float16", **kw)  # data.cache's default rounding
    plain = SurvivalDataset(cohort, cache=False, **kw)
    s16 = SurvivalDataset(cohort, store=tmp_path / "s16", **kw)
    s32 = SurvivalDataset(cohort, store=FeatureStore(tmp_path / "s32"), **kw)
    rounded = False
    for i in range(len(plain)):
        _same_items(cached16[i], s16[i])
        _same_items(plain[i], s32[i])
        rounded |= not torch.equal(plain[i]["path"], s16[i]["path"])
    assert rounded  # the float16 store really rounds float32 features


# ------------------------------------------------------------------------------- building
def test_build_refuses_disagreeing_folders_and_other_stores(tmp_path):
    _, feats = _cohort_dir(tmp_path)
    odd = feats / "TCGA-AA-0001-01Z-00-DX1.h5"
    x, c, attrs = read_feature_file(odd)
    write_feature_file(odd, x, c, **{**attrs, "encoder": "other"})
    with pytest.raises(DataError, match=r"disagree on encoder: .*DX1.h5 has 'other', .*has 'toy'"):
        build_store(feats, tmp_path / "s")
    assert not (tmp_path / "s").exists()  # refused before anything was written
    write_feature_file(odd, x, c, **attrs)
    (feats / "extraction.json").write_text(json.dumps({"encoder": "toy", "feature_dim": DIM + 1}))
    with pytest.raises(DataError, match=r"dim 8 but .*extraction.json records feature_dim 9"):
        build_store(feats, tmp_path / "s")
    (feats / "extraction.json").write_text(json.dumps({"encoder": "toy", "feature_dim": DIM}))
    first = build_store(feats, tmp_path / "s")
    again = build_store(feats, tmp_path / "s")
    assert again.up_to_date and again.written == 0 and first.written == 9
    rec = FeatureStore(tmp_path / "s").record
    assert rec["settings"]["encoder"] == "toy" and rec["extraction"]["feature_dim"] == DIM
    write_feature_file(feats / "extra-slide.h5", np.ones((4, DIM), np.float16), encoder="toy", encoder_dim=DIM)
    with pytest.raises(DataError, match="already holds a feature store"):
        build_store(feats, tmp_path / "s")
    with pytest.raises(InputError, match="--dtype"):
        build_store(feats, tmp_path / "t", dtype="bfloat16")
    big = feats / "TCGA-AA-0005-01Z-00-DX1.h5"
    write_feature_file(big, np.full((3, DIM), 1e6, np.float32), encoder="toy", encoder_dim=DIM)
    with pytest.raises(DataError, match=r"DX1.h5: values beyond the float16 range"):
        build_store(feats, tmp_path / "u")
    with pytest.raises(DataError, match="not a feature store"):
        FeatureStore(tmp_path / "u")  # the failed build left no store behind


def test_killed_build_resumes_to_the_same_store(tmp_path):
    _, feats = _cohort_dir(tmp_path)
    env = {**os.environ, "SURVPGC_FAULT": "store-write@4"}  # SIGKILL after writing the fourth file
    code = (  # a checkpoint after every file
        "import sys, survpgc.data.store as s; s._CHECKPOINT_BYTES = 1; s.build_store(sys.argv[1], sys.argv[2])"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(feats), str(tmp_path / "s")], env=env, timeout=120)
    assert proc.returncode == -9  # killed at the fourth file
    with pytest.raises(DataError, match="interrupted"):
        FeatureStore(tmp_path / "s")
    resumed = build_store(feats, tmp_path / "s")
    assert resumed.resumed == 3 and resumed.written == 6
    fresh = build_store(feats, tmp_path / "fresh")
    for name in ("features.npy", "coords.npy", "slides.csv"):
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    assert not list((tmp_path / "s").glob("*.partial")) and not (tmp_path / "s" / ".build.json").exists()
    assert fresh.resumed == 0


# ------------------------------------------------------------------------------- reading
def test_changed_or_unknown_files_are_refused(cohort16, tmp_path):
    cohort, feats = cohort16
    build_store(feats, tmp_path / "s")
    p = feats / "TCGA-AA-0005-01Z-00-DX1.h5"
    x, c, attrs = read_feature_file(p)
    write_feature_file(p, x[:40], c[:40], **attrs)  # re-extracted after the store was built
    with pytest.raises(DataError, match=r"DX1.h5: changed after the feature store"):
        SurvivalDataset(cohort, modalities=("pathology",), store=tmp_path / "s")
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_feature_file(other / "lonely.h5", np.ones((2, DIM), np.float16))
    lone = _cohort_dir(tmp_path / "b")[1]
    build_store(lone, tmp_path / "s2")
    store = FeatureStore(tmp_path / "s2")
    with pytest.raises(DataError, match=r"lonely\.h5: not in the feature store"):
        store.locate(other / "lonely.h5")
    with pytest.raises(InputError, match="path_dim"):
        SurvivalDataset(cohort, modalities=("pathology",), store=store, path_dim=DIM + 1)
    (tmp_path / "s2" / "features.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(DataError, match=r"features\.npy"):
        FeatureStore(tmp_path / "s2")


def test_store_pickles_without_its_mapping_and_works_in_workers(cohort16, tmp_path):
    cohort, feats = cohort16
    build_store(feats, tmp_path / "s")
    ds = SurvivalDataset(cohort, modalities=("pathology",), train=True, n_patches=10, seed=2, store=tmp_path / "s")
    _ = ds[0]  # maps the arrays in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.store._features is None
    _same_items(clone[0], ds[0])
    ds.set_epoch(1)
    serial = list(DataLoader(ds, batch_size=2, collate_fn=collate_survival))
    parallel = list(DataLoader(ds, batch_size=2, collate_fn=collate_survival, num_workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["path"], b["path"])


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return -1


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_reading_a_store_keeps_resident_memory_flat(tmp_path):
    """Every case's pages are handed back after reading: resident file pages do not grow with the cases read."""
    coh, feats = tmp_path / "coh", tmp_path / "feats"
    coh.mkdir()
    feats.mkdir()
    n_cases, n, dim = 24, 2000, 512  # 2 MB per case, 48 MB in all
    rows = []
    for i in range(n_cases):
        stem = f"TCGA-BB-{i:04d}-01Z-00-DX1"
        rows.append({"case_id": stem[:12], "slide_id": f"{stem}.svs", "survival_months": 1.0 + i, "censorship": 0})
        write_feature_file(feats / f"{stem}.h5", np.full((n, dim), i, np.float16))
    pd.DataFrame(rows).to_csv(coh / "cohort.csv", index=False)
    cohort = load_tcga(coh, feature_dir=feats)
    build_store(feats, tmp_path / "s")
    ds = SurvivalDataset(cohort, modalities=("pathology",), train=False, store=tmp_path / "s")
    ds[0]
    before = _rss_file_kb()
    for i in range(n_cases):
        assert float(ds[i]["path"][0, 0]) == i
    grown = _rss_file_kb() - before
    assert grown < 4 * 1024, f"resident file pages grew by {grown} kB over {n_cases} cases of 2 MB"
    # without handing the pages back they would stay resident (the check above can fail)
    ds.store.release = lambda offset, n: None
    before = _rss_file_kb()
    for i in range(n_cases):
        ds[i]
    assert _rss_file_kb() - before > 20 * 1024


# ------------------------------------------------------------------------------- bounded cache
def test_cache_bytes_bounds_the_cache_lru(cohort16):
    cohort, _ = cohort16
    kw = {"modalities": ("pathology",), "train": True, "n_patches": 10, "seed": 4, "cache": True}
    unbounded = SurvivalDataset(cohort, **kw)
    per_file = 2 * DIM + 16  # float16 features + int64 coords per patch
    bounded = SurvivalDataset(cohort, cache_bytes=50 * per_file, **kw)
    for i in range(len(unbounded)):
        _same_items(unbounded[i], bounded[i])
    assert unbounded.cache_size == 9
    assert 0 < bounded.cached_bytes <= 50 * per_file and bounded.cache_size < 9
    # least recently used out: the last case read (40 + 9 + 25 patches of case 6 exceed the bound; 7 fits)
    assert list(bounded._cache)[-1].endswith("TCGA-AA-0007-01Z-00-DX1.h5")
    bounded.clear_cache()
    assert bounded.cached_bytes == 0 and bounded.cache_size == 0
    with pytest.raises(InputError, match="cache_bytes"):
        SurvivalDataset(cohort, modalities=("pathology",), cache_bytes=-1)


# ------------------------------------------------------------------------------- buckets
def test_bucket_sampler_covers_every_case_once_and_is_deterministic():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 4000, size=101)
    s = BucketBatchSampler(lengths, 8, pool=4, seed=3)
    assert len(s) == 13
    e1 = s.batches(1)
    assert sorted(i for b in e1 for i in b) == list(range(101))
    assert [len(b) for b in e1].count(8) == 12 and sorted(len(b) for b in e1)[0] == 5
    assert e1 == BucketBatchSampler(lengths, 8, pool=4, seed=3).batches(1)
    assert e1 != s.batches(2) and e1 != BucketBatchSampler(lengths, 8, pool=4, seed=4).batches(1)
    perm = np.random.default_rng(0).permutation(101)
    random_batches = [perm[i : i + 8].tolist() for i in range(0, 101, 8)]
    assert padding_share(lengths, e1) < 0.5 * padding_share(lengths, random_batches)
    # the epoch comes from the source object when given
    src = type("Src", (), {"epoch": 2})()
    assert list(BucketBatchSampler(lengths, 8, pool=4, seed=3, epoch_source=src)) == s.batches(2)
    # distributed: the same batch list shared out, every process the same number of steps
    shards = [list(BucketBatchSampler(lengths, 8, pool=4, seed=3, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(x) for x in shards] == [5, 5, 5]
    seen = [i for shard in shards for b in shard for i in b]
    assert set(seen) == set(range(101))
    e0 = s.batches(0)  # the epoch of samplers nobody set
    assert shards[0][0] == e0[0] and shards[1][0] == e0[1] and shards[2][3] == e0[11]
    assert shards[1][4] == e0[0]  # 13 batches padded to 15 with the first ones
    for bad in ({"pool": 1}, {"seed": -1}, {"num_replicas": 2, "rank": 2}):
        with pytest.raises(InputError):
            BucketBatchSampler(lengths, 8, **bad)
    with pytest.raises(InputError):
        BucketBatchSampler([], 8)


def test_make_loader_buckets_by_sampled_length(cohort16, tmp_path):
    cohort, feats = cohort16
    build_store(feats, tmp_path / "s")
    ds = SurvivalDataset(cohort, modalities=("pathology",), train=True, n_patches=40, seed=0, bucket=2,
                         store=tmp_path / "s")  # fmt: skip
    lengths = ds.bag_lengths()
    assert lengths.tolist() == [40, 40, 0, 7, 40, 40, 3]
    loader = make_loader(ds, 2, True, 0, 7)
    assert isinstance(loader.batch_sampler, PrefetchBatches)  # a store: each batch announced one batch ahead
    bucketed = loader.batch_sampler.batches
    assert isinstance(bucketed, BucketBatchSampler) and len(loader) == 4
    announced: list[list[int]] = []
    ds.prefetch = lambda idx: (announced.append(list(idx)), SurvivalDataset.prefetch(ds, idx))
    loader.batch_sampler.prefetch = ds.prefetch
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        announced.clear()
        it = iter(loader)
        first = next(it)
        expect = [[ds.case_ids[i] for i in b] for b in bucketed.batches(epoch)]
        assert first["case_id"] == expect[0] and len(announced) == 2  # the first batch and the next one
        batches = [first, *it]
        assert [[ds.case_ids[i] for i in b] for b in announced] == expect
        ids = [c for b in batches for c in b["case_id"]]
        assert sorted(ids) == sorted(ds.case_ids)
        assert [b["case_id"] for b in batches] == expect
        for b in batches:  # a batch is padded to its own longest sampled bag
            assert b["path"].shape[1] == max(lengths[ds.case_ids.index(c)] for c in b["case_id"])
    # the store's read-ahead thread of this process read every announced range
    from survpgc.data import store as store_module

    reader = store_module._PREFETCHERS[(os.getpid(), str(ds.store.path))]
    deadline = time.monotonic() + 30
    while reader.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader.pending == 0
    # batch 1, evaluation loaders and bucket 0 keep the plain batches (announced ahead all the same)
    for loader in (
        make_loader(ds, 1, True, 0, 7),
        make_loader(ds, 2, False, 0, 7),
        make_loader(ds, 2, True, 0, 7, bucket=0),
    ):
        assert isinstance(loader.batch_sampler.batches, torch.utils.data.BatchSampler)
    files_ds = SurvivalDataset(cohort, modalities=("pathology",), train=True, n_patches=40, bucket=2)
    assert isinstance(make_loader(files_ds, 2, True, 0, 7).batch_sampler, BucketBatchSampler)
    assert isinstance(make_loader(files_ds, 2, True, 0, 7, bucket=0).sampler, torch.utils.data.RandomSampler)


def test_prefetch_batches_set_the_epoch_of_a_distributed_sampler(cohort16):
    cohort, _ = cohort16
    ds = SurvivalDataset(cohort, modalities=("pathology",))
    shard = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=3)
    wrapped = PrefetchBatches(torch.utils.data.BatchSampler(shard, 2, False), lambda idx: None, sampler=shard,
                              epoch_source=ds)  # fmt: skip
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        reference = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=3)
        reference.set_epoch(epoch)
        assert [i for b in wrapped for i in b] == list(reference)
        assert len(wrapped) == 2


# ------------------------------------------------------------------------------- config and runs
@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"bucket": 1}, "data.bucket: must be 0"),
        ({"bucket": -2}, "data.bucket: must be >= 0"),
        ({"cache_gb": 0}, "data.cache_gb: must be > 0"),
        ({"cache_gb": "1GB"}, "data.cache_gb"),
        ({"store": ""}, "data.store: must be a folder"),
        ({"store": 3.5, "bucket": True}, "data.bucket"),
    ],
)
def test_data_config_refuses_bad_values(values, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**values)
    ok = DataConfig(store="some/store", cache_gb=2, bucket=8)
    assert ok.cache_gb == 2 and ok.bucket == 8


def test_run_with_a_store_matches_the_run_without(tmp_path):
    """A short CV run (2 folds, 2 epochs, batch 4) gives the same predictions with and without data.store, and a
    store that lacks a file of the run is refused before training."""
    from survpgc.config import load_config
    from survpgc.train.cv import run_cv

    coh, feats = _cohort_dir(tmp_path, pt_case="none")
    build_store(feats, tmp_path / "store")
    base = [f"cohort.source={coh}", f"pathology.feature_dir={feats}", "cohort.on_missing_features=drop",
            "splits.folds=2", "train.epochs=2", "train.select_from_epoch=1", "train.batch_size=4",
            "data.n_patches=16", "eval.bootstrap=0", "models=[abmil]", "genomic.kind=none"]  # fmt: skip
    a = run_cv(load_config(None, base), tmp_path / "a")
    b = run_cv(load_config(None, [*base, f"data.store={tmp_path / 'store'}"]), tmp_path / "b")
    pa, pb = (pd.read_csv(r / "predictions.csv") for r in (tmp_path / "a", tmp_path / "b"))
    pd.testing.assert_frame_equal(pa, pb)
    assert a.summary["cindex_mean"].tolist() == b.summary["cindex_mean"].tolist()
    partial = tmp_path / "partial"
    partial.mkdir()
    for p in sorted(feats.glob("*.h5"))[:-1]:
        (partial / p.name).symlink_to(p)
    build_store(partial, tmp_path / "small")
    with pytest.raises(DataError, match="not in the feature store"):
        run_cv(load_config(None, [*base, f"data.store={tmp_path / 'small'}"]), tmp_path / "c")
    assert not (tmp_path / "c" / "predictions.csv").exists()


def test_store_cli_builds_reports_and_refuses(tmp_path):
    from typer.testing import CliRunner

    from survpgc.cli import app

    runner = CliRunner()
    _, feats = _cohort_dir(tmp_path)
    r = runner.invoke(app, ["store", "build", "--features", str(feats), "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "9 files, 231 patches x 8 float16" in r.output and f"data.store={tmp_path / 's'}" in r.output
    r = runner.invoke(app, ["store", "build", "--features", str(feats), "--out", str(tmp_path / "s")])
    assert r.exit_code == 0 and "is up to date" in r.output
    r = runner.invoke(app, ["store", "info", str(tmp_path / "s")])
    assert r.exit_code == 0 and '"encoder": "toy"' in r.output and str(feats) in r.output
    r = runner.invoke(app, ["store", "build", "--features", str(feats), "--out", str(tmp_path / "t"), "--dtype", "x"])
    assert isinstance(r.exception, InputError) and "--dtype" in str(r.exception)
