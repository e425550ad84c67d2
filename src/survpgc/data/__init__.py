"""Cohorts, leakage-free splits, datasets and the synthetic cohort.

Submodules are imported on demand (``from survpgc.data.cohort import Cohort``) so that importing
``survpgc.data`` stays cheap.
"""
