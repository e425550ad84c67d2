"""Reopen a finished run directory: its config, cohort, folds and trained models.

The interpretation commands (heatmaps, attributions) work on what ``survpgc run`` wrote -- ``config.yaml``,
``splits/``, ``folds/<model>_fold<k>.json`` (with the fold's fitted time bins) and
``checkpoints/<model>_fold<k>.safetensors`` -- and rebuild each fold's model and inputs with the same code
the runner used (:func:`survpgc.train.cv.fold_setup`), so the omics scaler is refitted on the same training
cases and every case is explained by the model of the fold that tested it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survpgc.errors import ConfigError, InputError

__all__ = ["LoadedModel", "RunContext"]

log = logging.getLogger(__name__)


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
    """A run directory opened for interpretation (read-only; nothing is retrained)."""

    def __init__(self, run_dir: str | Path) -> None:
        from survpgc.config import load_config
        from survpgc.train.cv import _RunData

        self.run_dir = Path(run_dir)
        cfg_path = self.run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise InputError(f"{self.run_dir}: not a run directory (no config.yaml); pass the --out of `survpgc run`")
        self.cfg = load_config(cfg_path)
        self.data = _RunData(self.cfg, self.run_dir)
        self.cohort = self.data.cohort
        self.splits = self.data.splits

    # ------------------------------------------------------------------ models and folds
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
        from survpgc.train.cv import fold_files

        return [
            f.index
            for f in self.splits
            if all(p.is_file() for p in fold_files(self.run_dir, model_id, f.index)[::2])  # record, checkpoint
        ]

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

        from survpgc.survival.binning import TimeBinner
        from survpgc.train.cv import _model_modalities, fold_files, fold_setup

        entry = self.entry(model_id)
        mods, neural = _model_modalities(entry)
        if not neural:
            raise ConfigError(f"model {model_id!r} is not a neural network (no attention, no fused vectors)")
        if not 0 <= fold < len(self.splits):
            raise InputError(f"fold {fold} out of range 0..{len(self.splits) - 1}")
        record_path, _, ck_path = fold_files(self.run_dir, model_id, fold)
        if not record_path.is_file() or not ck_path.is_file():
            raise InputError(
                f"{self.run_dir}: model {model_id!r} fold {fold} has not finished (missing {record_path.name} or "
                f"{ck_path.name}); run `survpgc run` to completion first"
            )
        record = json.loads(record_path.read_text())
        binner = TimeBinner.from_dict(record["binner"])
        fold_obj = self.splits[fold]
        setup = fold_setup(entry, self.data, fold_obj, binner, mods, self.cfg)
        state = load_file(str(ck_path))
        missing, unexpected = setup.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{ck_path}: checkpoint does not match model {entry.name!r} as configured "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        model = setup.model.to(torch.device(device)).eval()
        return LoadedModel(model_id, fold, model, setup)

    # ------------------------------------------------------------------ output
    @property
    def interpret_dir(self) -> Path:
        return self.run_dir / "interpret"

    def refresh_report(self) -> Path | None:
        """Rebuild ``report.html`` from the run's tables; it picks up everything under ``interpret/``."""
        from survpgc.train.cv import rebuild_report

        return rebuild_report(self.cfg, self.run_dir, self.data)
