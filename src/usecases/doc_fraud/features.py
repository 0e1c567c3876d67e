"""The fields detector's inputs: consistency rules on the values read, and glyph geometry.

`features(result)` turns one `ocr.OcrResult` into a fixed-order vector (`FEATURE_NAMES`) for a
scikit-learn classifier. Everything comes from the page itself (no ground truth), so real scans
get the same features as generated ones:

- `rule_<name>`: 1 when `synth.fields.check_consistency` finds that rule broken by the values
  read; a rule whose fields were not all read counts in `rules_unevaluable` instead (flag 0);
- reading quality: fields not found or not valid, place names the gazetteer does not know
  (their rules are set aside rather than failed: Niger's commune list is partial, and a
  misread name is not evidence of forgery), field and page confidences;
- geometry: the page's values share one font, size and baseline with their labels, so each
  value is compared with the page's other values (robust z-scores of glyph height, width
  against a reference font, stroke width, x-height ratio) and with its label (baseline offset,
  in units of the page's value height); digit fields also report how far one glyph departs
  from the others (a digit redrawn a pixel off, or in another shade).
Missing measurements are 0 (no evidence), so every feature is finite.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from usecases.doc_fraud.heads import median_spread
from usecases.doc_fraud.synth.fields import FIELDS, RULES, check_consistency
from usecases.doc_fraud.synth.render import FIELD_LABELS

if TYPE_CHECKING:
    from usecases.doc_fraud.ocr import OcrResult

log = logging.getLogger(__name__)

# Fields each rule reads (check_consistency also reads region and commune before it can judge
# an arrondissement, and the declaration year for the registration year).
RULE_INPUTS: dict[str, tuple[str, ...]] = {
    "commune_not_in_region": ("region", "commune"),
    "arrondissement_not_in_commune": ("region", "commune", "arrondissement"),
    "birth_after_declaration": ("birth_date", "declaration_date"),
    "date_out_of_range": ("birth_date", "declaration_date"),
    "registration_number_malformed": ("registration_number",),
    "registration_number_zero": ("registration_number",),
    "registration_year_mismatch": ("registration_number", "declaration_date"),
}
# Values drawn in the page's value font and size; the country and the registration number are
# set in the header's bold face, so they are not compared with these.
BODY_FIELDS = tuple(f for f in FIELDS if f not in ("country", "registration_number"))
# The fields a forger most often retypes (names, places, dates) and those whose digits get
# edited: each gets its own deviation features.
RETYPED_FIELDS = ("surname", "given_names", "birth_date", "birth_place", "father", "mother")
DIGIT_FIELDS = ("birth_date", "declaration_date", "registration_number")
PLACE_FIELDS = ("country", "region", "commune", "arrondissement")
Z_CAP = 20.0  # a z-score beyond this says nothing more, and keeps the vector well scaled

FEATURE_NAMES: tuple[str, ...] = (
    *(f"rule_{r}" for r in RULES),
    "rules_failed",
    "rules_unevaluable",
    "fields_missing",
    "fields_invalid",
    "places_unknown",
    "no_text",
    "confidence_min",
    "confidence_mean",
    "page_confidence",
    "height_z_max",
    "width_z_max",
    "stroke_z_max",
    "xratio_z_max",
    "baseline_max",
    "glyph_bottom_max",
    "glyph_top_max",
    "glyph_grey_max",
    *(f"height_z_{f}" for f in RETYPED_FIELDS),
    *(f"width_z_{f}" for f in RETYPED_FIELDS),
    *(f"baseline_{f}" for f in RETYPED_FIELDS),
    *(f"glyph_bottom_{f}" for f in DIGIT_FIELDS),
    *(f"glyph_grey_{f}" for f in DIGIT_FIELDS),
)


# Features that only grow with evidence of tampering (rules broken, values unread or unknown,
# departures of a value's glyphs from the page's others): the fields head may weigh them
# positively or not at all (`heads.fit_logistic(nonneg=...)`), so that an edit of a kind not
# seen in training that raises one of them can only raise the score.
SUSPICION_FEATURES: tuple[str, ...] = tuple(
    n
    for n in FEATURE_NAMES
    if n.startswith(("rule_", "height_z_", "width_z_", "baseline_", "glyph_"))
    or n
    in (
        "rules_failed",
        "fields_missing",
        "fields_invalid",
        "places_unknown",
        "no_text",
        "stroke_z_max",
        "xratio_z_max",
    )
)


# The glyph measures that the novelty score compares with authentic pages' (`heads.fit_tail`):
# how every value's glyphs sit against the page's others. A value retyped in any way (another
# font, size or baseline; digits redrawn) moves some of them, whatever kind of edit it was.
NOVELTY_FEATURES: tuple[str, ...] = tuple(
    n
    for n in FEATURE_NAMES
    if n.startswith(("height_z_", "width_z_", "baseline_", "glyph_"))
    or n in ("stroke_z_max", "xratio_z_max")
)


_GAZETTEERS: dict[str, dict[str, tuple[str, ...]]] = {}


def gazetteer(layout: str) -> dict[str, tuple[str, ...]]:
    """Names each place field may take on `layout`, for snapping OCR'd names to their spelling
    (empty when the geography sources are not installed: values are then kept as read)."""
    if layout in _GAZETTEERS:
        return _GAZETTEERS[layout]
    try:
        from usecases.doc_fraud.synth.geo import country_for

        country = country_for(layout)
    except (RuntimeError, ImportError, OSError) as e:  # a missing source disables snapping
        log.warning("no gazetteer for layout %s (%s): place names are kept as read", layout, e)
        _GAZETTEERS[layout] = {}
        return {}
    # Unique names: '1er Arrondissement' exists in several communes, and snapping must not
    # see a tie between a name and itself.
    regions = tuple(dict.fromkeys(r.name for r in country.regions))
    communes = tuple(dict.fromkeys(c for r in country.regions for c in r.communes))
    arrs = tuple(
        dict.fromkeys(a for r in country.regions for v in r.arrondissements.values() for a in v)
    )
    _GAZETTEERS[layout] = {
        "country": (country.name,),
        "region": regions,
        "commune": communes,
        "arrondissement": arrs,
    }
    return _GAZETTEERS[layout]


def in_gazetteer(fld: str, value: str | None, layout: str | None) -> bool:
    """Whether a place field's value is a known name (True for other fields, or without a
    gazetteer): a reading that is not deserves a second look."""
    if fld not in PLACE_FIELDS or layout is None:
        return True
    names = gazetteer(layout).get(fld)
    return not names or value in names


def printed_fields(layout: str | None) -> tuple[str, ...]:
    """Fields the layout prints (all of them when the layout is unknown)."""
    if layout not in FIELD_LABELS:
        return FIELDS
    return tuple(f for f in FIELDS if f in FIELD_LABELS[layout])


def rule_status(result: OcrResult) -> tuple[list[str], list[str]]:
    """(rules broken by the values read, rules that could not be judged for want of values)."""
    layout = result.layout
    if layout not in FIELD_LABELS:
        return [], list(RULES)
    values = result.fields
    # A place name that is not in the gazetteer (misread, or a commune the list lacks) cannot
    # be checked: the rule is set aside, not failed.
    present = {
        f for f in FIELDS if values.get(f) is not None and in_gazetteer(f, values[f], layout)
    }
    # check_consistency needs every key; a missing value becomes "", and any rule that reads
    # it is set aside below, whatever check_consistency made of the blank.
    broken = check_consistency({f: values.get(f) or "" for f in FIELDS}, layout)
    failed, unevaluable = [], []
    for rule in RULES:
        inputs = [f for f in RULE_INPUTS[rule] if f in FIELD_LABELS[layout]]
        if not all(f in present for f in inputs):
            unevaluable.append(rule)
        elif rule in broken:
            failed.append(rule)
    return failed, unevaluable


def failed_rules(result: OcrResult) -> list[str]:
    """Names of the consistency rules (in `RULES` order) that the values read break."""
    return rule_status(result)[0]


def robust_z(values: dict[str, float], floor: float) -> dict[str, float]:
    """(v - median) / (1.4826 MAD), the spread floored at `floor` so that a page of nearly
    identical values does not turn a fraction of a pixel into a large score."""
    if len(values) < 3:
        return {}
    med, spread = median_spread(list(values.values()))
    spread = max(float(spread), floor)
    return {k: float(np.clip((v - med) / spread, -Z_CAP, Z_CAP)) for k, v in values.items()}


def _measure(geometry: dict[str, dict[str, Any]], key: str, fields: Sequence[str]) -> dict:
    out = {}
    for f in fields:
        v = geometry.get(f, {}).get(key)
        if v is not None and math.isfinite(v):
            out[f] = float(v)
    return out


def _max_abs(values: dict[str, float]) -> float:
    return max((abs(v) for v in values.values()), default=0.0)


def features(result: OcrResult) -> dict[str, float]:
    """The feature vector of one reading, keyed by `FEATURE_NAMES` (in that order)."""
    out: dict[str, float] = dict.fromkeys(FEATURE_NAMES, 0.0)
    failed, unevaluable = rule_status(result)
    for r in failed:
        out[f"rule_{r}"] = 1.0
    out["rules_failed"] = float(len(failed))
    out["rules_unevaluable"] = float(len(unevaluable))
    printed = printed_fields(result.layout)
    missing = [f for f in printed if result.fields.get(f) is None]
    out["fields_missing"] = float(len(missing))
    out["fields_invalid"] = float(sum(1 for f in missing if result.raw.get(f)))
    out["places_unknown"] = float(
        sum(
            1
            for f in PLACE_FIELDS
            if f in printed
            and result.fields.get(f) is not None
            and not in_gazetteer(f, result.fields[f], result.layout)
        )
    )
    out["no_text"] = float(result.n_words == 0)
    conf = [float(result.confidence.get(f, 0.0)) for f in printed]
    out["confidence_min"] = min(conf) / 100 if conf else 0.0
    out["confidence_mean"] = float(np.mean(conf)) / 100 if conf else 0.0
    out["page_confidence"] = float(result.mean_confidence) / 100

    geo = result.geometry
    heights = _measure(geo, "height", BODY_FIELDS)
    # Lengths in units of the page's typical value height: the same on a 150 and a 300 dpi scan.
    unit = float(np.median(list(heights.values()))) if heights else 0.0
    height_z = robust_z(heights, floor=0.04 * unit if unit else 1.0)
    width_z = robust_z(_measure(geo, "width_ratio", BODY_FIELDS), floor=0.03)
    strokes = _measure(geo, "stroke", BODY_FIELDS)
    stroke_z = robust_z(strokes, floor=0.08 * float(np.median(list(strokes.values()) or [1.0])))
    xratio = {
        f: g["x_height"] / g["height"]
        for f, g in geo.items()
        if f in BODY_FIELDS and g.get("x_height") and g.get("height")
    }
    xratio_z = robust_z(xratio, floor=0.03)
    baseline = {
        f: v / unit for f, v in _measure(geo, "baseline_offset", FIELDS).items() if unit > 0
    }
    # A page skewed more than the slope estimate allows shifts every value alike: measure each
    # value's offset from the page's typical offset, not from zero.
    if len(baseline) >= 3:
        med = float(np.median(list(baseline.values())))
        baseline = {f: v - med for f, v in baseline.items()}
    out["height_z_max"] = _max_abs(height_z)
    out["width_z_max"] = _max_abs(width_z)
    out["stroke_z_max"] = _max_abs(stroke_z)
    out["xratio_z_max"] = _max_abs(xratio_z)
    out["baseline_max"] = min(_max_abs(baseline), Z_CAP)
    for key in ("glyph_bottom", "glyph_top"):
        vals = _measure(geo, key, DIGIT_FIELDS)
        out[f"{key}_max"] = min(_max_abs(vals) / unit, Z_CAP) if unit > 0 else 0.0
    out["glyph_grey_max"] = _max_abs(_measure(geo, "glyph_grey", DIGIT_FIELDS)) / 255
    # Absolute departures: a retyped value may be set larger or smaller, higher or lower, and
    # a sign learned from the kinds of edit seen in training would not carry to another kind.
    for f in RETYPED_FIELDS:
        out[f"height_z_{f}"] = abs(height_z.get(f, 0.0))
        out[f"width_z_{f}"] = abs(width_z.get(f, 0.0))
        out[f"baseline_{f}"] = min(abs(baseline.get(f, 0.0)), Z_CAP)
    for f in DIGIT_FIELDS:
        g = geo.get(f, {})
        if unit > 0 and g.get("glyph_bottom") is not None:
            out[f"glyph_bottom_{f}"] = min(float(g["glyph_bottom"]) / unit, Z_CAP)
        if g.get("glyph_grey") is not None:
            out[f"glyph_grey_{f}"] = float(g["glyph_grey"]) / 255
    return {n: float(out[n]) if math.isfinite(out[n]) else 0.0 for n in FEATURE_NAMES}
