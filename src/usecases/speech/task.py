"""Automatic speech recognition for Hausa and Yoruba: the use-case plug-in (data half).

`prepare` reads each language's manifest, checks every audio file from its header only (never
decoding it, so that it stays fast), quarantines unusable or overlong files with the reason,
refuses a corpus whose train and test share a speaker (or a session, for a single-speaker
corpus), and writes the manifest, quarantine list and summary. The model hooks are not
implemented yet.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from usecases.core.config import Config, DataConfig
from usecases.core.data import MANIFEST, QUARANTINE, SUMMARY, DataError, Rejected, write_quarantine
from usecases.core.io import write_json, write_text
from usecases.core.registry import register_usecase
from usecases.core.task import UseCase
from usecases.speech.audio import AudioError, audio_info
from usecases.speech.data import (
    SPLITS,
    Utterance,
    char_inventory,
    check_speaker_split,
    read_manifest_tsv,
)

MANIFEST_COLUMNS = [
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


@dataclass
class SpeechDataConfig(DataConfig):
    # language code -> {"manifest": TSV file in the raw folder, "split_by": speaker | session}
    languages: dict = field(default_factory=dict)
    sample_rate: int = 16000
    max_seconds: float = 60.0


def _d(cfg: Config) -> SpeechDataConfig:
    return cfg.data  # type: ignore[return-value]


@register_usecase("speech")
class Speech(UseCase):
    data_config = SpeechDataConfig
    task = "automatic-speech-recognition"
    intended_use = (
        "Research baseline for transcribing read Hausa and Yoruba speech, e.g. to check how far "
        "a small recogniser gets on a language before more recordings are collected. Every "
        "transcript must be checked by a speaker of the language before any use."
    )
    limitations = (
        "One or two speakers per language and about one hour of training audio each (Hausa: "
        "one female speaker in train, one male speaker in test; Yoruba: one male speaker, test "
        "recorded on another day): error rates say little about other voices, accents, "
        "microphones, noise or spontaneous speech, and nothing about the population. "
        "Read prompts only; tone marks are often missing from the Yoruba prompts."
    )

    # -- data -------------------------------------------------------------------------------
    def prepare(self, cfg: Config) -> dict[str, Any]:
        """Language manifests -> manifest.csv, quarantine.csv and summary.json (headers only)."""
        d = _d(cfg)
        raw, out = self.raw_dir(cfg), self.processed_dir(cfg)
        if not d.languages:
            raise DataError("data.languages is empty: name at least one language and its manifest")
        if not raw.is_dir():
            raise DataError(f"{raw}: raw data folder not found; run `zoo fetch {self.name}` first")
        rows: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        kept_by_lang: dict[str, list[Utterance]] = {}
        for lang in sorted(d.languages):
            spec = d.languages[lang] or {}
            if "manifest" not in spec:
                raise DataError(f"data.languages.{lang}: no manifest given")
            split_by = spec.get("split_by", "speaker")
            if split_by not in ("speaker", "session"):
                raise DataError(
                    f"data.languages.{lang}.split_by must be 'speaker' or 'session', "
                    f"got {split_by!r}"
                )
            utts = read_manifest_tsv(raw, raw / spec["manifest"])
            kept: list[Utterance] = []
            for u in utts:
                try:
                    info = audio_info(raw / u.path)
                except AudioError as e:
                    rejected.append(Rejected(u.path, str(e)))
                    continue
                if info["seconds"] > d.max_seconds:
                    rejected.append(
                        Rejected(
                            u.path,
                            f"{raw / u.path}: lasts {info['seconds']:.1f} s, longer than the "
                            f"limit of {d.max_seconds:g} s",
                        )
                    )
                    continue
                kept.append(u)
                rows.append(
                    {
                        "language": lang,
                        "id": u.id,
                        "path": u.path,
                        "transcript": u.transcript,
                        "speaker": u.speaker,
                        "session": u.session,
                        "split": u.split,
                        "duration_s": f"{info['seconds']:.3f}",
                        "sample_rate": info["sample_rate"],
                    }
                )
            if not any(u.split == "train" for u in kept):
                raise DataError(f"{lang}: no usable training utterances after quarantine")
            if not any(u.split == "test" for u in kept):
                raise DataError(f"{lang}: no usable test utterances after quarantine")
            try:
                check_speaker_split(kept, by=split_by)
            except DataError as e:
                raise DataError(f"{lang} ({raw / spec['manifest']}): {e}") from e
            kept_by_lang[lang] = kept

        rows.sort(key=lambda r: (r["language"], SPLITS.index(r["split"]), r["path"]))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(out / MANIFEST, buf.getvalue())
        write_quarantine(out / QUARANTINE, rejected)

        languages = sorted(kept_by_lang)
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for r in rows:
            lang, split = r["language"], r["split"]
            counts[split][lang] = counts[split].get(lang, 0) + 1
            seconds[lang][split] += float(r["duration_s"])
        summary = {
            "labels": languages,
            "counts": {s: dict(sorted(counts[s].items())) for s in SPLITS if s in counts},
            "hours": {
                lang: {s: round(seconds[lang][s] / 3600, 3) for s in SPLITS if s in seconds[lang]}
                for lang in languages
            },
            "speakers": {
                lang: {
                    s: sorted({u.speaker for u in kept_by_lang[lang] if u.split == s})
                    for s in SPLITS
                    if any(u.split == s for u in kept_by_lang[lang])
                }
                for lang in languages
            },
            "characters": {lang: char_inventory(kept_by_lang[lang], "train") for lang in languages},
            "quarantined": len(rejected),
            "sample_rate": d.sample_rate,
            "max_seconds": d.max_seconds,
        }
        write_json(out / SUMMARY, summary)
        return summary
