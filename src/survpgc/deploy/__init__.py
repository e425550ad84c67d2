"""From a benchmark to a usable model: train a final model, ship it as a safe bundle, predict for new patients.

* :mod:`survpgc.deploy.bundle` -- the bundle format (a folder: ``model.safetensors``, ``bundle.json``,
  ``model_card.md``), :func:`~survpgc.deploy.bundle.load_bundle` and the input checks that refuse a mismatch;
* :mod:`survpgc.deploy.fit` -- :func:`~survpgc.deploy.fit.train_bundle`: one model fitted on all cases (epochs
  from a finished CV run or set explicitly; a Cox model in closed form), or an ensemble of a run's fold models;
* :mod:`survpgc.deploy.predict` -- :func:`~survpgc.deploy.predict.predict_cohort` (risk, survival curve,
  S(1/3/5 y), risk group, modalities present) and :func:`~survpgc.deploy.predict.predict_to_dir` (the CSV and
  HTML of ``survpgc predict``);
* :mod:`survpgc.deploy.card` -- the model card (Markdown) written into every bundle;
* :mod:`survpgc.deploy.validate` -- :func:`~survpgc.deploy.validate.validate_bundles`: external validation of
  one or more bundles on a cohort with survival (discrimination with bootstrap CIs, KM by the training cutoff,
  calibration at horizons and D-calibration, paired comparisons, one report).

Nothing here pickles: weights are safetensors, everything else JSON or text.
"""
