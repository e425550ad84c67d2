"""``survpgc train``: one final model fitted on all cases of a cohort, written as a bundle.

* **Refit** (default): one model entry of the config (``model_id``, default the first) is trained on every
  case, with no validation part, for a fixed number of epochs: ``epochs`` when given, else the median of the
  epochs selected in a finished CV run's folds (``from_run``; rounded to the nearest integer, halves up; the
  list is recorded). The learning-rate schedule spans those epochs. The run's config must agree with this one
  in everything that decides the model (cohort, modalities and their settings, time bins, model params,
  optimisation except the epochs); otherwise it is refused naming the key and both values.
  Time bins, the omics scaler and gene selection are fitted on the training cohort only (here: all its cases);
  the risk cutoff is the median risk of the training cases under the final model.
* **Ensemble** (``ensemble=True``, needs ``from_run``): the run's fold models as they were trained, one bundle
  member per finished fold, each with its own time bins and omics scaler. Prediction averages the members'
  survival functions on the bundle's bins (a binner fitted on all cases of the run's cohort) and their risks
  (see :mod:`survpgc.deploy.predict`); the risk cutoff is the median ensemble risk over the run's cohort.

* **Cox model** (``coxph``): fitted in closed form on every case (lifelines, as in cross-validation; no epochs).
  The bundle holds its state without pickle (:meth:`survpgc.models.coxph.CoxPHBaseline.export_state`): the
  design (clinical columns, one-hot levels and reference, the training mean, sd and median of numeric columns)
  in ``bundle.json``, and the coefficients, lifelines' centring means and the Breslow baseline cumulative hazard
  at the bin ends (the last bin ending at the longest training time, as in cross-validation) as float64 tensors
  in ``model.safetensors``. Only the baseline at the bin ends is stored, not the event times of the training
  cases (the bin edges themselves are quantiles of the training times, as in every bundle). An ensemble of coxph
  folds is refused (a run keeps their coefficients, not their baseline hazards).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.config import RunConfig
from survpgc.deploy.bundle import (
    binner_to_json,
    member_prefix,
    pathology_spec,
    subtype_counts,
    training_cases_record,
    write_bundle,
)
from survpgc.deploy.card import render_card
from survpgc.errors import ConfigError, InputError

__all__ = ["IGNORED_FOR_FROM_RUN", "TrainResult", "compare_with_run", "epochs_from_run", "train_bundle"]

log = logging.getLogger(__name__)

#: Config keys that may differ between ``--from-run``'s run and the final fit (they do not change the model).
IGNORED_FOR_FROM_RUN: tuple[str, ...] = (
    "name",
    "splits",
    "eval",
    "models",
    "pathology.feature_dir",
    "clinical.tokens_dir",
    "data.cache",
    "data.num_workers",
    "train.epochs",
    "train.select_from_epoch",
    "train.device",
)


class TrainResult:
    """What :func:`train_bundle` wrote: the bundle folder and its manifest."""

    def __init__(self, path: Path, manifest: dict[str, Any], train_predictions: Any = None) -> None:
        self.path, self.manifest, self.train_predictions = path, manifest, train_predictions


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _entry(cfg: RunConfig, model_id: str | None):
    ids = [m.id for m in cfg.models]
    if model_id is None:
        return cfg.models[0]
    for m in cfg.models:
        if m.id == model_id:
            return m
    raise ConfigError(f"--model {model_id!r} is not in the config's models {ids}")


def compare_with_run(cfg: RunConfig, run_cfg: RunConfig, entry: Any, run_path: Path) -> None:
    """Refuse when the run's config differs from ``cfg`` in anything that decides the model: every key except
    :data:`IGNORED_FOR_FROM_RUN`, and the model entry (name and params) of the same id."""
    ignored = IGNORED_FOR_FROM_RUN
    a, b = _flatten(run_cfg.to_dict()), _flatten(cfg.to_dict())
    diffs = []
    for key in sorted(set(a) | set(b)):
        if any(key == i or key.startswith(i + ".") for i in ignored):
            continue
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: run has {a.get(key)!r}, this config has {b.get(key)!r}")
    theirs = {m.id: m for m in run_cfg.models}
    if entry.id not in theirs:
        diffs.append(f"models: the run has no model {entry.id!r} (its models: {list(theirs)})")
    elif (theirs[entry.id].name, theirs[entry.id].params) != (entry.name, entry.params):
        t = theirs[entry.id]
        diffs.append(f"model {entry.id!r}: run has {t.name} {t.params}, this config has {entry.name} {entry.params}")
    if diffs:
        raise ConfigError(
            f"--from-run {run_path}: its config differs in what decides the model ({'; '.join(diffs)}); train with "
            f"the run's config (omit CONFIG, or `survpgc config show {run_path / 'config.yaml'}`), or pass --epochs N "
            "without --from-run"
        )


def epochs_from_run(run: Any, model_id: str) -> tuple[int, list[int]]:
    """``(median of the selected epochs, rounded halves up; the selected epoch of every finished fold)``."""
    cfg = run.read_config()
    n_folds = len(list(run.splits_dir.glob("fold_*.csv"))) or cfg.splits.folds
    selected = [run.read_record(m, k)["best_epoch"] for m, k in run.finished_folds([model_id], n_folds)]
    selected = [int(e) for e in selected if e is not None]
    if not selected:
        raise ConfigError(
            f"--from-run {run.path}: model {model_id!r} has no finished fold with a selected epoch; finish the run "
            "(`survpgc run`) or pass --epochs N"
        )
    return math.floor(float(np.median(selected)) + 0.5), selected


def _cv_metrics(run: Any, model_id: str) -> dict[str, Any] | None:
    try:
        summary = run.read_table("summary")
    except ConfigError:
        return None
    rows = summary[summary["model"] == model_id]
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


# ------------------------------------------------------------------------------------------------ specs
def _input_spec(cfg: RunConfig, inputs: Any, mods: tuple[str, ...], genomic_src: Any, dims: dict[str, Any]):
    """The manifest's ``inputs``: what a cohort must provide for each modality the model reads."""
    from survpgc.clinical.templates import load_templates

    spec: dict[str, Any] = {}
    cohort = inputs.cohort
    if "pathology" in mods:
        files = list(cohort.slides["feature_path"].dropna())
        spec["pathology"] = pathology_spec(files[0])
    if "clinical" in mods:
        man = inputs.clinical().manifest
        ts = load_templates(cfg.clinical.templates)
        if ts.digest() != man.get("template_hash"):
            raise ConfigError(
                f"clinical tokens were made with template set {man.get('template_set')!r}, the config names "
                f"{ts.name!r}; encode them again (or drop clinical.tokens_dir)"
            )
        spec["clinical"] = {
            **{
                k: man.get(k)
                for k in (
                    "encoder",
                    "encoder_identity",
                    "template_set",
                    "template_hash",
                    "n_templates",
                    "seed",
                    "missing",
                    "fields",
                    "dim",
                )
            },
            "templates": {
                "name": ts.name,
                "templates": {k: list(v) for k, v in ts.templates.items()},
                "negative": {k: list(v) for k, v in ts.negative.items()},
                "missing": {k: list(v) for k, v in ts.missing.items()},
            },
        }
    if "genomic" in mods:
        if cfg.genomic.kind == "scfoundation":
            raise ConfigError("genomic.kind=scfoundation cannot be bundled yet (embeddings are per cohort); use flat, "
                              "pathways or families")  # fmt: skip
        spec["genomic"] = {
            "kind": cfg.genomic.kind,
            "signatures": cfg.genomic.signatures,
            "data_types": list(cfg.genomic.data_types),
            "columns": [str(c) for c in genomic_src.columns],
            "group_columns": getattr(genomic_src, "group_columns", None),
        }
    return spec


def _scaler_json(src: Any) -> dict[str, Any] | None:
    scaler = getattr(src, "scaler", None)
    if scaler is None:
        return None
    d = scaler.to_dict()
    d["train_ids"] = []  # no patient ids in a shipped bundle
    return d


def _summary(cohort: Any) -> dict[str, Any]:
    s = cohort.summary()
    keep = ("name", "endpoint", "n_cases", "n_events", "censoring_rate", "time_median_months", "time_range_months",
            "n_slides", "n_omics_features", "coverage", "combinations")  # fmt: skip
    out = {k: s.get(k) for k in keep}
    out["subtypes"] = subtype_counts(cohort)
    t, e = cohort.time, cohort.event
    out["median_followup_months"] = _reverse_km_median(t, e)
    return out


def _reverse_km_median(t: np.ndarray, e: np.ndarray) -> float | None:
    """Median follow-up by the reverse Kaplan-Meier method (censoring as the event)."""
    order = np.argsort(t, kind="stable")
    t, c = t[order], ~e[order]
    s, n = 1.0, len(t)
    for i, ti in enumerate(t):
        if c[i]:
            s *= 1.0 - 1.0 / (n - i)
            if s <= 0.5:
                return float(ti)
    return None


def _write(
    out: Path, cfg: RunConfig, entry: Any, *, kind: str, dims: dict[str, Any], mods: tuple[str, ...], inputs: Any,
    genomic_src: Any, binner: Any, members: list[dict[str, Any]], tensors: dict[str, Any], risk: np.ndarray,
    training: dict[str, Any], cv: dict[str, Any] | None, apparent: dict[str, Any], family: str = "neural",
    clinical_columns: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    if family == "coxph":
        spec = {"clinical_table": {"columns": list(clinical_columns or []),
                                   "note": "clinical columns of the cohort table (not text tokens)"}}  # fmt: skip
    else:
        spec = _input_spec(cfg, inputs, mods, genomic_src, dims)
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": kind,
        "model": {
            "id": entry.id,
            "name": entry.name,
            "family": family,
            "params": entry.params,
            "modalities": list(mods),
            "dims": dims,
        },
        "training": training,
        "time_bins": binner_to_json(binner),
        "risk_cutoff": float(np.median(risk)),
        "risk_cutoff_rule": "median risk of the training cases under the final model; risk > cutoff = high",
        "members": members,
        "inputs": spec,
        "training_cohort": _summary(inputs.cohort),
        "training_cases": training_cases_record(inputs.cohort.case_ids, inputs.cohort.time, inputs.cohort.event),
        "cv_metrics": cv,
        "apparent_metrics": apparent,
        "feature_cache": bool(cfg.data.cache),
        "config": cfg.to_dict(),
    }
    write_bundle(out, manifest, tensors, render_card)
    return manifest


def _apparent(cohort: Any, risk: np.ndarray) -> dict[str, Any]:
    from survpgc.errors import SurvpgcError
    from survpgc.survival.metrics import harrell_cindex

    try:
        c = harrell_cindex(cohort.time, cohort.event, risk)
    except SurvpgcError:
        c = float("nan")
    return {"cindex": None if math.isnan(c) else float(c), "note": "apparent: on the training cases (optimistic)"}


# ------------------------------------------------------------------------------------------------ train
def train_bundle(
    cfg: RunConfig | None,
    out: str | os.PathLike[str],
    *,
    model_id: str | None = None,
    from_run: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    ensemble: bool = False,
    device: str | None = None,
) -> TrainResult:
    """Fit one model on all cases (or bundle a run's fold models) and write the bundle ``out``.

    ``cfg`` None: the config of ``from_run``. See the module docstring for the rules.
    """
    from survpgc.locks import output_dir
    from survpgc.rundir import RunDir

    run = RunDir(from_run) if from_run is not None else None
    run_cfg = run.read_config() if run is not None else None
    if cfg is None:
        if run_cfg is None:
            raise ConfigError("give a CONFIG, or --from-run R to use the run's config")
        cfg = run_cfg
    entry = _entry(cfg, model_id)
    if run_cfg is not None:
        compare_with_run(cfg, run_cfg, entry, run.path)
    from survpgc.inputs import model_modalities

    mods, neural = model_modalities(entry)
    if not neural:
        return _train_cox(cfg, entry, out, run, epochs=epochs, ensemble=ensemble)
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {epochs}")
    if device is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": device})})
    if ensemble:
        if run is None:
            raise ConfigError("--ensemble bundles the fold models of a finished run: give --from-run R")
        if epochs is not None:
            raise ConfigError("--ensemble bundles the run's fold models as trained; --epochs does not apply")
        with output_dir(out) as root:
            _require_empty(root)
            return _ensemble(cfg, entry, mods, run, root)
    if epochs is not None:
        training = {"epochs": int(epochs), "epochs_source": "--epochs", "selected_epochs": None,
                    "from_run": str(run.path) if run else None}  # fmt: skip
    elif run is not None:
        e, selected = epochs_from_run(run, entry.id)
        training = {"epochs": e, "epochs_source": "median of the epochs selected in the run's folds",
                    "selected_epochs": selected, "from_run": str(run.path)}  # fmt: skip
    else:
        raise ConfigError("how many epochs? give --from-run R (a finished CV run: the median of its selected epochs) "
                          "or --epochs N")  # fmt: skip
    cv = _cv_metrics(run, entry.id) if run is not None else None
    with output_dir(out) as root:
        _require_empty(root)
        return _refit(cfg, entry, mods, root, training, cv)


def _train_cox(cfg: RunConfig, entry: Any, out: Any, run: Any, *, epochs: int | None, ensemble: bool) -> TrainResult:
    """The Cox refit (module docstring); ``run`` (a RunDir or None) only gives the CV metrics."""
    from survpgc.locks import output_dir

    if entry.name != "coxph":
        raise ConfigError(f"model {entry.id!r} ({entry.name}) is neither a neural network nor coxph: it cannot be "
                          "bundled; pick another with --model")  # fmt: skip
    if ensemble:
        raise ConfigError(f"--ensemble: a run keeps no fitted {entry.id!r} fold models (only their coefficients); "
                          "bundle a refit on all cases (omit --ensemble)")  # fmt: skip
    if epochs is not None:
        raise ConfigError(f"--epochs does not apply to {entry.id!r}: a Cox model is fitted in closed form (omit it)")
    training = {"epochs": None, "epochs_source": "closed form (lifelines CoxPHFitter), no epochs",
                "selected_epochs": None, "from_run": str(run.path) if run is not None else None}  # fmt: skip
    cv = _cv_metrics(run, entry.id) if run is not None else None
    with output_dir(out) as root:
        _require_empty(root)
        return _refit_cox(cfg, entry, root, training, cv)


def _refit_cox(cfg: RunConfig, entry: Any, out: Path, training: dict[str, Any], cv: Any) -> TrainResult:
    import time

    import torch

    from survpgc.inputs import RunInputs
    from survpgc.models.coxph import CoxPHBaseline
    from survpgc.survival.binning import TimeBinner

    with tempfile.TemporaryDirectory(prefix="survpgc-train-") as work:
        inputs = RunInputs(cfg, splits_dir=Path(work) / "splits", clinical_dir=Path(work) / "clinical",
                           write_splits=False)  # fmt: skip
        cohort = inputs.cohort
        ids = list(cohort.case_ids)
        t0 = time.perf_counter()
        cases = cohort.cases.loc[ids]
        model = CoxPHBaseline(**entry.params).fit(cases)
        binner = TimeBinner(cfg.data.n_bins).fit(*cohort.survival())
        # survival at the right edge of every bin, the last ending at the longest training time (as in CV)
        ends = np.asarray([*binner.edges_[1:-1], float(cohort.survival(ids)[0].max())], dtype=np.float64)
        state = model.export_state(ends)
        risk = model.predict_risk(cases)
        surv = model.predict_survival(cases, ends)
        training = {**training, "seconds": time.perf_counter() - t0, "precision": "fp64",
                    "coefficients": {k: float(v) for k, v in model.params_.items()}}  # fmt: skip
        members = [{"prefix": member_prefix(0), "fold": None, "time_bins": binner_to_json(binner),
                    "genomic_scaler": None, "coxph_design": state.design.to_dict(),
                    "survival_times": [float(t) for t in ends]}]  # fmt: skip
        tensors = {member_prefix(0) + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.arrays().items()}
        manifest = _write(out, cfg, entry, kind="refit", dims={"n_bins": cfg.data.n_bins}, mods=("clinical",),
                          inputs=inputs, genomic_src=None, binner=binner, members=members, tensors=tensors, risk=risk,
                          training=training, cv=cv, apparent=_apparent(cohort, risk), family="coxph",
                          clinical_columns=state.design.required_columns)  # fmt: skip
    return TrainResult(out, manifest, _frame(ids, risk, surv))


def _require_empty(root: Path) -> None:
    if any(p for p in root.iterdir() if not p.name.startswith(".survpgc")):
        raise InputError(f"--out {root} is not empty; a bundle is written into a new (or empty) folder")


def _refit(cfg: RunConfig, entry: Any, mods: tuple[str, ...], out: Path, training: dict[str, Any], cv) -> TrainResult:

    from survpgc.data.splits import Fold
    from survpgc.deploy.predict import predict_batched
    from survpgc.inputs import RunInputs, check_feature_files, fold_setup, make_loader
    from survpgc.survival.binning import TimeBinner
    from survpgc.train.loop import fit

    with tempfile.TemporaryDirectory(prefix="survpgc-train-") as work:
        inputs = RunInputs(cfg, splits_dir=Path(work) / "splits", clinical_dir=Path(work) / "clinical",
                           write_splits=False)  # fmt: skip
        inputs.check_models()
        cohort = inputs.cohort
        if "pathology" in mods:
            check_feature_files([Path(p) for p in cohort.slides["feature_path"].dropna()])
        ids = tuple(cohort.case_ids)
        fold = Fold(0, ids, (), ())
        binner = TimeBinner(cfg.data.n_bins).fit(*cohort.survival())
        setup = fold_setup(entry, inputs, fold, binner, mods)
        tcfg = cfg.train.model_copy(update={"epochs": training["epochs"], "select_from_epoch": training["epochs"]})
        bs = cfg.train.batch_size
        log.info("training %s on all %d cases for %d epochs", entry.id, len(ids), training["epochs"])
        res = fit(setup.model, make_loader(setup.train, bs, True, cfg.data.num_workers, cfg.seed), None, tcfg)
        device = next(setup.model.parameters()).device
        # the in-memory model scores the training cases as `survpgc predict` will (same batching): the cutoff and
        # the round trip compare like with like
        (pred,) = predict_batched([setup.model], setup.dataset(ids, False), device=str(device))
        training = {**training, "seconds": res.seconds, "precision": res.precision, "final_loss": res.history[-1]}
        dims = _dims(setup, cfg, inputs, mods)
        gsrc = inputs.genomic(list(ids)) if "genomic" in mods else None
        members = [{"prefix": member_prefix(0), "fold": None, "time_bins": binner_to_json(binner),
                    "genomic_scaler": _scaler_json(gsrc)}]  # fmt: skip
        tensors = {member_prefix(0) + k: v.detach().cpu() for k, v in res.state_dict.items()}
        manifest = _write(out, cfg, entry, kind="refit", dims=dims, mods=mods, inputs=inputs, genomic_src=gsrc,
                          binner=binner, members=members, tensors=tensors, risk=pred["risk"], training=training,
                          cv=cv, apparent=_apparent(cohort, pred["risk"]))  # fmt: skip
    return TrainResult(out, manifest, _frame(list(ids), pred["risk"], pred["survival"]))


def _frame(ids: list[str], risk: np.ndarray, surv: np.ndarray) -> Any:
    import pandas as pd

    frame = pd.DataFrame({"case_id": ids, "risk": risk})
    for k in range(surv.shape[1]):
        frame[f"surv_{k}"] = surv[:, k]
    return frame


def _dims(setup: Any, cfg: RunConfig, inputs: Any, mods: tuple[str, ...]) -> dict[str, Any]:
    """The input dims the model was built with (as :func:`survpgc.inputs.fold_setup` passes them)."""
    dims: dict[str, Any] = {"n_bins": cfg.data.n_bins}
    ds = setup.train
    if "pathology" in mods:
        dims["path_dim"] = int(ds.dims["pathology"])
    if "clinical" in mods:
        dims["clin_dim"] = int(ds.clinical.dim)
        dims["n_clin_tokens"] = ds.clinical.n_tokens
    if "genomic" in mods:
        dims["gen_dim"] = int(ds.genomic.dim)
    return dims


def _ensemble(cfg: RunConfig, entry: Any, mods: tuple[str, ...], run: Any, out: Path) -> TrainResult:
    from survpgc.deploy.predict import predict_batched
    from survpgc.rundir import RunContext
    from survpgc.survival.binning import TimeBinner

    ctx = RunContext(run)
    folds = ctx.trained_folds(entry.id)
    if not folds:
        raise ConfigError(f"--from-run {run.path}: model {entry.id!r} has no finished fold to bundle")
    cohort = ctx.cohort
    ids = cohort.case_ids
    binner = TimeBinner(cfg.data.n_bins).fit(*cohort.survival())
    members, tensors, outputs = [], {}, []
    selected = []
    for i, k in enumerate(folds):
        lm = ctx.load(entry.id, k)
        rec = run.read_record(entry.id, k)
        selected.append(rec.get("best_epoch"))
        fold_binner = TimeBinner.from_dict(rec["binner"])
        gsrc = ctx.inputs.genomic(list(ctx.splits[k].train)) if "genomic" in mods else None
        members.append({"prefix": member_prefix(i), "fold": k, "time_bins": binner_to_json(fold_binner),
                        "genomic_scaler": _scaler_json(gsrc)})  # fmt: skip
        tensors.update({member_prefix(i) + n: v.detach().cpu() for n, v in lm.model.state_dict().items()})
        (p,) = predict_batched([lm.model], lm.dataset(ids))
        outputs.append((p["risk"], p["survival"], fold_binner))
        dims = _dims(lm.setup, cfg, ctx.inputs, mods)
    risk = np.mean([r for r, _, _ in outputs], axis=0)
    training = {"epochs": None, "epochs_source": "the run's fold models as trained (ensemble)",
                "selected_epochs": selected, "from_run": str(run.path), "folds": folds}  # fmt: skip
    manifest = _write(out, cfg, entry, kind="ensemble", dims=dims, mods=mods, inputs=ctx.inputs,
                      genomic_src=gsrc, binner=binner, members=members, tensors=tensors, risk=risk,
                      training=training, cv=_cv_metrics(run, entry.id),
                      apparent=_apparent(cohort, risk))  # fmt: skip
    return TrainResult(out, manifest, _frame(list(ids), risk, np.zeros((len(ids), 0))))
