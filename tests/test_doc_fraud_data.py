"""Document collections (real scans + CSV) and the JSON-stored linear heads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from usecases.core.data import DataError
from usecases.doc_fraud import heads
from usecases.doc_fraud.data import read_collection, read_documents, write_documents


def _scan(path, shade=250):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (300, 420), (shade, shade, shade)).save(path)


def test_real_scans_folder_with_csv(tmp_path):
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        _scan(tmp_path / "scans" / name)
    (tmp_path / "labels.csv").write_text(
        "file,label,forgery_type,split,layout,surname,birth_date\n"
        "scans/a.jpg,authentic,,train,benin,ADJOVI,2001-03-04\n"
        "scans/b.png,Forged,digits,,niger,,\n"
        "scans/sub/c.jpg,authentic,,test,,,\n",
        encoding="utf-8",
    )
    docs = read_collection(tmp_path)
    assert [d.path for d in docs] == ["scans/a.jpg", "scans/b.png", "scans/sub/c.jpg"]
    assert docs[0].fields == {"surname": "ADJOVI", "birth_date": "2001-03-04"}
    assert docs[1].label == "forged" and docs[1].forgery_type == "digits" and docs[1].split == ""
    assert docs[2].layout == "" and docs[2].fields == {}
    write_documents(tmp_path / "documents.csv", docs)
    again = read_documents(tmp_path / "documents.csv")
    assert [(d.path, d.label, d.fields) for d in again] == [
        (d.path, d.label, d.fields) for d in docs
    ]


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("file,kind\nx.jpg,authentic\n", r"missing column\(s\) \['label'\]"),
        ("file,label\nx.jpg,fake\n", r"labels.csv:2: label 'fake'"),
        ("file,label\n../x.jpg,forged\n", r"labels.csv:2: 'file' must be a path inside"),
        ("file,label,split\nx.jpg,forged,dev\n", r"labels.csv:2: split 'dev'"),
        ("file,label,forgery_type\nx.jpg,authentic,stamp\n", r"authentic document with forgery"),
        ("file,label\nx.jpg,forged\nx.jpg,forged\n", r"'x.jpg' is listed twice"),
        ("file,label\n", r"no documents listed"),
    ],
)
def test_bad_collection_csv_names_the_line_and_field(tmp_path, csv_text, message):
    (tmp_path / "labels.csv").write_text(csv_text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_collection(tmp_path)


def test_missing_csv_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"labels.csv: not found; a document collection"):
        read_collection(tmp_path)


def test_generated_corpus_ground_truth_comes_from_fields_json(tmp_path):
    _scan(tmp_path / "images/d00001.jpg")
    (tmp_path / "fields").mkdir()
    record = {"fields": {"surname": "BELLO"}, "mask": "masks/d00001.png", "layout": "niger"}
    (tmp_path / "fields/d00001.json").write_text(json.dumps(record))
    (tmp_path / "labels.csv").write_text(
        "file,label,forgery_type\nimages/d00001.jpg,forged,stamp\n", encoding="utf-8"
    )
    (doc,) = read_collection(tmp_path)
    assert doc.fields == {"surname": "BELLO"} and doc.mask == "masks/d00001.png"
    assert doc.layout == "niger"


def test_logistic_head_round_trips_through_json():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[:, 2] = 5.0  # a constant feature must not divide by zero
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)
    head = heads.fit_logistic(x, y, ["a", "b", "c"])
    head = json.loads(json.dumps(head))
    z = heads.logit(head, x)
    assert ((z > 0) == y).mean() > 0.95
    assert head["coef"][0] > abs(head["coef"][2])
    with pytest.raises(ValueError, match="single class"):
        heads.fit_logistic(x, np.zeros(200, dtype=int), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"expected \[n, 2\]"):
        heads.fit_logistic(x, y, ["a", "b"])


def test_experts_one_per_kind_scaled_on_authentic_pages():
    rng = np.random.default_rng(1)
    n = 120
    x = rng.normal(size=(3 * n + 3, 3))
    kinds = [""] * n + ["stamp"] * n + ["digits"] * n + ["rare"] * 3
    x[n : 2 * n, 0] += 3.0  # stamps show in feature a, digit edits in feature b
    x[2 * n : 3 * n, 1] += 3.0
    head = json.loads(json.dumps(heads.fit_experts(x, kinds, ["a", "b", "c"], c=1.0)))
    by_kind = {e["kind"]: e for e in head["experts"]}
    # Kinds with too few pages share the catch-all expert.
    assert set(by_kind) == {"digits", "stamp", heads.ANY_KIND}
    assert by_kind[heads.ANY_KIND]["kinds"] == ["rare"]
    assert np.argmax(by_kind["stamp"]["coef"]) == 0 and np.argmax(by_kind["digits"]["coef"]) == 1
    # Each expert is standardised on authentic rows: their median sits at 0, spread 1.
    z = heads.expert_logits(head, x[:n])
    assert z.shape == (n, 3)
    assert np.allclose(np.median(z, axis=0), 0.0, atol=1e-6)
    score = heads.expert_logit(head, x)
    assert (score[n : 3 * n] > np.quantile(score[:n], 0.9)).mean() > 0.8
    assert heads.expert_kinds(head) == [e["kind"] for e in head["experts"]]
    # A collection labelled only authentic/forged gets one expert, the plain head.
    single = heads.fit_experts(
        x, ["" if k == "" else heads.ANY_KIND for k in kinds], ["a", "b", "c"]
    )
    assert [e["kind"] for e in single["experts"]] == [heads.ANY_KIND]
    # A plain logistic head (older releases) scores through the same function.
    plain = heads.fit_logistic(x, np.array([k != "" for k in kinds], dtype=int), ["a", "b", "c"])
    assert np.allclose(heads.expert_logit(plain, x), heads.logit(plain, x))
    with pytest.raises(ValueError, match="authentic and forged"):
        heads.fit_experts(x[:n], kinds[:n], ["a", "b", "c"])


def test_threshold_at_fpr_bounds_false_positives():
    authentic = np.array([0.1, 0.5, 0.2, 0.9, 0.3, 0.4, 0.05, 0.6, 0.7, 0.8])
    t0 = heads.threshold_at_fpr(authentic, 0.0)
    assert (authentic > t0).sum() == 0
    t1 = heads.threshold_at_fpr(authentic, 0.1)
    assert (authentic > t1).sum() == 1
    assert heads.threshold_at_fpr(authentic, 0.01) == t0  # 1 % of 10 rounds down to none
