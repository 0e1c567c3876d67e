"""Which attention kernel trains and decodes the translation default fastest on this CPU.

    .venv/bin/python benchmarks/mt_attention.py [--steps 25] [--rounds 2] [--sentences 64]

Training: the default's model (`pre_nano` with its priors, random embeddings: the start does not
change the cost of a step) takes the same ~2,000-token batches of the prepared corpus (forward
under bf16 autocast, the use case's loss, backward, AdamW) on each kernel of `data.attention`,
the kernels taking turns for `--rounds` rounds so that a slower minute of a shared machine falls
on all of them. Decoding: the released default (`models/translation/pre_nano`) translates
`--sentences` held-out FLORES-200 dev sentences in each of the 8 directions of `mt_budget.py`,
greedy, on one thread, on each kernel, through `transformers`' forward (bypassing
`decoding_attention`, which decodes on the fused one, and `incremental.PrenormSteps`, which
the release's greedy decoding uses and which has its own attention). Prints seconds per training step and per decoding pass, and the last training
loss (the kernels compute the same model; rounding differs under bf16).

Needs the prepared corpus and the released default (`dvc repro report@3` or `make repro`).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch

from mt_budget import DIRECTIONS, dev_sources, print_table, timed_steps
from usecases.core.config import compose
from usecases.core.registry import get_usecase
from usecases.core.stages import load_model
from usecases.translation import decode, incremental
from usecases.translation.batching import IGNORE
from usecases.translation.decode import DecodeOptions
from usecases.translation.models import ATTENTION
from usecases.translation.task import read_summary_labels
from usecases.translation.vocab import PAD


def train_seconds(uc, cfg, meta, batches, attention: str) -> tuple[float, float]:
    """(seconds per training step after 3 warm-up steps, last loss) on `attention`."""
    cfg.data.attention = attention
    torch.manual_seed(cfg.seed)
    model = uc.build_model(cfg, meta["labels"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    return timed_steps(model, opt, uc.loss_fn(cfg), batches, cfg.trainer.precision)


def decode_seconds(translate, sets, opts, attention: str) -> tuple[float, list]:
    """(seconds, translations) of the release on `sets`, its attention set to `attention`."""
    translate.model.config._attn_implementation = ATTENTION[attention]
    start = time.perf_counter()
    outs = [translate(texts, src, tgt, opts) for texts, src, tgt in sets]
    return time.perf_counter() - start, outs


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=25, help="timed training steps per kernel")
    p.add_argument("--rounds", type=int, default=2, help="turns each kernel takes")
    p.add_argument("--sentences", type=int, default=64, help="FLORES dev sentences per direction")
    args = p.parse_args()
    uc = get_usecase("translation")
    cfg = uc.config(compose(["data.embedding_init=random"], usecase="translation"))
    labels = read_summary_labels(uc.processed_dir(cfg))
    meta = uc.model_meta(cfg, labels)
    loader, _ = uc.build_loaders(cfg, meta)
    loader.batch_sampler.set_epoch(0)
    stream = iter(loader)
    batches = [next(stream) for _ in range(args.steps + 3)]
    tokens = sum(
        int((b["input_ids"] != PAD).sum() + (b["labels"] != IGNORE).sum()) for b in batches
    )

    # Decode on the kernel under test, not on the fused one that generate() switches to, and
    # through transformers' forward, not through PrenormSteps (its own attention).
    decode.decoding_attention = lambda model: contextlib.nullcontext()
    incremental.supports = lambda model: False
    translate = None
    release = Path("models/translation/pre_nano")
    if (release / "weights.safetensors").is_file():
        model, rmeta, _ = load_model(release)
        translate = uc.translator(model, rmeta)
        opts = DecodeOptions.from_meta(rmeta)
        sets = dev_sources(uc, cfg, args.sentences)

    steps: dict[str, list[float]] = {a: [] for a in ATTENTION}
    losses: dict[str, float] = {}
    decodes: dict[str, list[float]] = {a: [] for a in ATTENTION}
    outputs: dict[str, list] = {}
    threads = torch.get_num_threads()
    for _ in range(args.rounds):
        for attention in ATTENTION:
            seconds, losses[attention] = train_seconds(uc, cfg, meta, batches, attention)
            steps[attention].append(seconds)
            if translate is not None:
                torch.set_num_threads(1)
                seconds, outputs[attention] = decode_seconds(translate, sets, opts, attention)
                torch.set_num_threads(threads)
                decodes[attention].append(seconds)
    print(
        f"\n{args.steps} training steps of {tokens / len(batches):.0f} tokens on average "
        f"(torch {torch.__version__}, {threads} threads, bf16), best of "
        f"{args.rounds} rounds; decoding {args.sentences} FLORES dev sentences x "
        f"{len(DIRECTIONS)} directions on one thread\n"
    )
    rows = []
    for a in ATTENTION:
        decoding = f"{min(decodes[a]):.1f}" if decodes[a] else "no release"
        same = "" if not outputs else ("yes" if outputs[a] == outputs["sdpa"] else "no")
        rows.append(
            (a, f"{min(steps[a]):.3f}", f"{statistics.mean(steps[a]):.3f}", f"{losses[a]:.4f}")
            + (decoding, same)
        )
    head = ("kernel", "s/step (best)", "s/step (mean)", "last loss", "decoding s", "same as sdpa")
    print_table(head, rows)


if __name__ == "__main__":
    main()
