"""Pixel forensics (noise level, block grids, JPEG ghosts) and the sign-constrained fields head."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from usecases.doc_fraud import heads
from usecases.doc_fraud.features import FEATURE_NAMES, NOVELTY_FEATURES, SUSPICION_FEATURES
from usecases.doc_fraud.forensics import (
    FORENSIC_FEATURE_NAMES,
    FORENSIC_SUSPICION,
    PIXEL_FEATURE_NAMES,
    forensic_features,
    paper_mask,
    pixel_features,
    residual,
)
from usecases.doc_fraud.tiles import INK_FEATURE_NAMES


@pytest.fixture(scope="module")
def page():
    """An authentic generated page, its value boxes as an OCR geometry, and the record."""
    from usecases.doc_fraud.synth.corpus import DocSpec, render_document
    from usecases.doc_fraud.synth.scan import decode_jpeg

    doc = render_document(DocSpec(5, "benin", "double_jpeg"), seed=3, forgery=False)
    image = decode_jpeg(doc.jpeg)
    geometry = {f: {"box": list(b)} for f, b in doc.record["boxes"].items()}
    return image, geometry, doc.record


def _recompress(image: np.ndarray, box, quality: int) -> np.ndarray:
    from usecases.doc_fraud.synth.scan import decode_jpeg, encode_jpeg

    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = decode_jpeg(encode_jpeg(image[y0:y1, x0:x1], quality))
    return out


def test_residual_and_paper_mask():
    flat = np.full((40, 40), 200.0, dtype=np.float32)
    assert np.abs(residual(flat)).max() < 1e-4
    grey = flat.copy()
    grey[18:22, 5:35] = 20.0  # a stroke of ink
    paper = paper_mask(grey)
    assert not paper[18:22, 5:35].any()
    assert not paper[16, 10]  # ink surroundings are not paper either
    assert paper[2, 2]


def test_double_jpeg_region_stands_out(page):
    from usecases.doc_fraud.synth.scan import decode_jpeg, encode_jpeg

    image, geometry, record = page
    clean = forensic_features(image, geometry)
    assert tuple(clean) == FORENSIC_FEATURE_NAMES
    assert all(np.isfinite(v) for v in clean.values())
    # One value's surroundings compressed again at a low quality, off the page's 8x8 grid.
    x0, y0, x1, y1 = record["boxes"]["father"]
    forged = forensic_features(
        _recompress(image, (x0 - 21, y0 - 11, x1 + 19, y1 + 13), 45), geometry
    )
    assert forged["noise_field_dev"] > clean["noise_field_dev"] + 0.1
    assert forged["noise_field_z"] > clean["noise_field_z"]
    # Its JPEG ghost: recompressing at about its quality on its own grid barely changes it,
    # even through the page's final compression at a higher quality.
    assert forged["ghost_field"] > clean["ghost_field"] + 0.3
    final = encode_jpeg(_recompress(image, (x0 - 21, y0 - 11, x1 + 19, y1 + 13), 45), 90)
    assert (
        forensic_features(decode_jpeg(final), geometry)["ghost_field"] > 0.3 + clean["ghost_field"]
    )


def test_jpeg_ghost_of_a_region():
    from usecases.doc_fraud.forensics import jpeg_ghost

    rng = np.random.default_rng(0)
    grey = np.clip(200 + rng.normal(0, 4, (96, 160)), 0, 255).astype(np.uint8)
    grey[40:56, 30:130] = 40  # a line of ink
    once = np.asarray(Image.open(io.BytesIO(_jpeg(grey, 92))), dtype=np.float32)
    assert 0.4 < jpeg_ghost(once, (20, 20, 140, 76)) <= 1.0
    # The same region compressed at 50 on a grid shifted by (3, 5) first: a deep ghost.
    pasted = grey.copy()
    pasted[5:, 3:] = np.asarray(Image.open(io.BytesIO(_jpeg(grey[5:, 3:], 50))))
    twice = np.asarray(Image.open(io.BytesIO(_jpeg(pasted, 92))), dtype=np.float32)
    assert jpeg_ghost(twice, (20, 20, 140, 76)) < 0.7 * jpeg_ghost(once, (20, 20, 140, 76))
    assert jpeg_ghost(once, (0, 0, 20, 10)) is None  # too small to measure


def _jpeg(grey: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_forensics_without_a_reading_and_upside_down(page):
    image, geometry, _ = page
    alone = forensic_features(image)
    assert alone["noise_field_dev"] == 0.0 and alone["grid_field_max"] == 0.0
    assert alone["noise_page"] > 0
    # Boxes of a reading of the page turned upside down map back onto the same values.
    h, w = image.shape[:2]
    flipped = {
        f: {"box": [w - g["box"][2], h - g["box"][3], w - g["box"][0], h - g["box"][1]]}
        for f, g in geometry.items()
    }
    up = forensic_features(image, geometry)
    down = forensic_features(image, flipped, rotation=180)
    assert down["noise_field_dev"] == pytest.approx(up["noise_field_dev"])


def test_pixel_features_join_ink_and_forensics(page):
    image, geometry, _ = page
    feats = pixel_features(image, {"geometry": geometry, "scale": 1.0, "rotation": 0})
    assert tuple(feats) == PIXEL_FEATURE_NAMES == (*INK_FEATURE_NAMES, *FORENSIC_FEATURE_NAMES)
    assert set(FORENSIC_SUSPICION) < set(FORENSIC_FEATURE_NAMES)
    assert set(SUSPICION_FEATURES) < set(FEATURE_NAMES)
    assert "confidence_min" not in SUSPICION_FEATURES  # higher confidence is less suspicious


def test_fit_logistic_keeps_suspicion_weights_non_negative():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)  # b weighs negatively
    free = heads.fit_logistic(x, y, ["a", "b", "c"])
    assert free["coef"][1] < 0
    held = heads.fit_logistic(x, y, ["a", "b", "c"], nonneg=["b"])
    assert held["coef"][1] == 0.0 and held["coef"][0] > 0
    z = heads.logit(held, x)
    assert ((z > 0) == y).mean() > 0.6
    with pytest.raises(KeyError, match="nonneg"):
        heads.fit_logistic(x, y, ["a", "b", "c"], nonneg=["d"])


def test_deviation_from_the_authentic_profile_is_per_layout_and_two_sided():
    rng = np.random.default_rng(0)
    benin = rng.normal([0.2, 5.0], [0.01, 1.0], size=(40, 2))
    niger = rng.normal([0.8, 5.0], [0.01, 1.0], size=(40, 2))
    x = np.vstack([benin, niger])
    groups = ["benin"] * 40 + ["niger"] * 40
    profile = heads.fit_profile(x, groups, ["stamp_x", "noise"])
    assert profile["names"] == ["dev_stamp_x", "dev_noise"]
    assert set(profile["groups"]) == {"*", "benin", "niger"}
    # A Benin page with its stamp where Niger's sit is far from Benin's profile only.
    moved = np.array([[0.8, 5.0]])
    assert heads.deviations(profile, moved, ["benin"])[0, 0] == heads.DEVIATION_CAP
    assert heads.deviations(profile, moved, ["niger"])[0, 0] < 3
    # Both directions count as far; an unknown layout uses the pooled profile.
    low, high = heads.deviations(profile, np.array([[0.1, 5.0], [0.3, 5.0]]), ["benin"] * 2)
    assert low[0] > 5 and high[0] > 5
    assert heads.deviations(profile, moved, [None]).shape == (1, 2)
    # A feature constant on authentic pages still gets a finite spread.
    flat = heads.fit_profile(np.zeros((10, 1)), [None] * 10, ["f"])
    assert np.isfinite(heads.deviations(flat, np.array([[1.0]]), [None])).all()
    with pytest.raises(ValueError, match="at least 5"):
        heads.fit_profile(x[:3], groups[:3], ["stamp_x", "noise"])


def test_novelty_measures_glyphs_in_authentic_tail_widths_and_only_upwards():
    rng = np.random.default_rng(0)
    authentic = rng.normal([1.0, 0.02], [0.5, 0.01], size=(200, 2))
    tail = heads.fit_tail(authentic, ["height", "baseline"], quantile=0.95, top=2)
    e = heads.exceedance(tail, np.array([[1.0, 0.02], [-5.0, -1.0], [1.0, 0.12], [1e9, 0.0]]))
    assert e[0].max() < 0.1 and e[1].max() == 0.0  # at the median; below it is not suspicious
    assert e[2, 1] > 4 and e[2, 0] < 0.1  # a baseline 10 spreads up: about 6 tail widths
    assert e[3, 0] == heads.NOVELTY_CAP
    # The authentic pages themselves: about 5 % above one tail width per feature.
    frac = (heads.exceedance(tail, authentic) > 1).mean(axis=0)
    assert np.all((frac > 0.02) & (frac < 0.08))
    nov = heads.novelty(tail, np.array([[1.0, 0.12], [3.0, 0.12]]))
    assert nov[1] > nov[0] > 4  # two departures add up
    one = heads.novelty({**tail, "top": 1}, np.array([[3.0, 0.12]]))
    assert one[0] == heads.exceedance(tail, np.array([[3.0, 0.12]])).max() < nov[1]
    with pytest.raises(ValueError, match="quantile"):
        heads.fit_tail(authentic, ["height", "baseline"], quantile=0.3)
    with pytest.raises(ValueError, match="top"):
        heads.fit_tail(authentic, ["height", "baseline"], top=0)
    with pytest.raises(ValueError, match="authentic rows"):
        heads.fit_tail(authentic, ["height"])


def test_novelty_raises_the_score_only_beyond_its_gate():
    gate = {
        "z": 3.0,
        "fused": heads.robust_scale(np.array([-2.0, -1.0, 0.0, 1.0, 2.0])),
        "novelty": heads.robust_scale(np.array([0.0, 0.5, 1.0, 1.5, 2.0])),
    }
    fused = np.array([0.5, 0.5, 0.5])
    nov = np.array([1.0, 3.0, 5.0])  # 0, 2.7 and 5.4 robust spreads above the median
    final = heads.add_novelty(fused, nov, gate)
    assert final[0] == final[1] == 0.5  # under the gate: the supervised score unchanged
    assert final[2] > 0.5 + 2 * gate["fused"]["spread"]
    assert set(NOVELTY_FEATURES) < set(SUSPICION_FEATURES)
    assert all(
        n.startswith(("height", "width", "baseline", "glyph", "stroke", "xratio"))
        for n in NOVELTY_FEATURES
    )


def test_digit_line_finds_a_digit_redrawn_a_pixel_lower(page):
    from usecases.doc_fraud.forensics import digit_line

    image, geometry, record = page
    grey = image.astype(np.float32).mean(axis=2)
    box, text = record["boxes"]["registration_number"], record["text"]["registration_number"]
    clean = digit_line(grey, box, text)
    assert clean is not None and clean < 0.5
    # Without the text, the `/` is told apart by its height: the same answer.
    assert digit_line(grey, box) == pytest.approx(clean, abs=0.05)
    # The second digit moved one pixel down, as a careful forger's redraw may leave it.
    x0, y0, x1, y1 = box
    x_mid = x0 + (x1 - x0) * 3 // (2 * len(text))  # inside the second character
    shifted = grey.copy()
    cols = slice(x0 + (x1 - x0) // len(text), x_mid + (x1 - x0) // (2 * len(text)))
    shifted[y0 + 1 : y1 + 2, cols] = grey[y0 : y1 + 1, cols]
    assert digit_line(shifted, box, text) > clean + 0.6
    assert digit_line(grey, (x0, y0, x0 + 10, y1), text) is None  # no digits to line up


def test_pixel_rows_are_the_same_over_processes(page, tmp_path):
    from usecases.doc_fraud.forensics import pixel_rows

    image, geometry, record = page
    path = tmp_path / "page.png"
    Image.fromarray(image).save(path)
    reading = {"geometry": geometry, "scale": 1.0, "rotation": 0, "raw": record["text"]}
    jobs = [(str(path), reading), (str(path), None)]
    one = pixel_rows(jobs, workers=1)
    assert one.shape == (2, len(PIXEL_FEATURE_NAMES))
    assert np.array_equal(one, pixel_rows(jobs, workers=2))
    # Without a reading there are no value boxes: the render features stay at 0.
    render = [PIXEL_FEATURE_NAMES.index(n) for n in ("render_dx_max", "render_dy_max")]
    assert (one[1, render] == 0).all() and (one[0, render] > 0).all()


def _drawn_stamp(sigma: float) -> np.ndarray:
    """A violet stamp's outer ring (4 px) and inner circle (2 px) on paper, blurred by sigma."""
    from PIL import ImageDraw
    from scipy import ndimage

    img = Image.new("RGB", (300, 300), (245, 243, 235))
    draw = ImageDraw.Draw(img)
    for r, width in ((90, 4), (63, 2)):
        draw.ellipse((150 - r, 150 - r, 150 + r, 150 + r), outline=(92, 48, 150), width=width)
    draw.text((120, 140), "ETAT CIVIL", fill=(92, 48, 150))
    a = np.asarray(img, dtype=np.float32)
    a = np.stack([ndimage.gaussian_filter(a[..., k], sigma) for k in range(3)], axis=-1)
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


def test_a_stamp_blurred_twice_has_a_softer_inner_circle():
    from usecases.doc_fraud.forensics import line_blur, stamp_blur_excess
    from usecases.doc_fraud.tiles import ring_line_sharpness

    # The centre is known to about a pixel.
    sharp = ring_line_sharpness(_drawn_stamp(0.6), 150.4, 149.6, 90.0)
    soft = ring_line_sharpness(_drawn_stamp(1.2), 150.4, 149.6, 90.0)
    assert sharp is not None and soft is not None and soft < sharp - 0.05
    # The sharpness gives back the blur of a 2 px line (sampling adds a little).
    assert line_blur(sharp) == pytest.approx(0.6, abs=0.15)
    assert line_blur(soft) == pytest.approx(1.2, abs=0.15)
    assert ring_line_sharpness(np.full((300, 300, 3), 240, np.uint8), 150, 150, 90) is None
    ring = (150.4, 149.6, 90.0)
    excess = stamp_blur_excess(_drawn_stamp(1.2), ring, 0.6)
    assert excess > stamp_blur_excess(_drawn_stamp(0.6), ring, 0.6) + 0.4
    # Nothing to compare with: no stamp found, or no value fitted.
    assert stamp_blur_excess(_drawn_stamp(1.2), None, 0.6) == 0.0
    assert stamp_blur_excess(_drawn_stamp(1.2), ring, None) == 0.0
