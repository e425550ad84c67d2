"""Training: fit one fold (``survpgc.train.loop``); cross-validation orchestration builds on it."""
