"""Feature-level simulation of a tri-modal cohort, in memory (no slides, no encoders).

For tests and benchmarks of models and training: each patient gets a bag of patch features in which a
share ``f`` of patches comes from a "tumour" distribution (shifted mean), six clinical tokens whose first
token encodes a stage score, and four genomic tokens encoding a pathway score. Survival follows a Weibull
proportional-hazards model in the three standardised scores; censoring is independent exponential.
The items are in the format of :class:`survpgc.data.dataset.SurvivalDataset` (collate with
:func:`survpgc.data.dataset.collate_survival`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SimulatedCohort", "simulate_bags"]


@dataclass
class SimulatedCohort:
    items: list[dict]
    time: np.ndarray
    event: np.ndarray
    true_risk: np.ndarray
    dims: dict[str, int]

    @property
    def case_ids(self) -> list[str]:
        return [it["case_id"] for it in self.items]


def simulate_bags(
    n_patients: int = 120,
    *,
    seed: int = 0,
    n_patches: tuple[int, int] = (40, 120),
    path_dim: int = 32,
    clin_dim: int = 16,
    gen_dim: int = 16,
    coef: tuple[float, float, float] = (1.0, 0.7, 0.7),
    censoring: float = 0.5,
    signal: float = 1.5,
) -> SimulatedCohort:
    """Simulate ``n_patients`` patients (see module docstring); deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    frac = rng.beta(2, 5, n_patients)  # tumour share of patches
    stage = rng.normal(size=n_patients)
    pathway = rng.normal(size=n_patients)
    z = [(frac - frac.mean()) / frac.std(), stage, pathway]
    risk = sum(c * v for c, v in zip(coef, z, strict=True))
    u = rng.random(n_patients)
    event_time = 40.0 * (-np.log(u) / np.exp(risk)) ** (1 / 1.2) + 0.5
    scale = np.quantile(event_time, 1 - censoring) * 1.5
    censor_time = rng.exponential(scale, n_patients) + 0.5
    time = np.minimum(event_time, censor_time)
    event = event_time <= censor_time
    tumour_dir = rng.normal(size=path_dim)
    tumour_dir /= np.linalg.norm(tumour_dir)
    clin_dir = rng.normal(size=clin_dim)
    gen_dir = rng.normal(size=gen_dim)
    items = []
    for i in range(n_patients):
        n = int(rng.integers(n_patches[0], n_patches[1] + 1))
        x = rng.normal(size=(n, path_dim))
        is_tumour = rng.random(n) < frac[i]
        x[is_tumour] += signal * 2 * tumour_dir
        clin = rng.normal(size=(6, clin_dim)) * 0.5
        clin[0] += stage[i] * clin_dir
        gen = rng.normal(size=(4, gen_dim)) * 0.5
        gen[:] += pathway[i] * gen_dir
        items.append(
            {
                "case_id": f"SIM-{i:04d}",
                "time": torch.tensor(time[i], dtype=torch.float32),
                "event": torch.tensor(bool(event[i])),
                "bin": torch.tensor(-1),
                "path": torch.tensor(x, dtype=torch.float32),
                "path_mask": torch.ones(n, dtype=torch.bool),
                "clin": torch.tensor(clin, dtype=torch.float32),
                "clin_mask": torch.ones(6, dtype=torch.bool),
                "gen": torch.tensor(gen, dtype=torch.float32),
                "gen_mask": torch.ones(4, dtype=torch.bool),
                "has_path": torch.tensor(True),
                "has_clin": torch.tensor(True),
                "has_gen": torch.tensor(True),
            }
        )
    return SimulatedCohort(items, time, event, risk, {"path_dim": path_dim, "clin_dim": clin_dim, "gen_dim": gen_dim})
