"""Data integrity of ``survpgc run`` (issue 13): inputs checked before fold 0, one run directory shared safely by
several processes, Ctrl-C, stale temporaries, permissions, honest summaries, determinism across worker counts."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survpgc.config import load_config
from survpgc.data.features import write_feature_file
from survpgc.errors import BusyError, DataError, InputError, Interrupted, SurvpgcError
from survpgc.locks import claim, folder_lock
from survpgc.synth import generate_synthetic_cohort
from survpgc.train import cv as cv_module
from survpgc.train.cv import run_cv


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 16-case synthetic cohort with 8-dim patch features (one .h5 per slide)."""
    root = tmp_path_factory.mktemp("integrity")
    syn = root / "syn"
    generate_synthetic_cohort(syn, n_patients=16, seed=3, render_slides=False)
    feat = root / "features"
    _write_features(syn, feat)
    return syn, feat


def _write_features(syn: Path, feat: Path, **overrides) -> list[Path]:
    """One feature file per slide (``overrides``: ``{slide index: attrs}``, ``dim`` changes the feature dim)."""
    feat.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, sid in enumerate(pd.read_csv(syn / "cohort.csv")["slide_id"]):
        attrs = {"patch_size": 256, "target_magnification": 20.0, "encoder": "fake", "encoder_dim": 8}
        attrs.update(overrides.get(str(i), {}))
        dim = int(attrs["encoder_dim"])
        x = rng.normal(size=(int(rng.integers(10, 30)), dim)).astype(np.float32)
        path = feat / f"{Path(sid).stem}.h5"
        write_feature_file(path, x, slide_id=sid, **attrs)
        paths.append(path)
    return paths


def _cfg(syn, feat, *extra):
    return load_config(
        None,
        [
            f"cohort.source={syn}",
            f"pathology.feature_dir={feat}",
            "splits.folds=2",
            "train.epochs=1",
            "train.select_from_epoch=1",
            "train.batch_size=4",
            "eval.bootstrap=20",
            "models=[coxph]",
            *extra,
        ],
    )


# ------------------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize(
    ("attrs", "name"),
    [
        ({"patch_size": 224}, "patch_size"),
        ({"encoder": "uni"}, "encoder"),
        ({"target_magnification": 40.0}, "target_magnification"),
        ({"encoder_dim": 12}, "dim"),
    ],
)
def test_feature_files_that_disagree_are_refused_before_fold_0(cohort, tmp_path, attrs, name):
    syn, _ = cohort
    feat = tmp_path / "mixed"
    paths = _write_features(syn, feat, **{"5": attrs})
    out = tmp_path / "run"
    with pytest.raises(DataError, match=name) as info:
        run_cv(_cfg(syn, feat, "models=[abmil, coxph]"), out)
    msg = str(info.value)
    assert paths[5].name in msg and paths[0].name in msg  # the odd file and one it disagrees with
    assert not (out / "folds").exists()  # nothing trained


def test_unreadable_feature_file_is_found_before_fold_0(cohort, tmp_path):
    syn, _ = cohort
    feat = tmp_path / "bad"
    paths = _write_features(syn, feat)
    paths[-1].write_bytes(b"not an hdf5 file at all")  # a case tested in some fold > 0 or not: checked first
    out = tmp_path / "run"
    with pytest.raises(DataError, match=paths[-1].name):
        run_cv(_cfg(syn, feat, "models=[coxph, abmil]"), out)
    assert not (out / "folds").exists()


# ------------------------------------------------------------------------------------------------ --out
def test_unwritable_out_is_refused_up_front(cohort, tmp_path):
    syn, feat = cohort
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"cannot write to --out"):
        run_cv(_cfg(syn, feat), blocker / "run")


def test_a_run_that_fails_at_once_leaves_no_out(cohort, tmp_path):
    syn, feat = cohort
    out = tmp_path / "run"
    with pytest.raises(SurvpgcError):
        run_cv(_cfg(tmp_path / "no-such-cohort", feat), out)
    assert not out.exists()
    with pytest.raises(SurvpgcError):
        run_cv(_cfg(syn, feat, "models=[abmil]", "pathology.feature_dir=null"), out)
    assert not out.exists()


def test_splits_folder_has_ordinary_permissions(cohort, tmp_path):
    syn, feat = cohort
    out = tmp_path / "run"
    run_cv(_cfg(syn, feat), out)
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((out / "splits").stat().st_mode) == 0o777 & ~mask


# ------------------------------------------------------------------------------------------------ Ctrl-C, temporaries
def test_ctrl_c_says_what_is_finished_and_how_to_resume(cohort, tmp_path, monkeypatch):
    syn, feat = cohort
    out = tmp_path / "run"
    real = cv_module._run_coxph
    calls = []

    def interrupted_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cv_module, "_run_coxph", interrupted_on_second)
    with pytest.raises(Interrupted, match=r"1 of 2 fold x model pairs.*rerun the same command"):
        run_cv(_cfg(syn, feat), out)
    monkeypatch.setattr(cv_module, "_run_coxph", real)
    res = run_cv(_cfg(syn, feat), out)
    assert res.n_done == 2 and len(res.trained) == 1


def test_stale_temporaries_are_swept(cohort, tmp_path):
    syn, feat = cohort
    out = tmp_path / "run"
    run_cv(_cfg(syn, feat), out)
    stale = [
        out / ".metrics.csv.abc123.tmp",
        out / ".report.html.xyz.tmp",
        out / "folds" / ".coxph_fold0.json.k1.tmp",
        out / "folds" / ".coxph_fold1.csv.k2.tmp",
    ]
    for p in stale:
        p.write_text("half")
    (out / "folds" / "coxph_fold1.json").unlink()  # one pair to redo
    run_cv(_cfg(syn, feat), out)
    assert [p for p in stale if p.exists()] == []


# ------------------------------------------------------------------------------------------------ two processes
def test_a_pair_claimed_by_another_process_is_left_to_it(cohort, tmp_path):
    syn, feat = cohort
    out = tmp_path / "run"
    out.mkdir()
    held = claim(out, "coxph-fold0")
    assert held is not None
    try:
        res = run_cv(_cfg(syn, feat), out)
    finally:
        held.release()
    assert res.trained == ["coxph_fold1"]
    assert not (out / "folds" / "coxph_fold0.json").exists()
    assert res.n_done == 1 and res.n_total == 2
    res = run_cv(_cfg(syn, feat), out)  # the claim is gone: the pair is trained now
    assert res.trained == ["coxph_fold0"] and res.n_done == 2


def test_config_check_waits_for_the_folder_lock(cohort, tmp_path, monkeypatch):
    syn, feat = cohort
    out = tmp_path / "run"
    monkeypatch.setattr(cv_module, "LOCK_WAIT", 0.0)
    with folder_lock(out):
        with pytest.raises(BusyError, match=str(os.getpid())):
            run_cv(_cfg(syn, feat), out)
    assert not (out / "config.yaml").exists()


@pytest.mark.slow
def test_two_processes_on_one_out_share_the_work(cohort, tmp_path):
    syn, feat = cohort
    out = tmp_path / "run"
    args = [f"cohort.source={syn}", f"pathology.feature_dir={feat}", "splits.folds=4", "eval.bootstrap=20",
            "models=[coxph, {name: coxph, label: cox2, params: {penalizer: 0.5}}]"]  # fmt: skip
    cmd = [sys.executable, "-m", "survpgc.cli", "run", *args, "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    log = (out / "run.log").read_text()
    trained = [line.split(": training")[0].split()[-2:] for line in log.splitlines() if ": training on" in line]
    assert len(trained) == 8 and len({tuple(t) for t in trained}) == 8  # every pair trained exactly once
    assert len(pd.read_csv(out / "metrics.csv")) == 8


# ------------------------------------------------------------------------------------------------ honest summaries
def _split_files(syn: Path, folder: Path, *, untested: str | None = None, no_event_fold: bool = False) -> Path:
    """Folds by hand: ``untested`` is in no test part (two folds); ``no_event_fold`` gives three folds whose
    fold 1 tests only censored cases."""
    cases = pd.read_csv(syn / "cohort.csv")
    ids, events = cases["case_id"].astype(str).tolist(), (cases["censorship"] == 0).tolist()
    if no_event_fold:
        test1 = [c for c, e in zip(ids, events, strict=True) if not e][:4]
        rest = [c for c in ids if c not in test1]
        tests = [rest[::2], test1, rest[1::2]]
    else:
        tests = [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
    folder.mkdir()
    for k, test in enumerate(tests):
        rows = [(c, "test" if c in test and c != untested else "train") for c in ids]
        pd.DataFrame(rows, columns=["case_id", "split"]).to_csv(folder / f"fold_{k}.csv", index=False)
    return folder


def test_untested_cases_are_named_and_not_counted(cohort, tmp_path):
    syn, feat = cohort
    case = str(pd.read_csv(syn / "cohort.csv")["case_id"].iloc[0])
    splits = _split_files(syn, tmp_path / "splits", untested=case)
    out = tmp_path / "run"
    res = run_cv(_cfg(syn, feat, f"splits.split_dir={splits}", "splits.protocol=last-epoch"), out)
    assert res.untested == [case]
    assert (res.summary["n_cases"] == 15).all()
    assert any(case in n and "never tested" in n for n in (out / "notes.txt").read_text().splitlines())
    html = (out / "report.html").read_text()
    assert "never tested" in html and case in html


def test_summary_counts_the_folds_it_averaged(cohort, tmp_path):
    syn, feat = cohort
    splits = _split_files(syn, tmp_path / "splits", no_event_fold=True)
    out = tmp_path / "run"
    res = run_cv(_cfg(syn, feat, f"splits.split_dir={splits}", "splits.protocol=last-epoch"), out)
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["cindex"].isna().sum() == 1  # the fold with no event
    row = res.summary.iloc[0]
    assert row["n_folds"] == 2 and row["cindex_n"] == 2
    notes = (out / "notes.txt").read_text()
    assert "C-index" in notes and "2 of 3 folds" in notes and "fold 1" in notes


def test_coxph_warning_is_printed_once(cohort, caplog):
    from survpgc.data.cohort import open_cohort
    from survpgc.models.coxph import CoxPHBaseline

    syn, _ = cohort
    cases = open_cohort(str(syn)).cases.copy()
    train, test = cases.iloc[:12], cases.iloc[12:].copy()
    col = next(c for c in ("race", "gender", "grade") if c in cases.columns and cases[c].dtype == object)
    test[col] = "never-seen-level"
    model = CoxPHBaseline(columns=(col, "age") if "age" in cases.columns else (col,)).fit(train)
    with caplog.at_level(logging.WARNING, logger="survpgc"):
        model.predict_risk(test)
        model.predict_survival(test, [10.0, 20.0])
    hits = [r for r in caplog.records if "not seen in training" in r.getMessage()]
    assert len(hits) == 1


# ------------------------------------------------------------------------------------------------ determinism
def test_training_batches_do_not_depend_on_the_worker_count(cohort):
    """The loader yields the same cases and the same sampled patches, epoch after epoch, for 0 and 2 workers."""
    from survpgc.data.cohort import open_cohort
    from survpgc.data.dataset import SurvivalDataset
    from survpgc.inputs import make_loader

    syn, feat = cohort
    co = open_cohort(str(syn), feature_dir=str(feat))
    seen = {}
    for workers in (0, 2):
        ds = SurvivalDataset(co, modalities=("pathology",), n_patches=5, train=True, seed=7)
        loader = make_loader(ds, 4, True, workers, seed=11)
        epochs = []
        for epoch in range(1, 4):
            ds.set_epoch(epoch)
            epochs.append([(tuple(b["case_id"]), b["path"].sum().item()) for b in loader])
        seen[workers] = epochs
    assert seen[0] == seen[2]


def test_comparisons_of_a_partly_finished_run_use_the_shared_folds(cohort, tmp_path):
    """A second process builds the tables while the reference model still lacks a fold: no crash, the
    comparison uses the folds both models finished."""
    syn, feat = cohort
    out = tmp_path / "run"
    models = "models=[coxph, {name: coxph, label: cox2, params: {penalizer: 0.5}}]"
    run_cv(_cfg(syn, feat, models, "eval.reference=coxph"), out, only_models=["cox2"])
    res = run_cv(_cfg(syn, feat, models, "eval.reference=coxph"), out, only_models=["coxph"], only_folds=[0])
    assert res.n_done == 3
    assert res.comparisons["model"].tolist() == ["cox2"]


@pytest.mark.slow
def test_predictions_do_not_depend_on_the_worker_count(cohort, tmp_path):
    syn, feat = cohort
    extra = ("models=[abmil]", "train.epochs=3", "data.n_patches=6", "splits.folds=2")
    preds = []
    for workers in (0, 2):
        res = run_cv(_cfg(syn, feat, *extra, f"data.num_workers={workers}"), tmp_path / f"w{workers}")
        assert res.n_done == 2
        preds.append(pd.read_csv(tmp_path / f"w{workers}" / "predictions.csv"))
    pd.testing.assert_frame_equal(preds[0], preds[1])
