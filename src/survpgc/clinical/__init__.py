"""Clinical fields as sentences and text tokens (the SurvPGC prompt idea).

Each case's clinical fields (by default the paper's six: subtype, age, sex, tumour stage, AJCC staging
edition, race) are normalised (:mod:`~survpgc.clinical.normalize`), written into sentences from a template
set (:mod:`~survpgc.clinical.templates`, :mod:`~survpgc.clinical.prompts`) and encoded by a text model
(:mod:`survpgc.encoders.text`) into an ``n_fields x d`` token matrix per case
(:mod:`~survpgc.clinical.encode`), which models read through a :class:`~survpgc.data.tokens.TokenSource`.

Typical use::

    from survpgc.clinical import build_sentences, encode_clinical, load_clinical_tokens

    table = build_sentences(cohort, n_templates=5, seed=0)           # inspect what will be encoded
    encode_clinical(cohort, "out/clinical", encoder="minilm")       # writes tokens + sentences.csv
    tokens = load_clinical_tokens("out/clinical")                   # a TokenSource for SurvivalDataset
"""

from survpgc.clinical.encode import (
    ClinicalEncodingSummary,
    ClinicalTokens,
    encode_clinical,
    encode_clinical_cli,
    load_clinical_tokens,
    read_clinical_manifest,
    sentences_table,
)
from survpgc.clinical.normalize import is_missing, normalize_value
from survpgc.clinical.prompts import (
    MISSING_POLICIES,
    build_sentences,
    draw_variant,
    render_sentence,
    resolve_fields,
)
from survpgc.clinical.templates import (
    DEFAULT_FIELDS,
    FIELD_SPECS,
    POST_DIAGNOSIS_FIELDS,
    FieldSpec,
    TemplateSet,
    list_builtin_templates,
    load_templates,
    read_template_csv,
)

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_SPECS",
    "MISSING_POLICIES",
    "POST_DIAGNOSIS_FIELDS",
    "ClinicalEncodingSummary",
    "ClinicalTokens",
    "FieldSpec",
    "TemplateSet",
    "build_sentences",
    "draw_variant",
    "encode_clinical",
    "encode_clinical_cli",
    "is_missing",
    "list_builtin_templates",
    "load_clinical_tokens",
    "load_templates",
    "normalize_value",
    "read_clinical_manifest",
    "read_template_csv",
    "render_sentence",
    "resolve_fields",
    "sentences_table",
]
