"""Score saved translation releases on FLORES-200 **dev** sentences that no release trains on
(the first `data.flores_dev_heldout`, 200 by default): how the default's and `full`'s weights,
averaging and decoding were chosen without reading devtest.

    .venv/bin/python benchmarks/mt_dev.py [models/translation/pre_nano ...] [--sentences 200]
        [--benchmark flores|mafand] [--directions fra-fuv ...] [--beams N]
        [--repetition-penalty P] [--no-repeat-ngram N] [--min-length F] [--copy-bonus B]
        [--lexical-weight W] [--copy-weight W] [--lexical-diagonal S] [--diagonal-width W]
        [--glossary]

Each release decodes as its card says (greedy or beam, length floor, repetition controls)
unless an option overrides it (`--lexical-weight` and `--copy-weight` replace the learnt
weights of the lexical and copy priors, for decoding and the dev loss), in the same 8
directions as `mt_budget.py`; `--benchmark mafand` scores the first sentences of MAFAND-MT
dev in all 12 of its directions instead (the model-selection sentences: no release trains on
them, and MAFAND test stays unread). Besides chrF++ it prints BLEU, the output/reference
length ratio, the share of the names and numbers shared by source and reference that the
translation keeps (`scoring.kept_names_numbers`), the teacher-forced dev loss and the source
gain (see `mt_budget.py`). `--glossary` adds a row for the word-for-word glossary baseline
fitted on the default's training pairs (the bar the default is measured against; `full`'s
own glossary also learns from FLORES dev 201-997, so it would score higher).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mt_budget import DIRECTIONS, dev_losses, print_table
from usecases.core.config import compose
from usecases.core.registry import get_usecase
from usecases.core.stages import load_model
from usecases.translation import corpus
from usecases.translation.decode import DecodeOptions, translate_all
from usecases.translation.glossary import Glossary
from usecases.translation.scoring import kept_names_numbers
from usecases.translation.task import oriented, trained_directions


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "releases",
        nargs="*",
        default=["models/translation/pre_nano", "models/translation/pre_nano.full"],
        help="release folders (models/translation/<name>)",
    )
    p.add_argument("--sentences", type=int, default=200, help="first N dev sentences")
    p.add_argument(
        "--benchmark",
        choices=("flores", "mafand"),
        default="flores",
        help="FLORES-200 dev (8 directions) or MAFAND-MT dev (12)",
    )
    p.add_argument(
        "--directions",
        nargs="+",
        default=None,
        help="FLORES directions to score instead of the 8 (e.g. the zero-shot fra-fuv fuv-fra)",
    )
    p.add_argument("--beams", type=int, default=None, help="override the release's beams")
    p.add_argument("--repetition-penalty", type=float, default=None, help="override the release's")
    p.add_argument("--no-repeat-ngram", type=int, default=None, help="override the release's")
    p.add_argument("--min-length", type=float, default=None, help="override the length floor")
    p.add_argument(
        "--copy-bonus", type=float, default=None, help="override the names-and-numbers copy bonus"
    )
    p.add_argument(
        "--lexical-diagonal",
        type=float,
        default=None,
        help="override the share of the lexical prior taken from the diagonal",
    )
    p.add_argument(
        "--diagonal-width", type=float, default=None, help="override the diagonal's width"
    )
    p.add_argument("--lexical-weight", type=float, default=None, help="override lex_gate")
    p.add_argument("--copy-weight", type=float, default=None, help="override copy_gate")
    p.add_argument(
        "--glossary",
        action="store_true",
        help="also score the word-for-word glossary fitted on the default's training pairs",
    )
    args = p.parse_args()
    from sacrebleu.metrics import BLEU, CHRF

    uc = get_usecase("translation")
    cfg = uc.config(compose([], usecase="translation"))
    if args.benchmark == "flores" and args.sentences > cfg.data.flores_dev_heldout:
        raise SystemExit(
            f"--sentences {args.sentences}: only the first {cfg.data.flores_dev_heldout} FLORES "
            "dev sentences are held out of every release's training (data.flores_dev_heldout)"
        )
    every = uc.pairs(cfg)
    pairs = [x for x in every if x.corpus == args.benchmark]
    dev = [x for x in pairs if x.split == "dev"]
    directions = tuple(args.directions or DIRECTIONS)
    if args.benchmark == "mafand":  # MAFAND's trained directions, both ways
        directions = tuple(f"{a}-{b}" for a, b in trained_directions(pairs))
    sets = []
    for d in directions:
        src, _, tgt = d.partition("-")
        rows = oriented(dev, src, tgt)[: args.sentences]
        if not rows:
            raise SystemExit(
                f"--directions {d}: no {args.benchmark} dev sentences in that direction"
            )
        sets.append(
            (
                [corpus.nfc(s) for s, _, _ in rows],
                src,
                tgt,
                [" ".join(corpus.nfc(r).split()) for _, r, _ in rows],
            )
        )
    chrf, bleu = CHRF(word_order=2), BLEU()
    table = []
    for release in args.releases:
        model, meta, _ = load_model(Path(release))
        for name, weight in (("lex_gate", args.lexical_weight), ("copy_gate", args.copy_weight)):
            if weight is not None:
                if not hasattr(model, name):
                    raise SystemExit(f"{release}: its model has no {name} to override")
                with torch.no_grad():
                    getattr(model, name).fill_(weight)
        opts = DecodeOptions.from_meta(
            meta,
            beams=args.beams,
            repetition_penalty=args.repetition_penalty,
            no_repeat_ngram=args.no_repeat_ngram,
            min_length=args.min_length,
            copy_bonus=args.copy_bonus,
            lexical_diagonal=args.lexical_diagonal,
            diagonal_width=args.diagonal_width,
        )
        t0 = time.perf_counter()
        hyps = translate_all(uc.translator(model, meta), [s[:3] for s in sets], opts)
        seconds = time.perf_counter() - t0
        scores = [chrf.corpus_score(h, [s[3]]).score for h, s in zip(hyps, sets, strict=True)]
        bleus = [bleu.corpus_score(h, [s[3]]).score for h, s in zip(hyps, sets, strict=True)]
        ratio = sum(len(x) for h in hyps for x in h) / sum(len(r) for s in sets for r in s[3])
        kept = kept_names_numbers(
            [x for h in hyps for x in h],
            [x for s in sets for x in s[0]],
            [x for s in sets for x in s[3]],
        )
        own, other = dev_losses(uc, meta, model, dev, args.sentences, directions)
        print(
            f"{release}: "
            + ", ".join(f"{d} {c:.2f}" for d, c in zip(directions, scores, strict=True))
        )
        table.append(
            (
                release,
                opts.beams,
                f"{statistics.mean(scores):.2f}",
                f"{statistics.mean(bleus):.2f}",
                f"{ratio:.2f}",
                f"{kept['kept']} of {kept['shared']}",
                f"{own:.3f}",
                f"{other - own:.3f}",
                f"{seconds:.0f}",
            )
        )
    if args.glossary:
        train = [(x.src_lang, x.tgt_lang, x.src, x.tgt) for x in every if x.split == "train"]
        t0 = time.perf_counter()
        glossary = Glossary.fit(train)
        drafts = [[glossary.translate(x, src, tgt) for x in xs] for xs, src, tgt, _ in sets]
        seconds = time.perf_counter() - t0
        scores = [chrf.corpus_score(h, [s[3]]).score for h, s in zip(drafts, sets, strict=True)]
        bleus = [bleu.corpus_score(h, [s[3]]).score for h, s in zip(drafts, sets, strict=True)]
        ratio = sum(len(x) for h in drafts for x in h) / sum(len(r) for s in sets for r in s[3])
        print(
            "glossary: "
            + ", ".join(f"{d} {c:.2f}" for d, c in zip(directions, scores, strict=True))
        )
        table.append(
            (
                "word-for-word glossary (the default's training pairs)",
                "",
                f"{statistics.mean(scores):.2f}",
                f"{statistics.mean(bleus):.2f}",
                f"{ratio:.2f}",
                "",
                "",
                "",
                f"{seconds:.0f}",
            )
        )
    name = {"flores": "FLORES-200", "mafand": "MAFAND-MT"}[args.benchmark]
    print(
        f"\n{name} dev sentences 1-{args.sentences} (held out of training), "
        f"{len(directions)} directions\n"
    )
    head = (
        "release",
        "beams",
        "dev chrF++",
        "dev BLEU",
        "length ratio",
        "names/numbers kept",
        "dev loss",
        "source gain",
        "s",
    )
    print_table(head, table)


if __name__ == "__main__":
    main()
