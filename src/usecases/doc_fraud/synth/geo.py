"""Administrative geography behind the synthetic certificates.

Benin: départements, communes and arrondissements from the `benin-geo` package (loi 97-028 and
loi 2013-05). Niger: the eight regions (seven régions and the Niamey urban community) from the
Debian `iso-codes` ISO 3166-2 table; no installable package lists Niger's 266 communes, so
`NIGER_COMMUNES` below is a short hand-written list of well-known communes (region capitals and
département chief towns, plus the five communes of Niamey), keyed by ISO 3166-2 code. It is
enough to make region/commune pairs plausible and checkable; it is not a complete gazetteer.

Names are kept as the sources spell them, except that the typographic apostrophe (U+2019) is
replaced by the ASCII one: OCR engines return either, and one spelling keeps exact-match checks
simple.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

ISO_3166_2_JSON = Path("/usr/share/iso-codes/json/iso_3166-2.json")
ISO_CODES_ENV = "DOC_FRAUD_ISO_3166_2"  # override the path above (e.g. a vendored copy)

# Hand-written, see the module docstring. Every name is unique across regions, so that
# "commune not in region" is decidable from the names alone.
NIGER_COMMUNES: dict[str, tuple[str, ...]] = {
    "NE-1": ("Agadez", "Arlit", "Bilma", "Iférouane", "Ingall", "Tchirozérine", "Aderbissinat"),
    "NE-2": ("Diffa", "Bosso", "Goudoumaria", "Mainé-Soroa", "N'Guigmi", "Chétimari"),
    "NE-3": ("Dosso", "Birni N'Gaouré", "Dogondoutchi", "Gaya", "Loga", "Falmey"),
    "NE-4": ("Maradi", "Aguié", "Dakoro", "Guidan Roumdji", "Madarounfa", "Mayahi", "Tessaoua"),
    "NE-5": ("Tahoua", "Abalak", "Birni N'Konni", "Bouza", "Illéla", "Keita", "Madaoua"),
    "NE-6": ("Tillabéri", "Ayorou", "Filingué", "Kollo", "Ouallam", "Say", "Téra", "Torodi"),
    "NE-7": ("Zinder", "Gouré", "Magaria", "Matamèye", "Mirriah", "Tanout", "Dungass"),
    "NE-8": ("Niamey I", "Niamey II", "Niamey III", "Niamey IV", "Niamey V"),
}


class GeoDataError(RuntimeError):
    """A geography package or data file is missing or not in the expected shape."""


@dataclass(frozen=True)
class Region:
    """A Benin département or a Niger région, with its communes (and their arrondissements)."""

    code: str
    name: str
    communes: tuple[str, ...]
    # commune name -> arrondissement names; empty for Niger, which has none on these documents
    arrondissements: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    name: str  # as printed in the header, upper case: "BÉNIN"
    regions: tuple[Region, ...]

    def region(self, name: str) -> Region | None:
        return next((r for r in self.regions if r.name == name), None)

    def region_of_commune(self, commune: str) -> Region | None:
        return next((r for r in self.regions if commune in r.communes), None)


def _clean(name: str) -> str:
    return name.replace("\u2019", "'")


@functools.cache
def benin() -> Country:
    """Benin's 12 départements, 77 communes and 546 arrondissements, from `benin-geo`."""
    try:
        import benin_geo
    except ImportError as e:
        raise GeoDataError(
            "The Benin hierarchy comes from the 'benin-geo' package, which is not installed: "
            "pip install benin-geo"
        ) from e
    regions = []
    for dep in sorted(benin_geo.departements, key=lambda d: d.id):
        communes = sorted(benin_geo.communes_de(dep.id), key=lambda c: c.id)
        arr = {
            _clean(c.nom): tuple(_clean(a.nom) for a in benin_geo.arrondissements_de(c.id))
            for c in communes
        }
        if not communes or not all(arr.values()):
            raise GeoDataError(
                f"benin-geo: département {dep.nom!r} has no communes/arrondissements"
            )
        regions.append(Region(dep.id, _clean(dep.nom), tuple(arr), arr))
    return Country("BJ", "BÉNIN", tuple(regions))


def _iso_path() -> Path:
    return Path(os.environ.get(ISO_CODES_ENV) or ISO_3166_2_JSON)


@functools.cache
def niger() -> Country:
    """Niger's regions (names from iso-codes) with the communes of `NIGER_COMMUNES`."""
    path = _iso_path()
    if not path.is_file():
        raise GeoDataError(
            f"Niger's regions are read from {path}, which does not exist. It is shipped by the "
            f"Debian/Ubuntu package 'iso-codes' (apt-get install iso-codes); or point "
            f"${ISO_CODES_ENV} at a copy of iso_3166-2.json."
        )
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["3166-2"]
    except (ValueError, KeyError) as e:
        raise GeoDataError(f"{path}: not an iso-codes ISO 3166-2 JSON file ({e})") from e
    names = {e["code"]: e["name"] for e in entries if e["code"].startswith("NE-")}
    missing = sorted(set(NIGER_COMMUNES) - set(names))
    if missing:
        raise GeoDataError(f"{path}: Niger subdivisions {missing} not found")
    regions = tuple(
        Region(code, _clean(names[code]), communes, {}) for code, communes in NIGER_COMMUNES.items()
    )
    return Country("NE", "NIGER", regions)


def country_for(layout: str) -> Country:
    if layout == "benin":
        return benin()
    if layout == "niger":
        return niger()
    raise ValueError(f"Unknown layout {layout!r}; expected one of ('benin', 'niger')")


def data_versions() -> dict[str, str]:
    """Versions of the geography sources, for provenance."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        bg = version("benin-geo")
    except PackageNotFoundError:
        bg = "not installed"
    return {"benin-geo": bg, "iso_3166-2.json": str(_iso_path())}
