"""Render-and-compare of the values made of digits (dates, registration number).

A value printed in one pass puts every glyph where the font's advances say, in one ink. A digit
painted over and drawn again by hand lands where the forger put it: a pixel off, a shade off, or
with a sliver of its neighbour erased with the old digit. Measured against the page's own
regular pitch, those departures drown in the glyphs' own side bearings (each digit sits
differently in its advance); measured against the value rendered again as read, they stand out.

For one value box and its text as read by the OCR:

1. the font is identified: among the installed families (regular and bold) and the sizes whose
   rendered ink is about as wide as the value's ink, the renderings best correlated with the
   value's darkness (upright, then rotated and blurred), and of those the one that, each glyph
   fitted, leaves the least residual (sizes a point apart can render equally wide). The text
   is rendered whole, so the font's own hinting and advances place every glyph;
2. each glyph of that rendering, blurred like a scan, is fitted on its own to the value's pixels
   (the other glyphs held at the value's common fit): offset, contrast and misfit, by
   Gauss-Newton on the linearised shift (sub-pixel);
3. a glyph printed with the others shares their horizontal offset, sits on the line through
   their vertical offsets (a page may be rotated by a degree), has their contrast and fits as
   well as they do; the value's measures are the largest departures among its digits.

`render_features` summarises a page: the largest departures over its digit values, and the
largest hole: the most ink that the fitted rendering has and the value lacks within 3x3 pixels.
A digit painted over with a rectangle takes a corner of its neighbour with it (a `/` leaning
under it, a bold digit close by), even when the new digit is drawn exactly in place; on train +
val pages the holes of authentic values stay at or below 2.13 px of ink, and 2 of the 4 digit
edits made in place exceed that. All are "higher = more suspicious" and 0 when there is nothing
to measure (no value read, fewer than 4 digits, no font that fits). On authentic generated pages
the departures stay below 0.3 px (median 0.03); a digit redrawn a pixel aside or higher reads
0.95-1.0.

The fit also gives each glyph's contrast and misfit (`GlyphFit`); neither separated re-inked
digits from authentic ones (the contrast of one glyph varies by about 5 % on authentic values),
so neither is a feature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage, signal

from usecases.doc_fraud.synth.fonts import FAMILIES, font

RENDER_FEATURE_NAMES: tuple[str, ...] = (
    "render_dx_max",  # largest sideways departure of a digit from its value's common offset (px)
    "render_dy_max",  # largest vertical departure from the line through its value's offsets (px)
    "render_hole_max",  # most ink missing from a value's fitted rendering in 3x3 px (px of ink)
)
DIGIT_FIELDS = ("birth_date", "declaration_date", "registration_number")
# The families the corpus prints values in, regular and bold (Debian's fonts; see `synth.fonts`).
CANDIDATE_FONTS: tuple[str, ...] = tuple(n for pair in FAMILIES.values() for n in pair)
SIZES = range(10, 41)
REFERENCE_SIZE = 24  # the size a value's width is first compared at
PAD = 10  # px of paper around the value box
RENDER_PAD = 3  # px of blank around a rendering (room for the blur)
BLURS = (0.4, 0.6, 0.8, 1.0)  # Gaussian sigmas (px) tried to make a rendering look scanned
FINE_BLURS = np.arange(0.2, 1.601, 0.05)  # the same, finely, for the print's blur at the fit
WIDTH_SLACK = 6  # px: a candidate's ink may be this much wider or narrower than the value's
MIN_NCC = 0.8  # below this, no rendering explains the value: nothing is measured
COARSE_ANGLES = (-1.2, -0.9, -0.6, -0.3, 0.0, 0.3, 0.6, 0.9, 1.2)  # degrees, then +-0.1 around
SHORTLIST = 3  # renderings tried rotated and blurred
REFIT = 3  # of those, the best ones fitted glyph by glyph
INK_FRACTION = 0.25  # of the crop's peak darkness: what counts as the value's ink extent


@dataclass
class GlyphFit:
    char: str
    dx: float
    dy: float
    contrast: float
    misfit: float
    x: float  # glyph centre in the crop (px)


@dataclass
class Placement:
    ncc: float
    top: int
    left: int
    font: str
    size: int
    blur: float
    angle: float


@dataclass
class ValueFit:
    font: str
    size: int
    ncc: float
    glyphs: list[GlyphFit]
    residual: float  # mean squared difference between the value and its fitted rendering
    blur: float = 0.0  # Gaussian sigma (px) that best explains the value's print (`text_blur`)
    hole: float = 0.0  # largest ink missing from the fitted rendering in a 3x3 window (px)


def _ink_width(name: str, size: int, text: str) -> int:
    x0, _, x1, _ = font(name, size).getbbox(text, anchor="ls")
    return int(x1 - x0)


def _render(
    text: str, name: str, size: int, parts: bool = True
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Coverage (0..1) of `text` drawn whole, and each glyph's own coverage: the increment of
    drawing text[:k+1] over text[:k], so that the font's advances and kerning place it."""
    f = font(name, size)
    x0, top, x1, bottom = f.getbbox(text, anchor="ls")
    w, h = int(x1 - x0) + 2 * RENDER_PAD, int(bottom - top) + 2 * RENDER_PAD
    origin = (RENDER_PAD - x0, RENDER_PAD - top)

    def draw(s: str) -> np.ndarray:
        img = Image.new("L", (w, h), 0)
        if s:
            ImageDraw.Draw(img).text(origin, s, fill=255, font=f, anchor="ls")
        return np.asarray(img, dtype=np.float32) / 255.0

    whole = draw(text)
    glyphs: list[np.ndarray] = []
    prev = np.zeros_like(whole)
    for k in range(len(text) if parts else 0):
        cur = whole if k == len(text) - 1 else draw(text[: k + 1])
        glyphs.append(np.clip(cur - prev, 0.0, 1.0))
        prev = cur
    return whole, glyphs


def _model(text: str, name: str, size: int, blur: float) -> np.ndarray:
    """The whole rendering, blurred like a scan."""
    return ndimage.gaussian_filter(_render(text, name, size, parts=False)[0], blur)


def _rotate(model: np.ndarray, angle: float) -> np.ndarray:
    return ndimage.rotate(model, angle, reshape=False, order=1) if angle else model


def _darkness(crop: np.ndarray) -> np.ndarray:
    paper = float(np.percentile(crop, 90))
    return np.clip(paper - crop, 0.0, None)


def _extent(dark: np.ndarray) -> tuple[int, int] | None:
    cols = np.flatnonzero(dark.max(axis=0) > INK_FRACTION * float(dark.max()))
    return (int(cols[0]), int(cols[-1]) + 1) if len(cols) else None


def _box_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of `a` over every h x w window that fits in it (an integral image)."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.float64)
    c[1:, 1:] = a.cumsum(axis=0).cumsum(axis=1)
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def _align(dark: np.ndarray, model: np.ndarray) -> tuple[float, int, int]:
    """Best integer placement of `model` in `dark` by normalised cross-correlation: (ncc, top,
    left) of the model's corner in the crop."""
    m = model - model.mean()
    corr = signal.fftconvolve(dark, m[::-1, ::-1], mode="valid")
    h, w = model.shape
    s1 = _box_sums(dark, h, w)
    s2 = _box_sums(dark * dark, h, w)
    var = np.maximum(s2 - s1 * s1 / model.size, 1e-9)
    ncc = corr / (np.sqrt(var) * float(np.sqrt((m * m).sum())) + 1e-9)
    i, j = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return float(ncc[i, j]), int(i), int(j)


def identify_font(
    dark: np.ndarray, text: str, fonts: Sequence[str] = CANDIDATE_FONTS
) -> list[Placement]:
    """The rendering of `text` (font, size, blur, rotation and place) that best matches `dark`
    by normalised cross-correlation: every candidate as wide as the value's ink is tried
    upright at a middling blur, then the best few are tried rotated and blurred more or less."""
    ext = _extent(dark)
    if ext is None:
        return []
    width = ext[1] - ext[0]
    upright = []
    for name in fonts:
        # Ink width grows about in proportion to the size: only sizes near the value's width.
        guess = REFERENCE_SIZE * width / max(_ink_width(name, REFERENCE_SIZE, text), 1)
        for size in range(max(SIZES[0], int(guess) - 4), min(SIZES[-1], int(guess) + 5) + 1):
            if abs(_ink_width(name, size, text) - width) > WIDTH_SLACK:
                continue
            model = _model(text, name, size, BLURS[1])
            if model.shape[0] > dark.shape[0] or model.shape[1] > dark.shape[1]:
                continue
            upright.append((_align(dark, model)[0], name, size))
    out = []
    for _, name, size in sorted(upright, reverse=True)[:SHORTLIST]:
        whole = _render(text, name, size, parts=False)[0]
        tries = [(BLURS[1], a) for a in COARSE_ANGLES]
        p = max((_place(dark, whole, name, size, *t) for t in tries), key=_ncc)
        tries = [(BLURS[1], p.angle + d) for d in (-0.1, 0.1)]
        p = max([p, *(_place(dark, whole, name, size, *t) for t in tries)], key=_ncc)
        tries = [(b, p.angle) for b in BLURS if b != p.blur]
        out.append(max([p, *(_place(dark, whole, name, size, *t) for t in tries)], key=_ncc))
    return sorted(out, key=_ncc, reverse=True)


def _ncc(p: Placement) -> float:
    return p.ncc


def _place(
    dark: np.ndarray, whole: np.ndarray, name: str, size: int, blur: float, angle: float
) -> Placement:
    model = _rotate(ndimage.gaussian_filter(whole, blur), angle)
    return Placement(*_align(dark, model), name, size, blur, angle)


def _fit_glyph(
    target: np.ndarray, glyph: np.ndarray, window: np.ndarray
) -> tuple[float, float, float, float]:
    """Offset (dx, dy), contrast and mean squared misfit of `glyph` (blurred coverage) to
    `target` over `window`, by Gauss-Newton on the linearised shift."""
    dx = dy = 0.0
    t = target[window]
    for _ in range(4):
        g = ndimage.shift(glyph, (dy, dx), order=1, mode="constant") if (dx or dy) else glyph
        gy, gx = np.gradient(g)
        a = np.stack([np.ones(t.size), g[window], gx[window], gy[window]], axis=1)
        coef, *_ = np.linalg.lstsq(a, t, rcond=None)
        b = coef[1]
        if b <= 1e-6:
            break
        # target ~ b * g(x - d) ~ b*g - b*d*grad g  -> d = -coef / b
        step_x, step_y = -coef[2] / b, -coef[3] / b
        dx = float(np.clip(dx + step_x, -3, 3))
        dy = float(np.clip(dy + step_y, -3, 3))
        if abs(step_x) < 0.01 and abs(step_y) < 0.01:
            break
    g = ndimage.shift(glyph, (dy, dx), order=1, mode="constant") if (dx or dy) else glyph
    a = np.stack([np.ones(t.size), g[window]], axis=1)
    coef, *_ = np.linalg.lstsq(a, t, rcond=None)
    misfit = float(np.mean((t - a @ coef) ** 2))
    return dx, dy, float(coef[1]), misfit


def fit_value(grey: np.ndarray, box: Sequence[float], text: str) -> ValueFit | None:
    """Render-and-compare one value; None when its text, box or pixels give nothing to fit."""
    text = " ".join(text.split())
    if sum(ch.isdigit() for ch in text) < 4:
        return None
    h, w = grey.shape
    x0, y0 = max(0, int(box[0]) - PAD), max(0, int(box[1]) - PAD)
    x1, y1 = min(w, int(math.ceil(box[2])) + PAD), min(h, int(math.ceil(box[3])) + PAD)
    if x1 - x0 < 16 or y1 - y0 < 8:
        return None
    dark = _darkness(grey[y0:y1, x0:x1].astype(np.float32))
    found = [p for p in identify_font(dark, text) if p.ncc >= MIN_NCC][:REFIT]
    fits = [(_fit_glyphs(dark, text, p), p) for p in found]
    if not fits:
        return None
    # Sizes a point apart can render equally wide and correlate almost equally well; the one
    # whose glyphs, each free to move, fit the pixels best is the one printed.
    best, placement = min(fits, key=lambda v: v[0].residual)
    best.blur = _print_blur(dark, text, placement)
    return best


def _print_blur(dark: np.ndarray, text: str, p: Placement) -> float:
    """The Gaussian sigma (px) whose blurred rendering, rotated and placed as found,
    correlates best with the value (`FINE_BLURS`, refined by a parabola through the best
    three): the page's print and scan blur, measured where the font is known."""
    whole = _render(text, p.font, p.size, parts=False)[0]
    h, w = whole.shape
    window = dark[p.top : p.top + h, p.left : p.left + w]  # the model's size: one placement
    nccs = [
        _align(window, _rotate(ndimage.gaussian_filter(whole, sigma), p.angle))[0]
        for sigma in FINE_BLURS
    ]
    i = int(np.argmax(nccs))
    if 0 < i < len(nccs) - 1:
        a, b, c = nccs[i - 1], nccs[i], nccs[i + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float(FINE_BLURS[i] + shift * (FINE_BLURS[1] - FINE_BLURS[0]))
    return float(FINE_BLURS[i])


def _fit_glyphs(dark: np.ndarray, text: str, found: Placement) -> ValueFit:
    ncc, top, left, name, size, blur, angle = (
        found.ncc,
        found.top,
        found.left,
        found.font,
        found.size,
        found.blur,
        found.angle,
    )
    whole, parts = _render(text, name, size)
    model = ndimage.gaussian_filter(whole, blur)
    hh, ww = model.shape

    def place(m: np.ndarray) -> np.ndarray:
        out = np.zeros_like(dark)
        out[top : top + hh, left : left + ww] = _rotate(m, angle)
        return out

    # The value's common fit: the whole rendering's contrast at the best placement.
    placed = place(model)
    a = np.stack([np.ones(dark.size), placed.ravel()], axis=1)
    (offset, gain), *_ = np.linalg.lstsq(a, dark.ravel(), rcond=None)
    fits = []
    recon = offset + gain * placed  # the value as drawn again, each glyph where it fits best
    for ch, part in zip(text, parts, strict=True):
        if not ch.strip() or part.max() <= 0:
            continue
        glyph = place(ndimage.gaussian_filter(part, blur))
        others = placed - glyph
        window = ndimage.binary_dilation(glyph > 0.05, iterations=2) & (others < 0.05)
        if window.sum() < 12:
            continue
        target = dark - offset - gain * others
        dx, dy, contrast, misfit = _fit_glyph(target, glyph, window)
        ys, xs = np.nonzero(glyph > 0.05)
        fits.append(GlyphFit(ch, dx, dy, contrast, misfit, float(xs.mean())))
        moved = ndimage.shift(glyph, (dy, dx), order=1, mode="constant")
        recon += contrast * moved - gain * glyph
    residual = float(np.mean((dark - recon) ** 2))
    return ValueFit(name, size, ncc, fits, residual, hole=_largest_hole(dark, recon, placed, gain))


def _largest_hole(dark: np.ndarray, recon: np.ndarray, placed: np.ndarray, gain: float) -> float:
    """The most ink the fitted rendering has that the value lacks, summed over a 3x3 window,
    in pixels of full ink, where the rendering inks (placed coverage > 0.3)."""
    if gain <= 1e-6:
        return 0.0
    deficit = np.clip(recon - dark, 0.0, None) / gain
    sums = ndimage.uniform_filter(deficit, size=3, mode="constant") * 9.0
    inked = placed > 0.3
    return float(sums[inked].max()) if inked.any() else 0.0


def value_departures(fit: ValueFit) -> dict[str, float] | None:
    """The largest departures of a value's digits from the others (see the module doc); None
    with fewer than 4 digits fitted."""
    digits = [g for g in fit.glyphs if g.char.isdigit() and g.contrast > 0]
    if len(digits) < 4:
        return None
    dx = np.array([g.dx for g in digits])
    dy = np.array([g.dy for g in digits])
    x = np.array([g.x for g in digits])
    i, j = np.triu_indices(len(x), k=1)
    ok = x[j] != x[i]
    # What is left of the page's rotation after the rendering's own: a Theil-Sen line.
    slope = float(np.median((dy[j] - dy[i])[ok] / (x[j] - x[i])[ok])) if ok.any() else 0.0
    ry = dy - slope * x
    return {
        "render_dx_max": float(np.abs(dx - np.median(dx)).max()),
        "render_dy_max": float(np.abs(ry - np.median(ry)).max()),
    }


def render_fits(
    grey: np.ndarray, boxes: dict[str, Sequence[float]], texts: dict[str, str]
) -> list[ValueFit]:
    """The fitted renderings of a page's digit values (`boxes` and `texts` as read, keyed by
    field; fields other than `DIGIT_FIELDS` are ignored)."""
    fits = []
    for fld in DIGIT_FIELDS:
        box, text = boxes.get(fld), texts.get(fld)
        if box is None or not text:
            continue
        if (fit := fit_value(grey, box, text)) is not None:
            fits.append(fit)
    return fits


def page_departures(fits: Sequence[ValueFit]) -> dict[str, float]:
    """`RENDER_FEATURE_NAMES` of a page: the largest departures over its fitted values."""
    out = dict.fromkeys(RENDER_FEATURE_NAMES, 0.0)
    for fit in fits:
        for k, v in {**(value_departures(fit) or {}), "render_hole_max": fit.hole}.items():
            out[k] = max(out[k], v if math.isfinite(v) else 0.0)
    return out


def text_blur(fits: Sequence[ValueFit]) -> float | None:
    """The page's print blur (px): the median over its fitted values; None without one."""
    return float(np.median([f.blur for f in fits])) if fits else None


def render_features(
    grey: np.ndarray, boxes: dict[str, Sequence[float]], texts: dict[str, str]
) -> dict[str, float]:
    """`RENDER_FEATURE_NAMES` of a page: the largest departures over its digit values."""
    return page_departures(render_fits(grey, boxes, texts))
