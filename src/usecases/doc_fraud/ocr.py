"""Reading a birth certificate: Tesseract on the page, then each field found by its label.

`read_document(image)` runs Tesseract (French, page segmentation mode 4: one column of lines of
varying size) on a grey copy of the page, groups its words into lines and line segments (runs of
words without a wide gap), finds every field's printed label (`render.FIELD_LABELS`) at the start
of a segment, tolerating OCR noise (accents and case ignored, a small edit distance allowed), and
takes the value to its right: the rest of the segment, or the next segment on the same line.
Values are normalised to the ground-truth form of `synth.fields` (ISO dates, `M`/`F`, `NNNN/YYYY`,
place names snapped to the gazetteer when close, person names as printed). One Tesseract run
reads a clean page; only a page with problems costs more: a value missing or not valid is read
again alone (its strip of line, then the page in sparse-text mode), and a page with almost no
labels is read again upside down.

Beside the values it measures each value's glyphs (`geometry`): the height of its tall glyphs,
its x-height, stroke width, ink width against a reference font, and its baseline offset from its
label on the same line (labels and values share a baseline on these forms), after removing the
page skew. A value erased and typed again in another font, size or baseline stands out from the
other values of the same page; `features.features` turns that into numbers for a classifier.

Nothing here needs ground truth, so real scans are read the same way as generated ones.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import time
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFont, UnidentifiedImageError
from scipy import ndimage

from usecases.core.images import ImageError, load_rgb
from usecases.doc_fraud.features import (
    FEATURE_NAMES,
    PLACE_FIELDS,
    failed_rules,
    features,
    gazetteer,
    in_gazetteer,
)
from usecases.doc_fraud.synth.fields import (
    DATE_FIELDS,
    FIELDS,
    SEX_TEXT,
    format_date,
    parse_printed_date,
)
from usecases.doc_fraud.synth.render import FIELD_LABELS, LAYOUTS

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_NAMES",
    "OcrResult",
    "failed_rules",
    "features",
    "field_accuracy",
    "read_document",
    "summarise_accuracy",
]

LANG = "fra"
# Mode 4 (a single column of text of variable sizes) keeps a label and its value on one line
# and, on the Niger form, reads the two header boxes as separate lines; mode 3 (automatic)
# sometimes cuts a header value short, mode 11 (sparse) splits every label from its value.
PSM = 4
TESSERACT_TIMEOUT_S = 60.0  # a page takes ~0.3 s; anything near this is a pathological input
# Pages are drawn for ~150 dpi (A5 at 150 dpi is 1.1 MP). Larger images are scaled down to about
# an A4 page at 150 dpi before OCR: Tesseract's time grows with the pixel count, not its accuracy.
MAX_OCR_PIXELS = 4_500_000
TARGET_OCR_PIXELS = 2_200_000
MIN_LONG_SIDE = 1000  # below this, glyphs are too small for Tesseract: scale up
# Files are decoded in full below this pixel count (and checked for truncation); above it, JPEGs
# are decoded at a reduced scale. Pillow itself refuses files past its decompression-bomb limit.
FULL_DECODE_PIXELS = 50_000_000
MIN_ANCHORS = 4  # fewer labels than this on a page with text: try the page upside down
MIN_WORD_CONF = 10.0  # Tesseract's guesses on noise and stamps score below this
GAP_FACTOR = 1.5  # a gap wider than this many line heights separates two segments
NOT_FOUND = "no text found"
COUNTRY_NAMES = {"benin": "BÉNIN", "niger": "NIGER"}  # as printed after "RÉPUBLIQUE DU"

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
# Letters Tesseract returns for digits inside a date or a registration number.
_DIGIT_LOOKALIKES = str.maketrans(
    {"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "|": "1", "i": "1", "!": "1"}
    | {"Z": "2", "z": "2", "S": "5", "s": "5", "B": "8", "g": "9", "q": "9", "G": "6", "b": "6"}
)
_SHAPES = str.maketrans({"l": "i", "1": "i", "0": "o"})
# Lower-case words a personal name may hold; any other word read with a lower-case initial 'l'
# is a capital 'I' misread ('lyadunni' for 'Iyadunni').
_PARTICLES = {"la", "le", "les", "lo"}
NAME_FIELDS = ("surname", "given_names", "father", "mother", "officer")
_EDGE_PUNCT = " :;.,|_-—–=~*•°\"'«»()[]{}"


# --- the result --------------------------------------------------------------------------------


@dataclass
class OcrResult:
    """What was read on one page. `fields` holds every key of `synth.fields.FIELDS`: the
    normalised value, None when not found (or not valid), "" when the layout does not print it.
    Pixel quantities in `geometry` are in the OCR image (`scale` x the input image)."""

    layout: str | None
    fields: dict[str, str | None]
    confidence: dict[str, float]  # mean Tesseract word confidence of each value, 0-100
    geometry: dict[str, dict[str, Any]]  # per found value, see `measure_values`
    raw: dict[str, str]  # the value text as read, before normalisation ("" = none)
    n_words: int
    mean_confidence: float
    rotation: int  # 0, or 180 when the page was read upside down
    scale: float
    seconds: float = 0.0  # wall time of the reading (not stored by `prepare`)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OcrResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# --- text helpers ------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower case ASCII letters and digits only: 'Né(e) le :' -> 'neele'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if c.isascii() and c.isalnum())


def shape_fold(text: str) -> str:
    """`fold`, with the letters and digits Tesseract confuses merged: 'Niamey Il' and
    'Niamey II' both give 'niameyii'."""
    return fold(text).translate(_SHAPES)


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _tolerance(n: int) -> int:
    """Edit distance allowed when matching a folded string of length n."""
    return 0 if n <= 4 else 1 if n <= 8 else 2 if n <= 14 else 3


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    return " ".join(text.split()).strip(_EDGE_PUNCT)


# --- loading and Tesseract ---------------------------------------------------------------------


@dataclass
class Word:
    text: str
    x0: int
    y0: int
    x1: int
    y1: int
    conf: float
    line: tuple[int, int, int]  # Tesseract's (block, paragraph, line)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def folded(self) -> str:
        return fold(self.text)


def load_page(path: str | os.PathLike) -> tuple[Image.Image, list[str]]:
    """Decode an image file to RGB; a PDF or a non-image is a ValueError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError as e:
        raise ImageError(f"{path}: unreadable ({e.strerror})") from e
    if head.startswith(b"%PDF") or path.suffix.lower() == ".pdf":
        raise ImageError(
            f"{path}: a PDF document, not an image; convert to an image first, e.g. with "
            f"pdftoppm -r 150 -png {path} page"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                fmt = im.format
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        w = h = 0
        fmt = None
    if w * h <= FULL_DECODE_PIXELS or fmt != "JPEG":
        # load_rgb checks the file (truncation, mode, pixel limit) and names it in its error.
        return load_rgb(path, min_side=16, max_pixels=max(FULL_DECODE_PIXELS, w * h)), []
    # A very large JPEG: let libjpeg decode at 1/2, 1/4 or 1/8 scale, never the full raster.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                k = math.sqrt(w * h / TARGET_OCR_PIXELS)
                im.draft("RGB", (int(w / k), int(h / k)))
                page = im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: corrupt image ({e})") from e
    note = f"{path.name}: {w}x{h} px decoded at reduced scale {page.width}x{page.height}"
    return page, [note]


def prepare_page(image: Image.Image) -> tuple[Image.Image, float, list[str]]:
    """Grey image for OCR, its scale relative to `image`, and notes on any resizing."""
    w, h = image.size
    notes = []
    scale = 1.0
    if w * h > MAX_OCR_PIXELS:
        scale = math.sqrt(TARGET_OCR_PIXELS / (w * h))
        # reduce() averages whole blocks cheaply; the final resize only corrects the remainder.
        factor = max(1, int(1 / scale / 1.5))
        if factor > 1:
            image = image.reduce(factor)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.convert("L").resize(size, Image.BILINEAR)
        notes.append(
            f"image of {w}x{h} px ({w * h / 1e6:.0f} MP) downscaled to {size[0]}x{size[1]} px "
            f"before OCR (pixel cap {MAX_OCR_PIXELS / 1e6:.1f} MP, pages assumed ~150 dpi)"
        )
    else:
        image = image.convert("L")
        if max(w, h) < MIN_LONG_SIDE:
            scale = MIN_LONG_SIDE / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = image.resize(size, Image.BICUBIC)
            notes.append(f"small image of {w}x{h} px upscaled to {size[0]}x{size[1]} px for OCR")
    return image, scale, notes


def _tesseract_cmd() -> str:
    try:
        import pytesseract

        return str(pytesseract.pytesseract.tesseract_cmd)
    except ImportError:  # the binary is all that is needed
        return "tesseract"


def run_tesseract(
    gray: Image.Image, psm: int = PSM, timeout: float = TESSERACT_TIMEOUT_S
) -> list[Word] | None:
    """Tesseract's words (TSV, like `pytesseract.image_to_data`), or None on a time-out.

    The binary is run directly rather than through pytesseract because OMP_THREAD_LIMIT=1 must
    reach Tesseract without being set in this process's environment, where it would also cap
    the threads of every later child (data loaders, training workers). One thread per page lets
    callers run one page per core without oversubscribing the CPU.
    """
    buf = io.BytesIO()
    gray.save(buf, format="PPM")  # uncompressed PGM: nothing to encode or decode
    cmd = [_tesseract_cmd(), "stdin", "stdout", "-l", LANG, "--psm", str(psm), "tsv"]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.run(
            cmd, input=buf.getvalue(), capture_output=True, env=env, timeout=timeout, check=False
        )
    except FileNotFoundError as e:
        raise RuntimeError(
            f"Tesseract not found ({cmd[0]}): install it with French data, e.g. "
            f"apt-get install tesseract-ocr tesseract-ocr-fra"
        ) from e
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"Tesseract failed (exit {proc.returncode}): {err[-500:]}")
    words = []
    rows = csv.reader(
        io.StringIO(proc.stdout.decode("utf-8", "replace")),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
    )
    next(rows, None)  # header
    for r in rows:
        if len(r) < 12 or r[0] != "5" or not r[11].strip():
            continue
        conf = float(r[10])
        text = r[11].strip()
        # '|' is kept: it is how Tesseract often reads a capital I standing alone ('Niamey I').
        if conf < MIN_WORD_CONF or not (text == "|" or any(c.isalnum() for c in text)):
            continue
        x, y, w, h = (int(v) for v in r[6:10])
        words.append(Word(text, x, y, x + w, y + h, conf, (int(r[2]), int(r[3]), int(r[4]))))
    return words


# --- lines, segments and labels ----------------------------------------------------------------


@dataclass
class Segment:
    words: list[Word]
    line: int  # index of the line it belongs to

    @property
    def x0(self) -> int:
        return self.words[0].x0

    @property
    def x1(self) -> int:
        return self.words[-1].x1

    @property
    def y0(self) -> int:
        return min(w.y0 for w in self.words)

    @property
    def y1(self) -> int:
        return max(w.y1 for w in self.words)


def segments(words: Sequence[Word]) -> list[Segment]:
    """Tesseract's lines cut at wide gaps, in reading order."""
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for w in words:
        lines.setdefault(w.line, []).append(w)
    ordered = sorted(lines.values(), key=lambda ws: (min(w.y0 for w in ws), ws[0].x0))
    out = []
    for i, ws in enumerate(ordered):
        ws = sorted(ws, key=lambda w: w.x0)
        height = statistics.median(w.height for w in ws)
        cur = [ws[0]]
        for w in ws[1:]:
            if w.x0 - cur[-1].x1 > GAP_FACTOR * height:
                out.append(Segment(cur, i))
                cur = []
            cur.append(w)
        out.append(Segment(cur, i))
    return out


@dataclass
class Match:
    """A label found at the start of a segment, and the words of its value."""

    field: str
    segment: Segment
    n_label: int  # words of the segment that belong to the label
    distance: int
    value: list[Word]

    @property
    def label(self) -> list[Word]:
        return self.segment.words[: self.n_label]


def _match_prefix(label: str, words: Sequence[Word]) -> tuple[int, int] | None:
    """(edit distance, words used) of the best match of folded `label` with the folded text
    of the first words, or None when no prefix is within tolerance."""
    tol = _tolerance(len(label))
    best = None
    acc = ""
    for k, w in enumerate(words, 1):
        acc += w.folded
        d = levenshtein(label, acc)
        if best is None or d < best[0]:
            best = (d, k)
        if len(acc) > len(label) + tol:
            break
    return best if best is not None and best[0] <= tol else None


def _value_after(seg: Segment, n_label: int, segs: Sequence[Segment], used: set[int]) -> list[Word]:
    rest = seg.words[n_label:]
    if rest:
        return rest
    # Otherwise the nearest segment to the right on the same Tesseract line; failing that (it
    # may put a value on a line of its own), the nearest whose middle is level with the label.
    h = seg.y1 - seg.y0
    lo, hi = seg.y0 - 0.5 * h, seg.y1 + 0.5 * h
    best = None
    for j, other in enumerate(segs):
        if j in used or other is seg or other.x0 <= seg.x1:
            continue
        same = other.line == seg.line
        if not same and not lo <= (other.y0 + other.y1) / 2 <= hi:
            continue
        key = (not same, other.x0)
        if best is None or key < best[0]:
            best = (key, other)
    return list(best[1].words) if best is not None else []


def match_labels(segs: Sequence[Segment], layout: str) -> dict[str, Match]:
    """Each field of `layout` whose label is found, with its value words."""
    labels = {f: fold(text) for f, text in FIELD_LABELS[layout].items()}
    # The longest label that matches a segment's start claims it: 'Nom du père' beats 'Nom'.
    claims: dict[int, tuple[str, int, int]] = {}
    for i, seg in enumerate(segs):
        best = None
        for f, lab in labels.items():
            m = _match_prefix(lab, seg.words)
            if m is None:
                continue
            if best is None or (len(lab), -m[0]) > (len(labels[best[0]]), -best[1]):
                best = (f, m[0], m[1])
        if best is not None:
            claims[i] = best
    # One label per field: the closest spelling, then one with a value ('L'Officier de l'état
    # civil' under the signature has none). Segments that lose go back to being text, since a
    # value may look like a label ('Lere' reads as 'Père' within one edit).
    chosen: dict[str, Match] = {}
    for i, (f, d, n) in claims.items():
        m = Match(f, segs[i], n, d, _value_after(segs[i], n, segs, set(claims)))
        old = chosen.get(f)
        if old is None or (old.distance, not old.value) > (m.distance, not m.value):
            chosen[f] = m
    used = {segs.index(m.segment) for m in chosen.values()}
    for m in chosen.values():
        m.value = _value_after(m.segment, m.n_label, segs, used)
    return chosen


# --- normalisation -----------------------------------------------------------------------------


def _digits_text(text: str) -> str:
    """Text of a date or registration number with letter look-alikes turned into digits."""
    out = []
    for tok in text.split():
        # Only tokens that are mostly digits already: 'Masculin' must not turn into digits.
        digits = sum(c.isdigit() for c in tok)
        out.append(tok.translate(_DIGIT_LOOKALIKES) if digits >= len(tok) / 2 else tok)
    return "".join(out)


def normalise_date(text: str) -> str | None:
    """'08/05/2023' (with OCR noise) -> '2023-05-08'; None when no valid date is there."""
    t = _digits_text(text)
    m = re.search(r"(\d{1,2})\s*[/.\-,]\s*(\d{1,2})\s*[/.\-,]\s*(\d{4})", t)
    if not m:
        m = re.search(r"(?<!\d)(\d{2})(\d{2})(\d{4})(?!\d)", t)  # slashes lost
    if not m:
        return None
    return parse_printed_date(f"{int(m[1]):02d}/{int(m[2]):02d}/{m[3]}")


def normalise_registration(text: str) -> str | None:
    """'N° 0427/2019' -> '0427/2019' (the sequence as printed, zero padding kept)."""
    t = _digits_text(text)
    m = re.search(r"(?<![\d/])(\d{1,6})\s*[/|]\s*(\d{4})(?![\d/])", t)
    return f"{m[1]}/{m[2]}" if m else None


def normalise_sex(text: str) -> str | None:
    f = fold(text)
    if f in ("m", "f"):
        return f.upper()
    for code, word in SEX_TEXT.items():
        w = fold(word)
        if f[: len(w)] and levenshtein(f[: len(w)], w) <= _tolerance(len(w)):
            return code
    return None


@functools.lru_cache(maxsize=16)
def _shapes(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(shape_fold(n) for n in names)


def snap(text: str, names: Sequence[str]) -> str | None:
    """The name in `names` that `text` reads as (accents, case and look-alike letters ignored,
    a small edit distance allowed); None when none is close or two are equally close."""
    if text in names:
        return text
    f = shape_fold(text)
    if not f:
        return None
    tol = _tolerance(len(f))
    best, best_d, tie = None, tol + 1, False
    for name, shape in zip(names, _shapes(tuple(names)), strict=True):
        if abs(len(shape) - len(f)) > tol:
            continue  # too long or short to be within tolerance
        d = levenshtein(f, shape)
        if d < best_d:
            best, best_d, tie = name, d, False
        elif d == best_d:
            tie = True
    return None if tie else best


def _fix_name(text: str) -> str:
    words = []
    for w in text.split():
        letters = [c for c in w if c.isalpha() and c != "l"]
        if "l" in w and len(letters) >= 2 and all(c.isupper() for c in letters):
            w = w.replace("l", "I")  # 'OLADlPUPO': an 'l' among capitals is an 'I'
        elif w[:1] == "l" and w.lower() not in _PARTICLES and w[1:2] not in ("'", ""):
            w = "I" + w[1:]
        words.append(w)
    return " ".join(words)


def _snap_place_suffix(text: str, names: Sequence[str]) -> str:
    """'CSI Niamey Il' -> 'CSI Niamey II': the last words of a birth place snapped to a place
    name of the gazetteer, whatever the words before them ('Maternité', 'Centre de santé').
    Shortest tail first, so that a form word is never swallowed into a name."""
    words = text.split()
    for k in range(1, min(3, len(words)) + 1):
        tail = " ".join(words[-k:])
        name = snap(tail, names)
        if name is not None:
            return " ".join([*words[:-k], name])
    return text


def normalise(fld: str, text: str, layout: str | None) -> str | None:
    """The ground-truth form of a value read as `text`; None when it is not a valid value."""
    text = _clean(text)
    if not text:
        return None
    if fld in DATE_FIELDS:
        return normalise_date(text)
    if fld == "registration_number":
        return normalise_registration(text)
    if fld == "sex":
        return normalise_sex(text)
    if fld in NAME_FIELDS:
        return _fix_name(text)
    places = gazetteer(layout) if layout is not None else {}
    if fld in PLACE_FIELDS and places.get(fld):
        return snap(text, places[fld]) or (text.upper() if fld == "country" else text)
    if fld == "birth_place" and places:
        return _snap_place_suffix(text, places["commune"] + places["arrondissement"])
    return text.upper() if fld == "country" else text


def value_text(fld: str, words: Sequence[Word]) -> str:
    if fld == "sex":  # a single word; anything after it is stray
        return words[0].text if words else ""
    # A lone '|' is a capital I in a place name ('Niamey I', 'Niamey II' as '|I'), and a table
    # rule or nothing in any other value.
    place = fld in PLACE_FIELDS or fld == "birth_place"
    return " ".join(
        ("I" * len(w.text) if place else "") if set(w.text) == {"|"} else w.text for w in words
    ).strip()


# --- glyph geometry ----------------------------------------------------------------------------


@dataclass
class Glyphs:
    """Connected ink components of one text item (label or value), page coordinates."""

    x: np.ndarray  # horizontal centres
    left: np.ndarray
    right: np.ndarray
    top: np.ndarray
    bottom: np.ndarray  # exclusive: the row under the lowest ink pixel
    grey: np.ndarray  # mean grey level of each component's pixels
    stroke: float  # typical stroke width (px)
    ink: float  # mean grey level of the item's ink

    @property
    def height(self) -> np.ndarray:
        return self.bottom - self.top


def _otsu(values: np.ndarray) -> float:
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * np.arange(256))
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / total - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float(np.argmax(between))


def glyphs(gray: np.ndarray, box: tuple[int, int, int, int], pad: int = 3) -> Glyphs | None:
    """Components of the ink inside `box` (padded), or None when there is no clear ink."""
    h, w = gray.shape
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(w, box[2] + pad), min(h, box[3] + pad)
    crop = gray[y0:y1, x0:x1]
    if crop.size < 16 or np.percentile(crop, 95) - np.percentile(crop, 2) < 40:
        return None
    ink = crop <= _otsu(crop)
    lab, n = ndimage.label(ink, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(ink, lab, idx)
    objs = ndimage.find_objects(lab)
    keep = [k for k in range(n) if area[k] >= 4]
    if not keep:
        return None
    sl = [objs[k] for k in keep]
    top = np.array([s[0].start for s in sl], dtype=np.float64) + y0
    bottom = np.array([s[0].stop for s in sl], dtype=np.float64) + y0
    left = np.array([s[1].start for s in sl], dtype=np.float64) + x0
    right = np.array([s[1].stop for s in sl], dtype=np.float64) + x0
    grey = np.asarray(ndimage.mean(crop, lab, idx[keep]), dtype=np.float64)
    # Stroke width: horizontal ink runs, the short ones (long runs are horizontal strokes).
    m = np.pad(ink.astype(np.int8), ((0, 0), (1, 1)))
    d = np.diff(m, axis=1)
    runs = np.nonzero(d == -1)[1] - np.nonzero(d == 1)[1]
    stroke = float(np.mean(runs[runs <= 2 * np.median(runs)])) if len(runs) else 0.0
    return Glyphs(
        (left + right) / 2, left, right, top, bottom, grey, stroke, float(crop[ink].mean())
    )


def page_slope(items: Iterable[Glyphs], iterations: int = 2) -> float:
    """The text's slope (dy/dx) on the page, pooled over items: least squares of the glyph
    bottoms within each item (each item keeps its own height). Bottoms are whole pixels, so
    one item's own fit is coarse; pooled over a page of items the rounding averages out."""
    items = list(items)
    slope = 0.0
    for _ in range(iterations):
        num = den = 0.0
        for g in items:
            sit = _sitting(g, slope)
            if sit is None or sit[1].sum() < 2:
                continue
            x, y = g.x[sit[1]], g.bottom[sit[1]]
            xc = x - x.mean()
            num += float((xc * (y - y.mean())).sum())
            den += float((xc**2).sum())
        if den > 0:
            # Scans are rotated by a degree or two at most; more means too little text.
            slope = float(np.clip(num / den, -0.05, 0.05))
    return slope


def _sitting(g: Glyphs, slope: float) -> tuple[float, np.ndarray] | None:
    """(baseline at x = 0, mask of the components that sit on it) under the page slope; the
    mean over the sitting glyphs, for a sub-pixel baseline."""
    big = g.height >= 0.5 * g.height.max()
    r = g.bottom - slope * g.x
    base = float(np.median(r[big]))
    tol = max(1.5, 0.08 * float(np.median(g.height[big])))
    on = big & (np.abs(r - base) <= tol)
    if not on.any():
        return None
    return float(np.mean(r[on])), on


def _heights(hs: np.ndarray) -> tuple[float, float | None, np.ndarray]:
    """(tall-glyph height, x-height or None, mask of the tall glyphs) of glyphs on a baseline.

    In mixed case most glyphs are short letters, so the median is the x-height and the tall
    glyphs (capitals, ascenders, digits) stand clearly above it; in capitals or digits the
    median is already the tall height and short glyphs, if any, sit clearly below it.
    """
    med = float(np.median(hs))
    upper = hs >= 1.2 * med
    if upper.any():
        middle = hs[(hs >= 0.8 * med) & ~upper]
        return float(np.median(hs[upper])), float(np.median(middle)) if len(middle) else None, upper
    tall_mask = hs >= 0.8 * med
    tall = float(np.median(hs[tall_mask]))
    short = hs[(hs < 0.8 * tall) & (hs >= 0.45 * tall)]
    return tall, float(np.median(short)) if len(short) >= 2 else None, tall_mask


_REF_FONT: ImageFont.FreeTypeFont | ImageFont.ImageFont | None = None


def _reference_width(text: str) -> float | None:
    """Width of `text` in Pillow's built-in font, in units of that font's capital height:
    the page's values share one font, so their measured width over this stays nearly constant
    whatever the text, and a value typed in a narrower or wider font stands out."""
    global _REF_FONT
    if _REF_FONT is None:
        _REF_FONT = ImageFont.load_default(100)
    if not isinstance(_REF_FONT, ImageFont.FreeTypeFont) or not text:
        return None
    cap = -_REF_FONT.getbbox("H", anchor="ls")[1]
    return float(_REF_FONT.getlength(text)) / cap


def _round(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


def measure_values(
    gray: np.ndarray, matches: dict[str, Match], texts: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per found value: `box`, `height` (tall glyphs: capitals, digits, ascenders), `x_height`
    (None when no short letter), `stroke`, `ink` (mean grey), `width_ratio` (ink width over the
    text's width in a reference font at the same height), `baseline_offset` (value baseline
    minus label baseline, page skew removed; None without a measurable label), `label_height`,
    and for digit fields the spread of the glyphs: `glyph_bottom`, `glyph_top` (largest
    departure of one glyph's bottom / top from the others, px) and `glyph_grey` (grey levels)."""

    def box(ws: Sequence[Word]) -> tuple[int, int, int, int]:
        return (
            min(w.x0 for w in ws),
            min(w.y0 for w in ws),
            max(w.x1 for w in ws),
            max(w.y1 for w in ws),
        )

    items: dict[tuple[str, str], Glyphs] = {}
    for f, m in matches.items():
        if not m.value:
            continue
        g = glyphs(gray, box(m.value))
        if g is not None:
            items[(f, "value")] = g
        lab = glyphs(gray, box(m.label))
        if lab is not None:
            items[(f, "label")] = lab
    slope = page_slope(items.values())
    out: dict[str, dict[str, Any]] = {}
    for f, m in matches.items():
        g = items.get((f, "value"))
        if g is None:
            continue
        sit = _sitting(g, slope)
        if sit is None:
            continue
        base, on = sit
        hs = g.height[on]
        tall, x_height, tall_mask = _heights(hs)
        ref_w = _reference_width(texts.get(f, ""))
        width = float(g.right.max() - g.left.min())
        geo: dict[str, Any] = {
            "box": list(box(m.value)),
            "height": _round(tall),
            "x_height": _round(x_height),
            "stroke": _round(g.stroke),
            "ink": _round(g.ink, 1),
            "width_ratio": _round(width / (ref_w * tall) if ref_w and tall > 0 else None),
            "baseline_offset": None,
            "label_height": None,
        }
        lab = items.get((f, "label"))
        lsit = _sitting(lab, slope) if lab is not None else None
        if lab is not None and lsit is not None:
            geo["baseline_offset"] = _round(base - lsit[0])
            geo["label_height"] = _round(_heights(lab.height[lsit[1]])[0])
        if f in DATE_FIELDS or f == "registration_number":
            # Digits all sit on the baseline and reach the same height: one redrawn a pixel off,
            # or a shade lighter, departs from the others ('/' is taller and left out).
            dig = on.copy()
            dig[on] = tall_mask & (hs <= 1.15 * tall)
            if dig.sum() >= 3:
                rb = g.bottom[dig] - slope * g.x[dig]
                rt = g.top[dig] - slope * g.x[dig]
                gr = g.grey[dig]
                geo["glyph_bottom"] = _round(float(np.max(np.abs(rb - np.median(rb)))))
                geo["glyph_top"] = _round(float(np.max(np.abs(rt - np.median(rt)))))
                geo["glyph_grey"] = _round(float(np.max(np.abs(gr - np.median(gr)))), 2)
        out[f] = geo
    return out


# --- reading a page ----------------------------------------------------------------------------


def _valid(fld: str, value: str | None, layout: str | None) -> bool:
    return value is not None and in_gazetteer(fld, value, layout)


def second_look(gray: Image.Image, m: Match, layout: str, line_height: float) -> list[Word] | None:
    """Read the strip right of a label again, alone, as one line (mode 7); the value words when
    they make a valid value. Tesseract's page layout analysis sometimes mixes a line with a
    close neighbour (the Niger header's two boxes) and garbles both; alone, the line reads."""
    lab = m.label
    # Bands sized from the page's text height (a garbled label's box can be a sliver): a tight
    # one first, then a wide one in case the label's box sits off its line.
    h = max(line_height, statistics.median(w.height for w in lab))
    top, bottom = min(w.y0 for w in lab), max(w.y1 for w in lab)
    x0 = max(w.x1 for w in lab) + 1
    if gray.width - x0 < 2 * h:
        return None
    for above, below in ((0.6, 0.4), (1.0, 1.0)):
        y0, y1 = max(0, int(top - above * h)), min(gray.height, int(bottom + below * h))
        words = run_tesseract(gray.crop((x0, y0, gray.width, y1)), psm=7, timeout=10.0)
        for w in words or ():
            w.x0, w.x1, w.y0, w.y1 = w.x0 + x0, w.x1 + x0, w.y0 + y0, w.y1 + y0
            w.line = (-1, -1, -1)
        # The end of a half-read label may lead the strip ('on' of 'Région :'): skip leading
        # words and segments until the rest makes a valid value.
        for seg in segments(words)[:3] if words else ():
            for k in range(min(3, len(seg.words))):
                value = seg.words[k:]
                text = value_text(m.field, value)
                if _valid(m.field, normalise(m.field, text, layout), layout):
                    return value
    return None


def _parse(words: list[Word], layout: str | None) -> tuple[str | None, dict[str, Match]]:
    """The layout (given, or the one whose labels and country name the page shows) and its
    label matches."""
    segs = segments(words) if words else []
    if layout is not None:
        return layout, match_labels(segs, layout)
    best: tuple[tuple[int, int], str | None, dict[str, Match]] = ((0, 0), None, {})
    for lay in LAYOUTS:
        found = match_labels(segs, lay)
        named = 0
        if "country" in found:
            country = normalise("country", value_text("country", found["country"].value), lay)
            named = int(country is not None and fold(country) == fold(COUNTRY_NAMES[lay]))
        score = (named, sum(1 for m in found.values() if m.value))
        if score > best[0]:
            best = (score, lay, found)
    return best[1], best[2]


def _ocr(gray: Image.Image, layout: str | None, notes: list[str], psm: int = PSM):
    words = run_tesseract(gray, psm=psm)
    if words is None:
        notes.append(f"OCR timed out after {TESSERACT_TIMEOUT_S:.0f} s")
        words = []
    lay, found = _parse(words, layout)
    return words, lay, found


def _good(m: Match, layout: str) -> bool:
    return _valid(m.field, normalise(m.field, value_text(m.field, m.value), layout), layout)


def _fill_gaps(gray: Image.Image, words: list[Word], layout: str, found: dict[str, Match]) -> None:
    """Second chances for fields missing or not valid after the page read, in place: the
    strip right of a found label read alone, then (for labels not found at all) the page read
    in sparse-text mode (11), which copes better with boxes whose lines interleave."""
    line_height = statistics.median(w.height for w in words)
    for m in found.values():
        if not _good(m, layout):
            log.debug("%s: %r is not a valid value; reading its line again", m.field, m.value)
            value = second_look(gray, m, layout, line_height)
            if value is not None:
                m.value = value
    printed = FIELD_LABELS[layout]
    if all(f in found and _good(found[f], layout) for f in printed):
        return
    log.debug("labels missing: reading the page again in sparse-text mode")
    sparse = run_tesseract(gray, psm=11)
    if not sparse:
        return
    for f, m in match_labels(segments(sparse), layout).items():
        if _good(m, layout) and not (f in found and _good(found[f], layout)):
            found[f] = m


def read_document(image: Image.Image | str | Path, layout: str | None = None) -> OcrResult:
    """Read one certificate page (an RGB/grey image, or an image file) with Tesseract.

    `layout` ('benin', 'niger') skips the layout detection. A page with too few labels is read
    again upside down and the better reading kept. Raises ValueError (ImageError) for a file
    that is not a usable image, RuntimeError when Tesseract is missing or fails.
    """
    t0 = time.perf_counter()
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; expected one of {LAYOUTS} or None")
    notes: list[str] = []
    if isinstance(image, (str, os.PathLike)):
        image, load_notes = load_page(image)
        notes += load_notes
    elif not isinstance(image, Image.Image):
        raise TypeError(f"read_document: expected a PIL image or a path, got {type(image)!r}")
    gray, scale, resize_notes = prepare_page(image)
    notes += resize_notes

    words, lay, found = _ocr(gray, layout, notes)
    rotation = 0
    anchors = sum(1 for m in found.values() if m.value)
    if anchors < MIN_ANCHORS and len(words) >= 5:
        flipped = gray.rotate(180)
        words2, lay2, found2 = _ocr(flipped, layout, notes)
        anchors2 = sum(1 for m in found2.values() if m.value)
        if anchors2 > anchors:
            gray, words, lay, found, rotation = flipped, words2, lay2, found2, 180
            anchors = anchors2
            notes.append("page read upside down (rotated 180 degrees)")
    if lay is not None and anchors >= MIN_ANCHORS:
        _fill_gaps(gray, words, lay, found)

    fields: dict[str, str | None] = dict.fromkeys(FIELDS)
    raw = dict.fromkeys(FIELDS, "")
    confidence: dict[str, float] = {}
    if lay is not None:
        for f in FIELDS:
            if f not in FIELD_LABELS[lay]:
                fields[f] = ""  # not printed on this layout (Niger has no arrondissement)
        for f, m in found.items():
            if not m.value:
                continue
            raw[f] = _clean(value_text(f, m.value))
            fields[f] = normalise(f, raw[f], lay)
            used = m.value[:1] if f == "sex" else m.value
            confidence[f] = round(float(np.mean([w.conf for w in used])), 2)
            if fields[f] is None:
                notes.append(f"{f}: read {raw[f]!r}, not a valid value")
    if lay is None and words:
        notes.append("layout not recognised: no certificate labels found")
    if not words:
        notes.append(NOT_FOUND)
    texts = {f: (format_date(v) if f in DATE_FIELDS else raw[f]) for f, v in fields.items() if v}
    geometry = measure_values(np.asarray(gray), found, texts) if found else {}
    return OcrResult(
        layout=lay,
        fields=fields,
        confidence=confidence,
        geometry=geometry,
        raw=raw,
        n_words=len(words),
        mean_confidence=round(float(np.mean([w.conf for w in words])), 2) if words else 0.0,
        rotation=rotation,
        scale=round(scale, 6),
        seconds=round(time.perf_counter() - t0, 3),
        warnings=notes,
    )


# --- accuracy against ground truth -------------------------------------------------------------


def _canonical(fld: str, value: Any) -> str:
    """One spelling per value, so that a CSV's '12/03/2019' or 'Masculin' equals the ISO date
    or 'M' read from the page."""
    if value is None:
        return ""
    text = " ".join(unicodedata.normalize("NFC", str(value)).translate(_APOSTROPHES).split())
    if fld in DATE_FIELDS and "/" in text:
        return parse_printed_date(text) or text
    if fld == "sex" and len(text) > 1:
        return normalise_sex(text) or text
    return text


def field_accuracy(predicted: dict[str, Any], truth: dict[str, Any]) -> dict[str, bool]:
    """Exact match per field of `truth` that holds a value (fields left empty in the truth, like
    Niger's arrondissement or an unknown cell of a partner's CSV, are not scored)."""
    out = {}
    for f, t in truth.items():
        want = _canonical(f, t)
        if not want:
            continue
        out[f] = _canonical(f, predicted.get(f)) == want
    return out


def summarise_accuracy(results: Sequence[dict[str, bool]]) -> dict[str, Any]:
    """Per-field and overall exact-match rates over documents (outputs of `field_accuracy`)."""
    per: dict[str, list[bool]] = {}
    for r in results:
        for f, ok in r.items():
            per.setdefault(f, []).append(bool(ok))
    order = [f for f in FIELDS if f in per] + sorted(set(per) - set(FIELDS))
    total = sum(len(v) for v in per.values())
    return {
        "overall": round(sum(sum(v) for v in per.values()) / total, 6) if total else None,
        "documents_all_correct": round(sum(all(r.values()) for r in results) / len(results), 6)
        if results
        else None,
        "n_documents": len(results),
        "per_field": {f: round(sum(per[f]) / len(per[f]), 6) for f in order},
    }


# --- command line ------------------------------------------------------------------------------


def evaluate_corpus(root: str | os.PathLike, limit: int | None = None) -> dict[str, Any]:
    """Field accuracy and speed on the authentic documents of a generated corpus."""
    root = Path(root)
    records = [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / "fields").glob("*.json"))
    ]
    records = [r for r in records if r["label"] == "authentic"][:limit]
    scores, seconds, errors = [], [], {}
    for r in records:
        res = read_document(root / r["image"])
        acc = field_accuracy(res.fields, r["fields"])
        scores.append(acc)
        seconds.append(res.seconds)
        wrong = {f: [res.fields.get(f), r["fields"][f]] for f, ok in acc.items() if not ok}
        if wrong:
            errors[r["doc_id"]] = wrong
    summary = summarise_accuracy(scores)
    summary["seconds_per_page"] = round(float(np.mean(seconds)), 3) if seconds else None
    summary["errors"] = errors
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m usecases.doc_fraud.ocr page.jpg ...` prints one JSON reading per page;
    `--corpus DIR` prints field accuracy on a generated corpus's authentic pages."""
    p = argparse.ArgumentParser(prog="python -m usecases.doc_fraud.ocr", description=main.__doc__)
    p.add_argument("images", nargs="*", type=Path)
    p.add_argument("--layout", choices=LAYOUTS)
    p.add_argument("--corpus", type=Path, help="a folder written by synth.generate")
    p.add_argument("--limit", type=int, help="at most this many authentic pages of --corpus")
    a = p.parse_args(argv)
    if a.corpus:
        out = evaluate_corpus(a.corpus, a.limit)
        sys.stdout.write(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for path in a.images:
        res = read_document(path, a.layout)
        sys.stdout.write(
            json.dumps({"path": str(path), **res.to_json()}, ensure_ascii=False) + "\n"
        )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
