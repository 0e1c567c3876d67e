"""Field values of a birth certificate: sampling authentic values, and the consistency rules.

Field values are strings, in the form a reader of the page would normalise them to:
dates are ISO `YYYY-MM-DD` (printed `DD/MM/YYYY`), `sex` is `M`/`F` (printed "Masculin" /
"Féminin"), every other value is printed exactly as stored. `printed_text` gives the printed form.

Registration number formats (sequence number in the register, then the registration year):
- benin: `SSSS/YYYY`, four-digit zero-padded sequence, e.g. `0427/2019`;
- niger: `SSSSS/YYYY`, five-digit zero-padded sequence, e.g. `00427/2019`.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from usecases.doc_fraud.synth.geo import country_for
from usecases.doc_fraud.synth.people import Names, pick_origin

FIELDS = (
    "country",
    "region",
    "commune",
    "arrondissement",
    "registration_number",
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
DATE_FIELDS = ("birth_date", "declaration_date")
REGISTRATION_DIGITS = {"benin": 4, "niger": 5}
# Sequence numbers are drawn below this (a busy centre's yearly births, with room to spare).
MAX_SEQUENCE = {layout: 3 * 10 ** (d - 1) for layout, d in REGISTRATION_DIGITS.items()}
SEX_TEXT = {"M": "Masculin", "F": "Féminin"}

# Births drawn in this window; declarations follow within a year, so both stay inside the
# plausibility window used by the `date_out_of_range` rule.
BIRTH_MIN = dt.date(1990, 1, 1)
BIRTH_MAX = dt.date(2023, 12, 31)
DATE_MIN = dt.date(1950, 1, 1)
DATE_MAX = dt.date(2025, 12, 31)

# Rule names, in the order check_consistency reports them. The `inconsistent` forgery sub-kinds
# are a subset of these names, so a document "claims" exactly one of them.
RULES = (
    "commune_not_in_region",
    "arrondissement_not_in_commune",
    "birth_after_declaration",
    "date_out_of_range",
    "registration_number_malformed",
    "registration_number_zero",
    "registration_year_mismatch",
)
INCONSISTENT_SUBTYPES: dict[str, tuple[str, ...]] = {
    "benin": (
        "arrondissement_not_in_commune",
        "birth_after_declaration",
        "registration_year_mismatch",
        "registration_number_zero",
    ),
    "niger": (
        "commune_not_in_region",
        "birth_after_declaration",
        "registration_year_mismatch",
        "registration_number_zero",
    ),
}
# Fields whose values conflict, per rule: what an `inconsistent` mask covers.
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "commune_not_in_region": ("region", "commune"),
    "arrondissement_not_in_commune": ("commune", "arrondissement"),
    "birth_after_declaration": ("birth_date", "declaration_date"),
    "date_out_of_range": ("birth_date", "declaration_date"),
    "registration_number_malformed": ("registration_number",),
    "registration_number_zero": ("registration_number",),
    "registration_year_mismatch": ("registration_number", "declaration_date"),
}

_REG_RE = re.compile(r"^(\d+)/(\d{4})$")


def format_date(iso: str) -> str:
    """'2019-03-12' -> '12/03/2019'."""
    d = dt.date.fromisoformat(iso)
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def parse_printed_date(text: str) -> str | None:
    """'12/03/2019' -> '2019-03-12'; None if not a valid date."""
    m = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", text)
    if not m:
        return None
    try:
        return dt.date(int(m[3]), int(m[2]), int(m[1])).isoformat()
    except ValueError:
        return None


def format_registration(seq: int, year: int, layout: str) -> str:
    return f"{seq:0{REGISTRATION_DIGITS[layout]}d}/{year:04d}"


def parse_registration(text: str) -> tuple[int, int] | None:
    m = _REG_RE.match(text)
    return (int(m[1]), int(m[2])) if m else None


def printed_text(field: str, value: str) -> str:
    """The string drawn on the page for a field value."""
    if field in DATE_FIELDS:
        return format_date(value)
    if field == "sex":
        return SEX_TEXT[value]
    return value


def value_from_text(field: str, text: str) -> str | None:
    """Inverse of `printed_text`; None when the text is not a valid value."""
    if field in DATE_FIELDS:
        return parse_printed_date(text)
    if field == "sex":
        return next((k for k, v in SEX_TEXT.items() if v == text), None)
    return text


def check_consistency(fields: dict[str, str], layout: str) -> list[str]:
    """Names of the rules (see `RULES`) that the field values break; [] when consistent."""
    broken: set[str] = set()
    country = country_for(layout)
    region = country.region(fields["region"])
    if region is None or fields["commune"] not in region.communes:
        broken.add("commune_not_in_region")
    elif layout == "benin" and fields["arrondissement"] not in region.arrondissements.get(
        fields["commune"], ()
    ):
        broken.add("arrondissement_not_in_commune")
    try:
        birth = dt.date.fromisoformat(fields["birth_date"])
        decl = dt.date.fromisoformat(fields["declaration_date"])
    except ValueError:
        broken.add("date_out_of_range")
        birth = decl = None
    if birth and decl:
        if birth > decl:
            broken.add("birth_after_declaration")
        if not all(DATE_MIN <= d <= DATE_MAX for d in (birth, decl)):
            broken.add("date_out_of_range")
    reg = parse_registration(fields["registration_number"])
    if reg is None:
        broken.add("registration_number_malformed")
    else:
        seq, year = reg
        if seq == 0:
            broken.add("registration_number_zero")
        if decl is not None and year != decl.year:
            broken.add("registration_year_mismatch")
    return [r for r in RULES if r in broken]


def _birth_place(layout: str, commune: str, arrondissement: str, rng: np.random.Generator) -> str:
    # Numbered urban arrondissements ("2ème Arrondissement") make poor place names: use the commune.
    base = arrondissement if arrondissement and not arrondissement[0].isdigit() else commune
    forms = ("Maternité {}", "Centre de santé {}", "{}")
    if layout == "niger":
        forms = ("Maternité {}", "CSI {}", "{}")
    return forms[int(rng.integers(len(forms)))].format(base)


def random_birth_place(layout: str, fields: dict[str, str], rng: np.random.Generator) -> str:
    """Another plausible birth place in the same commune (or region, for Niger)."""
    country = country_for(layout)
    region = country.region(fields["region"])
    if layout == "benin" and region is not None:
        arrs = region.arrondissements.get(fields["commune"], ())
        arr = arrs[int(rng.integers(len(arrs)))] if arrs else fields["arrondissement"]
        return _birth_place(layout, fields["commune"], arr, rng)
    communes = region.communes if region is not None else (fields["commune"],)
    return _birth_place(layout, communes[int(rng.integers(len(communes)))], "", rng)


def sample_fields(layout: str, rng: np.random.Generator) -> tuple[dict[str, str], str]:
    """Authentic, mutually consistent field values and the name origin ('fr', 'yo', 'ha')."""
    country = country_for(layout)
    region = country.regions[int(rng.integers(len(country.regions)))]
    commune = region.communes[int(rng.integers(len(region.communes)))]
    arrondissement = ""
    if layout == "benin":
        arrs = region.arrondissements[commune]
        arrondissement = arrs[int(rng.integers(len(arrs)))]

    origin = pick_origin(layout, rng)
    names = Names(origin)
    sex = "M" if rng.random() < 0.5 else "F"
    surname = names.surname(rng)
    given = names.given(rng, sex, count=2 if rng.random() < 0.55 else 1)
    birth = BIRTH_MIN + dt.timedelta(days=int(rng.integers((BIRTH_MAX - BIRTH_MIN).days + 1)))
    # Most births are declared within the legal month; some late, a few close to a year.
    u = rng.random()
    lo, hi = (1, 31) if u < 0.7 else (31, 181) if u < 0.95 else (181, 366)
    delay = int(rng.integers(lo, hi))
    decl = birth + dt.timedelta(days=delay)
    seq = int(rng.integers(1, MAX_SEQUENCE[layout]))

    fields = {
        "country": country.name,
        "region": region.name,
        "commune": commune,
        "arrondissement": arrondissement,
        "registration_number": format_registration(seq, decl.year, layout),
        "surname": surname,
        "given_names": given,
        "sex": sex,
        "birth_date": birth.isoformat(),
        "birth_place": _birth_place(layout, commune, arrondissement, rng),
        "father": names.full(rng, "M", surname),
        "mother": names.full(rng, "F"),
        "declaration_date": decl.isoformat(),
        "officer": names.full(rng, "M" if rng.random() < 0.6 else "F"),
    }
    return fields, origin
