"""The seeded random streams of the synthetic cohort.

Each part of the cohort draws from its own stream, keyed by ``(seed, part[, case])``, so that how one part
is drawn never shifts the numbers of another: the clinical covariates, the slides (one sub-stream per
case), the omics table, the survival times and the unobserved frailty.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLINICAL", "FRAILTY", "OMICS", "SLIDES", "SURVIVAL", "pick", "stream"]

#: Stream keys (the second entry of the seed sequence).
CLINICAL, SLIDES, OMICS, SURVIVAL = 0, 1, 2, 3
#: The frailty's own stream (drawn only when ``frailty_sd > 0``, so the other parts never depend on it).
FRAILTY = 4


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator of stream ``key`` (e.g. ``(SLIDES, case_index)``) for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def pick(rng: np.random.Generator, n: int, frac: float) -> np.ndarray:
    """Boolean mask of ``round(frac * n)`` (at least 1 when frac > 0, at most n - 1) randomly chosen cases."""
    k = 0 if frac <= 0 else max(1, round(frac * n))
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=min(k, n - 1), replace=False)] = True
    return out
