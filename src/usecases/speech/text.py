"""Transcript normalisation, the character vocabulary and error rates.

Training targets and scoring use one normalisation, so a model is never penalised for casing or
punctuation that nobody pronounces: NFC, lower case, apostrophe variants folded into one letter
(Hausa writes the glottalised y as ʼy), Greek look-alike letters in Latin words replaced by the
Latin letter (the Yoruba prompts contain a few), tone marks that float on no letter dropped,
punctuation removed, whitespace collapsed. Tone-insensitive error rates strip the three Yoruba
tone marks (grave, acute, macron) but keep the letters with a dot below (ẹ, ọ, ṣ).
"""

from __future__ import annotations

import unicodedata
from collections import Counter

BLANK = ""
APOSTROPHES = {"'": "ʼ", "’": "ʼ", "‘": "ʼ", "ʻ": "ʼ", "`": "ʼ", "´": "ʼ"}
LOOKALIKES = {"ι": "i", "ο": "o", "α": "a", "ε": "e", "ν": "v"}  # Greek -> Latin, on NFD text
TONES = {"\u0300", "\u0301", "\u0304"}


def normalise(text: str) -> str:
    """The form transcripts are trained and scored in (see the module docstring)."""
    text = unicodedata.normalize("NFD", text.casefold())
    out: list[str] = []
    for ch in text:
        ch = APOSTROPHES.get(ch, LOOKALIKES.get(ch, ch))
        cat = unicodedata.category(ch)
        if cat.startswith("M"):
            # A combining mark belongs to the letter before it; one after a space is noise.
            if out and unicodedata.category(out[-1])[0] in "LM":
                out.append(ch)
            continue
        if cat.startswith(("P", "S", "C")) and ch != "ʼ":
            out.append(" ")
            continue
        out.append(" " if ch.isspace() else ch)
    return " ".join(unicodedata.normalize("NFC", "".join(out)).split())


def strip_tones(text: str) -> str:
    """`text` without grave, acute and macron accents (dots below kept), NFC."""
    nfd = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in nfd if c not in TONES))


def changed(texts: list[str]) -> int:
    """How many transcripts normalisation changes beyond case and spacing (for the summary)."""
    return sum(normalise(t) != " ".join(t.casefold().split()) for t in texts)


class CharVocab:
    """CTC labels: index 0 is the blank, then the characters of the training transcripts
    (normalised), in code-point order; a character unseen in training cannot be produced and
    is dropped from targets (counted by `unknown`)."""

    def __init__(self, chars: list[str]) -> None:
        if not chars:
            raise ValueError("empty character vocabulary")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError(f"vocabulary must be distinct single characters, got {chars!r}")
        self.labels = [BLANK, *chars]
        self.index = {c: i for i, c in enumerate(self.labels) if c}

    @classmethod
    def from_texts(cls, texts: list[str]) -> CharVocab:
        return cls(sorted({c for t in texts for c in normalise(t)}))

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in normalise(text) if c in self.index]

    def unknown(self, texts: list[str]) -> Counter[str]:
        return Counter(c for t in texts for c in normalise(t) if c not in self.index)

    def decode(self, ids: list[int]) -> str:
        return " ".join("".join(self.labels[i] for i in ids if i > 0).split())


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Corpus CER and WER (edits / reference length, over all utterances), plain and
    tone-insensitive, on normalised text; utterances with an empty reference are skipped."""
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no non-empty reference transcript to score")
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    rt, ht = [strip_tones(x) for x in r], [strip_tones(x) for x in h]
    return {
        "cer": float(jiwer.cer(r, h)),
        "wer": float(jiwer.wer(r, h)),
        "cer_no_tones": float(jiwer.cer(rt, ht)),
        "wer_no_tones": float(jiwer.wer(rt, ht)),
    }


def utterance_cer(ref: str, hyp: str) -> float:
    import jiwer

    r = normalise(ref)
    return float(jiwer.cer(r, normalise(hyp))) if r else float(bool(normalise(hyp)))
