"""Tests of survpgc.report: Kaplan-Meier / forest plots and the self-contained HTML report.

The numbers drawn are checked against survpgc's own survival statistics and brute-force counts; the page
is checked as text (no external resources, escaping, tables, protocol warning) and rendered in headless
Chromium (skipped when the ``chromium`` binary is absent; CI installs Debian's ``chromium`` package).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from survpgc.errors import EmptyInputError, InputError, LengthMismatchError
from survpgc.eval.tables import compare_models, summarize
from survpgc.report import forest_plot, format_p_value, km_for_model, km_plot, km_summary, write_report
from survpgc.report.blocks import Paragraph, Section, Span, figure, frame_table
from survpgc.report.plots import DPI, KM_FIGSIZE, LOW_RISK_COLOR
from survpgc.report.run import build_run_report
from survpgc.report.templating import render_blocks
from survpgc.rundir import RunDir, safe_name
from survpgc.survival.stats import logrank_test

SCREENSHOT_COPY = Path("/tmp/survpgc_report_screenshot.png")
CREATED = "2025-01-02 03:04 UTC"
METRICS = ("cindex", "cindex_uno", "auc_12", "auc_36", "auc_60", "iauc", "ibs")


# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------
def _survival(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    high = rng.random(n) < 0.45
    death = rng.exponential(np.where(high, 18.0, 45.0))
    censor = rng.uniform(3.0, 110.0, n)
    time = np.round(np.minimum(death, censor), 1) + 0.1  # rounded: tied times, all > 0
    return time, death <= censor, high


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _png_text(path: Path) -> dict[str, str]:
    with Image.open(path) as im:
        im.load()
        return dict(im.text)


def _color_pixels(path: Path, rgb: tuple[int, int, int], tol: int = 40) -> int:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.int32)
    return int((np.abs(arr - np.asarray(rgb)).max(axis=-1) <= tol).sum())


def _hex_rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


EVIL = "<script>alert(1)</script>"


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    models = ["survpgc", "abmil", EVIL, "coxph"]
    rows = []
    for i, m in enumerate(models):
        for f in range(5):
            rows.append(
                {
                    "model": m,
                    "fold": f,
                    "cindex": 0.52 + 0.04 * i + rng.normal(0, 0.03),
                    "cindex_uno": 0.5 + 0.04 * i + rng.normal(0, 0.03),
                    "auc_12": 0.6 + rng.normal(0, 0.05),
                    "auc_36": np.nan if m == "coxph" else 0.62 + rng.normal(0, 0.05),
                    "auc_60": 0.61 + rng.normal(0, 0.05),
                    "iauc": 0.63 + rng.normal(0, 0.05),
                    "ibs": 0.2 - 0.01 * i + rng.normal(0, 0.01),
                }
            )
    metrics = pd.DataFrame(rows)
    g = metrics.groupby("model", sort=False)
    summary = pd.DataFrame({"model": list(g.groups), "n_folds": 5})
    for m in METRICS:
        summary[f"{m}_mean"] = g[m].mean().to_numpy()
        summary[f"{m}_sd"] = g[m].std().to_numpy()
    comparisons = pd.DataFrame(
        {
            "model": models[1:],
            "reference": "survpgc",
            "delta_cindex": [0.0312, -0.0787, 0.1234],
            "ci_low": [-0.01, -0.15, 0.05],
            "ci_high": [0.07, -0.002, 0.2],
            "p_value": [0.21, 0.034, 0.00012],
        }
    )
    return {"metrics": metrics, "summary": summary, "comparisons": comparisons}


COHORT = {
    "name": "synthetic <cohort>",
    "endpoint": "OS",
    "n_cases": 120,
    "n_events": 70,
    "censoring_rate": 70 / 120,
    "time_median_months": 23.5,
    "time_range_months": [0.5, 110.0],
    "coverage": {"wsi": 118, "omics": 110, "text": 120},
    "combinations": {"omics+text+wsi": 105, "text+wsi": 13, "omics+text": 2},
    "clinical_missing": {"stage": 4, "grade": 10},
}


def _images(tmp: Path, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    time, event, high = _survival()
    tmp.mkdir(parents=True, exist_ok=True)
    km_plot(time, event, high, tmp / "km_survpgc.png", title="survpgc")
    km_plot(time, event, ~high, tmp / "km_abmil.png", title="abmil")
    forest_plot(tables["summary"], tmp / "forest.png", extra_points={"paper Table 1": {"survpgc": 0.74}})
    return {"km_survpgc": tmp / "km_survpgc.png", "km_abmil": tmp / "km_abmil.png", "forest": tmp / "forest.png"}


def _write(run_dir: Path, tables: dict[str, pd.DataFrame], protocol: str, images: dict[str, Path], **kw) -> Path:
    summary = tables["summary"].assign(protocol=protocol)
    return write_report(
        run_dir,
        cohort_summary=COHORT,
        protocol=protocol,
        config={"seed": 0, "protocol": protocol, "models": [{"name": "survpgc", "lr": 5e-4}], "note": "<b>x</b>"},
        summary=summary,
        metrics=tables["metrics"],
        comparisons=tables["comparisons"],
        images=images,
        notes=["oracle C-index 0.812 <i>"],
        extra_sections=[Section("Heatmaps <soon>", (Paragraph(("attention heatmaps go here",), "empty"),))],
        created=CREATED,
        **kw,
    )


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier
# --------------------------------------------------------------------------------------------------
def test_format_p_value() -> None:
    assert format_p_value(0.01234) == "0.012"
    assert format_p_value(0.5) == "0.500"
    assert format_p_value(0.001) == "0.001"
    assert format_p_value(4.71e-7) == "4.7e-07"
    assert format_p_value(float("nan")) == "n/a"
    assert format_p_value(None) == "n/a"


def test_km_plot_numbers_match_logrank_and_brute_force(tmp_path: Path) -> None:
    time, event, high = _survival()
    path = tmp_path / "sub" / "km.png"
    info = km_plot(time, event, high, path, title="demo", threshold=0.25)

    expected = logrank_test(time, event, high)
    assert info["p_value"] == expected.p_value
    assert info["statistic"] == expected.statistic
    assert 0 < info["p_value"] < 0.05  # the groups really differ
    assert info["n_high"] == high.sum() and info["n_low"] == (~high).sum()
    assert info["events_high"] == event[high].sum() and info["events_low"] == event[~high].sum()

    at = info["at_risk_times"]
    assert at[0] == 0.0 and np.allclose(np.diff(at), 12.0) and at[-1] <= time.max() < at[-1] + 12.0
    for t, nh, nl in zip(at, info["at_risk_high"], info["at_risk_low"], strict=True):
        assert nh == sum(1 for ti, hi in zip(time, high, strict=True) if hi and ti > t)
        assert nl == sum(1 for ti, hi in zip(time, high, strict=True) if not hi and ti > t)
    assert info["at_risk_high"][0] == high.sum()

    # the PNG: written atomically (no temp file left), non-trivial, 8 x 6.5 in at 120 dpi
    assert path.is_file() and path.stat().st_size > 20_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["km.png"]
    assert _png_size(path) == (round(KM_FIGSIZE[0] * DPI), round(KM_FIGSIZE[1] * DPI))
    text = _png_text(path)
    assert text["Title"] == "demo"
    assert f"log-rank p = {format_p_value(expected.p_value)}" in text["Description"]
    assert info["p_text"] == format_p_value(expected.p_value)


def test_km_summary_step_and_validation() -> None:
    time, event, high = _survival()
    info = km_summary(time, event, high, step=6)
    assert np.allclose(np.diff(info["at_risk_times"]), 6.0)
    short = km_summary([1.0, 2.0, 5.0, 20.0], [1, 0, 1, 1], [True, False, True, False])
    assert np.allclose(short["at_risk_times"], [0, 3, 6, 9, 12, 15, 18])  # 20 months -> 3-month steps
    with pytest.raises(LengthMismatchError):
        km_summary(time, event, high[:-1])
    with pytest.raises(InputError):
        km_summary(time, event, np.where(high, 2, 0))
    with pytest.raises(InputError):
        km_summary(time, event, high, step=0)
    with pytest.raises(EmptyInputError):
        km_summary([], [], [])


def test_km_plot_empty_group_and_no_events(tmp_path: Path) -> None:
    time, event, high = _survival()
    red = _hex_rgb("#d62728")

    full = km_plot(time, event, high, tmp_path / "full.png")
    assert full["n_high"] == high.sum() > 0
    empty = km_plot(time, event, np.zeros_like(high), tmp_path / "empty.png")
    assert empty["n_high"] == 0 and np.isnan(empty["p_value"]) and empty["p_text"] == "n/a"
    assert (empty["at_risk_high"] == 0).all() and empty["at_risk_low"][0] == len(time)
    assert "log-rank p = n/a" in _png_text(tmp_path / "empty.png")["Description"]
    # the high-risk curve and band are drawn only when the group exists
    assert _color_pixels(tmp_path / "full.png", red) > 3 * _color_pixels(tmp_path / "empty.png", red)

    no_death_high = event & ~high
    info = km_plot(time, no_death_high, high, tmp_path / "nodeath.png")
    assert info["events_high"] == 0
    assert info["p_value"] == logrank_test(time, no_death_high, high).p_value

    none = km_plot(time, np.zeros_like(event), high, tmp_path / "none.png")
    assert np.isnan(none["p_value"]) and none["p_text"] == "n/a"
    assert (tmp_path / "none.png").stat().st_size > 10_000


# --------------------------------------------------------------------------------------------------
# km_for_model: training-fold medians
# --------------------------------------------------------------------------------------------------
def _fold_rows(fold: int, split: str, risks: np.ndarray, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "case_id": f"f{fold}-{split}-{i}",
            "model": "survpgc",
            "fold": fold,
            "split": split,
            "time": float(rng.uniform(1, 80)),
            "event": bool(rng.random() < 0.6),
            "risk": float(r),
        }
        for i, r in enumerate(risks)
    ]


def test_km_for_model_uses_training_medians(tmp_path: Path) -> None:
    rows = []
    # fold 0: training risks 0..1 (median 0.5); every test risk is above it -> all high risk.  The
    # validation risks are huge: if they were used, the cut-off would move above the test risks.
    rows += _fold_rows(0, "train", np.linspace(0.0, 1.0, 41), 1)
    rows += _fold_rows(0, "val", np.full(60, 100.0), 2)
    rows += _fold_rows(0, "test", np.linspace(0.6, 0.9, 10), 3)
    # fold 1: training risks 10..20 (median 15); test risks below -> all low, except one exact tie -> low
    rows += _fold_rows(1, "train", np.linspace(10.0, 20.0, 41), 4)
    rows += _fold_rows(1, "test", np.r_[np.linspace(11.0, 14.0, 11), 15.0], 5)
    # another model with different risks must not interfere
    other = [dict(r, model="abmil", risk=-r["risk"]) for r in rows]
    preds = pd.DataFrame(rows + other).sample(frac=1.0, random_state=0)  # order must not matter

    info = km_for_model(preds, "survpgc", tmp_path / "km_survpgc.png")
    assert info["thresholds"] == {0: pytest.approx(0.5), 1: pytest.approx(15.0)}
    g = info["groups"]
    assert len(g) == 22 and set(g["case_id"].str.split("-").str[1]) == {"test"}
    assert g.loc[g["fold"] == 0, "high_risk"].all()
    assert not g.loc[g["fold"] == 1, "high_risk"].any()
    assert info["n_high"] == 10 and info["n_low"] == 12
    # per-fold test medians would have split each fold in two: the rule really differs
    assert (g.groupby("fold")["risk"].transform("median") < g["risk"]).sum() == 5 + 6
    test = preds[(preds["model"] == "survpgc") & (preds["split"] == "test")]
    hi = test["risk"].to_numpy() > np.where(test["fold"] == 0, 0.5, 15.0)
    assert info["p_value"] == logrank_test(test["time"], test["event"], hi).p_value
    assert (tmp_path / "km_survpgc.png").stat().st_size > 20_000


def test_km_for_model_errors(tmp_path: Path) -> None:
    rows = _fold_rows(0, "train", np.linspace(0, 1, 5), 1) + _fold_rows(0, "test", np.linspace(0, 1, 5), 2)
    rows += _fold_rows(1, "test", np.linspace(0, 1, 5), 3)  # fold 1 lacks training rows
    preds = pd.DataFrame(rows)
    with pytest.raises(InputError, match="fold 1"):
        km_for_model(preds, "survpgc", tmp_path / "x.png")
    with pytest.raises(InputError, match="models present"):
        km_for_model(preds, "nope", tmp_path / "x.png")
    with pytest.raises(InputError, match="risk"):
        km_for_model(preds.drop(columns="risk"), "survpgc", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------------------------------
# forest plot
# --------------------------------------------------------------------------------------------------
def test_forest_plot_from_summary_and_metrics(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    summary = tables["summary"].copy()
    summary.loc[summary["model"] == "abmil", "cindex_mean"] = np.nan
    info = forest_plot(
        summary,
        tmp_path / "forest.png",
        extra_points={"paper Table 1": {"survpgc": 0.74, "not-a-model": 0.7}, "oracle": 0.81},
    )
    assert info["source"] == "summary"
    means = info["mean"]
    assert np.all(np.diff(means[np.isfinite(means)]) <= 0) and info["labels"][-1] == "abmil"
    assert (tmp_path / "forest.png").stat().st_size > 10_000
    w, h = _png_size(tmp_path / "forest.png")
    assert w == 900 and h > 300

    per_fold = forest_plot(tables["metrics"], tmp_path / "forest_folds.png", metric="cindex")
    assert per_fold["source"] == "metrics"
    expected = tables["metrics"].groupby("model")["cindex"].agg(["mean", "std"])
    for label, m, s in zip(per_fold["labels"], per_fold["mean"], per_fold["sd"], strict=True):
        assert m == pytest.approx(expected.loc[label, "mean"]) and s == pytest.approx(expected.loc[label, "std"])
    assert list(per_fold["labels"]) == list(expected["mean"].sort_values(ascending=False).index)

    ibs = forest_plot(tables["summary"], tmp_path / "ibs.png", metric="ibs", reference_line=None)
    assert np.all(np.diff(ibs["mean"]) >= 0)  # lower is better: best first
    with pytest.raises(InputError):
        forest_plot(tables["summary"], tmp_path / "bad.png", metric="nope")


# --------------------------------------------------------------------------------------------------
# HTML report
# --------------------------------------------------------------------------------------------------
_ATTR = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def test_write_report_self_contained(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    images = _images(tmp_path / "img", tables)
    run_dir = tmp_path / "run"
    path = _write(run_dir, tables, "nested", images)
    assert path == run_dir / "report.html"
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html"]  # one file, no temp left
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")

    # nothing external: every src is an inline PNG (the images, byte for byte), every href an anchor
    attrs = _ATTR.findall(page)
    srcs = [v for k, v in attrs if k.lower() == "src"]
    hrefs = [v for k, v in attrs if k.lower() == "href"]
    assert len(srcs) == len(images)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    decoded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert decoded == [p.read_bytes() for p in images.values()]
    assert hrefs and all(h.startswith("#") for h in hrefs)
    low = page.lower()
    for bad in ("http://", "https://", "file:", "<script", "<link", "@import", "url("):
        assert bad not in low, bad

    # escaping of every user string
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "synthetic &lt;cohort&gt;" in page
    assert "oracle C-index 0.812 &lt;i&gt;" in page
    assert "Heatmaps &lt;soon&gt;" in page and '<p class="empty">attention heatmaps go here</p>' in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page  # config value

    # tables: summary (mean ± sd, 3 decimals), per-fold in <details>, comparisons, cohort coverage
    assert page.count("<table") >= 6
    s = tables["summary"]
    for _, r in s.iterrows():
        assert f"{r['cindex_mean']:.3f} ± {r['cindex_sd']:.3f}" in page
        assert f"{r['ibs_mean']:.3f} ± {r['ibs_sd']:.3f}" in page
    best = s.loc[s["cindex_mean"].idxmax()]
    assert f'<td class="num best">{best["cindex_mean"]:.3f} ± {best["cindex_sd"]:.3f}</td>' in page
    details = page[page.index("<details><summary>Per-fold metrics") :]
    details = details[: details.index("</details>")]
    assert details.count("<tr>") == len(tables["metrics"]) + 1
    assert f"{tables['metrics']['cindex'].iloc[0]:.3f}" in details
    assert "+0.031" in page and "[-0.150, -0.002]" in page and "1.2e-04" in page and "0.034" in page
    assert ">wsi<" in page and "98 %" in page and "58.3 %" in page
    assert "C-index (Harrell)" in page and "n/a" in page  # coxph has no AUC at 36 months

    # protocol: no optimism warning for nested
    assert "OPTIMISTIC" not in page and 'class="warning"' not in page
    assert "nested: model selection on a validation part" in page

    # deterministic given `created`
    again = _write(tmp_path / "run2", tables, "nested", images)
    assert again.read_bytes() == path.read_bytes()


def test_write_report_paper_warning(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    images = _images(tmp_path / "img", tables)
    page = _write(tmp_path / "paper", tables, "paper", images).read_text(encoding="utf-8")
    assert 'class="warning"' in page and "OPTIMISTIC" in page
    assert page.index('class="warning"') < page.index('id="metrics"')  # visible before the numbers
    assert "paper · optimistic" in page

    # a paper row in the summary also triggers the warning, even when the run's protocol is nested
    mixed = tables["summary"].assign(protocol=["nested", "paper", "nested", "nested"])
    path = write_report(
        tmp_path / "mixed",
        cohort_summary=None,
        protocol="nested",
        config=None,
        summary=mixed,
        metrics=None,
        comparisons=None,
        images={},
    )
    page = path.read_text(encoding="utf-8")
    assert 'class="warning"' in page and "OPTIMISTIC" in page
    assert "No cohort summary recorded." in page and "No comparisons" in page


def test_write_report_missing_image_and_empty_tables(tmp_path: Path) -> None:
    path = write_report(
        tmp_path,
        cohort_summary={},
        protocol="last-epoch",
        config={"a": np.int64(3), "p": Path("/x/y"), "t": (1, 2)},
        summary=pd.DataFrame(),
        metrics=pd.DataFrame(),
        comparisons=pd.DataFrame(),
        images={"km_gone": tmp_path / "missing.png"},
    )
    page = path.read_text(encoding="utf-8")
    assert "image missing (missing.png)" in page and "<img" not in page
    assert "No summary metrics." in page and "last-epoch" in page and "OPTIMISTIC" not in page
    assert "a: 3\n" in page and "p: /x/y\n" in page


# --------------------------------------------------------------------------------------------------
# headless Chromium
# --------------------------------------------------------------------------------------------------
def _chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe is not None
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={user_dir}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="headless chromium not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    images = _images(tmp_path / "img", tables)
    report = _write(tmp_path / "run", tables, "paper", images)
    url = report.resolve().as_uri()

    dom = _chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count("<img") >= len(images)
    assert html.count("<table") >= 6
    assert 'class="warning"' in html and "OPTIMISTIC" in html
    assert "C-index (Harrell)" in html and "Comparisons" in html
    assert "<script>alert" not in html  # the model name stayed text
    for section in ("run", "cohort", "metrics", "comparisons", "figures", "notes", "extra-0", "config"):
        assert f'<section id="{section}">' in html, section

    shot = tmp_path / "report_screenshot.png"
    res = _chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,3000", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert _png_size(shot) == (1280, 3000)
    # the inlined KM images were decoded and painted: their low-risk blue appears nowhere else on the page
    assert _color_pixels(shot, _hex_rgb(LOW_RISK_COLOR), tol=30) > 300
    # the red warning box is painted too
    assert _color_pixels(shot, (0xB4, 0x23, 0x18), tol=20) > 500
    shutil.copyfile(shot, SCREENSHOT_COPY)
    print(f"report screenshot: {shot} (copy: {SCREENSHOT_COPY})")


# --------------------------------------------------------------------------------------------------
# escaping of everything a run can put in its report
# --------------------------------------------------------------------------------------------------
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _assert_inert(page: str, evil: tuple[str, ...] = (SCRIPT, IMG)) -> _Tags:
    """No script element, no event-handler attribute, every image inlined; the evil strings are page text."""
    parsed = _Tags()
    parsed.feed(page)
    names = {t for t, _ in parsed.tags}
    assert "script" not in names and "<script" not in page.lower()
    for tag, attrs in parsed.tags:
        assert not any(a.lower().startswith("on") for a in attrs), (tag, attrs)
        if tag == "img":
            assert set(attrs) == {"src", "alt"} and attrs["src"].startswith("data:image/"), attrs
    assert "<img src=x" not in page
    text = "".join(parsed.text)
    for s in evil:
        assert s in text, s
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    return parsed


def _evil_run(root: Path) -> RunDir:
    """A finished run whose case ids, model ids, notes, cohort fields and interpretation files carry markup."""
    run = RunDir(root)
    rows = []
    for f in range(2):
        for split, seed in (("train", 10 + f), ("test", 20 + f)):
            time, event, high = _survival(40, seed)
            for i in range(40):
                for m in (SCRIPT, IMG):
                    risk = float(high[i]) + 0.01 * i
                    rows.append({"case_id": f"{IMG}{SCRIPT}{i}", "model": m, "fold": f, "split": split,
                                 "time": time[i], "event": bool(event[i]), "risk": risk})  # fmt: skip
    preds = pd.DataFrame(rows)
    run.write_table("predictions", preds)
    metrics = pd.DataFrame({"model": [SCRIPT, SCRIPT, IMG, IMG], "fold": [0, 1, 0, 1], "cindex": [0.6, 0.7, 0.5, 0.55],
                            "auc_6": 0.6, "auc_24": 0.7, "ibs": 0.2})  # fmt: skip
    run.write_table("metrics", metrics)
    run.write_table("summary", summarize(metrics, "nested"))
    run.write_table("comparisons", compare_models(preds, SCRIPT, n=20))
    run.write_notes([f"note {SCRIPT}", f"note {IMG}"])
    heat = root / "interpret" / "heatmaps" / "m" / "c"
    heat.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(heat / "att.png")
    meta = {"model": SCRIPT, "case_id": IMG, "fold": 0, "key": "risk", "risk": 0.5,
            "slides": [{"slide_id": f"{SCRIPT}{IMG}", "files": {"attention": {"figure": "att.png"}}}]}  # fmt: skip
    (heat / "risk.json").write_text(json.dumps(meta))
    loc = pd.DataFrame({"path": [IMG, IMG], "auroc_attention": [0.6, 0.7], "auroc_relevance": [0.8, 0.9]})
    loc.to_csv(root / "interpret" / f"localisation_{safe_name(SCRIPT)}.csv", index=False)
    return run


def test_run_report_escapes_every_run_string(tmp_path: Path) -> None:
    run = _evil_run(tmp_path / "run")
    cohort = {"name": SCRIPT, "endpoint": IMG, "n_cases": 80, "coverage": {IMG: 3}, "clinical_missing": {SCRIPT: 1},
              "notes": [IMG], IMG: SCRIPT}  # fmt: skip
    config = {"name": f"{SCRIPT}{IMG}", "eval": {"times": [6, 24]}}
    path = build_run_report(run, config=config, cohort_summary=cohort, protocol="paper")
    page = path.read_text(encoding="utf-8")
    parsed = _assert_inert(page)
    ids = [a["id"] for t, a in parsed.tags if t == "section"]
    assert ids == ["run", "cohort", "metrics", "comparisons", "figures", "notes", "extra-0", "extra-1", "config"]
    assert 'class="warning"' in page and "AUC 6 mo" in page and "AUC 24 mo" in page
    imgs = [a for t, a in parsed.tags if t == "img"]
    assert len(imgs) == 2 + 1 + 1  # two KM plots, the forest plot, the heatmap
    assert [a["alt"] for a in imgs][:2] == [f"Kaplan-Meier: {SCRIPT}", f"Kaplan-Meier: {IMG}"]


def test_sections_and_fragments_escape_their_data(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(png)
    df = pd.DataFrame({SCRIPT: [IMG], "n": [1.5]})
    section = Section(
        IMG, (Paragraph((SCRIPT, Span(IMG), Span(SCRIPT, "b"))), frame_table(df), figure(IMG, png, SCRIPT))
    )
    page = write_report(tmp_path, cohort_summary=None, protocol="nested", config={"name": IMG}, summary=None,
                        metrics=None, comparisons=None, images={SCRIPT: png}, notes=[IMG],
                        extra_sections=[section]).read_text(encoding="utf-8")  # fmt: skip
    _assert_inert(page)
    assert "<code>&#34;&gt;&lt;img src=x onerror=alert(1)&gt;</code>" in page
    assert "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>" in page
    fragment = render_blocks(section.blocks)
    _assert_inert(str(fragment))
    assert "1.500" in fragment
