"""The typed run config: choices, ranges, unknown keys, YAML checks, readable errors and the config CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from survpgc.cli import app
from survpgc.config import (
    DataConfig,
    ModelEntry,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_keys,
    load_config,
    read_yaml,
)
from survpgc.errors import ConfigError

runner = CliRunner()


def test_import_does_not_load_torch():
    code = "import sys, survpgc.config\nassert 'torch' not in sys.modules, 'torch imported'\n"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "override",
    [
        "cohort.endpoint=death",
        "cohort.on_invalid_survival=ignore",
        "cohort.on_missing_features=skip",
        "clinical.missing=zero",
        "genomic.kind=rna",
        "genomic.scaler=robust",
        "genomic.data_types=[rnaseq, methylation]",
        "splits.protocol=holdout",
        "train.optimizer=lion",
        "train.scheduler=step",
        "train.precision=fp8",
    ],
)
def test_literal_choices_are_refused_with_the_choices(override):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"^{key}(\[1\])?: must be '.*, got") as info:
        load_config(None, [override])
    assert value.strip("[]").split(", ")[-1] in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs: must be >= 1, got 0"),
        ("train.lr=0", "train.lr: must be > 0, got 0"),
        ("train.lr=-1", "train.lr: must be > 0, got -1"),
        ("train.weight_decay=-0.1", "train.weight_decay: must be >= 0, got -0.1"),
        ("train.max_grad_norm=0", "train.max_grad_norm: must be > 0, got 0"),
        ("train.warmup_epochs=-1", "train.warmup_epochs: must be >= 0, got -1"),
        ("train.batch_size=0", "train.batch_size: must be >= 1, got 0"),
        ("train.alpha=1.5", "train.alpha: must be <= 1, got 1.5"),
        ("train.beta=-0.5", "train.beta: must be >= 0, got -0.5"),
        ("train.select_from_epoch=0", "train.select_from_epoch: must be >= 1, got 0"),
        ("data.num_workers=-1", "data.num_workers: must be >= 0, got -1"),
        ("data.n_bins=0", "data.n_bins: must be >= 1, got 0"),
        ("data.n_patches=0", "data.n_patches: must be >= 1, got 0"),
        ("splits.folds=1", "splits.folds: must be >= 2, got 1"),
        ("splits.val_fraction=0", "splits.val_fraction: must be > 0, got 0"),
        ("splits.val_fraction=1", "splits.val_fraction: must be < 1, got 1"),
        ("eval.bootstrap=-1", "eval.bootstrap: must be >= 0, got -1"),
        ("eval.times=[0, 12]", "eval.times[0]: must be > 0, got 0"),
        ("clinical.n_templates=0", "clinical.n_templates: must be >= 1, got 0"),
    ],
)
def test_numeric_ranges_name_key_bound_and_value(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message


def test_range_edges_are_accepted():
    cfg = load_config(
        None,
        ["train.alpha=1", "train.beta=0", "train.weight_decay=0", "train.warmup_epochs=0", "data.n_patches=null",
         "train.max_grad_norm=1.5", "eval.bootstrap=0", "splits.folds=2", "data.num_workers=0"],
    )  # fmt: skip
    assert (cfg.train.alpha, cfg.data.n_patches, cfg.train.max_grad_norm) == (1.0, None, 1.5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=2.5", "train.epochs: must be an integer, got 2.5"),
        ("train.epochs='2'", "train.epochs: must be an integer, got '2'"),
        ("train.lr=fast", "train.lr: must be a number, got 'fast'"),
        ("data.cache=1", "data.cache: must be true or false, got 1"),
        ("data.n_bins=true", "data.n_bins: must be an integer, got true"),
        ("genomic.data_types=rnaseq", "genomic.data_types: must be a list, got 'rnaseq'"),
        ("train=3", "train: must be a mapping, got 3"),
        ("models=[3]", "models[0]: must be a mapping, got 3"),
    ],
)
def test_wrong_types_are_not_converted(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=2", "train.epoch: unknown key; did you mean 'epochs'?"),
        ("trian.epochs=2", "trian: unknown key; did you mean 'train'?"),
        ("zzz=red", "zzz: unknown key; known: cohort, pathology, clinical"),
        ("cohort.xyz=1", "cohort.xyz: unknown key; known: source, endpoint"),
        ("pathology.features=x", "pathology.features: unknown key; did you mean 'feature_dir'?"),
        ("clinical.n_template=3", "clinical.n_template: unknown key; did you mean 'n_templates'?"),
        ("genomic.scalar=zscore", "genomic.scalar: unknown key; did you mean 'scaler'?"),
        ("splits.fold=3", "splits.fold: unknown key; did you mean 'folds'?"),
        ("data.workers=2", "data.workers: unknown key; did you mean 'num_workers'?"),
        ("eval.time=[12]", "eval.time: unknown key; did you mean 'times'?"),
        ("models=[abmil, {name: snn, param: {}}]", "models[1].param: unknown key; did you mean 'params'?"),
    ],
)
def test_extra_keys_refused_at_every_level(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(message)


def test_all_problems_listed_each_with_its_path():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.lr=-1", "data.n_patches=0", "splits.protocol=x", "trian.x=1"])
    text = str(info.value)
    assert text.startswith("4 problems in the config:")
    for line in ("train.lr: must be > 0", "data.n_patches: must be >= 1", "splits.protocol: must be", "trian: unknown"):
        assert f"\n  {line}" in text


def test_file_errors_name_the_file(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: train\.lr: must be > 0, got -1$"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)


def test_duplicate_yaml_keys_are_refused_with_key_and_line(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("train:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: duplicate key 'epochs' at line 4 \(first at line 2\)"):
        load_config(p)
    p.write_text("train: {epochs: 2}\neval: {}\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="duplicate key 'train' at line 3"):
        load_config(p)
    with pytest.raises(ConfigError, match="override models: duplicate key 'name'"):
        load_config(None, ["models=[{name: abmil, name: snn}]"])
    # the same key in different mappings, and YAML merge keys, are fine
    assert read_yaml("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}
    assert read_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")["c"] == {"x": 3, "y": 2}


def test_eval_times_must_increase_strictly():
    assert load_config(None, ["eval.times=[6, 12.5, 36]"]).eval.times == [6.0, 12.5, 36.0]
    for times in ("[36, 12]", "[12, 12, 36]"):
        with pytest.raises(ConfigError, match=r"^eval\.times: must be strictly increasing without repeats"):
            load_config(None, [f"eval.times={times}"])
    with pytest.raises(ConfigError, match=r"^eval\.times: needs at least 1"):
        load_config(None, ["eval.times=[]"])


def test_eval_reference_must_name_a_model():
    with pytest.raises(ConfigError, match=r"^eval\.reference: 'coxph' is no model id of the run \(survpgc, abmil\)"):
        load_config(None, ["models=[survpgc, abmil]", "eval.reference=coxph"])
    with pytest.raises(ConfigError, match=r"eval\.reference: 'snn' is no model id"):
        load_config(None, ["models=[{name: snn, params: {modality: genomic}}]", "eval.reference=snn"])
    cfg = load_config(None, ["models=[{name: snn, params: {modality: genomic}}, coxph]", "eval.reference=snn:genomic"])
    assert cfg.eval.reference == "snn:genomic"
    assert load_config(None, ["models=[abmil, coxph]", "eval.reference=null"]).eval.reference is None
    # the default, survpgc, stands for the first model when the run has no survpgc (studies, older run dirs)
    assert load_config(None, ["models=[abmil]"]).eval.reference == "survpgc"


def test_models_names_mappings_ids_and_registry():
    cfg = load_config(
        None, ["models=[survpgc, {name: snn, params: {modality: genomic}}, {name: mlp, label: clin, params: null}]"]
    )
    assert [m.id for m in cfg.models] == ["survpgc", "snn:genomic", "clin"]
    assert cfg.models[2].params == {}
    assert [m.name for m in load_config(None, ["models=abmil"]).models] == ["abmil"]
    with pytest.raises(ConfigError, match=r"^models\[1\]\.name: unknown model 'foo'; available: .*abmil"):
        load_config(None, ["models=[survpgc, foo]"])
    with pytest.raises(ConfigError, match=r"models: duplicate model ids \['abmil'\]"):
        load_config(None, ["models=[abmil, abmil]"])
    with pytest.raises(ConfigError, match=r"^models: needs at least 1"):
        load_config(None, ["models=[]"])
    with pytest.raises(ConfigError, match=r"^models\[0\]\.name: is required"):
        load_config(None, ["models=[{label: x}]"])
    with pytest.raises(ConfigError, match=r"^model\.name: unknown model 'nope'"):
        ModelEntry(name="nope")


def test_types_are_kept():
    cfg = load_config(
        None,
        ["models=[{name: mlp, params: {modality: clinical, hidden: [64, 32], dropout: 0.25}}]", "train.lr=1",
         "eval.times=[12, 36]", "train.device=0"],
    )  # fmt: skip
    params = cfg.models[0].params
    assert params["hidden"] == [64, 32] and all(type(v) is int for v in params["hidden"])
    assert type(params["dropout"]) is float
    assert type(cfg.train.lr) is float and all(type(t) is float for t in cfg.eval.times)
    assert type(cfg.train.epochs) is int and type(cfg.seed) is int
    assert cfg.genomic.data_types == ["rnaseq"]
    assert cfg.train.device == "0"  # free-text fields take a number as its text


def test_round_trip_to_dict_and_yaml(tmp_path):
    cfg = load_config(None, ["models=[survpgc, {name: snn, params: {modality: genomic}}]", "train.epochs=3"])
    d = cfg.to_dict()
    assert list(d) == ["cohort", "pathology", "clinical", "genomic", "splits", "data", "train", "eval", "models",
                       "seed", "name"]  # fmt: skip
    assert d["models"][1] == {"name": "snn", "label": None, "params": {"modality": "genomic"}}
    assert RunConfig(**d) == cfg and RunConfig(**d).to_dict() == d
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    assert load_config(tmp_path / "c.yaml").to_dict() == d


def test_empty_sections_mean_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("pathology:\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.pathology.feature_dir is None and cfg.train.epochs == 3 and cfg.train.lr == 5e-4


def test_sections_built_directly_raise_config_errors():
    assert TrainConfig(epochs=2, seed=5).to_dict()["epochs"] == 2
    with pytest.raises(ConfigError) as info:
        TrainConfig(epochs=0, lr=-1)
    assert str(info.value).splitlines()[1:] == [
        "  train.epochs: must be >= 1, got 0",
        "  train.lr: must be > 0, got -1",
    ]
    with pytest.raises(ConfigError, match=r"^data\.n_bins: must be >= 1, got 0$"):
        DataConfig(n_bins=0)
    with pytest.raises(ConfigError, match=r"^train\.lr: must be > 0, got 0$"):
        RunConfig(train={"lr": 0})


def test_overrides():
    data = apply_overrides({"train": {"lr": 0.1}}, ["train.epochs=2", "eval.times=[12,36]", "splits.protocol=paper"])
    assert data == {"train": {"lr": 0.1, "epochs": 2}, "eval": {"times": [12, 36]}, "splits": {"protocol": "paper"}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="dotted names"):
        apply_overrides({}, ["train..epochs=2"])
    with pytest.raises(ConfigError, match="'epochs' is not a section"):
        apply_overrides({"train": {"epochs": 2}}, ["train.epochs.x=1"])


def test_config_keys_cover_every_field_with_help():
    rows = {k.key: k for k in config_keys()}
    assert len(rows) == 55
    assert rows["train.lr"].type == "float > 0" and rows["train.lr"].default == "0.0005"
    assert rows["splits.val_fraction"].type == "float in (0, 1)"
    assert rows["splits.protocol"].type == "nested | paper | last-epoch"
    assert rows["data.n_patches"].type == "int >= 1 | null"
    assert rows["eval.times"].default == "[12, 36, 60]"
    assert rows["models"].default == "[survpgc]" and rows["models[].name"].default == "(required)"
    assert all(k.help for k in rows.values())
    settable = {f"{s}.{f}" for s, v in RunConfig().to_dict().items() if isinstance(v, dict) for f in v}
    assert settable <= set(rows)


def test_cli_config_show(tmp_path):
    r = runner.invoke(app, ["config", "show", "train.epochs=2", "models=[survpgc, abmil]"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.stdout)
    assert shown == load_config(None, ["train.epochs=2", "models=[survpgc, abmil]"]).to_dict()
    assert shown["train"]["epochs"] == 2 and [m["name"] for m in shown["models"]] == ["survpgc", "abmil"]
    (tmp_path / "c.yaml").write_text("splits: {folds: 3}\n")
    r = runner.invoke(app, ["config", "show", str(tmp_path / "c.yaml"), "seed=4"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout)["splits"]["folds"] == 3 and yaml.safe_load(r.stdout)["seed"] == 4


def test_cli_config_show_error_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "survpgc.cli", "config", "show", "train.lr=-1"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: train.lr: must be > 0, got -1"


def test_cli_config_keys():
    r = runner.invoke(app, ["config", "keys"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for key in ("cohort.endpoint", "train.max_grad_norm", "eval.reference", "models[].params", "name"):
        assert key in r.stdout
    assert "[survpgc]" in r.stdout and "nested | paper | last-epoch" in r.stdout
