"""How fast the translation default is decoded and scored, each path beside the one it replaced.

    .venv/bin/python benchmarks/mt_decode.py [--sentences 64] [--rounds 3]

Decoding: the released default (`models/translation/pre_nano`) translates `--sentences` held-out
FLORES-200 dev sentences in each of the 8 directions of `mt_budget.py`, greedy with its own
decoding rules, on one thread (as each scoring worker runs), through `transformers`' forward
with its dynamic cache, through `incremental.PrenormSteps` over every subword, and through
`PrenormSteps` with each target language's output vocabulary (the release's `target_vocab`:
its training text's subwords, the sources' own and the end token), the first three without the
lexical prior on the diagonal, then the third with it (`decode.LexicalDiagonal`), these four
with the decoding rules on the whole vocabulary's scores, and last the fourth with the rules
on the allowed subwords' columns only (`decode.Columns`, as the release decodes), taking turns
for `--rounds` rounds so that a slower minute of a shared machine falls on all five.
Prints seconds (best and mean) and how many translations differ from the previous row's.

Scoring: the release's `predictions.csv` (every test set) scored by sacrebleu one pass per
figure (corpus BLEU, chrF, chrF++, then each sentence's chrF++, as `scoring` did before) and
by `scoring.score` with the sentence scores (one pass of chrF++ statistics for all the chrF
figures); then the translations and the copy-the-source baseline against each set's references,
read twice or once (`scoring.References`, as `scoring.score_set` scores the model and both
baselines). Prints seconds and whether the figures are equal.

Needs the released default (`dvc repro report@3` or `make repro`).
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import functools
import statistics
import time
from pathlib import Path

import torch

from mt_budget import DIRECTIONS, dev_sources, load_release, print_table
from usecases.translation import corpus, decode, incremental, scoring
from usecases.translation.decode import DecodeOptions

RELEASE = Path("models/translation/pre_nano")


PATHS = (
    "transformers forward",
    "incremental.PrenormSteps",
    "PrenormSteps, language vocabulary",
    "the same, lexical prior on the diagonal",
    "the same, rules on the allowed columns",
)


def decode_seconds(translate, sets, opts, path: str) -> tuple[float, list]:
    """(seconds, translations) of `sets` on one of PATHS (the diagonal at the release's share,
    or at the default's 0.5 for a release decoded without it). The rows before the last apply
    the decoding rules to the whole vocabulary's scores, as greedy decoding did before
    `decode.Columns`."""
    supports, vocabularies, greedy = incremental.supports, translate.target_vocab, decode.greedy
    if path == PATHS[0]:
        incremental.supports = lambda model: False
    if path not in PATHS[2:]:
        translate.target_vocab = {}
    if path != PATHS[4]:
        decode.greedy = functools.partial(greedy, only_allowed_columns=False)
    share = (opts.lexical_diagonal or 0.5) if path in PATHS[3:] else 0.0
    opts = dataclasses.replace(opts, lexical_diagonal=share)
    try:
        start = time.perf_counter()
        outs = [translate(texts, src, tgt, opts) for texts, src, tgt in sets]
        return time.perf_counter() - start, outs
    finally:
        incremental.supports, translate.target_vocab = supports, vocabularies
        decode.greedy = greedy


def score_per_figure(hyps: list[str], refs: list[str]) -> tuple[dict, list[str]]:
    """What `scoring` computed before: one sacrebleu pass per figure."""
    from sacrebleu.metrics import BLEU, CHRF

    h = [" ".join(corpus.nfc(x).split()) for x in hyps]
    r = [[" ".join(corpus.nfc(x).split()) for x in refs]]
    figures = {
        "bleu": round(BLEU().corpus_score(h, r).score, 2),
        "chrf": round(CHRF().corpus_score(h, r).score, 2),
        "chrf_pp": round(CHRF(word_order=2).corpus_score(h, r).score, 2),
    }
    chrfpp = CHRF(word_order=2)
    sentences = [
        f"{chrfpp.sentence_score(corpus.nfc(a), [corpus.nfc(b)]).score:.2f}"
        for a, b in zip(hyps, refs, strict=True)
    ]
    return figures, sentences


def score_one_pass(hyps: list[str], refs: list[str]) -> tuple[dict, list[str]]:
    figures, sentences = scoring.References(refs).score(hyps, brief=True, sentences=True)
    return figures, [f"{x:.2f}" for x in sentences]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sentences", type=int, default=64, help="FLORES dev sentences per direction")
    p.add_argument("--rounds", type=int, default=3, help="turns each decoding path takes")
    args = p.parse_args()
    uc, cfg, model, meta = load_release(RELEASE)
    translate = uc.translator(model, meta)
    opts = DecodeOptions.from_meta(meta)
    sets = dev_sources(uc, cfg, args.sentences)

    if not translate.target_vocab:
        raise SystemExit(f"{RELEASE} has no output vocabularies: retrain it with this code")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seconds: dict[str, list[float]] = {p: [] for p in PATHS}
    outputs: dict[str, list] = {}
    for _ in range(args.rounds):
        for path in PATHS:
            s, outputs[path] = decode_seconds(translate, sets, opts, path)
            seconds[path].append(s)
    torch.set_num_threads(threads)
    n = sum(len(t) for t, _, _ in sets)

    def differ(a: str, b: str) -> int:
        return sum(
            x != y
            for xs, ys in zip(outputs[a], outputs[b], strict=True)
            for x, y in zip(xs, ys, strict=True)
        )

    print(
        f"\nGreedy decoding of {args.sentences} FLORES dev sentences x {len(DIRECTIONS)} "
        f"directions ({n}) on one thread, best / mean of {args.rounds} rounds "
        f"(torch {torch.__version__})\n"
    )
    rows = [
        (
            path,
            f"{min(seconds[path]):.1f}",
            f"{statistics.mean(seconds[path]):.1f}",
            "-" if k == 0 else f"{differ(PATHS[k - 1], path)} of {n}",
        )
        for k, path in enumerate(PATHS)
    ]
    head = ("decoding path", "s (best)", "s (mean)", "translations that differ from the row above")
    print_table(head, rows)

    with open(RELEASE / "predictions.csv", encoding="utf-8", newline="") as f:
        groups = collections.defaultdict(list)
        for row in csv.DictReader(f):
            groups[(row["benchmark"], row["direction"])].append(row)
    results, timing = {}, {}
    for name, fn in (("one pass per figure", score_per_figure), ("scoring.score", score_one_pass)):
        start = time.perf_counter()
        results[name] = [
            fn([r["hypothesis"] for r in g], [r["reference"] for r in g]) for g in groups.values()
        ]
        timing[name] = time.perf_counter() - start
    # The model and a baseline (copying the source) against each set's references: read twice,
    # or once by one `scoring.References`, as `scoring.score_set` reads them.
    pairs = {}
    for name in ("model + copy, references read twice", "model + copy, read once"):
        start = time.perf_counter()
        pairs[name] = []
        for g in groups.values():
            hyps, srcs = [r["hypothesis"] for r in g], [r["source"] for r in g]
            refs = [r["reference"] for r in g]
            if name.endswith("twice"):
                pairs[name].append((scoring.score(hyps, refs), scoring.score(srcs, refs)))
            else:
                against = scoring.References(refs)
                pairs[name].append((against.score(hyps)[0], against.score(srcs)[0]))
        timing[name] = time.perf_counter() - start
    checks = {
        "scoring.score": results["one pass per figure"] == results["scoring.score"],
        "model + copy, read once": len(set(map(repr, pairs.values()))) == 1,
    }
    print(
        f"\nScoring the release's {sum(len(g) for g in groups.values())} test translations "
        f"({len(groups)} sets: corpus BLEU, chrF, chrF++ and each sentence's chrF++) in one "
        "process; then the translations and the copy-the-source baseline\n"
    )
    print_table(
        ("scoring", "s", "same figures as the row above"),
        [
            (
                k,
                f"{v:.1f}",
                ("yes" if checks[k] else "no") if k in checks else "-",
            )
            for k, v in timing.items()
        ],
    )


if __name__ == "__main__":
    main()
