"""The synthetic tri-modal cohort (slides + omics + clinical) with a known survival ground truth."""

from survpgc.synth.cohort import (
    CLASS_CODES,
    COEFFICIENTS,
    COHORT_COLUMNS,
    GENERATOR_VERSION,
    MASK_DOWNSAMPLE,
    PATHWAYS,
    RISK_PATHWAYS,
    SynthResult,
    generate_synthetic_cohort,
)

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
