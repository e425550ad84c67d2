"""Published reference values of the SurvPGC paper (Hou et al., npj Digital Medicine 2025).

Only numbers printed in the paper live here, so that the demo, the studies and the report show survpgc's
results beside them from one source. Each table says what it holds; C-index values are means over the
paper's five folds.
"""

from __future__ import annotations

__all__ = [
    "INTEGRATION_MODELS",
    "PAPER_TABLE1_LIHC",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "PAPER_TABLE4_COLUMN",
    "PAPER_TABLE5_LIHC",
]

#: Table 1, TCGA-LIHC C-index of the clinical and genomic baselines that the demo's part (b) runs.
PAPER_TABLE1_LIHC: dict[str, float] = {
    "coxph": 0.626,
    "mlp:clinical": 0.599,
    "snn:clinical": 0.608,
    "mlp:genomic": 0.677,
    "snn:genomic": 0.668,
}

#: Table 3: integrated-gradients share of (genomic-pathology path, clinic-pathology path) per cohort.
PAPER_TABLE3: dict[str, tuple[float, float]] = {
    "TCGA-LIHC": (0.554, 0.446),
    "TCGA-BRCA": (0.822, 0.178),
    "TCGA-COADREAD": (0.339, 0.661),
}

#: Table 4: C-index of the clinical-integration approaches, (LIHC, BRCA, COADREAD).
PAPER_TABLE4: dict[str, tuple[float, float, float]] = {
    "late_fusion": (0.641, 0.674, 0.525),
    "concat_fusion": (0.634, 0.632, 0.520),
    "encoded_fusion": (0.635, 0.662, 0.581),
    "survpc": (0.650, 0.668, 0.670),
}

#: Which element of a :data:`PAPER_TABLE4` row belongs to a cohort.
PAPER_TABLE4_COLUMN: dict[str, int] = {"TCGA-LIHC": 0, "TCGA-BRCA": 1, "TCGA-COADREAD": 2}

#: The Table 4 approaches in order: (model, label).
INTEGRATION_MODELS: tuple[tuple[str, str], ...] = (
    ("late_fusion", "a: late fusion of risk scores"),
    ("concat_fusion", "b: low-dim clinical vector ‖ pathology embedding"),
    ("encoded_fusion", "c: clinical encoded to high-dim, then fused"),
    ("survpc", "SurvPC: clinic↔pathology cross-attention"),
)

#: Table 5: C-index of the clinical MLP on TCGA-LIHC by number of templates N_t.
PAPER_TABLE5_LIHC: dict[int, float] = {1: 0.599, 5: 0.523, 20: 0.546}
