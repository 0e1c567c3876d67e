"""Utterance records and the three corpus layouts partners bring for read speech.

Every reader returns `Utterance`s whose `path` is relative to the corpus root (POSIX), with
NFC-normalised transcripts, and raises `DataError` naming the file and line of the problem:

    <root>/<manifest>.tsv                      generic: path, transcript, speaker, split
                                               (optional duration_s, session)
    <root>/{train,dev,test}.tsv + clips/       Common Voice
    <root>/{train,dev,test}/{wav.scp,text,utt2spk}   Kaldi / ALFFA

All TSV files are tab-separated without quoting: transcripts may contain `"`.
"""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from usecases.core.data import DataError

SPLITS = ("train", "dev", "test")
MANIFEST_COLUMNS = ("path", "transcript", "speaker", "split")
CV_COLUMNS = ("client_id", "path", "sentence")
KALDI_FILES = ("wav.scp", "text", "utt2spk")


@dataclass(frozen=True)
class Utterance:
    id: str
    path: str  # relative to the corpus root, POSIX separators
    transcript: str  # NFC, whitespace collapsed
    speaker: str
    split: str  # train | dev | test
    session: str = ""
    duration: float | None = None  # seconds, when the corpus says


def normalise_transcript(text: str) -> str:
    """NFC with runs of whitespace collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a BOM is dropped; a bad byte is an error naming the line)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 byte at offset {e.start}") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _read_tsv(path: Path, need: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each non-blank data line of a header-first TSV without quoting;
    a missing column or a row with the wrong number of fields is an error naming file:line."""
    lines = _lines(path)
    if not lines:
        raise DataError(f"{path}:1: empty file, expected a header with columns {list(need)}")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [h.strip() for h in next(reader)]
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {missing}; header has {header}")
    rows = []
    for n, fields in enumerate(reader, start=2):
        if not fields or fields == [""]:
            continue
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{n}: {len(fields)} tab-separated fields, the header has {len(header)}"
            )
        rows.append((n, dict(zip(header, fields, strict=True))))
    return rows


def _relative(root: Path, raw: str, where: str) -> str:
    """`raw` as a POSIX path relative to `root`; an absolute path must lie under `root`."""
    text = raw.strip().replace("\\", "/")
    if not text:
        raise DataError(f"{where}: empty audio path")
    p = PurePosixPath(text)
    if p.is_absolute():
        try:
            p = PurePosixPath(Path(text).resolve().relative_to(root.resolve()).as_posix())
        except ValueError as e:
            raise DataError(f"{where}: absolute path {raw!r} is outside {root}") from e
    if ".." in p.parts:
        raise DataError(f"{where}: path {raw!r} leaves the corpus root")
    return p.as_posix()


def _transcript(raw: str, where: str) -> str:
    text = normalise_transcript(raw)
    if not text:
        raise DataError(f"{where}: empty transcript")
    return text


def _split(raw: str, where: str) -> str:
    split = raw.strip()
    if split not in SPLITS:
        raise DataError(f"{where}: split {raw!r} not one of {SPLITS}")
    return split


def _unique(located: list[tuple[Utterance, str]], source: Path) -> list[Utterance]:
    """The utterances of (utterance, file:line) pairs; ids must be unique across the corpus,
    since the id names features and results."""
    if not located:
        raise DataError(f"{source}: no utterances")
    seen: dict[str, str] = {}
    for u, at in located:
        if u.id in seen:
            raise DataError(f"{at}: utterance id {u.id!r} already used at {seen[u.id]}")
        seen[u.id] = at
    return [u for u, _ in located]


def _required(row: dict[str, str], column: str, at: str) -> str:
    """The stripped value of `column`, which must not be empty."""
    value = row[column].strip()
    if not value:
        raise DataError(f"{at}: empty {column}")
    return value


def read_manifest_tsv(root: str | Path, tsv: str | Path) -> list[Utterance]:
    """The generic manifest `tsv` (columns path, transcript, speaker, split; optional
    duration_s, session); paths are relative to `root` and the id is the file stem."""
    root, tsv = Path(root), Path(tsv)
    located: list[tuple[Utterance, str]] = []
    for n, row in _read_tsv(tsv, MANIFEST_COLUMNS):
        at = f"{tsv}:{n}"
        path = _relative(root, row["path"], at)
        speaker = _required(row, "speaker", at)
        duration = None
        raw = row.get("duration_s", "").strip()
        if raw:
            try:
                duration = float(raw)
            except ValueError as e:
                raise DataError(f"{at}: duration_s {raw!r} is not a number") from e
            if not duration > 0:
                raise DataError(f"{at}: duration_s must be positive, got {raw!r}")
        u = Utterance(
            id=PurePosixPath(path).stem,
            path=path,
            transcript=_transcript(row["transcript"], at),
            speaker=speaker,
            split=_split(row["split"], at),
            session=row.get("session", "").strip(),
            duration=duration,
        )
        located.append((u, at))
    return _unique(located, tsv)


def read_common_voice(root: str | Path) -> list[Utterance]:
    """The Common Voice layout: <root>/{train,dev,test}.tsv naming clips under <root>/clips/;
    the speaker is the client_id. Missing split files are skipped, but one must exist."""
    root = Path(root)
    present = [s for s in SPLITS if (root / f"{s}.tsv").is_file()]
    if not present:
        raise DataError(
            f"{root}: no Common Voice split file; expected one of {[f'{s}.tsv' for s in SPLITS]}"
        )
    located: list[tuple[Utterance, str]] = []
    for split in present:
        tsv = root / f"{split}.tsv"
        for n, row in _read_tsv(tsv, CV_COLUMNS):
            at = f"{tsv}:{n}"
            clip = _relative(root, row["path"], at)
            speaker = _required(row, "client_id", at)
            u = Utterance(
                id=PurePosixPath(clip).stem,
                path=f"clips/{clip}",
                transcript=_transcript(row["sentence"], at),
                speaker=speaker,
                split=split,
            )
            located.append((u, at))
    return _unique(located, root)


def _kaldi_table(path: Path, name: str) -> dict[str, tuple[int, str]]:
    """utt_id -> (line, rest of the line) for a Kaldi table file; duplicates are errors."""
    table: dict[str, tuple[int, str]] = {}
    for n, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        key, value = parts[0], parts[1] if len(parts) == 2 else ""
        if not value:
            raise DataError(f"{path}:{n}: utterance {key!r} has no {name}")
        if key in table:
            raise DataError(f"{path}:{n}: utterance {key!r} already listed at line {table[key][0]}")
        table[key] = (n, value)
    return table


def read_kaldi(root: str | Path) -> list[Utterance]:
    """The Kaldi / ALFFA layout: <root>/<split>/{wav.scp,text,utt2spk} for the splits present.
    wav.scp must name plain audio paths (relative to <root>, or absolute under it)."""
    root = Path(root)
    present = [s for s in SPLITS if (root / s).is_dir()]
    if not present:
        raise DataError(f"{root}: no Kaldi split folder; expected one of {list(SPLITS)}")
    located: list[tuple[Utterance, str]] = []
    for split in present:
        folder = root / split
        for name in KALDI_FILES:
            if not (folder / name).is_file():
                raise DataError(f"{folder / name}: Kaldi file not found (need {list(KALDI_FILES)})")
        if (folder / "segments").exists():
            raise DataError(
                f"{folder / 'segments'}: segmented recordings are not supported; "
                "cut the segments into files first"
            )
        scp = _kaldi_table(folder / "wav.scp", "audio path")
        text = _kaldi_table(folder / "text", "transcript")
        spk = _kaldi_table(folder / "utt2spk", "speaker")
        for utt, (n, value) in scp.items():
            at = f"{folder / 'wav.scp'}:{n}"
            if value.rstrip().endswith("|"):
                raise DataError(
                    f"{at}: utterance {utt!r} is a piped command ({value!r}); piped commands "
                    "are not supported, convert the audio to files and list their paths"
                )
            if utt not in text:
                raise DataError(f"{folder / 'text'}: no transcript for utterance {utt!r} ({at})")
            if utt not in spk:
                raise DataError(f"{folder / 'utt2spk'}: no speaker for utterance {utt!r} ({at})")
            tn, raw = text[utt]
            u = Utterance(
                id=utt,
                path=_relative(root, value, at),
                transcript=_transcript(raw, f"{folder / 'text'}:{tn}"),
                speaker=spk[utt][1].strip(),
                split=split,
            )
            located.append((u, at))
    return _unique(located, root)


def check_speaker_split(utts: list[Utterance], by: str = "speaker") -> None:
    """Raise if a speaker (or session, with by="session") is in both train and test: the test
    score would then measure memorised voices rather than generalisation."""
    if by not in ("speaker", "session"):
        raise ValueError(f"by must be 'speaker' or 'session', got {by!r}")
    train = {getattr(u, by) for u in utts if u.split == "train"} - {""}
    test = {getattr(u, by) for u in utts if u.split == "test"} - {""}
    both = sorted(train & test)
    if both:
        shown = ", ".join(repr(s) for s in both[:10])
        more = f" and {len(both) - 10} more" if len(both) > 10 else ""
        raise DataError(f"{len(both)} {by}(s) in both train and test: {shown}{more}")


def char_inventory(utts: list[Utterance], split: str = "train") -> list[str]:
    """Sorted characters of the lower-cased NFC transcripts of `split` only: a character
    vocabulary that does not peek at the test transcripts."""
    texts = [u.transcript for u in utts if u.split == split]
    if not texts:
        raise DataError(f"no utterances in split {split!r} to build a character inventory from")
    chars: set[str] = set()
    for t in texts:
        chars.update(unicodedata.normalize("NFC", unicodedata.normalize("NFC", t).lower()))
    return sorted(chars)
