"""Programmatic forgeries. Each is planned first (all random choices, from the forgery
generator), then applied at the stage of the pipeline where a forger would act:

- `font`: one value erased and typed again, with a new value, in another font, size and
  baseline (a crude edit of a name, place or date);
- `digits`: one or two digits of a date or of the registration number painted over with the
  background and redrawn in the same font, at most a pixel off and a shade lighter or darker
  (a careful edit); the new values stay consistent, so only the pixels tell;
- `inconsistent`: values that contradict each other, drawn normally (see
  `fields.INCONSISTENT_SUBTYPES`); the pixels are clean, only reading the values tells;
- `stamp`: the office stamp `copied` from another commune's document (softer, other ink),
  `missing`, or `moved` to where no stamp belongs;
- `double_jpeg`: after scanning, a region around one value is JPEG-compressed at a lower
  quality and pasted back, so that it carries double-compression traces in the final JPEG.

Masks are drawn in page coordinates (except `double_jpeg`, in image coordinates) and cover the
pixels the forgery changed; for `inconsistent` they cover the values that conflict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from usecases.doc_fraud.synth import fields as F
from usecases.doc_fraud.synth.fonts import FAMILIES, font
from usecases.doc_fraud.synth.geo import country_for
from usecases.doc_fraud.synth.people import Names
from usecases.doc_fraud.synth.render import (
    PAGE_SIZE,
    Box,
    Page,
    StampSpec,
    Style,
    TextItem,
    draw_item,
    fit_size,
    ring_text,
    stamp_box,
    text_box,
)
from usecases.doc_fraud.synth.scan import decode_jpeg, encode_jpeg

FORGERY_TYPES = ("font", "digits", "inconsistent", "stamp", "double_jpeg")
STAMP_SUBTYPES = ("copied", "missing", "moved")
FONT_FIELDS = ("surname", "given_names", "birth_date", "birth_place", "father", "mother")
DIGIT_FIELDS = ("birth_date", "declaration_date", "registration_number")
_WHITE = (255, 255, 255)


@dataclass
class Forgery:
    type: str
    subtype: str | None
    fields: tuple[str, ...]  # fields the forgery touches, or whose values conflict
    values: dict[str, str]  # new values, as they read once the forgery is done
    params: dict[str, Any] = field(default_factory=dict)  # JSON-ready details

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "subtype": self.subtype,
            "fields": list(self.fields),
            "params": self.params,
        }


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _pad(box: Box, px: int) -> Box:
    return (box[0] - px, box[1] - px, box[2] + px, box[3] + px)


# --- planning --------------------------------------------------------------------------------


def plan(
    ftype: str,
    layout: str,
    fields: dict[str, str],
    origin: str,
    style: Style,
    rng: np.random.Generator,
) -> Forgery:
    if ftype == "font":
        return _plan_font(layout, fields, origin, style, rng)
    if ftype == "digits":
        return _plan_digits(layout, fields, rng)
    if ftype == "inconsistent":
        return _plan_inconsistent(layout, fields, rng)
    if ftype == "stamp":
        return _plan_stamp(layout, fields, rng)
    if ftype == "double_jpeg":
        printed = [f for f in F.FIELDS if fields[f]]
        return Forgery(
            "double_jpeg",
            None,
            (_pick(rng, printed),),
            {},
            {
                "pad_x": int(rng.integers(10, 41)),
                "pad_y": int(rng.integers(6, 25)),
                "quality": int(rng.integers(40, 71)),
            },
        )
    raise ValueError(f"Unknown forgery type {ftype!r}; expected one of {FORGERY_TYPES}")


def _alternative(
    fld: str, layout: str, fields: dict[str, str], origin: str, rng: np.random.Generator
) -> str:
    names = Names(origin)
    for _ in range(50):
        if fld == "surname":
            new = names.surname(rng)
        elif fld == "given_names":
            new = names.given(rng, fields["sex"], count=len(fields[fld].split()))
        elif fld == "father":
            new = names.full(rng, "M", fields["father"].split(" ")[0])
        elif fld == "mother":
            new = names.full(rng, "F")
        elif fld == "birth_place":
            new = F.random_birth_place(layout, fields, rng)
        elif fld == "birth_date":
            decl = dt.date.fromisoformat(fields["declaration_date"])
            new = (decl - dt.timedelta(days=int(rng.integers(0, 120)))).isoformat()
        else:
            raise ValueError(f"No alternative values for field {fld!r}")
        if new != fields[fld] and not F.check_consistency({**fields, fld: new}, layout):
            return new
    # Tiny name lists can fail to give a new value: fall back to another origin's names.
    other = "fr" if origin != "fr" else "yo"
    return _alternative(fld, layout, fields, other, rng)


def _plan_font(layout, fields, origin, style, rng) -> Forgery:
    fld = _pick(rng, FONT_FIELDS)
    new = _alternative(fld, layout, fields, origin, rng)
    family = _pick(rng, [f for f in sorted(FAMILIES) if f != style.value_family])
    return Forgery(
        "font",
        None,
        (fld,),
        {fld: new},
        {
            "font_family": family,
            "size_delta": int(_pick(rng, (-4, -3, -2, 2, 3, 4))),
            "baseline_shift": int(_pick(rng, (-3, -2, 2, 3))),
            "x_shift": int(rng.integers(-4, 5)),
        },
    )


def _plan_digits(layout, fields, rng) -> Forgery:
    for _ in range(200):
        fld = _pick(rng, DIGIT_FIELDS)
        text = F.printed_text(fld, fields[fld])
        positions = [i for i, ch in enumerate(text) if ch.isdigit()]
        chosen = sorted(rng.choice(positions, size=1 if rng.random() < 0.6 else 2, replace=False))
        chars = list(text)
        for p in chosen:
            chars[p] = _pick(rng, [d for d in "0123456789" if d != text[p]])
        new_text = "".join(chars)
        new = F.value_from_text(fld, new_text)
        if new is None or not _plausible({**fields, fld: new}, layout):
            continue  # an implausible edit would be a different forgery: try again
        return Forgery(
            "digits",
            None,
            (fld,),
            {fld: new},
            {
                "positions": [int(p) for p in chosen],
                "original_text": text,
                "forged_text": new_text,
                "ink_delta": int(rng.integers(-14, 15)),
                "baseline_shift": int(_pick(rng, (0, 0, 1, -1))),
                "x_shift": int(_pick(rng, (0, 0, 1, -1))),
            },
        )
    raise RuntimeError("could not plan a consistent digit edit")  # not reached in practice


def _plausible(fields: dict[str, str], layout: str) -> bool:
    """Consistent, and inside the ranges authentic documents are drawn from, so that the edit
    shows only in the pixels."""
    if F.check_consistency(fields, layout):
        return False
    delay = dt.date.fromisoformat(fields["declaration_date"]) - dt.date.fromisoformat(
        fields["birth_date"]
    )
    seq, _ = F.parse_registration(fields["registration_number"]) or (0, 0)
    return delay.days <= 365 and seq < F.MAX_SEQUENCE[layout]


def _plan_inconsistent(layout, fields, rng) -> Forgery:
    sub = _pick(rng, F.INCONSISTENT_SUBTYPES[layout])
    country = country_for(layout)
    decl = dt.date.fromisoformat(fields["declaration_date"])
    reg = F.parse_registration(fields["registration_number"])
    assert reg is not None
    seq, year = reg
    for _ in range(100):
        if sub == "arrondissement_not_in_commune":
            region = country.region(fields["region"])
            own = set(region.arrondissements[fields["commune"]]) if region else set()
            other = _pick(rng, country.regions)
            commune = _pick(rng, other.communes)
            new = {"arrondissement": _pick(rng, other.arrondissements[commune])}
            if new["arrondissement"] in own:
                continue
        elif sub == "commune_not_in_region":
            other = _pick(rng, [r for r in country.regions if r.name != fields["region"]])
            new = {"commune": _pick(rng, other.communes)}
        elif sub == "birth_after_declaration":
            new = {"birth_date": (decl + dt.timedelta(days=int(rng.integers(1, 61)))).isoformat()}
        elif sub == "registration_year_mismatch":
            y = year + int(_pick(rng, (-2, -1, 1, 2)))
            new = {"registration_number": F.format_registration(seq, y, layout)}
        else:  # registration_number_zero
            new = {"registration_number": F.format_registration(0, year, layout)}
        if F.check_consistency({**fields, **new}, layout) == [sub]:
            return Forgery("inconsistent", sub, F.RULE_FIELDS[sub], new, {})
    raise RuntimeError(f"could not plan an inconsistency {sub!r}")  # not reached in practice


def _plan_stamp(layout, fields, rng) -> Forgery:
    sub = _pick(rng, STAMP_SUBTYPES)
    params: dict[str, Any] = {}
    if sub == "moved":
        # To the other side of the page, where nothing is ever stamped on these forms.
        params = {"dx": int(rng.integers(-40, 41)), "dy": int(rng.integers(-80, 31))}
    elif sub == "copied":
        country = country_for(layout)
        while True:
            region = _pick(rng, country.regions)
            commune = _pick(rng, region.communes)
            if commune != fields["commune"]:
                break
        params = {
            "donor_region": region.name,
            "donor_commune": commune,
            "radius_delta": int(rng.integers(-8, 9)),
            "angle": float(round(rng.uniform(-180, 180), 6)),
            "opacity": float(round(rng.uniform(0.55, 0.85), 6)),
            "blur": float(round(rng.uniform(0.6, 1.3), 6)),
            "color": [
                int(rng.integers(30, 180)),
                int(rng.integers(30, 90)),
                int(rng.integers(120, 200)),
            ],
            "texture_seed": int(rng.integers(2**31)),
        }
    return Forgery("stamp", sub, (), {}, params)


# --- applying --------------------------------------------------------------------------------


def apply_text(page: Page, forgery: Forgery, mask: ImageDraw.ImageDraw) -> None:
    """`font` and `digits`: edit the drawn page in place, mark the changed pixels in `mask`."""
    if forgery.type == "font":
        _apply_font(page, forgery, mask)
    elif forgery.type == "digits":
        _apply_digits(page, forgery, mask)


def _apply_font(page: Page, forgery: Forgery, mask: ImageDraw.ImageDraw) -> None:
    (fld,) = forgery.fields
    p = forgery.params
    old = page.items[fld]
    draw = ImageDraw.Draw(page.image)
    erase = _pad(old.box, 2)
    draw.rectangle(erase, fill=_WHITE)
    text = F.printed_text(fld, forgery.values[fld])
    name = FAMILIES[p["font_family"]][0]
    x, y = old.x + p["x_shift"], old.y + p["baseline_shift"]
    size = fit_size(text, name, old.size + p["size_delta"], old.right - x)
    new = TextItem(
        fld, text, x, y, name, size, old.ink, text_box(text, name, size, x, y), old.right
    )
    draw_item(draw, new)
    page.items[fld] = new
    mask.rectangle(erase, fill=255)
    mask.rectangle(_pad(new.box, 1), fill=255)


def _apply_digits(page: Page, forgery: Forgery, mask: ImageDraw.ImageDraw) -> None:
    (fld,) = forgery.fields
    p = forgery.params
    item = page.items[fld]
    f = font(item.font, item.size)
    draw = ImageDraw.Draw(page.image)
    ink = (int(np.clip(item.ink + p["ink_delta"], 0, 120)),) * 3
    boxes = [item.box]
    for pos in p["positions"]:
        cx = item.x + int(round(f.getlength(item.text[:pos])))
        erase = _pad(text_box(item.text[pos], item.font, item.size, cx, item.y), 1)
        draw.rectangle(erase, fill=_WHITE)
        nx, ny = cx + p["x_shift"], item.y + p["baseline_shift"]
        ch = p["forged_text"][pos]
        draw.text((nx, ny), ch, fill=ink, font=f, anchor="ls")
        redrawn = _pad(text_box(ch, item.font, item.size, nx, ny), 1)
        mask.rectangle(erase, fill=255)
        mask.rectangle(redrawn, fill=255)
        boxes += [erase, redrawn]
    item.text = p["forged_text"]
    item.box = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def mark_fields(page: Page, forgery: Forgery, mask: ImageDraw.ImageDraw) -> None:
    """`inconsistent`: the mask covers the values that contradict each other."""
    for fld in forgery.fields:
        mask.rectangle(_pad(page.items[fld].box, 3), fill=255)


def stamp_spec(
    layout: str, spec: StampSpec, forgery: Forgery | None, mask: ImageDraw.ImageDraw | None
) -> StampSpec | None:
    """The stamp actually applied (None when missing); marks old and new stamp disks."""
    if forgery is None or forgery.type != "stamp":
        return spec
    assert mask is not None
    p = forgery.params
    if forgery.subtype == "missing":
        new = None
    elif forgery.subtype == "moved":
        cx, cy = spec.center
        new = StampSpec(
            center=(PAGE_SIZE[0] - cx + p["dx"], cy + p["dy"]),
            radius=spec.radius,
            ring_text=spec.ring_text,
            color=spec.color,
            opacity=spec.opacity,
            angle=spec.angle,
            texture_seed=spec.texture_seed,
        )
    else:  # copied
        donor = {"commune": p["donor_commune"], "region": p["donor_region"]}
        new = StampSpec(
            center=spec.center,
            radius=spec.radius + p["radius_delta"],
            ring_text=ring_text(layout, donor),
            color=tuple(p["color"]),
            opacity=p["opacity"],
            angle=p["angle"],
            texture_seed=p["texture_seed"],
            blur=p["blur"],
        )
    for s in (spec, new):
        if s is not None:
            mask.ellipse(_pad(stamp_box(s), 2), fill=255)
    return new


def apply_double_jpeg(
    image: np.ndarray, box: Box, forgery: Forgery, mask: ImageDraw.ImageDraw
) -> np.ndarray:
    """Recompress the region around `box` (image coordinates) at a lower quality, paste it
    back. Its origin is not aligned to the 8x8 JPEG grid unless by chance, as in a real
    copy-edit-paste."""
    p = forgery.params
    h, w = image.shape[:2]
    x0, y0 = max(0, box[0] - p["pad_x"]), max(0, box[1] - p["pad_y"])
    x1, y1 = min(w, box[2] + p["pad_x"]), min(h, box[3] + p["pad_y"])
    out = image.copy()
    out[y0:y1, x0:x1] = decode_jpeg(encode_jpeg(image[y0:y1, x0:x1], p["quality"]))
    p["region"] = [int(x0), int(y0), int(x1), int(y1)]
    mask.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    return out


def new_mask() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    m = Image.new("L", PAGE_SIZE, 0)
    return m, ImageDraw.Draw(m)
