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

import numpy as np
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
    small. Deterministic: the counts are summed serially, in the pairs' length order.

    The pairs go through EM `chunk` at a time in length order, as [pairs, 1 + source length,
    target length] blocks padded to the chunk's longest. Each round reads and writes only
    the (source, target) cells that co-occur in some pair (a quarter of the table for the
    largest language here), through one list of them; padding reads an extra cell that
    stays 0. (The chunks fix the rounding of each target position's sum over the source:
    the tables do not depend on anything else.)"""
    if not pairs:
        raise ValueError("IBM Model 1 needs at least one training pair")
    if iterations < 1:
        raise ValueError(f"iterations={iterations}: expected at least 1")
    src_lens = np.array([len(s) for s, _ in pairs], dtype=np.int64)
    tgt_lens = np.array([len(y) for _, y in pairs], dtype=np.int64)
    flat_src = np.fromiter((x for s, _ in pairs for x in s), np.int64, int(src_lens.sum()))
    flat_tgt = np.fromiter((y for _, t in pairs for y in t), np.int64, int(tgt_lens.sum()))
    sources = np.union1d(flat_src, [NULL])
    targets = np.unique(flat_tgt)
    if not len(targets):
        raise ValueError("IBM Model 1 needs target subwords: every target is empty")
    ns, nt = len(sources), len(targets)
    # Each pair's source (the NULL word first) and target as rows of table indices.
    src_rows = _rows(np.searchsorted(sources, flat_src), src_lens, lead=0)
    tgt_rows = _rows(np.searchsorted(targets, flat_tgt), tgt_lens)
    order = np.lexsort((tgt_lens, src_lens))  # stable: by source, then target length
    blocks = []
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        src = _padded(src_rows, src_lens[rows] + 1, rows)
        tgt = _padded(tgt_rows, tgt_lens[rows], rows, width=1)
        valid = (src[:, :, None] >= 0) & (tgt[:, None, :] >= 0)
        flat = src.clamp(min=0)[:, :, None] * nt + tgt.clamp(min=0)[:, None, :]
        blocks.append(flat.masked_fill_(~valid, ns * nt))
    # The cells that co-occur, in the table's order, and each block cell's place among them
    # (padding, the extra cell ns * nt: the extra place `used`, whose probability stays 0).
    every = torch.cat([b.view(-1) for b in blocks])
    shapes = [b.shape for b in blocks]
    del blocks
    seen = torch.zeros(ns * nt + 1, dtype=torch.bool).index_fill_(0, every, True)[:-1]
    cells = seen.nonzero().squeeze(1)
    used = len(cells)
    place = torch.cumsum(seen, 0, dtype=torch.int32).sub_(1)
    every = torch.cat([place, torch.tensor([used], dtype=torch.int32)]).index_select(0, every)
    del seen, place
    posts = torch.empty(len(every))
    t = torch.full((ns, nt), 1.0 / nt)
    for _ in range(iterations):
        tu = torch.cat([t.view(-1).index_select(0, cells), torch.zeros(1)])
        p = tu.index_select(0, every)
        offset = 0
        for shape in shapes:
            n = shape.numel()
            block = p[offset : offset + n].view(shape)
            out = posts[offset : offset + n].view(shape)
            torch.div(block, block.sum(dim=1, keepdim=True).clamp(min=1e-30), out=out)
            offset += n
        # Expected counts: one serial (so deterministic) sum per cell, in the pairs' order.
        counts = torch.bincount(every, posts, minlength=used + 1)[:used]
        counts = torch.zeros(ns * nt).index_copy_(0, cells, counts).view(ns, nt)
        t = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1e-30)).float()
    return t, torch.from_numpy(sources), torch.from_numpy(targets)


def _rows(values: np.ndarray, lengths: np.ndarray, lead: int | None = None) -> list:
    """`values` cut into consecutive rows of `lengths` (each row led by `lead` if given)."""
    cuts = np.cumsum(lengths)[:-1]
    rows = np.split(values, cuts)
    return rows if lead is None else [np.concatenate(([lead], r)) for r in rows]


def _padded(rows: list, lengths: np.ndarray, pick: np.ndarray, width: int = 0) -> torch.Tensor:
    """rows[pick] as a [len(pick), longest] tensor padded with -1."""
    out = np.full((len(pick), max(width, int(lengths.max()))), -1, dtype=np.int64)
    for r, i in enumerate(pick):
        out[r, : lengths[r]] = rows[i]
    return torch.from_numpy(out)


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
