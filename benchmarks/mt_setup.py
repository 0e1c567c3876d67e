"""What the translation default's training does before its first update, piece by piece.

    .venv/bin/python benchmarks/mt_setup.py [--rounds 2]

On the prepared default corpus (`data/processed/translation`, as `dvc repro` leaves it), with
the default's config: reading and encoding the training pairs (`build_loaders`), the
embeddings that start from the pairs' co-occurrences (`models.cooccurrence_embeddings`, a
randomised SVD) and the lexical prior's IBM Model 1 tables, one language per thread
(`lexicon.lexicon_tables`). Prints seconds (best and mean of `--rounds`) and a SHA-256 of
each piece's output, so that a change meant to be faster only can show that it computes the
same bytes (run the benchmark before and after it).

Needs the prepared corpus (`zoo fetch translation && zoo prepare translation`).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

import torch

from mt_budget import print_table
from usecases.core.config import compose
from usecases.core.registry import get_usecase
from usecases.core.stages import configure_torch, read_summary
from usecases.translation.lexicon import lexicon_tables
from usecases.translation.models import cooccurrence_embeddings


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=2, help="times each piece is run")
    args = p.parse_args()
    uc = get_usecase("translation")
    cfg = uc.config(compose([], usecase="translation"))
    configure_torch(cfg)
    try:
        labels = read_summary(cfg)["labels"]
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    meta = uc.model_meta(cfg, labels)
    model = uc.build_model(cfg, labels)
    d = cfg.data
    dim = model.get_input_embeddings().embedding_dim
    vocab_size = model.get_input_embeddings().num_embeddings
    seconds: dict[str, list[float]] = {}
    outputs: dict[str, str] = {}
    train: list = []

    def loaders() -> str:
        train[:] = uc.build_loaders(cfg, meta)[0].dataset
        return f"{len(train)} pairs"

    def embeddings() -> str:
        docs = [e["src_ids"][1:-1] + e["tgt_ids"][:-1] for e in train]
        return digest(*cooccurrence_embeddings(docs, vocab_size, dim, cfg.seed))

    def tables() -> str:
        examples = [(e["src_ids"][0], e["src_ids"][1:-1], e["tgt_ids"]) for e in train]
        return digest(*lexicon_tables(examples, vocab_size, d.lexicon_k, d.lexicon_iterations))

    pieces = {
        "reading and encoding the training pairs": loaders,
        "co-occurrence embeddings": embeddings,
        "IBM Model 1 tables": tables,
    }
    for _ in range(args.rounds):
        for name, fn in pieces.items():
            start = time.perf_counter()
            out = fn()
            seconds.setdefault(name, []).append(time.perf_counter() - start)
            if outputs.setdefault(name, out) != out:
                raise SystemExit(f"{name}: another output in another round ({out})")
    print(
        f"\nThe translation default's set-up before its first update, {torch.get_num_threads()} "
        f"threads, best / mean of {args.rounds} rounds (torch {torch.__version__})\n"
    )
    print_table(
        ("piece", "s (best)", "s (mean)", "output (SHA-256)"),
        [
            (
                name,
                f"{min(s):.1f}",
                f"{statistics.mean(s):.1f}",
                outputs[name],
            )
            for name, s in seconds.items()
        ],
    )


if __name__ == "__main__":
    main()
