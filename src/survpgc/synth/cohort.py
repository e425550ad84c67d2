"""Writing a synthetic cohort: the orchestration and the TCGA-layout tables.

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
                          (and, with a frailty, the frailty and the full log hazard)
      truth.json          coefficients, oracle C-index, censoring rate, slide/mask geometry, pathways,
                          the generator's knobs (``settings``: value, default and meaning of each)

The ground truth is described in :mod:`survpgc.synth.truth`.  Everything is derived from ``seed`` through
separate random streams (:mod:`survpgc.synth.streams`): the same seed gives byte-identical files, a
different seed different data.  The knobs (censoring, slide size, planted-texture fraction, signal per
modality, expression noise, frailty) change only what they name; at their defaults the cohort is the one
generator version 1 always wrote (truth.json gains only its ``settings`` section).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.data.slides import slide_stem
from survpgc.errors import InputError
from survpgc.synth.omics import PATHWAYS, Omics, draw_omics, omics_json, write_omics
from survpgc.synth.options import CENSORING_DEFAULT, SynthOptions, check_options, settings_json
from survpgc.synth.patients import ONCOTREE, Patients, clinical_json, draw_patients
from survpgc.synth.render import layout, masks_json, render_he, tumour_fraction, tumour_mask, write_png
from survpgc.synth.slides import slides_json, write_slide
from survpgc.synth.streams import CLINICAL, FRAILTY, OMICS, SLIDES, SURVIVAL, stream
from survpgc.synth.truth import (
    TEX_RANGE,
    Survival,
    censoring_json,
    coefficients,
    draw_survival,
    model_json,
    oracle_cindex,
    risk_scores,
    true_risk,
)

__all__ = ["COHORT_COLUMNS", "GENERATOR_VERSION", "SynthResult", "generate_synthetic_cohort"]

log = logging.getLogger(__name__)

#: Bumped whenever the same seed would produce different data.
GENERATOR_VERSION = "1"

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
    #: Harrell's C of the full log hazard (true risk + frailty); None without a frailty (it equals cindex_true)
    cindex_log_hazard: float | None = None


@dataclass(frozen=True)
class _Generated:
    cindex_true: float
    censoring_rate: float
    slide_ids: list[str]
    cindex_log_hazard: float | None = None


# ============================================================================================ public API
def generate_synthetic_cohort(
    out_dir: str | os.PathLike[str],
    n_patients: int = 40,
    seed: int = 0,
    *,
    slide_size: tuple[int, int] = (3072, 2048),
    censoring: float | tuple[float, float] = CENSORING_DEFAULT,
    planted_fraction: tuple[float, float] = TEX_RANGE,
    signal: Mapping[str, float] | None = None,
    omics_noise: float = 1.0,
    frailty_sd: float = 0.0,
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
            ``level_downsample ** (n_levels - 1)`` and of :data:`~survpgc.synth.render.MASK_DOWNSAMPLE`.
        censoring: ``(low, high)`` range of the realised censoring rate (default ``(0.6, 0.8)``); the censoring
            scale is chosen so that the rate is the attainable value closest to the middle of the range.  A
            single rate ``r`` asks for ``(r - 0.05, r + 0.05)`` (narrower near 0 and 1, keeping ``r`` the middle).
        planted_fraction: ``(low, high)`` range of the uniform target fraction of each slide's tissue given
            the tumour texture (default ``(0.08, 0.65)``); ``texture_score`` is standardised with the mean and
            sd of this range.
        signal: multipliers of the true-risk coefficients per modality, keys ``pathology`` (texture),
            ``clinical`` (stage and age) and ``genomic`` (pathway); a modality not named keeps 1, 0 removes
            its signal (default: all 1).
        omics_noise: multiplier of every pathway gene's expression noise around its pathway activity (default
            1: unit-variance genes); larger hides the genomic signal in noise.
        frailty_sd: sd of an unobserved frailty added to the log hazard (default 0: none); no modality
            carries it, so it lowers what any model (and the true risk) can reach.  ``cindex_true`` stays
            Harrell's C of the true risk; truth.json adds ``cindex_log_hazard`` (of the full log hazard).
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
    opts = check_options(
        n_patients=n_patients,
        seed=seed,
        slide_size=slide_size,
        censoring=censoring,
        omics_missing=omics_missing,
        race_missing=race_missing,
        stage_missing=stage_missing,
        n_levels=n_levels,
        level_downsample=level_downsample,
        tile_size=tile_size,
        jpeg_quality=jpeg_quality,
        mpp=mpp,
        objective_power=objective_power,
        render_slides=render_slides,
        planted_fraction=planted_fraction,
        signal=signal,
        omics_noise=omics_noise,
        frailty_sd=frailty_sd,
    )
    _check_out_dir(out, overwrite)
    gen = _generate_atomically(out, opts)
    seconds = time.perf_counter() - t0
    log.info(
        "synthetic cohort: %d cases in %s (%.1f s), oracle C-index %.3f, censoring %.2f",
        opts.n_patients,
        out,
        seconds,
        gen.cindex_true,
        gen.censoring_rate,
    )
    return _result(out, opts, gen, seconds)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise InputError(f"out_dir {out} exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise InputError(
                f"out_dir {out} exists and is not empty; pass overwrite=True (`synth --overwrite`) to replace it"
            )


def _generate_atomically(out: Path, opts: SynthOptions) -> _Generated:
    """Generate into a temporary sibling of ``out``, then rename it to ``out`` (removed on failure)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cohort is an ordinary folder
    try:
        gen = _generate(tmp, opts)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return gen


def _result(out: Path, opts: SynthOptions, gen: _Generated, seconds: float) -> SynthResult:
    return SynthResult(
        out_dir=out,
        n_patients=opts.n_patients,
        seed=opts.seed,
        cindex_true=gen.cindex_true,
        censoring_rate=gen.censoring_rate,
        cohort_csv=out / "cohort.csv",
        omics_csv=out / "omics.csv.gz",
        truth_csv=out / "truth.csv",
        truth_json=out / "truth.json",
        slides_dir=out / "slides",
        masks_dir=out / "masks",
        slide_paths=tuple(out / "slides" / s for s in gen.slide_ids) if opts.render_slides else (),
        mask_paths=tuple(out / "masks" / f"{slide_stem(s)}.png" for s in gen.slide_ids),
        seconds=seconds,
        cindex_log_hazard=gen.cindex_log_hazard,
    )


# ============================================================================================ generation
def _generate(root: Path, opts: SynthOptions) -> _Generated:
    """Draw every part from its own stream and write the cohort into the (empty) folder ``root``."""
    patients = draw_patients(
        stream(opts.seed, CLINICAL),
        opts.n_patients,
        race_missing=opts.missing["race"],
        stage_missing=opts.missing["stage"],
        planted=opts.planted,
    )
    omics = draw_omics(stream(opts.seed, OMICS), patients.case_ids, opts.missing["omics"], opts.omics_noise)
    tex_fraction = _write_slides_and_masks(root, opts, patients)
    scores = risk_scores(tex_fraction, patients.stage_ordinal, patients.age, omics.activity, opts.planted)
    risk = true_risk(scores, coefficients(opts.signal))
    frailty = None
    log_hazard = risk
    if opts.frailty_sd > 0:  # its own stream, drawn only when asked: the other parts never depend on it
        frailty = opts.frailty_sd * stream(opts.seed, FRAILTY).standard_normal(opts.n_patients)
        log_hazard = risk + frailty
    survival = draw_survival(stream(opts.seed, SURVIVAL), log_hazard, opts.censoring)
    cindex = oracle_cindex(survival.observed, survival.event, risk)
    c_full = None if frailty is None else oracle_cindex(survival.observed, survival.event, log_hazard)

    _write_text(root / "cohort.csv", _cohort_table(patients, survival).to_csv(**_csv("%.2f")))
    write_omics(root / "omics.csv.gz", omics.table)
    truth = _truth_table(patients, omics, scores, risk, tex_fraction, survival, frailty)
    _write_text(root / "truth.csv", truth.to_csv(**_csv("%.6f")))
    meta = _truth_json(opts, patients, omics, survival, cindex, c_full)
    _write_text(root / "truth.json", json.dumps(meta, indent=2) + "\n")
    return _Generated(cindex, survival.censoring_rate, patients.slide_ids, c_full)


def _write_slides_and_masks(root: Path, opts: SynthOptions, patients: Patients) -> np.ndarray:
    """Lay out, mask and (optionally) render each case's slide; returns the tumour-texture fractions."""
    n = len(patients.slide_ids)
    (root / "masks").mkdir()
    if opts.render_slides:
        (root / "slides").mkdir()
    tex_fraction = np.zeros(n)
    t_slides = time.perf_counter()
    for i, sid in enumerate(patients.slide_ids):
        rng = stream(opts.seed, SLIDES, i)
        labels4, labels16 = layout(rng, opts.width, opts.height, float(patients.texture_target[i]))
        tex_fraction[i] = tumour_fraction(labels16)
        stem = slide_stem(sid)
        write_png(root / "masks" / f"{stem}.png", tumour_mask(labels16))
        write_png(root / "masks" / f"{stem}_labels.png", labels16)
        if opts.render_slides:
            rgb = render_he(rng, labels4, opts.width, opts.height)
            write_slide(root / "slides" / sid, rgb, stem=stem, spec=opts.pyramid)
        log.debug("slide %d/%d %s: tumour fraction %.3f", i + 1, n, sid, tex_fraction[i])
    log.info("wrote %d slides/masks in %.1f s", n, time.perf_counter() - t_slides)
    return tex_fraction


# ============================================================================================ tables
def _csv(float_format: str) -> dict[str, Any]:
    return {"index": False, "lineterminator": "\n", "float_format": float_format}


def _cohort_table(patients: Patients, survival: Survival) -> pd.DataFrame:
    """cohort.csv: what a TCGA cohort folder holds (observed values only; censorship 1 = censored)."""
    return pd.DataFrame(
        {
            "case_id": patients.case_ids,
            "slide_id": patients.slide_ids,
            "site": patients.site,
            "age": patients.age,
            "sex": patients.sex,
            "race": patients.race,
            "stage": patients.stage,
            "stage_edition": patients.stage_edition,
            "subtype": patients.subtype,
            "oncotree_code": ONCOTREE,
            "survival_months": survival.observed,
            "censorship": (~survival.event).astype(int),
        },
        columns=list(COHORT_COLUMNS),
    )


def _truth_table(
    patients: Patients,
    omics: Omics,
    scores: dict[str, np.ndarray],
    risk: np.ndarray,
    tex_fraction: np.ndarray,
    survival: Survival,
    frailty: np.ndarray | None = None,
) -> pd.DataFrame:
    """truth.csv: per case the true risk, its components and the latent times (with a frailty: the frailty
    and the full log hazard after ``true_risk``)."""
    extra = {} if frailty is None else {"frailty": frailty, "log_hazard": risk + frailty}
    return pd.DataFrame(
        {
            "case_id": patients.case_ids,
            "true_risk": risk,
            **extra,
            "texture_fraction": tex_fraction,
            "stage_score": scores["stage"],
            "age_score": scores["age"],
            "pathway_score": scores["pathway"],
            "texture_score": scores["texture"],
            "stage_ordinal": patients.stage_ordinal,
            "age": patients.age,
            "event_time": survival.event_time,
            "censor_time": survival.censor_time,
            "observed_time": survival.observed,
            "event": survival.event.astype(int),
            "has_omics": (~omics.missing).astype(int),
            **{f"activity_{p}": omics.activity[p] for p in PATHWAYS},
        }
    )


def _truth_json(
    opts: SynthOptions,
    patients: Patients,
    omics: Omics,
    survival: Survival,
    cindex: float,
    cindex_full: float | None = None,
) -> dict[str, Any]:
    """truth.json: the generator, the model and every generating choice (the key order is part of the bytes)."""
    without = [c for c, m in zip(patients.case_ids, omics.missing, strict=True) if m]
    meta: dict[str, Any] = {
        "generator": "survpgc.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": opts.seed,
        "n_patients": opts.n_patients,
        "n_events": int(survival.event.sum()),
        "cindex_true": _rounded(cindex),
    }
    if cindex_full is not None:
        meta["cindex_log_hazard"] = _rounded(cindex_full)
    meta |= {
        "censoring_rate": round(survival.censoring_rate, 6),
        "model": model_json(coefficients(opts.signal), opts.planted, opts.frailty_sd),
        "censoring": censoring_json(survival, opts.censoring),
        "slides": slides_json(opts.pyramid, opts.width, opts.height, opts.render_slides),
        "masks": masks_json(opts.width, opts.height),
        "clinical": clinical_json(opts.missing["race"], opts.missing["stage"]),
        "omics": omics_json(opts.missing["omics"], without, opts.omics_noise),
        "settings": settings_json(opts),
    }
    return meta


def _rounded(c: float) -> float | None:
    return None if math.isnan(c) else round(c, 6)


# ============================================================================================ files
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
