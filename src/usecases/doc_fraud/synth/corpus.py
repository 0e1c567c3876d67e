"""The synthetic corpus: planning, per-document rendering, splits, and writing it to disk.

A document is a pure function of (seed, DocSpec): its randomness comes from four independent
generators seeded by `SeedSequence([seed, 1, index, stream])` (content, style, forgery, scan),
so documents do not depend on each other or on generation order, and rendering one with its
forgery disabled (`render_document(..., forgery=False)`) gives the same page, style and scan
noise without the edit. The plan (which index gets which layout and forgery type) is a pure
function of (seed, n_documents, forged_fraction, layouts); the split of (seed, plan, fractions,
holdout type).

Output (`generate`):
    images/<doc_id>.jpg   the scanned page, 874 x 1240 RGB JPEG
    masks/<doc_id>.png    forged documents only: 8-bit L, 255 = tampered, 0 elsewhere
    fields/<doc_id>.json  ground truth (see `render_document`)
    labels.csv            file,label,forgery_type,layout,name_origin,split (sorted by file)
    GENERATOR.json        seed, parameters, software versions, counts per split and type
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from usecases.core.io import write_json
from usecases.doc_fraud.synth import forge, scan
from usecases.doc_fraud.synth.fields import FIELDS, sample_fields
from usecases.doc_fraud.synth.fonts import check_fonts, font_provenance
from usecases.doc_fraud.synth.forge import FORGERY_TYPES
from usecases.doc_fraud.synth.geo import country_for, data_versions
from usecases.doc_fraud.synth.render import (
    LAYOUTS,
    PAGE_SIZE,
    draw_page,
    draw_signature,
    draw_stamp,
    sample_style,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LABELS = ("authentic", "forged")
LABELS_COLUMNS = ("file", "label", "forgery_type", "layout", "name_origin", "split")
# Stream ids of the per-document generators; the second SeedSequence word separates
# per-document streams (1) from the plan (0) and the split (2).
_CONTENT, _STYLE, _FORGERY, _SCAN = range(4)
_APT_PACKAGES = (
    "fonts-dejavu-core",
    "fonts-liberation2",
    "fonts-sil-andika",
    "fonts-dancingscript",
    "iso-codes",
)


@dataclass(frozen=True)
class DocSpec:
    index: int
    layout: str
    forgery_type: str | None  # None: authentic

    @property
    def doc_id(self) -> str:
        return f"d{self.index:05d}"

    @property
    def label(self) -> str:
        return "authentic" if self.forgery_type is None else "forged"


@dataclass
class Document:
    spec: DocSpec
    jpeg: bytes  # the final image file
    mask: np.ndarray | None  # uint8 [H, W], 255 = tampered; None for authentic documents
    record: dict[str, Any]  # the fields/<doc_id>.json content


def _rng(seed: int, *words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# --- plan and splits ---------------------------------------------------------------------------


def plan_documents(
    n_documents: int, *, forged_fraction: float, layouts: tuple[str, ...], seed: int
) -> list[DocSpec]:
    """Exact counts: round(n * forged_fraction) forgeries, types in turn, layouts balanced
    within each type and among authentic documents; then shuffled over the indices."""
    n_forged = _round_half_up(n_documents * forged_fraction)
    entries: list[tuple[str, str | None]] = [
        (layouts[j % len(layouts)], None) for j in range(n_documents - n_forged)
    ]
    nt = len(FORGERY_TYPES)
    entries += [(layouts[(k // nt) % len(layouts)], FORGERY_TYPES[k % nt]) for k in range(n_forged)]
    order = _rng(seed, 0).permutation(n_documents)
    return [DocSpec(i, *entries[j]) for i, j in enumerate(order.tolist())]


def assign_splits(
    specs: list[DocSpec],
    *,
    holdout_type: str | None,
    test_fraction: float,
    val_fraction: float,
    seed: int,
) -> dict[int, str]:
    """index -> split. Every document of `holdout_type` goes to test. The others are split
    stratified by (label, forgery type, layout): strata are taken in a fixed order and each gets
    the rounded change of the running target count (test + val, then test within it, carrying
    any shortfall on), so that even one-document strata add up to the requested fractions
    within each label."""
    rng = _rng(seed, 2)
    split: dict[int, str] = {}
    strata: dict[tuple[str, str, str], list[int]] = {}
    for s in specs:
        if holdout_type is not None and s.forgery_type == holdout_type:
            split[s.index] = "test"
        else:
            strata.setdefault((s.label, s.forgery_type or "", s.layout), []).append(s.index)
    seen: Counter = Counter()
    tested: Counter = Counter()
    held = test_fraction + val_fraction
    for key in sorted(strata):
        label = key[0]
        idx = rng.permutation(strata[key]).tolist()
        before, after = seen[label], seen[label] + len(idx)
        n_held = _round_half_up(after * held) - _round_half_up(before * held)
        n_test = min(max(_round_half_up(after * test_fraction) - tested[label], 0), n_held)
        seen[label], tested[label] = after, tested[label] + n_test
        for k, i in enumerate(idx):
            split[i] = "test" if k < n_test else "val" if k < n_held else "train"
    return split


def _validate(
    n_documents: int,
    forged_fraction: float,
    holdout_type: str | None,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    layouts: tuple[str, ...],
) -> None:
    if isinstance(n_documents, bool) or not isinstance(n_documents, int) or n_documents < 1:
        raise ValueError(f"n_documents must be a positive integer, got {n_documents!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in (
        ("forged_fraction", forged_fraction),
        ("test_fraction", test_fraction),
        ("val_fraction", val_fraction),
    ):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    if test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + val_fraction must be < 1 to leave a train split, "
            f"got {test_fraction} + {val_fraction}"
        )
    if isinstance(layouts, str) or not layouts:
        raise ValueError(f"layouts must be a non-empty sequence of {LAYOUTS}, got {layouts!r}")
    for layout in layouts:
        if layout not in LAYOUTS:
            raise ValueError(f"layouts: unknown layout {layout!r}; expected one of {LAYOUTS}")
    if len(set(layouts)) != len(layouts):
        raise ValueError(f"layouts: duplicates in {layouts!r}")
    if holdout_type is not None and holdout_type not in FORGERY_TYPES:
        raise ValueError(
            f"holdout_type: unknown forgery type {holdout_type!r}; expected one of "
            f"{FORGERY_TYPES} or None"
        )


def _check_filled(
    specs: list[DocSpec], split: dict[int, str], holdout_type: str | None, n_documents: int
) -> None:
    have = {(split[s.index], s.label) for s in specs}
    for sp in SPLITS:
        for label in LABELS:
            if (sp, label) not in have:
                raise ValueError(
                    f"n_documents={n_documents} is too small: split {sp!r} would have no "
                    f"{label} document with these fractions; use more documents"
                )
    if holdout_type is not None and not any(s.forgery_type == holdout_type for s in specs):
        raise ValueError(
            f"n_documents={n_documents} is too small: no document of holdout_type "
            f"{holdout_type!r} (each forgery type needs at least one)"
        )


# --- one document ------------------------------------------------------------------------------


def render_document(spec: DocSpec, seed: int, *, forgery: bool = True) -> Document:
    """Render one document. `forgery=False` renders the same document without its forgery
    (same values, style and scan noise): the reference the mask is checked against.

    Record (fields/<doc_id>.json), all boxes in final-image pixels, `[x0, y0, x1, y1)`:
        doc_id, index, seed, layout, name_origin, label, forgery_type
        forgery: null | {type, subtype, fields, params}
        fields: the 14 values as they read on the page (dates ISO, sex M/F)
        original_fields: the values before the forgery (== fields when authentic)
        text: the string printed for each field ("" for Niger's arrondissement)
        boxes: field -> ink box of the printed value (null when not printed)
        regions: {stamp: box | null, signature: box}
        scan: rotation angle, blur, noise, paper tint, JPEG quality, page_to_image (2x3)
        style: fonts and sizes; image, mask: paths relative to the corpus root
    """
    i = spec.index
    fields, origin = sample_fields(spec.layout, _rng(seed, 1, i, _CONTENT))
    style = sample_style(_rng(seed, 1, i, _STYLE))
    fg = None
    if forgery and spec.forgery_type is not None:
        fg = forge.plan(
            spec.forgery_type, spec.layout, fields, origin, style, _rng(seed, 1, i, _FORGERY)
        )
    printed = dict(fields)
    if fg is not None and fg.type == "inconsistent":
        printed.update(fg.values)  # drawn normally: the contradiction is in the data only

    page = draw_page(spec.layout, printed, style)
    mask_img, mask = forge.new_mask() if fg is not None else (None, None)
    if fg is not None:
        if fg.type in ("font", "digits"):
            forge.apply_text(page, fg, mask)
        elif fg.type == "inconsistent":
            forge.mark_fields(page, fg, mask)
    arr = np.array(page.image)
    stamp = forge.stamp_spec(spec.layout, page.stamp, fg, mask)
    stamp_box = draw_stamp(arr, stamp) if stamp is not None else None
    sig_box = draw_signature(arr, page.signature)

    params = scan.sample_scan(_rng(seed, 1, i, _SCAN))
    image = scan.simulate(arr, params, _rng(seed, 1, i, _SCAN, 1))
    matrix = scan.page_to_image(params.angle, PAGE_SIZE)

    def tr(box):
        return list(scan.transform_box(box, matrix, PAGE_SIZE)) if box is not None else None

    boxes = {f: tr(page.items[f].box) if f in page.items else None for f in FIELDS}
    final_mask = None
    if fg is not None:
        rotated = scan.rotate_mask(mask_img, params)
        if fg.type == "double_jpeg":
            rotated_draw = ImageDraw.Draw(rotated)
            image = forge.apply_double_jpeg(image, boxes[fg.fields[0]], fg, rotated_draw)
        final_mask = np.where(np.asarray(rotated) > 127, 255, 0).astype(np.uint8)
    jpeg = scan.encode_jpeg(image, params.quality)

    read = dict(printed)
    if fg is not None and fg.type in ("font", "digits"):
        read.update(fg.values)
    record = {
        "doc_id": spec.doc_id,
        "index": i,
        "seed": seed,
        "layout": spec.layout,
        "name_origin": origin,
        "label": spec.label,
        "forgery_type": fg.type if fg is not None else None,
        "forgery": fg.to_json() if fg is not None else None,
        "fields": read,
        "original_fields": fields,
        "text": {f: page.items[f].text if f in page.items else "" for f in FIELDS},
        "boxes": boxes,
        "regions": {"stamp": tr(stamp_box), "signature": tr(sig_box)},
        "image": f"images/{spec.doc_id}.jpg",
        "mask": f"masks/{spec.doc_id}.png" if fg is not None else None,
        "width": PAGE_SIZE[0],
        "height": PAGE_SIZE[1],
        "scan": {
            **params.to_json(),
            "page_to_image": [[round(float(v), 9) for v in row] for row in matrix],
        },
        "style": {
            "label_font": style.label_family,
            "value_font": style.value_family,
            "label_size": style.label_size,
            "value_size": style.value_size,
            "signature_font": style.signature_font,
        },
    }
    return Document(spec, jpeg, final_mask, record)


# --- the corpus on disk ------------------------------------------------------------------------


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pkg in ("Pillow", "Faker", "benin-geo", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    apt = dict.fromkeys(_APT_PACKAGES, "unknown")
    try:  # best effort: only Debian-like systems have dpkg
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${Version}\n", *_APT_PACKAGES],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in r.stdout.splitlines():
            name, _, ver = line.partition(" ")
            if name in apt and ver:
                apt[name] = ver
    except OSError:
        pass
    out["apt"] = apt
    out["geo"] = data_versions()
    out["fonts"] = font_provenance()
    return out


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir by tmp with renames only: readers see the old or the new corpus."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old)


def generate(
    out_dir: str | os.PathLike,
    *,
    n_documents: int,
    forged_fraction: float = 0.5,
    holdout_type: str | None = "double_jpeg",
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    layouts: tuple[str, ...] = ("benin", "niger"),
) -> dict[str, Any]:
    """Write a corpus to `out_dir` (replaced atomically) and return a summary.

    `holdout_type` (default `double_jpeg`, an unseen pixel-level edit) appears only in the
    test split, to measure whether a detector generalises beyond the edits it was trained on;
    None holds nothing out. Same arguments -> byte-identical files.
    """
    layouts = tuple(layouts) if not isinstance(layouts, str) else layouts
    _validate(
        n_documents, forged_fraction, holdout_type, test_fraction, val_fraction, seed, layouts
    )
    specs = plan_documents(n_documents, forged_fraction=forged_fraction, layouts=layouts, seed=seed)
    split = assign_splits(
        specs,
        holdout_type=holdout_type,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
    )
    _check_filled(specs, split, holdout_type, n_documents)
    check_fonts()
    for layout in layouts:
        country_for(layout)  # fail before drawing if a geography source is missing

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    t0 = time.perf_counter()
    try:
        for sub in ("images", "masks", "fields"):
            (tmp / sub).mkdir()
        rows = []
        counts: dict[str, Counter] = {sp: Counter() for sp in SPLITS}
        for spec in specs:
            doc = render_document(spec, seed)
            (tmp / doc.record["image"]).write_bytes(doc.jpeg)
            if doc.mask is not None:
                (tmp / doc.record["mask"]).write_bytes(_png(doc.mask))
            doc.record["split"] = split[spec.index]
            write_json(tmp / "fields" / f"{spec.doc_id}.json", doc.record)
            rows.append(
                (
                    doc.record["image"],
                    spec.label,
                    spec.forgery_type or "",
                    spec.layout,
                    doc.record["name_origin"],
                    split[spec.index],
                )
            )
            counts[split[spec.index]][spec.forgery_type or "authentic"] += 1
            if (spec.index + 1) % 100 == 0:
                log.info("rendered %d/%d documents", spec.index + 1, n_documents)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(LABELS_COLUMNS)
        w.writerows(sorted(rows))
        (tmp / "labels.csv").write_text(buf.getvalue(), encoding="utf-8")
        counts_json = {sp: dict(sorted(c.items())) for sp, c in counts.items()}
        params = {
            "n_documents": n_documents,
            "forged_fraction": forged_fraction,
            "holdout_type": holdout_type,
            "test_fraction": test_fraction,
            "val_fraction": val_fraction,
            "layouts": list(layouts),
            "page_size": list(PAGE_SIZE),
        }
        write_json(
            tmp / "GENERATOR.json",
            {
                "generator": "usecases.doc_fraud.synth",
                "seed": seed,
                "params": params,
                "versions": _versions(),
                "counts": counts_json,
            },
        )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    log.info("wrote %d documents to %s in %.1f s", n_documents, out_dir, seconds)
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "params": params,
        "counts": counts_json,
        "seconds": round(seconds, 3),
        "seconds_per_document": round(seconds / n_documents, 4),
    }
