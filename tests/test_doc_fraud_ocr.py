"""Reading generated certificates with Tesseract: fields, rules, geometry features, odd inputs."""

from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from usecases.doc_fraud.ocr import (
    FEATURE_NAMES,
    NOT_FOUND,
    OcrResult,
    failed_rules,
    features,
    field_accuracy,
    normalise_date,
    normalise_registration,
    normalise_sex,
    read_document,
    snap,
    summarise_accuracy,
)
from usecases.doc_fraud.synth import FIELDS, RULES, generate

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 documents (6 authentic, one of each forgery type and a second font edit), each read
    once: (root, {doc_id: ground-truth record}, {doc_id: OcrResult})."""
    root = tmp_path_factory.mktemp("ocr") / "corpus"
    generate(
        root,
        n_documents=12,
        forged_fraction=0.5,
        holdout_type=None,
        test_fraction=0.25,
        val_fraction=0.25,
        seed=3,
    )
    records = {}
    for p in sorted((root / "fields").glob("*.json")):
        r = json.loads(p.read_text(encoding="utf-8"))
        records[r["doc_id"]] = r
    readings = {d: read_document(root / r["image"]) for d, r in records.items()}
    return root, records, readings


def _authentic(records):
    return [d for d, r in records.items() if r["label"] == "authentic"]


def _page(corpus, layout: str = "benin") -> tuple[Image.Image, dict]:
    root, records, _ = corpus
    d = next(d for d in _authentic(records) if records[d]["layout"] == layout)
    return Image.open(root / records[d]["image"]).convert("RGB"), records[d]["fields"]


# --- reading -----------------------------------------------------------------------------------


def test_authentic_pages_read_like_the_ground_truth(corpus):
    _, records, readings = corpus
    ids = _authentic(records)
    assert {records[d]["layout"] for d in ids} == {"benin", "niger"}
    scores = [field_accuracy(readings[d].fields, records[d]["fields"]) for d in ids]
    summary = summarise_accuracy(scores)
    assert summary["n_documents"] == len(ids)
    assert summary["overall"] >= 0.9, summary
    for d in ids:
        r = readings[d]
        assert r.layout == records[d]["layout"]  # detected from the header
        assert set(r.fields) == set(FIELDS)
        assert r.rotation == 0 and r.n_words > 30 and r.mean_confidence > 50
        assert all(0 <= c <= 100 for c in r.confidence.values())
        assert failed_rules(r) == []  # no false alarm from the rules on authentic pages
    niger = next(d for d in ids if records[d]["layout"] == "niger")
    assert readings[niger].fields["arrondissement"] == ""  # not printed on that layout


def test_an_inconsistent_document_fails_the_rule_it_claims(corpus):
    _, records, readings = corpus
    (d,) = [d for d, r in records.items() if r["forgery_type"] == "inconsistent"]
    assert records[d]["forgery"]["subtype"] in failed_rules(readings[d])


def test_retyped_value_sits_off_its_labels_baseline(corpus):
    _, records, readings = corpus
    font = [d for d, r in records.items() if r["forgery_type"] == "font"]
    assert font
    authentic = max(features(readings[d])["baseline_max"] for d in _authentic(records))
    for d in font:
        (fld,) = records[d]["forgery"]["fields"]
        offsets = {f: abs(g["baseline_offset"] or 0) for f, g in readings[d].geometry.items()}
        assert max(offsets, key=offsets.get) == fld  # the edited value is the one most off
        assert features(readings[d])["baseline_max"] > authentic


def test_layout_argument_skips_detection_and_is_checked(corpus):
    page, truth = _page(corpus, "niger")
    r = read_document(page, layout="niger")
    assert r.layout == "niger"
    assert sum(field_accuracy(r.fields, truth).values()) >= 11
    with pytest.raises(ValueError, match="Unknown layout 'mali'"):
        read_document(page, layout="mali")


# --- odd inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_pages_without_text_give_empty_readings(kind):
    if kind == "blank":
        image = Image.new("RGB", (874, 1240), (250, 248, 240))
    else:
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (1240, 874, 3), dtype=np.uint8))
    r = read_document(image)
    assert r.n_words == 0 and r.layout is None
    assert all(v is None for v in r.fields.values())
    assert NOT_FOUND in r.warnings
    f = features(r)
    assert f["no_text"] == 1.0 and f["rules_unevaluable"] == len(RULES)
    assert failed_rules(r) == []


def test_upside_down_scan_is_turned_and_read(corpus):
    page, truth = _page(corpus)
    r = read_document(page.rotate(180))
    assert r.rotation == 180
    assert any("upside down" in w for w in r.warnings)
    acc = field_accuracy(r.fields, truth)
    assert sum(acc.values()) >= len(acc) - 1


def test_huge_images_are_scaled_down_before_ocr(corpus, tmp_path):
    page, truth = _page(corpus)
    big = page.resize((page.width * 10, page.height * 10), Image.BILINEAR)  # 108 MP
    t0 = time.perf_counter()
    r = read_document(big)
    assert time.perf_counter() - t0 < 20
    assert any("downscaled" in w for w in r.warnings)
    assert r.scale < 0.2
    acc = field_accuracy(r.fields, truth)
    assert sum(acc.values()) >= len(acc) - 1
    # A large file: a JPEG is decoded at a reduced scale, never at full size.
    path = tmp_path / "big.jpg"
    page.resize((page.width * 8, page.height * 8), Image.BILINEAR).save(path, quality=85)
    r = read_document(path)
    assert any("reduced scale" in w for w in r.warnings)
    assert r.layout == "benin"
    # Memory, not OCR time, is the limit: a 400 MP blank page is handled like a small one.
    r = read_document(Image.new("L", (20000, 20000), 255))
    assert r.n_words == 0 and any("downscaled" in w for w in r.warnings)


def test_pdfs_and_non_images_are_refused_with_the_file_named(tmp_path):
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n")
    with pytest.raises(ValueError, match=r"scan\.pdf.*PDF.*pdftoppm"):
        read_document(pdf)
    disguised = tmp_path / "scan.jpg"  # a PDF under an image name
    disguised.write_bytes(pdf.read_bytes())
    with pytest.raises(ValueError, match=r"scan\.jpg.*pdftoppm"):
        read_document(disguised)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ValueError, match=r"notes\.png.*not an image"):
        read_document(text)
    with pytest.raises(ValueError, match=r"missing\.jpg"):
        read_document(tmp_path / "missing.jpg")
    with pytest.raises(TypeError, match="PIL image or a path"):
        read_document(np.zeros((10, 10)))


# --- results and features ----------------------------------------------------------------------


def test_result_round_trips_through_json(corpus):
    _, records, readings = corpus
    for r in readings.values():
        text = json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True)
        back = OcrResult.from_json(json.loads(text))
        assert back == r
        assert features(back) == features(r)


def test_features_are_finite_and_in_a_fixed_order(corpus):
    _, records, readings = corpus
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    for r in readings.values():
        f = features(r)
        assert tuple(f) == FEATURE_NAMES
        assert all(isinstance(v, float) and math.isfinite(v) for v in f.values())


def _result(layout: str | None, **fields) -> OcrResult:
    values = dict.fromkeys(FIELDS)
    values.update(fields)
    return OcrResult(layout, values, {}, {}, dict.fromkeys(FIELDS, ""), 10, 90.0, 0, 1.0, 0.1)


def test_rules_without_their_fields_are_set_aside_not_failed():
    # Dates read, registration number missing: the date rules are judged, the others not.
    r = _result("benin", birth_date="2020-05-01", declaration_date="2020-04-01")
    assert failed_rules(r) == ["birth_after_declaration"]
    f = features(r)
    assert f["rule_birth_after_declaration"] == 1.0
    assert f["rule_registration_number_malformed"] == 0.0
    assert f["rules_unevaluable"] == 5  # commune, arrondissement, and the 3 registration rules
    assert f["fields_missing"] == 12
    # A commune the gazetteer does not know is not evidence of a wrong region.
    r = _result("niger", region="Tahoua", commune="Nowhereville")
    assert "commune_not_in_region" not in failed_rules(r)
    assert features(r)["places_unknown"] == 1.0
    r = _result("niger", region="Tahoua", commune="Agadez")  # a real commune of another region
    assert failed_rules(r) == ["commune_not_in_region"]


def test_field_accuracy_compares_normalised_values():
    truth = {
        "birth_date": "12/03/2019",
        "sex": "Masculin",
        "surname": "DOSSOU",
        "arrondissement": "",
    }
    pred = {"birth_date": "2019-03-12", "sex": "M", "surname": "DOSSOU ", "arrondissement": None}
    assert field_accuracy(pred, truth) == {"birth_date": True, "sex": True, "surname": True}
    assert field_accuracy({}, {"surname": "DOSSOU"}) == {"surname": False}
    s = summarise_accuracy([{"surname": True, "sex": False}, {"surname": True, "sex": True}])
    assert s["overall"] == 0.75 and s["per_field"] == {"surname": 1.0, "sex": 0.5}
    assert s["documents_all_correct"] == 0.5
    assert summarise_accuracy([])["overall"] is None


def test_value_normalisers_undo_common_ocr_noise():
    assert normalise_date("O8/05/2O23") == "2023-05-08"
    assert normalise_date("08/05/ 2023.") == "2023-05-08"
    assert normalise_date("31/02/2019") is None  # not a date
    assert normalise_registration("N°0427/2019") == "0427/2019"
    assert normalise_registration("00O27 / 2019") == "00027/2019"
    assert normalise_registration("12/03/2019") is None  # a date, not a registration number
    assert normalise_sex("Feminin") == "F" and normalise_sex("Masculln") == "M"
    assert normalise_sex("Mardi") is None
    names = ("Niamey I", "Niamey II", "Niamey III", "Tahoua")
    assert snap("Niamey Il", names) == "Niamey II"
    assert snap("TAHOUA", names) == "Tahoua"
    assert snap("Zinder", names) is None
