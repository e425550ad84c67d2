"""The paper's two studies as commands: template diversity (Table 5, Fig. 5) and clinical integration (Table 4).

* :func:`template_study` -- for each number of templates N_t, encode the clinical sentences (one template
  drawn per patient and field among the first N_t), draw a t-SNE of the patients' clinical embeddings
  coloured by survival group, and cross-validate ``mlp`` on the clinical tokens -- every N_t on the same
  folds. Writes ``<out>/nt<N>/`` (tokens + the run directory), ``tsne.png``, ``templates.csv`` and one
  ``report.html``.
* :func:`clinical_integration_study` -- the config's cohort and inputs with the models replaced by the three
  clinic + pathology integration approaches (a late fusion, b concatenation, c encoded fusion) and
  ``survpc``, on the same folds, compared with ``survpc`` by paired bootstrap; the Table 4 section is part of
  the run's ``report.html``.

Survival groups of the t-SNE (by observed time): ``< 1 y`` (time < 12 months), ``1–5 y`` (12–60), ``> 5 y``
(> 60); filled markers = death observed, hollow = censored (a patient censored at 8 months is only known to
have lived 8 months, so it is drawn hollow in ``< 1 y``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import ConfigError, InputError
from survpgc.files import atomic_write
from survpgc.paper import INTEGRATION_MODELS, PAPER_TABLE5_LIHC

__all__ = [
    "clinical_integration_study",
    "survival_groups",
    "template_study",
]

log = logging.getLogger(__name__)

GROUPS = ("< 1 y", "1–5 y", "> 5 y")


def survival_groups(time: Sequence[float]) -> np.ndarray:
    """Group label per patient by observed time in months: ``< 1 y``, ``1–5 y``, ``> 5 y``."""
    t = np.asarray(time, dtype=float)
    return np.where(t < 12, GROUPS[0], np.where(t <= 60, GROUPS[1], GROUPS[2]))


# ============================================================================ template diversity
def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = x.shape[0]
    if n < 4:
        raise InputError(f"t-SNE needs at least 4 patients, got {n}")
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=1000).fit_transform(x)


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    if len(set(labels.tolist())) < 2 or len(x) < 3:
        return float("nan")
    return float(silhouette_score(x, labels, metric="cosine"))


def _embedding_matrix(tokens_dir: Path, case_ids: list[str]) -> np.ndarray:
    """(n, n_fields * dim) flattened clinical tokens (masked tokens as zeros) -- what ``mlp`` reads."""
    from survpgc.clinical.encode import load_clinical_tokens

    src = load_clinical_tokens(tokens_dir, case_ids=case_ids)
    rows = []
    for cid in case_ids:
        got = src.get(cid)
        if got is None:
            rows.append(np.zeros(src.n_tokens * src.dim, np.float32))
            continue
        tok, mask = (t.numpy() for t in got)
        rows.append((tok * mask[:, None]).reshape(-1).astype(np.float32))
    return np.stack(rows)


def _plot_tsne(panels: list[dict[str, Any]], time: np.ndarray, event: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = survival_groups(time)
    colors = dict(zip(GROUPS, ("#d62728", "#ff7f0e", "#1f77b4"), strict=True))
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.3), squeeze=False, constrained_layout=True)
    for ax, panel in zip(axes[0], panels, strict=True):
        xy = panel["xy"]
        for g in GROUPS:
            for dead in (True, False):
                sel = (groups == g) & (event == dead)
                if not sel.any():
                    continue
                ax.scatter(
                    xy[sel, 0], xy[sel, 1], s=12, lw=0.8,
                    facecolors=colors[g] if dead else "none", edgecolors=colors[g],
                    label=f"{g} ({'death' if dead else 'censored'})",
                )  # fmt: skip
        ax.set_title(f"N_t = {panel['n_templates']}  (silhouette {panel['silhouette']:+.3f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    atomic_write(path, lambda t: fig.savefig(t, format="png", dpi=110))
    plt.close(fig)
    return path


def template_study(
    cohort: str,
    out: str | Path,
    *,
    n_templates: Sequence[int] = (1, 3, 5, 10, 20),
    encoder: str = "minilm",
    templates: str | None = None,
    overrides: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Run the template-diversity study (module docstring) into ``out``; ``overrides`` are run-config
    ``key=value`` settings (e.g. ``splits.folds=5``, ``train.epochs=20``) applied to every N_t's run."""
    from survpgc.config import load_config
    from survpgc.data.cohort import open_cohort

    nts = sorted({int(n) for n in n_templates})
    if not nts or nts[0] < 1:
        raise InputError(f"--n-templates must be positive integers, got {list(n_templates)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(None, [f"cohort.source={cohort}", *overrides])
    coh = open_cohort(
        base.cohort.source,
        endpoint=base.cohort.endpoint,
        on_invalid_survival=base.cohort.on_invalid_survival,
        omics_nonfinite=base.cohort.omics_nonfinite,
        time_unit=base.cohort.time_unit,
    )
    setting = {"cohort": cohort, "encoder": encoder, "templates": templates, "seed": seed, "overrides": overrides}
    panels, rows, metric_frames = [], [], []
    for nt in nts:
        panel, row, metrics = _template_run(coh, nt, out / f"nt{nt}", **setting)
        panels.append(panel)
        rows.append(row)
        metric_frames.append(metrics)
    table = pd.DataFrame(rows)
    atomic_write(out / "templates.csv", lambda t: table.to_csv(t, index=False))
    time_, event = coh.survival(list(coh.case_ids))
    tsne_png = _plot_tsne(panels, time_, event, out / "tsne.png",
                          f"{coh.name}: clinical embeddings ({encoder}) by survival group")  # fmt: skip
    metrics = pd.concat(metric_frames, ignore_index=True)
    report = _template_report(out, coh, base.splits.protocol, table, metrics, tsne_png, nts=nts, **setting)
    return {"table": table, "tsne": tsne_png, "report": report, "out": out}


def _template_run(coh, nt: int, folder: Path, *, cohort, encoder, templates, seed, overrides):
    """One N_t: clinical sentences and tokens, the t-SNE panel and silhouette, and a CV of ``mlp``."""
    from survpgc.clinical.encode import encode_clinical
    from survpgc.config import load_config
    from survpgc.train.cv import run_cv

    ids = list(coh.case_ids)
    time_, event = coh.survival(ids)
    tokens = folder / "clinical"
    encode_clinical(coh, tokens, encoder=encoder, n_templates=nt, seed=seed, templates=templates)
    x = _embedding_matrix(tokens, ids)
    sentences = pd.read_csv(tokens / "sentences.csv", dtype={"case_id": str})
    xy = _tsne(x, seed)
    sil = _silhouette(x, survival_groups(time_))
    pd.DataFrame({"case_id": ids, "tsne_1": xy[:, 0], "tsne_2": xy[:, 1], "group": survival_groups(time_),
                  "time": time_, "event": event}).to_csv(folder / "tsne.csv", index=False)  # fmt: skip
    cfg = load_config(
        None,
        [
            f"cohort.source={cohort}",
            *overrides,
            f"clinical.tokens_dir={tokens}",
            f"clinical.encoder={encoder}",
            f"clinical.n_templates={nt}",
            f"clinical.seed={seed}",
            "models=[{name: mlp, params: {modality: clinical}}]",
            f"name=templates-nt{nt}",
        ],
    )
    res = run_cv(cfg, folder / "run")
    r = res.summary.iloc[0]
    row = {
        "n_templates": nt,
        "distinct_sentences": int(sentences["sentence"].nunique()),
        "silhouette_survival_groups": sil,
        "cindex_mean": float(r["cindex_mean"]),
        "cindex_sd": float(r["cindex_sd"]),
        "iauc_mean": float(r.get("iauc_mean", np.nan)),
        "iauc_sd": float(r.get("iauc_sd", np.nan)),
        "paper_lihc": PAPER_TABLE5_LIHC.get(nt, np.nan) if str(coh.name).upper() == "TCGA-LIHC" else np.nan,
        "protocol": str(r["protocol"]),
        "run": str(folder / "run"),
    }
    log.info("templates: N_t=%d, %d distinct sentences, C-index %.3f", nt, row["distinct_sentences"], r["cindex_mean"])
    return {"n_templates": nt, "xy": xy, "silhouette": sil}, row, res.metrics.assign(model=f"mlp N_t={nt}")


def _template_report(out: Path, coh, protocol: str, table, metrics, tsne_png, *, nts, **setting) -> Path | None:
    """The study's report.html: the per-N_t table beside the paper's Table 5, and the t-SNE figure."""
    from survpgc.eval.tables import summarize
    from survpgc.report import html as report_html
    from survpgc.report.blocks import Paragraph, Section, Span, figure, frame_table, mean_sd

    show = table[["n_templates", "distinct_sentences", "silhouette_survival_groups"]].copy()
    show["C-index"] = [mean_sd(m, s) for m, s in zip(table["cindex_mean"], table["cindex_sd"], strict=True)]
    if str(coh.name).upper() == "TCGA-LIHC":
        show["paper Table 5 (LIHC)"] = [f"{v:.3f}" if v == v else "-" for v in table["paper_lihc"]]
    intro = Paragraph(
        (
            "One template drawn per patient and field among the first N_t variants; ",
            Span("mlp"),
            " on the flattened clinical tokens, the same folds for every N_t. Silhouette: survival groups in the "
            "embedding space (cosine).",
        )
    )
    section = Section(
        "Template diversity (paper Table 5, Fig. 5)",
        (intro, frame_table(show), figure("t-SNE of clinical embeddings", tsne_png)),
    )
    return report_html.write_report(
        out,
        cohort_summary=coh.summary(),
        protocol=protocol,
        config={"study": "templates", "cohort": setting["cohort"], "encoder": setting["encoder"], "n_templates": nts,
                "templates": setting["templates"], "seed": setting["seed"], "overrides": list(setting["overrides"])},
        summary=summarize(metrics, protocol),
        metrics=metrics,
        comparisons=None,
        images={},
        extra_sections=[section],
        title="survpgc template-diversity study",
    )  # fmt: skip


# ============================================================================ clinical integration
def clinical_integration_study(
    config: str | Path | None, out: str | Path, *, overrides: Sequence[str] = (), progress: bool = False
):
    """Cross-validate the Table 4 approaches and ``survpc`` with the config's data on the same folds (any
    ``models`` of the config are replaced); returns the :class:`~survpgc.train.cv.RunResult`."""
    from survpgc.config import ModelEntry, load_config
    from survpgc.train.cv import run_cv

    cfg = load_config(config, list(overrides))
    if not cfg.pathology.feature_dir:
        raise ConfigError("the clinical-integration study needs pathology.feature_dir (patch features)")
    cfg.models = [ModelEntry(name=m) for m, _ in INTEGRATION_MODELS]
    cfg.eval.reference = "survpc"
    return run_cv(cfg, out, progress=progress)
