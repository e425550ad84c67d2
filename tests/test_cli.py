"""The command line: instant help, lazy imports, and the cohort / splits commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from survpgc.cli import app

runner = CliRunner()


def test_help_is_lazy():
    code = (
        "import sys, survpgc.cli\n"
        "heavy = [m for m in ('torch', 'pandas', 'sksurv', 'lifelines', 'timm', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "survpgc.cli", "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "cohort" in out and "splits" in out


def test_version():
    r = runner.invoke(app, ["version"])
    assert r.exit_code == 0 and r.stdout.strip()


def test_cohort_info_json():
    r = runner.invoke(app, ["cohort", "info", "tcga-lihc", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["n_cases"], s["n_events"], s["coverage"]["omics"]) == (354, 125, 331)


def test_cohort_info_table():
    r = runner.invoke(app, ["cohort", "info", "tcga-lihc"])
    assert r.exit_code == 0
    assert "354" in r.stdout and "clinical + omics + slides" in r.stdout


def test_cohort_info_error_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "survpgc.cli", "cohort", "info", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "cohort.csv not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_splits_make(tmp_path):
    r = runner.invoke(app, ["splits", "make", "tcga-lihc", "--out", str(tmp_path / "s"), "--folds", "3", "--seed", "2"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "fold_0.csv",
        "fold_1.csv",
        "fold_2.csv",
        "splits.json",
    ]
    assert "fold 2" in r.stdout


def test_synth_then_cohort_info(tmp_path):
    out = tmp_path / "syn"
    r = runner.invoke(app, ["synth", "--out", str(out), "--n-patients", "8", "--no-slides", "--seed", "4"])
    assert r.exit_code == 0, r.output
    assert "oracle ceiling" in r.stdout
    r = runner.invoke(app, ["cohort", "info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_cases"] == 8
    r = runner.invoke(app, ["synth", "--out", str(out), "--n-patients", "8", "--no-slides"])
    assert r.exit_code != 0  # refuses to overwrite without --overwrite


def test_evaluate_matches_library(tmp_path):
    import numpy as np
    import pandas as pd

    from survpgc.survival import harrell_cindex, td_auc, uno_cindex

    rng = np.random.default_rng(0)
    n = 120
    risk = rng.normal(size=n)
    time = rng.exponential(40 * np.exp(-risk)) + 0.5
    cens = (rng.random(n) < 0.5).astype(int)
    pred = pd.DataFrame({"time": time[:60], "censorship": cens[:60], "risk": risk[:60]})
    train = pd.DataFrame({"time": time[60:], "censorship": cens[60:]})
    pred.to_csv(tmp_path / "p.csv", index=False)
    train.to_csv(tmp_path / "t.csv", index=False)
    r = runner.invoke(
        app, ["evaluate", str(tmp_path / "p.csv"), "--train", str(tmp_path / "t.csv"), "--json", "--times", "6,12"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    e, te = cens[:60] == 0, cens[60:] == 0
    assert out["harrell_cindex"] == harrell_cindex(time[:60], e, risk[:60])
    assert out["uno_cindex"] == uno_cindex(time[60:], te, time[:60], e, risk[:60])
    aucs, iauc = td_auc(time[60:], te, time[:60], e, risk[:60], [6.0, 12.0])
    assert out["iauc"] == iauc and out["auc"]["6"] == aucs[0]
    lo, hi = out["harrell_cindex_95ci"]
    assert lo < out["harrell_cindex"] < hi


def test_evaluate_bad_column(tmp_path):
    (tmp_path / "p.csv").write_text("time,event,score\n1,1,0.3\n2,0,0.1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "survpgc.cli", "evaluate", str(tmp_path / "p.csv")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "risk column 'risk' not found" in proc.stderr


def test_models_command_lists_survpgc():
    r = runner.invoke(app, ["models", "--json", "--params"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["survpgc"]["parameters"] == 854_852
    assert rows["survpgc"]["modalities"] == ["pathology", "clinical", "genomic"]


def test_prepare_omics_on_lihc(tmp_path):
    r = runner.invoke(app, ["prepare-omics", "--cohort", "tcga-lihc", "--out", str(tmp_path / "om")])
    assert r.exit_code == 0, r.output
    assert "768" in r.stdout  # of the 4999 combine genes, 768 are measured (rnaseq) -- visible, not hidden
    names = {p.name for p in (tmp_path / "om").iterdir()}
    assert {"omics_selected.csv.gz", "groups.json", "coverage.csv", "coverage.txt"} <= names


def test_encode_clinical_synthetic_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    syn = tmp_path / "syn"
    assert runner.invoke(app, ["synth", "--out", str(syn), "--n-patients", "6", "--no-slides"]).exit_code == 0
    args = ["encode-clinical", "--cohort", str(syn), "--out", str(tmp_path / "clin"), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["n_encoded"] == 6 and first["dim"] == 384
    r = runner.invoke(app, args)
    assert json.loads(r.stdout)["n_encoded"] == 0  # cache hit: nothing new to encode
    assert (tmp_path / "clin" / "sentences.csv").is_file()


def test_evaluate_bad_times_and_events_name_file_lines(tmp_path, monkeypatch, capsys):
    from survpgc.cli import main

    bad_time = tmp_path / "t.csv"
    bad_time.write_text("time,event,risk\n1,1,0.3\n2,0,0.1\n-2,1,0.5\n3,1,0.2\n")
    bad_event = tmp_path / "e.csv"
    bad_event.write_text("time,event,risk\n1,1,0.3\n2,2,0.1\n3,1,0.2\n")
    for path, expected in (
        (bad_time, f"error: {bad_time}: column 'time' must hold times > 0; bad value(s) at line 4 (-2"),
        (bad_event, f"error: {bad_event}: column 'event' must hold 0/1; bad value(s) at line 3 (2"),
    ):
        monkeypatch.setattr(sys, "argv", ["survpgc", "evaluate", str(path)])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert capsys.readouterr().err.strip().startswith(expected)
