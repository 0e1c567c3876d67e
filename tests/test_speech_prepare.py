"""Speech `prepare` on two tiny corpora written by the test, in the layout of the published
archives (audio/{train,test}/*.flac beside one TSV manifest per language)."""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from usecases.core import stages
from usecases.core.config import compose
from usecases.core.data import DataError
from usecases.core.registry import get_usecase

from .conftest import REPO, smoke_overrides

RATE = 16000
HAU_COLUMNS = ["path", "transcript", "speaker", "split", "duration_s"]
YOR_COLUMNS = HAU_COLUMNS + ["session"]
HAU = [
    ("audio/train/ha_0.flac", "Falmata ta rufe ƙofa.", "hau_F1", "train"),
    ("audio/train/ha_1.flac", 'Ya ce "ɗan uwa" ya zo.', "hau_F1", "train"),
    ("audio/train/ha_2.flac", "An tuhumi Hassan.", "hau_F1", "train"),
    ("audio/test/ha_3.flac", "Ruwa ya sauka.", "hau_M1", "test"),
    ("audio/test/ha_4.flac", "Yara sun tafi.", "hau_M1", "test"),
]
BROKEN = "audio/train/ha_broken.flac"
YOR = [
    ("audio/train/yo_0.flac", "ọrọ ìyànjù", "s1"),
    ("audio/train/yo_1.flac", "odò ṣàn", "s1"),
    ("audio/train/yo_2.flac", "ilé wa", "s2"),
    ("audio/test/yo_3.flac", "ẹ kú àárọ̀", "s3"),
]


def sine(path: Path, seconds: float = 0.5, freq: float = 220.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), RATE, format="FLAC")


def write_tsv(path: Path, columns: list[str], rows: list[list[str]]) -> None:
    lines = ["\t".join(columns)] + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_corpora(raw: Path, seconds: float = 0.5) -> None:
    """data/raw/speech as the two archives and TSVs unpack into it, with one empty file."""
    for i, (p, *_) in enumerate(HAU + YOR):
        sine(raw / p, seconds, freq=220.0 + 40 * i)
    (raw / BROKEN).write_bytes(b"")
    hau = [[p, t, s, split, "0.500"] for p, t, s, split in HAU]
    hau.append([BROKEN, "Wannan fayil ya lalace.", "hau_F1", "train", "1.000"])
    write_tsv(raw / "hau.tsv", HAU_COLUMNS, hau)
    yor = [[p, t, "yor_M1", p.split("/")[1], "0.500", session] for p, t, session in YOR]
    write_tsv(raw / "yor.tsv", YOR_COLUMNS, yor)


LANGUAGES = (
    "+data.languages={hau: {manifest: hau.tsv, split_by: speaker},"
    " yor: {manifest: yor.tsv, split_by: session}}"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_corpora(tmp_path / "data/raw/speech")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(REPO / "configs"))
    return tmp_path


def config(root: Path, extra: list[str] | tuple[str, ...] = ()):
    overrides = smoke_overrides(root) + ["~data.languages", LANGUAGES, *extra]
    return get_usecase("speech").config(compose(overrides, usecase="speech"))


def test_speech_config_composes():
    cfg = get_usecase("speech").config(compose([], usecase="speech"))
    assert cfg.data.languages["hau"]["split_by"] == "speaker"
    assert cfg.data.languages["yor"]["split_by"] == "session"
    assert cfg.data.sample_rate == 16000 and cfg.data.max_seconds == 60
    assert len(cfg.data.sources) == 4
    assert get_usecase("speech").task == "automatic-speech-recognition"


def test_prepare_writes_manifest_quarantine_and_summary(project: Path):
    cfg = config(project, ["data.val_fraction=0"])  # published splits only (no dev carved)
    summary = stages.prepare(cfg)
    out = project / "data/processed/speech"
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    assert summary["labels"] == ["hau", "yor"]
    assert summary["counts"] == {"train": {"hau": 3, "yor": 3}, "test": {"hau": 2, "yor": 1}}
    assert summary["hours"] == {
        "hau": {"train": round(1.5 / 3600, 3), "test": round(1.0 / 3600, 3)},
        "yor": {"train": round(1.5 / 3600, 3), "test": round(0.5 / 3600, 3)},
    }
    assert summary["speakers"] == {
        "hau": {"train": ["hau_F1"], "test": ["hau_M1"]},
        "yor": {"train": ["yor_M1"], "test": ["yor_M1"]},
    }
    # train transcripts only, lower-cased: no character of the test prompts leaks in
    assert summary["characters"]["hau"] == sorted(set("".join(t for _, t, _, s in HAU[:3]).lower()))
    assert "ẹ" not in summary["characters"]["yor"] and "ọ" in summary["characters"]["yor"]
    assert summary["quarantined"] == 1

    with open(out / "quarantine.csv", encoding="utf-8", newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [r["path"] for r in rejected] == [BROKEN]
    assert "empty file (0 bytes)" in rejected[0]["reason"]

    with open(out / "manifest.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "language",
        "id",
        "path",
        "transcript",
        "speaker",
        "session",
        "split",
        "duration_s",
        "sample_rate",
    ]
    assert len(rows) == 9 and BROKEN not in {r["path"] for r in rows}
    assert rows == sorted(rows, key=lambda r: (r["language"], r["split"] != "train", r["path"]))
    quoted = next(r for r in rows if r["id"] == "ha_1")
    assert quoted["transcript"] == 'Ya ce "ɗan uwa" ya zo.'
    assert quoted["duration_s"] == "0.500" and quoted["sample_rate"] == "16000"
    assert {r["session"] for r in rows if r["language"] == "yor"} == {"s1", "s2", "s3"}


def test_prepare_quarantines_overlong_files(project: Path):
    cfg = config(project)
    cfg.data.max_seconds = 0.4
    sine(project / "data/raw/speech/audio/train/ha_0.flac", seconds=0.2)
    sine(project / "data/raw/speech/audio/test/ha_3.flac", seconds=0.2)
    sine(project / "data/raw/speech/audio/train/yo_0.flac", seconds=0.2)
    sine(project / "data/raw/speech/audio/test/yo_3.flac", seconds=0.2)
    summary = stages.prepare(cfg)
    assert summary["counts"] == {"train": {"hau": 1, "yor": 1}, "test": {"hau": 1, "yor": 1}}
    assert summary["quarantined"] == 1 + 5  # the empty file and the five 0.5 s ones
    with open(project / "data/processed/speech/quarantine.csv", encoding="utf-8") as f:
        reasons = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    assert "longer than the limit of 0.4 s" in reasons["audio/train/ha_1.flac"]


def test_speaker_in_train_and_test_stops_prepare(project: Path):
    raw = project / "data/raw/speech"
    rows = [
        [p, t, "hau_F1" if split == "train" or p.endswith("ha_4.flac") else s, split, "0.5"]
        for p, t, s, split in HAU
    ]
    write_tsv(raw / "hau.tsv", HAU_COLUMNS, rows)
    with pytest.raises(DataError, match="hau_F1"):
        stages.prepare(config(project))


def test_session_in_train_and_test_stops_prepare(project: Path):
    raw = project / "data/raw/speech"
    yor = [[p, t, "yor_M1", p.split("/")[1], "0.5", "s1"] for p, t, _ in YOR]
    write_tsv(raw / "yor.tsv", YOR_COLUMNS, yor)
    with pytest.raises(DataError, match="session.*'s1'"):
        stages.prepare(config(project))


def test_explore_notebook_runs_on_the_tiny_corpus(project: Path, tmp_path: Path):
    import papermill

    stages.prepare(config(project))
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(REPO / "notebooks/speech/01-explore.ipynb"),
        str(out),
        parameters={
            "raw_dir": str(project / "data/raw/speech"),
            "processed_dir": str(project / "data/processed/speech"),
            "examples": 1,
        },
        progress_bar=False,
        cwd=str(tmp_path),
    )
    assert out.is_file()


@contextmanager
def tiny_trained_project(root: Path):
    """A tiny corpus in `root` (2 s clips: long enough for CTC to align), prepared, and a
    crnn_tiny trained for a few steps on Hausa; yields its config, inside the project."""
    write_corpora(root / "data/raw/speech", seconds=2.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("ZOO_CONFIG_DIR", str(REPO / "configs"))
        cfg = config(root, ["model=crnn_tiny", "data.chunk_seconds=2", "trainer.max_steps=3"])
        stages.prepare(cfg)
        stages.train(cfg)
        yield cfg
