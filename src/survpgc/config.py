"""Typed run configuration: dataclasses loaded from YAML, with ``key=value`` overrides.

A run config has sections ``cohort``, ``clinical``, ``genomic``, ``pathology``, ``splits``, ``data``,
``train`` (:class:`survpgc.train.loop.TrainConfig`), ``eval`` and a list of ``models``. Every key is checked:
an unknown key or a bad value raises :class:`~survpgc.errors.ConfigError` naming the dotted key.

Overrides use dotted keys and YAML values: ``train.epochs=2``, ``splits.protocol=paper``,
``models=[survpgc, abmil]``, ``eval.times=[12,36]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from survpgc.errors import ConfigError
from survpgc.train.loop import TrainConfig

__all__ = [
    "ClinicalConfig",
    "CohortConfig",
    "DataConfig",
    "EvalConfig",
    "GenomicConfig",
    "ModelEntry",
    "PathologyConfig",
    "RunConfig",
    "SplitConfig",
    "apply_overrides",
    "load_config",
]


@dataclass
class CohortConfig:
    source: str = "tcga-lihc"  # built-in name or a TCGA-layout folder
    endpoint: str = "os"
    on_invalid_survival: str = "error"
    on_missing_features: str = "error"


@dataclass
class PathologyConfig:
    feature_dir: str | None = None  # <slide stem>.h5 / .pt files; None = no pathology


@dataclass
class ClinicalConfig:
    tokens_dir: str | None = None  # output of `survpgc encode-clinical`; None = encode into the run dir
    encoder: str = "minilm"
    n_templates: int = 1
    seed: int = 0
    missing: str = "phrase"
    templates: str | None = None


@dataclass
class GenomicConfig:
    kind: str = "flat"  # flat | pathways | families | scfoundation | none
    signatures: str = "combine"
    data_types: list[str] = field(default_factory=lambda: ["rnaseq"])
    scaler: str = "zscore"  # zscore | minmax
    scfoundation: str | None = None  # embedding file for kind = scfoundation


@dataclass
class SplitConfig:
    folds: int = 5
    protocol: str = "nested"  # nested | paper | last-epoch
    val_fraction: float = 0.15
    seed: int = 0
    split_dir: str | None = None  # import fold_<k>.csv files ("paper" = the cohort's paper splits)


@dataclass
class DataConfig:
    n_bins: int = 4
    n_patches: int | None = 4096  # patches sampled per bag in training (None = all)
    cache: bool = True
    num_workers: int = 0


@dataclass
class EvalConfig:
    times: list[float] = field(default_factory=lambda: [12.0, 36.0, 60.0])
    bootstrap: int = 1000
    reference: str | None = "survpgc"  # comparisons.csv: every model vs this one


@dataclass
class ModelEntry:
    name: str
    label: str | None = None  # unique id in the run (default: name, or name:modality)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        if self.label:
            return self.label
        mod = self.params.get("modality")
        return f"{self.name}:{mod}" if mod else self.name


@dataclass
class RunConfig:
    cohort: CohortConfig = field(default_factory=CohortConfig)
    pathology: PathologyConfig = field(default_factory=PathologyConfig)
    clinical: ClinicalConfig = field(default_factory=ClinicalConfig)
    genomic: GenomicConfig = field(default_factory=GenomicConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    models: list[ModelEntry] = field(default_factory=lambda: [ModelEntry("survpgc")])
    seed: int = 0
    name: str = "run"

    def __post_init__(self) -> None:
        _check_choice("cohort.endpoint", self.cohort.endpoint, ("os", "dss", "pfs"))
        _check_choice("cohort.on_invalid_survival", self.cohort.on_invalid_survival, ("error", "drop"))
        _check_choice("cohort.on_missing_features", self.cohort.on_missing_features, ("error", "drop"))
        _check_choice("genomic.kind", self.genomic.kind, ("flat", "pathways", "families", "scfoundation", "none"))
        _check_choice("genomic.scaler", self.genomic.scaler, ("zscore", "minmax"))
        _check_choice("clinical.missing", self.clinical.missing, ("phrase", "mask"))
        _check_choice("splits.protocol", self.splits.protocol, ("nested", "paper", "last-epoch"))
        if self.splits.folds < 2:
            raise ConfigError(f"splits.folds must be >= 2, got {self.splits.folds}")
        if not 0 < self.splits.val_fraction < 1:
            raise ConfigError(f"splits.val_fraction must lie in (0, 1), got {self.splits.val_fraction}")
        if self.data.n_bins < 1:
            raise ConfigError(f"data.n_bins must be >= 1, got {self.data.n_bins}")
        if self.data.n_patches is not None and self.data.n_patches < 1:
            raise ConfigError(f"data.n_patches must be >= 1 or null, got {self.data.n_patches}")
        if self.eval.bootstrap < 0:
            raise ConfigError(f"eval.bootstrap must be >= 0, got {self.eval.bootstrap}")
        if any(t <= 0 for t in self.eval.times):
            raise ConfigError(f"eval.times must be > 0 months, got {self.eval.times}")
        if not self.models:
            raise ConfigError("models: at least one model is needed")
        from survpgc.models import get_model_spec

        ids = []
        for i, m in enumerate(self.models):
            try:
                get_model_spec(m.name)
            except ConfigError as exc:
                raise ConfigError(f"models[{i}].name: {exc}") from None
            ids.append(m.id)
        dup = sorted({x for x in ids if ids.count(x) > 1})
        if dup:
            raise ConfigError(f"models: duplicate model ids {dup}; give each entry a distinct `label`")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


# ----------------------------------------------------------------------------------------- building
def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key(s) {', '.join(where + u for u in unknown)}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, full)
        elif key == "models" and cls is RunConfig:
            kwargs[key] = _models(value)
        else:
            kwargs[key] = _coerce(full, hint, value)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _coerce(key: str, hint: Any, value: Any) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{key} may not be null")
    if hint is bool or text == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int or text.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float or text.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str or text.startswith("str"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    if text.startswith("list"):
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if "float" in text:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{key} must be a list of numbers, got {value!r}")
            return [float(v) for v in value]
        return [str(v) for v in value]
    return value


def _models(value: Any) -> list[ModelEntry]:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"models must be a list of names or mappings, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, str):
            out.append(ModelEntry(v))
        elif isinstance(v, dict):
            unknown = sorted(set(v) - {"name", "label", "params"})
            if unknown or "name" not in v:
                raise ConfigError(f"models[{i}] needs `name` and may have `label`, `params`; got keys {sorted(v)}")
            params = v.get("params") or {}
            if not isinstance(params, dict):
                raise ConfigError(f"models[{i}].params must be a mapping")
            out.append(ModelEntry(str(v["name"]), v.get("label"), dict(params)))
        else:
            raise ConfigError(f"models[{i}] must be a name or a mapping, got {v!r}")
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (YAML-parsed values) to a nested dict, in place; returns it."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=2)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: cannot parse {raw!r}: {exc}") from exc
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"override {key}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or start from defaults when ``path`` is None) and apply overrides."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
    apply_overrides(data, overrides or [])
    return _build(RunConfig, data, "")
