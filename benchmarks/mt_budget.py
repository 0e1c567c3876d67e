"""Which translation model learns most in a fixed CPU time: each model trains for the same
wall-clock seconds with the default recipe (the use case's own batches, loss, AdamW at the
configured learning rate, bf16 autocast, warm-up then cosine decay over the time budget) and is
scored on FLORES-200 **dev** (greedy, the default's length floor), beside the word-for-word
glossary on the same sentences. Devtest is never read. Beside chrF++ it prints the time those
translations took, the teacher-forced loss on the same dev sentences, and the "source gain": how
much that loss rises when each sentence is given another sentence's source. A model that has
learnt to translate gains nats per token from its source; one that only writes the target
language's typical sentence gains nothing.

    .venv/bin/python benchmarks/mt_budget.py [--models pre_nano pre_tiny] [--seconds 600]
        [--sentences 80] [--threads 0]

A candidate is a model name, optionally followed by Hydra overrides of the recipe in the same
quoted argument, e.g. `--models pre_nano "pre_nano data.tokens_per_batch=1000 optim.lr=0.001"`.

Needs the prepared corpus (`zoo fetch translation && zoo prepare translation`). Each model's
dropout is its config's (`configs/model/<name>.yaml`). Run it on a quiet machine: the number of
updates each model gets depends on everything else that runs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from usecases.core.config import compose
from usecases.core.registry import get_usecase
from usecases.core.trainer import amp_context
from usecases.translation import corpus
from usecases.translation.batching import IGNORE, collate
from usecases.translation.decode import DecodeOptions
from usecases.translation.glossary import Glossary
from usecases.translation.task import oriented, read_summary_labels

DIRECTIONS = (
    "fra-fon",
    "fra-wol",
    "fon-fra",
    "wol-fra",
    "eng-hau",
    "fra-bam",
    "yor-eng",
    "fra-ewe",
)


def dev_sources(uc, cfg, sentences: int) -> list[tuple[list[str], str, str]]:
    """(sources, source language, target language) of the first `sentences` FLORES-200 dev
    sentences in each of DIRECTIONS (NFC), for the decoding benchmarks."""
    dev = [x for x in uc.pairs(cfg) if x.corpus == "flores" and x.split == "dev"]
    sets = []
    for d in DIRECTIONS:
        src, _, tgt = d.partition("-")
        rows = oriented(dev, src, tgt)[:sentences]
        sets.append(([corpus.nfc(s) for s, _, _ in rows], src, tgt))
    return sets


def lr_factor(frac: float, warmup: float = 0.2) -> float:
    """Linear warm-up over the first `warmup` of the budget, then cosine decay to zero."""
    if frac < warmup:
        return frac / warmup
    return 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))


def train_for(uc, cfg, meta, seconds: float) -> tuple[torch.nn.Module, int, float]:
    """The model after `seconds` of training: (model, updates, mean loss of the last 50)."""
    torch.manual_seed(cfg.seed)
    loader, _ = uc.build_loaders(cfg, meta)
    model = uc.build_model(cfg, meta["labels"])
    t0 = time.perf_counter()
    if facts := uc.init_from_data(cfg, model, loader.dataset):
        print(
            f"{cfg.model.name}: initialised from the training data in "
            f"{time.perf_counter() - t0:.1f} s: {facts}",
            flush=True,
        )
    loss_fn = uc.loss_fn(cfg)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    updates = 0
    epoch = 0
    while True:
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            frac = (time.perf_counter() - start) / seconds
            if frac >= 1:
                return model.eval(), updates, statistics.mean(losses[-50:])
            for group in opt.param_groups:
                group["lr"] = cfg.optim.lr * max(lr_factor(frac), 1e-3)
            with amp_context("cpu", cfg.trainer.precision):
                loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            updates += 1
        epoch += 1


def dev_scores(uc, dev, model, meta, glossary, sentences: int) -> dict[str, tuple[float, float]]:
    """FLORES-200 dev chrF++ per direction of the `dev` pairs: (model, glossary)."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF(word_order=2)
    translate = uc.translator(model, meta)
    opts = DecodeOptions.from_meta(meta)
    out = {}
    for d in DIRECTIONS:
        src, tgt = d.split("-")
        rows = oriented(dev, src, tgt)[:sentences]
        if not rows:
            continue
        srcs = [corpus.nfc(s) for s, _, _ in rows]
        refs = [corpus.nfc(r) for _, r, _ in rows]
        hyps = translate(srcs, src, tgt, opts)
        words = [glossary.translate(s, src, tgt) for s in srcs]
        out[d] = (
            chrf.corpus_score(hyps, [refs]).score,
            chrf.corpus_score(words, [refs]).score,
        )
    return out


@torch.no_grad()
def dev_losses(
    uc, meta, model, dev, sentences: int, directions: tuple[str, ...] = DIRECTIONS
) -> tuple[float, float]:
    """Teacher-forced loss (nats per target token) on the scored dev sentences, with each
    sentence's own source and with the next sentence's source (same direction). The difference
    is what the model takes from the source; a decoder that only models the target language
    scores about the same on both."""
    from torch.nn import functional as F

    vocab = uc.vocab(meta)
    true_rows, swapped = [], []
    for d in directions:
        src, tgt = d.split("-")
        rows = oriented(dev, src, tgt)[:sentences]
        srcs = [corpus.nfc(s) for s, _, _ in rows]
        refs = [corpus.nfc(r) for _, r, _ in rows]
        true_rows += [(src, tgt, s, r) for s, r in zip(srcs, refs, strict=True)]
        swapped += [(src, tgt, s, r) for s, r in zip(srcs[1:] + srcs[:1], refs, strict=True)]

    def loss(rows) -> float:
        examples = uc._examples(vocab, rows, None)
        total, count = 0.0, 0
        for i in range(0, len(examples), 64):
            b = collate(examples[i : i + 64], pad_id=vocab.pad_id, start_id=vocab.start_id)
            logits = model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                decoder_input_ids=b["decoder_input_ids"],
            ).logits.float()
            total += F.cross_entropy(
                logits.flatten(0, 1), b["labels"].flatten(), ignore_index=IGNORE, reduction="sum"
            ).item()
            count += int((b["labels"] != IGNORE).sum())
        return total / max(1, count)

    return loss(true_rows), loss(swapped)


def timed_steps(model, opt, loss_fn, batches, precision: str) -> tuple[float, float]:
    """(seconds per training step after 3 warm-up steps, last loss): `model` trained on
    `batches` with `opt`, forward under `precision`'s autocast, as the trainer steps."""
    loss = torch.zeros(())
    for i, batch in enumerate(batches):
        if i == 3:
            start = time.perf_counter()
        with amp_context("cpu", precision):
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / (len(batches) - 3), loss.item()


def load_release(release):
    """(use case, its default config, model, metadata) of the translation release in
    directory `release`; exits with a message when it has no weights."""
    from usecases.core.stages import load_model

    if not (release / "weights.safetensors").is_file():
        raise SystemExit(f"{release} has no weights: run 'dvc repro report@3' first")
    uc = get_usecase("translation")
    cfg = uc.config(compose([], usecase="translation"))
    model, meta, _ = load_model(release)
    return uc, cfg, model, meta


def print_table(head: tuple[str, ...], rows: list[tuple]) -> None:
    """A markdown table."""
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["pre_nano", "pre_tiny"],
        help="candidates: a model name, optionally followed by Hydra overrides (one quoted arg)",
    )
    p.add_argument("--seconds", type=float, default=600.0, help="training time per model")
    p.add_argument("--sentences", type=int, default=80, help="FLORES dev sentences per direction")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    uc = get_usecase("translation")
    rows = []
    pairs = uc.pairs(uc.config(compose([], usecase="translation")))  # the same for every model
    dev = [p for p in pairs if p.corpus == "flores" and p.split == "dev"]
    glossary = Glossary.fit(
        [(p.src_lang, p.tgt_lang, p.src, p.tgt) for p in pairs if p.split == "train"]
    )
    for candidate in args.models:
        name, *overrides = candidate.split()
        cfg = uc.config(compose([f"model={name}", *overrides], usecase="translation"))
        labels = read_summary_labels(uc.processed_dir(cfg))
        meta = uc.model_meta(cfg, labels)
        model, updates, loss = train_for(uc, cfg, meta, args.seconds)
        t0 = time.perf_counter()
        scores = dev_scores(uc, dev, model, meta, glossary, args.sentences)
        decode_s = time.perf_counter() - t0  # the glossary's share is a fraction of a second
        own, other = dev_losses(uc, meta, model, dev, args.sentences)
        params = sum(t.numel() for t in model.parameters()) / 1e6
        rows.append(
            (
                candidate,
                f"{params:.1f} M",
                cfg.model.dropout,
                updates,
                f"{args.seconds / max(1, updates):.2f}",
                f"{loss:.3f}",
                f"{own:.3f}",
                f"{other - own:.3f}",
                f"{statistics.mean(m for m, _ in scores.values()):.2f}",
                f"{decode_s:.0f}",
                f"{statistics.mean(g for _, g in scores.values()):.2f}",
            )
        )
        print(
            f"{candidate}: " + ", ".join(f"{d} {m:.2f}" for d, (m, _) in scores.items()), flush=True
        )
    print(
        f"\n{args.seconds:.0f} s of training per model; FLORES-200 dev chrF++, mean of "
        f"{len(DIRECTIONS)} directions x {args.sentences} sentences\n"
    )
    head = (
        "model",
        "parameters",
        "dropout",
        "updates",
        "s/update",
        "train loss (last 50)",
        "dev loss",
        "source gain",
        "dev chrF++",
        "decoding s",
        "glossary",
    )
    print_table(head, rows)


if __name__ == "__main__":
    main()
