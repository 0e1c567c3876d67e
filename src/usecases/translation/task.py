"""Local-language <-> French/English translation: the use-case plug-in.

One multilingual Transformer for every trained pair and both directions; the target language
is a tag at the head of the source (`<2fon> Bonjour`). `prepare` reads the published corpora,
cleans the training text and trains the shared SentencePiece vocabulary; `evaluate` scores the
published MAFAND-MT test and FLORES-200 devtest sets with sacrebleu, beside two baselines that
need no model (copy the source; word-for-word glossary).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import statistics
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from usecases.core.config import Config, DataConfig
from usecases.core.data import MANIFEST, QUARANTINE, SUMMARY, DataError, Rejected, write_quarantine
from usecases.core.io import sha256_bytes, write_json, write_text
from usecases.core.registry import create_model, register_usecase
from usecases.core.task import UseCase
from usecases.translation import corpus, scoring
from usecases.translation import models as _models  # noqa: F401  (registers the models)
from usecases.translation.batching import IGNORE, TokenBatchSampler, collate
from usecases.translation.corpus import LANGUAGES, Pair, parse_direction, read_pairs
from usecases.translation.decode import (
    DecodeOptions,
    Translator,
    generate,
    has_lexicon,
    translate_all,
    worker_count,
)
from usecases.translation.glossary import Glossary
from usecases.translation.lexicon import copy_flags, lexicon_tables
from usecases.translation.models import (
    ATTENTION,
    Diagonal,
    LexicalPriorMixin,
    init_embeddings_from_pairs,
)
from usecases.translation.vocab import Codec, HFCodec, Vocab, pack_ids, train_spm, unpack_ids

log = logging.getLogger(__name__)

SPM_FILE = "spm.model"
HF_MODEL = "hf_seq2seq"


@dataclass
class MTDataConfig(DataConfig):
    mafand_pairs: list[str] = field(default_factory=list)
    nllb_seed_langs: list[str] = field(default_factory=list)
    zero_shot: list[str] = field(default_factory=list)
    vocab_size: int = 8000
    max_tokens: int = 128
    max_length_ratio: float = 3.0
    tokens_per_batch: int = 6000
    batches_per_epoch: int = 0  # 0 = one pass over the training pairs per epoch
    # Competence curriculum: the first `curriculum_batches` batches draw from the shortest pairs
    # only, from the shortest `curriculum_start` share up to all of them (0 = off).
    curriculum_batches: int = 0
    curriculum_start: float = 0.2
    # Each pass over the training examples draws direction g's share in proportion to
    # n_g ** (1 / sampling_temperature) (1 = as the corpora come; larger gives the small
    # directions more of each pass and the large ones less).
    sampling_temperature: float = 1.0
    val_sentences: int = 40
    eval_limit: int | None = None
    beams: int = 1
    no_repeat_ngram: int = 3
    repetition_penalty: float = 1.2
    min_length: float = 0.0  # see DecodeOptions.min_length
    # Greedy decoding copies the source's names and numbers whole, each from its place on the
    # diagonal: the logit bonus of decode.CopyPlan (0 = off). Needs the copy prior's flags.
    copy_bonus: float = 0.0
    # Greedy decoding takes this share of the lexical prior's bag from the source subwords near
    # each step's place on the diagonal, a Gaussian `diagonal_width` subwords wide
    # (decode.LexicalDiagonal; 0 = off). Needs the lexical prior.
    lexical_diagonal: float = 0.0
    diagonal_width: float = 0.6
    # Train with the lexical prior on the diagonal too, as greedy decoding applies it (the
    # share and width above; models.LexicalPriorMixin.diagonal_change), so that the model and
    # the prior's learnt weight learn with the prior they decode with.
    diagonal_training: bool = False
    decoder_start: str = "tag"  # the decoder's first input: "tag" (the target's tag) or "pad"
    # Train on FLORES-200 dev too (every trained pair, never a zero-shot one), except its first
    # `flores_dev_heldout` sentences, which stay out for model selection. Devtest never trains.
    train_on_flores_dev: bool = False
    flores_dev_heldout: int = 200
    # Target word dropout: while training, each decoder input token after the start token is
    # replaced by the pad token (a zero embedding) with this probability, so the decoder cannot
    # predict from the target prefix alone and must read the source (0 = off).
    decoder_dropout: float = 0.0
    # The shared embeddings' starting values: "random" (the model's own initialisation) or
    # "cooccurrence" (cross-language LSA of the training pairs: a subword and its translation
    # start close together; see models.cooccurrence_embeddings).
    embedding_init: str = "random"
    # A lexical translation prior on the logits (pre-layer-norm models, `pre_*`): one IBM Model 1
    # table per target language, learnt from the training pairs before the first update, gives
    # each source the bag of target subwords its translation should hold (translation/lexicon.py).
    # lexicon_k: target subwords kept per source subword; lexicon_iterations: EM rounds.
    lexical_prior: bool = False
    lexicon_k: int = 16
    lexicon_iterations: int = 5
    # With the prior, a second term with its own learnt weight that offers the source's names
    # and numbers as they are (lexicon.copy_bias).
    copy_prior: bool = False
    # With the prior, a copy pointer: one attention head over the source's names and numbers
    # that offers each position of the translation the subword it points at
    # (models.LexicalPriorMixin.pointer_bias).
    copy_pointer: bool = False
    # The attention kernel of the models trained from scratch: "math" (torch's reference
    # scaled-dot-product attention), "sdpa" (its fused kernel: flash on a CPU) or "eager"
    # (transformers' matmul-softmax); see models.ATTENTION.
    attention: str = "sdpa"
    # Processes that share the test sets when scoring, one thread each (0 = one per thread
    # torch uses, for 2,000 sentences or more). Each test set decodes whole in the same batches.
    eval_workers: int = 0


def read_summary_labels(processed: Path) -> list[str]:
    return json.loads((processed / SUMMARY).read_text(encoding="utf-8"))["labels"]


def _d(cfg: Config) -> MTDataConfig:
    return cfg.data  # type: ignore[return-value]


def batch_diagonal(batch: dict[str, Any], lean: tuple[float, float] | None) -> Diagonal | None:
    """The lexical prior on the diagonal for a training batch (`models.Diagonal`: each
    sentence's expected target/source token ratio, the share, the width), or None for
    `lean` None (`data.diagonal_training` off: (share, width) when on)."""
    if lean is None:
        return None
    ratios = torch.tensor(batch["ratio"], dtype=torch.float64, device=batch["input_ids"].device)
    return ratios, *lean


def labelled_logits(
    model: nn.Module,
    batch: dict[str, Any],
    dec: torch.Tensor,
    lean: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for the loss, [N, V] and [N] (labels may hold IGNORE): only the
    labelled positions' for a model with the priors (`LexicalPriorMixin.labelled_logits`; with
    `lean`, (share, width), the lexical prior on the diagonal), every position's through
    `forward` for the others (and under a DDP or compile wrapper, whose forward must run)."""
    if isinstance(model, LexicalPriorMixin) and not model.copy_pointer:
        return model.labelled_logits(
            batch["input_ids"],
            batch["attention_mask"],
            dec,
            batch["labels"],
            batch_diagonal(batch, lean),
        )
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec
    ).logits
    return logits.flatten(0, 1).float(), batch["labels"].flatten()


def labelled_loss(
    model: nn.Module,
    batch: dict[str, Any],
    dec: torch.Tensor,
    smoothing: float,
    lean: tuple[float, float] | None = None,
) -> torch.Tensor:
    """The training loss: mean label-smoothed cross entropy over the labelled target positions,
    through `LexicalPriorMixin.labelled_loss` (output layer and loss in chunks) for a model with
    the priors (`lean` as in `labelled_logits`), else from `labelled_logits`."""
    if isinstance(model, LexicalPriorMixin) and not model.copy_pointer:
        return model.labelled_loss(
            batch["input_ids"],
            batch["attention_mask"],
            dec,
            batch["labels"],
            smoothing,
            batch_diagonal(batch, lean),
        )
    logits, labels = labelled_logits(model, batch, dec)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE, label_smoothing=smoothing)


def drop_target_words(dec: torch.Tensor, p: float, pad_id: int) -> torch.Tensor:
    """Decoder inputs with each token after the first (the start token) replaced by `pad_id`
    with probability `p` (padding stays padding); draws from torch's seeded global generator."""
    drop = torch.rand(dec.shape, device=dec.device) < p
    drop[:, 0] = False
    return dec.masked_fill(drop & (dec != pad_id), pad_id)


def trained_directions(pairs: list[Pair]) -> list[tuple[str, str]]:
    both = {(p.src_lang, p.tgt_lang) for p in pairs if p.split == "train"}
    return sorted(both | {(b, a) for a, b in both})


def direction_statistics(
    vocab: Codec, pairs: list[Pair]
) -> tuple[dict[str, float], dict[str, list[int]]]:
    """From one encoding of the training pairs: the median target/source token ratio of each
    trained direction, and each language's output vocabulary (the subword ids its training
    text holds, sorted: `decode.Translator` writes a language with those, the source's own
    subwords and the end token)."""
    ratios: dict[str, list[float]] = defaultdict(list)
    seen: dict[str, set[int]] = defaultdict(set)
    train = [p for p in pairs if p.split == "train"]
    src = vocab.encode_target([p.src for p in train])
    tgt = vocab.encode_target([p.tgt for p in train])
    for p, a, b in zip(train, src, tgt, strict=True):
        ratios[f"{p.src_lang}-{p.tgt_lang}"].append(len(b) / len(a))
        ratios[f"{p.tgt_lang}-{p.src_lang}"].append(len(a) / len(b))
        seen[p.src_lang].update(a)
        seen[p.tgt_lang].update(b)
    medians = {k: round(statistics.median(v), 3) for k, v in sorted(ratios.items())}
    return medians, {lang: sorted(ids) for lang, ids in sorted(seen.items())}


def oriented(pairs: list[Pair], src: str, tgt: str) -> list[tuple[str, str, int]]:
    """(source, reference, line) of `pairs` read in the direction src -> tgt."""
    out = []
    for p in pairs:
        if (p.src_lang, p.tgt_lang) == (src, tgt):
            out.append((p.src, p.tgt, p.line))
        elif (p.src_lang, p.tgt_lang) == (tgt, src):
            out.append((p.tgt, p.src, p.line))
    return out


@register_usecase("translation")
class Translation(UseCase):
    data_config = MTDataConfig
    task = "translation"
    intended_use = (
        "Research baseline for translating between French/English and West African languages "
        "(Fon, Ewe, Wolof, Bambara, Yoruba, Hausa; Fulfulde, Kanuri and Tamasheq through "
        "English), e.g. to make public-service text readable to people who do not read French. "
        "Every output must be checked by a speaker of the language before any official use."
    )
    limitations = (
        "Trained from scratch on a few thousand news sentences per language (MAFAND-MT) and "
        "6k Wikipedia sentences (NLLB-Seed): expect wrong, incomplete or invented content, "
        "especially on long sentences, rare words, names and numbers, and in the zero-shot "
        "directions (French <-> Fulfulde/Kanuri/Tamasheq, never seen together in training). "
        "Tone marks and special letters (Ɖ, Ɛ, Ɔ, ẹ, ọ, ṣ, ɓ, ɗ, ƙ) are often dropped or misplaced. "
        "MAFAND-MT is CC BY-NC 4.0: this model is for non-commercial use only."
    )

    # -- data -------------------------------------------------------------------------------
    def prepare(self, cfg: Config) -> dict[str, Any]:
        """Published pairs -> manifest.csv (training text NFC + cleaned, quarantined pairs with
        a reason, FLORES devtest sentences removed from training) and the SentencePiece model."""
        d = _d(cfg)
        raw, out = self.raw_dir(cfg), self.processed_dir(cfg)
        zero = [parse_direction(x, "data.zero_shot") for x in d.zero_shot]
        prepared = corpus.build(
            raw,
            d.mafand_pairs,
            d.nllb_seed_langs,
            d.max_length_ratio,
            zero,
            flores_dev_from=self._flores_dev_from(d),
        )
        pairs = prepared.pairs
        if d.limit_per_class:
            seen: Counter[tuple] = Counter()
            kept = []
            for p in pairs:
                key = (p.corpus, p.split, p.src_lang, p.tgt_lang)
                if seen[key] < d.limit_per_class:
                    seen[key] += 1
                    kept.append(p)
            pairs = kept
        train = [p for p in pairs if p.split == "train"]
        if not train:
            raise DataError(f"{raw}: no training pairs left after cleaning and quarantine")
        languages = sorted({x for p in pairs for x in (p.src_lang, p.tgt_lang)})
        sentences = list(dict.fromkeys(s for p in train for s in (p.src, p.tgt)))
        t0 = time.perf_counter()
        train_spm(sentences, languages, d.vocab_size, out / SPM_FILE)
        # Logged, not written to the summary: a timing would change the stage's output hash on
        # every run, and `prepare` must give the same bytes for the same inputs.
        log.info("SentencePiece model: %.1f s", time.perf_counter() - t0)
        vocab = Vocab(out / SPM_FILE)
        corpus.write_pairs(out / MANIFEST, pairs)
        write_quarantine(
            out / QUARANTINE, [Rejected(q["path"], q["reason"]) for q in prepared.quarantined]
        )
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for (c, s, a, b), n in sorted(
            Counter((p.corpus, p.split, p.src_lang, p.tgt_lang) for p in pairs).items()
        ):
            counts[f"{c}/{s}"][f"{a}-{b}"] = n
        summary = {
            "labels": languages,
            "counts": dict(counts),
            "directions": [f"{a}-{b}" for a, b in trained_directions(pairs)],
            "cleaning": prepared.stats,
            "quarantined": len(prepared.quarantined),
            "vocab_size": len(vocab),
            "spm_sha256": sha256_bytes(vocab.proto),
            "spm_sentences": len(sentences),
        }
        write_json(out / SUMMARY, summary)
        return summary

    @staticmethod
    def _flores_dev_from(d: MTDataConfig) -> int | None:
        """The FLORES-200 dev line after which sentences train, or None (dev does not train)."""
        if not d.train_on_flores_dev:
            return None
        if d.flores_dev_heldout < d.val_sentences:
            raise DataError(
                f"data.flores_dev_heldout={d.flores_dev_heldout} is below "
                f"data.val_sentences={d.val_sentences}: model selection would read FLORES-200 "
                "dev sentences that the model trains on"
            )
        return d.flores_dev_heldout

    def pairs(self, cfg: Config) -> list[Pair]:
        return read_pairs(self.processed_dir(cfg) / MANIFEST)

    # -- model ------------------------------------------------------------------------------
    def model_meta(self, cfg: Config, labels: list[str]) -> dict[str, Any]:
        d = _d(cfg)
        pairs = self.pairs(cfg)
        if cfg.model.name == HF_MODEL:
            # A pretrained checkpoint keeps its tokenizer: the release names the checkpoint.
            codec = {"hf_checkpoint": cfg.model.weights, "vocab_size": self._hf_vocab(cfg, labels)}
        else:
            proto = (self.processed_dir(cfg) / SPM_FILE).read_bytes()
            # The SentencePiece model travels inside the weights file's metadata.
            codec = {
                "spm_model": base64.b64encode(proto).decode("ascii"),
                "vocab_size": d.vocab_size,
                "decoder_start": d.decoder_start,
            }
        ratios, target_vocab = direction_statistics(self._codec(cfg, labels), pairs)
        copy_bonus, diagonal = d.copy_bonus, d.lexical_diagonal
        if cfg.model.name == HF_MODEL:
            target_vocab = {}  # a pretrained model knows subwords this corpus never holds
            copy_bonus = 0.0  # nor has it the copy prior's flags that CopyPlan reads
            diagonal = 0.0  # or the lexical prior's tables
        return {
            "arch": cfg.model.name,
            "labels": labels,
            "languages": labels,
            "directions": [f"{a}-{b}" for a, b in trained_directions(pairs)],
            "max_tokens": d.max_tokens,
            **codec,
            "length_ratios": ratios,
            "target_vocab": {k: pack_ids(v, codec["vocab_size"]) for k, v in target_vocab.items()},
            "decode": {
                "beams": d.beams,
                "no_repeat_ngram": d.no_repeat_ngram,
                "repetition_penalty": d.repetition_penalty,
                "min_length": d.min_length,
                "copy_bonus": copy_bonus,
                "lexical_diagonal": diagonal,
                "diagonal_width": d.diagonal_width,
                "batch_size": d.eval_batch_size,
            },
            "dataset": d.dataset_name,
            "licence": d.licence,
        }

    @staticmethod
    def _hf_vocab(cfg: Config, labels: list[str]) -> int:
        return len(HFCodec(str(cfg.model.weights), labels))

    def build_model(
        self, cfg: Config, labels: list[str], pretrained: bool | None = None
    ) -> nn.Module:
        if cfg.model.name == HF_MODEL:
            return create_model(
                HF_MODEL,
                pretrained=cfg.model.pretrained if pretrained is None else pretrained,
                weights=cfg.model.weights,
                vocab_size=self._hf_vocab(cfg, labels),
            )
        d = _d(cfg)
        for name in ("copy_prior", "copy_pointer"):
            if getattr(d, name) and not d.lexical_prior:
                raise DataError(f"data.{name}=true needs data.lexical_prior=true")
        if d.copy_bonus < 0:
            raise DataError(f"data.copy_bonus={d.copy_bonus}: expected 0 (off) or more")
        if d.copy_bonus and not (d.copy_prior or d.copy_pointer):
            raise DataError(
                f"data.copy_bonus={d.copy_bonus} needs data.copy_prior=true or "
                "data.copy_pointer=true: their flags mark the names and numbers to copy"
            )
        if not 0 <= d.lexical_diagonal <= 1:
            raise DataError(
                f"data.lexical_diagonal={d.lexical_diagonal}: expected a share from 0 (off) to 1"
            )
        if d.lexical_diagonal and not d.lexical_prior:
            raise DataError(
                f"data.lexical_diagonal={d.lexical_diagonal} needs data.lexical_prior=true: it "
                "places that prior's tables on the diagonal"
            )
        if d.diagonal_training and not (d.lexical_diagonal and d.lexical_prior):
            raise DataError(
                "data.diagonal_training=true needs data.lexical_prior=true and a "
                f"data.lexical_diagonal above 0 (it is {d.lexical_diagonal}): it trains with "
                "the prior on the diagonal that greedy decoding applies"
            )
        if d.diagonal_training and d.copy_pointer:
            raise DataError(
                "data.diagonal_training=true with data.copy_pointer=true: the copy pointer "
                "trains through the model's forward, which keeps the prior's bag"
            )
        if d.diagonal_width <= 0:
            raise DataError(
                f"data.diagonal_width={d.diagonal_width}: expected a width above 0 (subwords)"
            )
        if d.attention not in ATTENTION:
            raise DataError(
                f"data.attention={d.attention!r}: expected one of {', '.join(map(repr, ATTENTION))}"
            )
        shape = dict(vocab_size=d.vocab_size, dropout=cfg.model.dropout, attention=d.attention)
        if not d.lexical_prior:
            return create_model(cfg.model.name, **shape)
        if not cfg.model.name.startswith("pre_"):
            raise DataError(
                f"data.lexical_prior=true needs a pre-layer-norm model (pre_nano, pre_tiny, "
                f"pre_deep_shallow, pre_nano_ds); model {cfg.model.name!r} has no lexical prior"
            )
        return create_model(
            cfg.model.name,
            **shape,
            lexical_prior=True,
            copy_prior=d.copy_prior,
            copy_pointer=d.copy_pointer,
        )

    def init_from_data(self, cfg: Config, model: nn.Module, train) -> dict[str, Any]:
        d = _d(cfg)
        init = d.embedding_init
        if init not in ("random", "cooccurrence"):
            raise DataError(f"data.embedding_init={init!r}: expected 'random' or 'cooccurrence'")
        facts: dict[str, Any] = {}
        if init == "cooccurrence" and cfg.model.name != HF_MODEL:
            # Each pair's subwords, both sides, without the target tag and the end token.
            docs = [e["src_ids"][1:-1] + e["tgt_ids"][:-1] for e in train]
            rows = init_embeddings_from_pairs(model, docs, cfg.seed)
            facts.update(embedding_init=init, rows=rows, pairs=len(docs))
        if isinstance(model, LexicalPriorMixin):
            for name in ("lexicon_k", "lexicon_iterations"):
                if getattr(d, name) < 1:
                    raise DataError(f"data.{name}={getattr(d, name)}: expected 1 or more")
            t0 = time.perf_counter()
            # (target tag, source subwords without tag and end token, target with end token)
            examples = [(e["src_ids"][0], e["src_ids"][1:-1], e["tgt_ids"]) for e in train]
            vocab_size = model.get_input_embeddings().num_embeddings
            tags, idx, prob = lexicon_tables(
                examples, vocab_size, d.lexicon_k, d.lexicon_iterations
            )
            model.set_lexicon(tags, idx, prob)
            if model.copy_prior or model.copy_pointer:
                vocab = Vocab(self.processed_dir(cfg) / SPM_FILE)
                pieces = [vocab.sp.id_to_piece(i) for i in range(len(vocab))]
                # The model's rows past the vocabulary's pieces (data.vocab_size can exceed
                # what SentencePiece makes of a small corpus) have nothing to copy.
                model.copy_flags[: len(pieces)] = copy_flags(pieces).to(model.copy_flags.device)
            facts.update(
                lexicon_languages=len(tags),
                lexicon_seconds=round(time.perf_counter() - t0, 1),
            )
        return facts

    @staticmethod
    def translator(model: nn.Module, meta: dict[str, Any]) -> Translator:
        # Releases older than the per-language output vocabularies have none: every subword.
        target_vocab = {k: unpack_ids(v) for k, v in meta.get("target_vocab", {}).items()}
        return Translator(
            model, Translation.vocab(meta), meta.get("length_ratios", {}), target_vocab
        )

    @staticmethod
    def vocab(meta: dict[str, Any]) -> Codec:
        if "spm_model" in meta:
            # Releases older than the `decoder_start` option started the decoder with pad.
            return Vocab(base64.b64decode(meta["spm_model"]), meta.get("decoder_start", "pad"))
        return HFCodec(meta["hf_checkpoint"], meta["languages"])

    def _codec(self, cfg: Config, languages: list[str]) -> Codec:
        if cfg.model.name == HF_MODEL:
            return HFCodec(str(cfg.model.weights), languages)
        return Vocab(self.processed_dir(cfg) / SPM_FILE, _d(cfg).decoder_start)

    # -- training ---------------------------------------------------------------------------
    def _examples(
        self, vocab: Codec, rows: list[tuple[str, str, str, str]], max_tokens: int | None
    ):
        """rows of (src_lang, tgt_lang, src, tgt) -> encoded examples."""
        by_tgt: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_tgt[r[1]].append(i)
        out: list[dict] = [{} for _ in rows]
        for tgt, idx in by_tgt.items():
            src_ids = vocab.encode_source([rows[i][2] for i in idx], tgt, max_tokens)
            tgt_ids = vocab.encode_target([rows[i][3] for i in idx], max_tokens)
            start = vocab.start_for(tgt)
            for i, s, t in zip(idx, src_ids, tgt_ids, strict=True):
                out[i] = {
                    "src_ids": s,
                    "tgt_ids": t,
                    "start_id": start,
                    "ref": rows[i][3],
                    "tgt_lang": tgt,
                    "direction": f"{rows[i][0]}-{tgt}",
                }
        return out

    def datasets(self, cfg: Config, meta: dict[str, Any]):
        d = _d(cfg)
        vocab = self.vocab(meta)
        pairs = self.pairs(cfg)
        train_rows = []
        for p in pairs:
            if p.split == "train":
                train_rows.append((p.src_lang, p.tgt_lang, p.src, p.tgt))
                train_rows.append((p.tgt_lang, p.src_lang, p.tgt, p.src))
        val_rows = []
        for src, tgt in trained_directions(pairs):
            dev = [p for p in pairs if p.split == "dev" and p.corpus != "flores"]
            rows = oriented(dev, src, tgt) or oriented(
                [p for p in pairs if p.split == "dev" and p.corpus == "flores"], src, tgt
            )
            val_rows += [
                (src, tgt, corpus.nfc(s), corpus.nfc(r)) for s, r, _ in rows[: d.val_sentences]
            ]
        return (
            self._examples(vocab, train_rows, d.max_tokens),
            self._examples(vocab, val_rows, None),
        )

    def build_loaders(self, cfg: Config, meta: dict[str, Any]):
        d = _d(cfg)
        if cfg.trainer.strategy != "single":
            raise DataError(
                "translation batches by tokens in one process; use trainer.strategy=single"
            )
        if not d.sampling_temperature > 0:
            raise DataError(
                f"data.sampling_temperature={d.sampling_temperature}: expected a number above 0 "
                "(1 = each direction's share as the corpora come)"
            )
        train, val = self.datasets(cfg, meta)
        # Each direction's expected target/source token ratio, for the lexical prior on the
        # diagonal in training (`data.diagonal_training`), as `decode.Translator` decodes it.
        ratios = meta.get("length_ratios", {})
        for e in (*train, *val):
            e["ratio"] = ratios.get(e["direction"], 1.0)
        sampler = TokenBatchSampler(
            [(len(e["src_ids"]), len(e["tgt_ids"])) for e in train],
            d.tokens_per_batch,
            cfg.seed,
            d.batches_per_epoch,
            d.curriculum_batches,
            d.curriculum_start,
            groups=[e["direction"] for e in train],
            temperature=d.sampling_temperature,
        )
        codec = self.vocab(meta)
        pads = partial(collate, pad_id=codec.pad_id, start_id=codec.start_id)
        loader = DataLoader(train, batch_sampler=sampler, collate_fn=pads, num_workers=0)
        # Validation sentences in length order: batches of similar lengths, so that the dev
        # loss and the greedy decoding do not run on padding to the longest of 64 random
        # sentences (the loss is a sum over tokens and chrF++ a corpus score: order-free).
        val = sorted(val, key=lambda e: (len(e["src_ids"]), len(e["tgt_ids"])))
        val_loader = DataLoader(val, batch_size=d.eval_batch_size, collate_fn=pads)
        return loader, val_loader

    @staticmethod
    def _lean(cfg: Config) -> tuple[float, float] | None:
        """(share, width) of the lexical prior on the diagonal in training, or None."""
        d = _d(cfg)
        return (d.lexical_diagonal, d.diagonal_width) if d.diagonal_training else None

    def loss_fn(self, cfg: Config):
        smoothing = cfg.optim.label_smoothing
        p = _d(cfg).decoder_dropout
        if not 0.0 <= p < 1.0:
            raise DataError(f"data.decoder_dropout={p}: expected a probability in [0, 1)")
        lean = self._lean(cfg)

        def loss(model: nn.Module, batch) -> torch.Tensor:
            dec = batch["decoder_input_ids"]
            if p > 0 and model.training:
                dec = drop_target_words(dec, p, model.config.pad_token_id)
            return labelled_loss(model, batch, dec, smoothing, lean)

        return loss

    def eval_fn(self, cfg: Config):
        d = _d(cfg)
        opts = DecodeOptions(
            beams=1,
            no_repeat_ngram=d.no_repeat_ngram,
            repetition_penalty=d.repetition_penalty,
            batch_size=d.eval_batch_size,
        )

        vocab = self._codec(cfg, read_summary_labels(self.processed_dir(cfg)))
        lean = self._lean(cfg)

        def evaluate(model: nn.Module, loader) -> dict[str, float]:
            """Validation loss (under the prior the model trains with), and chrF++ of greedy
            translations of the dev sentences."""
            from sacrebleu.metrics import CHRF

            total, count, refs, vocab_ids = 0.0, 0, [], []
            for batch in loader:
                logits, labels = labelled_logits(model, batch, batch["decoder_input_ids"], lean)
                n = (batch["labels"] != IGNORE).sum().item()
                total += F.cross_entropy(
                    logits, labels, ignore_index=IGNORE, reduction="sum"
                ).item()
                count += n
                sources = [
                    row[mask.bool()].tolist()
                    for row, mask in zip(
                        batch["input_ids"].cpu(), batch["attention_mask"].cpu(), strict=True
                    )
                ]
                # Decoded in float32, as the evaluate stage decodes: under bf16 autocast each
                # step would cast the weights again, which costs more than it saves here. The
                # batches mix target languages, so every subword may be written (the evaluate
                # stage restricts each test set to its language's: under 1 % of the
                # translations differ).
                with torch.autocast(batch["input_ids"].device.type, enabled=False):
                    vocab_ids += generate(model, sources, opts, vocab, starts=batch["starts"])
                refs += batch["ref"]
            hyps = vocab.decode(vocab_ids)
            chrf = CHRF(word_order=2).corpus_score(hyps, [refs]).score if hyps else 0.0
            return {"chrf": chrf, "loss": total / max(1, count)}

        return evaluate

    # -- evaluation -------------------------------------------------------------------------
    def test_sets(self, cfg: Config, meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Every scored (benchmark, direction): MAFAND-MT test for the MAFAND pairs, FLORES-200
        devtest for every trained direction and the zero-shot ones, references as published."""
        pairs = self.pairs(cfg)
        trained = {tuple(x.split("-")) for x in meta["directions"]}
        tests = []
        for bench, name in (("mafand", "MAFAND-MT test"), ("flores", "FLORES-200 devtest")):
            group = [p for p in pairs if p.corpus == bench and p.split == "test"]
            dirs = sorted({(p.src_lang, p.tgt_lang) for p in group})
            for a, b in dirs:
                for src, tgt in ((a, b), (b, a)):
                    rows = oriented(group, src, tgt)
                    if _d(cfg).eval_limit:
                        rows = rows[: _d(cfg).eval_limit]
                    tests.append(
                        {
                            "benchmark": bench,
                            "name": name,
                            "src": src,
                            "tgt": tgt,
                            "zero_shot": (src, tgt) not in trained,
                            "rows": rows,
                        }
                    )
        return tests

    @torch.no_grad()
    def evaluate(
        self, cfg: Config, model: nn.Module, meta: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        if _d(cfg).eval_workers < 0:
            raise DataError(
                f"data.eval_workers={_d(cfg).eval_workers}: expected 0 (one per core) or more"
            )
        translate = self.translator(model, meta)
        opts = DecodeOptions.from_meta(meta)
        train = [
            (p.src_lang, p.tgt_lang, p.src, p.tgt) for p in self.pairs(cfg) if p.split == "train"
        ]
        results: dict[str, Any] = {"mafand": {}, "flores": {}}
        rows_out = []
        t0 = time.perf_counter()
        sentences = 0
        tests = self.test_sets(cfg, meta)
        jobs = [([corpus.nfc(s) for s, _, _ in t["rows"]], t["src"], t["tgt"]) for t in tests]
        # The glossary baseline is fitted (~15 s of Python) while the workers translate.
        with ThreadPoolExecutor(1) as background:
            fitting = background.submit(Glossary.fit, train)
            translations = translate_all(translate, jobs, opts, _d(cfg).eval_workers)
            glossary = fitting.result()
        log.info("translated %d test sets in %.0f s", len(tests), time.perf_counter() - t0)
        scoring_jobs = []
        for t, hyps in zip(tests, translations, strict=True):
            srcs = [s for s, _, _ in t["rows"]]
            refs = [r for _, r, _ in t["rows"]]
            drafts = [glossary.translate(s, t["src"], t["tgt"]) for s in srcs]
            cleaned = None
            if t["benchmark"] == "mafand":
                cleaned = [
                    corpus.strip_line_number(corpus.clean_text(r), corpus.clean_text(s))
                    for s, r in zip(srcs, refs, strict=True)
                ]
                if cleaned == [" ".join(corpus.nfc(r).split()) for r in refs]:
                    cleaned = None
            scoring_jobs.append((hyps, srcs, refs, drafts, cleaned))
        workers = worker_count(_d(cfg).eval_workers, sum(len(h) for h in translations))
        scored = scoring.score_sets(scoring_jobs, workers)
        for t, hyps, (entry, chrfs) in zip(tests, translations, scored, strict=True):
            key = f"{t['src']}-{t['tgt']}"
            sentences += len(hyps)
            entry["zero_shot"] = t["zero_shot"]
            results[t["benchmark"]][key] = entry
            for (s, r, line), h, c in zip(t["rows"], hyps, chrfs, strict=True):
                rows_out.append([t["benchmark"], key, line, s, r, h, c])
            log.info(
                "%s %s: chrF++ %.2f, BLEU %.2f", t["name"], key, entry["chrf_pp"], entry["bleu"]
            )
        seconds = time.perf_counter() - t0
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            ["benchmark", "direction", "line", "source", "reference", "hypothesis", "chrf_pp"]
        )
        w.writerows(rows_out)
        write_text(out_dir / "predictions.csv", buf.getvalue())
        metrics = scoring.summarise(results)
        metrics["signatures"] = scoring.signatures()
        metrics["spbleu"] = scoring.spbleu_status()
        metrics["decoding"] = {
            "beams": opts.beams,
            "no_repeat_ngram": opts.no_repeat_ngram,
            "repetition_penalty": opts.repetition_penalty,
            "max_new_tokens": f"{opts.length_a} x source tokens + {opts.length_b}",
            "min_new_tokens": f"{opts.min_length} x source tokens x the direction's median "
            "target/source token ratio on the training pairs",
            "names_and_numbers": (
                f"copied whole and in order, each from its place on the diagonal (logit bonus "
                f"{opts.copy_bonus})"
                if opts.copy_bonus and opts.beams == 1 and hasattr(model, "copy_flags")
                else "left to the model"
            ),
            "lexical_prior": (
                f"{opts.lexical_diagonal} of its bag from the source subwords near each step's "
                f"place on the diagonal (Gaussian, {opts.diagonal_width} subwords wide)"
                if opts.lexical_diagonal and opts.beams == 1
                else "the same bag at every step"
            )
            if has_lexicon(model)
            else "none",
        }
        metrics["eval_limit"] = _d(cfg).eval_limit
        metrics["languages"] = [f"{x} ({LANGUAGES[x][0]})" for x in meta["languages"]]
        metrics["anchors"] = scoring.anchors(self.raw_dir(cfg))
        summary = json.loads((self.processed_dir(cfg) / SUMMARY).read_text(encoding="utf-8"))
        metrics["data"] = {
            "training_pairs": {k: v for k, v in summary["counts"].items() if k.endswith("/train")},
            "cleaning": summary["cleaning"],
            "quarantined": summary["quarantined"],
            "vocab_size": summary["vocab_size"],
        }
        if _d(cfg).train_on_flores_dev:
            metrics["data"]["flores_dev_heldout"] = _d(cfg).flores_dev_heldout
        metrics["n"] = sentences
        log.info("translated %d test sentences in %.0f s", sentences, seconds)
        write_text(out_dir / "chrf_by_direction.csv", scoring.direction_table(metrics))
        write_json(out_dir / "examples.json", scoring.examples(rows_out))
        # Decoding speed: timings vary run to run, so they go to speed.json, not metrics.json.
        self._speed = scoring.decode_speed(translate, self.test_sets(cfg, meta), opts)
        write_json(out_dir / "speed.json", self._speed)
        return metrics

    def card_sections(self, metrics: dict[str, Any]) -> str:
        return scoring.card_tables(metrics) + scoring.speed_lines(getattr(self, "_speed", None))

    # -- prediction -------------------------------------------------------------------------
    def describe(self, result: dict[str, Any]) -> str:
        return result["translation"]

    def predict(
        self,
        model: nn.Module,
        meta: dict[str, Any],
        inputs: list[str],
        src: str = "fra",
        tgt: str = "fon",
        beams: int | None = None,
    ) -> list[dict[str, Any]]:
        for lang, role in ((src, "--src"), (tgt, "--tgt")):
            if lang not in meta["languages"]:
                raise DataError(
                    f"{role} {lang!r}: this model knows {', '.join(meta['languages'])}"
                    + ("" if lang in LANGUAGES else " (ISO 639-3 codes)")
                )
        opts = DecodeOptions.from_meta(meta, beams=beams)
        out = self.translator(model, meta)([corpus.nfc(x) for x in inputs], src, tgt, opts)
        return [{"input": x, "translation": y} for x, y in zip(inputs, out, strict=True)]
