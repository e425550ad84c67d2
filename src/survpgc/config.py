"""Typed run configuration: pydantic models loaded from YAML, with ``key=value`` overrides.

A run config has sections ``cohort``, ``pathology``, ``clinical``, ``genomic``, ``splits``, ``data``,
``train`` (:class:`TrainConfig`, also the settings of one :func:`survpgc.train.loop.fit`), ``eval``, a list
of ``models`` and the top-level ``seed`` and ``name``. Every key is checked: an unknown key, a value of the
wrong type or out of range, a repeated YAML key or a model name the registry does not know raises one
:class:`~survpgc.errors.ConfigError` that lists every problem with its dotted key (``train.lr: must be > 0,
got -1``, ``models[1].name: unknown model 'foo' ...``, ``train.epoch: unknown key; did you mean 'epochs'?``).

Overrides use dotted keys and YAML values: ``train.epochs=2``, ``splits.protocol=paper``,
``models=[survpgc, abmil]``, ``eval.times=[12,36]``.

Importing this module is cheap (pydantic and PyYAML): the model registry, and with it torch, is imported
only when a config naming models is validated.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from survpgc.errors import ConfigError

__all__ = [
    "ClinicalConfig",
    "CohortConfig",
    "ConfigKey",
    "DataConfig",
    "EvalConfig",
    "GenomicConfig",
    "ModelEntry",
    "PathologyConfig",
    "RunConfig",
    "SplitConfig",
    "TrainConfig",
    "apply_overrides",
    "config_keys",
    "load_config",
    "read_yaml",
]

#: The default ``eval.reference``; it stands for the first model when no model of the run has this id.
DEFAULT_REFERENCE = "survpgc"


def _text(value: Any) -> Any:
    """Free-text fields take numbers and paths as their text (``train.device=0`` parses as an int)."""
    if isinstance(value, os.PathLike) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]
Positive = Annotated[float, Field(gt=0)]


class _RaisesConfigError(type(BaseModel)):
    """Building a config model directly (``TrainConfig(lr=-1)``) raises one :class:`ConfigError`. Done in
    the metaclass so that nested sections, which pydantic validates without calling ``__init__``, report
    their problems under their full key path."""

    def __call__(cls, /, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, cls, cls.where)) from None


class _Section(BaseModel, metaclass=_RaisesConfigError):
    """Base of every config model: unknown keys refused and no silent type conversion (an int is not a
    bool, a string is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: where the section sits in a run config, prefixed to error paths when the section is built alone
    where: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (dicts, lists, str, numbers, bool, None), in declaration order."""
        return self.model_dump()


# ============================================================================ sections
class CohortConfig(_Section):
    where: ClassVar[str] = "cohort"

    source: Text = Field("tcga-lihc", description="built-in cohort name (e.g. tcga-lihc) or a TCGA-layout folder")
    endpoint: Literal["os", "dss", "pfs"] = Field(
        "os", description="survival endpoint: overall, disease-specific or progression-free survival"
    )
    on_invalid_survival: Literal["error", "drop"] = Field(
        "error", description="cases with a missing / non-positive time or a bad event: refuse the cohort or drop"
    )
    on_missing_features: Literal["error", "drop"] = Field(
        "error", description="slides without a feature file in pathology.feature_dir: refuse or drop the slide"
    )
    omics_nonfinite: Literal["error", "drop_columns", "zero"] = Field(
        "error", description="NaN/inf omics values: refuse (naming case and column), drop those columns, or set 0"
    )
    time_unit: Literal["days", "weeks", "months", "years"] = Field(
        "months", description="unit of the cohort's survival times, converted to months when the cohort is read"
    )


class PathologyConfig(_Section):
    where: ClassVar[str] = "pathology"

    feature_dir: Text | None = Field(
        None, description="folder of <slide stem>.h5 / .pt patch features; null = no pathology"
    )


class ClinicalConfig(_Section):
    where: ClassVar[str] = "clinical"

    tokens_dir: Text | None = Field(
        None, description="output of `survpgc encode-clinical`; null = encode into the run directory"
    )
    encoder: Text = Field("minilm", description="text encoder of the clinical sentences (`survpgc text-encoders`)")
    n_templates: int = Field(1, ge=1, description="templates per clinical field: each patient draws one of the first N")
    seed: int = Field(0, ge=0, description="seed of the per-patient template draw")
    missing: Literal["phrase", "mask"] = Field(
        "phrase", description="a missing clinical value: a 'not available' phrase or a masked token"
    )
    templates: Text | None = Field(None, description="template file; null = the built-in templates")


class GenomicConfig(_Section):
    where: ClassVar[str] = "genomic"

    kind: Literal["flat", "pathways", "families", "scfoundation", "none"] = Field(
        "flat", description="genomic tokens: one flat vector, pathway or gene-family groups, scFoundation, none"
    )
    signatures: Text = Field(
        "combine", description="gene signatures: combine | hallmarks | families, or a .csv / .gmt file"
    )
    data_types: list[Literal["rnaseq", "cnv", "mut"]] = Field(
        default_factory=lambda: ["rnaseq"], min_length=1, description="omics data types used"
    )
    scaler: Literal["zscore", "minmax"] = Field(
        "zscore", description="per-feature scaling, fitted on each fold's training part"
    )
    scfoundation: Text | None = Field(None, description="embedding file, for kind = scfoundation")


class SplitConfig(_Section):
    where: ClassVar[str] = "splits"

    folds: int = Field(5, ge=2, description="cross-validation folds")
    protocol: Literal["nested", "paper", "last-epoch"] = Field(
        "nested", description="epoch selection: on a validation part (nested), on the test fold (paper), last epoch"
    )
    val_fraction: float = Field(
        0.15, gt=0, lt=1, description="share of each training part held out for validation (nested)"
    )
    seed: int = Field(0, ge=0, description="seed of the patient-level fold assignment")
    split_dir: Text | None = Field(
        None, description="folder of fold_<k>.csv files to import; 'paper' = the cohort's paper splits"
    )


class DataConfig(_Section):
    where: ClassVar[str] = "data"

    n_bins: int = Field(4, ge=1, description="discrete time bins (quantiles of the training part's event times)")
    n_patches: Annotated[int, Field(ge=1)] | None = Field(
        4096, description="patches sampled per bag in training; null = all"
    )
    cache: bool = Field(True, description="keep loaded inputs in memory between epochs")
    num_workers: int = Field(0, ge=0, description="data-loader worker processes (0 = load in the main process)")
    store: Text | None = Field(
        None,
        description="feature store folder (`survpgc store build`) read instead of the feature files: only "
        "the sampled patches are read and memory does not grow with the cohort; null = read the files",
    )
    cache_gb: Positive | None = Field(
        None,
        description="upper bound of the in-memory feature cache (data.cache, per process) in GB, least recently "
        "used files first out; null = no bound; not used with data.store",
    )
    bucket: int = Field(
        0,
        ge=0,
        description="training batches of similar bag length: cases of a random pool of this many batches are "
        "sorted by length before batching (less padding at train.batch_size > 1); 0 = off",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_pool(cls, bucket: int) -> int:
        if bucket == 1:
            raise ValueError("must be 0 (off) or a pool of >= 2 batches, got 1 (a pool of one batch changes nothing)")
        return bucket

    @field_validator("store")
    @classmethod
    def _store_folder(cls, store: str | None) -> str | None:
        if store is not None and not store.strip():
            raise ValueError("must be a folder (a feature store) or null, got an empty string")
        return store


class TrainConfig(_Section):
    """Optimisation settings of one fit (defaults: the reference implementation's recipe)."""

    where: ClassVar[str] = "train"

    epochs: int = Field(20, ge=1, description="training epochs")
    lr: float = Field(5e-4, gt=0, description="learning rate")
    weight_decay: float = Field(1e-3, ge=0, description="weight decay")
    optimizer: Literal["radam", "adamw", "adam", "sgd"] = Field("radam", description="optimiser")
    scheduler: Literal["cosine", "constant"] = Field(
        "cosine", description="learning-rate schedule (cosine: after a linear warm-up)"
    )
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up length in epochs (cosine schedule)")
    batch_size: int = Field(
        16,
        ge=1,
        description="cases per optimisation step (16: chosen on validation parts by benchmarks/recipe.py; "
        "the reference implementation uses 1)",
    )
    alpha: float = Field(0.0, ge=0, le=1, description="NLL loss weight on the uncensored term")
    beta: float = Field(0.0, ge=0, le=1, description="weight of the cosine loss between SurvPGC's two paths")
    cosine_margin: float = Field(0.2, ge=-1, le=1, description="margin of that cosine loss (a cosine: in [-1, 1])")
    select_from_epoch: int = Field(
        10, ge=1, description="epoch selection window starts here (1-based) and ends at the last epoch"
    )
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "auto",
        description="auto = for patch-bag models bf16 autocast on hardware with native bf16 (GPUs of compute "
        "capability >= 8, AVX512-BF16 / AMX CPUs), fp16 with a gradient scaler on older GPUs, else fp32",
    )
    max_grad_norm: Positive | None = Field(None, description="gradient-norm clipping; null = none")
    device: Text = Field(
        "auto", description="torch device (auto, cpu, cuda, cuda:1, mps); under torchrun cuda = cuda:LOCAL_RANK"
    )
    seed: int = Field(0, ge=0, description="seed of weight initialisation and batch order")
    init_hazard_bias: bool = Field(
        True,
        description="start the hazard head's bias at the training cases' constant (Kaplan-Meier) hazards "
        "(on: chosen on validation parts by benchmarks/recipe.py; the reference implementation starts at 0)",
    )


class EvalConfig(_Section):
    where: ClassVar[str] = "eval"

    times: list[Positive] = Field(
        default_factory=lambda: [12.0, 36.0, 60.0],
        min_length=1,
        description="months of the time-dependent AUC and Brier score, strictly increasing",
    )
    bootstrap: int = Field(1000, ge=0, description="paired bootstrap resamples of the model comparisons")
    reference: Text | None = Field(
        DEFAULT_REFERENCE,
        description="model id every other model is compared with; null (or survpgc when absent) = the first",
    )

    @field_validator("times")
    @classmethod
    def _increasing(cls, times: list[float]) -> list[float]:
        for a, b in itertools.pairwise(times):
            if b <= a:
                raise ValueError(f"must be strictly increasing without repeats, got {_show(times)}")
        return times


class ModelEntry(_Section):
    """One model of a run: a registered name, an optional label and constructor parameters."""

    where: ClassVar[str] = "model"

    name: Text = Field(description="registered model name (`survpgc models`)")
    label: Text | None = Field(None, description="id of the entry in the run; null = name, or name:modality")
    params: dict[str, Any] = Field(default_factory=dict, description="model constructor arguments")

    @field_validator("params", mode="before")
    @classmethod
    def _no_params(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from survpgc.models import get_model_spec  # lazy: the registry imports torch

        get_model_spec(name)  # ConfigError (a ValueError) naming the known models
        return name

    @property
    def id(self) -> str:
        if self.label:
            return self.label
        mod = self.params.get("modality")
        return f"{self.name}:{mod}" if mod else self.name


def _default_models() -> list[ModelEntry]:
    return [ModelEntry(name="survpgc")]


_SECTIONS = ("cohort", "pathology", "clinical", "genomic", "splits", "data", "train", "eval")


class RunConfig(_Section):
    """A whole cross-validated run (see the module docstring)."""

    cohort: CohortConfig = Field(default_factory=CohortConfig, description="the cohort")
    pathology: PathologyConfig = Field(default_factory=PathologyConfig, description="patch features")
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig, description="clinical text tokens")
    genomic: GenomicConfig = Field(default_factory=GenomicConfig, description="genomic tokens")
    splits: SplitConfig = Field(default_factory=SplitConfig, description="cross-validation splits")
    data: DataConfig = Field(default_factory=DataConfig, description="datasets and loaders")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation")
    models: list[ModelEntry] = Field(
        default_factory=_default_models,
        min_length=1,
        description="models to cross-validate: names or {name, label, params} mappings",
    )
    seed: int = Field(0, ge=0, description="seed of data sampling (patches, loaders)")
    name: Text = Field("run", description="name of the run")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """An empty section (``pathology:`` with nothing under it) means its defaults."""
        if isinstance(data, dict):
            data = {k: ({} if k in _SECTIONS and v is None else v) for k, v in data.items()}
        return data

    @field_validator("models", mode="before")
    @classmethod
    def _model_names(cls, value: Any) -> Any:
        """``models`` takes one entry or a list; a bare string is a model name."""
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            value = [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _ids_and_reference(self) -> RunConfig:
        ids = [m.id for m in self.models]
        problems = []
        dup = sorted({x for x in ids if ids.count(x) > 1})
        if dup:
            problems.append(f"models: duplicate model ids {dup}; give each entry a distinct `label`")
        problems += _file_name_clashes(ids)
        ref = self.eval.reference
        if ref is not None and ref not in ids and ref != DEFAULT_REFERENCE:
            problems.append(
                f"eval.reference: {ref!r} is no model id of the run ({', '.join(ids)}); null = the first model"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _file_name_clashes(ids: list[str]) -> list[str]:
    """Distinct model ids that the run directory would write to one file (:func:`survpgc.files.safe_name`,
    compared case-insensitively, as macOS and Windows file systems do)."""
    from survpgc.files import safe_name

    first: dict[str, str] = {}
    problems = []
    for i in dict.fromkeys(ids):
        key = safe_name(i).lower()
        if key in first:
            problems.append(
                f"models: ids {first[key]!r} and {i!r} share the file name {safe_name(first[key])!r} in the run "
                "directory; give one of them a distinct `label`"
            )
        else:
            first[key] = i
    return problems


# ============================================================================ error messages
_EXPECTED = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}  # fmt: skip


def _show(value: Any) -> str:
    """A value as YAML writes it: null, true, 0.5, 'text', [1, 2]."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _section_at(cls: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that the key path ``loc`` points into (list indices skipped)."""
    for part in loc:
        if isinstance(part, int) or cls is None:
            continue
        field = cls.model_fields.get(str(part))
        cls = _inner_model(field.annotation) if field is not None else None
    return cls


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _unknown_key(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    section = _section_at(root, loc[:-1])
    if section is None:
        return "unknown key"
    known = list(section.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f"unknown key; did you mean {close[0]!r}?" if close else f"unknown key; known: {', '.join(known)}"


def _problem(err: Any, root: type[BaseModel]) -> str:
    """One pydantic error as ``message`` (without its key path)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(root, err["loc"])
    if kind == "missing":
        return "is required"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s), got {_show(err['input'])}"
    if kind == "literal_error":
        text = f"must be {ctx.get('expected')}"
    elif kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        text = f"must be {sign} {_show(ctx.get(key))}"
    else:
        text = _EXPECTED.get(kind, err["msg"])
    return f"{text}, got {_show(err['input'])}"


def describe_errors(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """A pydantic ValidationError as readable text: one ``dotted.key: problem`` per line."""
    lines = []
    for err in exc.errors():
        path = _dotted(prefix, tuple(err["loc"]))
        message = _problem(err, root)
        lines.append(f"{path}: {message}" if path else message)
    lines = list(dict.fromkeys(lines))
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems in the config:\n" + "\n".join(f"  {line}" for line in lines)


# ============================================================================ YAML and overrides
class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key repeated in one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise ConfigError(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
                seen[key] = line
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> Any:
    """Parse YAML safely, refusing repeated mapping keys (:class:`ConfigError` naming key and line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (YAML-parsed values) to a nested dict, in place; returns it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=2)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: the key must be dotted names, e.g. train.epochs")
        try:
            value = read_yaml(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: cannot parse {raw!r}: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"override {key}: {exc}") from None
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
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = read_yaml(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
    apply_overrides(data, overrides or [])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(where + describe_errors(exc, RunConfig)) from None


# ============================================================================ key listing
class ConfigKey(NamedTuple):
    """One settable key of a run config, for ``survpgc config keys``."""

    key: str
    type: str
    default: str
    help: str


def _type_text(annotation: Any, metadata: list[Any] = ()) -> str:
    """``int >= 1``, ``nested | paper | last-epoch``, ``float > 0 | null``, ``list[float > 0]``..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0], [*metadata, *args[1:]])
    if origin is Literal:
        text = " | ".join(str(a) for a in args)
    elif origin in (typing.Union, types.UnionType):
        text = " | ".join("null" if a is type(None) else _type_text(a) for a in args)
    elif origin is list and args[0] is ModelEntry:
        text = "list[name | {name, label, params}]"
    elif origin is list:
        text = f"list[{_type_text(args[0])}]"
    elif origin is dict or annotation is dict:
        text = "mapping"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    bounds = {}
    for meta in metadata:
        for item in getattr(meta, "metadata", [meta]):  # a FieldInfo carries its constraints in .metadata
            bounds.update({a: getattr(item, a) for a in ("gt", "ge", "lt", "le") if getattr(item, a, None) is not None})
    low = [(k, v) for k, v in bounds.items() if k in ("gt", "ge")]
    high = [(k, v) for k, v in bounds.items() if k in ("lt", "le")]
    if low and high:
        return f"{text} in {'(' if low[0][0] == 'gt' else '['}{_show(low[0][1])}, {_show(high[0][1])}" + (
            ")" if high[0][0] == "lt" else "]"
        )
    sign = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return text + "".join(f" {sign[k]} {_show(v)}" for k, v in low + high)


def _default_text(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, list) and value and isinstance(value[0], ModelEntry):
        return "[" + ", ".join(m.id for m in value) + "]"
    return _flow(value)


def _flow(value: Any) -> str:
    """A default as YAML flow text: plain strings, ``[rnaseq]``, ``null``, ``0.15``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _show(value)


def config_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[ConfigKey]:
    """Every settable key of a run config (dotted), with its type, default and one line of help."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _inner_model(field.annotation)
        if section is not None and section is not ModelEntry:
            rows += config_keys(section, f"{key}.")
            continue
        rows.append(ConfigKey(key, _type_text(field.annotation, field.metadata), _default_text(field),
                              field.description or ""))  # fmt: skip
        if section is ModelEntry:
            rows += config_keys(ModelEntry, f"{key}[].")
    return rows
