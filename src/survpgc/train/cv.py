"""Cross-validation orchestration: one command from a config to a run directory.

For every fold × model: fit on the training part, select on the validation part (per protocol), predict
train / val / test. Everything fitted to data (time bins, omics scalers, the Cox design matrix) is fitted
on the fold's training part only. Each finished fold × model writes its predictions, checkpoint and a
``.json`` record (last, atomically) under ``folds/``; rerunning the same command skips finished pairs.

Run directory::

    config.yaml  splits/  folds/  checkpoints/  predictions.csv  metrics.csv  summary.csv
    comparisons.csv  km_<model>.png  forest_cindex.png  report.html  run.log
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.config import ModelEntry, RunConfig
from survpgc.errors import ConfigError
from survpgc.files import atomic_write, atomic_write_text

__all__ = ["RunResult", "run_cv"]

log = logging.getLogger(__name__)


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


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda t: df.to_csv(t, index=False))


def _safe_name(model_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_id)


def fold_files(out: Path, model_id: str, fold: int) -> tuple[Path, Path, Path]:
    """``(record .json, predictions .csv, checkpoint .safetensors)`` of one fold × model of a run."""
    stem = f"{_safe_name(model_id)}_fold{fold}"
    return out / "folds" / f"{stem}.json", out / "folds" / f"{stem}.csv", out / "checkpoints" / f"{stem}.safetensors"


class _RunData:
    """Cohort, splits and modality sources of a run (built once, shared by folds)."""

    def __init__(self, cfg: RunConfig, out: Path) -> None:
        from survpgc.data.cohort import open_cohort

        self.cfg = cfg
        self.cohort = open_cohort(
            cfg.cohort.source,
            endpoint=cfg.cohort.endpoint,
            feature_dir=cfg.pathology.feature_dir,
            on_invalid_survival=cfg.cohort.on_invalid_survival,
            on_missing_features=cfg.cohort.on_missing_features,
        )
        self.splits = self._splits(out)
        self._clinical = None
        self._genomic: dict[tuple[str, ...], Any] = {}
        self.out = out

    def _splits(self, out: Path):
        from survpgc.data.splits import load_splits, make_splits

        sc = self.cfg.splits
        if sc.split_dir:
            src = self.cohort.meta.get("paper_splits") if sc.split_dir == "paper" else sc.split_dir
            if not src:
                raise ConfigError("splits.split_dir=paper, but this cohort ships no paper splits")
            splits = load_splits(
                src, protocol=sc.protocol, cohort=self.cohort, val_fraction=sc.val_fraction, seed=sc.seed
            )
        else:
            splits = make_splits(
                self.cohort.case_ids,
                self.cohort.time,
                self.cohort.event,
                n_folds=sc.folds,
                val_fraction=sc.val_fraction,
                protocol=sc.protocol,
                seed=sc.seed,
            )
        if _is_main() and not (out / "splits" / "splits.json").is_file():
            splits.to_dir(out / "splits")
        _barrier()
        return splits

    def clinical(self):
        if self._clinical is None:
            from survpgc.clinical.encode import encode_clinical, load_clinical_tokens

            cc = self.cfg.clinical
            path = Path(cc.tokens_dir) if cc.tokens_dir else self.out / "clinical"
            if not cc.tokens_dir and _is_main():
                encode_clinical(
                    self.cohort,
                    path,
                    encoder=cc.encoder,
                    n_templates=cc.n_templates,
                    seed=cc.seed,
                    missing=cc.missing,
                    templates=cc.templates,
                )
            _barrier()
            self._clinical = load_clinical_tokens(path, case_ids=self.cohort.case_ids)
        return self._clinical

    def genomic(self, train_ids: list[str]):
        """The fold's genomic token source (scaler fitted on ``train_ids``), built once per fold."""
        key = tuple(train_ids)
        if key not in self._genomic:
            self._genomic[key] = self._build_genomic(train_ids)
        return self._genomic[key]

    def _build_genomic(self, train_ids: list[str]):
        gc = self.cfg.genomic
        if gc.kind == "none":
            raise ConfigError("a model needs genomic input but genomic.kind is none")
        if self.cohort.omics is None and gc.kind != "scfoundation":
            raise ConfigError(f"a model needs genomic input but cohort {self.cohort.name!r} has no omics table")
        if gc.kind == "scfoundation":
            from survpgc.genomics.scfoundation import load_scfoundation

            if not gc.scfoundation:
                raise ConfigError("genomic.kind=scfoundation needs genomic.scfoundation (the embedding file)")
            return load_scfoundation(gc.scfoundation, cases=self.cohort.case_ids)
        from survpgc.genomics.tokens import omics_tokens

        kwargs: dict[str, Any] = {"train_ids": train_ids, "scaler": gc.scaler, "data_types": gc.data_types}
        if gc.kind == "pathways":
            kwargs["signatures"] = gc.signatures
        return omics_tokens(self.cohort, gc.kind, **kwargs)


def _model_modalities(entry: ModelEntry) -> tuple[tuple[str, ...], bool]:
    from survpgc.models import get_model_spec

    spec = get_model_spec(entry.name)
    mods = spec.modalities
    if "modality" in entry.params:
        mods = (entry.params["modality"],)
    return tuple(mods), spec.neural


def _loader(ds, batch_size: int, shuffle: bool, workers: int, seed: int):
    import torch

    from survpgc.data.dataset import collate_survival
    from survpgc.train.loop import is_distributed

    g = torch.Generator().manual_seed(seed)
    sampler = None
    if shuffle and is_distributed():
        # each process trains on its own shard of the cases; the shards change every epoch (set_epoch)
        sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=seed)
        shuffle = False
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        collate_fn=collate_survival,
        num_workers=workers,
        generator=g,
        persistent_workers=workers > 0,
    )


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _init_distributed() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); True when this call created it."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    log.info("distributed training: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def _surv_columns(surv: np.ndarray) -> dict[str, np.ndarray]:
    return {f"surv_{k}": surv[:, k] for k in range(surv.shape[1])}


@dataclass
class FoldSetup:
    """What a fold × model needs before training: the (untrained) model and a dataset factory.

    ``dataset(ids, train)`` builds a :class:`~survpgc.data.dataset.SurvivalDataset` of the fold's sources
    (omics scaler fitted on the fold's training part, the fold's time bins). Shared by training and by the
    interpretation commands, which rebuild the same model and inputs from a run directory.
    """

    model: Any
    dataset: Any
    modalities: tuple[str, ...]
    train: Any  #: ``dataset(fold.train, True)``, built once (it also gave the pathology feature dim)


def fold_setup(entry, data: _RunData, fold, binner, mods, cfg: RunConfig) -> FoldSetup:
    """Build the untrained model of ``entry`` for ``fold`` and its dataset factory (see :class:`FoldSetup`)."""
    import torch

    from survpgc.data.dataset import SurvivalDataset
    from survpgc.models import create_model
    from survpgc.models.registry import model_accepts

    cohort = data.cohort
    sources: dict[str, Any] = {}
    dims: dict[str, Any] = {"n_bins": cfg.data.n_bins}
    extra: dict[str, Any] = {}
    if "clinical" in mods:
        sources["clinical"] = data.clinical()
        dims["clin_dim"] = sources["clinical"].dim
        dims["n_clin_tokens"] = sources["clinical"].n_tokens
    if "genomic" in mods:
        src = data.genomic(list(fold.train))
        sources["genomic"] = src
        dims["gen_dim"] = src.dim
        if getattr(src, "groups", None) is not None and model_accepts(entry.name, "groups"):
            extra["groups"] = src.groups  # gene groups (pathways / families) for models with per-group encoders
    bins = binner.transform(cohort.time)
    bin_of = dict(zip(cohort.case_ids, bins, strict=True))

    def ds(ids, train):
        return SurvivalDataset(
            cohort,
            list(ids),
            bins=np.array([bin_of[c] for c in ids], dtype=np.int64),
            modalities=mods,
            clinical=sources.get("clinical"),
            genomic=sources.get("genomic"),
            n_patches=cfg.data.n_patches,
            train=train,
            cache=cfg.data.cache,
            seed=cfg.seed + fold.index,
        )

    train_ds = ds(fold.train, True)
    if "pathology" in mods:
        dims["path_dim"] = train_ds.dims["pathology"]  # from the first feature file
    torch.manual_seed(cfg.seed + 1000 * fold.index)
    model = create_model(entry.name, **dims, **{**entry.params, **extra})
    return FoldSetup(model, ds, tuple(mods), train_ds)


def _run_neural(entry, data: _RunData, fold, binner, mods, cfg: RunConfig, ck_path: Path):
    from safetensors.torch import save_file

    from survpgc.train.loop import fit, predict

    setup = fold_setup(entry, data, fold, binner, mods, cfg)
    model, ds, train_ds = setup.model, setup.dataset, setup.train
    w = cfg.data.num_workers
    bs = cfg.train.batch_size
    train_loader = _loader(train_ds, bs, True, w, cfg.seed + fold.index)
    val_loader = _loader(ds(fold.val, False), max(bs, 8), False, w, 0) if fold.val else None

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
    if _is_main():
        tensors = {k: v.contiguous() for k, v in res.state_dict.items()}
        atomic_write(ck_path, lambda t: save_file(tensors, str(t), metadata={"model": entry.name}))
    frames = []
    device = next(model.parameters()).device  # where fit() left the model
    for split, ids in (("train", fold.train), ("val", fold.val), ("test", fold.test)):
        if not ids or (split == "val" and data.splits.protocol == "paper"):
            continue
        pred = predict(model, _loader(ds(ids, False), max(bs, 8), False, w, 0), device=device)
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


def _run_coxph(entry, data: _RunData, fold, binner):
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
    without restriction to build the tables over everything finished). Under ``torchrun`` (WORLD_SIZE > 1)
    training is data-parallel (DDP; nccl on GPUs, gloo on CPUs): every process trains on its shard of each
    fold's training cases with averaged gradients, and process 0 alone writes files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    created_group = _init_distributed()
    if progress and _is_main():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        _PROGRESS["bar"] = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  {task.fields[status]}"),
            TimeElapsedColumn(),
        )
        _PROGRESS["bar"].start()
    try:
        return _run_cv(cfg, out, only_folds, only_models)
    finally:
        bar = _PROGRESS.pop("bar", None)
        if bar is not None:
            bar.stop()
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_cv(cfg: RunConfig, out: Path, only_folds, only_models) -> RunResult:
    import yaml

    from survpgc.survival.binning import TimeBinner

    resolved = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    cfg_path = out / "config.yaml"
    if cfg_path.is_file():
        old = yaml.safe_load(cfg_path.read_text())
        new = cfg.to_dict()
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(
                f"{out} holds a run with a different configuration (changed section(s): {', '.join(changed)}); "
                "use a new --out directory, or delete the old run"
            )
    elif _is_main():
        atomic_write_text(cfg_path, resolved)
    _barrier()
    handler = logging.FileHandler(out / ("run.log" if _is_main() else f"run.rank{os.environ.get('RANK', '?')}.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("survpgc").addHandler(handler)
    from survpgc.train.loop import is_distributed

    if is_distributed():
        import torch.distributed as dist

        log.info("distributed training: rank %d of %d", dist.get_rank(), dist.get_world_size())
    try:
        return _run(cfg, out, only_folds, only_models, TimeBinner)
    finally:
        logging.getLogger("survpgc").removeHandler(handler)
        handler.close()


#: The rich progress display of the current run (set by ``run_cv(progress=True)``), or nothing.
_PROGRESS: dict[str, Any] = {}


def _run(cfg, out, only_folds, only_models, TimeBinner) -> RunResult:
    data = _RunData(cfg, out)
    cohort = data.cohort
    ids = [m.id for m in cfg.models]
    if only_models:
        unknown = sorted(set(only_models) - set(ids))
        if unknown:
            raise ConfigError(f"--model {unknown} not in the config's models {ids}")
    if only_folds:
        bad = [k for k in only_folds if not 0 <= k < len(data.splits)]
        if bad:
            raise ConfigError(f"--fold {bad} out of range 0..{len(data.splits) - 1}")
    _check_inputs(cfg, data)
    trained = []
    for fold in data.splits:
        if only_folds and fold.index not in only_folds:
            continue
        train_t, train_e = cohort.survival(fold.train)
        binner = TimeBinner(cfg.data.n_bins).fit(train_t, train_e)
        for entry in cfg.models:
            if only_models and entry.id not in only_models:
                continue
            record_path, preds_path, ck_path = fold_files(out, entry.id, fold.index)
            if record_path.is_file():
                log.info("fold %d %s: already done, skipped", fold.index, entry.id)
                continue
            mods, neural = _model_modalities(entry)
            log.info("fold %d %s: training on %d cases (%s)", fold.index, entry.id, len(fold.train), "+".join(mods))
            if neural:
                preds, record = _run_neural(entry, data, fold, binner, mods, cfg, ck_path)
            else:
                preds, record = _run_coxph(entry, data, fold, binner)
            preds.insert(1, "model", entry.id)
            preds.insert(2, "fold", fold.index)
            if _is_main():
                _atomic_csv(preds, preds_path)
                record.update({"model": entry.id, "fold": fold.index, "binner": binner.to_dict()})
                atomic_write_text(record_path, json.dumps(record, indent=1, default=float))
            _barrier()
            trained.append(record_path.stem)
    if not _is_main():
        empty = pd.DataFrame()
        return RunResult(out, empty, empty, empty, 0, len(data.splits) * len(cfg.models), trained)
    return _aggregate(cfg, out, data, trained)


def _check_inputs(cfg: RunConfig, data: _RunData) -> None:
    """Before any training: every model's required modality must exist in the cohort."""
    mt = data.cohort.modality_table()
    for i, entry in enumerate(cfg.models):
        mods, _ = _model_modalities(entry)
        if "pathology" in mods and not mt["features"].any():
            raise ConfigError(
                f"models[{i}] ({entry.id}) needs pathology features, but cohort {data.cohort.name!r} has none: set "
                "pathology.feature_dir=DIR (one <slide stem>.h5 per slide, e.g. from `survpgc extract`)"
            )
        if "genomic" in mods and cfg.genomic.kind == "none":
            raise ConfigError(f"models[{i}] ({entry.id}) needs genomic input, but genomic.kind is none")
        if "genomic" in mods and cfg.genomic.kind != "scfoundation" and not mt["omics"].any():
            raise ConfigError(
                f"models[{i}] ({entry.id}) needs genomic input, but cohort {data.cohort.name!r} has no omics table"
            )
        if "clinical" in mods and not mt["clinical"].any():
            raise ConfigError(f"models[{i}] ({entry.id}) needs clinical fields, but the cohort has none")


def _aggregate(cfg: RunConfig, out: Path, data: _RunData, trained: list[str]) -> RunResult:
    from survpgc.eval.tables import compare_models, fold_metrics, summarize
    from survpgc.survival.binning import TimeBinner

    cohort = data.cohort
    n_total = len(data.splits) * len(cfg.models)
    parts, records = [], {}
    for fold in data.splits:
        for entry in cfg.models:
            record_path, preds_path, _ = fold_files(out, entry.id, fold.index)
            if record_path.is_file():
                parts.append(pd.read_csv(preds_path, dtype={"case_id": str}))
                records[(entry.id, fold.index)] = json.loads(record_path.read_text())
    if not parts:
        empty = pd.DataFrame()
        return RunResult(out, empty, empty, empty, 0, n_total, trained)
    preds = pd.concat(parts, ignore_index=True)
    _atomic_csv(preds, out / "predictions.csv")
    rows, notes = [], []
    for (model_id, k), rec in records.items():
        fold = data.splits[k]
        train_t, train_e = cohort.survival(fold.train)
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
        rows.append({"model": model_id, "fold": k, **m, "best_epoch": rec.get("best_epoch"), "seconds": rec["seconds"]})
        notes += [f"{model_id} fold {k}: {x}" for x in n]
    metrics = pd.DataFrame(rows).sort_values(["model", "fold"]).reset_index(drop=True)
    _atomic_csv(metrics, out / "metrics.csv")
    summary = summarize(metrics, data.splits.protocol)
    order = {m.id: i for i, m in enumerate(cfg.models)}
    summary = summary.sort_values("model", key=lambda s: s.map(order)).reset_index(drop=True)
    _atomic_csv(summary, out / "summary.csv")
    ref = cfg.eval.reference if cfg.eval.reference in order else cfg.models[0].id
    comparisons = compare_models(preds, ref, n=cfg.eval.bootstrap, seed=cfg.seed)
    _atomic_csv(comparisons, out / "comparisons.csv")
    if notes:
        atomic_write_text(out / "notes.txt", "\n".join(notes) + "\n")
    result = RunResult(out, summary, metrics, comparisons, len(records), n_total, trained)
    result.report = _plots_and_report(cfg, out, data, preds, metrics, summary, comparisons, notes)
    return result


def rebuild_report(cfg: RunConfig, out: Path, data: _RunData) -> Path | None:
    """Redraw the plots and ``report.html`` of a finished run from its tables (nothing recomputed), e.g.
    after interpretation results were added under ``interpret/``."""
    tables = {}
    for name in ("predictions", "metrics", "summary", "comparisons"):
        path = out / f"{name}.csv"
        if not path.is_file():
            raise ConfigError(f"{out}: no {path.name}; finish the run (`survpgc run`) before rebuilding its report")
        tables[name] = pd.read_csv(path, dtype={"case_id": str} if name == "predictions" else None)
    notes_path = out / "notes.txt"
    notes = notes_path.read_text().splitlines() if notes_path.is_file() else []
    return _plots_and_report(
        cfg, out, data, tables["predictions"], tables["metrics"], tables["summary"], tables["comparisons"], notes
    )


def _plots_and_report(cfg, out, data, preds, metrics, summary, comparisons, notes) -> Path | None:
    try:
        from survpgc.report import html as report_html
        from survpgc.report import plots
    except ImportError:  # pragma: no cover - report module missing
        log.warning("report module not available; skipping plots and report.html")
        return None
    images: dict[str, Path] = {}
    for model_id in summary["model"]:
        path = out / f"km_{_safe_name(model_id)}.png"
        try:
            plots.km_for_model(preds, model_id, path)
            images[f"Kaplan-Meier: {model_id}"] = path
        except Exception as exc:  # a plot must never sink a finished run
            log.warning("KM plot for %s failed: %s", model_id, exc)
    forest = out / "forest_cindex.png"
    try:
        plots.forest_plot(metrics, forest, metric="cindex")
        images["C-index per model"] = forest
    except Exception as exc:
        log.warning("forest plot failed: %s", exc)
    from survpgc.explain.report import interpret_sections

    return report_html.write_report(
        out,
        extra_sections=interpret_sections(out),
        cohort_summary=data.cohort.summary(),
        protocol=data.splits.protocol,
        config=cfg.to_dict(),
        summary=summary,
        metrics=metrics,
        comparisons=comparisons,
        images=images,
        notes=notes,
    )
