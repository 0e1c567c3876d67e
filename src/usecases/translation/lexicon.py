"""A lexical translation prior learnt from the training pairs (IBM Model 1).

A model that sees each training pair about once learns the target language long before it
learns which target words translate which source words. IBM Model 1 (Brown et al., 1993) learns
the second in seconds from the same pairs: t(y | x), the probability that source subword x
translates as target subword y (or y comes from nothing, the NULL word). Under it, a target
position of the translation of x_1..x_n is y with probability

    p(y | x) = (t(y | NULL) + sum_i t(y | x_i)) / (n + 1),

a bag of the subwords the translation should contain, known before the first decoding step.
The model adds g * log(p(y | x) + eps) to its output logits at every position (g learnt, one
scalar): a product of experts in which the Transformer has to learn word order and fluency,
and the table supplies the words (after Arthur et al., 2016, who add lexicon probabilities to
the logits of a neural translation model to speed up its learning of rare words).

One table per target language (a multilingual model: French `▁la` goes to different subwords
in Fon and in Wolof), each row pruned to its `k` most probable target subwords. The NULL row is
stored in the pad token's row, which never occurs inside a source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch

from usecases.translation.vocab import EOS, PAD

EPS = 1e-4  # floor of p(y | x) inside the log: a subword the table never proposes
NULL = PAD  # the table row of the NULL source word


def ibm1(
    pairs: list[tuple[list[int], list[int]]], iterations: int = 5, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IBM Model 1 by expectation-maximisation over `pairs` of (source ids, target ids),
    uniform start, `iterations` EM rounds. Returns (t, sources, targets): t[i, j] is the
    probability that source subword sources[i] translates as targets[j] (each row sums to 1;
    sources[0] is the NULL word), over the subwords that occur only, which keeps the table
    small. Deterministic: the counts are summed serially."""
    if not pairs:
        raise ValueError("IBM Model 1 needs at least one training pair")
    if iterations < 1:
        raise ValueError(f"iterations={iterations}: expected at least 1")
    sources = torch.tensor(sorted({NULL, *(x for s, _ in pairs for x in s)}), dtype=torch.long)
    targets = torch.tensor(sorted({y for _, t in pairs for y in t}), dtype=torch.long)
    if not len(targets):
        raise ValueError("IBM Model 1 needs target subwords: every target is empty")
    ns, nt = len(sources), len(targets)
    s_of = {int(x): i for i, x in enumerate(sources)}
    t_of = {int(y): j for j, y in enumerate(targets)}
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0]), len(pairs[i][1])))
    batches = []
    for start in range(0, len(order), chunk):
        rows = [pairs[i] for i in order[start : start + chunk]]
        ls = 1 + max(len(s) for s, _ in rows)
        lt = max(1, max(len(y) for _, y in rows))
        src = torch.full((len(rows), ls), -1, dtype=torch.long)
        tgt = torch.full((len(rows), lt), -1, dtype=torch.long)
        for r, (s, y) in enumerate(rows):
            src[r, : 1 + len(s)] = torch.tensor([0, *(s_of[x] for x in s)], dtype=torch.long)
            tgt[r, : len(y)] = torch.tensor([t_of[x] for x in y], dtype=torch.long)
        valid = (src[:, :, None] >= 0) & (tgt[:, None, :] >= 0)
        flat = src.clamp(min=0)[:, :, None] * nt + tgt.clamp(min=0)[:, None, :]
        batches.append((flat, valid))
    cells = torch.cat([flat[valid] for flat, valid in batches])
    t = torch.full((ns, nt), 1.0 / nt)
    for _ in range(iterations):
        table = t.view(-1)
        posts = []
        for flat, valid in batches:
            p = table[flat] * valid
            posts.append((p / p.sum(dim=1, keepdim=True).clamp(min=1e-30))[valid])
        # Expected counts: one serial (so deterministic) float64 sum per table cell.
        counts = torch.bincount(cells, torch.cat(posts), minlength=ns * nt).view(ns, nt)
        t = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1e-30)).float()
    return t, sources, targets


def lexicon_tables(
    examples: Iterable[tuple[int, list[int], list[int]]],
    vocab_size: int,
    k: int = 16,
    iterations: int = 5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One IBM Model 1 per target language from `examples` of (target tag id, source ids
    without tag or end token, target ids with the end token). Returns (tags [L], idx [L, V, k],
    prob [L, V, k]): for tag tags[l], row x holds the k most probable target subwords of
    source subword x (row NULL: those of the NULL word); zero probabilities where x never
    occurs or has fewer than k candidates."""
    by_tag: dict[int, list[tuple[list[int], list[int]]]] = defaultdict(list)
    for tag, src, tgt in examples:
        by_tag[tag].append((src, tgt))
    if not by_tag:
        raise ValueError("no training pairs for the lexical prior")
    tags = sorted(by_tag)
    k = min(k, vocab_size)
    idx = torch.zeros(len(tags), vocab_size, k, dtype=torch.int32)
    prob = torch.zeros(len(tags), vocab_size, k)
    # The languages' models are independent: one per thread torch uses, the largest first
    # (each model's sums stay serial, so the tables do not depend on the threads).
    from concurrent.futures import ThreadPoolExecutor

    largest = sorted(tags, key=lambda tag: -sum(len(s) * len(y) for s, y in by_tag[tag]))
    with ThreadPoolExecutor(max(1, min(len(tags), torch.get_num_threads()))) as pool:
        jobs = {tag: pool.submit(ibm1, by_tag[tag], iterations) for tag in largest}
        models = [jobs[tag].result() for tag in tags]
    for n, (t, sources, targets) in enumerate(models):
        p, j = t.topk(min(k, len(targets)), dim=1)
        idx[n, sources, : j.shape[1]] = targets[j].to(torch.int32)
        prob[n, sources, : j.shape[1]] = p
    return torch.tensor(tags, dtype=torch.long), idx, prob


def source_bias(
    input_ids: torch.Tensor, row_of_tag: torch.Tensor, idx: torch.Tensor, prob: torch.Tensor
) -> torch.Tensor:
    """log(p(y | x) + EPS) for each source row of `input_ids` ([B, S]: target tag, subwords,
    end token, padding), shape [B, V]; zeros for a row whose tag has no table."""
    batch, vocab = input_ids.shape[0], row_of_tag.shape[0]
    rows = row_of_tag[input_ids[:, 0]]
    has = rows >= 0
    lang = rows.clamp(min=0)
    ids = input_ids[:, 1:]
    content = (ids != PAD) & (ids != EOS)
    src = ids.masked_fill(~content, NULL)
    cols = idx[lang[:, None], src].long().flatten(1)  # [B, S*k]
    vals = (prob[lang[:, None], src] * content[..., None]).flatten(1)
    dist = torch.zeros(batch, vocab, dtype=prob.dtype, device=prob.device)
    dist.scatter_add_(1, cols, vals)
    dist.scatter_add_(1, idx[lang, NULL].long(), prob[lang, NULL])
    dist = dist / (content.sum(dim=1, keepdim=True) + 1)
    return torch.log(dist + EPS).masked_fill(~has[:, None], 0.0)


# Bits of `copy_flags`: a piece that starts a word, one that starts it with a capital letter,
# one that holds a digit.
WORD_START, CAPITAL, DIGIT = 1, 2, 4


def copy_flags(pieces: list[str]) -> torch.Tensor:
    """Per vocabulary entry (SentencePiece pieces, "▁" opening a word), the bits WORD_START,
    CAPITAL and DIGIT that `copy_bias` reads, shape [V], int8."""
    flags = torch.zeros(len(pieces), dtype=torch.int8)
    for i, piece in enumerate(pieces):
        body = piece.removeprefix("▁")
        start = piece.startswith("▁") and bool(body)
        flags[i] = (
            start * WORD_START
            + (start and body[0].isupper()) * CAPITAL
            + any(c.isdigit() for c in body) * DIGIT
        )
    return flags


def continuation_flags(pieces: list[str]) -> torch.Tensor:
    """Per vocabulary entry, whether the piece continues a word with a letter or digit: no
    word-start mark ("▁") and a letter or digit first, shape [V], bool."""
    return torch.tensor([not p.startswith("▁") and p[:1].isalnum() for p in pieces])


def copyable(input_ids: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Which subwords of each source row of `input_ids` ([B, S]: target tag, subwords, end
    token, padding) a translation should write as they are, shape [B, S - 1] (the tag left
    out): the pieces of its numbers and of its capitalised words after the first (mostly
    names), which a table learnt from a few thousand pairs rarely holds. `flags` are the
    vocabulary's `copy_flags`."""
    ids = input_ids[:, 1:]
    content = (ids != PAD) & (ids != EOS)
    bits = flags[ids].long()
    start = (bits & WORD_START).bool() & content
    position = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    head = torch.where(start, position, 0).cummax(dim=1).values  # each piece's word start
    later_word = start.long().cumsum(dim=1) >= 2
    capital = (bits.gather(1, head) & CAPITAL).bool() & later_word
    return content & (capital | (bits & DIGIT).bool())


def copy_bias(input_ids: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """log(c(y | x) + EPS) for each source row of `input_ids` ([B, S]: target tag, subwords,
    end token, padding), shape [B, V], where c(y | x) is the share of the source's `copyable`
    subwords that are y. A source with nothing to copy gets a constant, which changes no
    prediction."""
    ids = input_ids[:, 1:]
    copy = copyable(input_ids, flags).to(torch.float32)
    dist = torch.zeros(input_ids.shape[0], flags.shape[0], device=input_ids.device)
    dist.scatter_add_(1, ids, copy)
    return torch.log(dist / copy.sum(dim=1, keepdim=True).clamp(min=1) + EPS)


def pointer_inputs(input_ids: torch.Tensor, flags: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the copy pointer (`models.LexicalPriorMixin`) needs of each source row of
    `input_ids` ([B, S]), computed once per source, all over its positions 1..S-1 (the tag
    left out): `"pointer_ids"` [B, S-1], the subwords; `"pointer_mask"` [B, S-1], the
    `copyable` ones, which the pointer may attend to; `"pointer_same"` [B, S-1, S-1], 1 where
    two copyable positions hold the same subword (a subword's probability is the attention
    on all its positions); `"pointer_first"` [B, S-1], 1 on the first position of each
    copyable subword, the one that carries its bias."""
    ids = input_ids[:, 1:]
    mask = copyable(input_ids, flags)
    same = (ids[:, :, None] == ids[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    earlier = same.tril(diagonal=-1).any(dim=2)  # the same subword at an earlier position
    return {
        "pointer_ids": ids,
        "pointer_mask": mask,
        "pointer_same": same.to(torch.float32),
        "pointer_first": (mask & ~earlier).to(torch.float32),
    }
