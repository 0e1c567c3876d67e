"""Automatic speech recognition for Hausa and Yoruba: the use-case plug-in.

`prepare` reads each language's manifest, checks every audio file from its header only (never
decoding it, so that it stays fast), quarantines unusable or overlong files with the reason,
refuses a corpus whose train and test share a speaker (or a session, for a single-speaker
corpus), carves a seeded dev split out of train, and writes the manifest, quarantine list and
summary.

A run trains one language (`data.language`): a character CTC model on log-mel features (speed
perturbation, a mel-axis warp standing in for pitch/formant shift, SpecAugment), selected on
dev CER. `evaluate` decodes dev and test greedily, with a beam, and with a beam plus a character
n-gram LM fitted on the training transcripts; the decoder with the best dev CER gives the
headline test CER/WER. Keyword spotting runs on the same posteriors, its threshold set on dev.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import platform
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from usecases.core.config import Config, DataConfig
from usecases.core.data import MANIFEST, QUARANTINE, SUMMARY, DataError, Rejected, write_quarantine
from usecases.core.io import write_json, write_text
from usecases.core.registry import create_model, model_entry, register_usecase
from usecases.core.task import UseCase
from usecases.speech import features
from usecases.speech import hf as _hf  # noqa: F401  (registers wav2vec2_ctc)
from usecases.speech import models as _models  # noqa: F401  (registers the CTC models)
from usecases.speech.audio import AudioError, audio_info, load_audio, read_many, split_at_pauses
from usecases.speech.data import (
    SPLITS,
    Utterance,
    char_inventory,
    check_speaker_split,
    read_manifest_tsv,
)
from usecases.speech.decode import (
    CharNgramLM,
    beam_search,
    best_threshold,
    greedy,
    ids_to_text,
    keyword_metrics,
    spot_keywords,
)
from usecases.speech.features import LogMel
from usecases.speech.models import CRNN
from usecases.speech.text import BLANK, CharVocab, error_rates, normalise, utterance_cer

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {"hau": "Hausa", "yor": "Yoruba"}
# Keyword score: mean per character of (aligned label - best label) log posterior; 0 = the
# greedy transcript contains the word. Used when dev gives nothing to set the threshold on.
DEFAULT_KEYWORD_THRESHOLD = -1.0
CRNN_SUBSAMPLING = CRNN.subsampling

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
    # language code -> {name, licence, citation}: what a release's model card cites
    corpora: dict = field(default_factory=dict)
    # language code -> {"manifest": TSV file in the raw folder, "split_by": speaker | session}
    languages: dict = field(default_factory=dict)
    language: str = "hau"  # the language a run trains and is scored on
    sample_rate: int = 16000
    max_seconds: float = 60.0
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    warp: list[float] = field(default_factory=lambda: [0.85, 1.15])  # mel-axis stretch range
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 4
    time_ratio: float = 0.05
    # Decoding: beam width, character n-gram LM (order, weight, per-character bonus).
    beam: int = 8
    lm_order: int = 5
    lm_alpha: float = 0.5
    lm_beta: float = 1.0
    # Keyword spotting: per language, the words to look for; empty = the most frequent words
    # of at least `keyword_min_chars` characters that occur in both the dev and test transcripts.
    keywords: dict = field(default_factory=dict)
    keyword_count: int = 12
    keyword_min_chars: int = 4
    chunk_seconds: float = 20.0  # long files are transcribed in pieces cut at pauses
    eval_limit: int | None = None  # test utterances scored (smoke runs only: the report says so)


def _d(cfg: Config) -> SpeechDataConfig:
    return cfg.data  # type: ignore[return-value]


def _carve_dev(utts: list[Utterance], fraction: float, seed: int) -> list[Utterance]:
    """A seeded `fraction` of the training utterances becomes the dev split (model selection,
    decoder and keyword-threshold choice) unless the corpus publishes a dev split already."""
    if fraction <= 0 or any(u.split == "dev" for u in utts):
        return utts
    train = sorted(u.id for u in utts if u.split == "train")
    n = max(1, round(fraction * len(train))) if len(train) > 1 else 0
    dev = set(random.Random(seed).sample(train, n))
    return [replace(u, split="dev") if u.id in dev else u for u in utts]


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
        infos: dict[str, dict[str, Any]] = {}
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
                infos[u.path] = info
            if not any(u.split == "train" for u in kept):
                raise DataError(f"{lang}: no usable training utterances after quarantine")
            if not any(u.split == "test" for u in kept):
                raise DataError(f"{lang}: no usable test utterances after quarantine")
            try:
                check_speaker_split(kept, by=split_by)
            except DataError as e:
                raise DataError(f"{lang} ({raw / spec['manifest']}): {e}") from e
            kept = _carve_dev(kept, d.val_fraction, cfg.seed)
            kept_by_lang[lang] = kept
            for u in kept:
                info = infos[u.path]
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

    # -- model ------------------------------------------------------------------------------
    def utterances(self, cfg: Config, split: str, language: str | None = None) -> list[dict]:
        """Manifest rows of one language and split, in manifest order."""
        lang = language or _d(cfg).language
        path = self.processed_dir(cfg) / MANIFEST
        if not path.is_file():
            raise DataError(f"{path}: not found; run `zoo prepare {self.name}` first")
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r["language"] == lang and r["split"] == split]
        if not rows:
            raise DataError(f"{path}: no {split} utterances for language {lang!r}")
        limit = _d(cfg).limit_per_class  # smoke runs: the first utterances of each split
        return rows[:limit] if limit else rows

    def model_meta(self, cfg: Config, labels: list[str]) -> dict[str, Any]:
        d = _d(cfg)
        if d.language not in labels:
            raise DataError(
                f"data.language {d.language!r} was not prepared; prepared: {', '.join(labels)}"
            )
        train = self.utterances(cfg, "train")
        vocab = CharVocab.from_texts([r["transcript"] for r in train])
        lm = CharNgramLM.fit([normalise(r["transcript"]) for r in train], order=d.lm_order)
        return {
            "arch": cfg.model.name,
            "labels": vocab.labels,
            "language": d.language,
            "input": model_entry(cfg.model.name).meta.get("input", "logmel"),
            "sample_rate": d.sample_rate,
            "lm": lm.to_dict(),
            "decode": {
                "beam": d.beam,
                "lm_alpha": d.lm_alpha,
                "lm_beta": d.lm_beta,
                "chunk_seconds": d.chunk_seconds,
            },
            "dataset": d.dataset_name,
            "licence": d.licence,
        }

    def build_model(
        self, cfg: Config, labels: list[str], pretrained: bool | None = None
    ) -> nn.Module:
        # `labels` are the release's CTC labels, or at training time the prepared languages.
        if labels and labels[0] != BLANK:
            labels = CharVocab.from_texts(
                [r["transcript"] for r in self.utterances(cfg, "train")]
            ).labels
        return create_model(
            cfg.model.name,
            pretrained=cfg.model.pretrained if pretrained is None else pretrained,
            weights=cfg.model.weights,
            vocab_size=len(labels),
            dropout=cfg.model.dropout,
        )

    # -- data -------------------------------------------------------------------------------
    def _front_end(self, meta: dict[str, Any]):
        """wave (numpy) -> model input (log-mel [T, 80] or the wave itself) as a tensor."""
        if meta.get("input", "logmel") == "wave":
            return lambda w: torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        logmel = LogMel()
        return lambda w: logmel(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))

    def _examples(
        self, cfg: Config, meta: dict[str, Any], rows: list[dict], speeds: list[float]
    ) -> list[dict]:
        """One example per (utterance, speed): model input, targets, reference, id."""
        vocab = CharVocab(meta["labels"][1:])
        front = self._front_end(meta)
        raw = self.raw_dir(cfg)
        out = []
        for r in rows:
            wave = load_audio(raw / r["path"], meta["sample_rate"])
            targets = vocab.encode(r["transcript"])
            for k, factor in enumerate(speeds):
                out.append(
                    {
                        "x": front(features.speed(wave, factor, meta["sample_rate"])),
                        "targets": targets,
                        "ref": r["transcript"],
                        "id": r["id"],
                        "speed": k,
                    }
                )
        return out

    def datasets(self, cfg: Config, meta: dict[str, Any]):
        """Train = every utterance at every `data.speeds` factor (Kaldi-style 3-way speed
        perturbation: an epoch is one pass over all copies); dev = speed 1 only."""
        d = _d(cfg)
        train = self._examples(cfg, meta, self.utterances(cfg, "train"), d.speeds or [1.0])
        val = self._examples(cfg, meta, self.utterances(cfg, "dev"), [1.0])
        if meta.get("input", "logmel") == "logmel":
            # CTC needs a frame per character plus one between repeats: an utterance too
            # short for its transcript has no alignment and would teach nothing.
            kept = [e for e in train if _alignable(e)]
            if len(kept) < len(train):
                log.warning(
                    "%d of %d training examples are too short for their transcript "
                    "(fewer %d ms frames than CTC needs); left out",
                    len(train) - len(kept),
                    len(train),
                    round(1000 * features.seconds_per_frame(CRNN_SUBSAMPLING)),
                )
            if not kept:
                raise DataError("no training utterance is long enough for its transcript")
            train = kept
        return train, val

    def collate_fn(self, cfg: Config):
        return collate_utterances

    def train_batch_transform(self, cfg: Config, meta: dict[str, Any]):
        if meta.get("input", "logmel") != "logmel":
            return None
        d = _d(cfg)
        gen = torch.Generator().manual_seed(cfg.seed)

        def augment(batch: dict) -> dict:
            x = batch["x"]
            if d.warp and d.warp[0] != d.warp[1]:
                x = features.warp_frequency(x, d.warp[0], d.warp[1], gen)
            x = features.spec_augment(
                x, batch["lengths"], gen, d.freq_masks, d.freq_width, d.time_masks, d.time_ratio
            )
            return {**batch, "x": x}

        return augment

    def loss_fn(self, cfg: Config):
        def loss(model: nn.Module, batch: dict) -> torch.Tensor:
            logits, out_lengths = model(batch["x"], batch["lengths"])
            return ctc_loss(logits, out_lengths, batch["targets"], batch["target_lengths"])

        return loss

    def eval_fn(self, cfg: Config):
        def evaluate(model: nn.Module, loader) -> dict[str, float]:
            """Dev CTC loss and greedy CER (normalised text)."""
            total, count, refs, hyps = 0.0, 0, [], []
            labels = None
            for batch in loader:
                logits, out_lengths = model(batch["x"], batch["lengths"])
                n = len(batch["ref"])
                total += (
                    ctc_loss(logits, out_lengths, batch["targets"], batch["target_lengths"]).item()
                    * n
                )
                count += n
                labels = labels or self._labels_for(cfg)
                lp = logits.float().log_softmax(-1).cpu().numpy()
                for i in range(n):
                    hyps.append(ids_to_text(greedy(lp[i, : int(out_lengths[i])]), labels))
                refs += batch["ref"]
            return {"cer": error_rates(refs, hyps)["cer"], "loss": total / max(1, count)}

        return evaluate

    def _labels_for(self, cfg: Config) -> list[str]:
        return CharVocab.from_texts([r["transcript"] for r in self.utterances(cfg, "train")]).labels

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def posteriors(
        self, model: nn.Module, meta: dict[str, Any], waves: list[np.ndarray], batch: int = 16
    ) -> list[np.ndarray]:
        """Log-posteriors [T'_i, V] of each wave, batched by length, in input order."""
        front = self._front_end(meta)
        inputs = [front(w) for w in waves]
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out: list[np.ndarray] = [np.zeros((0, len(meta["labels"])), np.float32)] * len(inputs)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            x = pad_sequence([inputs[i] for i in idx], batch_first=True)
            lengths = torch.tensor([len(inputs[i]) for i in idx])
            logits, out_lengths = model(x, lengths)
            lp = logits.float().log_softmax(-1).numpy()
            for j, i in enumerate(idx):
                out[i] = lp[j, : int(out_lengths[j])]
        return out

    def decoders(self, meta: dict[str, Any]) -> dict[str, Callable[[np.ndarray], str]]:
        """Greedy, beam, and beam with the character LM, as the release configures them."""
        labels, opts = meta["labels"], meta["decode"]
        lm = CharNgramLM.from_dict(meta["lm"])
        return {
            "greedy": lambda lp: ids_to_text(greedy(lp), labels),
            "beam": lambda lp: beam_search(lp, labels, beam=opts["beam"]),
            "beam_lm": lambda lp: beam_search(
                lp, labels, beam=opts["beam"], lm=lm, alpha=opts["lm_alpha"], beta=opts["lm_beta"]
            ),
        }

    def frequent_words(self, cfg: Config, meta: dict[str, Any], texts: list[str]) -> list[str]:
        """The `keyword_count` most frequent words of `texts` with at least
        `keyword_min_chars` characters, all in the model's alphabet (ties: alphabetical)."""
        d = _d(cfg)
        known = set(meta["labels"][1:])
        counts = Counter(w for t in texts for w in normalise(t).split())
        words = [
            w
            for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if len(w) >= d.keyword_min_chars and set(w) <= known
        ]
        return words[: d.keyword_count]

    def _split_posteriors(self, cfg: Config, model: nn.Module, meta: dict[str, Any], split: str):
        rows = self.utterances(cfg, split, meta["language"])
        if split == "test" and _d(cfg).eval_limit:
            rows = rows[: _d(cfg).eval_limit]
        waves = [load_audio(self.raw_dir(cfg) / r["path"], meta["sample_rate"]) for r in rows]
        return rows, waves, self.posteriors(model, meta, waves)

    def _spot_all(self, meta, lps, waves, keywords, threshold):
        rate = meta["sample_rate"]
        return [
            spot_keywords(lp, meta["labels"], keywords, len(w) / rate / max(1, len(lp)), threshold)
            for lp, w in zip(lps, waves, strict=True)
        ]

    @torch.no_grad()
    def fit_heads(self, cfg: Config, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """Choices made on dev, before any test audio is seen: the decoder (greedy, beam, beam
        + LM) with the lowest dev CER, and the keyword-spotting threshold that maximises F1 on
        dev for the dev transcripts' frequent words. Both travel with the weights."""
        rows, waves, lps = self._split_posteriors(cfg, model, meta, "dev")
        refs = [r["transcript"] for r in rows]
        decoders = self.decoders(meta)
        dev_cer = {
            name: round(error_rates(refs, [fn(lp) for lp in lps])["cer"], 6)
            for name, fn in decoders.items()
        }
        chosen = min(dev_cer, key=lambda k: (dev_cer[k], list(decoders).index(k)))
        words = self.frequent_words(cfg, meta, refs)
        threshold = (
            best_threshold(self._spot_all(meta, lps, waves, words, float("-inf")), refs, words)
            if words
            else DEFAULT_KEYWORD_THRESHOLD
        )
        if not np.isfinite(threshold):
            threshold = DEFAULT_KEYWORD_THRESHOLD
        log.info("dev CER by decoder %s -> %s; keyword threshold %.3f", dev_cer, chosen, threshold)
        return {
            "decoder": chosen,
            "dev_cer": dev_cer,
            "keyword_threshold": round(float(threshold), 4),
            "dev_keywords": words,
        }

    @torch.no_grad()
    def evaluate(
        self, cfg: Config, model: nn.Module, meta: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        d = _d(cfg)
        rate = meta["sample_rate"]
        test_rows, test_waves, test_lp = self._split_posteriors(cfg, model, meta, "test")
        test_refs = [r["transcript"] for r in test_rows]
        decoders = self.decoders(meta)
        chosen = meta["decoder"]
        test_scores, hyps = {}, {}
        for name, fn in decoders.items():
            hyps[name] = [fn(lp) for lp in test_lp]
            test_scores[name] = error_rates(test_refs, hyps[name])
            log.info("%s %s: test CER %.4f", meta["language"], name, test_scores[name]["cer"])

        # Keywords: the configured list, or the test transcripts' frequent words (queries
        # only: the threshold was fixed on dev).
        keywords = [normalise(k) for k in d.keywords.get(meta["language"], [])]
        keywords = keywords or self.frequent_words(cfg, meta, test_refs)
        threshold = meta["keyword_threshold"]
        kw: dict[str, Any] = {"keywords": keywords, "threshold": threshold}
        if keywords:
            spots = self._spot_all(meta, test_lp, test_waves, keywords, threshold)
            kw["metrics"] = keyword_metrics(spots, test_refs, keywords)
        write_json(out_dir / "keywords.json", kw)

        lm = CharNgramLM.from_dict(meta["lm"])
        rows_out = []
        for r, w, h, g in zip(test_rows, test_waves, hyps[chosen], hyps["greedy"], strict=True):
            rows_out.append(
                {
                    "id": r["id"],
                    "path": r["path"],
                    "duration_s": f"{len(w) / rate:.2f}",
                    "reference": r["transcript"],
                    "hypothesis": h,
                    "greedy": g,
                    "cer": f"{utterance_cer(r['transcript'], h):.4f}",
                }
            )
        _write_csv(out_dir / "predictions.csv", rows_out)
        _write_csv(
            out_dir / "cer_by_utterance.csv",
            [{"id": r["id"], "duration_s": r["duration_s"], "cer": r["cer"]} for r in rows_out],
        )
        summary = json.loads((self.processed_dir(cfg) / SUMMARY).read_text(encoding="utf-8"))
        lang = meta["language"]
        metrics: dict[str, Any] = {
            **test_scores[chosen],
            "decoder": chosen,
            "decoders": test_scores,
            "dev_cer": meta["dev_cer"],
            "keywords": {
                **kw.get("metrics", {}).get("_micro", {}),
                "threshold": threshold,
                "threshold_from": "dev" if meta.get("dev_keywords") else "default",
            },
            "language": f"{lang} ({LANGUAGE_NAMES.get(lang, lang)})",
            "lm_perplexity": {
                "test": round(lm.perplexity([normalise(t) for t in test_refs]), 3),
            },
            "oov_characters": dict(CharVocab(meta["labels"][1:]).unknown(test_refs)),
            "hours": summary["hours"].get(lang, {}),
            "speakers": summary["speakers"].get(lang, {}),
            "eval_limit": d.eval_limit,
            "limit_per_split": d.limit_per_class,  # smoke runs: utterances kept per split
            "n": len(test_rows),
        }
        # Timings vary run to run: speed.json and the card, never metrics.json.
        self._speed = self.real_time_factor(model, meta, test_waves[:20], decoders[chosen])
        write_json(out_dir / "speed.json", self._speed)
        return metrics

    def real_time_factor(
        self, model: nn.Module, meta: dict[str, Any], waves: list[np.ndarray], decode
    ) -> dict[str, Any]:
        """Seconds of compute per second of audio on one CPU thread (features + network +
        decoder), one utterance at a time, over real test utterances."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            for w in waves:
                decode(self.posteriors(model, meta, [w])[0])
            seconds = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        audio = sum(len(w) for w in waves) / meta["sample_rate"]
        return {
            "real_time_factor_1thread": round(seconds / audio, 4) if audio else None,
            "audio_seconds": round(audio, 1),
            "utterances": len(waves),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
        }

    def card_sections(self, metrics: dict[str, Any]) -> str:
        lines = [
            "## Data",
            "",
            f"Language: {metrics.get('language', '')} (ISO 639-3). Hausa: Mozilla Common Voice "
            "clips selected by AfricanVoices, CC0-1.0; Yoruba: Ogun's Yoruba speech corpus, MIT.",
            "",
            "| split | hours | speakers |",
            "|---|---|---|",
        ]
        for split, hours in metrics.get("hours", {}).items():
            speakers = metrics.get("speakers", {}).get(split, [])
            lines.append(f"| {split} | {hours} | {len(speakers)} ({', '.join(speakers)}) |")
        lines += [
            "",
            "One or two speakers per language: these error rates describe these voices and "
            "this recording set-up, not the accuracy to expect on the population.",
            "",
            "## Error rates by decoder (test split)",
            "",
        ]
        lines.append("| decoder | CER | WER | CER, no tones | WER, no tones | dev CER |")
        lines.append("|---|---|---|---|---|---|")
        for name, s in metrics.get("decoders", {}).items():
            mark = " (chosen on dev)" if name == metrics.get("decoder") else ""
            lines.append(
                f"| {name}{mark} | {s['cer']:.3f} | {s['wer']:.3f} | {s['cer_no_tones']:.3f} "
                f"| {s['wer_no_tones']:.3f} | {metrics['dev_cer'][name]:.3f} |"
            )
        k = metrics.get("keywords") or {}
        if "tp" in k:
            chosen = (
                "chosen on dev"
                if k.get("threshold_from") == "dev"
                else "the default: dev gave no keyword to tune it on"
            )
            lines += [
                "",
                "## Keyword spotting (test split)",
                "",
                f"Precision {_fmt(k.get('precision'))}, recall {_fmt(k.get('recall'))} over "
                f"the keyword list in keywords.json (threshold {k['threshold']}, {chosen}).",
            ]
        speed = getattr(self, "_speed", None)
        if speed:
            lines += [
                "",
                "## Speed",
                "",
                f"Real-time factor on one CPU thread: {speed['real_time_factor_1thread']} "
                f"({speed['utterances']} test utterances, {speed['machine']}).",
            ]
        return "\n".join(lines) + "\n"

    # -- prediction -------------------------------------------------------------------------
    def predict(
        self,
        model: nn.Module,
        meta: dict[str, Any],
        inputs: list[str],
        keywords: list[str] | None = None,
        threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Per file: the transcript, timed segments (long files are cut at pauses into pieces
        of at most `chunk_seconds`), audio warnings, and the keywords found, if asked."""
        rate = meta["sample_rate"]
        decode = self.decoders(meta)[meta.get("decoder", "beam_lm")]
        if threshold is None:
            threshold = meta.get("keyword_threshold", DEFAULT_KEYWORD_THRESHOLD)
        words = [normalise(k) for k in keywords or []]
        unknown = sorted({c for w in words for c in w if c not in meta["labels"][1:] and c != " "})
        if unknown:
            raise DataError(
                f"--keywords: characters {''.join(unknown)!r} are not in this model's alphabet"
            )
        results = []
        for item in read_many(inputs, rate):
            if "error" in item:
                results.append({"input": item["path"], "error": item["error"]})
                continue
            segments, found = [], []
            pieces = split_at_pauses(item["wave"], rate, meta["decode"]["chunk_seconds"])
            for group in range(0, len(pieces), 16):  # bounded memory for hours of audio
                batch = pieces[group : group + 16]
                for (start, end, samples), lp in zip(
                    batch, self.posteriors(model, meta, [p[2] for p in batch]), strict=True
                ):
                    text = decode(lp) if len(lp) else ""
                    segments.append({"start": round(start, 2), "end": round(end, 2), "text": text})
                    if not (words and len(lp)):
                        continue
                    frame = len(samples) / rate / len(lp)
                    for hit in spot_keywords(lp, meta["labels"], words, frame, threshold):
                        if hit["detected"]:
                            found.append(
                                {
                                    **hit,
                                    "start_s": round(start + hit["start_s"], 2),
                                    "end_s": round(start + hit["end_s"], 2),
                                }
                            )
            results.append(
                {
                    "input": item["path"],
                    "transcript": " ".join(s["text"] for s in segments if s["text"]),
                    "segments": segments,
                    "seconds": round(len(item["wave"]) / rate, 2),
                    "flags": item["flags"],
                    "keywords": found,
                }
            )
        return results

    def describe(self, result: dict[str, Any]) -> str:
        line = f"{result['input']}\t{result['transcript']}"
        if result["flags"]:
            line += f"\t[{', '.join(result['flags'])}]"
        for k in result.get("keywords", []):
            line += f"\n  keyword {k['keyword']!r} at {k['start_s']:.2f}-{k['end_s']:.2f} s (score {k['score']:.2f})"
        return line


def _alignable(example: dict) -> bool:
    t = example["targets"]
    need = len(t) + sum(a == b for a, b in zip(t, t[1:], strict=False))
    frames = int(features.subsampled(torch.tensor(len(example["x"]))))  # the two stride-2 convs
    return frames >= need


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    write_text(path, buf.getvalue())


def collate_utterances(examples: list[dict]) -> dict[str, Any]:
    """Zero-padded inputs and their lengths, concatenated CTC targets and their lengths; the
    references and ids pass through as lists."""
    targets = [torch.tensor(e["targets"], dtype=torch.long) for e in examples]
    return {
        "x": pad_sequence([e["x"] for e in examples], batch_first=True),
        "lengths": torch.tensor([len(e["x"]) for e in examples], dtype=torch.long),
        "targets": torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        "ref": [e["ref"] for e in examples],
        "id": [e["id"] for e in examples],
    }


def ctc_loss(
    logits: torch.Tensor,
    out_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
) -> torch.Tensor:
    """CTC loss (blank 0, mean over the batch of per-character losses) in float32; an
    impossible alignment (more characters than frames) counts zero instead of infinity."""
    lp = logits.float().log_softmax(-1).transpose(0, 1)
    return F.ctc_loss(
        lp, targets, out_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True
    )
