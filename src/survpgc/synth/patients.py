"""The synthetic patients: identifiers and clinical covariates, drawn from one stream.

Age and the stage ordinal carry signal (their generating distributions live in
:mod:`survpgc.synth.truth`); sex, race, stage edition, subtype and site do not.  A few race and stage
cells are blanked (the latent stage stays known to the truth).  The target tumour-texture fraction of
each case's slide is drawn here too, at the end of the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from survpgc.synth.streams import pick
from survpgc.synth.truth import AGE_MEAN, AGE_RANGE, AGE_SD, STAGE_P, TEX_RANGE

__all__ = [
    "ONCOTREE",
    "RACES",
    "RACE_P",
    "SITES",
    "STAGE_NAMES",
    "SUBTYPES",
    "Patients",
    "case_ids",
    "clinical_json",
    "draw_patients",
]

STAGE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("Stage I", "Stage IA", "Stage IB"),
    2: ("Stage II", "Stage IIA", "Stage IIB"),
    3: ("Stage IIIA", "Stage IIIB", "Stage IIIC"),
    4: ("Stage IV", "Stage IVA", "Stage IVB"),
}
RACES = ("white", "asian", "black or african american", "american indian or alaska native")
RACE_P = np.array([0.62, 0.22, 0.14, 0.02])
SITES = ("S1", "S2", "S3", "S4", "S5")
SUBTYPES = ("Adenocarcinoma", "Mucinous adenocarcinoma")
ONCOTREE = "SYN"


@dataclass(frozen=True)
class Patients:
    """Per case (in ``case_ids`` order): the covariates as written to cohort.csv, plus the latent ones."""

    case_ids: list[str]
    slide_ids: list[str]
    age: np.ndarray
    stage_ordinal: np.ndarray  # latent, never missing
    stage: np.ndarray  # observed stage names (object; None where blanked)
    sex: np.ndarray
    race: np.ndarray  # object; None where blanked
    stage_edition: np.ndarray
    subtype: np.ndarray
    site: np.ndarray
    texture_target: np.ndarray  # target tumour-texture fraction of the case's slide


def case_ids(n: int) -> list[str]:
    """``SYN-0001`` ... ``SYN-<n>``."""
    return [f"SYN-{i + 1:04d}" for i in range(n)]


def draw_patients(
    rng: np.random.Generator,
    n: int,
    *,
    race_missing: float,
    stage_missing: float,
    planted: tuple[float, float] = TEX_RANGE,
) -> Patients:
    """``n`` patients, one slide each (``<case_id>-DX1.tiff``); the draw order is part of the seed contract.

    The target tumour-texture fraction of each slide is uniform on ``planted = (low, high)``.
    """
    ids = case_ids(n)
    age = np.clip(np.rint(rng.normal(AGE_MEAN, AGE_SD, n)), *AGE_RANGE).astype(int)
    stage_ord = rng.choice(np.arange(1, 5), size=n, p=STAGE_P)
    stage_sub = rng.integers(0, 3, n)
    stage = [STAGE_NAMES[int(s)][int(j)] for s, j in zip(stage_ord, stage_sub, strict=True)]
    sex = np.where(rng.random(n) < 0.5, "female", "male")
    race = np.array(RACES)[rng.choice(len(RACES), size=n, p=RACE_P)].astype(object)
    edition = np.where(rng.random(n) < 0.6, "7th", "6th")
    subtype = np.where(rng.random(n) < 0.7, SUBTYPES[0], SUBTYPES[1])
    site = np.array(SITES)[rng.integers(0, len(SITES), n)]
    no_race = pick(rng, n, race_missing)
    no_stage = pick(rng, n, stage_missing)
    race[no_race] = None
    stage_obs = np.array(stage, dtype=object)
    stage_obs[no_stage] = None
    texture_target = rng.uniform(*planted, n)
    return Patients(
        case_ids=ids,
        slide_ids=[f"{c}-DX1.tiff" for c in ids],
        age=age,
        stage_ordinal=stage_ord,
        stage=stage_obs,
        sex=sex,
        race=race,
        stage_edition=edition,
        subtype=subtype,
        site=site,
        texture_target=texture_target,
    )


def clinical_json(race_missing: float, stage_missing: float) -> dict[str, Any]:
    """The ``clinical`` section of truth.json."""
    return {
        "missing_fraction": {"race": race_missing, "stage": stage_missing},
        "signal": ["stage", "age"],
        "no_signal": ["sex", "race", "stage_edition", "subtype", "site"],
    }
