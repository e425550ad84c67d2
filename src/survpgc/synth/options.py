"""Checked arguments of :func:`survpgc.synth.generate_synthetic_cohort`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from survpgc.errors import InputError
from survpgc.synth.render import MASK_DOWNSAMPLE
from survpgc.synth.slides import PyramidSpec
from survpgc.synth.truth import censored_count_range

__all__ = ["SynthOptions", "check_options"]


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
    lo, hi = _check_censoring(censoring, n_patients)
    missing = {"omics": omics_missing, "race": race_missing, "stage": stage_missing}
    for name, value in missing.items():
        _check_fraction(f"{name}_missing", value)
    jpeg_quality = _check_int("jpeg_quality", jpeg_quality, minimum=1, maximum=100)
    objective_power = _check_int("objective_power", objective_power, minimum=1)
    if isinstance(mpp, bool) or not isinstance(mpp, int | float) or not math.isfinite(mpp) or mpp <= 0:
        raise InputError(f"mpp must be a positive finite number (um per pixel), got {mpp!r}")
    pyramid = PyramidSpec(n_levels, level_downsample, tile_size, jpeg_quality, float(mpp), objective_power)
    return SynthOptions(n_patients, seed, width, height, (lo, hi), missing, pyramid, render_slides)


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
    k_lo, k_hi = censored_count_range((lo, hi), n)
    if k_lo > k_hi:
        raise InputError(
            f"censoring range {censoring!r} cannot be met with {n} patients (and at least one death); "
            "widen the range or add patients"
        )
    return lo, hi
