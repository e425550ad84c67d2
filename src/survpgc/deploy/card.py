"""The model card of a bundle (``model_card.md``): intended use, training cohort, inputs, CV metrics, limits."""

from __future__ import annotations

from typing import Any

__all__ = ["known_limits", "render_card"]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _coefficients(coef: Any) -> str:
    if not coef:
        return "n/a"
    return ", ".join(f"{k} {v:+.3f}" for k, v in coef.items())


def known_limits(manifest: dict[str, Any]) -> list[str]:
    """The limits a user of the bundle must know, derived from its manifest."""
    limits = []
    inputs = manifest.get("inputs", {})
    clin = inputs.get("clinical")
    if clin and str(clin.get("encoder", "")).lower() == "minilm":
        limits.append("The clinical text encoder is MiniLM (all-MiniLM-L6-v2, general-domain), not CONCH as in the "
                      "SurvPGC paper.")  # fmt: skip
    path = inputs.get("pathology")
    if path:
        limits.append(
            f"Pathology features must come from patch encoder {path.get('encoder', '?')!r} with the same weights, "
            f"{path.get('patch_size', '?')} px patches at {path.get('target_magnification', '?')}x "
            f"(feature dim {path.get('dim')}); other features are refused."
        )
    table = inputs.get("clinical_table")
    if table:
        params = manifest.get("model", {}).get("params") or {}
        limits.append(
            f"A Cox proportional-hazards model (lifelines, penalizer {params.get('penalizer', 0.1)}) on the clinical "
            f"columns {table.get('columns')} of the cohort table: a missing numeric value gets the training median, a "
            "missing or unseen category the design's level for it or the reference level (with a warning); a cohort "
            "lacking one of the columns is refused."
        )
    gen = inputs.get("genomic")
    if gen:
        limits.append(
            f"Genomic input: {len(gen['columns'])} omics columns in the bundle's order; a cohort lacking more than "
            "5 % of them is refused, fewer are filled with the training mean (0 after scaling)."
        )
    kind = manifest.get("kind")
    tr = manifest.get("training", {})
    if table:
        limits.append("The Cox model was fitted in closed form on all training cases; its CV metrics (if shown) come "
                      "from models fitted on each fold's training part.")  # fmt: skip
    elif kind == "refit":
        limits.append(f"The final model was trained for a fixed {tr.get('epochs')} epochs on all training cases, "
                      "without a validation part; the learning-rate schedule spans those epochs, so it is not the "
                      "exact procedure whose CV metrics are shown.")  # fmt: skip
    else:
        limits.append("An ensemble of the CV run's fold models: survival functions and risks are averaged; each "
                      "member saw only its fold's training part.")  # fmt: skip
    limits += [
        "Risk is a model-specific score (higher = worse), not a probability; risk groups use the training median, "
        "so group sizes on another cohort need not be 50/50.",
        "Survival is a discrete curve on the bundle's time bins; S(t) between bin ends is a step function, and beyond "
        "the last finite edge the model has no resolution.",
        "A patient lacking a modality is predicted with that modality masked; predictions then rest on the others."
        if not table
        else "A patient with no value in any of the clinical columns gets the prediction of the training median / "
        "reference patient.",
        "Research use only: not validated for clinical decisions. External validation (`survpgc validate`) on the "
        "target population is required before any use.",
    ]
    return limits


def render_card(manifest: dict[str, Any]) -> str:
    """The Markdown model card of a bundle manifest."""
    m = manifest["model"]
    coh = manifest.get("training_cohort", {})
    tr = manifest.get("training", {})
    lines = [
        f"# Model card: {m['id']}",
        "",
        f"survpgc {manifest.get('survpgc_version')} bundle (format {manifest.get('format_version')}), "
        f"{manifest.get('kind')}, created {manifest.get('created')}.",
        "",
        "## Intended use",
        "",
        f"Prognosis research: predict overall-survival risk ({coh.get('endpoint', 'os')}), survival curves and "
        f"risk groups for patients of the population of the training cohort ({coh.get('name')}), from "
        f"{' + '.join(m['modalities'])} inputs. Not a medical device; not for individual treatment decisions.",
        "",
        "## Model",
        "",
        f"- registry name: `{m['name']}`; params: `{m['params']}`",
        (
            f"- epochs: {tr.get('epochs')} ({tr.get('epochs_source')}); selected epochs of the CV run: "
            f"{tr.get('selected_epochs')}"
            if m.get("family", "neural") == "neural"
            else f"- fitted in closed form ({tr.get('epochs_source')}); coefficients (log hazard ratio per design "
            f"column): {_coefficients(tr.get('coefficients'))}"
        ),
        f"- time bins (months): {manifest['time_bins']['edges']} (null = open end)",
        f"- risk cutoff (median training risk): {_fmt(manifest.get('risk_cutoff'), 4)}",
        "",
        "## Training cohort",
        "",
        f"- {coh.get('name')}: {coh.get('n_cases')} cases, {coh.get('n_events')} events, censoring "
        f"{_fmt(coh.get('censoring_rate'))}, median follow-up {_fmt(coh.get('median_followup_months'), 1)} months "
        "(reverse Kaplan-Meier)",
        f"- modality coverage: {coh.get('coverage')}",
        "",
        "## Inputs",
        "",
    ]
    inputs = manifest.get("inputs", {})
    if "pathology" in inputs:
        lines.append(f"- pathology: {inputs['pathology']}")
    if "clinical" in inputs:
        c = inputs["clinical"]
        lines.append(
            f"- clinical: text encoder `{c.get('encoder')}` ({c.get('encoder_identity')}), template set "
            f"`{c.get('template_set')}` (sha256 {str(c.get('template_hash'))[:12]}), n_templates "
            f"{c.get('n_templates')}, missing values: {c.get('missing')}, fields {c.get('fields')}"
        )
    if "clinical_table" in inputs:
        lines.append(f"- clinical columns of the cohort table (Cox design): {inputs['clinical_table'].get('columns')}")
    if "genomic" in inputs:
        g = inputs["genomic"]
        n_groups = len(g["group_columns"]) if g.get("group_columns") else 0
        groups = f" in {n_groups} groups" if n_groups else ""
        lines.append(
            f"- genomic: `{g['kind']}` tokens of {len(g['columns'])} omics columns{groups}, scaler fitted on the "
            "training cohort"
        )
    lines += ["", "## Performance", ""]
    cv = manifest.get("cv_metrics")
    if cv:
        keys = [k for k in ("cindex_mean", "cindex_sd", "cindex_uno_mean", "iauc_mean", "ibs_mean") if k in cv]
        lines.append(f"- cross-validation ({tr.get('from_run')}, protocol {cv.get('protocol')}): "
                     + ", ".join(f"{k} {_fmt(cv[k])}" for k in keys))  # fmt: skip
    else:
        lines.append("- no cross-validation run recorded (trained with explicit --epochs)")
    app = manifest.get("apparent_metrics") or {}
    lines.append(f"- apparent C-index on the training cases (optimistic): {_fmt(app.get('cindex'))}")
    lines += ["", "## Known limits", ""] + [f"- {x}" for x in known_limits(manifest)] + [""]
    return "\n".join(lines)
