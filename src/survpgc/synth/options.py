"""Checked arguments of :func:`survpgc.synth.generate_synthetic_cohort`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from survpgc.errors import InputError
from survpgc.synth.render import MASK_DOWNSAMPLE
from survpgc.synth.slides import PyramidSpec
from survpgc.synth.truth import SIGNAL_COMPONENTS, TEX_RANGE, censored_count_range

__all__ = [
    "CENSORING_DEFAULT",
    "CENSORING_HALF_WIDTH",
    "SynthOptions",
    "censoring_range",
    "check_options",
    "parse_numbers",
    "parse_signal",
    "settings_json",
]

#: The default ``(low, high)`` range of the realised censoring rate.
CENSORING_DEFAULT: tuple[float, float] = (0.6, 0.8)

#: A single censoring rate ``r`` asks for ``(r - h, r + h)``, ``h`` this value or less near 0 and 1.
CENSORING_HALF_WIDTH = 0.05


@dataclass(frozen=True)
class SynthOptions:
    """What to generate, validated."""

    n_patients: int
    seed: int
    width: int  # level-0 pixels
    height: int
    censoring: tuple[float, float]  # (low, high) range of the realised censoring rate
    missing: dict[str, float]  # fraction of cases without omics / race / stage: keys omics, race, stage
    pyramid: PyramidSpec
    render_slides: bool
    planted: tuple[float, float]  # (low, high) range of the uniform target tumour-texture fraction
    signal: dict[str, float]  # multiplier of the true-risk coefficients per modality: pathology, clinical, genomic
    omics_noise: float  # multiplier of the pathway genes' expression noise
    frailty_sd: float  # sd of the unobserved log-hazard frailty (0: none)
    censoring_rate: float | None = None  # the single target rate asked for, when one was given


def check_options(
    *,
    n_patients: Any,
    seed: Any,
    slide_size: Any,
    censoring: Any,
    omics_missing: Any,
    race_missing: Any,
    stage_missing: Any,
    n_levels: Any,
    level_downsample: Any,
    tile_size: Any,
    jpeg_quality: Any,
    mpp: Any,
    objective_power: Any,
    render_slides: bool,
    planted_fraction: Any = TEX_RANGE,
    signal: Any = None,
    omics_noise: Any = 1.0,
    frailty_sd: Any = 0.0,
) -> SynthOptions:
    """The arguments as :class:`SynthOptions` (see ``generate_synthetic_cohort`` for their meaning).

    Raises:
        InputError: an argument has the wrong type or is out of range, naming it.
    """
    n_patients = _check_int("n_patients", n_patients, minimum=4)
    seed = _check_int("seed", seed, minimum=0)
    width, height, n_levels, level_downsample, tile_size = _check_size(
        slide_size, n_levels, level_downsample, tile_size
    )
    rate = None if isinstance(censoring, Sequence) else censoring
    lo, hi = _check_censoring(censoring_range(censoring), n_patients, censoring)
    missing = {"omics": omics_missing, "race": race_missing, "stage": stage_missing}
    for name, value in missing.items():
        _check_fraction(f"{name}_missing", value)
    jpeg_quality = _check_int("jpeg_quality", jpeg_quality, minimum=1, maximum=100)
    objective_power = _check_int("objective_power", objective_power, minimum=1)
    if isinstance(mpp, bool) or not isinstance(mpp, int | float) or not math.isfinite(mpp) or mpp <= 0:
        raise InputError(f"mpp must be a positive finite number (um per pixel), got {mpp!r}")
    pyramid = PyramidSpec(n_levels, level_downsample, tile_size, jpeg_quality, float(mpp), objective_power)
    return SynthOptions(
        n_patients,
        seed,
        width,
        height,
        (lo, hi),
        missing,
        pyramid,
        render_slides,
        planted=_check_planted(planted_fraction),
        signal=_check_signal(signal),
        omics_noise=_check_nonnegative("omics_noise", omics_noise),
        frailty_sd=_check_nonnegative("frailty_sd", frailty_sd),
        censoring_rate=None if rate is None else float(rate),
    )


def censoring_range(censoring: Any) -> Any:
    """A single target rate ``r`` as the range ``(r - h, r + h)`` (``h`` = :data:`CENSORING_HALF_WIDTH`, less
    near 0 and 1 so that the middle stays ``r``); a pair, or anything else, unchanged (checked later).

    Raises:
        InputError: a single rate outside [0, 1), naming ``censoring``.
    """
    if isinstance(censoring, bool) or not isinstance(censoring, int | float | np.floating):
        return censoring
    r = float(censoring)
    if not 0.0 <= r < 1.0:
        raise InputError(f"censoring rate must be in [0, 1), got {censoring!r}")
    half = min(CENSORING_HALF_WIDTH, r, (1.0 - r) / 2.0)
    return (r - half, r + half)


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


def _check_size(
    slide_size: Any, n_levels: Any, level_downsample: Any, tile_size: Any
) -> tuple[int, int, int, int, int]:
    """Width, height, levels, downsample and tile size, the sizes multiples of every block they are cut in."""
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
    return w, h, n_levels, level_downsample, tile_size


def _pair(name: str, value: Any, what: str) -> tuple[float, float]:
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in value)
    )
    if not ok:
        raise InputError(f"{name} must be {what}, got {value!r}")
    return float(value[0]), float(value[1])


def _check_censoring(censoring: Any, n: int, asked: Any) -> tuple[float, float]:
    lo, hi = _pair("censoring", censoring, "a target rate in [0, 1) or a (low, high) pair of rates")
    if not 0.0 <= lo <= hi < 1.0:
        raise InputError(f"censoring must satisfy 0 <= low <= high < 1, got {censoring!r}")
    k_lo, k_hi = censored_count_range((lo, hi), n)
    if k_lo > k_hi:
        shown = f"rate {asked!r} (range {censoring!r})" if asked is not censoring else f"range {censoring!r}"
        raise InputError(
            f"censoring {shown} cannot be met with {n} patients (and at least one death); "
            "widen the range or add patients"
        )
    return lo, hi


def _check_planted(planted: Any) -> tuple[float, float]:
    lo, hi = _pair("planted_fraction", planted, "a (low, high) pair of tumour-texture fractions")
    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(
            f"planted_fraction must satisfy 0 <= low < high <= 1 (the texture score is standardised by the "
            f"range's sd, so it cannot be empty), got {planted!r}"
        )
    return lo, hi


def _check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    if value < 0:
        raise InputError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _check_signal(signal: Any) -> dict[str, float]:
    """Every modality's multiplier (1 where ``signal`` does not name it)."""
    out = dict.fromkeys(SIGNAL_COMPONENTS, 1.0)
    if signal is None:
        return out
    if not isinstance(signal, Mapping):
        raise InputError(f"signal must be a mapping modality -> multiplier, e.g. {{'pathology': 0}}, got {signal!r}")
    for key, value in signal.items():
        if key not in out:
            raise InputError(f"signal: unknown modality {key!r}; one of {list(SIGNAL_COMPONENTS)}")
        out[key] = _check_nonnegative(f"signal[{key!r}]", value)
    return out


def settings_json(opts: SynthOptions) -> dict[str, Any]:
    """The ``settings`` section of truth.json: the generator's knobs, each with its value, default and meaning."""
    censoring: dict[str, Any] = {"value": list(opts.censoring)}
    if opts.censoring_rate is not None:
        censoring["rate"] = opts.censoring_rate
    censoring |= {
        "default": list(CENSORING_DEFAULT),
        "meaning": "target (low, high) range of the realised censoring rate; the rate realised is the attainable "
        f"one closest to the middle; a single rate r asks for (r - {CENSORING_HALF_WIDTH:g}, r + "
        f"{CENSORING_HALF_WIDTH:g}), narrower near 0 and 1",
    }
    return {
        "censoring": censoring,
        "slide_size": {
            "value": [opts.width, opts.height],
            "default": [3072, 2048],
            "meaning": "level-0 (width, height) of every slide and its label map, in pixels",
        },
        "planted_fraction": {
            "value": list(opts.planted),
            "default": list(TEX_RANGE),
            "meaning": "range of the uniform target fraction of each slide's tissue given the tumour texture; "
            "texture_score is standardised with this range's mean and sd (model.scores.texture)",
        },
        "signal": {
            "value": dict(opts.signal),
            "default": dict.fromkeys(SIGNAL_COMPONENTS, 1.0),
            "meaning": "multiplier of the true-risk coefficients per modality ("
            + "; ".join(f"{m}: {', '.join(c)}" for m, c in SIGNAL_COMPONENTS.items())
            + "); 0 removes the modality's signal; model.coefficients are the results",
        },
        "omics_noise": {
            "value": opts.omics_noise,
            "default": 1.0,
            "meaning": "multiplier of the expression noise of every pathway gene around its pathway activity "
            "(omics.gene_model); larger hides the pathway signal",
        },
        "frailty_sd": {
            "value": opts.frailty_sd,
            "default": 0.0,
            "meaning": "sd of an unobserved frailty added to the log hazard (log_hazard = true_risk + frailty_sd "
            "* N(0, 1)) that no modality carries; cindex_true stays Harrell's C of true_risk",
        },
    }


# ------------------------------------------------------------------------------------------------ CLI text
def parse_numbers(text: str, option: str, *, single: bool = True) -> float | tuple[float, float]:
    """``"0.7"`` -> 0.7 (when ``single``), ``"0.6,0.8"`` -> (0.6, 0.8): the value of a command-line option.

    Raises:
        InputError: not one number or two comma-separated numbers, naming ``option``.
    """
    parts = [p.strip() for p in str(text).split(",")]
    what = "a number such as 0.7 or a range LO,HI such as 0.6,0.8" if single else "a range LO,HI such as 0.1,0.5"
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{option} must be {what}, got {text!r}") from None
    if len(values) == 1 and single:
        return values[0]
    if len(values) != 2:
        raise InputError(f"{option} must be {what}, got {text!r}")
    return values[0], values[1]


def parse_signal(text: str, option: str = "--signal") -> dict[str, float]:
    """``"pathology=0,genomic=2"`` -> ``{"pathology": 0.0, "genomic": 2.0}`` (the modalities not named keep 1).

    Raises:
        InputError: not ``modality=number`` items separated by commas, naming ``option``.
    """
    out: dict[str, float] = {}
    for item in (p.strip() for p in str(text).split(",") if p.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value) if sep else None
        except ValueError:
            number = None
        if number is None:
            raise InputError(
                f"{option} takes modality=multiplier items separated by commas (modalities "
                f"{', '.join(SIGNAL_COMPONENTS)}), e.g. pathology=0,genomic=2; got {item!r}"
            )
        if key not in SIGNAL_COMPONENTS:
            raise InputError(f"{option}: unknown modality {key!r}; one of {', '.join(SIGNAL_COMPONENTS)}")
        out[key] = number
    return out
