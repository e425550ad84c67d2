"""Predict with a bundle: risk, survival curve, S(1 / 3 / 5 y), risk group and the modalities present per patient.

:func:`predict_cohort` is the library entry point (also used by ``survpgc validate``); :func:`predict_to_dir`
is ``survpgc predict``: it opens the cohort (survival columns optional), predicts, and writes
``predictions.csv`` and ``predict.html`` atomically.

How the outputs are defined:

* ``risk`` -- the model's risk (higher = worse): ``-sum_k S_k`` of the discrete survival curve, as in
  cross-validation. An ensemble's risk is the mean of its members' risks.
* ``surv_<k>`` -- survival at the end of bin ``k`` (``bundle.time_edges[k + 1]`` months; the last bin is open,
  so its column is the survival at the end of the follow-up the model can speak for). An ensemble averages
  its members' survival functions at the bundle's edges (each member evaluated as a step function on its own
  bins, which differ between folds); averaging hazards is not defined across different bins.
* ``S_12``, ``S_36``, ``S_60`` -- the survival curve read as a right-continuous step function (the bundle's
  :meth:`~survpgc.survival.binning.TimeBinner.survival_at`): ``S(t)`` is the survival at the end of the last bin
  that ends at or before ``t`` (1 inside the first bin). No interpolation between edges: a death in a bin
  is only known to have happened by the end of that bin, and it is the convention of the CV metrics.
* ``risk_group`` -- ``high`` when the risk is above the bundle's cutoff (the median training risk), else ``low``.
* ``modalities`` -- the model's modalities present for the case (``pathology+genomic``, ``none``). A missing
  modality is an empty, masked bag, exactly as in training; the model's registry description says how it
  treats that (modality-specific paths are skipped or fall back to the others). A Cox bundle reads the clinical
  columns of the cohort table: ``clinical`` when the case has a value in at least one of them.

How neural bundles are run (:func:`predict_batched`): the cases are ordered by the size of their feature files
(so bags of similar length share a batch and padding stays small), read once each, and collected into padded
batches with masks of up to :data:`MAX_BATCH_CASES` cases and :data:`MAX_BATCH_ELEMENTS` padded input values;
each batch is collated once and run by every member of the bundle in eval mode without gradients. The models
mask padding, so a case's outputs do not depend on its batch beyond float32 round-off. A Cox bundle is computed
in float64 from its exported state (:class:`~survpgc.models.coxph.CoxPHState`), without torch.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survpgc.deploy.bundle import (
    Bundle,
    InputMismatchError,
    check_clinical,
    check_clinical_columns,
    check_genes,
    check_pathology,
    check_population,
    load_bundle,
)
from survpgc.errors import DataError, InputError

__all__ = [
    "MAX_BATCH_CASES",
    "MAX_BATCH_ELEMENTS",
    "SURVIVAL_TIMES",
    "PredictResult",
    "coxph_state",
    "predict_batched",
    "predict_cohort",
    "predict_to_dir",
    "survival_columns",
]

log = logging.getLogger(__name__)

#: Months of the ``S_<t>`` columns (1, 3 and 5 years).
SURVIVAL_TIMES: tuple[float, ...] = (12.0, 36.0, 60.0)
#: Most cases in one prediction batch.
MAX_BATCH_CASES = 256
#: Most padded pathology input values (cases x longest bag x feature dim) in one prediction batch: 2**24
#: float32 values, 64 MiB (256 cases of 256 patches x 256-d; 128 cases of 256 x 512-d; fewer for longer bags).
MAX_BATCH_ELEMENTS = 1 << 24


def survival_columns(n_bins: int) -> list[str]:
    """``surv_0 .. surv_<n_bins - 1>``."""
    return [f"surv_{k}" for k in range(n_bins)]


# ------------------------------------------------------------------------------------------------ sources
def _clinical_source(bundle: Bundle, cohort: Any, clinical_tokens: str | os.PathLike[str] | None, workdir: Path):
    """Clinical tokens of the cohort: read from ``clinical_tokens`` (checked against the bundle) or encoded
    into ``workdir`` with the bundle's encoder (identity checked before anything is encoded) and templates."""
    from survpgc.clinical.encode import encode_clinical, load_clinical_tokens, read_clinical_manifest
    from survpgc.clinical.templates import TemplateSet
    from survpgc.encoders.text import create_text_encoder

    spec = bundle.inputs["clinical"]
    ids = cohort.case_ids
    if clinical_tokens is not None:
        man = read_clinical_manifest(clinical_tokens)
        check_clinical(bundle, man, f"clinical tokens {clinical_tokens}")
        have = set(man.get("cases", []))
        return load_clinical_tokens(clinical_tokens, case_ids=[c for c in ids if c in have])
    enc = create_text_encoder(spec["encoder"])
    t = spec["templates"]
    ts = TemplateSet(name=t["name"], templates=t["templates"], missing=t["missing"], negative=t["negative"])
    check_clinical(
        bundle,
        {
            "encoder": enc.name,
            "encoder_identity": enc.identity,
            "template_set": ts.name,
            "template_hash": ts.digest(),
            "n_templates": spec["n_templates"],
            "seed": spec["seed"],
            "missing": spec["missing"],
            "fields": spec["fields"],
        },
        f"text encoder {spec['encoder']!r} on this machine",
    )
    encode_clinical(
        cohort,
        workdir,
        encoder=enc,
        n_templates=spec["n_templates"],
        seed=spec["seed"],
        templates=ts,
        fields=spec["fields"],
        missing=spec["missing"],
    )
    return load_clinical_tokens(workdir, case_ids=ids)


def _genomic_source(bundle: Bundle, cohort: Any, scaler: Any, missing: list[str]):
    """The genomic token source of one member: the bundle's genes in order, scaled with the member's scaler
    fitted on its training cases; missing genes are 0 after scaling (the training mean); cases with no value
    in any of the genes have no genomic input."""
    from survpgc.data.tokens import OmicsVectorTokens
    from survpgc.genomics.tokens import GroupedOmicsTokens

    spec = bundle.inputs["genomic"]
    columns = [str(c) for c in spec["columns"]]
    groups = spec.get("group_columns")
    om = cohort.omics
    if om is None:
        sub = None
    else:
        df = om.reindex(columns=columns)
        present = [c for c in columns if c not in set(missing)]
        keep = df[present].notna().any(axis=1).to_numpy()
        sub = scaler.transform(df.loc[keep])[columns] if keep.any() else None
        if sub is not None and missing:
            sub[missing] = np.float32(0.0)
    if groups is not None:
        return GroupedOmicsTokens(sub, groups, columns)
    return OmicsVectorTokens(sub, columns)


def _group_positions(bundle: Bundle) -> list[list[int]] | None:
    spec = bundle.inputs.get("genomic")
    if not spec or spec.get("group_columns") is None:
        return None
    pos = {c: i for i, c in enumerate(spec["columns"])}
    return [[pos[c] for c in cols] for cols in spec["group_columns"].values()]


def build_models(bundle: Bundle, *, device: str = "cpu") -> list[Any]:
    """Every member's model, rebuilt from the manifest with its weights loaded strictly, in eval mode."""
    import torch
    from safetensors.torch import load_file

    from survpgc.models import create_model
    from survpgc.models.registry import model_accepts

    m = bundle.manifest["model"]
    extra: dict[str, Any] = {}
    groups = _group_positions(bundle)
    if groups is not None and model_accepts(m["name"], "groups"):
        extra["groups"] = groups
    state = load_file(str(bundle.weights_file))
    models = []
    for member in bundle.manifest["members"]:
        prefix = member["prefix"]
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model = create_model(m["name"], **m["dims"], **m["params"], **extra)
        missing, unexpected = model.load_state_dict(own, strict=False)
        if missing or unexpected or not own:
            raise DataError(
                f"{bundle.weights_file}: weights under {prefix!r} do not match model {m['name']!r} as described in "
                f"the manifest (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        models.append(model.to(torch.device(device)).eval())
    return models


def coxph_state(bundle: Bundle) -> Any:
    """The :class:`~survpgc.models.coxph.CoxPHState` of a Cox bundle (design from the manifest, float64 arrays
    from ``model.safetensors``)."""
    from safetensors.numpy import load_file

    from survpgc.models.coxph import ClinicalDesign, CoxPHState

    if len(bundle.manifest["members"]) != 1:
        raise DataError(f"{bundle.path}: a Cox bundle has one member, this one {len(bundle.manifest['members'])}")
    member = bundle.manifest["members"][0]
    prefix = member["prefix"]
    arrays = {k[len(prefix) :]: v for k, v in load_file(str(bundle.weights_file)).items() if k.startswith(prefix)}
    names = ("coefficients", "norm_mean", "times", "baseline_cumhaz")
    if sorted(arrays) != sorted(names):
        raise DataError(f"{bundle.weights_file}: a Cox bundle holds {list(names)} under {prefix!r}, found "
                        f"{sorted(arrays)}")  # fmt: skip
    return CoxPHState(ClinicalDesign.from_dict(member["coxph_design"]), *(arrays[k] for k in names))


# ------------------------------------------------------------------------------------------------ predict
def _bag_sizes(dataset: Any) -> np.ndarray:
    """Bytes of each case's feature files: proportional to its bag length for one extraction (read from the file
    system, not the files), used to put bags of similar length in one batch."""
    if "pathology" not in dataset.modalities:
        return np.zeros(len(dataset), dtype=np.int64)
    return np.array([sum(os.stat(f).st_size for f in dataset.feature_files(i)) for i in range(len(dataset))])


def predict_batched(
    models: list[Any],
    dataset: Any,
    *,
    overrides: list[Any] | None = None,
    device: str = "cpu",
    max_cases: int = MAX_BATCH_CASES,
    max_elements: int = MAX_BATCH_ELEMENTS,
) -> list[dict[str, np.ndarray]]:
    """Every case of ``dataset`` through each model of ``models``, in padded, length-sorted batches.

    Cases are ordered by the size of their feature files, read once each (``dataset[i]``), and collected into
    batches of at most ``max_cases`` cases and ``max_elements`` padded pathology values; each batch is collated
    once (:func:`~survpgc.data.dataset.collate_survival`: zero-padded bags with masks) and run by every model (eval
    mode, no gradients: :func:`survpgc.train.loop.predict`). ``overrides[k]``, when given, is a dataset of the same
    cases whose items replace keys of the shared items for model ``k`` (an ensemble member's own genomic tokens).
    A dataset with a feature cache (``data.cache``: features rounded to float16 as in training) has its cache
    emptied after each batch, so memory stays bounded by one batch.

    Returns per model ``{"risk": (n,), "survival": (n, n_bins)}`` in ``dataset`` order (float64).
    """
    import torch

    from survpgc.data.dataset import collate_survival
    from survpgc.train.loop import predict

    n = len(dataset)
    dim = int(dataset.dims.get("pathology", 1))
    overrides = overrides or [None] * len(models)
    outs: list[dict[str, Any]] = [{"risk": np.zeros(n), "survival": None} for _ in models]
    items: list[dict[str, Any]] = []
    where: list[int] = []

    def flush() -> None:
        with _torch_threads(1):  # many small copies: threads would mostly wait on each other (shared CPUs)
            batch = collate_survival(items)
        for k, model in enumerate(models):
            b = batch
            if overrides[k] is not None:
                with _torch_threads(1):
                    own = collate_survival([overrides[k][i] for i in where])
                b = {**batch, **{key: v for key, v in own.items() if key not in ("case_id", "time", "event", "bin")}}
            p = predict(model, [b], device=device)
            if outs[k]["survival"] is None:
                outs[k]["survival"] = np.zeros((n, p["survival"].shape[1]))
            outs[k]["risk"][where] = p["risk"]
            outs[k]["survival"][where] = p["survival"]
        items.clear()
        where.clear()
        for ds in (dataset, *overrides):
            if ds is not None and getattr(ds, "cache", False):
                ds.clear_cache()  # every file is read once: a cache would only grow (it is kept for its rounding)

    longest = 0
    for model in models:
        model.eval()
    with torch.inference_mode():
        for i in np.argsort(_bag_sizes(dataset), kind="stable").tolist():
            item = dataset[i]
            length = int(item["path"].shape[0]) if "path" in item else 0
            padded = max(longest, length, 1)
            if items and (len(items) >= max_cases or (len(items) + 1) * padded * dim > max_elements):
                flush()
                longest, padded = 0, max(length, 1)
            items.append(item)
            where.append(i)
            longest = padded
        if items:
            flush()
    return [{"risk": o["risk"], "survival": o["survival"] if o["survival"] is not None else np.zeros((0, 0))}
            for o in outs]  # fmt: skip


class _torch_threads:
    """Run a block with ``n`` torch intra-op threads, then restore the previous number."""

    def __init__(self, n: int) -> None:
        self.n, self.before = n, None

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        if self.before != self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.before is not None and torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)


def _combine(bundle: Bundle, outputs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(risk, survival on the bundle's bins)`` of the members' ``(risk, survival)``: one member as is; an
    ensemble's mean risk and mean survival function at the bundle's edges."""
    members = bundle.members
    if len(outputs) == 1:
        return outputs[0]
    ends = bundle.time_edges[1:-1]  # finite ends of bins 0 .. n-2; the last bin is open
    curves = []
    for member, (_, surv) in zip(members, outputs, strict=True):
        at = member.binner.survival_at(surv, ends) if len(ends) else np.zeros((len(surv), 0))
        curves.append(np.concatenate([at, surv[:, -1:]], axis=1))
    risk = np.mean([r for r, _ in outputs], axis=0)
    return risk, np.mean(curves, axis=0)


def predict_cohort(
    bundle: Bundle | str | os.PathLike[str],
    cohort: Any,
    *,
    device: str = "cpu",
    clinical_tokens: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    allow_other_population: bool = False,
    explain: Any = None,
) -> pd.DataFrame:
    """Predict every case of ``cohort`` (a :class:`~survpgc.data.cohort.Cohort`, survival data optional).

    Returns one row per case, in cohort order: ``case_id, risk, risk_group, surv_<k>..., S_12, S_36, S_60,
    modalities`` (definitions in the module docstring). The inputs are checked against the bundle first
    (:class:`~survpgc.deploy.bundle.InputMismatchError`, one line naming both sides). ``clinical_tokens``: a
    folder of `survpgc encode-clinical` made with the bundle's settings, instead of encoding here; ``workdir``:
    where clinical tokens are encoded (a temporary folder when None). A cohort of other tumour subtypes than
    the training cohort's is refused unless ``allow_other_population``
    (:func:`~survpgc.deploy.bundle.check_population`). ``explain(model, dataset)``, when given, is called with
    the first member's model and its dataset factory (``dataset(ids)``) while the inputs are open (heatmaps).
    """
    from survpgc.data.dataset import SurvivalDataset

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    mods = b.modalities
    check_population(b, cohort, allow_other=allow_other_population)
    if b.family == "coxph":
        if clinical_tokens is not None:
            log.warning("bundle %s is a Cox model on the clinical columns of the cohort table: the clinical tokens %s "
                        "are not used", b.path, clinical_tokens)  # fmt: skip
        if explain is not None:
            log.warning("bundle %s is a Cox model, which reads no pathology: no heatmaps to draw", b.path)
        return _predict_coxph(b, cohort)
    if "pathology" in mods:
        check_pathology(b, cohort)
    missing_genes = check_genes(b, cohort.omics, cohort.name) if "genomic" in mods else []
    if "genomic" in mods and cohort.omics is None:
        log.warning("cohort %r has no omics table: every case is predicted without genomic input", cohort.name)
    dims = b.manifest["model"]["dims"]
    ids = cohort.case_ids
    with tempfile.TemporaryDirectory(prefix="survpgc-clinical-") as tmp:
        clin = None
        if "clinical" in mods:
            clin = _clinical_source(b, cohort, clinical_tokens, Path(workdir) if workdir else Path(tmp))
            if clin.dim != dims.get("clin_dim"):
                raise InputMismatchError(
                    f"clinical token dim mismatch: bundle {b.path} expects {dims.get('clin_dim')}, the cohort's "
                    f"tokens have {clin.dim}"
                )
        models = build_models(b, device=device)
        members = b.members
        gens = [_genomic_source(b, cohort, m.scaler, missing_genes) if "genomic" in mods else None for m in members]

        def dataset(case_ids, gen=gens[0], modalities=mods):
            return SurvivalDataset(
                cohort,
                list(case_ids),
                bins=np.zeros(len(case_ids), dtype=np.int64),
                modalities=modalities,
                clinical=clin if "clinical" in modalities else None,
                genomic=gen,
                n_patches=None,
                train=False,
                # as in training: its cache rounds features to float16 (emptied after each batch, see predict_batched)
                cache=bool(b.manifest.get("feature_cache", False)),
                path_dim=dims.get("path_dim") if "pathology" in modalities else None,
            )

        shared = dataset(ids)
        if explain is not None:
            explain(models[0], dataset)
        # an ensemble's members differ only in their genomic tokens (each its own scaler): features read once
        overrides = [None] + [dataset(ids, g, ("genomic",)) if g is not None else None for g in gens[1:]]
        preds = predict_batched(models, shared, overrides=overrides, device=device)
    risk, surv = _combine(b, [(p["risk"], p["survival"]) for p in preds])
    return _frame(b, ids, risk, surv, _present(mods, shared, clin))


def _predict_coxph(b: Bundle, cohort: Any) -> pd.DataFrame:
    """A Cox bundle on ``cohort``: the clinical columns its design reads are checked, then risk and survival at the
    bin ends come from the exported state (float64, as the fitted model computes them)."""
    check_clinical_columns(b, cohort)
    state = coxph_state(b)
    ids = list(cohort.case_ids)
    cases = cohort.cases.loc[ids]
    risk = state.predict_risk(cases)
    surv = state.predict_survival(cases)
    need = list(b.inputs["clinical_table"]["columns"])
    has = cases[need].notna().any(axis=1).to_numpy()
    return _frame(b, ids, risk, surv, ["clinical" if h else "none" for h in has])


def _present(mods: tuple[str, ...], ds: Any, clin: Any) -> list[str]:
    out = []
    for i, cid in enumerate(ds.case_ids):
        have = []
        for m in mods:
            if m == "pathology":
                ok = ds.has_pathology(i)
            elif m == "clinical":
                ok = clin is not None and cid in clin
            else:
                ok = ds.genomic is not None and cid in ds.genomic
            if ok:
                have.append(m)
        out.append("+".join(have) or "none")
    return out


def _frame(b: Bundle, ids: list[str], risk: np.ndarray, surv: np.ndarray, present: list[str]) -> pd.DataFrame:
    binner = b.binner
    s_at = binner.survival_at(surv, np.asarray(SURVIVAL_TIMES))
    df = pd.DataFrame({"case_id": ids, "risk": risk})
    df["risk_group"] = np.where(risk > b.risk_cutoff, "high", "low")
    for k, col in enumerate(survival_columns(surv.shape[1])):
        df[col] = surv[:, k]
    for j, t in enumerate(SURVIVAL_TIMES):
        df[f"S_{t:g}"] = s_at[:, j]
    df["modalities"] = present
    lacking = {m: int(sum(m not in p.split("+") for p in present)) for m in b.modalities}
    for m, n in lacking.items():
        if n:
            log.info("%d of %d case(s) have no %s input (predicted with it masked)", n, len(ids), m)
    return df


# ------------------------------------------------------------------------------------------------ command
class PredictResult:
    """What :func:`predict_to_dir` wrote."""

    def __init__(self, out: Path, predictions: pd.DataFrame, csv: Path, html: Path) -> None:
        self.out, self.predictions, self.csv, self.html = out, predictions, csv, html


def open_cohort_for(
    bundles: list[Bundle],
    cohort: str | os.PathLike[str],
    *,
    feature_dir: str | os.PathLike[str] | None = None,
    endpoint: str = "os",
    time_unit: str = "months",
    on_missing_features: str = "error",
    omics_nonfinite: str = "error",
    survival: str = "required",
) -> Any:
    """Open the cohort ``survpgc predict`` / ``validate`` apply ``bundles`` to (a built-in name or TCGA-layout
    folder), warning when a bundle reads pathology and no feature folder is given."""
    from survpgc.data.cohort import open_cohort

    if any("pathology" in b.modalities for b in bundles) and feature_dir is None:
        log.warning("no --feature-dir: every case is predicted without pathology")
    return open_cohort(
        cohort,
        endpoint=endpoint,
        feature_dir=feature_dir,
        time_unit=time_unit,
        on_missing_features=on_missing_features,
        omics_nonfinite=omics_nonfinite,
        survival=survival,
    )


def predict_to_dir(
    model: str | os.PathLike[str],
    cohort: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    feature_dir: str | os.PathLike[str] | None = None,
    clinical_tokens: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    endpoint: str = "os",
    time_unit: str = "months",
    on_missing_features: str = "error",
    omics_nonfinite: str = "error",
    allow_other_population: bool = False,
    heatmaps: bool = False,
    slide_dir: str | os.PathLike[str] | None = None,
    max_heatmaps: int | None = None,
) -> PredictResult:
    """``survpgc predict``: open ``cohort`` (a built-in name or TCGA-layout folder; survival columns optional),
    predict with the bundle ``model``, write ``predictions.csv`` and ``predict.html`` under ``out``.

    ``heatmaps``: for models that attend over patches, also draw each case's attention and relevance heatmaps
    (``heatmaps/<case>/``; the first ``max_heatmaps`` cases with features, all when None; slide files from the
    cohort's slide paths or ``slide_dir``), linked from ``predict.html``. An ensemble is explained by its first
    member."""
    from survpgc.files import atomic_write, atomic_write_text
    from survpgc.locks import output_dir
    from survpgc.report.predict import render_predictions

    with output_dir(out) as root:
        bundle = load_bundle(model)
        c = open_cohort_for(
            [bundle],
            cohort,
            feature_dir=feature_dir,
            endpoint=endpoint,
            time_unit=time_unit,
            on_missing_features=on_missing_features,
            omics_nonfinite=omics_nonfinite,
            survival="optional",
        )
        if not len(c):
            raise InputError(f"cohort {cohort} has no cases")
        links: dict[str, list[tuple[str, str]]] = {}

        def draw(model: Any, dataset: Any) -> None:
            links.update(draw_heatmaps(bundle, c, model, dataset, root, slide_dir=slide_dir, limit=max_heatmaps))

        df = predict_cohort(
            bundle,
            c,
            device=device,
            clinical_tokens=clinical_tokens,
            allow_other_population=allow_other_population,
            explain=draw if heatmaps else None,
        )
        csv = atomic_write(root / "predictions.csv", lambda t: df.to_csv(t, index=False))
        page = render_predictions(bundle, c.name, df, csv.name, heatmaps=links)
        html = atomic_write_text(root / "predict.html", page)
    return PredictResult(Path(out), df, csv, html)


def draw_heatmaps(
    bundle: Bundle,
    cohort: Any,
    model: Any,
    dataset: Any,
    root: Path,
    *,
    slide_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Heatmaps of every case with patch features (the first ``limit``) under ``root/heatmaps/<case>/``; returns
    per case the (label, relative link) of each attention's relevance overlay, for ``predict.html``."""
    from types import SimpleNamespace

    from survpgc.errors import ConfigError
    from survpgc.explain.attention import case_heatmaps
    from survpgc.files import safe_name

    if "pathology" not in bundle.modalities:
        log.warning("model %s reads no pathology: no heatmaps to draw", bundle.model_id)
        return {}
    with_features = set(cohort.slides.dropna(subset=["feature_path"])["case_id"].astype(str))
    cases = [c for c in cohort.case_ids if c in with_features][: limit if limit is not None else None]
    loaded = SimpleNamespace(
        model_id=bundle.model_id, fold=None, model=model.eval(), setup=SimpleNamespace(modalities=bundle.modalities),
        dataset=dataset,
    )  # fmt: skip
    links: dict[str, list[tuple[str, str]]] = {}
    for case_id in cases:
        out_dir = root / "heatmaps" / safe_name(case_id)
        try:
            records = case_heatmaps(loaded, case_id, cohort, out_dir, title=f"{bundle.model_id} · case {case_id}",
                                    slide_dir=slide_dir)  # fmt: skip
        except ConfigError as exc:  # a model without attention over patches
            log.warning("no heatmaps for %s: %s", bundle.model_id, exc)
            return links
        links[case_id] = [
            (f"{rec['key']} · {e['slide_id']}", str(Path(e["relevance"]["overlay"]).relative_to(root)))
            for rec in records
            for e in rec["slides"]
        ]
    log.info("heatmaps of %d case(s) in %s", len(links), root / "heatmaps")
    return links
