"""Personal names from Faker, by origin: French (fr_FR), Yoruba (yo_NG) and Hausa (ha_NG).

Faker instances are seeded from the caller's `numpy.random.Generator` before every use, so a
name depends only on that generator's state, never on what was drawn before for another
document. Faker does not promise the same names across its versions: the version is recorded
in GENERATOR.json.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from faker import Faker

ORIGIN_LOCALES: dict[str, str] = {"fr": "fr_FR", "yo": "yo_NG", "ha": "ha_NG"}

# Rough shares on certificates of each country: Yoruba and French names are common in southern
# Benin, Hausa names dominate in Niger. The exact numbers matter less than all three appearing.
ORIGIN_WEIGHTS: dict[str, dict[str, float]] = {
    "benin": {"fr": 0.35, "yo": 0.45, "ha": 0.20},
    "niger": {"fr": 0.25, "yo": 0.15, "ha": 0.60},
}


@functools.cache
def _faker(locale: str) -> Faker:
    return Faker(locale)


@dataclass(frozen=True)
class Names:
    """Seeded name source for one origin; each call reseeds Faker from `rng`."""

    origin: str

    def _fk(self, rng: np.random.Generator) -> Faker:
        fk = _faker(ORIGIN_LOCALES[self.origin])
        fk.seed_instance(int(rng.integers(2**63)))
        return fk

    def surname(self, rng: np.random.Generator) -> str:
        # Surnames are printed in capitals, as on civil-status registers.
        return _clean(self._fk(rng).last_name()).upper()

    def given(self, rng: np.random.Generator, sex: str, count: int = 1) -> str:
        fk = self._fk(rng)
        pick = fk.first_name_male if sex == "M" else fk.first_name_female
        names: list[str] = []
        for _ in range(50):  # small name lists (ha_NG has 20) can repeat; try a few times
            n = _clean(pick())
            if n not in names:
                names.append(n)
            if len(names) == count:
                break
        return " ".join(names)

    def full(self, rng: np.random.Generator, sex: str, surname: str | None = None) -> str:
        """'SURNAME Given', the order used for parents and officers on these registers."""
        return f"{surname or self.surname(rng)} {self.given(rng, sex)}"


def _clean(name: str) -> str:
    return name.replace("\u2019", "'").strip()


def pick_origin(layout: str, rng: np.random.Generator) -> str:
    weights = ORIGIN_WEIGHTS[layout]
    origins = sorted(weights)
    p = np.array([weights[o] for o in origins])
    return origins[int(rng.choice(len(origins), p=p / p.sum()))]
