"""Data integrity of `extract` / `segment` (issue 13): one settings record per folder, a manifest that merges
runs, two processes sharing a folder, up-front checks of --out, Ctrl-C, stale temporaries, --mpp semantics.

Slides are small synthetic SVS files (tests/wsi_helpers.py) tiled at 128 px and encoded by a tiny encoder,
so each test runs in seconds.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.errors import ConfigError, DataError, InputError, Interrupted
from survpgc.locks import claim
from survpgc.wsi.extract import extract_features, read_manifests, segment_slides

sys.path.insert(0, str(Path(__file__).parent))
from wsi_helpers import all_claims_free, small_slide_set, tiny_encoder, tmp_files

FIXTURES = Path(__file__).parent / "data" / "slides"
CMU = FIXTURES / "cmu_small_region.svs"  # 0.499 um/px in its metadata: 27 patches of 256 px at 20x


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slides") / "s"
    small_slide_set(folder, 4)
    return folder


@pytest.fixture(scope="module")
def enc():
    return tiny_encoder()


def _extract(slides, out, enc, **kw):
    return extract_features(slides, out, encoder=enc, patch_size=kw.pop("patch_size", 128), batch_size=64, **kw)


def _no_encoder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make loading an encoder by name fail loudly; returns the list of names that were asked for."""
    import survpgc.encoders.patch as patch

    asked: list[str] = []

    def refuse(name, *a, **k):
        asked.append(name)
        raise AssertionError(f"the encoder {name} was loaded")

    monkeypatch.setattr(patch, "create_patch_encoder", refuse)
    return asked


# ======================================================================== 1. settings record, manifest history
def test_settings_record_is_written_and_other_settings_are_refused_before_the_encoder_loads(
    tmp_path, slides, enc, monkeypatch
):
    out = tmp_path / "F"
    first = _extract(sorted(slides.iterdir())[:2], out, enc)
    assert first.done == 2
    record = json.loads((out / "extraction.json").read_text())
    assert record["encoder"] == "tiny" and record["feature_dim"] == 8 and record["weights"] == "tiny:0"
    assert record["patch_size"] == 128 and record["magnification"] == 20.0 and record["target_mpp"] == 0.5
    assert record["preset"] == "default" and record["min_tissue"] == 0.5 and record["float16"] is False
    assert record["survpgc_version"]
    manifest = (out / "manifest.csv").read_bytes()
    h5s = sorted(p.name for p in out.glob("*.h5"))

    asked = _no_encoder(monkeypatch)
    with pytest.raises(ConfigError) as ei:  # new slides in the list, other patch size
        extract_features(slides, out, encoder="efficientnet_lite0", patch_size=224)
    msg = str(ei.value)
    assert "patch_size: folder 128 vs requested 224" in msg
    assert "encoder: folder 'tiny' vs requested 'efficientnet_lite0'" in msg
    assert "another --out folder" in msg and str(out / "extraction.json") in msg and "\n" not in msg
    assert asked == []  # refused before the encoder loaded
    assert (out / "manifest.csv").read_bytes() == manifest  # nothing changed
    assert sorted(p.name for p in out.glob("*.h5")) == h5s  # no 224-px file beside the 128-px ones
    for kw, key in (
        ({"float16": True}, "float16"),
        ({"min_tissue": 0.25}, "min_tissue"),
        ({"preset": "biopsy"}, "preset"),
    ):
        with pytest.raises(ConfigError, match=f"{key}: folder"):
            _extract(slides, out, enc, **kw)
    with pytest.raises(ConfigError, match="feature_dim: folder 8 vs requested 4"):
        _extract(slides, out, tiny_encoder(dim=4))


def test_cli_refuses_other_settings_with_one_line_and_exit_2(tmp_path, slides, enc, monkeypatch, capsys):
    from survpgc.cli import main

    out = tmp_path / "F"
    _extract(sorted(slides.iterdir())[:1], out, enc)
    _no_encoder(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["survpgc", "extract", "--slides", str(slides), "--out", str(out),
                                      "--encoder", "tiny", "--patch-size", "256"])  # fmt: skip
    import survpgc.encoders.patch as patch

    monkeypatch.setattr(patch, "get_patch_encoder_spec", lambda name: type("S", (), {"name": name, "dim": 8}))
    capsys.readouterr()  # the first extraction's log lines (a CLI test run before may have routed them to stderr)
    with pytest.raises(SystemExit) as ei:
        main()
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "patch_size: folder 128 vs requested 256" in err
    assert len(err.splitlines()) == 1


def test_manifest_merges_runs_and_never_drops_rows(tmp_path, slides, enc):
    out = tmp_path / "F"
    paths = sorted(slides.iterdir())
    _extract(paths[:2], out, enc)
    _extract(paths[2:], out, enc)  # other slides: the first run's rows stay
    man = pd.read_csv(out / "manifest.csv")
    assert list(man["slide_id"]) == ["s0", "s1", "s2", "s3"] and set(man["status"]) == {"done"}
    # a rerun of everything: the finished slides keep their "done" rows (a skip never hides who made the file)
    again = _extract(slides, out, enc)
    assert again.skipped == 4
    man2 = pd.read_csv(out / "manifest.csv")
    assert list(man2["status"]) == ["done"] * 4 and list(man2["n_patches"]) == list(man["n_patches"])
    # a slide redone replaces its own row only
    (out / "s1.h5").unlink()
    _extract(paths[1:2], out, enc)
    man3 = pd.read_csv(out / "manifest.csv").set_index("slide_id")
    assert len(man3) == 4 and man3.loc["s1", "status"] == "done"


def test_folder_made_before_records_is_checked_against_its_files(tmp_path, slides, enc):
    out = tmp_path / "F"
    _extract(sorted(slides.iterdir())[:1], out, enc)
    (out / "extraction.json").unlink()  # as written by an older survpgc
    with pytest.raises(ConfigError, match=r"patch_size: folder 128 vs requested 160.*existing files \(s0\.h5\)"):
        _extract(slides, out, enc, patch_size=160)
    res = _extract(slides, out, enc)  # same settings: goes on, and the folder gets its record
    assert (res.skipped, res.done) == (1, 3) and (out / "extraction.json").is_file()


def test_segment_has_a_settings_record_and_a_merged_manifest(tmp_path, slides):
    out = tmp_path / "seg"
    paths = sorted(slides.iterdir())
    segment_slides(paths[:2], out, patch_size=128)
    segment_slides(paths[2:], out, patch_size=128)
    table = pd.read_csv(out / "segment.csv")
    assert list(table["slide_id"]) == ["s0", "s1", "s2", "s3"] and (table["n_patches"] > 0).all()
    assert json.loads((out / "segmentation.json").read_text())["patch_size"] == 128
    with pytest.raises(ConfigError, match="preset: folder 'default' vs requested 'biopsy'"):
        segment_slides(paths, out, patch_size=128, preset="biopsy")


# ======================================================================== 2. two processes on one folder
def test_a_slide_claimed_by_another_process_is_left_to_it(tmp_path, slides, enc):
    out = tmp_path / "F"
    other = claim(out, "s2")  # another process holds s2 (a separate lock: it conflicts like one)
    assert other is not None
    try:
        res = _extract(slides, out, enc)
    finally:
        other.release()
    assert (res.done, res.failed, res.claimed) == (3, 0, 1) and res.ok
    assert "1 claimed by another process" in res.describe()
    assert {r["slide_id"]: r["status"] for r in res.rows}["s2"] == "claimed"
    assert not (out / "s2.h5").exists()
    assert list(pd.read_csv(out / "manifest.csv")["slide_id"]) == ["s0", "s1", "s3"]  # not recorded as failed
    again = _extract(slides, out, enc)
    assert (again.done, again.skipped, again.claimed) == (1, 3, 0)


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {tests!r})
    from wsi_helpers import tiny_encoder
    from survpgc.wsi.extract import extract_features

    enc = tiny_encoder()
    slow = enc.encode_tensor
    def encode(x):
        time.sleep(0.3)  # slow enough that the two processes overlap
        return slow(x)
    enc.encode_tensor = encode
    res = extract_features({slides!r}, {out!r}, encoder=enc, patch_size=128, batch_size=8, shard={shard!r})
    print(json.dumps({{r["slide_id"]: r["status"] for r in res.rows}}))
    """
)


def test_two_processes_on_one_folder_share_the_slides(tmp_path):
    """Two real processes (one of them with an explicit --shard 0/1, as a torchrun rank would have) on one folder:
    every slide is extracted exactly once, nothing fails, one manifest holds every slide."""
    shards = (None, "0/1")
    slides = tmp_path / "slides"
    small_slide_set(slides, 4)
    out = tmp_path / "F"
    tests = str(Path(__file__).parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER.format(tests=tests, slides=str(slides), out=str(out), shard=shard)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for shard in shards
    ]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    done = [sid for r in results for sid, status in r.items() if status == "done"]
    assert sorted(done) == ["s0", "s1", "s2", "s3"]  # each slide extracted exactly once
    for r in results:
        assert set(r.values()) <= {"done", "skipped", "claimed"}  # never "failed"
    man = pd.read_csv(out / "manifest.csv")
    assert list(man["slide_id"]) == ["s0", "s1", "s2", "s3"] and set(man["status"]) == {"done"}
    assert not tmp_files(out)


def test_shards_write_one_manifest(tmp_path, slides, enc):
    out = tmp_path / "F"
    for i in range(2):
        _extract(slides, out, enc, shard=f"{i}/2")
    assert [p.name for p in out.glob("manifest*.csv")] == ["manifest.csv"]
    assert sorted(read_manifests(out)["slide_id"]) == ["s0", "s1", "s2", "s3"]


# ======================================================================== 3. --out checked up front, atomic PNGs
def test_unwritable_out_is_refused_before_the_encoder_loads(tmp_path, slides, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    asked = _no_encoder(monkeypatch)
    with pytest.raises(InputError, match=r"cannot write to --out .*a-file/F"):
        extract_features(slides, blocker / "F", encoder="efficientnet_lite0")
    with pytest.raises(InputError, match="exists and is not a folder"):
        extract_features(slides, blocker, encoder="efficientnet_lite0")
    assert asked == []


def test_a_command_that_fails_at_once_leaves_no_empty_out(tmp_path, slides, monkeypatch):
    empty = tmp_path / "no-slides"
    empty.mkdir()
    with pytest.raises(DataError, match="no slide files"):
        extract_features(empty, tmp_path / "A", encoder=tiny_encoder())
    assert not (tmp_path / "A").exists()
    junk = tmp_path / "junk.bin"
    junk.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match="is not a checkpoint of"):
        extract_features(slides, tmp_path / "B", encoder="efficientnet_lite0", weights=str(junk), device="cpu")
    assert not (tmp_path / "B").exists()
    with pytest.raises(DataError):
        segment_slides(empty, tmp_path / "C")
    assert not (tmp_path / "C").exists()


def test_qc_and_mask_pngs_are_written_atomically(tmp_path, slides, monkeypatch):
    from survpgc.wsi.grid import tile_slide

    real = Path.write_bytes

    def half_then_disk_full(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_disk_full)
    qc, mask = tmp_path / "qc" / "s0.png", tmp_path / "masks" / "s0.png"
    with pytest.raises(OSError, match="No space left"):
        tile_slide(sorted(slides.iterdir())[0], patch_size=128, qc_path=qc, mask_path=mask)
    assert not qc.exists() and not mask.exists()  # no truncated PNG under its final name
    assert not tmp_files(tmp_path)


# ======================================================================== 4. Ctrl-C
@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_says_what_was_finished_and_that_a_rerun_resumes(tmp_path, slides, workers):
    """With or without reader workers: what was encoded is written, the slides planned ahead are released, the
    message says what finished, and a rerun does the rest."""
    out = tmp_path / "F"
    enc = tiny_encoder()
    real = enc.encode_tensor
    calls = {"n": 0}

    def encode(x):
        calls["n"] += 1
        if calls["n"] == 3:  # the third slide's first batch (one batch per slide)
            raise KeyboardInterrupt
        return real(x)

    enc.encode_tensor = encode
    with pytest.raises(Interrupted) as ei:
        _extract(slides, out, enc, workers=workers)
    msg = str(ei.value)
    assert f"2 of 4 slide(s) finished in {out}" in msg and "rerun the same command to resume" in msg
    assert sorted(p.name for p in out.glob("*.h5")) == ["s0.h5", "s1.h5"] and not tmp_files(out)
    assert list(pd.read_csv(out / "manifest.csv")["slide_id"]) == ["s0", "s1"]
    assert all_claims_free(out, ["s0", "s1", "s2", "s3"])  # the slides planned ahead were released
    enc.encode_tensor = real
    res = _extract(slides, out, enc, workers=workers)
    assert (res.skipped, res.done) == (2, 2)


def test_ctrl_c_in_the_cli_exits_130_with_the_message(tmp_path, slides, monkeypatch, capsys):
    import survpgc.encoders.patch as patch
    from survpgc.cli import main

    enc = tiny_encoder()

    def interrupt(x):
        raise KeyboardInterrupt

    enc.encode_tensor = interrupt
    monkeypatch.setattr(patch, "create_patch_encoder", lambda *a, **k: enc)
    monkeypatch.setattr(patch, "get_patch_encoder_spec", lambda name: type("S", (), {"name": "tiny", "dim": 8}))
    out = tmp_path / "F"
    monkeypatch.setattr(sys, "argv", ["survpgc", "extract", "--slides", str(slides), "--out", str(out),
                                      "--encoder", "tiny", "--patch-size", "128"])  # fmt: skip
    with pytest.raises(SystemExit) as ei:
        main()
    assert ei.value.code == 130
    err = capsys.readouterr().err
    assert f"interrupted: extract stopped by Ctrl-C: 0 of 4 slide(s) finished in {out}" in err
    assert "rerun the same command to resume" in err


# ======================================================================== 5. stale temporaries
def test_stale_temporaries_are_swept_when_their_slide_is_claimed(tmp_path, slides, enc):
    out = tmp_path / "F"
    (out / "qc").mkdir(parents=True)
    stale = [out / ".s0.h5.k1ll3d.tmp", out / "qc" / ".s0.png.k1ll3d.tmp", out / ".manifest.csv.k1ll3d.tmp",
             out / ".extraction.json.k1ll3d.tmp", out / ".s3.h5.k1ll3d.tmp"]  # fmt: skip
    for p in stale:
        p.write_bytes(b"half of a file")
    other = claim(out, "s3")  # s3 is another process's: its temporaries may be live, leave them
    try:
        _extract(slides, out, enc)
    finally:
        other.release()
    assert tmp_files(out) == [out / ".s3.h5.k1ll3d.tmp"]
    _extract(slides, out, enc)
    assert tmp_files(out) == []


# ======================================================================== 10. --mpp fills in, --mpp-override replaces
def test_mpp_fills_in_only_missing_metadata(tmp_path):
    src = tmp_path / "slides"
    src.mkdir()
    shutil.copy(CMU, src)
    rows = segment_slides(src, tmp_path / "a", mpp=0.25)  # the slide's own 0.499 um/px is kept
    assert rows[0]["n_patches"] == 27 and rows[0]["mpp"] == pytest.approx(0.499) and rows[0]["mpp_source"] == "metadata"
    nompp = tmp_path / "nompp"
    small_slide_set(nompp, 1, mpp=None)
    rows = segment_slides(nompp, tmp_path / "b", mpp=0.5, patch_size=128)
    assert rows[0]["mpp"] == 0.5 and rows[0]["mpp_source"] == "fallback" and rows[0]["n_patches"] > 0
    with pytest.raises(InputError, match=r"--mpp 300.0 is not a plausible"):
        segment_slides(nompp, tmp_path / "c", mpp=300.0, patch_size=128)
    assert not (tmp_path / "c").exists()


def test_mpp_override_replaces_metadata_and_is_logged_and_recorded(tmp_path, caplog, enc):
    src = tmp_path / "slides"
    src.mkdir()
    shutil.copy(CMU, src)
    with caplog.at_level(logging.WARNING, logger="survpgc.wsi.extract"):
        res = extract_features(src, tmp_path / "o", encoder=enc, mpp_override=0.25, batch_size=64)
    assert res.n_patches == 6
    assert "cmu_small_region: MPP 0.25 um/px from --mpp-override replaces 0.499 um/px" in caplog.text
    row = pd.read_csv(tmp_path / "o" / "manifest.csv").iloc[0]
    assert row["mpp"] == 0.25 and row["mpp_source"] == "override"
    table = tmp_path / "mpp.csv"
    table.write_text("slide_id,mpp\ncmu_small_region,0.25\n")
    rows = segment_slides(src, tmp_path / "s", mpp_table=table)
    assert rows[0]["mpp_source"] == "table" and rows[0]["n_patches"] == 6
    with pytest.raises(ConfigError, match="exclude each other"):
        segment_slides(src, tmp_path / "t", mpp_table=table, mpp_override=0.25)


def test_cli_mpp_options(tmp_path):
    src = tmp_path / "slides"
    src.mkdir()
    shutil.copy(CMU, src)
    runner = CliRunner()
    r = runner.invoke(app, ["segment", "--slides", str(src), "--out", str(tmp_path / "a"), "--mpp", "0.25"])
    assert r.exit_code == 0 and "cmu_small_region: ok (27 patches)" in r.stdout
    r = runner.invoke(app, ["segment", "--slides", str(src), "--out", str(tmp_path / "b"), "--mpp-override", "0.25"])
    assert r.exit_code == 0 and "cmu_small_region: ok (6 patches)" in r.stdout
    assert pd.read_csv(tmp_path / "b" / "segment.csv")["mpp_source"].tolist() == ["override"]
