"""Cohorts, leakage-free splits, feature files, token sources and the survival dataset.

Submodules are imported on demand (``from survpgc.data.cohort import Cohort``) so that importing
``survpgc.data`` stays cheap.
"""
