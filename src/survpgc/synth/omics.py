"""The omics table of the synthetic cohort: pathway-structured expression with a risk signal.

Every pathway has a latent standard-normal activity per case, and every gene of a pathway is
``loading * activity + noise * sqrt(1 - loading**2) * N(0, 1)`` with ``loading ~ U(0.55, 0.9)``; at the
default ``noise`` 1 the genes have unit variance and the pathway-level mean expression recovers the
activity, a larger ``noise`` hides the activities in more expression noise (the draws are the same).
House-keeping genes are pure noise.  Two pathways enter the true risk
(:data:`survpgc.synth.truth.RISK_PATHWAYS`).  About ``missing`` of the cases have no row.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.synth.streams import pick
from survpgc.synth.truth import RISK_PATHWAYS

__all__ = ["NOISE_GENES", "PATHWAYS", "Omics", "draw_omics", "omics_json", "write_omics"]

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


@dataclass(frozen=True)
class Omics:
    """The omics table (cases with a row only), the latent activities and which cases have no row."""

    table: pd.DataFrame  # case_id, <GENE>_rnaseq ...
    activity: dict[str, np.ndarray]  # per pathway, over all cases
    missing: np.ndarray  # bool per case: no row in the table


def draw_omics(rng: np.random.Generator, case_ids: list[str], missing: float, noise: float = 1.0) -> Omics:
    """Pathway activities, gene columns and the cases without omics, in the order of the seed contract
    (``noise``: the multiplier of every pathway gene's noise term; the draws do not depend on it)."""
    n = len(case_ids)
    activity = {p: rng.standard_normal(n) for p in PATHWAYS}
    cols: dict[str, np.ndarray] = {}
    for p, genes in PATHWAYS.items():
        loading = rng.uniform(0.55, 0.9, len(genes))
        eps = rng.standard_normal((n, len(genes)))
        sd = np.sqrt(1.0 - loading**2) if noise == 1.0 else noise * np.sqrt(1.0 - loading**2)
        values = activity[p][:, None] * loading + eps * sd
        for j, g in enumerate(genes):
            cols[f"{g}_rnaseq"] = values[:, j]
    for g in NOISE_GENES:
        cols[f"{g}_rnaseq"] = rng.standard_normal(n)
    miss = pick(rng, n, missing)
    table = pd.DataFrame({"case_id": case_ids, **cols})
    table = table.loc[~miss].reset_index(drop=True)
    return Omics(table, activity, miss)


def write_omics(path: Path, table: pd.DataFrame) -> None:
    """``table`` as gzip-compressed CSV (4 decimals) with a zero gzip timestamp, so the bytes are reproducible."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(table.to_csv(index=False, lineterminator="\n", float_format="%.4f").encode())
    path.write_bytes(buf.getvalue())


def omics_json(missing: float, cases_without_omics: list[str], noise: float = 1.0) -> dict[str, Any]:
    """The ``omics`` section of truth.json (``noise``: the noise multiplier of :func:`draw_omics`)."""
    factor = "" if noise == 1.0 else f"{noise:g} * "
    return {
        "columns": "<GENE>_rnaseq",
        "gene_model": f"loading * activity[pathway] + {factor}sqrt(1 - loading**2) * N(0, 1); loading ~ U(0.55, 0.9)",
        "pathways": {p: list(g) for p, g in PATHWAYS.items()},
        "gene_to_pathway": {g: p for p, genes in PATHWAYS.items() for g in genes},
        "noise_genes": list(NOISE_GENES),
        "risk_pathways": dict(RISK_PATHWAYS),
        "missing_fraction": missing,
        "cases_without_omics": cases_without_omics,
    }
