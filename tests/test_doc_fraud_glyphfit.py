"""Render-and-compare of the digit values: a redrawn digit departs from its value's rendering."""

from __future__ import annotations

import numpy as np
import pytest

from usecases.doc_fraud.forensics import forensic_features
from usecases.doc_fraud.glyphfit import (
    DIGIT_FIELDS,
    RENDER_FEATURE_NAMES,
    fit_value,
    render_features,
    value_departures,
)


def _page(index: int, forgery: bool):
    from usecases.doc_fraud.synth.corpus import DocSpec, render_document
    from usecases.doc_fraud.synth.scan import decode_jpeg

    doc = render_document(DocSpec(index, "benin", "digits"), seed=3, forgery=forgery)
    grey = decode_jpeg(doc.jpeg).astype(np.float32).mean(axis=2)
    return grey, doc.record


@pytest.fixture(scope="module")
def authentic():
    return _page(2, forgery=False)


def test_the_printed_font_is_found_and_every_digit_sits_where_it_renders(authentic):
    grey, record = authentic
    box, text = record["boxes"]["birth_date"], record["text"]["birth_date"]
    fit = fit_value(grey, box, text)
    assert fit is not None
    assert fit.font == record["style"]["value_font"]
    assert abs(fit.size - record["style"]["value_size"]) <= 1  # long values may be shrunk to fit
    assert fit.ncc > 0.9
    assert "".join(g.char for g in fit.glyphs) == text.replace(" ", "")
    dep = value_departures(fit)
    assert dep is not None and dep["render_dx_max"] < 0.3 and dep["render_dy_max"] < 0.3
    feats = render_features(grey, record["boxes"], record["text"])
    assert tuple(feats) == RENDER_FEATURE_NAMES
    assert feats["render_dx_max"] < 0.3 and feats["render_dy_max"] < 0.3
    assert 0 < feats["render_hole_max"] < 2.5  # px of ink: JPEG and rendering differences


def test_ink_missing_from_a_glyph_is_a_hole(authentic):
    grey, record = authentic
    clean = render_features(grey, record["boxes"], record["text"])["render_hole_max"]
    # The corner of one glyph painted over, as a rectangle erasing its neighbour takes it.
    x0, y0, x1, y1 = (int(v) for v in record["boxes"]["registration_number"])
    crop = grey[y0:y1, x0:x1]
    i, j = np.unravel_index(int(np.argmin(crop[:, crop.shape[1] // 2 :])), crop.shape)
    j += crop.shape[1] // 2
    clipped = grey.copy()
    paper = float(np.percentile(crop, 90))
    clipped[y0 + i - 1 : y0 + i + 2, x0 + j - 1 : x0 + j + 2] = paper
    holed = render_features(clipped, record["boxes"], record["text"])["render_hole_max"]
    assert holed > clean + 2.0  # 4.3 against 1.6 on this page


@pytest.mark.parametrize(
    ("index", "moved", "key"),
    [(2, "x_shift", "render_dx_max"), (3, "baseline_shift", "render_dy_max")],
)
def test_a_digit_redrawn_a_pixel_off_stands_out(authentic, index, moved, key):
    grey, record = _page(index, forgery=True)
    params = record["forgery"]["params"]
    assert abs(params[moved]) == 1 and record["forgery"]["fields"][0] in DIGIT_FIELDS
    feats = render_features(grey, record["boxes"], record["text"])
    assert feats[key] > 0.7
    # The authentic page of the same draw, for scale.
    clean = render_features(authentic[0], authentic[1]["boxes"], authentic[1]["text"])
    assert feats[key] > clean[key] + 0.5


def test_nothing_to_measure_gives_none_or_zero(authentic):
    grey, record = authentic
    box = record["boxes"]["birth_date"]
    assert fit_value(grey, box, "Masculin") is None  # fewer than 4 digits
    blank = np.full_like(grey, 235.0)
    assert fit_value(blank, box, record["text"]["birth_date"]) is None
    # A text that is not what is printed fits no rendering well enough.
    wrong = fit_value(grey, box, "1111111111")
    assert wrong is None or wrong.ncc < 0.9
    assert render_features(grey, {}, {}) == dict.fromkeys(RENDER_FEATURE_NAMES, 0.0)


def test_a_page_read_upside_down_is_measured_upright(authentic):
    grey, record = authentic
    geometry = {f: {"box": list(b)} for f, b in record["boxes"].items()}
    texts = record["text"]
    upright = forensic_features(grey, geometry, texts=texts)
    # A scan fed upside down: the OCR turned it to read it, so its boxes are in the upright
    # frame, and `rotation` says so.
    flipped = forensic_features(grey[::-1, ::-1].copy(), geometry, rotation=180, texts=texts)
    for k in RENDER_FEATURE_NAMES:
        assert flipped[k] == pytest.approx(upright[k], abs=1e-6)
    assert max(upright[k] for k in RENDER_FEATURE_NAMES) > 0  # something was measured


def test_the_print_blur_is_measured_where_the_font_is_known(authentic):
    from scipy import ndimage

    from usecases.doc_fraud.glyphfit import render_fits, text_blur

    grey, record = authentic
    fits = render_fits(grey, record["boxes"], record["text"])
    assert len(fits) == len(DIGIT_FIELDS)
    scan = record["scan"]["blur"]  # the scan's Gaussian; its rotation blurs a little more
    blur = text_blur(fits)
    assert scan - 0.1 < blur < scan + 0.4
    # Blurred again by 0.8 px: about sqrt(blur^2 + 0.8^2).
    softer = text_blur(
        render_fits(ndimage.gaussian_filter(grey, 0.8), record["boxes"], record["text"])
    )
    assert softer == pytest.approx(float(np.hypot(blur, 0.8)), abs=0.15)
    assert text_blur([]) is None
