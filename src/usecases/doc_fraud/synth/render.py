"""Drawing a clean certificate page: header, labels, values, round stamp and signature.

Pages are drawn directly at their final resolution, A5 portrait at 150 dpi (874 x 1240 px):
small enough for Tesseract to read a page in about a second, large enough that 25-27 px values
(about 12 pt) stay legible after the scan simulation. Text is drawn with anchor "ls" (left end
of the baseline), so a value's position is the same whatever font draws it; every value's ink
box is kept (page coordinates, `[x0, y0, x1, y1)`), for ground truth and for the forgeries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from usecases.doc_fraud.synth.fields import printed_text
from usecases.doc_fraud.synth.fonts import FAMILIES, SCRIPT_FONTS, font

PAGE_SIZE = (874, 1240)  # (width, height): A5 at 150 dpi
LAYOUTS = ("benin", "niger")
Box = tuple[int, int, int, int]

# The label printed before each value, per layout (for an OCR field reader). `country` and
# `registration_number` share their line with the text given here.
FIELD_LABELS: dict[str, dict[str, str]] = {
    "benin": {
        "country": "RÉPUBLIQUE DU",
        "region": "Département :",
        "commune": "Commune :",
        "arrondissement": "Arrondissement :",
        "registration_number": "ACTE DE NAISSANCE N°",
        "surname": "Nom :",
        "given_names": "Prénoms :",
        "sex": "Sexe :",
        "birth_date": "Né(e) le :",
        "birth_place": "Lieu de naissance :",
        "father": "Père :",
        "mother": "Mère :",
        "declaration_date": "Déclaré(e) le :",
        "officer": "Officier de l'état civil :",
    },
    "niger": {
        "country": "RÉPUBLIQUE DU",
        "region": "Région :",
        "commune": "Commune :",
        "registration_number": "N°",
        "surname": "Nom",
        "given_names": "Prénom(s)",
        "sex": "Sexe",
        "birth_date": "Date de naissance",
        "birth_place": "Lieu de naissance",
        "father": "Nom du père",
        "mother": "Nom de la mère",
        "declaration_date": "Date de déclaration",
        "officer": "Officier d'état civil",
    },
}
_ROWS = (
    "surname",
    "given_names",
    "sex",
    "birth_date",
    "birth_place",
    "father",
    "mother",
    "declaration_date",
    "officer",
)
_MOTTO = {"benin": "Fraternité - Justice - Travail", "niger": "Fraternité - Travail - Progrès"}
_INKS = {  # stamp inks: violet, blue, red, green
    "violet": (92, 48, 150),
    "blue": (35, 60, 160),
    "red": (175, 40, 45),
    "green": (40, 110, 70),
}
# Rules and boxes in light grey: dark rules touching a text line break Tesseract's line finding,
# light ones vanish in its binarisation yet still read as a boxed form.
_RULE = (200, 200, 200)
_MIN_SIZE = 18  # never shrink a value below this (px): Tesseract degrades fast under ~10 pt


@dataclass
class TextItem:
    """One value as drawn: its text, where (left-baseline), in what font, and its ink box."""

    field: str
    text: str
    x: int
    y: int
    font: str
    size: int
    ink: int
    box: Box
    right: int  # the value may not extend past this x (its cell or the page margin)


@dataclass(frozen=True)
class StampSpec:
    center: tuple[int, int]
    radius: int
    ring_text: str
    color: tuple[int, int, int]
    opacity: float
    angle: float
    texture_seed: int
    blur: float = 0.0  # > 0: the stamp was lifted from another scan and is softer


@dataclass(frozen=True)
class SignatureSpec:
    text: str
    font: str
    size: int
    angle: float
    origin: tuple[int, int]
    color: tuple[int, int, int]
    flourish: tuple[float, ...]  # relative control heights of the underline stroke


@dataclass(frozen=True)
class Style:
    """Per-document appearance, drawn once from the style generator."""

    label_family: str
    value_family: str
    label_size: int
    value_size: int
    label_ink: int
    value_ink: int
    offset: tuple[int, int]  # whole-layout shift, as if the form were printed slightly off
    stamp_color: tuple[int, int, int]
    stamp_radius: int
    stamp_angle: float
    stamp_opacity: float
    stamp_jitter: tuple[int, int]
    stamp_texture_seed: int
    signature_font: str
    signature_size: int
    signature_angle: float
    signature_color: tuple[int, int, int]
    flourish: tuple[float, ...]


@dataclass
class Page:
    image: Image.Image  # RGB, page coordinates
    layout: str
    items: dict[str, TextItem]
    stamp: StampSpec
    signature: SignatureSpec
    regions: dict[str, Box] = field(default_factory=dict)


def sample_style(rng: np.random.Generator) -> Style:
    families = sorted(FAMILIES)
    inks = sorted(_INKS)
    return Style(
        label_family=families[int(rng.integers(len(families)))],
        value_family=families[int(rng.integers(len(families)))],
        label_size=int(rng.integers(20, 23)),
        value_size=int(rng.integers(25, 28)),
        label_ink=int(rng.integers(15, 50)),
        value_ink=int(rng.integers(5, 40)),
        offset=(int(rng.integers(-8, 9)), int(rng.integers(-8, 9))),
        stamp_color=_INKS[inks[int(rng.integers(len(inks)))]],
        stamp_radius=int(rng.integers(78, 92)),
        stamp_angle=float(rng.uniform(-180, 180)),
        stamp_opacity=float(rng.uniform(0.6, 0.85)),
        stamp_jitter=(int(rng.integers(-25, 26)), int(rng.integers(-20, 21))),
        stamp_texture_seed=int(rng.integers(2**31)),
        signature_font=SCRIPT_FONTS[int(rng.integers(len(SCRIPT_FONTS)))],
        signature_size=int(rng.integers(44, 58)),
        signature_angle=float(rng.uniform(-9, 6)),
        signature_color=(
            int(rng.integers(10, 40)),
            int(rng.integers(20, 50)),
            int(rng.integers(70, 130)),
        ),
        flourish=tuple(float(v) for v in rng.uniform(-1, 1, 4)),
    )


def text_box(text: str, font_name: str, size: int, x: int, y: int) -> Box:
    """Ink box of `text` drawn with anchor 'ls' at (x, y)."""
    x0, t, r, b = font(font_name, size).getbbox(text, anchor="ls")
    return (
        x + int(math.floor(x0)),
        y + int(math.floor(t)),
        x + int(math.ceil(r)),
        y + int(math.ceil(b)),
    )


def fit_size(text: str, font_name: str, size: int, max_width: float) -> int:
    while size > _MIN_SIZE and font(font_name, size).getlength(text) > max_width:
        size -= 1
    return size


def draw_item(draw: ImageDraw.ImageDraw, item: TextItem) -> None:
    ink = (item.ink,) * 3
    draw.text((item.x, item.y), item.text, fill=ink, font=font(item.font, item.size), anchor="ls")


class _Writer:
    """Draws labels and values for one page and remembers every value's TextItem."""

    def __init__(self, image: Image.Image, style: Style) -> None:
        self.draw = ImageDraw.Draw(image)
        self.st = style
        self.items: dict[str, TextItem] = {}
        self.label_font, self.label_bold = FAMILIES[style.label_family]
        self.value_font, self.value_bold = FAMILIES[style.value_family]

    def text(
        self,
        x: int,
        y: int,
        text: str,
        name: str | None = None,
        size: int | None = None,
        max_width: float | None = None,
    ) -> int:
        """Draw label-style text; return the x where it ends."""
        name = name or self.label_font
        size = size or self.st.label_size
        if max_width is not None:
            size = fit_size(text, name, size, max_width)
        ink = (self.st.label_ink,) * 3
        self.draw.text((x, y), text, fill=ink, font=font(name, size), anchor="ls")
        return x + int(math.ceil(font(name, size).getlength(text)))

    def centered(self, y: int, text: str, name: str, size: int, cx: int | None = None) -> None:
        cx = PAGE_SIZE[0] // 2 if cx is None else cx
        x = cx - int(font(name, size).getlength(text)) // 2
        self.text(x, y, text, name, size)

    def value(
        self,
        fld: str,
        value: str,
        x: int,
        y: int,
        right: int,
        name: str | None = None,
        size: int | None = None,
    ) -> TextItem:
        text = printed_text(fld, value)
        name = name or self.value_font
        size = fit_size(text, name, size or self.st.value_size, right - x)
        box = text_box(text, name, size, x, y)
        item = TextItem(fld, text, x, y, name, size, self.st.value_ink, box, right)
        draw_item(self.draw, item)
        self.items[fld] = item
        return item

    def centered_value(
        self, y: int, prefix: str, fld: str, value: str, name: str, size: int, cx: int | None = None
    ) -> TextItem:
        """'prefix value' centred on cx, drawn in one font; the value keeps its own box."""
        cx = PAGE_SIZE[0] // 2 if cx is None else cx
        text = printed_text(fld, value)
        f = font(name, size)
        x = cx - int(f.getlength(prefix + text)) // 2
        xv = x + int(round(f.getlength(prefix)))
        self.text(x, y, prefix, name, size)
        box = text_box(text, name, size, xv, y)
        item = TextItem(fld, text, xv, y, name, size, self.st.label_ink, box, PAGE_SIZE[0] - 40)
        draw_item(self.draw, item)
        self.items[fld] = item
        return item


def _header(w: _Writer, layout: str, fields: dict[str, str], oy: int) -> None:
    w.centered_value(62 + oy, "RÉPUBLIQUE DU ", "country", fields["country"], w.label_bold, 30)
    w.centered(97 + oy, _MOTTO[layout], "liberation_serif_italic", 19)
    w.draw.line((220, 113 + oy, PAGE_SIZE[0] - 220, 113 + oy), fill=_RULE, width=2)


def _draw_benin(w: _Writer, f: dict[str, str]) -> tuple[tuple[int, int], tuple[int, int]]:
    ox, oy = w.st.offset
    _header(w, "benin", f, oy)
    labels = FIELD_LABELS["benin"]
    right = PAGE_SIZE[0] - 40
    for k, fld in enumerate(("region", "commune", "arrondissement")):
        y = 160 + 40 * k + oy
        end = w.text(48 + ox, y, labels[fld])
        w.value(fld, f[fld], end + 12, y, right)
    w.text(48 + ox, 282 + oy, "Centre d'état civil de l'arrondissement")
    w.centered_value(
        344 + oy,
        "ACTE DE NAISSANCE N°  ",
        "registration_number",
        f["registration_number"],
        w.value_bold,
        28,
    )
    for k, fld in enumerate(_ROWS):
        y = 410 + 54 * k + oy
        w.text(48 + ox, y, labels[fld], max_width=290)
        w.value(fld, f[fld], 348 + ox, y, right)
    w.text(520 + ox, 905 + oy, "L'Officier de l'état civil")
    w.centered(1196 + oy, "Extrait conforme au registre des actes de naissance", w.label_font, 15)
    return (650 + ox, 1030 + oy), (540 + ox, 925 + oy)


def _draw_niger(w: _Writer, f: dict[str, str]) -> tuple[tuple[int, int], tuple[int, int]]:
    ox, oy = w.st.offset
    d = w.draw
    line = _RULE
    _header(w, "niger", f, oy)
    labels = FIELD_LABELS["niger"]
    # Two boxes side by side: where (left) and which act (right).
    d.rectangle((40 + ox, 128 + oy, 448 + ox, 300 + oy), outline=line, width=2)
    d.rectangle((466 + ox, 128 + oy, 834 + ox, 300 + oy), outline=line, width=2)
    for k, fld in enumerate(("region", "commune")):
        y = 170 + 44 * k + oy
        end = w.text(54 + ox, y, labels[fld])
        w.value(fld, f[fld], end + 10, y, 440 + ox)
    w.text(54 + ox, 258 + oy, "Centre d'état civil principal")
    w.centered(191 + oy, "ACTE DE NAISSANCE", w.label_bold, 26, cx=650 + ox)
    w.centered_value(
        236 + oy,
        "N°  ",
        "registration_number",
        f["registration_number"],
        w.value_bold,
        27,
        cx=650 + ox,
    )
    # The table: label cell | value cell, one row per field. The right box's two lines sit
    # between the left box's baselines: aligned baselines make OCR join them into one line.
    top, row_h = 330 + oy, 58
    bottom = top + row_h * len(_ROWS)
    d.rectangle((40 + ox, top, 834 + ox, bottom), outline=line, width=2)
    d.line((300 + ox, top, 300 + ox, bottom), fill=line, width=2)
    for k, fld in enumerate(_ROWS):
        y0 = top + row_h * k
        if k:
            d.line((40 + ox, y0, 834 + ox, y0), fill=line, width=1)
        w.text(52 + ox, y0 + 39, labels[fld], max_width=238)
        w.value(fld, f[fld], 316 + ox, y0 + 39, 822 + ox)
    w.text(60 + ox, 905 + oy, "L'Officier de l'état civil")
    w.centered(1196 + oy, "Extrait du registre des actes de naissance", w.label_font, 15)
    return (240 + ox, 1030 + oy), (70 + ox, 925 + oy)


def ring_text(layout: str, fields: dict[str, str]) -> str:
    if layout == "benin":
        return f"RÉPUBLIQUE DU BÉNIN * COMMUNE DE {fields['commune'].upper()} * ÉTAT CIVIL * "
    return f"RÉPUBLIQUE DU NIGER * COMMUNE DE {fields['commune'].upper()} * ÉTAT CIVIL * "


def stamp_for(
    layout: str, fields: dict[str, str], style: Style, center: tuple[int, int]
) -> StampSpec:
    """The office stamp of the commune named in `fields`, drawn in `style`'s ink."""
    jx, jy = style.stamp_jitter
    return StampSpec(
        center=(center[0] + jx, center[1] + jy),
        radius=style.stamp_radius,
        ring_text=ring_text(layout, fields),
        color=style.stamp_color,
        opacity=style.stamp_opacity,
        angle=style.stamp_angle,
        texture_seed=style.stamp_texture_seed,
    )


def draw_page(layout: str, fields: dict[str, str], style: Style) -> Page:
    """Header, labels and values (no stamp or signature yet: forgeries act in between)."""
    image = Image.new("RGB", PAGE_SIZE, (255, 255, 255))
    w = _Writer(image, style)
    if layout == "benin":
        stamp_c, sig_o = _draw_benin(w, fields)
    elif layout == "niger":
        stamp_c, sig_o = _draw_niger(w, fields)
    else:
        raise ValueError(f"Unknown layout {layout!r}; expected one of {LAYOUTS}")
    surname, _, given = fields["officer"].partition(" ")
    sig = SignatureSpec(
        text=f"{given[:1]}. {surname.title()}" if given else surname.title(),
        font=style.signature_font,
        size=style.signature_size,
        angle=style.signature_angle,
        origin=sig_o,
        color=style.signature_color,
        flourish=style.flourish,
    )
    return Page(image, layout, w.items, stamp_for(layout, fields, style, stamp_c), sig)


# --- ink compositing ---------------------------------------------------------------------------


def composite_ink(
    page: np.ndarray, alpha: np.ndarray, color: tuple[int, int, int], x0: int, y0: int
) -> Box:
    """Multiply-blend `alpha` (float32 [h, w], 0..1) in `color` onto page (uint8 [H, W, 3]) at
    (x0, y0), clipped to the page, like ink soaking into paper. Returns the clipped box."""
    H, W = page.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if xa >= xb or ya >= yb:
        return (0, 0, 0, 0)
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
    tint = np.asarray(color, dtype=np.float32) / 255.0
    region = page[ya:yb, xa:xb].astype(np.float32)
    page[ya:yb, xa:xb] = np.clip(region * (1.0 - a * (1.0 - tint)) + 0.5, 0, 255).astype(np.uint8)
    return (xa, ya, xb, yb)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.42
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def stamp_alpha(spec: StampSpec) -> np.ndarray:
    """The stamp's ink coverage, float32 [2R+8, 2R+8] in 0..1, centred on spec.center."""
    r = spec.radius
    size = 2 * r + 8
    c = size / 2
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    d.ellipse((c - r, c - r, c + r, c + r), outline=255, width=4)
    ri = r - 27
    d.ellipse((c - ri, c - ri, c + ri, c + ri), outline=255, width=2)
    d.polygon(_star(c, c - 8, ri * 0.45), fill=255)
    d.text(
        (c, c + ri * 0.55), "ÉTAT CIVIL", fill=255, font=font("dejavu_sans_bold", 12), anchor="mm"
    )
    # Ring text: one glyph at a time, each turned so that its top faces outwards.
    text = spec.ring_text
    rt = r - 14
    gsize = min(16, int(2 * math.pi * rt / (len(text) * 0.66)))
    f = font("dejavu_sans_bold", gsize)
    step = 2 * math.pi / len(text)
    arr = np.asarray(img, dtype=np.uint8).copy()
    g = 2 * gsize
    for k, ch in enumerate(text):
        if ch == " ":
            continue
        phi = k * step
        glyph = Image.new("L", (g, g), 0)
        ImageDraw.Draw(glyph).text((g / 2, g / 2), ch, fill=255, font=f, anchor="mm")
        glyph = glyph.rotate(-math.degrees(phi), resample=Image.BILINEAR)
        gx = int(round(c + rt * math.sin(phi) - g / 2))
        gy = int(round(c - rt * math.cos(phi) - g / 2))
        sub = arr[gy : gy + g, gx : gx + g]
        np.maximum(sub, np.asarray(glyph)[: sub.shape[0], : sub.shape[1]], out=sub)
    img = Image.fromarray(arr).rotate(spec.angle, resample=Image.BILINEAR)
    if spec.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(spec.blur))
    alpha = np.asarray(img, dtype=np.float32) / 255.0
    # Uneven inking: a smooth random field, drawn at 1/8 resolution and enlarged.
    rng = np.random.default_rng(spec.texture_seed)
    low = rng.uniform(0.45, 1.0, (size // 8 + 1, size // 8 + 1)).astype(np.float32)
    tex = Image.fromarray(low, mode="F").resize((size, size), Image.BILINEAR)
    return alpha * np.asarray(tex, dtype=np.float32) * spec.opacity


def stamp_box(spec: StampSpec) -> Box:
    size = 2 * spec.radius + 8
    x0, y0 = spec.center[0] - size // 2, spec.center[1] - size // 2
    return (x0, y0, x0 + size, y0 + size)


def draw_stamp(page: np.ndarray, spec: StampSpec) -> Box:
    x0, y0, _, _ = stamp_box(spec)
    return composite_ink(page, stamp_alpha(spec), spec.color, x0, y0)


def draw_signature(page: np.ndarray, spec: SignatureSpec) -> Box:
    f = font(spec.font, spec.size)
    x0, t, r, b = f.getbbox(spec.text, anchor="ls")
    pad = 20
    w, h = int(r - x0) + 2 * pad + 40, int(b - t) + 2 * pad
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    base = pad - int(t)
    d.text((pad - int(x0), base), spec.text, fill=255, font=f, anchor="ls")
    # An underline flourish through four random heights: every signature differs a little.
    xs = np.linspace(pad, w - pad, len(spec.flourish) + 2)
    ys = [base + 6] + [base + 6 + 8 * v for v in spec.flourish] + [base - 4]
    d.line(list(zip(xs.tolist(), ys, strict=True)), fill=255, width=2, joint="curve")
    img = img.rotate(spec.angle, resample=Image.BILINEAR, expand=True)
    alpha = np.asarray(img, dtype=np.float32) / 255.0 * 0.92
    return composite_ink(page, alpha, spec.color, spec.origin[0], spec.origin[1])
