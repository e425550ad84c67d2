"""The model bundle: a folder that holds one trained model and everything needed to use it safely.

Layout (written by :func:`write_bundle`, atomically: built in a temporary folder, then renamed)::

    model.safetensors   all weights; member ``i`` of the bundle under the prefix ``m<i>.`` (a refit has one
                        member, an ensemble of a CV run's fold models one per fold)
    bundle.json         the manifest (strict JSON; see below)
    model_card.md       intended use, training cohort, inputs, CV metrics, known limits

The manifest holds ``format`` / ``format_version`` (a bundle of a format version not in
:data:`READABLE_FORMAT_VERSIONS` is refused), the survpgc version, the model (registry name, ``family``
``neural`` or ``coxph``, params, modalities, the input dims it was built with), the kind (``refit`` /
``ensemble``) and how the epochs were chosen, the time bins (edges in months; the last bin is open, written as
``null``), the risk cutoff (median training risk), the training cohort summary, the hashed training case ids
(``training_cases``, :func:`training_cases_record`: no id is stored), the CV metrics of the run it came from, and
the input spec of every modality the model reads:

* ``pathology`` -- patch encoder name and weight fingerprint, feature dim, patch size, magnification and the
  other extraction settings recorded in the feature files;
* ``clinical`` -- text encoder name and identity (weight fingerprint), template set name, hash and content,
  n_templates, seed, missing-value policy, fields, token dim;
* ``genomic`` -- tokenizer kind, the gene (omics column) list in order, gene groups, and per member the omics
  scaler's values (training patient ids are not stored);
* ``clinical_table`` -- for a Cox bundle: the clinical columns of the cohort table its design reads (the design
  itself, per member, under ``coxph_design``; its coefficients, centring means and baseline cumulative hazard at
  the bin ends are the tensors of ``model.safetensors``).

:func:`load_bundle` checks the format and the weights; :func:`check_pathology`, :func:`check_genes`,
:func:`check_clinical` and :func:`check_clinical_columns` compare the bundle with the inputs of a cohort and raise
:class:`InputMismatchError`, one line naming both sides, on: another patch encoder, weights, feature dim, patch
size or magnification; more than :data:`MISSING_GENES_TOLERANCE` of the genes missing (fewer are filled with the
training mean, i.e. 0 after z-scoring, with a warning); another text encoder or template set; a clinical column of
a Cox design missing from the cohort table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from survpgc.errors import DataError, InputError
from survpgc.files import same_setting
from survpgc.inputs import FEATURE_SETTINGS

__all__ = [
    "CARD_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MISSING_GENES_TOLERANCE",
    "PATHOLOGY_KEYS",
    "READABLE_FORMAT_VERSIONS",
    "WEIGHTS_NAME",
    "Bundle",
    "InputMismatchError",
    "Member",
    "Overlap",
    "binner_from_json",
    "binner_to_json",
    "case_ids_digest",
    "check_clinical",
    "check_clinical_columns",
    "check_genes",
    "check_pathology",
    "load_bundle",
    "member_prefix",
    "pathology_keys",
    "pathology_spec",
    "salted_case_hashes",
    "training_cases_record",
    "training_overlap",
    "write_bundle",
]

log = logging.getLogger(__name__)

FORMAT = "survpgc-model-bundle"
#: Bumped when a bundle written by this version cannot be read by an older one (and vice versa). Version 2 added
#: the hashed training case ids (``training_cases``) and Cox-model bundles (``model.family`` ``"coxph"``).
FORMAT_VERSION = 2
#: Format versions this survpgc reads: version 1 bundles lack ``training_cases`` (apparent performance is then
#: judged by the cohort summary, and said so).
READABLE_FORMAT_VERSIONS: tuple[int, ...] = (1, 2)
WEIGHTS_NAME = "model.safetensors"
MANIFEST_NAME = "bundle.json"
CARD_NAME = "model_card.md"

#: Share of the bundle's genes (omics columns) a cohort may lack: more is refused; fewer are filled with the
#: training mean (0 after z-scoring, the mid-range for min-max) and warned about.
MISSING_GENES_TOLERANCE = 0.05


def pathology_keys(feature_settings: tuple[str, ...] = FEATURE_SETTINGS) -> tuple[str, ...]:
    """The feature-file settings a bundle records, from the run's list :data:`survpgc.inputs.FEATURE_SETTINGS`
    (one list, so the two cannot drift): the same settings, plus the encoder's ``weights`` (a bundle must meet
    features of the same weights; the files of one run are compared among themselves without them), with the
    feature dim as ``dim`` (read from the file's shape) in place of the ``encoder_dim`` attribute."""
    rest = [k for k in feature_settings if k not in ("encoder", "encoder_dim", "weights", "dim")]
    return ("encoder", "weights", "dim", *rest)


#: Feature-file settings recorded in a bundle and compared with a cohort's feature files (``dim`` = feature dim);
#: derived from :data:`survpgc.inputs.FEATURE_SETTINGS` by :func:`pathology_keys`.
PATHOLOGY_KEYS: tuple[str, ...] = pathology_keys()


class InputMismatchError(DataError):
    """The inputs of a cohort do not match what a bundle's model was trained on (one line naming both)."""


def member_prefix(i: int) -> str:
    """The weight-name prefix of bundle member ``i`` in ``model.safetensors``."""
    return f"m{i}."


def binner_to_json(binner: Any) -> dict[str, Any]:
    """A fitted :class:`~survpgc.survival.binning.TimeBinner` as strict JSON (the open last edge as null)."""
    d = binner.to_dict()
    d["edges"] = [None if math.isinf(x) else float(x) for x in d["edges"]]
    return d


def binner_from_json(d: Mapping[str, Any]) -> Any:
    """Inverse of :func:`binner_to_json`."""
    from survpgc.survival.binning import TimeBinner

    state = dict(d)
    state["edges"] = [math.inf if x is None else float(x) for x in state["edges"]]
    return TimeBinner.from_dict(state)


@dataclass
class Member:
    """One model of a bundle: its weight prefix, the CV fold it came from (None for a refit), its own time
    bins and omics scaler (an ensemble's members were fitted on different training parts)."""

    prefix: str
    fold: int | None
    binner: Any
    scaler: Any = None


@dataclass
class Bundle:
    """A loaded bundle (see the module docstring). ``manifest`` is ``bundle.json`` as read."""

    path: Path
    manifest: dict[str, Any]
    card: str

    @property
    def model_id(self) -> str:
        return str(self.manifest["model"]["id"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def family(self) -> str:
        """``"neural"`` (a torch model of the registry) or ``"coxph"`` (a Cox model's exported state)."""
        return str(self.manifest["model"].get("family", "neural"))

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.manifest["model"]["modalities"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def binner(self) -> Any:
        """The bundle's time bins (:class:`~survpgc.survival.binning.TimeBinner`): the columns ``surv_<k>``."""
        return binner_from_json(self.manifest["time_bins"])

    @property
    def time_edges(self) -> np.ndarray:
        """Bin edges in months, ``[0, e_1, ..., inf]`` (n_bins + 1): ``surv_<k>`` is the survival at
        ``time_edges[k + 1]``, the end of bin ``k`` (the last bin is open: its column is the survival at the
        end of follow-up the model can speak for)."""
        return np.asarray(self.binner.edges_, dtype=np.float64)

    @property
    def risk_cutoff(self) -> float:
        """Median risk of the training cases: risk above it is the ``high`` group."""
        return float(self.manifest["risk_cutoff"])

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(self.manifest["inputs"])

    @property
    def members(self) -> list[Member]:
        from survpgc.genomics.normalize import OmicsScaler

        out = []
        for m in self.manifest["members"]:
            scaler = OmicsScaler.from_dict(m["genomic_scaler"]) if m.get("genomic_scaler") else None
            out.append(Member(m["prefix"], m.get("fold"), binner_from_json(m["time_bins"]), scaler))
        return out

    @property
    def weights_file(self) -> Path:
        return self.path / WEIGHTS_NAME

    def __repr__(self) -> str:
        return (
            f"Bundle({str(self.path)!r}, model={self.model_id!r}, kind={self.kind}, "
            f"members={len(self.manifest['members'])}, modalities={'+'.join(self.modalities)})"
        )


# ------------------------------------------------------------------------------------------------ writing
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(
    out: str | os.PathLike[str],
    manifest: dict[str, Any],
    tensors: Mapping[str, Any],
    card: Callable[[dict[str, Any]], str],
) -> Path:
    """Write a bundle folder at ``out``: built under a temporary name next to it, then renamed.

    ``out`` must not exist or be an empty folder (as :func:`survpgc.locks.output_dir` leaves it). ``tensors``
    are all weights, already prefixed per member; ``card(manifest)`` renders the model card. The manifest gets
    ``format``, ``format_version``, ``survpgc_version`` and the weights' SHA-256.
    """
    from safetensors.torch import save_file

    from survpgc import __version__

    dest = Path(out)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"--out {dest} is not empty; a bundle is written into a new (or empty) folder")
    stage = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    stage.mkdir(parents=True)
    try:
        weights = stage / WEIGHTS_NAME
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "model": str(manifest["model"]["name"])}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights), metadata=meta)
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "survpgc_version": __version__, **manifest}
        full["weights_sha256"] = _sha256(weights)
        text = json.dumps(full, indent=1, allow_nan=False, ensure_ascii=False)
        (stage / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
        (stage / CARD_NAME).write_text(card(full), encoding="utf-8")
        if dest.is_dir():
            dest.rmdir()  # empty (checked above); rename cannot replace a non-empty folder
        os.replace(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("bundle written: %s", dest)
    return dest


# ------------------------------------------------------------------------------------------------ loading
def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Open a bundle folder: the manifest (format and version checked), the card, the weights' checksum."""
    root = Path(path)
    man_file = root / MANIFEST_NAME
    if not root.is_dir() or not man_file.is_file():
        raise InputError(f"{root}: not a survpgc model bundle (no {MANIFEST_NAME}); pass the --out of `survpgc train`")
    try:
        manifest = json.loads(man_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{man_file}: unreadable bundle manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(f"{man_file}: not a survpgc model bundle (format {got!r}, expected {FORMAT!r})")
    version = manifest.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS or isinstance(version, bool):
        from survpgc import __version__

        readable = ", ".join(map(str, READABLE_FORMAT_VERSIONS))
        raise InputMismatchError(
            f"{root}: bundle format version {version!r} (written by survpgc {manifest.get('survpgc_version')}) "
            f"cannot be read by survpgc {__version__}, which reads format versions {readable}; use a matching "
            "survpgc or retrain the bundle"
        )
    weights = root / WEIGHTS_NAME
    if not weights.is_file():
        raise DataError(f"{root}: {WEIGHTS_NAME} is missing; the bundle is incomplete")
    expected = manifest.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise DataError(f"{weights}: checksum differs from {MANIFEST_NAME} (the file was changed or damaged)")
    card_file = root / CARD_NAME
    card = card_file.read_text(encoding="utf-8") if card_file.is_file() else ""
    return Bundle(root, manifest, card)


# ------------------------------------------------------------------------------------------------ training cases
def case_ids_digest(case_ids: Any) -> str:
    """SHA-256 (hex) of a set of case ids: the sorted, distinct ids joined by newlines, UTF-8."""
    ids = sorted({str(c) for c in case_ids})
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def salted_case_hashes(case_ids: Any, salt: str) -> list[str]:
    """Sorted SHA-256 (hex) of ``salt + ":" + case id`` for each distinct case id."""
    return sorted(hashlib.sha256(f"{salt}:{c}".encode()).hexdigest() for c in {str(c) for c in case_ids})


def _survival_keys(case_ids: Any, time: Any, event: Any) -> list[str]:
    """``case id:time:event`` per case (time in months to 3 decimals, event 0/1): a case with its survival data."""
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    return [f"{c}:{ti:.3f}:{int(ei)}" for c, ti, ei in zip(map(str, case_ids), t, e, strict=True)]


def training_cases_record(case_ids: Any, time: Any = None, event: Any = None) -> dict[str, Any]:
    """The manifest's ``training_cases``: the number of training cases, the SHA-256 of the sorted ids
    (:func:`case_ids_digest`) and, under a fresh random salt (recorded), the sorted salted SHA-256 of each id
    (:func:`salted_case_hashes`) and of each id with its survival time and event (``case_survival_sha256``), so
    ``survpgc validate`` can tell whether a cohort is the training cohort, or how many of its cases were training
    cases, without the bundle holding any id. The survival hashes tell the training patients from other patients
    who carry the same ids (two samples of the synthetic generator both number their cases SYN-0001, ...).
    Whoever holds a candidate id (and its survival) can test whether it was a training case -- that is the
    purpose; the hashes cannot be read back into ids."""
    ids = [str(c) for c in case_ids]
    salt = secrets.token_hex(16)
    rec: dict[str, Any] = {
        "n": len(set(ids)),
        "ids_sha256": case_ids_digest(ids),
        "salt": salt,
        "case_sha256": salted_case_hashes(ids, salt),
    }
    if time is not None and event is not None:
        rec["case_survival_sha256"] = salted_case_hashes(_survival_keys(ids, time, event), salt)
    rec["rule"] = ("ids_sha256 = sha256 of the sorted ids joined by newlines; case_sha256 = sorted sha256 of "
                   "'<salt>:<case id>'; case_survival_sha256 = sorted sha256 of '<salt>:<case id>:<months, 3 "
                   "decimals>:<event 0/1>'")  # fmt: skip
    return rec


@dataclass
class Overlap:
    """How a cohort's cases meet a bundle's training cases (:func:`training_overlap`)."""

    same_ids: bool  #: the cohort's ids are exactly the training ids
    n_ids: int  #: cohort cases whose id is a training id
    n_cases: int | None  #: of those, with the training survival time and event too (None: not recorded/given)


def training_overlap(manifest: Mapping[str, Any], case_ids: Any, time: Any = None, event: Any = None) -> Overlap | None:
    """How many of ``case_ids`` were training cases, by the manifest's hashed training case ids (and, with
    ``time`` and ``event``, their survival data); None when the bundle records none (format version 1)."""
    rec = manifest.get("training_cases")
    if not rec or "case_sha256" not in rec or "salt" not in rec:
        return None
    ids = [str(c) for c in case_ids]
    salt = str(rec["salt"])
    trained = set(rec["case_sha256"])
    n_ids = sum(h in trained for h in salted_case_hashes(ids, salt))
    n_cases = None
    if time is not None and event is not None and "case_survival_sha256" in rec:
        with_survival = set(rec["case_survival_sha256"])
        n_cases = sum(h in with_survival for h in salted_case_hashes(_survival_keys(ids, time, event), salt))
    return Overlap(case_ids_digest(ids) == rec.get("ids_sha256"), n_ids, n_cases)


# ------------------------------------------------------------------------------------------------ checks
def pathology_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The :data:`PATHOLOGY_KEYS` a feature file records (``dim`` from its shape)."""
    from survpgc.data.features import feature_file_shape, read_feature_attrs

    _, dim = feature_file_shape(path)
    return _spec(read_feature_attrs(path), dim)


def _spec(attrs: Mapping[str, Any], dim: int) -> dict[str, Any]:
    spec = {k: attrs[k] for k in PATHOLOGY_KEYS if k in attrs and k != "dim"}
    spec["dim"] = int(dim)
    return {k: spec[k] for k in PATHOLOGY_KEYS if k in spec}


_PATHOLOGY_LABELS = {"dim": "feature dim", "encoder": "patch encoder", "weights": "patch-encoder weights",
                     "target_magnification": "magnification", "patch_size": "patch size"}  # fmt: skip


def check_pathology(bundle: Bundle, cohort: Any) -> None:
    """Refuse a cohort whose feature files disagree with the bundle's pathology spec (one line, both sides).

    The first feature file (header and shape) is compared with the bundle on each key both record; a key the
    bundle records and the file does not is warned about (older extractions may lack it). Every other file is
    opened once, header only, and compared with the bundle on the keys it records, and with the first file on the
    other extraction settings of :data:`survpgc.inputs.FEATURE_SETTINGS` (``encoder_dim`` among them); a file whose
    feature dim still differs is named when its features are read."""
    from survpgc.data.features import feature_file_shape, read_feature_attrs

    want = bundle.inputs.get("pathology")
    if want is None:
        return
    files = [Path(p) for p in cohort.slides["feature_path"].dropna()]
    if not files:
        log.warning("cohort %r has no feature files: every case is predicted without pathology", cohort.name)
        return
    first_attrs = read_feature_attrs(files[0])
    got = _spec(first_attrs, feature_file_shape(files[0])[1])

    def refuse(key: str, have: Any, where: Path) -> InputMismatchError:
        return InputMismatchError(
            f"{_PATHOLOGY_LABELS.get(key, key)} mismatch: bundle {bundle.path} expects {want[key]!r}, the feature "
            f"files of cohort {cohort.name!r} have {have!r} (e.g. {where}); extract features with the bundle's settings"
        )

    for key in PATHOLOGY_KEYS:
        if key not in want:
            continue
        if key not in got:
            log.warning("%s records no %s; the bundle expects %r (not checked)", files[0], key, want[key])
            continue
        if not same_setting(want[key], got[key]):
            raise refuse(key, got[key], files[0])
    ref: dict[str, tuple[Any, Path | None]] = {
        k: (first_attrs[k], files[0]) for k in FEATURE_SETTINGS if k in first_attrs
    }
    ref.update({k: (want[k], None) for k in PATHOLOGY_KEYS if k in want and k != "dim"})
    for path in files[1:]:
        try:
            attrs = read_feature_attrs(path)
        except DataError as exc:
            raise DataError(f"{exc} (found before predicting; fix or re-extract this file)") from exc
        for key, (value, source) in ref.items():
            if key not in attrs or same_setting(value, attrs[key]):
                continue
            if source is None:
                raise refuse(key, attrs[key], path)
            raise DataError(
                f"feature files disagree on {key}: {source} has {value!r}, {path} has {attrs[key]!r}; all slides of "
                f"cohort {cohort.name!r} must be extracted with the same settings (re-extract the odd files)"
            )


def check_genes(bundle: Bundle, omics: Any, cohort_name: str) -> list[str]:
    """The bundle's genes the cohort's omics table lacks (warned when within :data:`MISSING_GENES_TOLERANCE`);
    more are refused in one line naming both sides. ``omics`` None: no check (genomic input missing for all)."""
    spec = bundle.inputs.get("genomic")
    if spec is None or omics is None:
        return []
    columns = list(spec["columns"])
    have = {str(c) for c in omics.columns}
    missing = [c for c in columns if c not in have]
    frac = len(missing) / max(1, len(columns))
    if frac > MISSING_GENES_TOLERANCE:
        raise InputMismatchError(
            f"genes mismatch: bundle {bundle.path} expects {len(columns)} omics columns (e.g. {columns[:3]}), the "
            f"omics table of cohort {cohort_name!r} lacks {len(missing)} of them ({100 * frac:.1f} %, e.g. "
            f"{missing[:3]}; it has {len(have)} columns, e.g. {sorted(have)[:3]}), more than the "
            f"{100 * MISSING_GENES_TOLERANCE:g} % tolerated; use omics with the bundle's genes"
        )
    if missing:
        log.warning(
            "cohort %r lacks %d of the bundle's %d genes (%.1f %%, e.g. %s): filled with the training mean (0 after "
            "scaling)",
            cohort_name,
            len(missing),
            len(columns),
            100 * frac,
            missing[:3],
        )
    return missing


#: Clinical-token settings that must equal the bundle's, and how a message names them.
_CLINICAL_KEYS = {
    "encoder_identity": "text encoder",
    "template_hash": "template set",
    "n_templates": "n_templates",
    "seed": "template seed",
    "missing": "missing-value policy",
    "fields": "clinical fields",
}


def check_clinical(bundle: Bundle, tokens_manifest: Mapping[str, Any], where: str) -> None:
    """Refuse clinical tokens (their ``manifest.json``, or the settings of an encoder about to be used) made
    with another text encoder, template set, n_templates, seed, missing policy or fields than the bundle's."""
    want = bundle.inputs.get("clinical")
    if want is None:
        return
    for key, label in _CLINICAL_KEYS.items():
        a, b = want.get(key), tokens_manifest.get(key)
        if a != b:
            if key == "encoder_identity":
                a, b = f"{want.get('encoder')} ({a})", f"{tokens_manifest.get('encoder')} ({b})"
            elif key == "template_hash":
                a = f"{want.get('template_set')} (sha256 {str(a)[:12]})"
                b = f"{tokens_manifest.get('template_set')} (sha256 {str(b)[:12]})"
            raise InputMismatchError(
                f"{label} mismatch: bundle {bundle.path} expects {a!r}, {where} has {b!r}; encode the clinical "
                "fields with the bundle's settings"
            )


def check_clinical_columns(bundle: Bundle, cohort: Any) -> None:
    """Refuse a cohort whose table lacks a clinical column the bundle's Cox design reads (one line naming them and
    the cohort's columns); warn about a column present but empty (every case then gets the training median or the
    design's level for a missing value)."""
    spec = bundle.inputs.get("clinical_table")
    if spec is None:
        return
    need = [str(c) for c in spec["columns"]]
    have = [str(c) for c in cohort.cases.columns]
    missing = [c for c in need if c not in have]
    if missing:
        raise InputMismatchError(
            f"clinical columns mismatch: bundle {bundle.path} needs the clinical column(s) {need} (its Cox design), "
            f"the table of cohort {cohort.name!r} lacks {missing} (it has {sorted(have)[:12]}); add the column(s) to "
            "the cohort table (empty values are allowed)"
        )
    empty = [c for c in need if cohort.cases[c].isna().all()]
    if empty:
        log.warning(
            "cohort %r has no value in clinical column(s) %s of the bundle's Cox design: every case gets the training "
            "median (numeric) or the missing-value level (categorical) there",
            cohort.name,
            empty,
        )


#: A prediction cohort is refused when fewer than this fraction of its cases (with a known subtype) carry a
#: subtype the bundle's training cohort had; below 100 % the unseen subtypes are warned about.
MIN_SEEN_SUBTYPE_FRACTION = 0.5


def subtype_counts(cohort: Any) -> dict[str, int]:
    """Cases per tumour subtype (the clinical ``subtype`` field), unknown values left out."""
    cases = cohort.cases  # one row per case (indexed by case_id)
    if "subtype" not in cases.columns:
        return {}
    values = cases["subtype"].dropna().astype(str).str.strip()
    values = values[values != ""]
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def check_population(bundle: Bundle, cohort: Any, *, allow_other: bool = False) -> None:
    """Refuse a cohort whose tumours are not the population the bundle was trained on (by subtype).

    The bundle records its training cohort's subtypes. When fewer than :data:`MIN_SEEN_SUBTYPE_FRACTION` of the
    cohort's cases with a known subtype have one of them (e.g. a liver-cancer model asked about breast tumours),
    the cohort is refused in one line naming both sides, unless ``allow_other``; a smaller share of unseen
    subtypes is warned about. Bundles without the record and cohorts without subtypes are not checked.
    """
    trained = (bundle.manifest.get("training_cohort") or {}).get("subtypes")
    have = subtype_counts(cohort)
    if not trained or not have:
        return
    n = sum(have.values())
    unseen = {k: v for k, v in have.items() if k not in trained}
    n_unseen = sum(unseen.values())
    if not unseen:
        return
    top = ", ".join(f"{k!r} ({v})" for k, v in sorted(unseen.items(), key=lambda kv: -kv[1])[:3])
    if (n - n_unseen) / n < MIN_SEEN_SUBTYPE_FRACTION and not allow_other:
        raise InputMismatchError(
            f"population mismatch: bundle {bundle.path} was trained on subtype(s) {sorted(trained)}, cohort "
            f"{cohort.name!r} has {n_unseen} of {n} cases of other subtypes ({top}); the model was not trained on "
            "these tumours. Pass allow_other_population=True (--allow-other-population) to predict anyway"
        )
    log.warning(
        "cohort %r: %d of %d cases have subtypes the bundle was not trained on (%s); their predictions are "
        "extrapolations",
        cohort.name,
        n_unseen,
        n,
        top,
    )
