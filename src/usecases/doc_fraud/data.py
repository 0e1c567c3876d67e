"""Document collections: the generated corpus and partners' real scans, read the same way.

A collection is a folder of images plus a CSV (default `labels.csv`):

    file,label[,forgery_type][,split][,layout][,name_origin][,<field>...]
    scans/0001.jpg,authentic,,,benin,,...
    scans/0002.png,forged,digits,test,niger,,...

- `file`: image path relative to the folder; `label`: `authentic` or `forged`;
- `forgery_type`: optional (`font`, `digits`, `inconsistent`, `stamp`, `double_jpeg`, or any
  name a partner uses); `split`: optional `train`/`val`/`test` (missing splits are drawn,
  stratified and seeded, in `prepare`); `layout`: optional (`benin`, `niger`; empty = detect);
- any column named like a certificate field (`surname`, `birth_date` as YYYY-MM-DD, ...) is
  that document's ground truth for OCR accuracy. The generated corpus keeps its ground truth in
  `fields/<id>.json` instead, with the forgery masks in `masks/<id>.png`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from usecases.core.data import DataError
from usecases.core.io import write_text

LABELS = ("authentic", "forged")
DOCUMENTS = "documents.csv"  # per-document metadata next to the core manifest
_COLUMNS = ("file", "label", "forgery_type", "split", "layout", "name_origin")


@dataclass
class Document:
    path: str  # relative to the collection root
    label: str
    forgery_type: str = ""
    split: str = ""
    layout: str = ""
    name_origin: str = ""
    mask: str = ""  # relative path of the forgery mask, when known
    fields: dict[str, str] = field(default_factory=dict)  # ground truth, when known


def field_names() -> tuple[str, ...]:
    from usecases.doc_fraud.synth.fields import FIELDS

    return FIELDS


def read_collection(root: Path, csv_name: str = "labels.csv") -> list[Document]:
    """Every row of `root/csv_name` as a Document; a malformed row is an error naming it."""
    path = Path(root) / csv_name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; a document collection needs a CSV with columns "
            f"file,label[,forgery_type,split,layout,...] (see usecases.doc_fraud.data)"
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ("file", "label") if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; found {columns}")
        known = set(field_names())
        docs = []
        for line, row in enumerate(reader, start=2):
            docs.append(_document(root, path, line, row, known))
    if not docs:
        raise DataError(f"{path}: no documents listed")
    seen: set[str] = set()
    for d in docs:
        if d.path in seen:
            raise DataError(f"{path}: {d.path!r} is listed twice")
        seen.add(d.path)
    return docs


def _document(root: Path, csv_path: Path, line: int, row: dict[str, str], known: set[str]):
    where = f"{csv_path}:{line}"
    file = (row.get("file") or "").strip()
    label = (row.get("label") or "").strip().lower()
    if not file:
        raise DataError(f"{where}: empty 'file'")
    if Path(file).is_absolute() or ".." in Path(file).parts:
        raise DataError(f"{where}: 'file' must be a path inside {root}, got {file!r}")
    if label not in LABELS:
        raise DataError(f"{where}: label {label!r}; expected one of {LABELS}")
    split = (row.get("split") or "").strip()
    if split not in ("", "train", "val", "test"):
        raise DataError(f"{where}: split {split!r}; expected train, val, test or empty")
    doc = Document(
        path=file,
        label=label,
        forgery_type=(row.get("forgery_type") or "").strip(),
        split=split,
        layout=(row.get("layout") or "").strip(),
        name_origin=(row.get("name_origin") or "").strip(),
        fields={k: v.strip() for k, v in row.items() if k in known and v and v.strip()},
    )
    if label == "authentic" and doc.forgery_type:
        raise DataError(f"{where}: an authentic document with forgery_type {doc.forgery_type!r}")
    truth = Path(root) / "fields" / f"{Path(file).stem}.json"
    if truth.is_file():  # the generated corpus: ground truth and mask beside the image
        record = json.loads(truth.read_text(encoding="utf-8"))
        doc.fields = dict(record.get("fields") or {})
        doc.mask = record.get("mask") or ""
        doc.layout = doc.layout or record.get("layout", "")
        doc.name_origin = doc.name_origin or record.get("name_origin", "")
    return doc


def write_documents(path: Path, docs: list[Document]) -> None:
    """documents.csv: one row per kept document (fields as JSON), sorted by path."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*_COLUMNS, "mask", "fields"])
    for d in sorted(docs, key=lambda d: d.path):
        w.writerow(
            [
                d.path,
                d.label,
                d.forgery_type,
                d.split,
                d.layout,
                d.name_origin,
                d.mask,
                json.dumps(d.fields, sort_keys=True, ensure_ascii=False),
            ]
        )
    write_text(path, buf.getvalue())


def read_documents(path: Path) -> list[Document]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `zoo prepare doc_fraud` first")
    with open(path, newline="", encoding="utf-8") as f:
        out = []
        for row in csv.DictReader(f):
            fields = json.loads(row.pop("fields") or "{}")
            row["path"] = row.pop("file")
            out.append(Document(**row, fields=fields))
    return out


def as_dict(doc: Document) -> dict[str, Any]:
    return asdict(doc)
