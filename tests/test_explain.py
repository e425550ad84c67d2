"""Interpretation: attention scores, heatmaps, top-patch montages, IG attribution, report sections, CLI.

Unit tests check the pieces against definitions (AUROC against scikit-learn, IG completeness and a head
that reads one segment only, z-scoring); the run-level tests train SurvPGC for a few epochs on a small
synthetic cohort with real slide files (feature values are cheap stand-ins: no encoder runs here; the
ground-truth tests with a real encoder are in test_explain_truth.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.config import load_config
from survpgc.data.features import write_feature_file
from survpgc.errors import ConfigError, InputError
from survpgc.explain.attention import (
    DRAWN_SCORES,
    attention_key,
    draw_heatmap,
    heatmap_for_case,
    localisation_auroc,
    patch_mask_fraction,
    reduce_attention,
)
from survpgc.explain.attribution import attribute_fused, explain_attribution, path_of, shares_from_attributions
from survpgc.report.run import rebuild_report
from survpgc.rundir import RunContext
from survpgc.synth import MASK_DOWNSAMPLE, generate_synthetic_cohort
from survpgc.train.cv import run_cv

runner = CliRunner()


# ============================================================================ unit
def test_reduce_attention_zscores_each_token_and_ignores_masked_tokens():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(30), size=4)
    w[1] *= 100.0  # a much more peaked token must not dominate: z-scoring removes its scale
    z = reduce_attention(w)
    ref = np.mean([(r - r.mean()) / r.std() for r in w], axis=0)
    np.testing.assert_allclose(z, ref, atol=1e-12)
    masked = reduce_attention(np.vstack([w, np.full(30, 7.0)]), np.array([True] * 4 + [False]))
    np.testing.assert_allclose(masked, z, atol=1e-12)
    assert np.all(reduce_attention(np.full((2, 5), 0.2)) == 0)  # uniform attention: no preference
    assert reduce_attention(np.ones(1)).tolist() == [0.0]  # one patch
    assert reduce_attention(w, np.zeros(4, bool)).tolist() == [0.0] * 30  # no real token
    with pytest.raises(InputError):
        reduce_attention(np.zeros((2, 2, 2)))


def test_localisation_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(2, 60))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any():
            assert np.isnan(localisation_auroc(rng.random(n), y))
            continue
        s = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties
        assert localisation_auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_patch_mask_fraction():
    mask = np.zeros((64, 96), np.uint8)
    mask[:16, :16] = 255  # level-0 (0..256, 0..256) fully planted at downsample 16
    mask[16:24, 16:32] = 255  # level-0 patch at (256, 256): top half planted
    coords = np.array([[0, 0], [256, 256], [512, 0]])
    np.testing.assert_allclose(patch_mask_fraction(mask, coords, 256, 16), [1.0, 0.5, 0.0])


def test_draw_heatmap_keeps_the_slide_aspect_ratio_and_places_patches(tmp_path):
    w0, h0 = 4096, 1536
    thumb = np.full((384, 1024, 3), 200, np.uint8)  # 4096 x 1536 at 1/4
    coords = np.array([[0, 0], [1024, 512]])
    overlay, fig = draw_heatmap(
        thumb, (w0, h0), coords, np.array([100.0, 0.0]), 512, tmp_path / "o.png", tmp_path / "f.png", cmap="jet"
    )
    with Image.open(overlay) as im:
        assert im.size == (1024, 384)
        assert im.size[0] / im.size[1] == pytest.approx(w0 / h0, abs=1e-9)  # the slide's aspect ratio
        arr = np.asarray(im.convert("RGB")).astype(int)
    hot, cold = arr[10:120, 10:120].mean((0, 1)), arr[140:250, 266:376].mean((0, 1))
    assert hot[0] > hot[2] + 40 and cold[2] > cold[0] + 40  # red at the top score, blue at the bottom one
    assert (arr[300:, 600:] == 200).all()  # no patch there: the thumbnail shows through untouched
    assert fig.is_file()
    # no thumbnail (slide file missing): a blank canvas of the same aspect ratio
    overlay2, _ = draw_heatmap(None, (w0, h0), coords, np.array([1.0, 2.0]), 512, tmp_path / "b.png", max_size=512)
    with Image.open(overlay2) as im:
        assert im.size == (512, 192)


def test_attention_key_choices():
    att = {"clinic->patch": 0, "genomic->patch": 0, "patch->clinic": 0}
    assert attention_key(att, "clinic") == "clinic->patch"
    assert attention_key(att, "genomic") == "genomic->patch"
    assert attention_key({"patch": 0}, None) == "patch"
    with pytest.raises(ConfigError, match="several paths"):
        attention_key(att, None)
    with pytest.raises(ConfigError, match="no 'genomic->patch'"):
        attention_key({"clinic->patch": 0}, "genomic")
    with pytest.raises(InputError, match="unknown path"):
        attention_key(att, "omics")


def test_path_of_and_shares():
    assert path_of("genomic[genomic-patch]") == "genomic-patch"
    assert path_of("patch") == "patch"
    segs = [("genomic[g-p]", 0, 2), ("patch[g-p]", 2, 3), ("clinic[c-p]", 3, 5)]
    attr = np.array([[1.0, -1.0, 2.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    sh = shares_from_attributions(attr, segs)
    assert sh.loc[0, "share:genomic[g-p]"] == pytest.approx(0.25)
    assert sh.loc[0, "path:g-p"] == pytest.approx(0.5)
    assert sh.loc[0, "path:c-p"] == pytest.approx(0.5)
    assert sh.loc[1].isna().all()  # zero attribution: shares undefined, not 0/0 garbage


class _Head(torch.nn.Module):
    """A model stand-in whose risk depends only on dims 0..3 of its 8-d fused vector."""

    def __init__(self):
        super().__init__()
        lin = torch.nn.Linear(8, 4)
        with torch.no_grad():
            lin.weight[:, 4:] = 0.0
        self.head = torch.nn.Sequential(lin, torch.nn.Tanh(), torch.nn.Linear(4, 4))


def test_integrated_gradients_completeness_and_irrelevant_inputs():
    from survpgc.models.base import ModelOutput

    torch.manual_seed(0)
    m = _Head()
    x = torch.randn(6, 8).numpy()
    attr, delta = attribute_fused(m, x, np.zeros(8), n_steps=128)
    with torch.no_grad():
        risk = ModelOutput(logits=m.head(torch.as_tensor(x))).risk.numpy()
        risk0 = ModelOutput(logits=m.head(torch.zeros(1, 8))).risk.numpy()
    np.testing.assert_allclose(attr.sum(1), risk - risk0, atol=1e-4)  # completeness
    assert np.abs(delta).max() < 1e-4
    assert np.all(attr[:, 4:] == 0)  # dims the head ignores get nothing
    sh = shares_from_attributions(attr, [("a[p1]", 0, 4), ("b[p2]", 4, 8)])
    assert (sh["path:p1"] == 1.0).all()


# ============================================================================ a trained run with slides
@pytest.fixture(scope="module")
def slide_run(tmp_path_factory):
    """16 synthetic patients with real slide files; features: the planted mask share + noise (16-d). The first
    patient has a second slide (a copy of the second patient's, with its mask), so one bag spans two slides."""
    import shutil

    root = tmp_path_factory.mktemp("explain")
    syn = root / "syn"
    generate_synthetic_cohort(syn, n_patients=16, seed=5, slide_size=(1536, 1024), censoring=(0.3, 0.5))
    cohort = pd.read_csv(syn / "cohort.csv")
    first, second = cohort.iloc[0], cohort.iloc[1]
    extra_id = f"{first['case_id']}-DX2.tiff"
    shutil.copy(syn / "slides" / second["slide_id"], syn / "slides" / extra_id)
    shutil.copy(syn / "masks" / f"{Path(second['slide_id']).stem}.png", syn / "masks" / f"{Path(extra_id).stem}.png")
    cohort = pd.concat([cohort, first.to_frame().T.assign(slide_id=extra_id)], ignore_index=True)
    cohort.to_csv(syn / "cohort.csv", index=False)
    feat = root / "features"
    feat.mkdir()
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(0, 1536, 256), np.arange(0, 1024, 256))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)
    for sid in cohort["slide_id"]:
        stem = Path(sid).stem
        mask = np.asarray(Image.open(syn / "masks" / f"{stem}.png"))
        planted = patch_mask_fraction(mask, coords, 256, MASK_DOWNSAMPLE)
        x = rng.normal(size=(len(coords), 16)).astype(np.float32)
        x[:, 0] += 3.0 * planted
        write_feature_file(
            feat / f"{stem}.h5", x, coords, patch_size=256, encoder="fake", slide_id=sid,
            patch_size_level0=256, level0_width=1536, level0_height=1024,
        )  # fmt: skip
    cfg = load_config(
        None,
        [
            f"cohort.source={syn}",
            f"pathology.feature_dir={feat}",
            "genomic.kind=pathways",
            "genomic.signatures=hallmarks",
            "splits.folds=2",
            "train.epochs=2",
            "train.select_from_epoch=1",
            "train.batch_size=4",
            "eval.bootstrap=50",
            "models=[survpgc, abmil]",
        ],
    )
    out = root / "run"
    run_cv(cfg, out)
    return out, syn


def test_heatmap_for_case_writes_figures_scores_and_report(slide_run):
    out, _ = slide_run
    ctx = RunContext(out)
    case = ctx.splits[1].test[0]
    res = heatmap_for_case(out, case, ctx=ctx, top_k=5)
    assert res["fold"] == 1 and res["key"] == "clinic->patch"
    (entry,) = res["slides"]
    scores = pd.read_csv(entry["scores"])
    assert len(scores) == 24 and np.isfinite(scores[["attention", "relevance"]].to_numpy()).all()
    assert scores["attention_pct"].between(0, 100).all()
    slide_w, slide_h = 1536, 1024
    for name in ("attention", "relevance"):
        with Image.open(entry[name]["overlay"]) as im:
            w, h = im.size
        assert abs(w / h - slide_w / slide_h) < 0.01 and max(w, h) == 1024
        with Image.open(entry[name]["montage"]) as im:
            assert im.size[0] > 0
        assert entry[name]["figure"].is_file()
    html = (out / "report.html").read_text()
    assert "Attention heatmaps" in html and case in html
    # the second path and an explicit fold; an attention-MIL model without --path
    g = heatmap_for_case(out, case, ctx=ctx, path="genomic", fold=0, refresh_report=False, top_k=3)
    assert g["key"] == "genomic->patch" and g["fold"] == 0
    a = heatmap_for_case(out, case, ctx=ctx, model_id="abmil", path=None, refresh_report=False, top_k=3)
    assert a["key"] == "patch"
    rel = pd.read_csv(a["slides"][0]["scores"])["relevance"]
    assert np.isfinite(rel).all() and rel.abs().sum() > 0


def test_heatmaps_with_masks_beside_the_cohort_give_each_slide_its_auroc(slide_run, tmp_path):
    """The cohort's masks/ are found: every score's localisation AUROC per slide goes into the record, the
    scores CSV (``planted``), the figure title and the report; the headline score is drawn first."""
    import json

    from survpgc.explain.attention import HEATMAP_SCORE, localisation_auroc

    out, syn = slide_run
    ctx = RunContext(out)
    xs, ys = np.meshgrid(np.arange(0, 1536, 256), np.arange(0, 1024, 256))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)

    def n_planted(cid):
        mask = np.asarray(Image.open(syn / "masks" / f"{cid}-DX1.png"))
        return int((patch_mask_fraction(mask, coords, 256, MASK_DOWNSAMPLE) >= 0.5).sum())

    case = next(c for c in ctx.splits[0].test if 0 < n_planted(c) < 24)
    res = heatmap_for_case(out, case, ctx=ctx, top_k=2)
    (entry,) = res["slides"]
    scores = pd.read_csv(entry["scores"])
    assert scores["planted"].sum() == entry["n_planted"] == n_planted(case)
    for name in ("attention", "relevance", "ig", "grad_input", "occlusion"):
        expected = localisation_auroc(scores[name].to_numpy(), scores["planted"].to_numpy())
        assert entry["auroc"][name] == pytest.approx(expected)
    assert res["headline"] == HEATMAP_SCORE and entry["drawn"][0] == HEATMAP_SCORE
    meta = json.loads((entry["scores"].parent / "clinic-to-patch.json").read_text())
    (slide,) = meta["slides"]
    assert next(iter(slide["files"])) == HEATMAP_SCORE and slide["auroc"]["ig"] == pytest.approx(entry["auroc"]["ig"])
    html = (out / "report.html").read_text()
    assert f"{slide['slide_id']} {HEATMAP_SCORE} · AUROC vs mask {entry['auroc'][HEATMAP_SCORE]:.2f}" in html
    # an explicit masks folder that does not exist is refused; an empty one gives no AUROC
    with pytest.raises(InputError, match="--masks"):
        heatmap_for_case(out, case, ctx=ctx, masks_dir=tmp_path / "nope", refresh_report=False)
    (tmp_path / "empty").mkdir()
    res = heatmap_for_case(out, case, ctx=ctx, masks_dir=tmp_path / "empty", refresh_report=False, top_k=2)
    assert "auroc" not in res["slides"][0]


def test_relevance_is_attention_times_risk_gradient(slide_run):
    """The relevance column equals A ⊙ ∂risk/∂A, checked against central finite differences through a float64
    copy of the model (in float32 the difference quotient's round-off, one float32 step of the risk / eps, is
    as large as the tolerance, so the check would depend on the CPU's summation order)."""
    import copy

    from survpgc.data.dataset import collate_survival
    from survpgc.explain.attention import case_patch_scores

    out, _ = slide_run
    ctx = RunContext(out)
    case = ctx.splits[0].test[0]
    lm = ctx.load("survpgc", 0)
    sc = case_patch_scores(lm, case, "clinic")
    # independent: first-order change of the risk when the clinic->patch weights are scaled by (1 ± eps)
    batch = collate_survival([lm.dataset([case])[0]])
    batch = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}
    model = copy.deepcopy(lm.model).double()
    layer = model.attn[1]  # path 2 = clinic <-> pathology
    eps = 1e-4

    def run(scale_patch: int, sign: float) -> float:
        orig = layer.attend

        def patched(qkv_m, m_mask, qkv_p, p_mask, return_attention=False):
            m_out, p_out, attn = orig(qkv_m, m_mask, qkv_p, p_mask, True)
            # add ±eps * A_j * v_j for patch j to every query's output (= scaling its weight by 1 ± eps)
            _, _, vp = (layer._split(t) for t in qkv_p.chunk(3, dim=-1))
            a = attn["mod->patch/heads"]
            extra = sign * eps * a[..., scale_patch : scale_patch + 1] @ vp[:, :, scale_patch : scale_patch + 1]
            m_out = m_out + extra.transpose(1, 2).reshape(m_out.shape)
            return m_out, p_out, attn

        layer.attend = patched
        model.factored = False
        try:
            with torch.no_grad():
                return float(model(batch).risk[0])
        finally:
            layer.attend = orig
            model.factored = True

    for j in (0, 5, 11):
        fd = (run(j, 1.0) - run(j, -1.0)) / (2 * eps)
        assert fd == pytest.approx(sc.table["relevance"].iloc[j], rel=1e-3, abs=1e-7)


def test_explain_attribution_on_run(slide_run):
    out, _ = slide_run
    res = explain_attribution(out, n_steps=32)
    p = res["patients"]
    assert set(p["fold"]) == {0, 1} and len(p) == 16
    np.testing.assert_allclose(p["path:genomic-patch"] + p["path:clinic-patch"], 1.0, atol=1e-9)
    assert (p["delta"].abs() < 5e-3).all()  # completeness to the integration error of 32 steps
    s = res["summary"]
    assert s["fold"].tolist() == ["0", "1", "all (mean ± sd of fold means)"]
    assert (res["dir"] / "survpgc_shares.png").is_file()
    html = (out / "report.html").read_text()
    assert "Modality attribution" in html and "genomic-patch" in html
    # the zero baseline also satisfies completeness; a model without fused vectors for its head is refused
    res2 = explain_attribution(out, n_steps=16, baseline="zero", refresh_report=False)
    assert (res2["patients"]["delta"].abs() < 1e-2).all()
    with pytest.raises(InputError, match="baseline"):
        explain_attribution(out, baseline="median")
    with pytest.raises(ConfigError, match="not in run"):
        explain_attribution(out, model_id="survpath")


def test_refresh_report_recomputes_nothing(slide_run):
    """Adding interpretation results rebuilds report.html from the run's tables: they are not rewritten."""
    out, _ = slide_run
    tables = [out / f"{n}.csv" for n in ("predictions", "metrics", "summary", "comparisons")]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tables}
    report = rebuild_report(RunContext(out))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tables} == before
    html = report.read_text()
    assert "survpgc" in html and "abmil" in html and "Kaplan" in html


def test_run_context_errors(slide_run, tmp_path):
    out, _ = slide_run
    with pytest.raises(InputError, match="not a run directory"):
        RunContext(tmp_path)
    ctx = RunContext(out)
    with pytest.raises(InputError, match="not in cohort"):
        ctx.test_fold_of("NOPE")
    with pytest.raises(InputError, match="out of range"):
        ctx.load("survpgc", 7)


def test_cli_defaults_match_the_library():
    """The CLI repeats the library's defaults as literals (typer needs them); they must not drift apart."""
    import inspect

    import typer

    from survpgc.cli import explain_attribution_cmd, heatmap_cmd

    lib = inspect.signature(explain_attribution).parameters
    cli = inspect.signature(explain_attribution_cmd).parameters
    for name in ("baseline", "n_steps"):
        opt = cli[name].default
        assert (opt.default if isinstance(opt, typer.models.OptionInfo) else opt) == lib[name].default, name
    lib = inspect.signature(heatmap_for_case).parameters
    cli = inspect.signature(heatmap_cmd).parameters
    for name in ("top_k", "max_size", "path", "outline_top"):
        assert cli[name].default.default == lib[name].default, name


def test_cli_heatmap_and_attribution(slide_run):
    out, _ = slide_run
    case = RunContext(out).splits[0].test[1]
    r = runner.invoke(app, ["heatmap", "--run", str(out), "--case", case, "--path", "genomic", "--top-k", "4"])
    assert r.exit_code == 0, r.output
    assert "genomic->patch" in r.stdout and "report:" in r.stdout
    r = runner.invoke(app, ["explain", "attribution", "--run", str(out), "--n-steps", "8"])
    assert r.exit_code == 0, r.output
    assert "clinic-patch" in r.stdout
    # a one-path model: the table shows its fused vectors (the path share is 1 by definition)
    r = runner.invoke(app, ["explain", "attribution", "--run", str(out), "--model", "abmil", "--n-steps", "8"])
    assert r.exit_code == 0, r.output
    assert "IG share per fused vector" in r.stdout


def test_localisation_gives_every_score_and_the_report_shows_them(slide_run):
    """One row per test slide and path with the AUROC of every score (case-level scores equal on both paths),
    IG's completeness residual small; the CLI prints every score; the report's table has a column per score."""
    from survpgc.explain.attention import SCORES

    out, syn = slide_run
    r = runner.invoke(app, ["explain", "localisation", "--run", str(out), "--masks", str(syn / "masks")])
    assert r.exit_code == 0, r.output
    for name in SCORES:
        assert f" {name} " in r.stdout, name
    t = pd.read_csv(out / "interpret" / "localisation_survpgc.csv")
    assert {f"auroc_{n}" for n in SCORES} <= set(t.columns) and len(t) == 2 * 17  # 16 cases + 1 second slide
    by = t.pivot_table(index=["case_id", "slide"], columns="path", values="auroc_ig")
    np.testing.assert_array_equal(by["clinic->patch"].to_numpy(), by["genomic->patch"].to_numpy())
    assert (t["ig_delta"].abs() < 0.05 * t["risk"].abs().max()).all()
    rebuild_report(RunContext(out))
    html = (out / "report.html").read_text()
    assert "Localisation against known masks" in html and "grad_input" in html and "occlusion" in html


# ============================================================================ studies
@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    syn = root / "syn"
    generate_synthetic_cohort(syn, n_patients=20, seed=7, render_slides=False, censoring=(0.3, 0.5))
    feat = root / "features"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for sid in pd.read_csv(syn / "cohort.csv")["slide_id"]:
        n = int(rng.integers(5, 12))
        write_feature_file(feat / f"{Path(sid).stem}.h5", rng.normal(size=(n, 8)).astype(np.float32),
                           np.zeros((n, 2), int), patch_size=256, slide_id=sid)  # fmt: skip
    return syn, feat


FAST = ["splits.folds=2", "train.epochs=2", "train.select_from_epoch=1", "train.batch_size=4", "eval.bootstrap=20"]


def test_survival_groups():
    from survpgc.studies import survival_groups

    assert survival_groups([1, 11.9, 12, 60, 60.1]).tolist() == ["< 1 y", "< 1 y", "1–5 y", "1–5 y", "> 5 y"]


def test_template_study_cli(tiny_cohort, tmp_path):
    syn, _ = tiny_cohort
    out = tmp_path / "templates"
    r = runner.invoke(
        app, ["study", "templates", "--cohort", str(syn), "--out", str(out), "--n-templates", "3,1", *FAST]
    )
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out / "templates.csv")
    assert table["n_templates"].tolist() == [1, 3]
    # more templates -> at least as many distinct sentences; every N_t cross-validated on the same folds
    assert table["distinct_sentences"].iloc[1] > table["distinct_sentences"].iloc[0]
    f1 = (out / "nt1" / "run" / "splits" / "splits.json").read_text()
    f3 = (out / "nt3" / "run" / "splits" / "splits.json").read_text()
    assert f1 == f3
    assert table["cindex_mean"].between(0, 1).all()
    tsne = pd.read_csv(out / "nt3" / "tsne.csv")
    assert len(tsne) == 20 and np.isfinite(tsne[["tsne_1", "tsne_2"]].to_numpy()).all()
    assert (out / "tsne.png").is_file()
    html = (out / "report.html").read_text()
    assert "Template diversity" in html and "mlp N_t=3" in html
    r = runner.invoke(app, ["study", "templates", "--cohort", str(syn), "--out", str(out), "--n-templates", "x"])
    assert r.exit_code != 0


def test_clinical_integration_study_cli(tiny_cohort, tmp_path):
    syn, feat = tiny_cohort
    out = tmp_path / "integration"
    args = ["study", "clinical-integration", "--out", str(out), f"cohort.source={syn}",
            f"pathology.feature_dir={feat}", "models=[abmil]", *FAST]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = pd.read_csv(out / "summary.csv")
    assert summary["model"].tolist() == ["late_fusion", "concat_fusion", "encoded_fusion", "survpc"]
    comp = pd.read_csv(out / "comparisons.csv")
    assert set(comp["reference"]) == {"survpc"}
    html = (out / "report.html").read_text()
    assert "Clinical integration (paper Table 4)" in html and "a: late fusion" in html
    # no pathology features: refused before any work
    from survpgc.studies import clinical_integration_study

    with pytest.raises(ConfigError, match=r"pathology\.feature_dir"):
        clinical_integration_study(None, tmp_path / "x", overrides=[f"cohort.source={syn}"])


def test_heatmap_never_reads_level0_whole(slide_run, monkeypatch):
    """Thumbnail from a pyramid level, montage one patch-sized region per patch: no big level-0 read."""
    from survpgc.wsi import reader

    out, _ = slide_run
    reads = []
    orig = reader.Slide.read_region

    def spy(self, location, level, size):
        reads.append((level, tuple(size)))
        return orig(self, location, level, size)

    monkeypatch.setattr(reader.Slide, "read_region", spy)
    ctx = RunContext(out)
    # a 256-px thumbnail of the 1536 x 1024 slide comes from pyramid level 1 (4x)
    heatmap_for_case(out, ctx.splits[0].test[2], ctx=ctx, top_k=6, refresh_report=False, max_size=256)
    level0 = [s for lvl, s in reads if lvl == 0]
    assert len(level0) == len(DRAWN_SCORES) * 6  # one montage per drawn score, nothing else
    assert all(w <= 256 and h <= 256 for w, h in level0)
    assert any(lvl > 0 for lvl, _ in reads)  # the thumbnail came from a downsampled level


def test_heatmap_of_a_case_with_two_slides(slide_run):
    out, syn = slide_run
    ctx = RunContext(out)
    case = str(pd.read_csv(syn / "cohort.csv")["case_id"].iloc[0])
    res = heatmap_for_case(out, case, ctx=ctx, top_k=4, refresh_report=False)
    assert [e["slide_id"] for e in res["slides"]] == [f"{case}-DX1.tiff", f"{case}-DX2.tiff"]
    assert all(e["n_patches"] == 24 for e in res["slides"])
    # scored over the whole bag: the percentiles of both slides together span 0..100
    pct = pd.concat([pd.read_csv(e["scores"]) for e in res["slides"]])["attention_pct"]
    assert pct.min() == 0 and pct.max() == 100
    for e in res["slides"]:
        assert e["relevance"]["montage"].is_file() and e["attention"]["overlay"].is_file()


def test_heatmap_slide_lookup_and_features_only(slide_run, tmp_path, monkeypatch):
    """--slide-dir and --slide take precedence over the cohort's path; without any slide file the heatmap is
    drawn on a blank canvas of the slide's level-0 size (from the feature file) and no montage is made."""
    import shutil

    out, syn = slide_run
    ctx = RunContext(out)
    case = ctx.splits[1].test[3]
    slide_id = f"{case}-DX1.tiff"
    elsewhere = tmp_path / "slides"
    elsewhere.mkdir()
    shutil.copy(syn / "slides" / slide_id, elsewhere / f"{case}-DX1.svs")  # other suffix: found by stem
    opened = []
    from survpgc.wsi import reader

    orig = reader.open_slide
    monkeypatch.setattr(reader, "open_slide", lambda p, **k: opened.append(str(p)) or orig(p, **k))
    heatmap_for_case(out, case, ctx=ctx, slide_dir=elsewhere, top_k=2, refresh_report=False)
    assert opened == [str(elsewhere / f"{case}-DX1.svs")]
    with pytest.raises(InputError, match="--slide-dir"):
        heatmap_for_case(out, case, ctx=ctx, slide_dir=tmp_path / "nope", refresh_report=False)
    with pytest.raises(InputError, match="--slide"):
        heatmap_for_case(out, case, ctx=ctx, slide=str(tmp_path / "missing.svs"), refresh_report=False)
    # features only: hide the slide from the cohort
    ctx.cohort.slides["slide_path"] = None
    res = heatmap_for_case(out, case, ctx=ctx, top_k=2, refresh_report=False)
    (entry,) = res["slides"]
    assert "montage" not in entry["relevance"]
    with Image.open(entry["relevance"]["overlay"]) as im:
        assert im.size == (1024, 683)  # 1536 x 1024 from the feature file's level0_width / height


def test_integration_section_only_for_runs_with_survpc_and_a_baseline(tmp_path):
    """The Table 4 section is derived from the run's models: survpc plus a baseline; ΔC only vs survpc."""
    from survpgc.report.interpret import integration_blocks
    from survpgc.report.templating import render_blocks

    def run(models, reference):
        summary = pd.DataFrame({"model": models, "cindex_mean": 0.6, "cindex_sd": 0.05})
        others = [m for m in models if m != reference]
        comparisons = pd.DataFrame({"model": others, "reference": reference, "delta_cindex": 0.01, "ci_low": -0.1,
                                    "ci_high": 0.1, "p_value": 0.5})  # fmt: skip
        blocks = integration_blocks(summary, comparisons, "tcga-lihc")
        return render_blocks(blocks) if blocks else ""

    assert run(["survpgc", "survpc"], "survpgc") == ""  # no integration baseline
    assert run(["late_fusion", "abmil"], "abmil") == ""  # no survpc
    html = run(["late_fusion", "survpc"], "survpc")
    assert "a: late fusion" in html and "+0.010" in html and "reference" in html
    html = run(["late_fusion", "survpc", "survpgc"], "survpgc")  # compared with survpgc: no ΔC vs survpc
    assert "a: late fusion" in html and "+0.010" not in html


def test_case_level_scores_are_drawn_once_for_both_attentions_of_a_case(slide_run, tmp_path):
    """IG, gradient × input and occlusion follow the patch features through the whole model, so they are the same
    for clinic->patch and genomic->patch: one file per slide named without the attention, listed in both
    records; the per-attention scores (attention, relevance) keep one file per attention."""
    from survpgc.explain.attention import case_heatmaps

    out, _ = slide_run
    ctx = RunContext(out)
    case = ctx.splits[0].test[0]
    loaded = ctx.load("survpgc", 0)
    clinic, genomic = case_heatmaps(loaded, case, ctx.cohort, tmp_path / "maps", paths=None, top_k=2, max_size=256)
    assert (clinic["key"], genomic["key"]) == ("clinic->patch", "genomic->patch")
    for c, g in zip(clinic["slides"], genomic["slides"], strict=True):
        assert c["ig"] == g["ig"] and Path(c["ig"]["overlay"]).name == f"{Path(c['slide_id']).stem}_ig_overlay.png"
        assert c["relevance"]["overlay"] != g["relevance"]["overlay"]
        assert "clinic-to-patch_relevance" in Path(c["relevance"]["overlay"]).name
    stems = {Path(e["slide_id"]).stem for e in clinic["slides"]}
    assert len(list((tmp_path / "maps").glob("*_ig_overlay.png"))) == len(stems)
    assert not list((tmp_path / "maps").glob("*-to-patch_ig*"))
