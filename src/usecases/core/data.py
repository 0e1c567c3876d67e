"""Data manifests: one row per item (path, label, split, sha256), splits and quarantine.

A manifest is the only thing that training and evaluation read to know what the data are;
it is written by `prepare`, atomically, next to the quarantine list of rejected files.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from usecases.core.io import sha256_file, write_json, write_text

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.csv"
QUARANTINE = "quarantine.csv"
SUMMARY = "summary.json"


class DataError(ValueError):
    """The raw data do not match what the config says."""


@dataclass(frozen=True)
class Item:
    path: str  # relative to the use case's raw folder, POSIX separators
    label: str
    split: str  # train | val | test, or "" before splitting
    sha256: str = ""


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


def _to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_manifest(path: Path, items: Iterable[Item]) -> None:
    rows = [asdict(i) for i in sorted(items, key=lambda i: (SPLITS.index(i.split), i.path))]
    write_text(path, _to_csv(rows, ["path", "label", "split", "sha256"]))


def read_manifest(path: Path) -> list[Item]:
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; run `zoo prepare` first")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = {"path", "label", "split", "sha256"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DataError(
                f"{path}: manifest needs columns {sorted(need)}, has {reader.fieldnames}"
            )
        items = []
        for n, row in enumerate(reader, start=2):
            if row["split"] not in SPLITS:
                raise DataError(f"{path}:{n}: split {row['split']!r} not one of {SPLITS}")
            items.append(Item(row["path"], row["label"], row["split"], row["sha256"]))
    return items


def write_quarantine(path: Path, rejected: Iterable[Rejected]) -> None:
    rows = [asdict(r) for r in sorted(rejected, key=lambda r: r.path)]
    write_text(path, _to_csv(rows, ["path", "reason"]))


def read_quarantine(path: Path) -> list[Rejected]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return [Rejected(r["path"], r["reason"]) for r in csv.DictReader(f)]


def layout_regex(layout: str) -> re.Pattern[str]:
    """'{split}/{label}/{file}' -> a regex with named groups; {root} must be stripped first."""
    fields = re.findall(r"{(\w+)}", layout)
    unknown = set(fields) - {"split", "label", "file"}
    if unknown or "label" not in fields or "file" not in fields:
        raise DataError(
            f"data.layout {layout!r}: use {{label}} and {{file}}, optionally {{split}}; got {fields}"
        )
    pattern = re.escape(layout)
    for f in fields:
        pattern = pattern.replace(re.escape("{" + f + "}"), f"(?P<{f}>[^/]+)")
    return re.compile(f"^{pattern}$")


def scan(root: Path, layout: str, suffixes: tuple[str, ...]) -> list[Item]:
    """Every file under `root` whose relative path matches `layout`, sorted by path."""
    if not root.is_dir():
        raise DataError(f"{root}: raw data folder not found; run `zoo fetch` first")
    rx = layout_regex(layout)
    items = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in suffixes:
            continue
        rel = p.relative_to(root).as_posix()
        m = rx.match(rel)
        if m is None:
            raise DataError(f"{p}: path does not match data.layout {layout!r}")
        split = m.groupdict().get("split") or ""
        if split and split not in SPLITS:
            raise DataError(f"{p}: split folder {split!r} not one of {SPLITS}")
        items.append(Item(rel, m["label"], split))
    if not items:
        raise DataError(f"{root}: no files with suffix {suffixes} matching {layout!r}")
    return items


def carve(items: list[Item], fraction: float, split: str, seed: int) -> list[Item]:
    """Move a stratified, seeded `fraction` of the train items of each label into `split`."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"split fraction must be in [0, 1), got {fraction}")
    rng = random.Random(f"{seed}:{split}")
    by_label: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.split == "train":
            by_label[it.label].append(it)
    moved: set[str] = set()
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda i: i.path)
        rng.shuffle(group)
        k = round(len(group) * fraction)
        if fraction > 0 and len(group) >= 2:
            k = max(k, 1)
        moved.update(i.path for i in group[:k])
    return [Item(i.path, i.label, split, i.sha256) if i.path in moved else i for i in items]


def limit(items: list[Item], per_class: int | None) -> list[Item]:
    """At most `per_class` items of each (split, label), first by path: for smoke runs."""
    if not per_class:
        return items
    seen: Counter[tuple[str, str]] = Counter()
    out = []
    for it in sorted(items, key=lambda i: i.path):
        if seen[(it.split, it.label)] < per_class:
            seen[(it.split, it.label)] += 1
            out.append(it)
    return out


def make_splits(
    items: list[Item], val_fraction: float, test_fraction: float, seed: int
) -> list[Item]:
    """Published splits stay as they are; val (and test, if none was published) come from train."""
    has_test = any(i.split == "test" for i in items)
    items = [i if i.split else Item(i.path, i.label, "train", i.sha256) for i in items]
    if not has_test:
        if test_fraction <= 0:
            raise DataError("the source has no test split and data.test_fraction is 0")
        items = carve(items, test_fraction, "test", seed)
    if not any(i.split == "val" for i in items):
        items = carve(items, val_fraction, "val", seed)
    return items


def prepare_items(
    raw: Path,
    out: Path,
    layout: str,
    suffixes: tuple[str, ...],
    check: Callable[[Path], str | None],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    per_class: int | None = None,
) -> dict:
    """Scan, validate (quarantining bad files), split and write manifest, quarantine and summary."""
    found = scan(raw, layout, suffixes)
    good: list[Item] = []
    bad: list[Rejected] = []
    for it in found:
        reason = check(raw / it.path)
        if reason:
            bad.append(Rejected(it.path, reason))
        else:
            good.append(Item(it.path, it.label, it.split, sha256_file(raw / it.path)))
    items = limit(make_splits(good, val_fraction, test_fraction, seed), per_class)
    counts = {
        s: dict(sorted(Counter(i.label for i in items if i.split == s).items())) for s in SPLITS
    }
    empty = [s for s in SPLITS if not counts[s]]
    if empty:
        raise DataError(f"{raw}: no usable items in split(s) {empty} after quarantine")
    summary = {
        "labels": sorted({i.label for i in items}),
        "counts": counts,
        "scanned": len(found),
        "quarantined": len(bad),
    }
    write_manifest(out / MANIFEST, items)
    write_quarantine(out / QUARANTINE, bad)
    write_json(out / SUMMARY, summary)
    return summary
