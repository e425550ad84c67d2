"""The survival ground truth of the synthetic cohort: a proportional-hazards model with a Weibull baseline.

In months::

    true_risk = b_texture * texture_score + b_stage * stage_score + b_age * age_score
                + b_pathway * pathway_score

* ``texture_score`` -- the area fraction of the tumour-like texture within tissue, measured on the saved
  label map (``masks/<stem>_labels.png``: tumour pixels / non-background pixels), standardised with the
  known mean and sd of the generating distribution (the target fraction is uniform on the planted range,
  :data:`TEX_RANGE` by default);
* ``stage_score`` -- the (latent, always known) stage ordinal 1..4, standardised (the ``stage`` cell in
  cohort.csv is blanked for a few cases, the truth is not);
* ``age_score`` -- ``(age - 60) / 11``;
* ``pathway_score`` -- ``(activity[G2M checkpoint] - activity[interferon-gamma response]) / sqrt(2)``,
  where the latent pathway activities are standard normal (see :mod:`survpgc.synth.omics`).

The four components are drawn independently of each other, so every modality carries its own part of
the risk.  The coefficients are :data:`COEFFICIENTS` times a signal multiplier per modality
(:data:`SIGNAL_COMPONENTS`: pathology -> texture, clinical -> stage and age, genomic -> pathway; 1 by
default, 0 removes the modality's signal).  Event times follow
``S(t) = exp(-(t / scale) ** shape * exp(log_hazard))`` with ``log_hazard = true_risk + frailty_sd * N(0, 1)``:
the frailty is an unobserved part of the hazard that no modality carries (``frailty_sd`` 0 by default, then
``log_hazard = true_risk``).  Censoring times are ``scale * Exponential(1)`` with one scale chosen (exactly,
from the sorted time ratios) so the realised censoring rate lands in the requested range.  The oracle C-index
is Harrell's C of the true risk (the part of the hazard the inputs carry); with a frailty, truth.json also
records the C-index of the full log hazard.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.errors import DataError, NoComparablePairError, NoEventError
from survpgc.survival.metrics import harrell_cindex

__all__ = [
    "AGE_MEAN",
    "AGE_RANGE",
    "AGE_SD",
    "COEFFICIENTS",
    "MIN_MONTHS",
    "RISK_PATHWAYS",
    "SIGNAL_COMPONENTS",
    "STAGE_MEAN",
    "STAGE_P",
    "STAGE_SD",
    "TEX_MEAN",
    "TEX_RANGE",
    "TEX_SD",
    "TIME_DECIMALS",
    "WEIBULL_SCALE",
    "WEIBULL_SHAPE",
    "Survival",
    "censor_scale",
    "censored_count_range",
    "censoring_json",
    "coefficients",
    "draw_survival",
    "model_json",
    "oracle_cindex",
    "read_truth",
    "risk_scores",
    "texture_moments",
    "true_risk",
]

#: Coefficients of the true linear predictor (log hazard ratio per standardised unit).
COEFFICIENTS: dict[str, float] = {"texture": 1.0, "stage": 0.7, "age": 0.35, "pathway": 0.7}

#: The components of the true risk each modality's signal multiplier scales.
SIGNAL_COMPONENTS: dict[str, tuple[str, ...]] = {
    "pathology": ("texture",),
    "clinical": ("stage", "age"),
    "genomic": ("pathway",),
}

#: Sign with which each risk pathway's activity enters ``pathway_score`` (divided by sqrt(2)).
RISK_PATHWAYS: dict[str, int] = {"HALLMARK_G2M_CHECKPOINT": 1, "HALLMARK_INTERFERON_GAMMA_RESPONSE": -1}

# --- generating distributions of the risk components (documented in truth.json) -----------------------
AGE_MEAN, AGE_SD, AGE_RANGE = 60.0, 11.0, (25, 90)
STAGE_P = np.array([0.35, 0.30, 0.25, 0.10])
STAGE_MEAN = float(np.dot(np.arange(1, 5), STAGE_P))
STAGE_SD = float(math.sqrt(np.dot(np.arange(1, 5) ** 2, STAGE_P) - STAGE_MEAN**2))
# tumour-texture target fraction ~ U(lo, hi) (default range); texture_score standardises with its mean and sd
TEX_RANGE = (0.08, 0.65)


def texture_moments(planted: tuple[float, float]) -> tuple[float, float]:
    """Mean and sd of the uniform target fraction on ``planted = (low, high)``."""
    lo, hi = planted
    return 0.5 * (lo + hi), (hi - lo) / math.sqrt(12.0)


TEX_MEAN, TEX_SD = texture_moments(TEX_RANGE)

# --- Weibull baseline: S0(t) = exp(-(t / scale) ** shape), median 60 months at true_risk = 0 ----------
WEIBULL_SHAPE = 1.2
MEDIAN_MONTHS = 60.0
WEIBULL_SCALE = MEDIAN_MONTHS / math.log(2.0) ** (1.0 / WEIBULL_SHAPE)
MIN_MONTHS = 0.5
TIME_DECIMALS = 2


@dataclass(frozen=True)
class Survival:
    """Latent and observed survival of the cohort (months; ``event`` True = death observed)."""

    event_time: np.ndarray
    censor_time: np.ndarray
    observed: np.ndarray
    event: np.ndarray
    scale: float  # of the censoring times
    censoring_rate: float


def risk_scores(
    texture_fraction: np.ndarray,
    stage_ordinal: np.ndarray,
    age: np.ndarray,
    activity: dict[str, np.ndarray],
    planted: tuple[float, float] = TEX_RANGE,
) -> dict[str, np.ndarray]:
    """The standardised components of the true risk, keyed like :data:`COEFFICIENTS` (the texture standardised
    with the mean and sd of the ``planted`` range its target fraction was drawn from)."""
    tex_mean, tex_sd = texture_moments(planted)
    return {
        "texture": (texture_fraction - tex_mean) / tex_sd,
        "stage": (stage_ordinal - STAGE_MEAN) / STAGE_SD,
        "age": (age - AGE_MEAN) / AGE_SD,
        "pathway": sum(sign * activity[p] for p, sign in RISK_PATHWAYS.items()) / math.sqrt(len(RISK_PATHWAYS)),
    }


def coefficients(signal: Mapping[str, float] | None = None) -> dict[str, float]:
    """:data:`COEFFICIENTS` with each modality's components times its ``signal`` multiplier (missing: 1)."""
    signal = signal or {}
    scale = {c: float(signal.get(m, 1.0)) for m, comps in SIGNAL_COMPONENTS.items() for c in comps}
    return {k: v if scale[k] == 1.0 else v * scale[k] for k, v in COEFFICIENTS.items()}


def true_risk(scores: dict[str, np.ndarray], coef: Mapping[str, float] = COEFFICIENTS) -> np.ndarray:
    """The linear predictor ``sum(coef[c] * scores[c])`` (higher = worse; ``coef`` default :data:`COEFFICIENTS`)."""
    return sum(coef[k] * scores[k] for k in COEFFICIENTS)


def censored_count_range(censoring: tuple[float, float], n: int) -> tuple[int, int]:
    """Attainable numbers of censored cases for a ``(low, high)`` rate range (at least one death kept)."""
    lo, hi = censoring
    return math.ceil(lo * n - 1e-9), min(math.floor(hi * n + 1e-9), n - 1)


def censor_scale(event_time: np.ndarray, v: np.ndarray, censoring: tuple[float, float]) -> float:
    """Scale ``s`` such that ``#{i: s * v_i < T_i}`` is the attainable count closest to the target.

    Case i is censored iff ``s < T_i / v_i``; with the ratios sorted in decreasing order, any ``s``
    strictly between the k-th and (k+1)-th ratio censors exactly k cases.
    """
    n = len(event_time)
    lo, hi = censoring
    k_lo, k_hi = censored_count_range(censoring, n)
    k = int(np.clip(round(0.5 * (lo + hi) * n), k_lo, k_hi))
    r = np.sort(event_time / v)[::-1]
    if k == 0:
        return float(2.0 * r[0])
    return float(math.sqrt(r[k - 1] * r[k]))


def draw_survival(rng: np.random.Generator, risk: np.ndarray, censoring: tuple[float, float]) -> Survival:
    """Weibull event times under the log hazard ``risk``, censoring scaled into ``censoring``, observed times in months.

    Raises:
        DataError: the realised censoring rate is outside ``censoring`` (cannot happen by construction).
    """
    n = len(risk)
    u = rng.random(n)
    event_time = WEIBULL_SCALE * (-np.log1p(-u) / np.exp(risk)) ** (1.0 / WEIBULL_SHAPE)
    v = rng.exponential(1.0, n)
    scale = censor_scale(event_time, v, censoring)
    censor_time = scale * v
    event = event_time <= censor_time
    observed = np.round(np.maximum(np.minimum(event_time, censor_time), MIN_MONTHS), TIME_DECIMALS)
    censoring_rate = float(1.0 - event.mean())
    if not censoring[0] - 1e-9 <= censoring_rate <= censoring[1] + 1e-9:  # pragma: no cover - by design
        raise DataError(f"realised censoring {censoring_rate:.3f} outside the requested range {censoring}")
    return Survival(event_time, censor_time, observed, event, scale, censoring_rate)


def oracle_cindex(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of the true risk (the ceiling a model can reach); NaN without a comparable pair."""
    try:
        return harrell_cindex(time, event, risk)
    except (NoEventError, NoComparablePairError):  # tiny cohorts
        return float("nan")


def model_json(
    coef: Mapping[str, float] = COEFFICIENTS, planted: tuple[float, float] = TEX_RANGE, frailty_sd: float = 0.0
) -> dict[str, Any]:
    """The ``model`` section of truth.json: linear predictor, score definitions, baseline (the coefficients
    ``coef``, the texture target fraction uniform on ``planted``, a frailty of sd ``frailty_sd``)."""
    tex_mean, tex_sd = texture_moments(planted)
    hazard = "true_risk"
    out: dict[str, Any] = {
        "type": "proportional hazards, Weibull baseline (months)",
        "linear_predictor": "true_risk = sum(coefficients[c] * <c>_score)",
        "coefficients": dict(coef),
    }
    if frailty_sd > 0:
        hazard = "log_hazard"
        out["log_hazard"] = (
            f"log_hazard = true_risk + {frailty_sd:g} * N(0, 1): an unobserved frailty no modality carries "
            "(truth.csv columns frailty and log_hazard)"
        )
        out["frailty_sd"] = frailty_sd
    out.update(
        {
            "scores": _scores_json(tex_mean, tex_sd, planted),
            "baseline": {
                "distribution": "weibull",
                "shape": WEIBULL_SHAPE,
                "scale_months": WEIBULL_SCALE,
                "median_months_at_zero_risk": MEDIAN_MONTHS,
                "event_time": f"scale * (-log(1 - U) / exp({hazard})) ** (1 / shape)",
            },
            "risk_direction": "higher true_risk = higher hazard = shorter survival",
        }
    )
    return out


def _scores_json(tex_mean: float, tex_sd: float, planted: tuple[float, float]) -> dict[str, Any]:
    return {
        "texture": {
            "definition": "(texture_fraction - mean) / sd; texture_fraction = tumour pixels / tissue "
            "pixels of masks/<stem>_labels.png",
            "mean": tex_mean,
            "sd": tex_sd,
            "target_fraction_uniform": list(planted),
        },
        "stage": {
            "definition": "(stage_ordinal - mean) / sd, ordinal I..IV = 1..4 (latent, never missing)",
            "mean": STAGE_MEAN,
            "sd": STAGE_SD,
            "probabilities": STAGE_P.tolist(),
        },
        "age": {"definition": "(age - mean) / sd", "mean": AGE_MEAN, "sd": AGE_SD},
        "pathway": {
            "definition": "sum(sign[p] * activity[p]) / sqrt(len(sign)); activity ~ N(0, 1)",
            "sign": dict(RISK_PATHWAYS),
        },
    }


def censoring_json(survival: Survival, censoring: tuple[float, float]) -> dict[str, Any]:
    """The ``censoring`` section of truth.json."""
    return {
        "scheme": "censor_time = scale * Exponential(1) (loss to follow-up), independent of everything "
        "else; scale chosen from the sorted event_time / Exponential draws so that the realised rate is "
        "the attainable one closest to the middle of target_range",
        "scale_months": survival.scale,
        "target_range": list(censoring),
        "realised_rate": round(survival.censoring_rate, 6),
        "observed_time": f"max(min(event_time, censor_time), {MIN_MONTHS}) rounded to "
        f"{TIME_DECIMALS} decimals; censorship = 1 when censor_time < event_time",
    }


def read_truth(cohort_dir: str | os.PathLike[str]) -> dict[str, float] | None:
    """The true risk per case of a synthetic cohort folder (``truth.csv`` from `survpgc synth`), else None.

    None when the folder has no ``truth.csv`` or the table lacks a ``case_id`` or ``true_risk`` column (a real
    cohort); case ids are read as text, cases whose true risk is not a finite number are left out.
    """
    import pandas as pd

    path = Path(cohort_dir) / "truth.csv"
    if not path.is_file():
        return None
    truth = pd.read_csv(path, dtype={"case_id": str})
    if not {"case_id", "true_risk"} <= set(truth.columns):
        return None
    risk = pd.to_numeric(truth["true_risk"], errors="coerce")
    keep = np.isfinite(risk.to_numpy(dtype=float)) & truth["case_id"].notna().to_numpy()
    return dict(zip(truth.loc[keep, "case_id"], risk[keep].astype(float), strict=True))
