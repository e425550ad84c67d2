"""Cross-validation orchestration: one command from a config to a run directory.

For every fold × model: fit on the training part, select on the validation part (per protocol), predict
train / val / test. Everything fitted to data (time bins, omics scalers, the Cox design matrix) is fitted
on the fold's training part only. Each finished fold × model writes its predictions, checkpoint and a
``.json`` record (last, atomically); rerunning the same command skips finished pairs. The files and their
names belong to :class:`survpgc.rundir.RunDir`; the inputs of a fold to :mod:`survpgc.inputs`.

Integrity:

* every input is checked before fold 0 (:meth:`survpgc.inputs.RunInputs.check`), and nothing is written to the
  run directory before that, so a run that fails at once leaves no ``--out`` behind
  (:func:`survpgc.locks.output_dir`, which also checks up front that ``--out`` can be written);
* several processes may share one run directory (two ``survpgc run``, or jobs started with ``--fold`` /
  ``--model``): each fold × model pair is claimed (:func:`survpgc.locks.claim`) by the process that trains it,
  the others take the pairs not yet claimed; the config check and the run-level tables and report are built
  under the folder lock (:func:`survpgc.locks.folder_lock`) from whatever is finished;
* temporaries a killed process left are swept when the run (or the pair) is next claimed;
* Ctrl-C raises :class:`survpgc.errors.Interrupted` saying how many pairs are finished (a rerun resumes).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.config import RunConfig
from survpgc.devices import (
    barrier,
    in_process_group,
    is_distributed,
    is_main_process,
    process_group_backend,
    resolve_device,
)
from survpgc.errors import ConfigError, Interrupted, SurvpgcError
from survpgc.faults import fault_point
from survpgc.files import atomic_write
from survpgc.inputs import RunInputs, fold_setup, make_loader, model_modalities
from survpgc.locks import claim, folder_lock, output_dir
from survpgc.rundir import RunDir

__all__ = ["LOCK_WAIT", "ORACLE_COLUMN", "RunResult", "run_cv"]

log = logging.getLogger(__name__)

#: Seconds a process waits for the run directory's lock while another one checks its config or builds the
#: run's tables and report (then :class:`~survpgc.errors.BusyError` names the holder).
LOCK_WAIT = 600.0

#: The per-fold column (metrics.csv) of the oracle of a synthetic cohort: Harrell's C of its true risk on the same
#: test cases; summary.csv has ``<it>_mean``, ``_sd`` and ``_n`` per model.
ORACLE_COLUMN = "oracle_cindex"


@dataclass
class RunResult:
    out_dir: Path
    summary: pd.DataFrame
    metrics: pd.DataFrame
    comparisons: pd.DataFrame
    n_done: int
    n_total: int
    trained: list[str] = field(default_factory=list)
    report: Path | None = None
    #: cases in no fold's test part (imported splits): no metric counts them
    untested: list[str] = field(default_factory=list)
    #: pairs left to another process that had claimed them (``<model>_fold<k>``)
    elsewhere: list[str] = field(default_factory=list)


def _init_distributed(device: str) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE, RANK and MASTER_ADDR set; one process or many);
    True when this call created it. The backend follows the training device (``train.device``): nccl on GPUs,
    each process on ``cuda:LOCAL_RANK``; gloo on CPUs (also on a GPU machine told ``train.device=cpu``)."""
    import torch
    import torch.distributed as dist

    torchrun = all(k in os.environ for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR"))
    if not torchrun or not dist.is_available() or dist.is_initialized():
        return False
    dev = resolve_device(device)
    backend = process_group_backend(dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    log.info("distributed training: rank %d of %d (%s, %s)", dist.get_rank(), dist.get_world_size(), backend, dev)
    return True


def _surv_columns(surv: np.ndarray) -> dict[str, np.ndarray]:
    return {f"surv_{k}": surv[:, k] for k in range(surv.shape[1])}


def _run_neural(entry, data: RunInputs, fold, binner, mods, cfg: RunConfig, ck_path: Path):
    from safetensors.torch import save_file

    from survpgc.train.loop import fit, predict

    setup = fold_setup(entry, data, fold, binner, mods)
    model, ds, train_ds = setup.model, setup.dataset, setup.train
    w = cfg.data.num_workers
    bs = cfg.train.batch_size
    train_loader = make_loader(train_ds, bs, True, w, cfg.seed + fold.index)
    val_loader = make_loader(ds(fold.val, False), max(bs, 8), False, w, 0) if fold.val else None

    bar = _PROGRESS.get("bar")
    task = None
    if bar is not None:
        task = bar.add_task(f"fold {fold.index} {entry.id}", total=cfg.train.epochs, status="")

    def on_epoch(row):
        if bar is not None:
            val = f" val C {row['val_cindex']:.3f}" if "val_cindex" in row else ""
            bar.update(task, advance=1, status=f"loss {row['train_loss']:.4f}{val}")
        # with a live bar the per-epoch line would only scroll the console (the history is in folds/*.json)
        log.log(
            logging.DEBUG if bar is not None else logging.INFO,
            "fold %d %s epoch %d/%d loss %.4f%s",
            fold.index,
            entry.id,
            row["epoch"],
            cfg.train.epochs,
            row["train_loss"],
            f" val C {row['val_cindex']:.3f}" if "val_cindex" in row else "",
        )

    res = fit(model, train_loader, val_loader, cfg.train, on_epoch=on_epoch)
    if bar is not None:
        bar.update(task, status=f"selected epoch {res.best_epoch}")
    if is_main_process():
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in res.state_dict.items()}  # opens without a GPU

        def write_checkpoint(tmp: Path) -> None:
            save_file(tensors, str(tmp), metadata={"model": entry.name})
            fault_point("checkpoint")  # written to the temporary file, not yet renamed

        atomic_write(ck_path, write_checkpoint)
    frames = []
    device = next(model.parameters()).device  # where fit() left the model
    for split, ids in (("train", fold.train), ("val", fold.val), ("test", fold.test)):
        if not ids or (split == "val" and data.splits.protocol == "paper"):
            continue
        pred = predict(model, make_loader(ds(ids, False), max(bs, 8), False, w, 0), device=device)
        frames.append(
            pd.DataFrame(
                {
                    "case_id": pred["case_id"],
                    "split": split,
                    "time": pred["time"],
                    "event": pred["event"],
                    "risk": pred["risk"],
                    **_surv_columns(pred["survival"]),
                }
            )
        )
    record = {
        "best_epoch": res.best_epoch,
        "selection": res.selection,
        "history": res.history,
        "seconds": res.seconds,
        "precision": res.precision,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    return pd.concat(frames, ignore_index=True), record


def _run_coxph(entry, data: RunInputs, fold, binner):
    from survpgc.models.coxph import CoxPHBaseline

    cohort = data.cohort
    t0 = time.perf_counter()
    train_cases = cohort.cases.loc[list(fold.train)]
    model = CoxPHBaseline(**entry.params).fit(train_cases)
    # survival at the right edge of every bin (the last bin ends at the longest training time)
    edges = [*binner.edges_[1:-1], float(cohort.survival(fold.train)[0].max())]
    frames = []
    for split, ids in (("train", fold.train), ("val", fold.val), ("test", fold.test)):
        if not ids or (split == "val" and data.splits.protocol == "paper"):
            continue
        cases = cohort.cases.loc[list(ids)]
        surv = model.predict_survival(cases, np.asarray(edges))
        frames.append(
            pd.DataFrame(
                {
                    "case_id": list(ids),
                    "split": split,
                    "time": cases["time"].to_numpy(float),
                    "event": cases["event"].to_numpy(bool),
                    "risk": model.predict_risk(cases),
                    **_surv_columns(np.asarray(surv)),
                }
            )
        )
    record = {"best_epoch": None, "selection": "closed form (lifelines CoxPHFitter)", "history": [],
              "seconds": time.perf_counter() - t0, "precision": "fp64",
              "coefficients": {k: float(v) for k, v in model.params_.items()}}  # fmt: skip
    return pd.concat(frames, ignore_index=True), record


def run_cv(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    only_folds: list[int] | None = None,
    only_models: list[str] | None = None,
    progress: bool = False,
) -> RunResult:
    """Run (or resume) the cross-validation described by ``cfg`` into ``out_dir``.

    ``progress`` shows a live bar per fold × model with the epoch, the training loss and the validation
    C-index (the CLI turns it on when stderr is a terminal). ``only_folds`` / ``only_models`` restrict the
    work to some fold × model pairs (for job schedulers: run pairs as independent processes, then once more
    without restriction to build the tables over everything finished). Under ``torchrun`` training is
    data-parallel (DDP; nccl on GPUs, one per process, gloo on CPUs; one process included): every process trains
    on its shard of each fold's training cases with averaged gradients, and process 0 alone writes files.
    """
    out = Path(out_dir)
    created_group = _init_distributed(cfg.train.device)
    if progress and is_main_process():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        _PROGRESS["bar"] = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  {task.fields[status]}"),
            TimeElapsedColumn(),
        )
        _PROGRESS["bar"].start()
    state: dict[str, Any] = {}
    try:
        if not is_main_process():  # process 0 creates the folder; the others write only their own log there
            return _run_cv(cfg, out, only_folds, only_models, state)
        with output_dir(out):
            return _run_cv(cfg, out, only_folds, only_models, state)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(RunDir(out), state)) from None
    finally:
        bar = _PROGRESS.pop("bar", None)
        if bar is not None:
            bar.stop()
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _interrupted_message(run: RunDir, state: dict[str, Any]) -> str:
    """What Ctrl-C leaves: how many pairs are finished, and that the same command resumes."""
    pairs = state.get("pairs")
    if not pairs:
        return f"no fold x model pair was finished in {run.path}; rerun the same command to start again"
    done = sum(run.fold_files(m, k).finished for m, k in pairs)
    return (
        f"{done} of {len(pairs)} fold x model pairs are finished in {run.path}; rerun the same command to resume "
        "(finished pairs are kept)"
    )


def _run_cv(cfg: RunConfig, out: Path, only_folds, only_models, state: dict[str, Any]) -> RunResult:
    run = RunDir(out)
    survpgc_log = logging.getLogger("survpgc")
    # nothing is written before the inputs are checked: log lines wait in memory until run.log can be opened
    buffer = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
    survpgc_log.addHandler(buffer)
    handler = None
    try:
        data = _prepare(cfg, run, only_folds, only_models, state)
        rank = None if is_main_process() else os.environ.get("RANK", "?")
        handler = logging.FileHandler(run.log_file(rank))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        buffer.setTarget(handler)
        buffer.flush()
        survpgc_log.removeHandler(buffer)
        survpgc_log.addHandler(handler)
        if in_process_group():
            import torch.distributed as dist

            log.info("distributed training: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(),
                     dist.get_backend())  # fmt: skip
        _token_sources(run, data)
        return _run(cfg, run, data, only_folds, only_models)
    finally:
        survpgc_log.removeHandler(buffer)
        buffer.close()
        if handler is not None:
            survpgc_log.removeHandler(handler)
            handler.close()


def _on_main(fn) -> None:
    """Run ``fn`` on process 0 alone; under torch.distributed every process raises what it raised."""
    error: BaseException | None = None
    if is_main_process():
        try:
            fn()
        except (SurvpgcError, OSError) as exc:
            error = exc
    if is_distributed():
        import torch.distributed as dist

        box = [None if error is None else str(error)]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            raise ConfigError(f"process 0 stopped: {box[0]}")
    if error is not None:
        raise error


def _agree(value: Any) -> Any:
    """Process 0's ``value`` on every process (itself outside torch.distributed)."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _prepare(cfg: RunConfig, run: RunDir, only_folds, only_models, state: dict[str, Any]) -> RunInputs:
    """Check every input, then (process 0, under the folder lock) check or write config.yaml, sweep what a
    killed process left, and write the splits."""
    data = RunInputs(cfg, splits_dir=run.splits_dir, clinical_dir=run.clinical_dir, write_splits=False)
    _check_selection(cfg, len(data.splits), only_folds, only_models)
    state["pairs"] = [(m.id, f.index) for f in data.splits for m in cfg.models]
    data.check()  # models' modalities, every feature file (header, shape, settings)

    def claim_run() -> None:
        with folder_lock(run.path, wait=LOCK_WAIT, what="run directory"):
            run.claim(cfg)  # write config.yaml, or refuse a run directory holding another config
            run.sweep_run_temporaries()
            data.save_splits()

    _on_main(claim_run)
    barrier()
    return data


def _token_sources(run: RunDir, data: RunInputs) -> None:
    """Build every token source before fold 0 (a bad clinical or omics input is found now, not after training);
    clinical tokens are encoded into the run directory under its lock, once."""
    mods = data.modalities(neural=True)
    if "clinical" in mods:
        if is_main_process():
            with folder_lock(run.path, wait=LOCK_WAIT, what="run directory"):
                data.clinical()
        else:
            data.clinical()
    if "genomic" in mods:
        for fold in data.splits:
            data.genomic(list(fold.train))


#: The rich progress display of the current run (set by ``run_cv(progress=True)``), or nothing.
_PROGRESS: dict[str, Any] = {}


def _check_selection(cfg: RunConfig, n_folds: int, only_folds, only_models) -> None:
    ids = [m.id for m in cfg.models]
    if only_models:
        unknown = sorted(set(only_models) - set(ids))
        if unknown:
            raise ConfigError(f"--model {unknown} not in the config's models {ids}")
    if only_folds:
        bad = [k for k in only_folds if not 0 <= k < n_folds]
        if bad:
            raise ConfigError(f"--fold {bad} out of range 0..{n_folds - 1}")


def _take_pair(run: RunDir, model_id: str, fold: int):
    """``("done" | "elsewhere" | "train", claim)`` for one pair, decided by process 0 and agreed by all."""
    held, decision = None, "done"
    if is_main_process() and run.fold_files(model_id, fold).finished:
        run.sweep_pair_temporaries(model_id, fold)  # nobody writes a finished pair's files any more
    elif is_main_process():
        held = claim(run.path, run.pair_name(model_id, fold))
        if held is None:
            decision = "elsewhere"
        elif run.fold_files(model_id, fold).finished:  # finished by another process since we looked
            held.release()
            held = None
        else:
            run.sweep_pair_temporaries(model_id, fold)
            decision = "train"
    return _agree(decision), held


def _run(cfg: RunConfig, run: RunDir, data: RunInputs, only_folds, only_models) -> RunResult:
    from survpgc.survival.binning import TimeBinner

    cohort = data.cohort
    trained, elsewhere = [], []
    for fold in data.splits:
        if only_folds and fold.index not in only_folds:
            continue
        train_t, train_e = cohort.survival(fold.train)
        binner = TimeBinner(cfg.data.n_bins).fit(train_t, train_e)
        for entry in cfg.models:
            if only_models and entry.id not in only_models:
                continue
            files = run.fold_files(entry.id, fold.index)
            decision, held = _take_pair(run, entry.id, fold.index)
            if decision == "done":
                log.info("fold %d %s: already done, skipped", fold.index, entry.id)
                continue
            if decision == "elsewhere":
                log.info("fold %d %s: being trained by another process; left to it", fold.index, entry.id)
                elsewhere.append(files.record.stem)
                continue
            try:
                mods, neural = model_modalities(entry)
                log.info("fold %d %s: training on %d cases (%s)", fold.index, entry.id, len(fold.train), "+".join(mods))
                if neural:
                    preds, record = _run_neural(entry, data, fold, binner, mods, cfg, files.checkpoint)
                else:
                    preds, record = _run_coxph(entry, data, fold, binner)
                preds.insert(1, "model", entry.id)
                preds.insert(2, "fold", fold.index)
                if is_main_process():
                    record.update({"model": entry.id, "fold": fold.index, "binner": binner.to_dict()})
                    run.write_fold(entry.id, fold.index, preds, record)
            finally:
                if held is not None:
                    held.release()
            barrier()
            trained.append(files.record.stem)
    n_total = len(data.splits) * len(cfg.models)
    untested = list(data.splits.meta.get("untested") or [])
    if not is_main_process():
        empty = pd.DataFrame()
        return RunResult(run.path, empty, empty, empty, 0, n_total, trained, untested=untested)
    if elsewhere:
        log.info(
            "%d pair(s) are being trained by another process (%s); it rebuilds the tables when it finishes",
            len(elsewhere),
            ", ".join(elsewhere[:5]),
        )
    with folder_lock(run.path, wait=LOCK_WAIT, what="run directory"):
        result = _aggregate(cfg, run, data, trained)
    result.untested, result.elsewhere = untested, elsewhere
    return result


def _test_metrics(cfg: RunConfig, run: RunDir, data: RunInputs, preds: pd.DataFrame, pairs) -> tuple:
    """Per model × fold metrics on the test part (censoring fitted on the fold's training part), and notes."""
    from survpgc.eval.tables import fold_metrics
    from survpgc.survival.binning import TimeBinner

    rows, notes = [], []
    reasons: dict[tuple[str, int], list[str]] = {}
    for model_id, k in pairs:
        rec = run.read_record(model_id, k)
        train_t, train_e = data.cohort.survival(data.splits[k].train)
        binner = TimeBinner.from_dict(rec["binner"])
        test = preds[(preds["model"] == model_id) & (preds["fold"] == k) & (preds["split"] == "test")]
        surv = test[[c for c in test.columns if c.startswith("surv_")]].to_numpy(float)
        surv_at = (
            (lambda times, s=surv, b=binner: b.survival_at(s, times)) if surv.size and np.isfinite(surv).all() else None
        )
        m, n = fold_metrics(
            train_t,
            train_e,
            test["time"].to_numpy(float),
            test["event"].to_numpy(bool),
            test["risk"].to_numpy(float),
            times=cfg.eval.times,
            surv_at=surv_at,
        )
        rows.append({"model": model_id, "fold": k, **m, "n_test": int(test["case_id"].nunique()),
                     "best_epoch": rec.get("best_epoch"), "seconds": rec["seconds"]})  # fmt: skip
        notes += [f"{model_id} fold {k}: {x}" for x in n]
        reasons[(model_id, k)] = n
    table = pd.DataFrame(rows).sort_values(["model", "fold"]).reset_index(drop=True)
    return table, notes + _left_out_notes(table, reasons)


def _left_out_notes(metrics: pd.DataFrame, reasons: dict[tuple[str, int], list[str]]) -> list[str]:
    """One note per model and metric whose mean leaves folds out (its value is NaN there), with the reason."""
    from survpgc.eval.registry import metrics_in

    notes = []
    for model_id, g in metrics.groupby("model", sort=False):
        for m in metrics_in(metrics.columns):
            missing = g.loc[g[m.key].isna(), "fold"].astype(int).tolist()
            if not missing:
                continue
            sources = {m.key, "td_auc", "AUC times"} if m.key.startswith("auc_") or m.key == "iauc" else {m.key}
            if m.key == "ibs":
                sources |= {"AUC times"}  # the IBS needs two evaluation times inside the follow-up
            why = []
            for k in missing:
                found = [r for r in reasons.get((model_id, k), []) if any(r.startswith(x) for x in sources)]
                why.append(f"fold {k} ({found[0] if found else 'not computable'})")
            notes.append(
                f"{model_id}: {m.label} is the mean of {len(g) - len(missing)} of {len(g)} folds; left out "
                + "; ".join(why)
            )
    return notes


def _oracle(source: str, preds: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``metrics`` with :data:`ORACLE_COLUMN`: Harrell's C of the true risk on the same test cases as each row,
    when the cohort ``source`` is a folder with a ``truth.csv`` of ``case_id, true_risk`` (a synthetic cohort of
    `survpgc synth`); otherwise ``metrics`` unchanged. Returns ``(metrics, notes)``.

    The oracle is no trained model: it is the ranking by the risk that generated the data, the ceiling a model
    can reach from these inputs. A fold where a test case has no true risk gets NaN and a note.
    """
    from survpgc.data.cohort import BUILTIN_COHORTS
    from survpgc.survival import harrell_cindex
    from survpgc.synth.truth import read_truth

    if metrics.empty or str(source).lower() in BUILTIN_COHORTS or not Path(source).is_dir():
        return metrics, []
    try:
        truth = read_truth(source)
    except (OSError, ValueError) as exc:  # a broken truth table must never sink a finished run
        log.warning("oracle: %s could not be read (%s); no oracle", Path(source) / "truth.csv", exc)
        return metrics, [f"oracle: {Path(source) / 'truth.csv'} could not be read ({exc}); no oracle"]
    if not truth:
        return metrics, []
    test = preds[preds["split"] == "test"]
    notes: list[str] = []
    per_part: dict[tuple[int, tuple[str, ...]], float] = {}
    values = []
    for model_id, k in zip(metrics["model"], metrics["fold"], strict=True):
        part = test[(test["model"] == model_id) & (test["fold"] == k)]
        ids = tuple(part["case_id"].astype(str))
        if (int(k), ids) not in per_part:
            missing = [i for i in ids if i not in truth]
            c = float("nan")
            if missing:
                notes.append(f"oracle fold {k}: {len(missing)} test case(s) have no true risk in truth.csv "
                             f"(e.g. {', '.join(missing[:3])}); no oracle for this fold")  # fmt: skip
            else:
                try:
                    risk = np.array([truth[i] for i in ids], dtype=np.float64)
                    c = float(harrell_cindex(part["time"].to_numpy(float), part["event"].to_numpy(bool), risk))
                except SurvpgcError:  # no event / no comparable pair: the models' C-index is NaN there too
                    pass
            per_part[(int(k), ids)] = c
        values.append(per_part[(int(k), ids)])
    out = metrics.copy()
    out[ORACLE_COLUMN] = values
    by_fold = out.drop_duplicates("fold").set_index("fold")[ORACLE_COLUMN].astype(float).dropna()
    if len(by_fold):
        sd = f" ± {by_fold.std(ddof=1):.3f}" if len(by_fold) > 1 else ""
        notes.insert(
            0,
            f"oracle (true risk): Harrell's C-index of truth.csv's true_risk on the same test cases, "
            f"{by_fold.mean():.3f}{sd} over {len(by_fold)} fold(s): the ceiling a model can reach from these inputs, "
            f"not a trained model ({ORACLE_COLUMN} in metrics.csv, {ORACLE_COLUMN}_mean/_sd/_n in summary.csv)",
        )
    return out, notes


def _oracle_summary(summary: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``oracle_cindex_mean/_sd/_n`` per model: the oracle over the folds that model's C-index
    mean counts (unchanged when ``metrics`` has no oracle)."""
    if ORACLE_COLUMN not in metrics.columns or summary.empty:
        return summary
    stats = {}
    for model_id, g in metrics.groupby("model", sort=False):
        headline = g.loc[g["cindex"].notna()] if "cindex" in g.columns else g
        vals = headline[ORACLE_COLUMN].astype(float).dropna()
        stats[model_id] = (
            float(vals.mean()) if len(vals) else float("nan"),
            float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
            len(vals),
        )
    out = summary.copy()
    for j, suffix in enumerate(("mean", "sd", "n")):
        out[f"{ORACLE_COLUMN}_{suffix}"] = [stats.get(m, (float("nan"), float("nan"), 0))[j] for m in out["model"]]
    return out


def _aggregate(cfg: RunConfig, run: RunDir, data: RunInputs, trained: list[str]) -> RunResult:
    from survpgc.eval.tables import compare_models, summarize
    from survpgc.report.run import build_run_report

    n_total = len(data.splits) * len(cfg.models)
    pairs = list(run.finished_folds([m.id for m in cfg.models], len(data.splits)))
    if not pairs:
        empty = pd.DataFrame()
        return RunResult(run.path, empty, empty, empty, 0, n_total, trained)
    preds = pd.concat([run.read_fold_predictions(m, k) for m, k in pairs], ignore_index=True)
    run.write_table("predictions", preds)
    metrics, notes = _test_metrics(cfg, run, data, preds, pairs)
    metrics, oracle_notes = _oracle(cfg.cohort.source, preds, metrics)
    run.write_table("metrics", metrics)
    order = {m.id: i for i, m in enumerate(cfg.models)}
    summary = _oracle_summary(summarize(metrics, data.splits.protocol), metrics)
    summary = summary.sort_values("model", key=lambda s: s.map(order)).reset_index(drop=True)
    run.write_table("summary", summary)
    ref = cfg.eval.reference if cfg.eval.reference in order else cfg.models[0].id
    comparisons = compare_models(preds, ref, n=cfg.eval.bootstrap, seed=cfg.seed)
    run.write_table("comparisons", comparisons)
    untested = list(data.splits.meta.get("untested") or [])
    cohort_summary = data.cohort.summary()
    if untested:
        notes.insert(
            0,
            f"{len(untested)} case(s) never tested (in no test part of the splits), counted in no metric: "
            + ", ".join(untested),
        )
        cohort_summary["n_cases_tested"] = cohort_summary["n_cases"] - len(untested)
        cohort_summary["never_tested"] = ", ".join(untested)
    run.write_notes(oracle_notes + notes)
    result = RunResult(run.path, summary, metrics, comparisons, len(pairs), n_total, trained, untested=untested)
    result.report = build_run_report(
        run, config=cfg.to_dict(), cohort_summary=cohort_summary, protocol=data.splits.protocol
    )
    return result
