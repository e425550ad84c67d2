"""Metric tables of a cross-validated run: per-fold metrics, summaries and paired model comparisons."""
