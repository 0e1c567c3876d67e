"""Pixel forensics of a page for the fields head: local noise level, JPEG block grids, JPEG
ghosts.

A scan carries sensor noise of one level over the whole sheet, and its JPEG's 8x8 blocks sit on
one grid anchored at the image's corner. A region that was cut out, compressed again at a lower
quality and pasted back loses most of that noise (quantisation removes the fine detail) and
carries block edges on a grid of its own. Both show only relative to the rest of the same page,
so every measure is a ratio to the page's own typical value:

- `noise_*`: standard deviation of a fixed high-pass residual (the pixel minus the mean of its
  3x3 neighbourhood, an SRM-style filter) over paper pixels (ink and its surroundings left out),
  per block of the page and per value box read by the OCR; summarised as the page's level and
  how far the quietest region falls below it (minus the log of the ratio, 0 when none does);
- `grid_*`: within each value box, the strength of grey-level steps on each of the 8x8 column
  and row phases; a step pattern on a phase other than the page grid's (the one a recompressed
  paste brings), relative to the box's mean step, summarised over the page's values;
- `ghost_*`: JPEG ghosts (after Farid, "Exposing digital forgeries from JPEG ghosts", 2009).
  Each value box is compressed again at a few low qualities on each of the 64 8x8 grid offsets;
  pixels once compressed at a quality on a grid barely change when compressed again at about
  that quality on that grid. A pasted region, compressed at a low quality on its own grid
  before the page's final JPEG, therefore shows a dip at one offset other than the page grid's:
  the box's ghost is its lowest error over those offsets relative to the median offset's, and
  the page's feature is how far its most ghostly box falls below its typical one;
- `digit_line_max`: lining digits share one vertical centre (half-way between cap height and
  baseline, which a round digit's overshoot leaves in place), so on the values made of digits
  (dates, registration number) each glyph's centre, from sub-pixel top and bottom edges, sits
  on one straight line (the page may be slightly rotated); the largest departure from a robust
  line fit (Theil-Sen) shows a digit redrawn a pixel higher or lower;
- `render_dx_max`, `render_dy_max`: the same values rendered again as read, in the font that
  fits them best, and each digit fitted on its own: a digit redrawn a pixel aside or higher
  departs from the others' common offset (`glyphfit`);
- `stamp_blur_excess`: the stamp's thin inner circle is printed with the page, so it is as
  sharp as the page's print; one lifted from another scan and pasted is blurred twice. The
  circle's blur (from its peak-to-ink ratio, `tiles.ring_line_sharpness`, for a line
  `STAMP_LINE_PX` wide) minus a share of the blur of the page's digit values
  (`glyphfit.text_blur`), px.

Every feature is "higher = more suspicious" and 0 when there is nothing to measure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from usecases.doc_fraud.glyphfit import (
    RENDER_FEATURE_NAMES,
    page_departures,
    render_fits,
    text_blur,
)

FORENSIC_FEATURE_NAMES: tuple[str, ...] = (
    "noise_page",  # the page's residual level (grey levels)
    "noise_block_dev",  # largest |log(3x3-block neighbourhood / page level)|
    "noise_block_odd_frac",  # fraction of blocks off the page level by more than a factor 1.6
    "noise_field_dev",  # largest |log(value box / median value box)|
    "noise_field_z",  # how far the most unusual value box sits from the others (robust |z|)
    "grid_field_max",  # strongest off-grid 8x8 step pattern among the value boxes
    "ghost_field",  # median value box's JPEG-ghost ratio minus the lowest one's
    "digit_line_max",  # largest digit centre departure from its value's line (px)
    *RENDER_FEATURE_NAMES,  # digits against their value rendered again (`glyphfit`)
    "stamp_blur_excess",  # blur of the stamp's thin circle minus half the print's (px)
)
BLOCK = 16  # block side (px) of the noise map
INK_DROP = 40  # grey levels below the paper level that count as ink
INK_MARGIN = 5  # ink is dilated by this many pixels before measuring paper noise
MIN_PAPER = 0.5  # a block needs this fraction of paper pixels to be measured
FIELD_PAD = 8  # value boxes are widened by this many pixels to take in paper around the text
_EPS = 1e-3
# JPEG-ghost qualities: pastes compressed at about 40 to 75 leave their ghost at one of them.
GHOST_QUALITIES = (45, 60, 75)
GHOST_PAD = 4  # value boxes are widened by this many pixels for the ghost
DIGIT_FIELDS = ("birth_date", "declaration_date", "registration_number")
DIGIT_INK = 60  # grey levels below the paper that make a digit's component
# Width (px) of the line of the stamp's inner circle: the office stamps' design, drawn at the
# corpus's resolution (about 150 dpi).
STAMP_LINE_PX = 2.0
# Share of the print blur taken off the stamp circle's blur. The print blur measured on the
# digit values follows the scan's blur only roughly (correlation 0.91 on train + val pages),
# so taking it off whole adds its noise: copied stamps against authentic pages of train + val
# separate at AUROC 0.999 with no share, 1.000 with 0.25-0.75 and 0.991 with all of it.
PRINT_BLUR_SHARE = 0.5


def _grey(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"), dtype=np.float32)
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return a.astype(np.float32)


def residual(grey: np.ndarray) -> np.ndarray:
    """Fixed high-pass residual: pixel minus the mean of its 8 neighbours."""
    s = ndimage.uniform_filter(grey, size=3, mode="reflect") * 9.0
    return grey - (s - grey) / 8.0


def paper_mask(grey: np.ndarray) -> np.ndarray:
    """Pixels of bare paper: well above the ink level and away from any ink."""
    paper_level = float(np.median(grey))
    ink = grey < paper_level - INK_DROP
    near = ndimage.binary_dilation(ink, iterations=INK_MARGIN) if ink.any() else ink
    # The page's own border (filled white by a rotation) has no noise: leave saturated pixels out.
    return ~near & (grey < 254.5)


def _block_std(res: np.ndarray, paper: np.ndarray, block: int) -> np.ndarray:
    """Residual standard deviation over paper pixels per block (nan where too little paper)."""
    h, w = res.shape
    hb, wb = h // block, w // block
    r = np.abs(res[: hb * block, : wb * block]).reshape(hb, block, wb, block)
    p = paper[: hb * block, : wb * block].reshape(hb, block, wb, block)
    n = p.sum(axis=(1, 3)).astype(np.float64)
    s1 = (r * p).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = s1 / n
    level[n < MIN_PAPER * block * block] = np.nan
    return level


def _region_std(res: np.ndarray, paper: np.ndarray, box: Sequence[int]) -> float | None:
    h, w = res.shape
    x0, y0 = max(0, int(box[0]) - FIELD_PAD), max(0, int(box[1]) - FIELD_PAD)
    x1, y1 = min(w, int(box[2]) + FIELD_PAD), min(h, int(box[3]) + FIELD_PAD)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    sel = paper[y0:y1, x0:x1]
    if sel.sum() < 100:
        return None
    return float(np.abs(res[y0:y1, x0:x1][sel]).mean())


def grid_strength(grey: np.ndarray, box: Sequence[int]) -> float | None:
    """Off-grid blockiness of a region: for columns and rows, the mean absolute grey step
    between neighbours on each of the 8 phases (position mod 8); the page's JPEG grid puts
    its steps on phase 7 (between pixel 7 and 8). Returns the strongest other phase's step over
    the mean step of all phases, minus 1 (0 = no phase stands out)."""
    h, w = grey.shape
    x0, y0 = max(0, int(box[0]) - FIELD_PAD), max(0, int(box[1]) - FIELD_PAD)
    x1, y1 = min(w, int(box[2]) + FIELD_PAD), min(h, int(box[3]) + FIELD_PAD)
    if x1 - x0 < 24 or y1 - y0 < 16:
        return None
    crop = grey[y0:y1, x0:x1].astype(np.float32)
    # Second differences: a block edge is a kink in an otherwise smooth paper grey.
    out = 0.0
    for axis, start in ((1, x0), (0, y0)):
        d = np.abs(np.diff(crop, n=2, axis=axis))
        # Leave ink edges out: they are steps far larger than any block seam.
        d = np.minimum(d, 12.0)
        prof = d.mean(axis=1 - axis)  # per column (axis=1) or per row (axis=0)
        # Second difference at index i centres on pixel start + i + 1.
        phase = (np.arange(len(prof)) + start + 1) % 8
        means = np.array([prof[phase == k].mean() if (phase == k).any() else 0.0 for k in range(8)])
        base = float(means.mean())
        if base <= _EPS:
            continue
        # Phases 7 and 0 flank the page grid's seam.
        other = [means[k] for k in range(1, 7)]
        out = max(out, float(max(other)) / base - 1.0)
    return out


# The JPEG standard's luminance quantisation table (ITU T.81, Annex K.1), in row order.
_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
# Orthonormal 8-point DCT-II: the JPEG forward transform of a block is _DCT @ b @ _DCT.T.
_DCT = np.array(
    [
        [
            (math.sqrt(0.125) if u == 0 else 0.5) * math.cos((2 * x + 1) * u * math.pi / 16)
            for x in range(8)
        ]
        for u in range(8)
    ]
)


def quant_table(quality: int) -> np.ndarray:
    """Luminance quantisation table of a JPEG quality (1-100), scaled as libjpeg (and so
    Pillow) scales it, baseline-limited to 1..255."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_LUMA_TABLE * scale + 50) / 100), 1, 255)


def _blocks(pixels: np.ndarray) -> np.ndarray:
    """[H, W] with H, W multiples of 8 -> its 8x8 blocks [n, 8, 8]."""
    h, w = pixels.shape
    return pixels.reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 8, 8)


def recompression_errors(pixels: np.ndarray, qualities: Sequence[int]) -> np.ndarray:
    """Mean squared change of 8-bit grey `pixels` ([H, W], multiples of 8, on its own 8x8 grid)
    under a baseline JPEG round trip at each quality: level shift, DCT, quantisation, inverse,
    rounding to 8 bits. A float DCT stands in for libjpeg's integer one: on test blocks the
    change is within 0.05 of Pillow's round trip, and a page's ghosts take 0.24 s instead of
    0.72 s through the encoder."""
    b = _blocks(pixels.astype(np.float64)) - 128.0
    coef = _DCT @ b @ _DCT.T
    out = np.empty(len(qualities))
    for i, q in enumerate(qualities):
        table = quant_table(q)
        back = _DCT.T @ (np.rint(coef / table) * table) @ _DCT
        back = np.clip(np.rint(back + 128.0), 0, 255) - 128.0
        out[i] = float(((back - b) ** 2).mean())
    return out


def jpeg_ghost(grey: np.ndarray, box: Sequence[int]) -> float | None:
    """A region's JPEG ghost: over `GHOST_QUALITIES`, the lowest mean squared change under
    recompression at one of the 63 grid offsets other than the image's, relative to the median
    over all 64 offsets (about 1 on a page compressed once; well below 1 on a paste that was
    compressed at a low quality on a grid of its own). None when the region is too small."""
    h, w = grey.shape
    x0, y0 = max(0, int(box[0]) - GHOST_PAD), max(0, int(box[1]) - GHOST_PAD)
    x1, y1 = min(w, int(box[2]) + GHOST_PAD), min(h, int(box[3]) + GHOST_PAD)
    if x1 - x0 < 40 or y1 - y0 < 24:
        return None
    # Only the region, in 8-bit grey as a JPEG holds it; (x0, y0) stays its page position.
    pixels = np.clip(np.rint(grey[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
    err = np.empty((8, 8, len(GHOST_QUALITIES)))
    for oy in range(8):
        for ox in range(8):
            # The crop starts on a pixel at offset (ox, oy) of the image's 8x8 grid.
            sx, sy = x0 + (ox - x0) % 8, y0 + (oy - y0) % 8
            ny, nx = (y1 - sy) // 8 * 8, (x1 - sx) // 8 * 8
            block = pixels[sy - y0 : sy - y0 + ny, sx - x0 : sx - x0 + nx]
            err[oy, ox] = recompression_errors(block, GHOST_QUALITIES)
    typical = np.maximum(np.median(err.reshape(64, -1), axis=0), _EPS)
    err[0, 0] = math.inf  # the image's own grid: every pixel there was compressed on it
    return float((err.reshape(64, -1).min(axis=0) / typical).min())


def _edges(profile: np.ndarray) -> tuple[float, float] | None:
    """Sub-pixel first and last crossings of half the profile's peak (linear interpolation)."""
    half = 0.5 * float(profile.max())
    above = np.flatnonzero(profile >= half)
    if half <= 0 or len(above) == 0:
        return None
    i, j = int(above[0]), int(above[-1])
    top, bottom = float(i), float(j)
    if i > 0 and profile[i] != profile[i - 1]:
        top = i - (profile[i] - half) / (profile[i] - profile[i - 1])
    if j + 1 < len(profile) and profile[j] != profile[j + 1]:
        bottom = j + (profile[j] - half) / (profile[j] - profile[j + 1])
    return top, bottom


def digit_line(grey: np.ndarray, box: Sequence[int], text: str | None = None) -> float | None:
    """The largest departure (px) of a digit's vertical centre from the robust line through the
    centres of a value's digits; None with fewer than 4 digits. With the value's `text` as read
    and one ink component per character, the components of non-digits (`/`) are left out by
    position; otherwise by height (much shorter or taller than the value's typical one)."""
    h, w = grey.shape
    x0, y0 = max(0, int(box[0]) - 2), max(0, int(box[1]) - 3)
    x1, y1 = min(w, int(box[2]) + 2), min(h, int(box[3]) + 3)
    if x1 - x0 < 16 or y1 - y0 < 8:
        return None
    crop = grey[y0:y1, x0:x1]
    dark = np.clip(float(np.median(grey)) - crop, 0.0, None)
    lab, n = ndimage.label(dark > DIGIT_INK)
    if n < 4:
        return None
    objs = ndimage.find_objects(lab)
    area = ndimage.sum_labels(np.ones_like(dark), lab, np.arange(1, n + 1))
    comps = sorted((objs[k - 1][1].start, k) for k in range(1, n + 1) if area[k - 1] >= 10)
    chars = "".join((text or "").split())
    if chars and len(chars) == len(comps):
        keep = {k for (_, k), ch in zip(comps, chars, strict=True) if ch.isdigit()}
    else:
        heights = {k: objs[k - 1][0].stop - objs[k - 1][0].start for _, k in comps}
        typical = float(np.median(list(heights.values()))) if heights else 0.0
        keep = {k for k, v in heights.items() if abs(v - typical) <= max(1.0, 0.08 * typical)}
    centres, xs = [], []
    for k, o in enumerate(objs, start=1):
        if k not in keep:
            continue
        cols = o[1]
        near = ndimage.binary_dilation(lab[:, cols] == k, iterations=2)
        edges = _edges((dark[:, cols] * near).max(axis=1))
        if edges is not None:
            centres.append(0.5 * (edges[0] + edges[1]))
            xs.append(0.5 * (cols.start + cols.stop))
    if len(centres) < 4:
        return None
    c, x = np.array(centres), np.array(xs)
    i, j = np.triu_indices(len(x), k=1)
    ok = x[j] != x[i]
    slope = float(np.median((c[j] - c[i])[ok] / (x[j] - x[i])[ok])) if ok.any() else 0.0
    res = c - slope * x
    return float(np.abs(res - np.median(res)).max())


def _boxes(geometry: dict, scale: float, rotation: int, size: tuple[int, int]) -> Iterable:
    """Value boxes in image coordinates (the OCR image may be scaled or turned upside down)."""
    w, h = size
    s = scale if scale and scale > 0 else 1.0
    for g in geometry.values():
        b = g.get("box") if isinstance(g, dict) else None
        if not b or len(b) != 4:
            continue
        x0, y0, x1, y1 = (float(v) / s for v in b)
        if rotation == 180:
            x0, y0, x1, y1 = w - x1, h - y1, w - x0, h - y0
        yield (x0, y0, x1, y1)


def forensic_features(
    image: Image.Image | np.ndarray,
    geometry: dict | None = None,
    scale: float = 1.0,
    rotation: int = 0,
    texts: dict[str, str] | None = None,
    ring: tuple[float, float, float] | None = None,
) -> dict[str, float]:
    """`FORENSIC_FEATURE_NAMES` of one page; `geometry` is `OcrResult.geometry` (value boxes),
    `scale`, `rotation` and `texts` (`OcrResult.raw`, the values as read) those of the same
    reading; `ring` the stamp's outer ring (centre x, y, radius, in pixels), if one was found."""
    grey = _grey(image)
    h, w = grey.shape
    paper = paper_mask(grey)
    res = residual(grey)
    # Clip the residual at a few times the page's typical level: ringing next to ink and
    # stray specks are not noise, and would swamp the level of a small region.
    typical = float(np.median(np.abs(res[paper]))) if paper.any() else 1.0
    res = np.clip(res, -4 * typical - 1, 4 * typical + 1)
    out = dict.fromkeys(FORENSIC_FEATURE_NAMES, 0.0)
    blocks = _block_std(res, paper, BLOCK)
    valid = np.isfinite(blocks)
    if valid.sum() >= 9:
        level = float(np.median(blocks[valid]))
        out["noise_page"] = level
        if level > _EPS:
            filled = np.where(valid, blocks, 0.0)
            n = ndimage.uniform_filter(valid.astype(np.float64), size=3, mode="constant")
            m = ndimage.uniform_filter(filled, size=3, mode="constant")
            with np.errstate(invalid="ignore", divide="ignore"):
                smooth = m / n
            ok = n >= 5 / 9  # at least 5 measured blocks in the neighbourhood
            if ok.any():
                logs = np.log(np.maximum(smooth[ok], _EPS) / level)
                out["noise_block_dev"] = float(np.abs(logs).max())
            lb = np.abs(np.log(np.maximum(blocks[valid], _EPS) / level))
            out["noise_block_odd_frac"] = float((lb > math.log(1.6)).mean())
    boxes = list(_boxes(geometry or {}, scale, rotation, (w, h)))
    stds = [s for b in boxes if (s := _region_std(res, paper, b)) is not None]
    if len(stds) >= 3:
        arr = np.array(stds)
        med = float(np.median(arr))
        if med > _EPS:
            logs = np.log(np.maximum(arr, _EPS) / med)
            out["noise_field_dev"] = float(np.abs(logs).max())
            spread = max(1.4826 * float(np.median(np.abs(logs))), 0.05)
            out["noise_field_z"] = float(min(float(np.abs(logs).max()) / spread, 20.0))
    grids = [g for b in boxes if (g := grid_strength(grey, b)) is not None]
    if grids:
        out["grid_field_max"] = float(max(grids))
    lines = []
    for f in DIGIT_FIELDS:
        if f not in (geometry or {}):
            continue
        for b in _boxes({f: geometry[f]}, scale, rotation, (w, h)):
            if (d := digit_line(grey, b, (texts or {}).get(f))) is not None:
                lines.append(d)
    if lines:
        out["digit_line_max"] = float(max(lines))
    # Rendering compares upright text: a page read upside down is turned as the OCR turned it.
    upright = grey[::-1, ::-1] if rotation == 180 else grey
    digit_boxes = {
        f: b for f in DIGIT_FIELDS for b in _boxes({f: (geometry or {}).get(f)}, scale, 0, (w, h))
    }
    fits = render_fits(upright, digit_boxes, texts or {})
    out.update(page_departures(fits))
    out["stamp_blur_excess"] = stamp_blur_excess(image, ring, text_blur(fits))
    ghosts = [g for b in boxes if (g := jpeg_ghost(grey, b)) is not None]
    if len(ghosts) >= 3:
        out["ghost_field"] = float(np.median(ghosts) - min(ghosts))
    return {k: float(v) if math.isfinite(v) else 0.0 for k, v in out.items()}


# Forensic features that only grow with evidence of tampering (see `heads.fit_logistic`).
FORENSIC_SUSPICION: tuple[str, ...] = tuple(n for n in FORENSIC_FEATURE_NAMES if n != "noise_page")


def _reading(result: Any) -> tuple[dict, float, int, dict]:
    """(geometry, scale, rotation, raw texts) of an `OcrResult`, of its JSON form, or of
    nothing."""
    if result is None:
        return {}, 1.0, 0, {}
    if isinstance(result, dict):
        return (
            result.get("geometry") or {},
            result.get("scale", 1.0),
            result.get("rotation", 0),
            result.get("raw") or {},
        )
    return result.geometry or {}, result.scale, result.rotation, result.raw or {}


def line_blur(sharpness: float, width: float = STAMP_LINE_PX) -> float:
    """Gaussian sigma (px) of a line `width` px wide whose radial profile has this peak over
    integrated darkness (1/px): peak / ink = erf(width / (2 sqrt(2) sigma)) / width."""
    from scipy.special import erfinv

    return float(1.0 / (math.sqrt(2.0) * erfinv(min(max(sharpness * width, 1e-6), 0.999))))


def stamp_blur_excess(
    image: Image.Image | np.ndarray,
    ring: tuple[float, float, float] | None,
    print_blur: float | None,
) -> float:
    """Blur of the stamp's thin inner circle minus `PRINT_BLUR_SHARE` of the page's print
    blur (px); 0 when either is unknown (no stamp, no value fitted)."""
    from usecases.doc_fraud.tiles import ring_line_sharpness

    if ring is None or print_blur is None:
        return 0.0
    sharpness = ring_line_sharpness(image, *ring)
    return 0.0 if sharpness is None else line_blur(sharpness) - PRINT_BLUR_SHARE * print_blur


def pixel_features(image: Image.Image | np.ndarray, result: Any = None) -> dict[str, float]:
    """`PIXEL_FEATURE_NAMES` of a page: its coloured-ink statistics (`tiles.ink_features`) and
    forensics around the value boxes of `result` (an `OcrResult` of the page, or None)."""
    from usecases.doc_fraud.tiles import ink_features

    geometry, scale, rotation, texts = _reading(result)
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    ink = ink_features(array)
    h, w = array.shape[:2]
    ring = (
        (ink["ring_cx"] * w, ink["ring_cy"] * h, ink["ring_radius"] * w)
        if ink["ring_score"] > 0
        else None
    )
    forensic = forensic_features(
        array, geometry, scale=scale, rotation=rotation, texts=texts, ring=ring
    )
    return {**ink, **forensic}


def _pixel_row(job: tuple[str, Any]) -> list[float]:
    from usecases.core.images import load_rgb

    path, reading = job
    f = pixel_features(load_rgb(path), reading)
    return [f[n] for n in PIXEL_FEATURE_NAMES]


def pixel_rows(jobs: Sequence[tuple[str, Any]], workers: int = 0) -> np.ndarray:
    """`PIXEL_FEATURE_NAMES` of many pages [n, k]: `jobs` are (image path, its reading or
    None), spread over `workers` processes (0 = one per CPU core). The rows are the same
    whatever the number of workers."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        rows = [_pixel_row(j) for j in jobs]
    else:
        # Spawned, not forked: the parent may hold torch's thread pool.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            rows = list(pool.map(_pixel_row, jobs, chunksize=4))
    return np.array(rows, dtype=np.float64).reshape(len(jobs), len(PIXEL_FEATURE_NAMES))


def _pixel_names() -> tuple[str, ...]:
    from usecases.doc_fraud.tiles import INK_FEATURE_NAMES

    return (*INK_FEATURE_NAMES, *FORENSIC_FEATURE_NAMES)


PIXEL_FEATURE_NAMES: tuple[str, ...] = _pixel_names()
