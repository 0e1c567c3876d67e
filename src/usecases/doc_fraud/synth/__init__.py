"""Synthetic birth certificates (Benin and Niger layouts) with programmatic forgeries.

Entry point: `generate(out_dir, n_documents=..., seed=...)`; see `corpus` for the output layout
and `corpus.render_document` for the ground-truth record.
"""

from usecases.doc_fraud.synth.corpus import (
    DocSpec,
    Document,
    assign_splits,
    generate,
    plan_documents,
    render_document,
)
from usecases.doc_fraud.synth.fields import FIELDS, RULES, check_consistency
from usecases.doc_fraud.synth.forge import FORGERY_TYPES
from usecases.doc_fraud.synth.render import FIELD_LABELS, LAYOUTS, PAGE_SIZE

__all__ = [
    "FIELDS",
    "FIELD_LABELS",
    "FORGERY_TYPES",
    "LAYOUTS",
    "PAGE_SIZE",
    "RULES",
    "DocSpec",
    "Document",
    "assign_splits",
    "check_consistency",
    "generate",
    "plan_documents",
    "render_document",
]
