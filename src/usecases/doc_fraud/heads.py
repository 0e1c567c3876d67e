"""Small linear models stored as JSON in the release's weight metadata (nothing pickled).

Two heads sit on the tile CNN: logistic regressions over OCR, rule and ink features, one per
kind of forgery (the "fields" detector, `fit_experts`), and a logistic fusion of the two
detectors' logits. All are fitted with scikit-learn and kept as plain numbers: mean, scale,
coefficients, intercept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    c: float = 1.0,
    nonneg: Sequence[str] = (),
) -> dict[str, Any]:
    """Standardise, fit a class-balanced L2 logistic regression; return it as JSON-able numbers.

    Features named in `nonneg` are suspicion measures (higher = more anomalous): a negative
    weight on one would only say that the forgery kinds seen in training happen to leave it
    low, and would turn an unseen kind that raises it into a lower score. Such features are
    dropped (weight 0) and the model refitted until none of them weighs negatively.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"features: expected [n, {len(names)}], got {x.shape}")
    if len(set(y.tolist())) < 2:
        raise ValueError("fit_logistic: the training rows hold a single class")
    unknown = sorted(set(nonneg) - set(names))
    if unknown:
        raise KeyError(f"fit_logistic: nonneg names {unknown} are not features")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # constant features: leave them at 0 after centring
    z = (x - mean) / scale
    constrained = np.array([n in set(nonneg) for n in names])
    active = np.ones(len(names), dtype=bool)
    coef = np.zeros(len(names))
    intercept = 0.0
    for _ in range(len(names) + 1):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        clf.fit(z[:, active], y)
        coef[:] = 0.0
        coef[active] = clf.coef_[0]
        intercept = float(clf.intercept_[0])
        wrong = constrained & active & (coef < 0)
        if not wrong.any() or active.sum() - wrong.sum() < 1:
            break
        active &= ~wrong
    return {
        "names": list(names),
        "mean": [round(float(v), 8) for v in mean],
        "scale": [round(float(v), 8) for v in scale],
        "coef": [round(float(v), 8) for v in coef],
        "intercept": round(intercept, 8),
    }


def logit(head: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Decision values (log-odds of "forged") of a fitted head for rows `x` [n, features]."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    z = (x - np.asarray(head["mean"])) / np.asarray(head["scale"])
    return z @ np.asarray(head["coef"]) + head["intercept"]


# -- one expert per kind of forgery ---------------------------------------------------------
EXPERT_MIN_ROWS = 5  # forged training pages a kind needs for an expert of its own
ANY_KIND = "forged"  # the expert of forged pages whose kind is unknown or too rare


def fit_experts(
    x: np.ndarray,
    kinds: Sequence[str],
    names: Sequence[str],
    c: float = 1.0,
    nonneg: Sequence[str] = (),
    min_rows: int = EXPERT_MIN_ROWS,
) -> dict[str, Any]:
    """One logistic head per kind of forgery (authentic pages against that kind only), each
    put on the scale of its own authentic training pages: (log-odds - median) / robust spread.

    `kinds[i]` is "" for an authentic page, else its forgery kind ("" kinds of forged pages
    must be given as ANY_KIND). Kinds with fewer than `min_rows` pages are pooled into one
    ANY_KIND expert; a collection labelled only authentic/forged therefore gets a single expert,
    the plain logistic head. A page's score is its most alarmed expert (`expert_logit`):
    forgeries of different kinds leave traces in different features, and one head over all of
    them averages each trace down by the share of pages that do not carry it."""
    x = np.asarray(x, dtype=np.float64)
    kinds = np.asarray([k or "" for k in kinds], dtype=object)
    authentic = kinds == ""
    if authentic.sum() < 2 or (~authentic).sum() < 1:
        raise ValueError("fit_experts: need authentic and forged training rows")
    counts = {k: int((kinds == k).sum()) for k in sorted(set(kinds[~authentic].tolist()))}
    rare = [k for k, n in counts.items() if n < min_rows or k == ANY_KIND]
    groups = {k: [k] for k in counts if k not in rare}
    if rare:
        groups[ANY_KIND] = rare
    experts = []
    for name, members in sorted(groups.items()):
        rows = authentic | np.isin(kinds, members)
        head = fit_logistic(x[rows], (~authentic[rows]).astype(int), names, c=c, nonneg=nonneg)
        med, spread = median_spread(logit(head, x[authentic]))
        experts.append(
            {
                "kind": name,
                "kinds": list(members),
                **head,
                "centre": round(float(med), 8),
                "spread": round(max(float(spread), 1e-6), 8),
            }
        )
    return {"names": list(names), "experts": experts}


def expert_logits(head: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Each expert's standardised log-odds [n, experts] (a plain logistic head: [n, 1])."""
    if "experts" not in head:
        return logit(head, x)[:, None]
    cols = [(logit(e, x) - e["centre"]) / e["spread"] for e in head["experts"]]
    return np.stack(cols, axis=1)


def expert_logit(head: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The fields score of rows `x`: the most alarmed expert's standardised log-odds [n]."""
    return expert_logits(head, x).max(axis=1)


def expert_kinds(head: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in head["experts"]] if "experts" in head else [ANY_KIND]


def vector(features: dict[str, float], names: Sequence[str]) -> list[float]:
    """Features in the head's order; a missing name is an error that lists it."""
    missing = [n for n in names if n not in features]
    if missing:
        raise KeyError(f"features missing {missing}")
    return [float(features[n]) for n in names]


def prob_to_logit(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(z)))


def threshold_at_fpr(scores_authentic: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on `scores_authentic` is <= max_fpr
    (a document is flagged when its score is strictly above the threshold)."""
    s = np.sort(np.asarray(scores_authentic, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise ValueError("threshold_at_fpr: no authentic documents")
    allowed = int(math.floor(max_fpr * len(s)))  # false positives we may accept
    return float(s[allowed]) if allowed < len(s) else float(s[-1])


# -- how far a page sits from the authentic pages ----------------------------------------------
DEVIATION_CAP = 20.0  # beyond this many robust spreads a page is simply "far"
POOLED = "*"  # the profile of every authentic page, for a page whose layout was not read


def median_spread(x: Any, axis: int | None = None) -> tuple[Any, Any]:
    """Median and robust spread (1.4826 x the median absolute deviation, which equals the
    standard deviation on normal data) of `x`, over all values or along `axis`."""
    x = np.asarray(x, dtype=np.float64)
    med = np.median(x, axis=axis)
    return med, 1.4826 * np.median(np.abs(x - med), axis=axis)


def fit_profile(
    x: np.ndarray, groups: Sequence[str | None], names: Sequence[str], min_rows: int = 5
) -> dict[str, Any]:
    """Median and robust spread (1.4826 x MAD) of each feature over authentic pages, per group
    (layout) with at least `min_rows` pages, and pooled. The spread is floored at a tenth of the
    group's standard deviation (a feature nearly constant on authentic pages), else a
    thousandth of the pooled one, else 1e-6."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"profile: expected [n, {len(names)}] authentic rows, got {x.shape}")
    if len(x) < min_rows:
        raise ValueError(f"profile: {len(x)} authentic pages, at least {min_rows} needed")
    pooled_floor = np.maximum(1e-3 * x.std(axis=0), 1e-6)

    def stats(rows: np.ndarray) -> dict[str, list[float]]:
        med, mad = median_spread(rows, axis=0)
        spread = np.maximum(np.maximum(mad, 0.1 * rows.std(axis=0)), pooled_floor)
        return {
            "median": [round(float(v), 8) for v in med],
            "spread": [round(float(v), 8) for v in spread],
        }

    keys = np.array([g if g is not None else POOLED for g in groups])
    profile = {POOLED: stats(x)}
    for g in sorted(set(keys.tolist()) - {POOLED}):
        if (keys == g).sum() >= min_rows:
            profile[g] = stats(x[keys == g])
    return {"names": [f"dev_{n}" for n in names], "groups": profile}


def deviations(profile: dict[str, Any], x: np.ndarray, groups: Sequence[str | None]) -> np.ndarray:
    """|x - median| / spread of each row against its group's authentic profile (the pooled one
    for an unknown group), capped at DEVIATION_CAP: [n, features]."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if len(groups) != len(x):
        raise ValueError(f"deviations: {len(groups)} groups for {len(x)} rows")
    out = np.empty_like(x)
    for i, g in enumerate(groups):
        p = profile["groups"].get(g or POOLED, profile["groups"][POOLED])
        z = np.abs(x[i] - np.asarray(p["median"])) / np.asarray(p["spread"])
        out[i] = np.minimum(z, DEVIATION_CAP)
    return out


# -- novelty: glyph measures outside the authentic pages' range -------------------------------
NOVELTY_CAP = 20.0  # exceedances beyond this many authentic tail widths count as this many


def fit_tail(
    x: np.ndarray, names: Sequence[str], quantile: float = 0.95, top: int = 2
) -> dict[str, Any]:
    """Median and upper `quantile` of each feature over authentic pages: the width of the
    authentic upper tail that `exceedance` measures in. The width is floored at a tenth of the
    feature's standard deviation (else 1e-6), so a feature nearly constant on authentic pages
    does not turn a small departure into a huge one. `top`: how many of a page's largest
    exceedances its `novelty` adds up."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"tail: expected [n, {len(names)}] authentic rows, got {x.shape}")
    if not 0.5 < quantile <= 1.0:
        raise ValueError(f"tail: quantile must be in (0.5, 1], got {quantile}")
    if len(x) < 2:
        raise ValueError(f"tail: {len(x)} authentic pages, at least 2 needed")
    if top < 1:
        raise ValueError(f"tail: top must be at least 1, got {top}")
    med = np.median(x, axis=0)
    upper = np.quantile(x, quantile, axis=0)
    width = np.maximum(upper - med, np.maximum(0.1 * x.std(axis=0), 1e-6))
    return {
        "names": list(names),
        "median": [round(float(v), 8) for v in med],
        "width": [round(float(v), 8) for v in width],
        "quantile": quantile,
        "top": top,
    }


def exceedance(tail: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """How far each feature sits above the authentic median, in authentic upper-tail widths
    (0 below the median, capped at NOVELTY_CAP): [n, features]. 1 = the authentic quantile."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    z = (x - np.asarray(tail["median"])) / np.asarray(tail["width"])
    return np.clip(z, 0.0, NOVELTY_CAP)


def novelty(tail: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """A page's novelty: the sum of its `tail["top"]` largest exceedances [n]. Two rather than
    one by default, so that a single noisy measure on an authentic page weighs less than a
    value whose height and baseline both depart."""
    e = np.sort(exceedance(tail, x), axis=1)[:, ::-1]
    return e[:, : tail["top"]].sum(axis=1)


def robust_scale(scores: np.ndarray) -> dict[str, float]:
    """Median and robust spread (1.4826 x MAD, floored at 1e-6) of scores of authentic pages."""
    if np.size(scores) == 0:
        raise ValueError("robust_scale: no scores")
    med, spread = median_spread(scores)
    return {"median": float(med), "spread": max(float(spread), 1e-6)}


def add_novelty(fused: np.ndarray, nov: np.ndarray, gate: dict[str, Any]) -> np.ndarray:
    """The final log-odds: the supervised score, plus the novelty's excess over `gate["z"]`
    robust spreads of authentic validation pages, in the supervised score's own spread.
    Below the gate novelty adds nothing, so forgery kinds the supervised heads know keep their
    ranking; above it, a page whose glyphs sit far outside every authentic page's is raised
    whatever the heads learnt, which is what carries detection to kinds of edit never seen."""
    f, n = gate["fused"], gate["novelty"]
    z = (np.asarray(nov, dtype=np.float64) - n["median"]) / n["spread"]
    return np.asarray(fused, dtype=np.float64) + f["spread"] * np.maximum(z - gate["z"], 0.0)
