"""Synthetic birth-certificate corpus: determinism, splits, ground truth, forgeries, errors."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from usecases.doc_fraud.synth import (
    FIELDS,
    FORGERY_TYPES,
    DocSpec,
    assign_splits,
    check_consistency,
    fonts,
    forge,
    generate,
    geo,
    plan_documents,
    render_document,
)
from usecases.doc_fraud.synth import corpus as corpus_mod
from usecases.doc_fraud.synth.fields import INCONSISTENT_SUBTYPES, sample_fields
from usecases.doc_fraud.synth.render import sample_style

SEED = 5
N = 30  # 15 forged: 3 per type, enough for every split to hold both labels
KW = dict(n_documents=N, seed=SEED, test_fraction=0.2, val_fraction=0.2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("doc_fraud") / "corpus"
    generate(out, **KW)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(root.glob("fields/*.json"))]


def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)


def test_regeneration_is_byte_identical(corpus, tmp_path):
    again = tmp_path / "again"
    generate(again, **KW)
    first, second = _hashes(corpus), _hashes(again)
    assert len(first) == len(list(corpus.glob("images/*.jpg"))) * 2 + N // 2 + 2
    assert first == second


def test_different_seed_gives_different_documents(corpus, tmp_path):
    other = tmp_path / "other"
    generate(other, **{**KW, "seed": SEED + 1})
    a, b = _hashes(corpus), _hashes(other)
    images = [k for k in a if k.startswith("images/")]
    assert all(a[k] != b.get(k) for k in images)


def test_labels_csv_schema_and_split_rules(corpus):
    with open(corpus / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "label", "forgery_type", "layout", "name_origin", "split"]
    assert len(rows) == N
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows)
    for r in rows:
        assert (corpus / r["file"]).is_file()
        assert r["label"] in ("authentic", "forged")
        assert (r["forgery_type"] == "") == (r["label"] == "authentic")
        assert r["forgery_type"] in ("", *FORGERY_TYPES)
        assert r["layout"] in ("benin", "niger")
        assert r["name_origin"] in ("fr", "yo", "ha")
        assert r["split"] in ("train", "val", "test")
        doc_id = Path(r["file"]).stem
        assert (corpus / "masks" / f"{doc_id}.png").is_file() == (r["label"] == "forged")
    holdout = [r for r in rows if r["forgery_type"] == "double_jpeg"]
    assert holdout and all(r["split"] == "test" for r in holdout)
    for split in ("train", "val", "test"):
        assert {r["label"] for r in rows if r["split"] == split} == {"authentic", "forged"}
    gen = json.loads((corpus / "GENERATOR.json").read_text(encoding="utf-8"))
    assert gen["seed"] == SEED and gen["params"]["holdout_type"] == "double_jpeg"
    for split, counts in gen["counts"].items():
        got = sum(r["split"] == split for r in rows)
        assert sum(counts.values()) == got
    assert {"Pillow", "Faker", "benin-geo", "fonts"} <= set(gen["versions"])


def test_stratified_split_fractions():
    specs = plan_documents(1000, forged_fraction=0.5, layouts=("benin", "niger"), seed=0)
    split = assign_splits(specs, holdout_type="stamp", test_fraction=0.2, val_fraction=0.1, seed=0)
    for key in {(s.forgery_type, s.layout) for s in specs if s.forgery_type != "stamp"}:
        members = [s for s in specs if (s.forgery_type, s.layout) == key]
        val = sum(split[s.index] == "val" for s in members) / len(members)
        test = sum(split[s.index] == "test" for s in members) / len(members)
        assert abs(val - 0.1) < 0.02 and abs(test - 0.2) < 0.02, key
    assert all(split[s.index] == "test" for s in specs if s.forgery_type == "stamp")


def test_authentic_documents_are_consistent(corpus):
    import benin_geo

    records = _records(corpus)
    authentic = [r for r in records if r["label"] == "authentic"]
    assert authentic
    for r in authentic:
        f = r["fields"]
        assert set(f) == set(FIELDS) and f == r["original_fields"]
        assert check_consistency(f, r["layout"]) == []
        # Checked again here without the generator's own rules.
        birth = dt.date.fromisoformat(f["birth_date"])
        decl = dt.date.fromisoformat(f["declaration_date"])
        assert dt.date(1950, 1, 1) <= birth <= decl <= birth + dt.timedelta(days=366)
        seq, year = f["registration_number"].split("/")
        assert int(year) == decl.year and int(seq) > 0
        assert f["sex"] in ("M", "F")
        if r["layout"] == "benin":
            (dep,) = [d for d in benin_geo.departements if d.nom == f["region"]]
            (com,) = [c for c in benin_geo.communes_de(dep.id) if c.nom == f["commune"]]
            arrs = [a.nom.replace("\u2019", "'") for a in benin_geo.arrondissements_de(com.id)]
            assert f["arrondissement"] in arrs
        else:
            assert f["arrondissement"] == "" and r["boxes"]["arrondissement"] is None
            assert f["commune"] in geo.niger().region(f["region"]).communes


def test_inconsistent_documents_break_exactly_their_rule(corpus):
    records = _records(corpus)
    inconsistent = [r for r in records if r["forgery_type"] == "inconsistent"]
    assert inconsistent
    for r in inconsistent:
        assert check_consistency(r["fields"], r["layout"]) == [r["forgery"]["subtype"]]
        assert check_consistency(r["original_fields"], r["layout"]) == []
    for r in records:  # every other forgery leaves the values consistent
        if r["forgery_type"] not in (None, "inconsistent"):
            assert check_consistency(r["fields"], r["layout"]) == []
    # Every sub-kind, planned without rendering.
    seen = set()
    for layout in ("benin", "niger"):
        for i in range(40):
            rng = np.random.default_rng(i)
            fields, origin = sample_fields(layout, rng)
            fg = forge.plan("inconsistent", layout, fields, origin, sample_style(rng), rng)
            assert check_consistency({**fields, **fg.values}, layout) == [fg.subtype]
            seen.add((layout, fg.subtype))
    assert seen == {(lay, s) for lay, subs in INCONSISTENT_SUBTYPES.items() for s in subs}


def _forged_spec(ftype: str, subtype: str | None = None) -> tuple[DocSpec, dict]:
    for i in range(200):
        spec = DocSpec(i, ("benin", "niger")[i % 2], ftype)
        doc = render_document(spec, SEED)
        if subtype is None or doc.record["forgery"]["subtype"] == subtype:
            return spec, doc
    raise AssertionError(f"no {ftype}/{subtype} document in 200 tries")


@pytest.mark.parametrize(
    "ftype,subtype",
    [
        ("font", None),
        ("digits", None),
        ("double_jpeg", None),
        ("stamp", "copied"),
        ("stamp", "missing"),
        ("stamp", "moved"),
    ],
)
def test_forgery_changes_pixels_inside_its_mask(ftype, subtype):
    spec, forged = _forged_spec(ftype, subtype)
    clean = render_document(spec, SEED, forgery=False)
    assert clean.mask is None and clean.record["label"] == "forged"
    mask = forged.mask > 0
    assert mask.any() and set(np.unique(forged.mask)) <= {0, 255}
    a, b = _gray(forged.jpeg), _gray(clean.jpeg)
    assert a.shape == mask.shape
    diff = np.abs(a - b)
    assert diff[mask].mean() > 2.0
    # Away from the mask (beyond the 8x8 JPEG blocks it touches) nothing changed.
    grown = Image.fromarray(forged.mask).filter(ImageFilter.MaxFilter(33))
    outside = np.asarray(grown) == 0
    assert diff[outside].max() == 0
    if ftype in ("font", "digits"):
        (fld,) = forged.record["forgery"]["fields"]
        assert forged.record["fields"][fld] != forged.record["original_fields"][fld]
        assert forged.record["fields"][fld] != clean.record["fields"][fld]


def test_document_does_not_depend_on_generation_order(corpus):
    for r in _records(corpus)[:: N // 4]:
        spec = DocSpec(r["index"], r["layout"], r["forgery_type"])
        doc = render_document(spec, SEED)
        assert doc.jpeg == (corpus / r["image"]).read_bytes()


def test_boxes_are_inside_the_image_and_cover_text(corpus):
    for r in _records(corpus):
        img = np.asarray(Image.open(corpus / r["image"]).convert("L"))
        assert img.shape == (r["height"], r["width"])
        for fld in FIELDS:
            box = r["boxes"][fld]
            if r["text"][fld] == "":
                assert box is None
                continue
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"], (fld, box)
            crop = img[y0:y1, x0:x1]
            assert crop.min() < 100, (r["doc_id"], fld)  # ink
            assert (crop < 128).mean() > 0.05, (r["doc_id"], fld)
        if r["mask"]:
            mask = np.asarray(Image.open(corpus / r["mask"]))
            assert mask.shape == img.shape and mask.max() == 255


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"layouts": ("benin", "togo")}, "layouts"),
        ({"layouts": ()}, "layouts"),
        ({"holdout_type": "blur"}, "holdout_type"),
        ({"test_fraction": 1.2}, "test_fraction"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"forged_fraction": 1.0}, "forged_fraction"),
        ({"test_fraction": 0.6, "val_fraction": 0.5}, r"test_fraction \+ val_fraction"),
        ({"n_documents": 6}, "n_documents"),
        ({"n_documents": 0}, "n_documents"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tmp_path / "out", **{**KW, **kwargs})
    assert not (tmp_path / "out").exists()


def test_missing_font_names_the_apt_package(tmp_path, monkeypatch):
    monkeypatch.setenv(fonts.FONT_DIRS_ENV, str(tmp_path))
    fonts.clear_cache()
    try:
        with pytest.raises(fonts.FontNotFoundError, match="dejavu_sans.*fonts-dejavu-core"):
            generate(tmp_path / "out", **KW)
    finally:
        monkeypatch.undo()
        fonts.clear_cache()


def test_missing_iso_codes_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv(geo.ISO_CODES_ENV, str(tmp_path / "missing.json"))
    geo.niger.cache_clear()
    try:
        with pytest.raises(geo.GeoDataError, match="iso-codes"):
            generate(tmp_path / "out", **KW)
    finally:
        monkeypatch.undo()
        geo.niger.cache_clear()


def test_output_is_replaced_atomically(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    kw = {**KW, "n_documents": 20}
    real = corpus_mod.render_document

    def failing(spec, seed, **k):
        if spec.index == 3:
            raise RuntimeError("disk full")
        return real(spec, seed, **k)

    monkeypatch.setattr(corpus_mod, "render_document", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(out, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # no temp dir left
    assert (out / "stale.txt").read_text() == "old"  # the old corpus is untouched

    monkeypatch.setattr(corpus_mod, "render_document", real)
    summary = generate(out, **kw)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    assert sum(sum(c.values()) for c in summary["counts"].values()) == 20
