"""The synthetic tri-modal cohort (slides + omics + clinical) with a known survival ground truth.

``generate_synthetic_cohort(out_dir, n_patients=40, seed=0)`` writes a folder in the TCGA layout the
cohort loader reads, plus pyramidal slides, tumour-texture masks and the truth (``truth.csv``,
``truth.json``); the same seed gives byte-identical files.  Its knobs (``censoring``, ``slide_size``,
``planted_fraction``, ``signal`` per modality, ``omics_noise``, ``frailty_sd``; `survpgc synth --help`) are
recorded in truth.json's ``settings``.  The parts:

* :mod:`survpgc.synth.cohort` -- :func:`generate_synthetic_cohort` -> :class:`SynthResult`: the
  orchestration and the tables (cohort.csv, truth.csv, truth.json).
* :mod:`survpgc.synth.truth` -- the survival truth: :data:`COEFFICIENTS` of the risk components,
  Weibull proportional hazards, censoring into a target range, the oracle C-index, ``read_truth`` (the true
  risk per case of a cohort folder, for the oracle of `survpgc run` and `survpgc validate`).
* :mod:`survpgc.synth.patients` -- identifiers and clinical covariates.
* :mod:`survpgc.synth.omics` -- the expression table with pathway structure (:data:`PATHWAYS`).
* :mod:`survpgc.synth.render` -- tissue layout, texture classes (:data:`CLASS_CODES`), H&E-like rendering
  and the masks (level-0 / :data:`MASK_DOWNSAMPLE`).
* :mod:`survpgc.synth.slides` -- the pyramidal TIFF writer (Aperio SVS layout, MPP and objective power).
* :mod:`survpgc.synth.options`, :mod:`survpgc.synth.streams` -- argument checks, seeded random streams.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve lazily (PEP 562): the generator pulls in pandas and numpy, which importing the package should not.
_HOME = {
    "CLASS_CODES": "render",
    "COEFFICIENTS": "truth",
    "COHORT_COLUMNS": "cohort",
    "GENERATOR_VERSION": "cohort",
    "MASK_DOWNSAMPLE": "render",
    "PATHWAYS": "omics",
    "RISK_PATHWAYS": "truth",
    "SynthResult": "cohort",
    "generate_synthetic_cohort": "cohort",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"survpgc.synth.{_HOME[name]}"), name)
    raise AttributeError(f"module 'survpgc.synth' has no attribute {name!r}")


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
