"""The run directory: the one place that names, writes, reads and reopens the files of a ``survpgc run``.

Layout of a run directory (every path below comes from :class:`RunDir`; nothing else spells a file name)::

    config.yaml                      the resolved config (a rerun with another config is refused)
    splits/                          the folds (case_id, split per fold)
    clinical/                        clinical tokens, when the config names no tokens_dir
    folds/<model>_fold<k>.json       record of one fold x model (history, selected epoch, time bins), written last
    folds/<model>_fold<k>.csv        its predictions (train / val / test)
    checkpoints/<model>_fold<k>.safetensors
    predictions.csv metrics.csv summary.csv comparisons.csv notes.txt
    km_<model>.png forest_cindex.png report.html run.log
    interpret/                       heatmaps, attributions, localisation (the explain commands)

:meth:`RunDir.reopen` gives a :class:`RunContext`: the run's config, cohort and folds rebuilt with the runner's
own input code (:mod:`survpgc.inputs`), from which any fold model is rebuilt and its checkpoint loaded strictly,
so interpretation explains each case with the model of the fold that tested it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from survpgc.config import RunConfig, load_config
from survpgc.errors import ConfigError, InputError
from survpgc.faults import fault_point
from survpgc.files import atomic_write, atomic_write_text, safe_name
from survpgc.locks import sweep_temporaries

__all__ = ["TABLES", "FoldFiles", "LoadedModel", "RunContext", "RunDir", "safe_name"]

log = logging.getLogger(__name__)

#: The run-level tables, in the order they are written.
TABLES: tuple[str, ...] = ("predictions", "metrics", "summary", "comparisons")


@dataclass(frozen=True)
class FoldFiles:
    """The files of one fold × model: the record (written last, so its presence means finished), predictions
    and checkpoint."""

    record: Path
    predictions: Path
    checkpoint: Path

    @property
    def finished(self) -> bool:
        return self.record.is_file()


class RunDir:
    """Names and reads the files of one run directory (see the module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ names
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def splits_dir(self) -> Path:
        return self.path / "splits"

    @property
    def clinical_dir(self) -> Path:
        return self.path / "clinical"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    @property
    def notes_file(self) -> Path:
        return self.path / "notes.txt"

    @property
    def interpret_dir(self) -> Path:
        return self.path / "interpret"

    @property
    def forest_plot(self) -> Path:
        return self.path / "forest_cindex.png"

    def log_file(self, rank: int | str | None = None) -> Path:
        """``run.log`` (the writing process), ``run.rank<r>.log`` for the other processes of a DDP run."""
        return self.path / ("run.log" if rank is None else f"run.rank{rank}.log")

    def table(self, name: str) -> Path:
        if name not in TABLES:
            raise InputError(f"unknown run table {name!r}; one of {list(TABLES)}")
        return self.path / f"{name}.csv"

    def km_plot(self, model_id: str) -> Path:
        return self.path / f"km_{safe_name(model_id)}.png"

    def fold_files(self, model_id: str, fold: int) -> FoldFiles:
        stem = f"{safe_name(model_id)}_fold{fold}"
        return FoldFiles(
            self.path / "folds" / f"{stem}.json",
            self.path / "folds" / f"{stem}.csv",
            self.path / "checkpoints" / f"{stem}.safetensors",
        )

    # ------------------------------------------------------------------ config
    def read_config(self) -> RunConfig:
        if not self.config_file.is_file():
            raise InputError(f"{self.path}: not a run directory (no config.yaml); pass the --out of `survpgc run`")
        return load_config(self.config_file)

    def pair_name(self, model_id: str, fold: int) -> str:
        """The name of the claim (:func:`survpgc.locks.claim`) of one fold × model pair."""
        return f"{model_id}-fold{fold}"

    def claim(self, cfg: RunConfig) -> None:
        """Write the resolved config, or check that an existing run has the same one (resume, never mix).

        Call it while holding the folder lock (:func:`survpgc.locks.folder_lock`) of the run directory."""
        import yaml

        new = cfg.to_dict()
        if self.config_file.is_file():
            old = yaml.safe_load(self.config_file.read_text())
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ConfigError(
                    f"{self.path} holds a run with a different configuration (changed section(s): "
                    f"{', '.join(changed)}); use a new --out directory, or delete the old run"
                )
            return
        atomic_write_text(self.config_file, yaml.safe_dump(new, sort_keys=False))

    # ------------------------------------------------------------------ fold records
    def write_fold(self, model_id: str, fold: int, predictions: pd.DataFrame, record: dict[str, Any]) -> None:
        """Predictions first, the record last: a record on disk means the pair finished."""
        files = self.fold_files(model_id, fold)
        write_csv(predictions, files.predictions)
        fault_point("fold-record")
        atomic_write_text(files.record, json.dumps(record, indent=1, default=float))

    # ------------------------------------------------------------------ temporaries of killed processes
    def sweep_run_temporaries(self) -> list[Path]:
        """Remove what a killed process left of the run-level files (tables, plots, report, config, splits).

        Call it while holding the folder lock; the temporaries of fold × model pairs are swept per pair
        (:meth:`sweep_pair_temporaries`), under the pair's claim, since another process may be writing them."""
        removed = sweep_temporaries(self.path)
        for p in self.path.glob(f".{self.splits_dir.name}.*"):  # Splits.to_dir's temporary folder
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run: %s", len(removed),
                     ", ".join(p.name for p in removed[:5]))  # fmt: skip
        return removed

    def sweep_pair_temporaries(self, model_id: str, fold: int) -> list[Path]:
        """Remove the temporaries of one pair's files (call it while holding the pair's claim)."""
        files = self.fold_files(model_id, fold)
        removed = []
        for path in (files.record, files.predictions, files.checkpoint):
            removed += sweep_temporaries(path.parent, [path.name])
        if removed:
            log.info("removed %d temporary file(s) of %s fold %d left by an interrupted run", len(removed),
                     model_id, fold)  # fmt: skip
        return removed

    def read_record(self, model_id: str, fold: int) -> dict[str, Any]:
        files = self.fold_files(model_id, fold)
        if not files.finished:
            raise InputError(f"{self.path}: model {model_id!r} fold {fold} has not finished (no {files.record.name})")
        return json.loads(files.record.read_text())

    def finished_folds(self, model_ids: list[str], n_folds: int) -> Iterator[tuple[str, int]]:
        """``(model_id, fold)`` of every finished pair, fold-major (the order of the run's tables)."""
        for fold in range(n_folds):
            for model_id in model_ids:
                if self.fold_files(model_id, fold).finished:
                    yield model_id, fold

    def read_fold_predictions(self, model_id: str, fold: int) -> pd.DataFrame:
        return pd.read_csv(self.fold_files(model_id, fold).predictions, dtype={"case_id": str})

    # ------------------------------------------------------------------ run tables
    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        path = self.table(name)
        write_csv(df, path)
        return path

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.table(name)
        if not path.is_file():
            raise ConfigError(f"{self.path}: no {path.name}; finish the run (`survpgc run`) first")
        return pd.read_csv(path, dtype={"case_id": str} if name == "predictions" else None)

    def write_notes(self, notes: list[str]) -> None:
        if notes:
            atomic_write_text(self.notes_file, "\n".join(notes) + "\n")

    def read_notes(self) -> list[str]:
        return self.notes_file.read_text().splitlines() if self.notes_file.is_file() else []

    # ------------------------------------------------------------------ reopening
    def reopen(self) -> RunContext:
        """The finished (or partly finished) run, opened for interpretation; nothing is retrained."""
        return RunContext(self)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """A table written atomically, without the index."""
    atomic_write(path, lambda t: df.to_csv(t, index=False))


@dataclass
class LoadedModel:
    """A trained fold model in eval mode with its dataset factory (``dataset(ids)`` = evaluation items)."""

    model_id: str
    fold: int
    model: Any
    setup: Any

    def dataset(self, ids: list[str]):
        return self.setup.dataset(list(ids), False)


class RunContext:
    """A run directory opened for interpretation (read-only; nothing is retrained).

    ``cfg``, ``inputs`` (:class:`survpgc.inputs.RunInputs`: cohort, splits, token sources), ``cohort`` and
    ``splits`` are those of the run; :meth:`load` rebuilds one fold model.
    """

    def __init__(self, run: RunDir | str | Path) -> None:
        from survpgc.inputs import RunInputs

        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.cfg = self.run.read_config()
        self.inputs = RunInputs(self.cfg, splits_dir=self.run.splits_dir, clinical_dir=self.run.clinical_dir)
        self.cohort = self.inputs.cohort
        self.splits = self.inputs.splits

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def interpret_dir(self) -> Path:
        return self.run.interpret_dir

    @property
    def model_ids(self) -> list[str]:
        return [m.id for m in self.cfg.models]

    def entry(self, model_id: str):
        for m in self.cfg.models:
            if m.id == model_id:
                return m
        raise ConfigError(f"model {model_id!r} is not in run {self.run_dir} (its models: {self.model_ids})")

    def trained_folds(self, model_id: str) -> list[int]:
        """Folds whose checkpoint and record exist for ``model_id``."""
        out = []
        for f in self.splits:
            files = self.run.fold_files(model_id, f.index)
            if files.finished and files.checkpoint.is_file():
                out.append(f.index)
        return out

    def test_fold_of(self, case_id: str) -> int:
        """The fold whose test part holds ``case_id`` (the model that never saw the case in training)."""
        if case_id not in set(self.cohort.case_ids):
            raise InputError(f"case {case_id!r} is not in cohort {self.cohort.name!r} of run {self.run_dir}")
        for f in self.splits:
            if case_id in set(f.test):
                return f.index
        raise InputError(f"case {case_id!r} is in no test fold of run {self.run_dir}; pass --fold K explicitly")

    def load(self, model_id: str, fold: int, *, device: str = "cpu") -> LoadedModel:
        """Rebuild the fold's model, load its checkpoint strictly, and return it in eval mode."""
        import torch
        from safetensors.torch import load_file

        from survpgc.inputs import fold_setup, model_modalities
        from survpgc.survival.binning import TimeBinner

        entry = self.entry(model_id)
        mods, neural = model_modalities(entry)
        if not neural:
            raise ConfigError(f"model {model_id!r} is not a neural network (no attention, no fused vectors)")
        if not 0 <= fold < len(self.splits):
            raise InputError(f"fold {fold} out of range 0..{len(self.splits) - 1}")
        files = self.run.fold_files(model_id, fold)
        if not files.finished or not files.checkpoint.is_file():
            raise InputError(
                f"{self.run_dir}: model {model_id!r} fold {fold} has not finished (missing {files.record.name} or "
                f"{files.checkpoint.name}); run `survpgc run` to completion first"
            )
        binner = TimeBinner.from_dict(self.run.read_record(model_id, fold)["binner"])
        setup = fold_setup(entry, self.inputs, self.splits[fold], binner, mods)
        state = load_file(str(files.checkpoint))
        missing, unexpected = setup.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{files.checkpoint}: checkpoint does not match model {entry.name!r} as configured "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        model = setup.model.to(torch.device(device)).eval()
        return LoadedModel(model_id, fold, model, setup)
