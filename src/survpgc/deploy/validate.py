"""``survpgc validate``: external validation of model bundles on a cohort with survival data.

:func:`validate_bundles` predicts every case of the cohort with each bundle (:func:`~survpgc.deploy.predict.
predict_cohort`) and measures, per bundle:

* **discrimination** -- Harrell's and Uno's C with percentile bootstrap 95 % intervals (cases resampled with
  replacement, ``n_bootstrap`` times, seed ``seed``), the cumulative/dynamic AUC at each time and the
  integrated AUC (:func:`~survpgc.eval.tables.fold_metrics`, the function of the CV tables);
* **overall accuracy** -- the integrated Brier score of the predicted survival between the first and last
  evaluation time, the curve read as a step function at the bundle's bin edges, as in cross-validation;
* **risk groups** -- Kaplan-Meier curves of the high and low groups formed with the bundle's *training*
  cutoff (the median training risk; nothing is refitted on the validation cohort) and the log-rank test;
* **calibration** -- at each time, predicted vs Kaplan-Meier observed survival by group of predicted
  survival (deciles, fewer for few deaths; :func:`~survpgc.survival.calibration.calibration_at`) with the
  Greenwood-Nam-D'Agostino test, O/E ratio and grouped ICI, and the D-calibration test over the whole curve
  (:func:`~survpgc.survival.calibration.d_calibration`).

Censoring weights (Uno's C, AUC, Brier) come from the Kaplan-Meier estimate of the censoring distribution of
the **validation cohort itself**: an external cohort has its own follow-up pattern, and the training cohort's
censoring says nothing about it (the CV tables use the training part of each fold, which shares the
cohort's follow-up).  Evaluation times outside the validation follow-up are skipped with a note.

Several bundles on one cohort are compared with the first by a paired bootstrap of Harrell's C
(:func:`~survpgc.survival.stats.paired_bootstrap_cindex`: both risks on the same resamples).

A bundle validated on its own training cohort gets the label **apparent (training cohort)** (optimistic). The
bundle holds no patient ids but hashes of them (:func:`~survpgc.deploy.bundle.training_cases_record`): when the
validation cohort's sorted case ids hash to the training cohort's value it is the training cohort; when only
some of its cases were training cases (their salted hashes are among the bundle's), the result is labelled
apparent too, with how many (``12 of 40 cases were in the training cohort``). A case counts when its id and its
survival time and event are a training case's: ids that match with other survival data (two samples of the
synthetic generator both number their cases SYN-0001, ...) are noted, not labelled. Bundles of format version 1 lack
the hashes: the rule then compares survival summaries (the same number of cases and deaths, the same median and
range of follow-up, to 1e-6 months, mean the same cases; a cohort of the same name whose summary differs is
noted as possibly overlapping), and a note says so.

Outputs under ``out`` (each written atomically): ``metrics.csv`` (one row per bundle), ``calibration.csv``
(one row per bundle, time and group), ``comparisons.csv``, ``predictions.csv`` (one row per bundle and case),
``plots/km_<model>.png``, ``plots/calibration_<model>.png`` and one ``report.html``.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.errors import InputError, SurvpgcError
from survpgc.survival.stats import uno_on_resamples

__all__ = [
    "DEFAULT_TIMES",
    "Apparent",
    "BundleValidation",
    "ValidationResult",
    "apparent_check",
    "apparent_performance",
    "step_survival",
    "validate_bundles",
    "validate_to_dir",
]

log = logging.getLogger(__name__)

#: Evaluation times (months) of ``survpgc validate``: 1, 3 and 5 years.
DEFAULT_TIMES: tuple[float, ...] = (12.0, 36.0, 60.0)
_SUMMARY_TOL = 1e-6


# ------------------------------------------------------------------------------------------------ records
@dataclass
class BundleValidation:
    """What one bundle scored on the validation cohort."""

    label: str  #: unique display name (the model id; the bundle folder is added when ids repeat)
    model_id: str
    path: str
    metrics: dict[str, Any]
    calibration: list[Any]  #: :class:`~survpgc.survival.calibration.HorizonCalibration` per usable time
    dcal: Any  #: :class:`~survpgc.survival.calibration.DCalibration` or None
    predictions: pd.DataFrame
    apparent: bool
    apparent_reason: str
    card: str
    km: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ValidationResult:
    """What :func:`validate_bundles` wrote."""

    out: Path
    bundles: list[BundleValidation]
    metrics: pd.DataFrame
    calibration: pd.DataFrame
    comparisons: pd.DataFrame
    predictions: pd.DataFrame
    report: Path
    notes: list[str]


# ------------------------------------------------------------------------------------------------ helpers
def apparent_check(training: Mapping[str, Any] | None, cohort_summary: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the validation cohort is the bundle's training cohort, and why (see the module docstring).

    ``training`` is the manifest's ``training_cohort`` summary; ``cohort_summary`` the validation cohort's
    :meth:`~survpgc.data.cohort.Cohort.summary`. Returns ``(apparent, reason)``; ``reason`` is empty when the
    cohorts are unrelated, and explains a possible overlap when only the names agree.
    """
    if not training:
        return False, ""

    def close(a: Any, b: Any) -> bool:
        try:
            return a is not None and b is not None and abs(float(a) - float(b)) <= _SUMMARY_TOL
        except (TypeError, ValueError):
            return False

    keys = ("n_cases", "n_events", "time_median_months")
    same = all(close(training.get(k), cohort_summary.get(k)) for k in keys)
    ra, rb = training.get("time_range_months"), cohort_summary.get("time_range_months")
    same = same and bool(ra) and bool(rb) and len(ra) == 2 and len(rb) == 2
    same = same and close(ra[0], rb[0]) and close(ra[1], rb[1])
    name_a, name_b = training.get("name"), cohort_summary.get("name")
    if same:
        return True, (
            f"the validation cohort has the training cohort's survival summary ({cohort_summary.get('n_cases')} "
            f"cases, {cohort_summary.get('n_events')} deaths, the same median and range of follow-up): apparent "
            "performance on the training cases, optimistic"
        )
    if name_a is not None and str(name_a) == str(name_b):
        return False, (
            f"the validation cohort has the training cohort's name {str(name_a)!r} but another survival summary "
            f"({cohort_summary.get('n_cases')} vs {training.get('n_cases')} cases): cases may overlap with training"
        )
    return False, ""


@dataclass
class Apparent:
    """Whether a validation is (partly) on the bundle's training cases: ``label`` is what the CLI and the tables
    show ("apparent (training cohort)", "apparent: 12 of 40 cases were in the training cohort", or empty);
    ``n_training`` the validation cases that were training cases (None when the bundle cannot tell); ``rule``
    how it was decided; ``reason`` the report's sentence (empty when unrelated); ``notes`` anything to add."""

    apparent: bool
    label: str
    n_training: int | None
    rule: str
    reason: str
    notes: list[str] = field(default_factory=list)


def apparent_performance(
    manifest: Mapping[str, Any],
    case_ids: Sequence[Any],
    cohort_summary: Mapping[str, Any],
    where: str = "bundle",
    *,
    time: Any = None,
    event: Any = None,
) -> Apparent:
    """Apparent performance by the bundle's hashed training case ids (see the module docstring); bundles without
    them (format version 1) fall back to :func:`apparent_check` on the cohort summary, with a note.

    With ``time`` and ``event`` a case counts as a training case when its id *and* its survival data are a
    training case's; ids alone that match (other patients numbered alike, or updated follow-up) are noted, not
    labelled."""
    from survpgc.deploy.bundle import training_overlap

    n = len({str(c) for c in case_ids})
    got = training_overlap(manifest, case_ids, time, event)
    if got is None:
        apparent, reason = apparent_check(manifest.get("training_cohort"), cohort_summary)
        version = manifest.get("format_version")
        note = (
            f"{where} (format version {version}) records no hashed training case ids: apparent performance was judged "
            "by the cohort summary (the same number of cases and deaths, median and range of follow-up); retrain the "
            "bundle with this survpgc for an exact check"
        )
        label = "apparent (training cohort)" if apparent else ""
        return Apparent(apparent, label, None, "cohort summary", reason, [note])
    k = got.n_ids if got.n_cases is None else got.n_cases
    rule = "case-id hashes" if got.n_cases is None else "case-id and survival hashes"
    notes = []
    if got.n_ids > k:
        notes.append(
            f"{got.n_ids - k} of {n} case ids are training case ids but with other survival data (time or event): "
            "taken as other patients numbered alike (e.g. another sample of the synthetic generator); if they are "
            "the training patients with updated follow-up, their performance is apparent too"
        )
    if got.same_ids and k == n:
        reason = (f"the validation cohort's case ids hash to the training cohort's (the same {n} cases): apparent "
                  "performance on the training cases, optimistic")  # fmt: skip
        return Apparent(True, "apparent (training cohort)", k, rule, reason, notes)
    if k:
        what = f"{k} of {n} cases were in the training cohort"
        reason = f"{what} (by the bundle's hashed training cases): apparent performance for them, optimistic"
        return Apparent(True, f"apparent: {what}", k, rule, reason, notes)
    return Apparent(False, "", 0, rule, "", notes)


def step_survival(edges: np.ndarray, surv: np.ndarray, times: Any) -> np.ndarray:
    """The survival curves read as right-continuous step functions at the bin edges (the convention of the CV
    metrics and of ``S_<t>`` in ``survpgc predict``): ``S(t)`` = survival at the end of the last bin ending at or
    before ``t``, 1 inside the first bin. Shape (n_cases, len(times))."""
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    k = np.searchsorted(np.asarray(edges, dtype=np.float64)[1:-1], t, side="right")
    padded = np.concatenate([np.ones((surv.shape[0], 1)), surv], axis=1)
    return padded[:, k]


def _unique_labels(bundles: Sequence[Any]) -> list[str]:
    ids = [str(b.model_id) for b in bundles]
    labels = [i if ids.count(i) == 1 else f"{i} ({Path(b.path).name})" for i, b in zip(ids, bundles, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if labels.count(lab) == 1 else f"{lab} #{seen[lab]}")
    return out


def _surv_matrix(preds: pd.DataFrame, n_bins: int, label: str) -> np.ndarray:
    cols = [f"surv_{k}" for k in range(n_bins)]
    missing = [c for c in cols if c not in preds.columns]
    if missing:
        raise InputError(f"predictions of {label} lack the survival column(s) {missing} of its {n_bins} time bins")
    return preds[cols].to_numpy(dtype=np.float64)


def _uno_bootstrap(time: np.ndarray, event: np.ndarray, risk: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """Percentile 95 % interval of Uno's C over case resamples (:func:`~survpgc.survival.stats.uno_on_resamples`
    on the resamples of :func:`~survpgc.survival.stats.bootstrap_indices` with ``seed``); resamples where it is
    undefined are skipped; NaNs when more than half are."""
    from survpgc.survival.stats import bootstrap_indices

    if n <= 0:
        return float("nan"), float("nan")
    indices = bootstrap_indices(time.shape[0], n, seed)
    # blocks of 100 resamples bound the memory (100 x n counts)
    values = [uno_on_resamples(time, event, risk, indices[s : s + 100]) for s in range(0, n, 100)]
    v = np.concatenate(values)
    v = v[np.isfinite(v)]
    if v.shape[0] * 2 < n:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def _harrell_bootstrap(time: np.ndarray, event: np.ndarray, risk: np.ndarray, n: int, seed: int, notes: list[str]):
    from survpgc.survival.stats import bootstrap_cindex

    if n <= 0:
        return float("nan"), float("nan")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = bootstrap_cindex(time, event, risk, n=n, seed=seed)
        notes += [str(w.message) for w in caught]
        return res.low, res.high
    except SurvpgcError as exc:
        notes.append(f"Harrell's C interval: {exc}")
        return float("nan"), float("nan")


def _score_bundle(
    bundle: Any,
    label: str,
    preds: pd.DataFrame,
    time: np.ndarray,
    event: np.ndarray,
    times: Sequence[float],
    *,
    n_bootstrap: int,
    seed: int,
    cohort_summary: Mapping[str, Any],
) -> BundleValidation:
    from survpgc.eval.tables import fold_metrics
    from survpgc.survival.calibration import calibration_at, d_calibration, survival_at

    notes: list[str] = []
    risk = preds["risk"].to_numpy(dtype=np.float64)
    edges = np.asarray(bundle.time_edges, dtype=np.float64)
    surv = _surv_matrix(preds, len(edges) - 1, label)
    m, fm_notes = fold_metrics(
        time, event, time, event, risk, times=times, surv_at=lambda grid: step_survival(edges, surv, grid)
    )
    notes += fm_notes
    metrics: dict[str, Any] = {"model": label, "model_id": str(bundle.model_id), "bundle": str(bundle.path)}
    metrics["n_cases"], metrics["n_events"] = int(time.shape[0]), int(event.sum())
    metrics["cindex"] = m["cindex"]
    metrics["cindex_low"], metrics["cindex_high"] = _harrell_bootstrap(time, event, risk, n_bootstrap, seed, notes)
    metrics["cindex_uno"] = m["cindex_uno"]
    metrics["cindex_uno_low"], metrics["cindex_uno_high"] = _uno_bootstrap(time, event, risk, n_bootstrap, seed)
    for k, v in m.items():
        if k not in metrics:
            metrics[k] = v
    # risk groups by the training cutoff
    cutoff = float(bundle.risk_cutoff)
    high = risk > cutoff
    metrics["risk_cutoff"] = cutoff
    metrics["n_high"], metrics["n_low"] = int(high.sum()), int((~high).sum())
    metrics["events_high"], metrics["events_low"] = int(event[high].sum()), int(event[~high].sum())
    metrics["logrank_p"] = float("nan")
    if high.all() or not high.any():
        notes.append(
            f"every case falls in the {'high' if high.all() else 'low'}-risk group at the training cutoff "
            f"{cutoff:.4g}: no log-rank test (the risks of this cohort are shifted against the training cohort's)"
        )
    elif event.any():
        from survpgc.survival.stats import logrank_test

        metrics["logrank_p"] = logrank_test(time, event, high).p_value
    # calibration at each time inside the follow-up
    cal = []
    for t in times:
        if not (t < time.max()):
            notes.append(f"calibration at {t:g} months skipped: beyond the follow-up (last time {time.max():.1f})")
            continue
        # constant hazard within a bin (as D-calibration): the step reading would give S at the end of the
        # previous bin, biasing O/E upward mid-bin (a constant Kaplan-Meier predictor got O/E 2.0 at 12 months)
        pred_t = survival_at(edges, surv, np.array([t]))[:, 0]
        res = calibration_at(time, event, pred_t, t)
        notes += [f"calibration at {t:g} months: {n}" for n in res.notes]
        cal.append(res)
        metrics[f"cal_p_{t:g}"], metrics[f"oe_{t:g}"], metrics[f"ici_{t:g}"] = res.p_value, res.oe_ratio, res.ici
    dcal = None
    try:
        dcal = d_calibration(time, event, survival_at(edges, surv, time[:, None])[:, 0])
        metrics["dcal_statistic"], metrics["dcal_p"] = dcal.statistic, dcal.p_value
    except SurvpgcError as exc:
        notes.append(f"D-calibration: {exc}")
        metrics["dcal_statistic"], metrics["dcal_p"] = float("nan"), float("nan")
    app = apparent_performance(getattr(bundle, "manifest", None) or {}, list(preds["case_id"]), cohort_summary,
                               f"bundle {bundle.path}", time=time, event=event)  # fmt: skip
    metrics["apparent"] = app.apparent
    metrics["apparent_label"] = app.label
    metrics["n_training_cases"] = app.n_training
    metrics["apparent_rule"] = app.rule
    notes += app.notes
    if app.reason:
        notes.append(app.reason)
    return BundleValidation(label, str(bundle.model_id), str(bundle.path), metrics, cal, dcal, preds, app.apparent,
                            app.reason, str(getattr(bundle, "card", "") or ""), notes=notes)  # fmt: skip


def _calibration_frame(results: Sequence[BundleValidation]) -> pd.DataFrame:
    rows = []
    for r in results:
        for c in r.calibration:
            for g in range(len(c.n)):
                rows.append({
                    "model": r.label, "time": c.time, "group": g + 1, "n": int(c.n[g]), "deaths": int(c.deaths[g]),
                    "predicted": c.predicted[g], "predicted_min": c.predicted_min[g],
                    "predicted_max": c.predicted_max[g], "observed": c.observed[g], "observed_low": c.observed_low[g],
                    "observed_high": c.observed_high[g],
                })  # fmt: skip
    cols = ["model", "time", "group", "n", "deaths", "predicted", "predicted_min", "predicted_max", "observed",
            "observed_low", "observed_high"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _comparisons(results: Sequence[BundleValidation], time: np.ndarray, event: np.ndarray, n: int, seed: int):
    from survpgc.survival.stats import paired_bootstrap_cindex

    cols = ["model", "reference", "delta_cindex", "ci_low", "ci_high", "p_value"]
    if len(results) < 2 or n <= 0:
        return pd.DataFrame(columns=cols), []
    ref = results[0]
    rows, notes = [], []
    for r in results[1:]:
        try:
            res = paired_bootstrap_cindex(
                time, event, r.predictions["risk"].to_numpy(float), ref.predictions["risk"].to_numpy(float), n=n,
                seed=seed,
            )  # fmt: skip
        except SurvpgcError as exc:
            notes.append(f"comparison {r.label} vs {ref.label}: {exc}")
            continue
        rows.append({"model": r.label, "reference": ref.label, "delta_cindex": res.diff, "ci_low": res.low,
                     "ci_high": res.high, "p_value": res.p_value})  # fmt: skip
    return pd.DataFrame(rows, columns=cols), notes


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    from survpgc.files import atomic_write

    return atomic_write(path, lambda t: df.to_csv(t, index=False))


# ------------------------------------------------------------------------------------------------ library
def validate_bundles(
    bundles: Sequence[Any],
    cohort: Any,
    out: str | os.PathLike[str],
    *,
    times: Sequence[float] = DEFAULT_TIMES,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    predict: Callable[..., pd.DataFrame] | None = None,
    created: str | None = None,
    oracle: Mapping[str, float] | None = None,
    clinical_tokens: str | os.PathLike[str] | None = None,
) -> ValidationResult:
    """Validate each bundle on ``cohort`` (with survival) and write the tables, plots and ``report.html``.

    Parameters
    ----------
    bundles : sequence of bundles or bundle folders
        Loaded :class:`~survpgc.deploy.bundle.Bundle` objects (or anything with ``path``, ``manifest``,
        ``model_id``, ``time_edges``, ``risk_cutoff``, ``card``) or paths to load. The first is the reference
        of the comparisons.
    cohort : :class:`~survpgc.data.cohort.Cohort`
        The validation cohort; it needs survival times, events and at least one death.
    out : path-like
        Output folder (created; checked writable first; removed again if nothing was written).
    times : sequence of float
        Evaluation times in months (AUC, calibration), strictly increasing; default 12, 36, 60.
    n_bootstrap, seed
        Bootstrap resamples of the C-index intervals and the comparisons (0: none), and their seed.
    device : str
        Where the models run.
    predict : callable, optional
        ``predict(bundle, cohort, device=...) -> DataFrame`` (default
        :func:`~survpgc.deploy.predict.predict_cohort`); for tests.
    created : str, optional
        Timestamp shown in the report (default now), for byte-identical reports.
    oracle : mapping case id -> true risk, optional
        For cohorts with known truth (a synthetic cohort's ``truth.csv``): the C-index of the true risk on the
        same cases, with its bootstrap interval, is reported beside every bundle's (``oracle_cindex*`` columns and
        a note) -- the ceiling of any model on this sample.
    clinical_tokens : path-like, optional
        A folder of `survpgc encode-clinical` tokens of the cohort, made with the bundles' settings (checked against
        each bundle that reads clinical tokens), instead of encoding them with each bundle's text encoder; passed to
        ``predict`` as ``clinical_tokens=`` when given.
    """
    from survpgc.locks import output_dir
    from survpgc.report.validate import write_validation_report

    times = [float(t) for t in times]
    if not times or any(not (math.isfinite(t) and t > 0) for t in times) or np.any(np.diff(times) <= 0):
        raise InputError(f"--times must be positive months in increasing order, got {times}")
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) < 0:
        raise InputError(f"--n-bootstrap must be 0 or a positive integer, got {n_bootstrap}")
    if not bundles:
        raise InputError("no bundle to validate: give at least one --model")
    if predict is None:
        from survpgc.deploy.predict import predict_cohort as predict
    with output_dir(out) as root:
        loaded = [_load(b) for b in bundles]
        if getattr(cohort, "has_survival", True) is False:
            raise InputError(
                f"cohort {cohort.name!r} has no survival times and events: validation needs them "
                "(use `survpgc predict` for new patients without follow-up)"
            )
        ids = list(cohort.case_ids)
        time, event = np.asarray(cohort.time, dtype=np.float64), np.asarray(cohort.event, dtype=bool)
        if not len(ids):
            raise InputError(f"cohort {cohort.name!r} has no cases")
        if not event.any():
            raise InputError(f"cohort {cohort.name!r} has no death (event) among {len(ids)} cases: nothing to validate")
        summary = cohort.summary()
        labels = _unique_labels(loaded)
        results = []
        for bundle, label in zip(loaded, labels, strict=True):
            log.info("validating %s on %s (%d cases)", label, cohort.name, len(ids))
            extra = {} if clinical_tokens is None else {"clinical_tokens": clinical_tokens}
            preds = predict(bundle, cohort, device=device, **extra)
            if list(preds["case_id"].astype(str)) != [str(i) for i in ids]:
                raise InputError(f"predictions of {label} do not follow the cohort's cases (internal error)")
            preds = preds.copy()
            preds.insert(0, "model", label)
            preds.insert(2, "time", time)
            preds.insert(3, "event", event)
            results.append(_score_bundle(bundle, label, preds, time, event, times, n_bootstrap=int(n_bootstrap),
                                         seed=seed, cohort_summary=summary))  # fmt: skip
        metrics = pd.DataFrame([r.metrics for r in results])
        oracle_notes: list[str] = []
        if oracle is not None:
            metrics, oracle_notes = _with_oracle(metrics, oracle, ids, time, event, int(n_bootstrap), seed)
        calibration = _calibration_frame(results)
        comparisons, cmp_notes = _comparisons(results, time, event, int(n_bootstrap), seed)
        predictions = pd.concat([r.predictions for r in results], ignore_index=True)
        _write_csv(root / "metrics.csv", metrics)
        _write_csv(root / "calibration.csv", calibration)
        _write_csv(root / "comparisons.csv", comparisons)
        _write_csv(root / "predictions.csv", predictions)
        notes = oracle_notes + [f"{r.label}: {n}" for r in results for n in r.notes] + cmp_notes
        report = write_validation_report(
            root,
            cohort_summary=summary,
            times=times,
            n_bootstrap=int(n_bootstrap),
            metrics=metrics,
            calibration=calibration,
            comparisons=comparisons,
            predictions=predictions,
            cards={r.label: r.card for r in results},
            apparent={r.label: r.apparent_reason for r in results if r.apparent},
            dcal={r.label: None if r.dcal is None else list(map(float, r.dcal.counts)) for r in results},
            notes=notes,
            created=created,
        )
    return ValidationResult(Path(out), results, metrics, calibration, comparisons, predictions, report, notes)


def _with_oracle(
    metrics: pd.DataFrame,
    oracle: Mapping[str, float],
    ids: list[str],
    time: np.ndarray,
    event: np.ndarray,
    n: int,
    seed: int,
) -> tuple[pd.DataFrame, list[str]]:
    """Add the true risk's C-index (and bootstrap interval) on the same cases to every row of ``metrics``."""
    from survpgc.survival import harrell_cindex

    missing = [i for i in ids if i not in oracle]
    if missing:
        raise InputError(f"the truth table lacks {len(missing)} of the cohort's cases (e.g. {missing[:3]})")
    risk = np.array([float(oracle[i]) for i in ids], dtype=np.float64)
    notes: list[str] = []
    c = float(harrell_cindex(time, event, risk))
    low, high = _harrell_bootstrap(time, event, risk, n, seed, notes)
    out = metrics.copy()
    out["oracle_cindex"], out["oracle_cindex_low"], out["oracle_cindex_high"] = c, low, high
    ci = f" [{low:.3f}, {high:.3f}]" if np.isfinite(low) else ""
    notes.insert(
        0, f"oracle: the true risk of this synthetic cohort has C-index {c:.3f}{ci} on the same cases (the ceiling)"
    )
    return out, notes


def _load(bundle: Any) -> Any:
    if isinstance(bundle, str | os.PathLike):
        from survpgc.deploy.bundle import load_bundle

        return load_bundle(bundle)
    return bundle


def validate_to_dir(
    models: Sequence[str | os.PathLike[str]],
    cohort: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    times: Sequence[float] = DEFAULT_TIMES,
    n_bootstrap: int = 1000,
    seed: int = 0,
    feature_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    endpoint: str = "os",
    time_unit: str = "months",
    on_missing_features: str = "error",
    omics_nonfinite: str = "error",
    clinical_tokens: str | os.PathLike[str] | None = None,
) -> ValidationResult:
    """``survpgc validate``: load the bundles, open ``cohort`` (a built-in name or TCGA-layout folder, with
    survival; ``time_unit`` the unit of its survival times, converted to months), and :func:`validate_bundles` into
    ``out`` (``clinical_tokens``: the cohort's encoded clinical tokens, instead of encoding them here)."""
    from survpgc.deploy.bundle import load_bundle
    from survpgc.deploy.predict import open_cohort_for
    from survpgc.locks import output_dir
    from survpgc.synth.truth import read_truth

    with output_dir(out):
        bundles = [load_bundle(m) for m in models]
        c = open_cohort_for(
            bundles,
            cohort,
            feature_dir=feature_dir,
            endpoint=endpoint,
            time_unit=time_unit,
            on_missing_features=on_missing_features,
            omics_nonfinite=omics_nonfinite,
        )
        oracle = read_truth(cohort) if Path(cohort).is_dir() else None
        return validate_bundles(
            bundles, c, out, times=times, n_bootstrap=n_bootstrap, seed=seed, device=device, oracle=oracle,
            clinical_tokens=clinical_tokens,
        )  # fmt: skip
