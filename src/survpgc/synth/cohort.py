"""A synthetic tri-modal cohort (slides + omics + clinical) with a known survival ground truth.

:func:`generate_synthetic_cohort` writes a directory laid out like the project's TCGA cohort folders, so
the same loader (:func:`survpgc.data.cohort.load_tcga`) reads it::

    out_dir/
      cohort.csv          case_id, slide_id, site, age, sex, race, stage, stage_edition, subtype,
                          oncotree_code, survival_months, censorship   (censorship 1 = censored)
      omics.csv.gz        case_id, <GENE>_rnaseq ...   (about 10 % of the cases have no row)
      slides/<slide_id>   pyramidal tiled JPEG TIFF in the Aperio SVS layout (0.5 um/px, 20x)
      masks/<stem>.png          tumour-texture mask, uint8 0/255, level-0 size / ``MASK_DOWNSAMPLE``
      masks/<stem>_labels.png   texture label map (codes in ``CLASS_CODES``), same size
      truth.csv           per case: true risk, its components, latent event and censoring times
      truth.json          coefficients, oracle C-index, censoring rate, slide/mask geometry, pathways

The ground truth is a proportional-hazards model with a Weibull baseline in months::

    true_risk = b_texture * texture_score + b_stage * stage_score + b_age * age_score
                + b_pathway * pathway_score

* ``texture_score`` -- the area fraction of the tumour-like texture within tissue, measured on the saved
  label map (``masks/<stem>_labels.png``: tumour pixels / non-background pixels), standardised with the
  known mean and sd of the generating distribution;
* ``stage_score`` -- the (latent, always known) stage ordinal 1..4, standardised (the ``stage`` cell in
  cohort.csv is blanked for a few cases, the truth is not);
* ``age_score`` -- ``(age - 60) / 11``;
* ``pathway_score`` -- ``(activity[G2M checkpoint] - activity[interferon-gamma response]) / sqrt(2)``,
  where the latent pathway activities are standard normal and every gene of a pathway is
  ``loading * activity + sqrt(1 - loading**2) * noise`` (so the pathway-level mean expression recovers
  the activity).

The four components are drawn independently of each other, so every modality carries its own part of
the risk.  Censoring times are ``scale * Exponential(1)`` with one scale chosen (exactly, from the sorted
time ratios) so the realised censoring rate lands in the requested range.  Everything is derived from
``seed``: the same seed gives byte-identical files, a different seed different data.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import DataError, InputError

__all__ = [
    "CLASS_CODES",
    "COEFFICIENTS",
    "COHORT_COLUMNS",
    "GENERATOR_VERSION",
    "MASK_DOWNSAMPLE",
    "PATHWAYS",
    "RISK_PATHWAYS",
    "SynthResult",
    "generate_synthetic_cohort",
]

log = logging.getLogger(__name__)

#: Bumped whenever the same seed would produce different files.
GENERATOR_VERSION = "1"

#: The masks are stored at level-0 size divided by this factor.
MASK_DOWNSAMPLE = 16

#: Texture classes of the label map (``masks/<stem>_labels.png``).
CLASS_CODES: dict[str, int] = {"background": 0, "tumour": 1, "stroma": 2, "lymphocyte": 3, "necrosis": 4}

#: Coefficients of the true linear predictor (log hazard ratio per standardised unit).
COEFFICIENTS: dict[str, float] = {"texture": 1.0, "stage": 0.7, "age": 0.35, "pathway": 0.7}

#: Columns of ``cohort.csv`` (the TCGA layout of the project's cohort folders).
COHORT_COLUMNS: tuple[str, ...] = (
    "case_id",
    "slide_id",
    "site",
    "age",
    "sex",
    "race",
    "stage",
    "stage_edition",
    "subtype",
    "oncotree_code",
    "survival_months",
    "censorship",
)

#: Gene sets of the omics table: real symbols, members of the MSigDB Hallmark pathway of the same name.
PATHWAYS: dict[str, tuple[str, ...]] = {
    "HALLMARK_G2M_CHECKPOINT": tuple(
        "MKI67 TOP2A CCNB2 CDK1 BUB1 PLK1 AURKA AURKB CDC20 CENPF "
        "CENPA KIF11 KIF2C MCM6 CCNA2 TTK BIRC5 TPX2 NUSAP1 UBE2C".split()
    ),
    "HALLMARK_INTERFERON_GAMMA_RESPONSE": tuple(
        "STAT1 IRF1 CXCL9 CXCL10 CXCL11 TAP1 IFIT2 IFIH1 ISG20 IRF9 "
        "STAT2 CD38 SOCS1 CMPK2 PML CASP1 CASP4 TNFSF10 IFITM3 PLSCR1".split()
    ),
    "HALLMARK_HYPOXIA": tuple(
        "VEGFA SLC2A1 PGK1 LDHA ADM ENO1 ALDOA HK2 PFKFB3 NDRG1 "
        "P4HA1 P4HA2 ANGPTL4 LOX MXI1 DDIT4 BNIP3L PDK1 GPI TPI1".split()
    ),
    "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION": tuple(
        "TNC BGN TGFBI DCN COL5A1 LUM MMP2 THBS1 PDGFRB TIMP1 "
        "TIMP3 IGFBP3 INHBA SERPINE1 CXCL12 WNT5A COL4A1 MYLK TPM2 ADAM12".split()
    ),
    "HALLMARK_OXIDATIVE_PHOSPHORYLATION": tuple(
        "ECH1 SURF1 GPX4 COX17 ETFB ACADM CS ACO2 SUCLG1 CYC1 "
        "SDHB NDUFA5 IDH3A UQCRC1 MDH2 COX7B COX8A NDUFS3 UQCRQ COX5A".split()
    ),
    "HALLMARK_P53_PATHWAY": tuple(
        "BTG2 GADD45A PLK2 CDKN1A NINJ1 KLF4 DRAM1 TSC22D1 DDIT3 FOXO3 "
        "TRIB3 TP53 BAK1 FAS DDB2 XPC PCNA POLH FDXR TOB1".split()
    ),
}

#: Genes outside every pathway: pure noise columns (house-keeping symbols).
NOISE_GENES: tuple[str, ...] = ("ACTB", "GAPDH", "B2M", "TBP", "RPLP0", "HPRT1", "PPIA", "YWHAZ")

#: Sign with which each risk pathway's activity enters ``pathway_score`` (divided by sqrt(2)).
RISK_PATHWAYS: dict[str, int] = {"HALLMARK_G2M_CHECKPOINT": 1, "HALLMARK_INTERFERON_GAMMA_RESPONSE": -1}

# --- clinical generating distributions (documented in truth.json) -------------------------------------
_AGE_MEAN, _AGE_SD, _AGE_RANGE = 60.0, 11.0, (25, 90)
_STAGE_P = np.array([0.35, 0.30, 0.25, 0.10])
_STAGE_MEAN = float(np.dot(np.arange(1, 5), _STAGE_P))
_STAGE_SD = float(math.sqrt(np.dot(np.arange(1, 5) ** 2, _STAGE_P) - _STAGE_MEAN**2))
_STAGE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("Stage I", "Stage IA", "Stage IB"),
    2: ("Stage II", "Stage IIA", "Stage IIB"),
    3: ("Stage IIIA", "Stage IIIB", "Stage IIIC"),
    4: ("Stage IV", "Stage IVA", "Stage IVB"),
}
_RACES = ("white", "asian", "black or african american", "american indian or alaska native")
_RACE_P = np.array([0.62, 0.22, 0.14, 0.02])
_SITES = ("S1", "S2", "S3", "S4", "S5")
_SUBTYPES = ("Adenocarcinoma", "Mucinous adenocarcinoma")
_ONCOTREE = "SYN"
# tumour-texture target fraction ~ U(lo, hi); texture_score standardises with its mean and sd
_TEX_RANGE = (0.08, 0.65)
_TEX_MEAN = 0.5 * (_TEX_RANGE[0] + _TEX_RANGE[1])
_TEX_SD = (_TEX_RANGE[1] - _TEX_RANGE[0]) / math.sqrt(12.0)
# Weibull baseline: S0(t) = exp(-(t / scale) ** shape), median 60 months at true_risk = 0
_WEIBULL_SHAPE = 1.2
_MEDIAN_MONTHS = 60.0
_WEIBULL_SCALE = _MEDIAN_MONTHS / math.log(2.0) ** (1.0 / _WEIBULL_SHAPE)
_MIN_MONTHS = 0.5
_TIME_DECIMALS = 2

# --- slide rendering: optical densities of the two stains (rows: hematoxylin, eosin; cols: R, G, B) ---
_STAIN_OD = np.array([[0.65, 0.75, 0.30], [0.10, 0.95, 0.50]], dtype=np.float32)
# per class: base hematoxylin, base eosin
_BASE_HE = np.array(
    [
        [0.01, 0.03],  # background
        [0.22, 0.38],  # tumour: purple-tinged cytoplasm
        [0.04, 0.45],  # stroma: pink (fibres add eosin)
        [0.10, 0.22],  # lymphocyte
        [0.08, 0.25],  # necrosis: pale pink
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class _NucleusSpec:
    cover: float  # expected fraction of the class area covered by nuclei
    radius: tuple[float, float]  # semi-major axis range (level-0 px)
    aspect: tuple[float, float]  # minor / major axis range
    ink: tuple[float, float]  # hematoxylin density range
    aligned: bool = False  # oriented along the fibre direction


_NUCLEI: dict[int, _NucleusSpec] = {
    1: _NucleusSpec(cover=0.40, radius=(7.0, 11.0), aspect=(0.6, 1.0), ink=(0.95, 1.35)),
    2: _NucleusSpec(cover=0.035, radius=(9.0, 13.0), aspect=(0.18, 0.3), ink=(1.0, 1.3), aligned=True),
    3: _NucleusSpec(cover=0.50, radius=(4.0, 5.5), aspect=(0.85, 1.0), ink=(1.5, 1.9)),
    4: _NucleusSpec(cover=0.03, radius=(1.5, 3.0), aspect=(0.5, 1.0), ink=(0.5, 0.9)),
}


@dataclass(frozen=True)
class SynthResult:
    """What :func:`generate_synthetic_cohort` wrote (all paths inside ``out_dir``)."""

    out_dir: Path
    n_patients: int
    seed: int
    cindex_true: float
    censoring_rate: float
    cohort_csv: Path
    omics_csv: Path
    truth_csv: Path
    truth_json: Path
    slides_dir: Path
    masks_dir: Path
    slide_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...]
    seconds: float


# ============================================================================================ public API
def generate_synthetic_cohort(
    out_dir: str | os.PathLike[str],
    n_patients: int = 40,
    seed: int = 0,
    *,
    slide_size: tuple[int, int] = (3072, 2048),
    censoring: tuple[float, float] = (0.6, 0.8),
    omics_missing: float = 0.1,
    race_missing: float = 0.06,
    stage_missing: float = 0.07,
    n_levels: int = 3,
    level_downsample: int = 4,
    tile_size: int = 256,
    jpeg_quality: int = 80,
    mpp: float = 0.5,
    objective_power: int = 20,
    render_slides: bool = True,
    overwrite: bool = False,
) -> SynthResult:
    """Write a synthetic cohort with a known proportional-hazards ground truth into ``out_dir``.

    Args:
        out_dir: target directory; created atomically (generated in a temporary sibling and renamed).
        n_patients: number of cases (>= 4), one slide each.
        seed: non-negative integer; the same seed gives byte-identical files.
        slide_size: level-0 ``(width, height)`` in pixels; both multiples of ``tile_size`` and of
            ``level_downsample ** (n_levels - 1)`` and of :data:`MASK_DOWNSAMPLE`.
        censoring: ``(low, high)`` range of the realised censoring rate; the censoring scale is chosen so
            that the rate is the attainable value closest to the middle of the range.
        omics_missing, race_missing, stage_missing: fractions of cases without an omics row / with an
            empty race / stage cell (at least one case each when the fraction is > 0).
        n_levels, level_downsample, tile_size, jpeg_quality: pyramid geometry and JPEG quality.
        mpp, objective_power: written into the Aperio description (``MPP``, ``AppMag``) and the TIFF
            resolution tags; openslide reports them as ``openslide.mpp-x`` / ``openslide.objective-power``.
        render_slides: when False, no TIFF is written (masks, tables and truth are identical to a run
            with slides): a fast mode for tests of the non-imaging parts.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        A :class:`SynthResult` with the oracle C-index, the realised censoring rate and the written paths.

    Raises:
        InputError: invalid arguments, or ``out_dir`` exists, is not empty and ``overwrite`` is False.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    n_patients = _check_int("n_patients", n_patients, minimum=4)
    seed = _check_int("seed", seed, minimum=0)
    width, height = _check_size(slide_size, n_levels, level_downsample, tile_size)
    lo, hi = _check_censoring(censoring, n_patients)
    for name, value in (
        ("omics_missing", omics_missing),
        ("race_missing", race_missing),
        ("stage_missing", stage_missing),
    ):
        _check_fraction(name, value)
    jpeg_quality = _check_int("jpeg_quality", jpeg_quality, minimum=1, maximum=100)
    objective_power = _check_int("objective_power", objective_power, minimum=1)
    if isinstance(mpp, bool) or not isinstance(mpp, int | float) or not math.isfinite(mpp) or mpp <= 0:
        raise InputError(f"mpp must be a positive finite number (um per pixel), got {mpp!r}")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"out_dir {out} exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise InputError(f"out_dir {out} exists and is not empty; pass overwrite=True to replace it")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cohort is an ordinary folder
    try:
        info = _generate(
            tmp,
            n_patients=n_patients,
            seed=seed,
            width=width,
            height=height,
            censoring=(lo, hi),
            missing={"omics": omics_missing, "race": race_missing, "stage": stage_missing},
            n_levels=n_levels,
            level_downsample=level_downsample,
            tile_size=tile_size,
            jpeg_quality=jpeg_quality,
            mpp=float(mpp),
            objective_power=objective_power,
            render_slides=render_slides,
        )
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    log.info(
        "synthetic cohort: %d cases in %s (%.1f s), oracle C-index %.3f, censoring %.2f",
        n_patients,
        out,
        seconds,
        info["cindex_true"],
        info["censoring_rate"],
    )
    return SynthResult(
        out_dir=out,
        n_patients=n_patients,
        seed=seed,
        cindex_true=info["cindex_true"],
        censoring_rate=info["censoring_rate"],
        cohort_csv=out / "cohort.csv",
        omics_csv=out / "omics.csv.gz",
        truth_csv=out / "truth.csv",
        truth_json=out / "truth.json",
        slides_dir=out / "slides",
        masks_dir=out / "masks",
        slide_paths=tuple(out / "slides" / s for s in info["slide_ids"]) if render_slides else (),
        mask_paths=tuple(out / "masks" / f"{_stem(s)}.png" for s in info["slide_ids"]),
        seconds=seconds,
    )


# ============================================================================================ validation
def _check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{name} must be <= {maximum}, got {value}")
    return value


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) < 0.5:
        raise InputError(f"{name} must be a fraction in [0, 0.5), got {value!r}")
    return float(value)


def _check_size(slide_size: Any, n_levels: Any, level_downsample: Any, tile_size: Any) -> tuple[int, int]:
    n_levels = _check_int("n_levels", n_levels, minimum=1, maximum=6)
    level_downsample = _check_int("level_downsample", level_downsample, minimum=2, maximum=8)
    tile_size = _check_int("tile_size", tile_size, minimum=16)
    if tile_size % 16:
        raise InputError(f"tile_size must be a multiple of 16 (a TIFF requirement), got {tile_size}")
    if not isinstance(slide_size, Sequence) or isinstance(slide_size, str) or len(slide_size) != 2:
        raise InputError(f"slide_size must be a (width, height) pair, got {slide_size!r}")
    w = _check_int("slide_size[0] (width)", slide_size[0], minimum=256, maximum=65536)
    h = _check_int("slide_size[1] (height)", slide_size[1], minimum=256, maximum=65536)
    step = math.lcm(tile_size, level_downsample ** (n_levels - 1), MASK_DOWNSAMPLE)
    for name, v in (("width", w), ("height", h)):
        if v % step:
            raise InputError(
                f"slide {name} {v} must be a multiple of {step} (tile_size {tile_size}, "
                f"level_downsample**(n_levels-1) = {level_downsample ** (n_levels - 1)}, "
                f"mask downsample {MASK_DOWNSAMPLE})"
            )
    return w, h


def _check_censoring(censoring: Any, n: int) -> tuple[float, float]:
    ok = (
        isinstance(censoring, Sequence)
        and not isinstance(censoring, str)
        and len(censoring) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in censoring)
    )
    if not ok:
        raise InputError(f"censoring must be a (low, high) pair of rates, got {censoring!r}")
    lo, hi = float(censoring[0]), float(censoring[1])
    if not 0.0 <= lo <= hi < 1.0:
        raise InputError(f"censoring must satisfy 0 <= low <= high < 1, got {censoring!r}")
    k_lo, k_hi = math.ceil(lo * n - 1e-9), min(math.floor(hi * n + 1e-9), n - 1)
    if k_lo > k_hi:
        raise InputError(
            f"censoring range {censoring!r} cannot be met with {n} patients (and at least one death); "
            "widen the range or add patients"
        )
    return lo, hi


# ============================================================================================ generation
def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _stem(slide_id: str) -> str:
    return slide_id.rsplit(".", 1)[0]


def _pick(rng: np.random.Generator, n: int, frac: float) -> np.ndarray:
    """Boolean mask of ``round(frac * n)`` (at least 1 when frac > 0) randomly chosen cases."""
    k = 0 if frac <= 0 else max(1, round(frac * n))
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=min(k, n - 1), replace=False)] = True
    return out


def _generate(
    root: Path,
    *,
    n_patients: int,
    seed: int,
    width: int,
    height: int,
    censoring: tuple[float, float],
    missing: dict[str, float],
    n_levels: int,
    level_downsample: int,
    tile_size: int,
    jpeg_quality: int,
    mpp: float,
    objective_power: int,
    render_slides: bool,
) -> dict[str, Any]:
    n = n_patients
    case_ids = [f"SYN-{i + 1:04d}" for i in range(n)]
    slide_ids = [f"{c}-DX1.tiff" for c in case_ids]

    # ---- clinical (stream 0) -----------------------------------------------------------------------
    rng = _rng(seed, 0)
    age = np.clip(np.rint(rng.normal(_AGE_MEAN, _AGE_SD, n)), *_AGE_RANGE).astype(int)
    stage_ord = rng.choice(np.arange(1, 5), size=n, p=_STAGE_P)
    stage_sub = rng.integers(0, 3, n)
    stage = [_STAGE_NAMES[int(s)][int(j)] for s, j in zip(stage_ord, stage_sub, strict=True)]
    sex = np.where(rng.random(n) < 0.5, "female", "male")
    race = np.array(_RACES)[rng.choice(len(_RACES), size=n, p=_RACE_P)].astype(object)
    edition = np.where(rng.random(n) < 0.6, "7th", "6th")
    subtype = np.where(rng.random(n) < 0.7, _SUBTYPES[0], _SUBTYPES[1])
    site = np.array(_SITES)[rng.integers(0, len(_SITES), n)]
    race_missing = _pick(rng, n, missing["race"])
    stage_missing = _pick(rng, n, missing["stage"])
    race[race_missing] = None
    stage_obs = np.array(stage, dtype=object)
    stage_obs[stage_missing] = None
    tex_target = rng.uniform(*_TEX_RANGE, n)

    # ---- omics (stream 2) --------------------------------------------------------------------------
    omics, activity, omics_missing = _make_omics(_rng(seed, 2), case_ids, missing["omics"])

    # ---- slides and masks (stream 1, one sub-stream per case) -------------------------------------
    (root / "masks").mkdir()
    if render_slides:
        (root / "slides").mkdir()
    tex_fraction = np.zeros(n)
    t_slides = time.perf_counter()
    for i, sid in enumerate(slide_ids):
        srng = _rng(seed, 1, i)
        labels4, labels16 = _layout(srng, width, height, float(tex_target[i]))
        tissue = labels16 > 0
        tex_fraction[i] = float((labels16 == CLASS_CODES["tumour"]).sum() / max(int(tissue.sum()), 1))
        stem = _stem(sid)
        _write_png(root / "masks" / f"{stem}.png", np.where(labels16 == CLASS_CODES["tumour"], 255, 0))
        _write_png(root / "masks" / f"{stem}_labels.png", labels16)
        if render_slides:
            rgb = _render(srng, labels4, width, height)
            _write_slide(
                root / "slides" / sid,
                rgb,
                stem=stem,
                n_levels=n_levels,
                level_downsample=level_downsample,
                tile_size=tile_size,
                jpeg_quality=jpeg_quality,
                mpp=mpp,
                objective_power=objective_power,
            )
        log.debug("slide %d/%d %s: tumour fraction %.3f", i + 1, n, sid, tex_fraction[i])
    log.info("wrote %d slides/masks in %.1f s", n, time.perf_counter() - t_slides)

    # ---- survival (stream 3) -----------------------------------------------------------------------
    scores = {
        "texture": (tex_fraction - _TEX_MEAN) / _TEX_SD,
        "stage": (stage_ord - _STAGE_MEAN) / _STAGE_SD,
        "age": (age - _AGE_MEAN) / _AGE_SD,
        "pathway": sum(sign * activity[p] for p, sign in RISK_PATHWAYS.items()) / math.sqrt(len(RISK_PATHWAYS)),
    }
    risk = sum(COEFFICIENTS[k] * scores[k] for k in COEFFICIENTS)
    srng = _rng(seed, 3)
    u = srng.random(n)
    event_time = _WEIBULL_SCALE * (-np.log1p(-u) / np.exp(risk)) ** (1.0 / _WEIBULL_SHAPE)
    v = srng.exponential(1.0, n)
    scale = _censor_scale(event_time, v, censoring)
    censor_time = scale * v
    event = event_time <= censor_time
    observed = np.round(np.maximum(np.minimum(event_time, censor_time), _MIN_MONTHS), _TIME_DECIMALS)
    censoring_rate = float(1.0 - event.mean())
    if not censoring[0] - 1e-9 <= censoring_rate <= censoring[1] + 1e-9:  # pragma: no cover - by design
        raise DataError(f"realised censoring {censoring_rate:.3f} outside the requested range {censoring}")
    cindex = _cindex(observed, event, risk)

    # ---- tables ------------------------------------------------------------------------------------
    cohort = pd.DataFrame(
        {
            "case_id": case_ids,
            "slide_id": slide_ids,
            "site": site,
            "age": age,
            "sex": sex,
            "race": race,
            "stage": stage_obs,
            "stage_edition": edition,
            "subtype": subtype,
            "oncotree_code": _ONCOTREE,
            "survival_months": observed,
            "censorship": (~event).astype(int),
        },
        columns=list(COHORT_COLUMNS),
    )
    _write_text(root / "cohort.csv", cohort.to_csv(index=False, lineterminator="\n", float_format="%.2f"))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(omics.to_csv(index=False, lineterminator="\n", float_format="%.4f").encode())
    (root / "omics.csv.gz").write_bytes(buf.getvalue())

    truth = pd.DataFrame(
        {
            "case_id": case_ids,
            "true_risk": risk,
            "texture_fraction": tex_fraction,
            "stage_score": scores["stage"],
            "age_score": scores["age"],
            "pathway_score": scores["pathway"],
            "texture_score": scores["texture"],
            "stage_ordinal": stage_ord,
            "age": age,
            "event_time": event_time,
            "censor_time": censor_time,
            "observed_time": observed,
            "event": event.astype(int),
            "has_omics": (~omics_missing).astype(int),
            **{f"activity_{p}": activity[p] for p in PATHWAYS},
        }
    )
    _write_text(root / "truth.csv", truth.to_csv(index=False, lineterminator="\n", float_format="%.6f"))

    meta = _truth_json(
        seed=seed,
        n=n,
        cindex=cindex,
        censoring=censoring,
        censoring_rate=censoring_rate,
        scale=scale,
        event=event,
        width=width,
        height=height,
        n_levels=n_levels,
        level_downsample=level_downsample,
        tile_size=tile_size,
        jpeg_quality=jpeg_quality,
        mpp=mpp,
        objective_power=objective_power,
        render_slides=render_slides,
        missing=missing,
        omics_missing=[c for c, m in zip(case_ids, omics_missing, strict=True) if m],
    )
    _write_text(root / "truth.json", json.dumps(meta, indent=2) + "\n")
    return {"cindex_true": cindex, "censoring_rate": censoring_rate, "slide_ids": slide_ids}


def _censor_scale(event_time: np.ndarray, v: np.ndarray, censoring: tuple[float, float]) -> float:
    """Scale ``s`` such that ``#{i: s * v_i < T_i}`` is the attainable count closest to the target.

    Case i is censored iff ``s < T_i / v_i``; with the ratios sorted in decreasing order, any ``s``
    strictly between the k-th and (k+1)-th ratio censors exactly k cases.
    """
    n = len(event_time)
    lo, hi = censoring
    k_lo, k_hi = math.ceil(lo * n - 1e-9), min(math.floor(hi * n + 1e-9), n - 1)
    k = int(np.clip(round(0.5 * (lo + hi) * n), k_lo, k_hi))
    r = np.sort(event_time / v)[::-1]
    if k == 0:
        return float(2.0 * r[0])
    return float(math.sqrt(r[k - 1] * r[k]))


def _cindex(time_: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    from sksurv.metrics import concordance_index_censored

    try:
        return float(concordance_index_censored(event.astype(bool), time_, risk)[0])
    except (ValueError, ZeroDivisionError):  # no comparable pair (tiny cohorts)
        return float("nan")


def _make_omics(
    rng: np.random.Generator, case_ids: list[str], missing: float
) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
    n = len(case_ids)
    activity = {p: rng.standard_normal(n) for p in PATHWAYS}
    cols: dict[str, np.ndarray] = {}
    for p, genes in PATHWAYS.items():
        loading = rng.uniform(0.55, 0.9, len(genes))
        noise = rng.standard_normal((n, len(genes)))
        values = activity[p][:, None] * loading + noise * np.sqrt(1.0 - loading**2)
        for j, g in enumerate(genes):
            cols[f"{g}_rnaseq"] = values[:, j]
    for g in NOISE_GENES:
        cols[f"{g}_rnaseq"] = rng.standard_normal(n)
    miss = _pick(rng, n, missing)
    table = pd.DataFrame({"case_id": case_ids, **cols})
    table = table.loc[~miss].reset_index(drop=True)
    return table, activity, miss


def _truth_json(**k: Any) -> dict[str, Any]:
    n_events = int(k["event"].sum())
    gene_to_pathway = {g: p for p, genes in PATHWAYS.items() for g in genes}
    return {
        "generator": "survpgc.data.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": k["seed"],
        "n_patients": k["n"],
        "n_events": n_events,
        "cindex_true": None if math.isnan(k["cindex"]) else round(k["cindex"], 6),
        "censoring_rate": round(k["censoring_rate"], 6),
        "model": {
            "type": "proportional hazards, Weibull baseline (months)",
            "linear_predictor": "true_risk = sum(coefficients[c] * <c>_score)",
            "coefficients": dict(COEFFICIENTS),
            "scores": {
                "texture": {
                    "definition": "(texture_fraction - mean) / sd; texture_fraction = tumour pixels / tissue "
                    "pixels of masks/<stem>_labels.png",
                    "mean": _TEX_MEAN,
                    "sd": _TEX_SD,
                    "target_fraction_uniform": list(_TEX_RANGE),
                },
                "stage": {
                    "definition": "(stage_ordinal - mean) / sd, ordinal I..IV = 1..4 (latent, never missing)",
                    "mean": _STAGE_MEAN,
                    "sd": _STAGE_SD,
                    "probabilities": _STAGE_P.tolist(),
                },
                "age": {"definition": "(age - mean) / sd", "mean": _AGE_MEAN, "sd": _AGE_SD},
                "pathway": {
                    "definition": "sum(sign[p] * activity[p]) / sqrt(len(sign)); activity ~ N(0, 1)",
                    "sign": dict(RISK_PATHWAYS),
                },
            },
            "baseline": {
                "distribution": "weibull",
                "shape": _WEIBULL_SHAPE,
                "scale_months": _WEIBULL_SCALE,
                "median_months_at_zero_risk": _MEDIAN_MONTHS,
                "event_time": "scale * (-log(1 - U) / exp(true_risk)) ** (1 / shape)",
            },
            "risk_direction": "higher true_risk = higher hazard = shorter survival",
        },
        "censoring": {
            "scheme": "censor_time = scale * Exponential(1) (loss to follow-up), independent of everything "
            "else; scale chosen from the sorted event_time / Exponential draws so that the realised rate is "
            "the attainable one closest to the middle of target_range",
            "scale_months": k["scale"],
            "target_range": list(k["censoring"]),
            "realised_rate": round(k["censoring_rate"], 6),
            "observed_time": f"max(min(event_time, censor_time), {_MIN_MONTHS}) rounded to "
            f"{_TIME_DECIMALS} decimals; censorship = 1 when censor_time < event_time",
        },
        "slides": {
            "written": k["render_slides"],
            "dir": "slides",
            "format": "tiled JPEG TIFF, Aperio SVS layout (baseline, thumbnail, reduced levels)",
            "mpp": k["mpp"],
            "objective_power": k["objective_power"],
            "level0_size": [k["width"], k["height"]],
            "level_count": k["n_levels"],
            "level_downsample": k["level_downsample"],
            "tile_size": k["tile_size"],
            "jpeg_quality": k["jpeg_quality"],
        },
        "masks": {
            "dir": "masks",
            "downsample": MASK_DOWNSAMPLE,
            "size": [k["width"] // MASK_DOWNSAMPLE, k["height"] // MASK_DOWNSAMPLE],
            "tumour_mask": "masks/<stem>.png (uint8, 255 = tumour-like texture, 0 = other)",
            "label_map": "masks/<stem>_labels.png (uint8 class codes)",
            "classes": dict(CLASS_CODES),
        },
        "clinical": {
            "missing_fraction": {"race": k["missing"]["race"], "stage": k["missing"]["stage"]},
            "signal": ["stage", "age"],
            "no_signal": ["sex", "race", "stage_edition", "subtype", "site"],
        },
        "omics": {
            "columns": "<GENE>_rnaseq",
            "gene_model": "loading * activity[pathway] + sqrt(1 - loading**2) * N(0, 1); loading ~ U(0.55, 0.9)",
            "pathways": {p: list(g) for p, g in PATHWAYS.items()},
            "gene_to_pathway": gene_to_pathway,
            "noise_genes": list(NOISE_GENES),
            "risk_pathways": dict(RISK_PATHWAYS),
            "missing_fraction": k["missing"]["omics"],
            "cases_without_omics": k["omics_missing"],
        },
    }


# ============================================================================================ slides
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    import cv2

    x = rng.standard_normal(shape).astype(np.float32)
    x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (x - x.mean()) / (x.std() + 1e-6)


def _layout(rng: np.random.Generator, width: int, height: int, tumour_target: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture label maps at level-0 / 4 and level-0 / 16 (the mask resolution)."""
    import cv2

    h16, w16 = height // MASK_DOWNSAMPLE, width // MASK_DOWNSAMPLE
    h4, w4 = height // 4, width // 4
    yy, xx = np.mgrid[0:h16, 0:w16].astype(np.float32)
    yy, xx = yy / h16, xx / w16
    # tissue: a few rotated elliptical bumps, roughened by smooth noise, kept off the border
    field = np.zeros((h16, w16), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0.25, 0.75, 2)
        sy, sx = rng.uniform(0.12, 0.28, 2)
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / sx
        w = (-dx * np.sin(th) + dy * np.cos(th)) / sy
        field = np.maximum(field, np.exp(-0.5 * (u * u + w * w)))
    field += 0.25 * _smooth_noise(rng, (h16, w16), max(1.5, min(h16, w16) / 20))
    edge = np.minimum.reduce([xx, 1 - xx, yy, 1 - yy])
    field *= np.clip(edge / 0.06, 0, 1)
    coverage = rng.uniform(0.3, 0.5)
    thr = float(np.quantile(field, 1.0 - coverage))
    # texture fields
    sig = max(1.0, min(h16, w16) / 30)
    f_t = _smooth_noise(rng, (h16, w16), sig)
    f_o = np.stack([_smooth_noise(rng, (h16, w16), sig * 0.8) for _ in range(3)])
    f_o += np.array([0.9, -0.1, -0.5], np.float32)[:, None, None]

    def up(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (w4, h4), interpolation=cv2.INTER_LINEAR)

    rough = 0.02 * _smooth_noise(rng, (h4, w4), 3.0)
    tissue4 = (up(field) + rough) > thr
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    tissue4 = cv2.morphologyEx(tissue4.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    t4 = up(f_t) + 2.0 * rough
    q = float(np.quantile(t4[tissue4], 1.0 - tumour_target)) if tissue4.any() else np.inf
    others = np.stack([up(f) for f in f_o])
    labels4 = np.zeros((h4, w4), np.uint8)
    labels4[tissue4] = (2 + np.argmax(others, axis=0)).astype(np.uint8)[tissue4]
    labels4[tissue4 & (t4 > q)] = CLASS_CODES["tumour"]
    # majority vote of 4x4 blocks -> mask resolution
    onehot = np.stack([(labels4 == c).astype(np.float32) for c in range(len(CLASS_CODES))], axis=-1)
    share = onehot.reshape(h16, 4, w16, 4, len(CLASS_CODES)).mean(axis=(1, 3))
    labels16 = np.argmax(share, axis=-1).astype(np.uint8)
    return labels4, labels16


def _render(rng: np.random.Generator, labels4: np.ndarray, width: int, height: int) -> np.ndarray:
    """An H&E-like RGB image (uint8, height x width x 3) of the label map (level-0 / 4).

    Stain densities (hematoxylin, eosin) are built per class at half resolution (base colour, stroma
    fibres, necrotic blotches), softened and upsampled; nuclei (filled ellipses) and grain are added at
    full resolution; Beer-Lambert with fixed stain optical densities turns densities into RGB.
    """
    import cv2

    h2, w2 = height // 2, width // 2
    lab2 = cv2.resize(labels4, (w2, h2), interpolation=cv2.INTER_NEAREST)
    hema2 = _BASE_HE[:, 0][lab2]
    eosin2 = _BASE_HE[:, 1][lab2]
    # stroma: wavy collagen fibres along a slide-wide direction (period ~11 px at level 0)
    theta = float(rng.uniform(0, np.pi))
    yy, xx = np.mgrid[0:h2, 0:w2].astype(np.float32)
    warp = cv2.resize(_smooth_noise(rng, (h2 // 24 + 2, w2 // 24 + 2), 1.0), (w2, h2))
    phase = (xx * np.float32(np.cos(theta)) + yy * np.float32(np.sin(theta))) * np.float32(2 * np.pi / 5.5)
    phase += 5.0 * warp
    fib = np.square(0.5 + 0.5 * np.sin(phase))
    fib *= 0.55 + 0.45 * cv2.resize(_smooth_noise(rng, (h2 // 12 + 2, w2 // 12 + 2), 1.0), (w2, h2))
    eosin2 += 0.35 * fib * (lab2 == CLASS_CODES["stroma"])
    # necrosis: blotchy pale eosin, smudged hematoxylin
    blot = cv2.resize(_smooth_noise(rng, (h2 // 8 + 2, w2 // 8 + 2), 1.2), (w2, h2))
    necro = lab2 == CLASS_CODES["necrosis"]
    eosin2 += 0.12 * blot * necro
    hema2 += 0.06 * np.maximum(blot, 0) * necro
    # soften the class borders, then to full resolution
    hema = cv2.resize(cv2.GaussianBlur(hema2, (0, 0), 1.2), (width, height), interpolation=cv2.INTER_LINEAR)
    eosin = cv2.resize(cv2.GaussianBlur(eosin2, (0, 0), 1.2), (width, height), interpolation=cv2.INTER_LINEAR)
    # nuclei: filled ellipses with random size, shape, orientation and ink, placed by class
    ink = np.zeros((height, width), np.uint8)
    for code, spec in _NUCLEI.items():
        mean_area = np.pi * np.mean(spec.radius) ** 2 * np.mean(spec.aspect)
        m = int(rng.poisson(spec.cover * height * width / mean_area))
        ys = rng.integers(0, height, m)
        xs = rng.integers(0, width, m)
        ax = np.rint(rng.uniform(*spec.radius, m)).astype(int)
        minor = np.maximum(1, np.rint(ax * rng.uniform(*spec.aspect, m))).astype(int)
        ang = (np.degrees(theta) + rng.normal(0, 12, m)) if spec.aligned else rng.uniform(0, 180, m)
        val = np.rint(rng.uniform(*spec.ink, m) * 120).astype(int)
        keep = labels4[ys // 4, xs // 4] == code
        rows = zip(
            xs[keep].tolist(),
            ys[keep].tolist(),
            ax[keep].tolist(),
            minor[keep].tolist(),
            ang[keep].tolist(),
            val[keep].tolist(),
            strict=True,
        )
        for x, y, a, b, g, v in rows:
            cv2.ellipse(ink, (x, y), (a, b), g, 0, 360, v, -1)
    nuc = cv2.GaussianBlur(ink, (0, 0), 0.9).astype(np.float32)
    # grain (chromatin texture in nuclei, fine noise elsewhere), then Beer-Lambert
    grain = cv2.resize(rng.standard_normal((h2, w2), dtype=np.float32), (width, height))
    hema += nuc * (1.0 / 120.0) * (1.0 + 0.15 * grain)
    eosin += 0.02 * grain
    np.maximum(hema, 0, out=hema)
    np.maximum(eosin, 0, out=eosin)
    channels = []
    for c in range(3):
        od = cv2.addWeighted(hema, -float(_STAIN_OD[0, c]), eosin, -float(_STAIN_OD[1, c]), 0.0)
        channels.append(cv2.convertScaleAbs(cv2.exp(od), alpha=255.0))
    return cv2.merge(channels)


def _aperio_description(w0: int, h0: int, w: int, h: int, tile: int, q: int, mpp: float, power: int, stem: str) -> str:
    head = f"Aperio Image Library v12.0.0 (survpgc synthetic)\r\n{w0}x{h0} "
    if (w, h) == (w0, h0):
        head += f"[0,0 {w0}x{h0}] ({tile}x{tile}) JPEG/RGB Q={q}"
    else:
        head += f"-> {w}x{h} - ({tile}x{tile}) JPEG/RGB Q={q}"
    return f"{head}|AppMag = {power}|MPP = {mpp:g}|Filename = {stem}|ScanScope ID = SURVPGC-SYNTH"


def _write_slide(
    path: Path,
    rgb: np.ndarray,
    *,
    stem: str,
    n_levels: int,
    level_downsample: int,
    tile_size: int,
    jpeg_quality: int,
    mpp: float,
    objective_power: int,
) -> None:
    """Pyramidal TIFF in the Aperio SVS page order: baseline, thumbnail (stripped), reduced levels.

    The Aperio ``ImageDescription`` makes openslide use its aperio driver (``openslide.mpp-x`` from
    ``MPP``, ``openslide.objective-power`` from ``AppMag``) and tifffile/tiffslide parse it as SVS.
    No date or software tags are written, so the bytes depend on the pixels and arguments only.
    """
    import cv2
    import tifffile

    h0, w0 = rgb.shape[:2]
    levels = [rgb]
    for _ in range(1, n_levels):
        prev = levels[-1]
        size = (prev.shape[1] // level_downsample, prev.shape[0] // level_downsample)
        levels.append(cv2.resize(prev, size, interpolation=cv2.INTER_AREA))
    f = 512 / max(w0, h0)
    thumb = cv2.resize(rgb, (max(1, round(w0 * f)), max(1, round(h0 * f))), interpolation=cv2.INTER_AREA)
    res = (1e4 / mpp, 1e4 / mpp)
    common: dict[str, Any] = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": jpeg_quality},
        "software": False,
        "metadata": None,
        "resolution": res,
        "resolutionunit": "CENTIMETER",
    }
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for k, level in enumerate(levels):
            desc = _aperio_description(
                w0, h0, level.shape[1], level.shape[0], tile_size, jpeg_quality, mpp, objective_power, stem
            )
            tif.write(level, tile=(tile_size, tile_size), description=desc, **common)
            if k == 0:
                tdesc = _aperio_description(
                    w0, h0, thumb.shape[1], thumb.shape[0], tile_size, jpeg_quality, mpp, objective_power, stem
                )
                tif.write(thumb, rowsperstrip=16, description=tdesc, **common)


def _write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array, dtype=np.uint8))
    if not ok:  # pragma: no cover - cv2 failure
        raise DataError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def _write_text(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out`` (an existing ``out`` is set aside first, then removed)."""
    old: Path | None = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{tmp.name.rsplit('-', 1)[-1]}")
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
