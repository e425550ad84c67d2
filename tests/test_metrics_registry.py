"""One metric registry: the per-fold metrics, summaries, report tables and plots follow ``eval.times``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survpgc.errors import InputError
from survpgc.eval.registry import DEFAULT_TIMES, auc_key, metric, metrics_for, metrics_in
from survpgc.eval.tables import fold_metrics, summarize
from survpgc.report.html import render_report, report_metrics
from survpgc.report.run import run_metrics
from survpgc.survival.metrics import harrell_cindex, td_auc

TIMES = ([6.0, 24.0], [12.0, 36.0, 60.0])


def _fold(seed: int, n: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def part(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        risk = rng.normal(size=m)
        t = rng.exponential(40.0 * np.exp(-0.7 * risk)) + 0.5
        c = rng.uniform(5.0, 110.0, m)
        return np.minimum(t, c), t <= c, risk

    train_t, train_e, _ = part(2 * n)
    t, e, risk = part(n)
    return {"train_time": train_t, "train_event": train_e, "time": t, "event": e, "risk": risk}


def test_metrics_for_keys_labels_and_direction() -> None:
    assert [m.key for m in metrics_for([6, 24])] == ["cindex", "cindex_uno", "auc_6", "auc_24", "iauc", "ibs"]
    assert [m.label for m in metrics_for([1.5])][2] == "AUC 1.5 mo"
    assert [m.key for m in metrics_for()] == ["cindex", "cindex_uno", "auc_12", "auc_36", "auc_60", "iauc", "ibs"]
    assert DEFAULT_TIMES == (12.0, 36.0, 60.0) and auc_key(12.0) == "auc_12"
    assert [m.key for m in metrics_for() if not m.higher_is_better] == ["ibs"]
    assert metric("auc_24").label == "AUC 24 mo" and metric("cindex").label == "C-index (Harrell)"
    assert metric("other").label == "other" and metric("other").higher_is_better
    assert metric("ibs").format(0.12345) == "0.123" and metric("ibs").format(float("nan")) == "n/a"


def test_metrics_in_recovers_any_times_in_report_order() -> None:
    cols = ["model", "fold", "ibs", "auc_60", "auc_6", "cindex", "auc_24", "seconds", "iauc", "cindex_uno"]
    assert [m.key for m in metrics_in(cols)] == ["cindex", "cindex_uno", "auc_6", "auc_24", "auc_60", "iauc", "ibs"]
    summary_cols = ["model", "n_folds", "auc_12_mean", "auc_12_sd", "cindex_mean", "cindex_sd", "n_folds_x"]
    assert [m.key for m in metrics_in(summary_cols, suffix="_mean")] == ["cindex", "auc_12"]


@pytest.mark.parametrize("times", TIMES)
def test_fold_metrics_keys_and_aucs_follow_times(times: list[float]) -> None:
    d = _fold(1)
    out, notes = fold_metrics(d["train_time"], d["train_event"], d["time"], d["event"], d["risk"], times=times)
    assert list(out) == [m.key for m in metrics_for(times)]
    aucs, iauc = td_auc(d["train_time"], d["train_event"], d["time"], d["event"], d["risk"], times)
    for t, a in zip(times, aucs, strict=True):
        assert out[auc_key(t)] == pytest.approx(float(a), abs=1e-12)
    assert out["iauc"] == pytest.approx(float(iauc), abs=1e-12)
    assert out["cindex"] == pytest.approx(harrell_cindex(d["time"], d["event"], d["risk"]), abs=1e-12)
    assert all(np.isfinite(v) for k, v in out.items() if k != "ibs") and np.isnan(out["ibs"])  # no surv_at
    assert notes == []


def test_fold_metrics_time_outside_follow_up_is_nan_and_noted() -> None:
    d = _fold(2)
    out, notes = fold_metrics(d["train_time"], d["train_event"], d["time"], d["event"], d["risk"], times=[6, 500])
    assert list(out) == ["cindex", "cindex_uno", "auc_6", "auc_500", "iauc", "ibs"]
    assert np.isfinite(out["auc_6"]) and np.isnan(out["auc_500"])
    assert any("500" in n for n in notes)


@pytest.mark.parametrize("times", TIMES)
def test_summary_and_report_columns_follow_times(times: list[float]) -> None:
    rows = []
    for model in ("a", "b"):
        for k in range(3):
            d = _fold(10 * k + (model == "b"))
            m, _ = fold_metrics(d["train_time"], d["train_event"], d["time"], d["event"], d["risk"], times=times)
            rows.append({"model": model, "fold": k, **m, "seconds": 1.0})
    metrics = pd.DataFrame(rows)
    summary = summarize(metrics, "nested")
    keys = [m.key for m in metrics_for(times)]
    assert list(summary.columns) == ["model", "n_folds", "protocol"] + [
        f"{k}_{s}" for k in keys for s in ("mean", "sd", "n")
    ]
    assert summary.loc[0, f"{auc_key(times[0])}_mean"] == pytest.approx(
        metrics.loc[metrics["model"] == "a", auc_key(times[0])].mean()
    )
    assert [m.key for m in report_metrics(summary)] == keys
    page = render_report(cohort_summary=None, protocol="nested", config=None, summary=summary, metrics=metrics,
                         comparisons=None, images={}, created="now")  # fmt: skip
    header = page[page.index('<table class="metrics">') :]
    header = header[: header.index("</thead>")]
    labels = [m.label + ("" if m.higher_is_better else " ↓") for m in metrics_for(times)]
    assert len(re.findall(r"<th[ >]", header)) == 3 + len(labels)
    positions = [header.index(f">{label}</th>") for label in labels]
    assert positions == sorted(positions)
    other = [12, 36, 60] if times == [6.0, 24.0] else [6, 24]
    assert all(f"AUC {t} mo" not in page for t in other)
    with pytest.raises(InputError, match="auc_99"):
        summarize(metrics, "nested", names=metrics_for([99]))


def test_run_metrics_of_config_and_older_tables() -> None:
    new = [f"{k}_mean" for k in ("cindex", "cindex_uno", "auc_6", "auc_24", "iauc", "ibs")]
    assert [m.key for m in run_metrics({"eval": {"times": [6, 24]}}, new)] == [c[:-5] for c in new]
    # a run written when AUCs were fixed at 12/36/60 months, whatever its config said: its columns are shown
    old = [f"{k}_mean" for k in ("cindex", "cindex_uno", "auc_12", "auc_36", "auc_60", "iauc", "ibs")]
    keys = [m.key for m in run_metrics({"eval": {"times": [6, 24]}}, old)]
    assert keys == ["cindex", "cindex_uno", "auc_12", "auc_36", "auc_60", "iauc", "ibs"]
    assert [m.key for m in run_metrics({}, old)] == keys
    assert [m.key for m in run_metrics({"eval": {"times": [12, 36]}}, old)] == keys


def test_run_with_eval_times_6_24(tmp_path: Path) -> None:
    """A whole tiny run: metrics.csv, summary.csv and report.html carry the 6- and 24-month AUCs only."""
    from survpgc.config import load_config
    from survpgc.synth import generate_synthetic_cohort
    from survpgc.train.cv import run_cv

    syn = tmp_path / "syn"
    generate_synthetic_cohort(syn, n_patients=40, seed=3, render_slides=False)
    cfg = load_config(
        None,
        [f"cohort.source={syn}", "splits.folds=2", "eval.bootstrap=10", "eval.times=[6,24]", "models=[coxph]",
         "name=times-6-24"],
    )  # fmt: skip
    res = run_cv(cfg, tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    auc_cols = [c for c in metrics.columns if c.startswith("auc_")]
    assert auc_cols == ["auc_6", "auc_24"] and metrics[auc_cols].notna().any().all()
    assert {"auc_6_mean", "auc_24_mean"} <= set(res.summary.columns)
    assert not any(c.startswith(("auc_12", "auc_36", "auc_60")) for c in res.summary.columns)
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "AUC 6 mo" in page and "AUC 24 mo" in page and "AUC 12 mo" not in page
