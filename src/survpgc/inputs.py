"""The inputs of a run: a config turned into a cohort, its folds, token sources, datasets and untrained models.

Used by the cross-validation runner (:mod:`survpgc.train.cv`) to train, and by :mod:`survpgc.rundir` to reopen a
finished run with exactly the same inputs (the omics scaler refitted on the same training cases, the same time
bins, the same model shapes), so a fold model can be rebuilt and its checkpoint loaded strictly.

* :class:`RunInputs` -- cohort, splits and the modality sources of a run, built once and shared by folds;
* :func:`fold_setup` -- the untrained model of one model entry for one fold and its dataset factory;
* :func:`model_modalities` -- which inputs a configured model reads, and whether it is a neural network;
* :func:`make_loader` -- the ``DataLoader`` every stage uses (sharded under ``torch.distributed``; training
  batches of similar bag length with ``data.bucket``).

:meth:`RunInputs.check` looks at every input a run will read before its first fold trains: each feature file's
header and shape, and that all feature files were made with the same settings (encoder, dim, patch size,
magnification), so a bad or odd file is named at once rather than after hours of training; with ``data.store``
also that the feature store holds every file, unchanged since it was built (:mod:`survpgc.data.store`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.config import ModelEntry, RunConfig
from survpgc.data.store import FEATURE_SETTINGS, check_feature_files
from survpgc.devices import barrier, is_distributed, is_main_process
from survpgc.errors import ConfigError, DataError

__all__ = [
    "FEATURE_SETTINGS",
    "FoldSetup",
    "RunInputs",
    "check_feature_files",
    "fold_setup",
    "make_loader",
    "model_modalities",
]

log = logging.getLogger(__name__)


class RunInputs:
    """Cohort, splits and modality sources of a run (built once, shared by folds).

    ``splits_dir``: where the splits are written on first use (and kept; a resumed run reads the same cases).
    ``clinical_dir``: where clinical tokens are encoded when the config gives no ``clinical.tokens_dir``.
    ``write_splits``: False to write nothing yet (the runner checks the inputs first, then calls
    :meth:`save_splits`).
    """

    def __init__(self, cfg: RunConfig, *, splits_dir: Path, clinical_dir: Path, write_splits: bool = True) -> None:
        from survpgc.data.cohort import open_cohort

        self.cfg = cfg
        self.cohort = open_cohort(
            cfg.cohort.source,
            endpoint=cfg.cohort.endpoint,
            feature_dir=cfg.pathology.feature_dir,
            on_invalid_survival=cfg.cohort.on_invalid_survival,
            on_missing_features=cfg.cohort.on_missing_features,
            omics_nonfinite=cfg.cohort.omics_nonfinite,
            time_unit=cfg.cohort.time_unit,
        )
        self.splits_dir = Path(splits_dir)
        self.splits = self._splits()
        self.clinical_dir = Path(clinical_dir)
        self._clinical = None
        self._genomic: dict[tuple[str, ...], Any] = {}
        self._store = None
        if write_splits:
            self.save_splits()
            barrier()

    def save_splits(self) -> None:
        """Write the splits to ``splits_dir`` unless they are there (process 0 only; no barrier)."""
        if is_main_process() and not (self.splits_dir / "splits.json").is_file():
            self.splits.to_dir(self.splits_dir)

    def _splits(self):
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
        return splits

    def clinical(self):
        """The run's clinical token source (encoded into ``clinical_dir`` once, unless tokens_dir is given)."""
        if self._clinical is None:
            from survpgc.clinical.encode import encode_clinical, load_clinical_tokens

            cc = self.cfg.clinical
            path = Path(cc.tokens_dir) if cc.tokens_dir else self.clinical_dir
            if not cc.tokens_dir and is_main_process():
                encode_clinical(
                    self.cohort,
                    path,
                    encoder=cc.encoder,
                    n_templates=cc.n_templates,
                    seed=cc.seed,
                    missing=cc.missing,
                    templates=cc.templates,
                )
            barrier()
            self._clinical = load_clinical_tokens(path, case_ids=self.cohort.case_ids)
        return self._clinical

    def feature_store(self):
        """The run's feature store (``data.store``), opened once; None when the config names none."""
        if self.cfg.data.store is None:
            return None
        if self._store is None:
            from survpgc.data.store import FeatureStore

            self._store = FeatureStore(self.cfg.data.store)
        return self._store

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

    def check_models(self) -> None:
        """Before any training: every model's required modality must exist in the cohort."""
        cfg, cohort = self.cfg, self.cohort
        mt = cohort.modality_table()
        for i, entry in enumerate(cfg.models):
            mods, _ = model_modalities(entry)
            where = f"models[{i}] ({entry.id})"
            if "pathology" in mods and not mt["features"].any():
                raise ConfigError(
                    f"{where} needs pathology features, but cohort {cohort.name!r} has none: set "
                    "pathology.feature_dir=DIR (one <slide stem>.h5 per slide, e.g. from `survpgc extract`)"
                )
            if "genomic" in mods and cfg.genomic.kind == "none":
                raise ConfigError(f"{where} needs genomic input, but genomic.kind is none")
            if "genomic" in mods and cfg.genomic.kind != "scfoundation" and not mt["omics"].any():
                raise ConfigError(f"{where} needs genomic input, but cohort {cohort.name!r} has no omics table")
            if "clinical" in mods and not mt["clinical"].any():
                raise ConfigError(f"{where} needs clinical fields, but the cohort has none")

    def modalities(self, *, neural: bool = False) -> set[str]:
        """Every modality some configured model reads (``neural``: only the neural networks, which read token
        sources and feature files; the Cox baseline reads the cohort table)."""
        out: set[str] = set()
        for entry in self.cfg.models:
            mods, is_neural = model_modalities(entry)
            if is_neural or not neural:
                out |= set(mods)
        return out

    def check(self) -> None:
        """Before any training: the models' modalities exist (:meth:`check_models`), every feature file of the
        cohort can be opened (header and shape) and all of them were made with the same settings.

        Raises :class:`DataError` naming the bad file, or two files that disagree and the setting.
        """
        self.check_models()
        if "pathology" in self.modalities():
            paths = [Path(p) for p in self.cohort.slides["feature_path"].dropna()]
            settings = check_feature_files(paths)
            self.check_store(paths, settings)

    def check_store(self, paths: list[Path], settings: dict[str, Any] | None = None) -> None:
        """With ``data.store``: every feature file of the run is in the store and unchanged since it was built,
        and the store's settings are the files' (:class:`DataError` naming the file or the setting)."""
        store = self.feature_store()
        if store is None:
            return
        from survpgc.files import same_setting

        for p in paths:
            store.locate(p)
        for key, value in (settings or {}).items():
            have = store.record.get("settings", {}).get(key)
            if have is not None and not same_setting(have, value):
                raise DataError(
                    f"data.store {store.path} was built from files with {key} {have!r}, the run's feature files "
                    f"have {value!r}; rebuild the store from pathology.feature_dir"
                )
        log.info("data.store %s holds all %d feature file(s) of the run", store.path, len(paths))


def model_modalities(entry: ModelEntry) -> tuple[tuple[str, ...], bool]:
    """``(modalities the configured model reads, whether it is a neural network)``."""
    from survpgc.models import get_model_spec

    spec = get_model_spec(entry.name)
    mods = spec.modalities
    if "modality" in entry.params:
        mods = (entry.params["modality"],)
    return tuple(mods), spec.neural


def make_loader(ds, batch_size: int, shuffle: bool, workers: int, seed: int, *, bucket: int | None = None):
    """A ``DataLoader`` with survpgc's collate; shuffled training loaders shard the cases under DDP.

    The order of the cases is drawn from a generator of its own, seeded with ``seed``, so it does not depend on
    ``workers``: a ``DataLoader`` also draws a base seed from its ``generator`` each time an iterator is created
    (every epoch without persistent workers, once with them), which would shift a shared generator from the
    second epoch on. Patch sampling is seeded per (seed, epoch, case) in the dataset.

    ``bucket`` (default: the dataset's ``bucket`` attribute, ``data.bucket``): for a shuffled loader with
    ``batch_size`` > 1, pools of this many batches are sorted by bag length before batching
    (:class:`~survpgc.data.buckets.BucketBatchSampler`, drawn from ``(seed, epoch)`` with the epoch read from the
    dataset, sharded by batches under DDP); 0 = plain random batches. A dataset read from a feature store gets
    each batch's cases announced one batch ahead (:class:`~survpgc.data.buckets.PrefetchBatches`), so the disk
    reads them during the step before; the batches are the same.
    """
    import torch

    from survpgc.data.buckets import BucketBatchSampler, PrefetchBatches
    from survpgc.data.dataset import collate_survival

    g = torch.Generator().manual_seed(seed)
    pool = int(getattr(ds, "bucket", 0) if bucket is None else bucket)
    common = {"collate_fn": collate_survival, "num_workers": workers, "generator": g, "persistent_workers": workers > 0}
    sampler = batches = None
    if shuffle and batch_size > 1 and pool >= 2 and hasattr(ds, "bag_lengths"):
        replicas, rank = 1, 0
        if is_distributed():
            import torch.distributed as dist

            replicas, rank = dist.get_world_size(), dist.get_rank()
        batches = BucketBatchSampler(
            ds.bag_lengths(), batch_size, pool=pool, seed=seed, epoch_source=ds, num_replicas=replicas, rank=rank
        )
    elif shuffle and is_distributed():
        # each process trains on its own shard of the cases; the shards change every epoch (set_epoch)
        sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=seed)
    elif shuffle:
        sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(seed))
    if getattr(ds, "store", None) is not None:  # read each batch's rows from the store while the one before trains
        if batches is None:
            inner = sampler if sampler is not None else torch.utils.data.SequentialSampler(ds)
            batches = torch.utils.data.BatchSampler(inner, batch_size, drop_last=False)
        batches = PrefetchBatches(batches, ds.prefetch, sampler=sampler, epoch_source=ds)
    if batches is not None:
        return torch.utils.data.DataLoader(ds, batch_sampler=batches, **common)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False if sampler is not None else shuffle,
        sampler=sampler,
        **common,
    )


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


def _fold_sources(entry, inputs: RunInputs, fold, mods) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The fold's token sources, the model's input dims, and extra model arguments (gene groups)."""
    from survpgc.models.registry import model_accepts

    sources: dict[str, Any] = {}
    dims: dict[str, Any] = {"n_bins": inputs.cfg.data.n_bins}
    extra: dict[str, Any] = {}
    if "clinical" in mods:
        sources["clinical"] = inputs.clinical()
        dims["clin_dim"] = sources["clinical"].dim
        dims["n_clin_tokens"] = sources["clinical"].n_tokens
    if "genomic" in mods:
        src = inputs.genomic(list(fold.train))
        sources["genomic"] = src
        dims["gen_dim"] = src.dim
        if getattr(src, "groups", None) is not None and model_accepts(entry.name, "groups"):
            extra["groups"] = src.groups  # gene groups (pathways / families) for models with per-group encoders
    return sources, dims, extra


def fold_setup(entry, inputs: RunInputs, fold, binner, mods) -> FoldSetup:
    """Build the untrained model of ``entry`` for ``fold`` and its dataset factory (see :class:`FoldSetup`)."""
    import torch

    from survpgc.data.dataset import SurvivalDataset
    from survpgc.models import create_model

    cfg, cohort = inputs.cfg, inputs.cohort
    sources, dims, extra = _fold_sources(entry, inputs, fold, mods)
    bin_of = dict(zip(cohort.case_ids, binner.transform(cohort.time), strict=True))
    store = inputs.feature_store() if "pathology" in mods else None

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
            cache_bytes=None if cfg.data.cache_gb is None else int(cfg.data.cache_gb * 1e9),
            store=store,
            bucket=cfg.data.bucket,
            seed=cfg.seed + fold.index,
        )

    train_ds = ds(fold.train, True)
    if "pathology" in mods:
        dims["path_dim"] = train_ds.dims["pathology"]  # from the first feature file
    torch.manual_seed(cfg.seed + 1000 * fold.index)
    model = create_model(entry.name, **dims, **{**entry.params, **extra})
    return FoldSetup(model, ds, tuple(mods), train_ds)
