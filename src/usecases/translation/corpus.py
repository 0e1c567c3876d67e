"""Parallel corpora: read the published files, normalise, clean, quarantine and split.

Every language is named by its ISO 639-3 code (fra, fon, ...). The raw folder holds the
unpacked archives as published:

    mafand/<pair>/<split>.<lang>              MAFAND-MT (pair like fr-fon; lang fr/en/fon/...)
    cpc/multitext-nllb-seed/<code>_Latn       NLLB-Seed, line-aligned with eng_Latn
    flores200/{dev,devtest}/<code>_Latn.<split>  FLORES-200, n-way parallel

Training text is NFC-normalised and cleaned (counted); test references are kept as published
and normalised only at scoring time, the same way for hypotheses and references.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from usecases.core.data import DataError

# ISO 639-3 code -> (English name, MAFAND file suffix, FLORES-200 code)
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "fra": ("French", "fr", "fra_Latn"),
    "eng": ("English", "en", "eng_Latn"),
    "fon": ("Fon", "fon", "fon_Latn"),
    "ewe": ("Ewe", "ewe", "ewe_Latn"),
    "wol": ("Wolof", "wol", "wol_Latn"),
    "bam": ("Bambara", "bam", "bam_Latn"),
    "yor": ("Yoruba", "yor", "yor_Latn"),
    "hau": ("Hausa", "hau", "hau_Latn"),
    "fuv": ("Nigerian Fulfulde", "fuv", "fuv_Latn"),
    "knc": ("Central Kanuri (Latin script)", "knc", "knc_Latn"),
    "taq": ("Tamasheq (Latin script)", "taq", "taq_Latn"),
}
SPLITS = ("train", "dev", "test")
COLUMNS = ["corpus", "split", "src_lang", "tgt_lang", "line", "src", "tgt", "cleaned"]


@dataclass(frozen=True)
class Pair:
    corpus: str  # mafand | nllb_seed | flores
    split: str  # train | dev | test (FLORES: dev | test = devtest)
    src_lang: str
    tgt_lang: str
    line: int  # 1-based line in the published files
    src: str
    tgt: str
    cleaned: int = 0  # 1 if training cleaning changed either side


def check_language(code: str, where: str) -> str:
    if code not in LANGUAGES:
        raise DataError(
            f"{where}: unknown language code {code!r}; known ISO 639-3 codes: "
            f"{', '.join(sorted(LANGUAGES))}"
        )
    return code


def language_code(code: str, where: str) -> str:
    """ISO 639-3 code for `code`, which may also be a MAFAND short code (fr, en)."""
    short = {v[1]: k for k, v in LANGUAGES.items()}
    return check_language(short.get(code, code), where)


def parse_direction(text: str, where: str) -> tuple[str, str]:
    parts = text.split("-")
    if len(parts) != 2:
        raise DataError(f"{where}: {text!r} is not a direction like 'fra-fon'")
    return check_language(parts[0], where), check_language(parts[1], where)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def read_lines(path: Path) -> list[str]:
    """A published one-sentence-per-line file, UTF-8 (a bad byte is an error naming the line)."""
    if not path.is_file():
        raise DataError(f"{path}: corpus file not found; run `zoo fetch translation` first")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 byte at offset {e.start}") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def aligned(a: Path, b: Path) -> tuple[list[str], list[str]]:
    la, lb = read_lines(a), read_lines(b)
    if len(la) != len(lb):
        raise DataError(f"{a} has {len(la)} lines but {b} has {len(lb)}: not line-aligned")
    return la, lb


_TRIPLE = re.compile(r'"{2,3}')
# A line number at the head of a sentence ("5316- Agbàhwlɛ́nhwlɛ́n ..."): MAFAND-MT's Fon side
# carries one on most lines, in train, dev and test alike, where the French side has none.
_NUMBERED = re.compile(r'^("?)\d+- ')


def strip_line_number(text: str, other: str) -> str:
    """`text` without a leading line number that its translation `other` does not have (a
    numbered list item, numbered on both sides, keeps its number)."""
    if _NUMBERED.match(other):
        return text
    return _NUMBERED.sub(r"\1", text, count=1)


def clean_text(text: str, quotes: bool = True) -> str:
    """NFC and whitespace collapsed; with `quotes`, CSV-quoting artefacts undone (runs of two or
    three double quotes -> one, a line wrapped in quotes unwrapped)."""
    out = nfc(text)
    if quotes and '""' in out:
        out = _TRIPLE.sub('"', out)
        if out.startswith('"') and out.endswith('"') and out.count('"') == 2:
            out = out[1:-1]
    return " ".join(out.split())


def quarantine_reason(src: str, tgt: str, max_ratio: float) -> str | None:
    if not src.strip() or not tgt.strip():
        return "empty side"
    ls, lt = len(src), len(tgt)
    if max(ls, lt) >= 20 and max(ls, lt) > max_ratio * max(1, min(ls, lt)):
        return f"length ratio {max(ls, lt) / max(1, min(ls, lt)):.1f} > {max_ratio:g} (misaligned?)"
    return None


def mafand_pairs(raw: Path, pair: str) -> list[Pair]:
    a, b = parse_direction(pair, "data.mafand_pairs")
    sa, sb = LANGUAGES[a][1], LANGUAGES[b][1]
    folder = raw / "mafand" / f"{sa}-{sb}"
    out = []
    for split in SPLITS:
        la, lb = aligned(folder / f"{split}.{sa}", folder / f"{split}.{sb}")
        out += [
            Pair("mafand", split, a, b, i + 1, x, y)
            for i, (x, y) in enumerate(zip(la, lb, strict=True))
        ]
    return out


def nllb_seed_pairs(raw: Path, lang: str) -> list[Pair]:
    check_language(lang, "data.nllb_seed_langs")
    folder = raw / "cpc" / "multitext-nllb-seed"
    la, lb = aligned(folder / "eng_Latn", folder / LANGUAGES[lang][2])
    return [
        Pair("nllb_seed", "train", "eng", lang, i + 1, x, y)
        for i, (x, y) in enumerate(zip(la, lb, strict=True))
    ]


def flores_lines(raw: Path, lang: str, split: str) -> list[str]:
    """FLORES-200 `dev` or `devtest` sentences of one language, as published."""
    name = "devtest" if split in ("test", "devtest") else "dev"
    return read_lines(raw / "flores200" / name / f"{LANGUAGES[lang][2]}.{name}")


def flores_pairs(raw: Path, src: str, tgt: str, split: str) -> list[Pair]:
    la, lb = flores_lines(raw, src, split), flores_lines(raw, tgt, split)
    if len(la) != len(lb):
        raise DataError(f"FLORES-200 {split}: {src} has {len(la)} lines, {tgt} {len(lb)}")
    s = "test" if split in ("test", "devtest") else "dev"
    return [
        Pair("flores", s, src, tgt, i + 1, x, y)
        for i, (x, y) in enumerate(zip(la, lb, strict=True))
    ]


@dataclass
class Prepared:
    pairs: list[Pair]
    quarantined: list[dict[str, str]]
    stats: dict[str, int]


def build(
    raw: Path,
    mafand: list[str],
    seed_langs: list[str],
    max_ratio: float,
    zero_shot: list[tuple[str, str]] = (),
    flores_dev_from: int | None = None,
) -> Prepared:
    """Training pairs (cleaned, quarantined, devtest overlap removed), MAFAND dev/test and
    FLORES dev/devtest pairs (as published) for every trained language pair.

    With `flores_dev_from` = N, the FLORES-200 dev sentences after the first N also train every
    language pair that the corpora train (never a zero-shot pair); the first N stay held out for
    model selection. Devtest is never trained on."""
    stats: Counter[str] = Counter({"devtest_overlap": 0, "mafand_test_overlap": 0})
    quarantined: list[dict[str, str]] = []
    published: list[Pair] = []
    for p in mafand:
        published += mafand_pairs(raw, p)
    for lang in seed_langs:
        published += nllb_seed_pairs(raw, lang)
    langs = {x for p in published for x in (p.src_lang, p.tgt_lang)}
    trained = sorted({(p.src_lang, p.tgt_lang) for p in published})
    if flores_dev_from is not None:
        for a, b in trained:
            published += [
                Pair(p.corpus, "train", a, b, p.line, p.src, p.tgt)
                for p in flores_pairs(raw, a, b, "dev")
                if p.line > flores_dev_from
            ]
    # Every FLORES devtest sentence of every language we touch: training must not contain one.
    devtest = {nfc(s).strip() for lang in sorted(langs) for s in flores_lines(raw, lang, "test")}
    # ... nor a MAFAND-MT test sentence (the published splits share a few sentences).
    mafand_test = {
        " ".join(nfc(s).split()) for p in published if p.split == "test" for s in (p.src, p.tgt)
    }
    out: list[Pair] = []
    for p in published:
        if p.split != "train":
            out.append(p)
            continue
        # Only MAFAND-MT carries the documented CSV-quoting artefacts; other text keeps its quotes.
        quotes = p.corpus == "mafand"
        src, tgt = clean_text(p.src, quotes), clean_text(p.tgt, quotes)
        quoted = int(src != " ".join(nfc(p.src).split()) or tgt != " ".join(nfc(p.tgt).split()))
        normalised = int(nfc(p.src) != p.src or nfc(p.tgt) != p.tgt)
        numbered = (strip_line_number(src, tgt), strip_line_number(tgt, src))
        renumbered = int(numbered != (src, tgt))
        src, tgt = numbered
        where = f"{p.corpus}/{p.src_lang}-{p.tgt_lang}/train:{p.line}"
        reason = quarantine_reason(src, tgt, max_ratio)
        if reason is None and (src in devtest or tgt in devtest):
            reason = "also in FLORES-200 devtest"
            stats["devtest_overlap"] += 1
        elif reason is None and (src in mafand_test or tgt in mafand_test):
            reason = "also in MAFAND-MT test"
            stats["mafand_test_overlap"] += 1
        if reason:
            quarantined.append({"path": where, "reason": reason})
            continue
        stats[f"quotes_cleaned_{p.corpus}_{p.src_lang}-{p.tgt_lang}"] += quoted
        stats[f"line_numbers_removed_{p.corpus}_{p.src_lang}-{p.tgt_lang}"] += renumbered
        changed = max(quoted, renumbered)
        stats["nfc_changed"] += normalised
        out.append(Pair(p.corpus, p.split, p.src_lang, p.tgt_lang, p.line, src, tgt, changed))
    # FLORES-200 dev/devtest for every trained language pair and every zero-shot pair.
    flores = set(trained)
    for a, b in zero_shot:
        if (a, b) not in flores and (b, a) not in flores:
            flores.add((a, b))
    for a, b in sorted(flores):
        out += flores_pairs(raw, a, b, "dev") + flores_pairs(raw, a, b, "test")
    stats["quarantined"] = len(quarantined)
    return Prepared(out, quarantined, dict(stats))


def write_pairs(path: Path, pairs: list[Pair]) -> None:
    from usecases.core.io import write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(asdict(p) for p in pairs)
    write_text(path, buf.getvalue())


def read_pairs(path: Path) -> list[Pair]:
    if not path.is_file():
        raise DataError(f"{path}: not found; run `zoo prepare translation` first")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise DataError(f"{path}: expected columns {COLUMNS}, found {reader.fieldnames}")
        return [
            Pair(
                r["corpus"],
                r["split"],
                r["src_lang"],
                r["tgt_lang"],
                int(r["line"]),
                r["src"],
                r["tgt"],
                int(r["cleaned"]),
            )
            for r in reader
        ]
