"""Data integrity of the inputs (issue 13, items 6-9, 11-13): every bad table or config is refused with one
line naming the file, row, column or key -- or handled by a documented policy -- never silently accepted."""

from __future__ import annotations

import codecs
import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.data.cohort import load_cohort, load_tcga, read_table
from survpgc.errors import ConfigError, DataError

runner = CliRunner()

HEADER = "case_id,survival_months,censorship,age"
ROWS = ["A,10,0,50", "B,20,1,60", "C,30,0,70", "D,15,1,55"]


def _tcga(tmp_path: Path, rows: list[str] = ROWS, header: str = HEADER, omics: str | None = None) -> Path:
    root = tmp_path / "coh"
    root.mkdir(exist_ok=True)
    (root / "cohort.csv").write_text("\n".join([header, *rows]) + "\n")
    if omics is not None:
        (root / "omics.csv").write_text(omics)
    return root


def _cli_error(args: list[str], monkeypatch, capsys) -> str:
    """Run ``survpgc <args>`` through ``main`` (as the console script does): the one stderr line, exit 2."""
    import sys

    from survpgc.cli import main

    monkeypatch.setattr(sys, "argv", ["survpgc", *args])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------------- 6. negative time
def test_negative_time_is_an_error_naming_file_line_and_value(tmp_path):
    root = _tcga(tmp_path, ["A,10,0,50", "B,-3.5,1,60", "C,30,0,70"])
    with pytest.raises(
        DataError, match=r"cohort\.csv: invalid survival data: 1 negative 'survival_months' at line 3 \(-3\.5\)"
    ):
        load_tcga(root)


def test_zero_time_stays_a_warning_and_is_floored_to_one_day(tmp_path, caplog):
    root = _tcga(tmp_path, ["A,10,0,50", "B,0,1,60", "C,30,0,70"])
    with caplog.at_level(logging.WARNING):
        c = load_tcga(root)
    assert c.cases.loc["B", "time"] == pytest.approx(12 / 365.25)
    assert "1 case(s) with survival time 0 set to 0.03285 months (line(s) 3 of" in caplog.text


def test_negative_time_via_cli_is_one_line(tmp_path, monkeypatch, capsys):
    root = _tcga(tmp_path, ["A,10,0,50", "B,-3,1,60", "C,30,0,70"])
    line = _cli_error(["cohort", "info", str(root)], monkeypatch, capsys)
    assert "negative 'survival_months' at line 3 (-3" in line and "cohort.csv" in line
    assert "`--on-invalid drop` in the CLI" in line  # the advice names the option of the command


# ----------------------------------------------------------------------------------------- 7. reading tables
def test_empty_table_is_one_clear_error(tmp_path, monkeypatch, capsys):
    root = tmp_path / "coh"
    root.mkdir()
    (root / "cohort.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"cohort\.csv: the file is empty"):
        load_tcga(root)
    line = _cli_error(["cohort", "info", str(root)], monkeypatch, capsys)
    assert "cohort.csv: the file is empty" in line


def test_header_only_table_is_an_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "\n")
    with pytest.raises(DataError, match=r"t\.csv: has a header line but no data rows"):
        read_table(p)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be-bom", "utf-8-sig", "utf-32"])
def test_bom_tables_are_decoded(tmp_path, encoding):
    text = "\n".join([HEADER, *ROWS]) + "\n"
    if encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)
    root = tmp_path / "coh"
    root.mkdir()
    (root / "cohort.csv").write_bytes(data)
    c = load_tcga(root)
    assert c.case_ids == ["A", "B", "C", "D"]
    assert c.cases["age"].tolist() == [50, 60, 70, 55]


def test_utf16_without_bom_and_latin1_say_what_was_seen(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("\n".join([HEADER, *ROWS]).encode("utf-16-le"))
    with pytest.raises(DataError, match=r"t\.csv: looks like UTF-16 or UTF-32 text without a byte-order mark.*UTF-8"):
        read_table(p)
    p.write_bytes("case_id,site\nA,Z\xfcrich\n".encode("latin-1"))
    with pytest.raises(
        DataError, match=r"t\.csv: not UTF-8 text \(byte 0xfc on line 2; probably Latin-1.*save it as UTF-8"
    ):
        read_table(p)


@pytest.mark.parametrize("sep", [";", "\t", ","])
def test_delimiter_is_sniffed(tmp_path, sep):
    root = _tcga(tmp_path, [r.replace(",", sep) for r in ROWS], HEADER.replace(",", sep))
    c = load_tcga(root)
    assert c.case_ids == ["A", "B", "C", "D"] and c.time.tolist() == [10, 20, 30, 15]


def test_gzipped_semicolon_omics_table(tmp_path):
    root = _tcga(tmp_path)
    with gzip.open(root / "omics.csv.gz", "wt") as f:
        f.write("case_id;G1_rnaseq;G2_rnaseq\nA;1.5;2\nB;0;1\n")
    c = load_tcga(root)
    assert c.omics.loc["A"].tolist() == [1.5, 2.0]


def test_exact_duplicate_row_is_dropped_with_a_warning_naming_lines(tmp_path, caplog):
    root = _tcga(tmp_path, [*ROWS, ROWS[1]], "case_id,survival_months,censorship,age")
    with caplog.at_level(logging.WARNING):
        c = load_tcga(root)
    assert len(c) == 4
    assert "1 exact duplicate row(s) dropped (line(s) 6); the first copy kept" in caplog.text
    assert any("exact duplicate" in n for n in c.meta["notes"])


def test_exact_duplicate_row_with_slide_column_is_not_two_cases(tmp_path):
    header = "case_id,slide_id,survival_months,censorship"
    rows = ["A,a1.svs,10,0", "B,b1.svs,20,1", "B,b1.svs,20,1", "B,b2.svs,20,1"]
    c = load_tcga(_tcga(tmp_path, rows, header))
    assert sorted(c.slides["slide_id"]) == ["a1.svs", "b1.svs", "b2.svs"]


def test_conflicting_rows_of_one_case_are_still_an_error(tmp_path):
    root = _tcga(tmp_path, [*ROWS, "B,21,1,60"])
    with pytest.raises(DataError, match=r"duplicate case id\(s\) \['B'\] at line\(s\) 3, 6"):
        load_tcga(root)


def test_line_numbers_stay_right_after_dropped_rows(tmp_path):
    # rows 2-3 (lines 3-4) are dropped as invalid; the conflict on lines 5 and 6 must still be named so
    rows = ["A,10,0,50", "X,,1,60", "Y,abc,1,60", "B,20,1,60", "B,20,0,61"]
    with pytest.raises(DataError, match=r"at line\(s\) 5, 6"):
        load_cohort(_tcga(tmp_path, rows) / "cohort.csv", on_invalid_survival="drop")


def test_split_file_uses_the_same_reader(tmp_path):
    from survpgc.data.splits import load_splits

    d = tmp_path / "splits"
    d.mkdir()
    (d / "fold_0.csv").write_text("case_id;split\nA;train\nB;test\n")
    (d / "fold_1.csv").write_bytes("case_id,split\nA,test\nB,train\n".encode("utf-16"))
    s = load_splits(d, protocol="last-epoch")
    assert [f.test for f in s] == [("B",), ("A",)]
    (d / "fold_1.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"fold_1\.csv: the file is empty"):
        load_splits(d, protocol="last-epoch")


def test_signature_and_template_files_use_the_same_reader(tmp_path):
    from survpgc.clinical.templates import read_template_csv
    from survpgc.genomics.signatures import load_signatures

    sig = tmp_path / "sig.csv"
    sig.write_bytes("P1;P2\nTP53;EGFR\nMYC;\n".encode("utf-16"))
    assert load_signatures(sig) == {"P1": ["TP53", "MYC"], "P2": ["EGFR"]}
    sig.write_text("P1,P1\nTP53,EGFR\n")
    with pytest.raises(DataError, match=r"sig\.csv: column name\(s\) 'P1' \(columns 1, 2\) appear more than once"):
        load_signatures(sig)
    tpl = tmp_path / "t.csv"
    tpl.write_text("AGE_TEMPLATE;SEX_TEMPLATE\nThe patient is AGE years old.;The patient is SEX.\n")
    assert read_template_csv(tpl)["age"] == ["The patient is AGE years old."]


# ----------------------------------------------------------------------------------------- 8. time units
def test_time_in_days_read_as_months_warns_with_the_unit_it_looks_like(tmp_path, caplog):
    days = ["A,588,0,50", "B,400,1,60", "C,900,0,70", "D,150,1,55"]
    root = _tcga(tmp_path, days)
    with caplog.at_level(logging.WARNING):
        load_tcga(root)
    assert "median follow-up 494 months = 494 months is implausible (expected 1-240 months)" in caplog.text
    assert "the times look like days" in caplog.text and "cohort.time_unit: days" in caplog.text
    assert "--time-unit days" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        c = load_tcga(root, time_unit="days")
    assert "implausible" not in caplog.text
    np.testing.assert_allclose(c.time, np.array([588, 400, 900, 150]) * 12 / 365.25)


def test_time_in_years_and_months_as_years(tmp_path, caplog):
    root = _tcga(tmp_path, ["A,1.5,0,50", "B,2,1,60", "C,3,0,70"])
    c = load_tcga(root, time_unit="years")
    assert c.time.tolist() == [18, 24, 36]
    with caplog.at_level(logging.WARNING):
        load_tcga(_tcga(tmp_path, ["A,15,0,50", "B,20,1,60", "C,30,0,70"]), time_unit="years")
    assert "median follow-up 20 years = 240 months" not in caplog.text  # 240 is the edge: plausible
    with caplog.at_level(logging.WARNING):
        load_tcga(_tcga(tmp_path, ["A,25,0,50", "B,30,1,60", "C,30,0,70"]), time_unit="years")
    assert "the times look like months" in caplog.text


def test_time_unit_option_on_the_cli(tmp_path):
    root = _tcga(tmp_path, ["A,588,0,50", "B,400,1,60", "C,900,0,70", "D,150,1,55"])
    r = runner.invoke(app, ["cohort", "info", str(root), "--json", "--time-unit", "days"])
    assert r.exit_code == 0, r.output
    import json

    s = json.loads(r.stdout)
    assert s["time_median_months"] == pytest.approx(494 * 12 / 365.25)
    r = runner.invoke(app, ["cohort", "info", str(root), "--time-unit", "fortnights"])
    assert r.exit_code != 0


def test_time_unit_in_the_config():
    from survpgc.config import load_config

    assert load_config(None, []).cohort.time_unit == "months"
    assert load_config(None, ["cohort.time_unit=days"]).cohort.time_unit == "days"
    expected = r"^cohort\.time_unit: must be 'days', 'weeks', 'months' or 'years', got 'day'"
    with pytest.raises(ConfigError, match=expected):
        load_config(None, ["cohort.time_unit=day"])


def test_evaluate_time_unit(tmp_path):
    import json

    rng = np.random.default_rng(0)
    t = rng.uniform(30, 3000, 60)
    df = pd.DataFrame({"time": t, "event": rng.integers(0, 2, 60), "risk": -t + rng.normal(0, 300, 60)})
    df.to_csv(tmp_path / "p.csv", index=False)
    df.assign(time=t * 12 / 365.25).to_csv(tmp_path / "m.csv", index=False)
    a = runner.invoke(app, ["evaluate", str(tmp_path / "p.csv"), "--time-unit", "days", "--train",
                            str(tmp_path / "p.csv"), "--n-bootstrap", "0", "--json"])  # fmt: skip
    b = runner.invoke(app, ["evaluate", str(tmp_path / "m.csv"), "--train", str(tmp_path / "m.csv"),
                            "--n-bootstrap", "0", "--json"])  # fmt: skip
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.stdout)["auc"] == pytest.approx(json.loads(b.stdout)["auc"])


# ----------------------------------------------------------------------------------------- 9. omics tables
def test_duplicate_gene_column_is_an_error_naming_column_and_file(tmp_path, monkeypatch, capsys):
    root = _tcga(tmp_path, omics="case_id,AAK1_rnaseq,TP53_rnaseq,AAK1_rnaseq\nA,1,2,3\nB,4,5,6\n")
    with pytest.raises(DataError, match=r"omics\.csv: column name\(s\) 'AAK1_rnaseq' \(columns 2, 4\) appear more"):
        load_tcga(root)
    line = _cli_error(["prepare-omics", "--cohort", str(root), "--out", str(tmp_path / "o")], monkeypatch, capsys)
    assert "'AAK1_rnaseq'" in line and "omics.csv" in line


def test_duplicate_column_in_a_dataframe(tmp_path):
    om = pd.DataFrame([["A", 1.0, 2.0]], columns=["case_id", "G_rnaseq", "G_rnaseq"])
    with pytest.raises(DataError, match=r"column\(s\) \['G_rnaseq'\] appear more than once"):
        load_cohort(_tcga(tmp_path) / "cohort.csv", omics=om)


def test_nonfinite_omics_name_case_and_column_and_the_advice_works(tmp_path, monkeypatch, capsys):
    root = _tcga(tmp_path, omics="case_id,G1_rnaseq,G2_rnaseq\nA,1,2\nB,,5\nC,3,inf\n")
    with pytest.raises(DataError) as info:
        load_tcga(root)
    msg = str(info.value)
    assert "2 NaN/inf value(s) in 2 column(s): case 'B' column 'G1_rnaseq', case 'C' column 'G2_rnaseq'" in msg
    assert "cohort.omics_nonfinite: drop_columns" in msg and "--omics-nonfinite" in msg
    # the advice, followed: the config key exists with these choices...
    from survpgc.config import load_config

    cfg = load_config(None, [f"cohort.source={root}", "cohort.omics_nonfinite=zero"])
    assert cfg.cohort.omics_nonfinite == "zero"
    with pytest.raises(ConfigError, match=r"cohort\.omics_nonfinite: must be 'error', 'drop_columns' or 'zero'"):
        load_config(None, ["cohort.omics_nonfinite=median"])
    # ... and the CLI option of the message exists
    r = runner.invoke(app, ["cohort", "info", str(root), "--json", "--omics-nonfinite", "drop_columns"])
    assert r.exit_code == 0, r.output
    line = _cli_error(["cohort", "info", str(root)], monkeypatch, capsys)
    assert "case 'B' column 'G1_rnaseq'" in line


def test_config_cohort_options_reach_the_run_inputs(tmp_path):
    """``cohort.omics_nonfinite`` and ``cohort.time_unit`` of a run config reach the cohort a run trains on."""
    from survpgc.config import load_config
    from survpgc.inputs import RunInputs

    root = _tcga(tmp_path, ["A,588,0,50", "B,400,1,60", "C,900,0,70", "D,150,1,55"],
                 omics="case_id,G1_rnaseq,G2_rnaseq\nA,1,2\nB,,5\nC,3,inf\n")  # fmt: skip
    cfg = load_config(None, [f"cohort.source={root}", "cohort.omics_nonfinite=zero", "cohort.time_unit=days",
                             "splits.folds=2"])  # fmt: skip
    inputs = RunInputs(cfg, splits_dir=tmp_path / "s", clinical_dir=tmp_path / "c")
    assert inputs.cohort.omics.loc["B", "G1_rnaseq"] == 0
    np.testing.assert_allclose(inputs.cohort.time, np.array([588, 400, 900, 150]) * 12 / 365.25)


# ----------------------------------------------------------------------------------------- 11-13. config
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_grad_norm=-1", "train.max_grad_norm: must be > 0, got -1"),
        ("train.weight_decay=-1", "train.weight_decay: must be >= 0, got -1"),
        ("train.warmup_epochs=-2", "train.warmup_epochs: must be >= 0, got -2"),
        ("data.num_workers=-2", "data.num_workers: must be >= 0, got -2"),
        ("train.cosine_margin=2", "train.cosine_margin: must be <= 1, got 2"),
        ("train.cosine_margin=-1.5", "train.cosine_margin: must be >= -1, got -1.5"),
    ],
)
def test_training_settings_are_refused_at_load_via_cli(override, message, monkeypatch, capsys):
    line = _cli_error(["config", "show", override], monkeypatch, capsys)
    assert message in line


def test_model_ids_colliding_on_disk_are_refused(monkeypatch, capsys):
    from survpgc.config import load_config

    models = "models=[{name: snn, params: {modality: genomic}}, {name: coxph, label: snn_genomic}]"
    with pytest.raises(
        ConfigError, match=r"models: ids 'snn:genomic' and 'snn_genomic' share the file name 'snn_genomic'"
    ):
        load_config(None, [models])
    line = _cli_error(["config", "show", models], monkeypatch, capsys)
    assert "share the file name 'snn_genomic'" in line
    with pytest.raises(ConfigError, match=r"ids 'abmil' and 'ABMIL' share the file name 'abmil'"):
        load_config(None, ["models=[abmil, {name: abmil, label: ABMIL}]"])
    load_config(None, ["models=[{name: snn, params: {modality: genomic}}, {name: coxph, label: snn_genomic2}]"])


def test_unknown_reference_and_duplicate_keys_via_cli(tmp_path, monkeypatch, capsys):
    line = _cli_error(["config", "show", "models=[survpgc, abmil]", "eval.reference=survpcg"], monkeypatch, capsys)
    assert "eval.reference: 'survpcg' is no model id of the run (survpgc, abmil)" in line
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n")
    line = _cli_error(["config", "show", str(cfg)], monkeypatch, capsys)
    assert "c.yaml: duplicate key 'epochs' at line 4 (first at line 2)" in line
    line = _cli_error(["run", str(cfg), "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert "duplicate key 'epochs' at line 4" in line
