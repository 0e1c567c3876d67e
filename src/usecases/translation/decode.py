"""Translate with a trained model: length-sorted batches, greedy or beam search, repeated n-grams
blocked and the output length held between a floor (a fraction of the expected length) and a
cap relative to the source: small models trained on little data otherwise stop after a few
words or fall into loops such as "nu nu nu ..."."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from usecases.translation.batching import pad
from usecases.translation.models import decoding_attention
from usecases.translation.vocab import Codec

log = logging.getLogger(__name__)

MAX_SOURCE_TOKENS = 256  # longer inputs are translated in pieces (see `split_long`)
# A greedy batch drops its ended rows once they are this share of its rows (`greedy`).
COMPACT_AT = 0.125


@dataclass
class DecodeOptions:
    beams: int = 1
    no_repeat_ngram: int = 3
    repetition_penalty: float = 1.2
    length_a: float = 1.5  # at most a * source tokens + b new tokens
    length_b: int = 10
    # No end of sentence before `min_length` x the expected length of the translation (0 = off):
    # the source's tokens x the direction's median target/source token ratio on the training
    # pairs. Small models trained briefly stop far too early (length ratios of 0.2-0.5 seen).
    min_length: float = 0.0
    batch_size: int = 64
    # Names and numbers copied whole (`CopyPlan`; 0 = off): the bonus on the logit of the next
    # subword of the source's next name or number. Greedy decoding only.
    copy_bonus: float = 0.0
    # The lexical prior on the diagonal (`LexicalDiagonal`; 0 = off): this share of the lexical
    # prior's bag is taken, at each step, from the source subwords near that step's place on
    # the diagonal (a Gaussian over source positions, `diagonal_width` subwords wide). Greedy
    # decoding of a model with the lexical prior only.
    lexical_diagonal: float = 0.0
    diagonal_width: float = 0.6

    @classmethod
    def from_meta(cls, meta: dict[str, Any], **overrides: Any) -> DecodeOptions:
        d = {k: meta["decode"][k] for k in cls.__dataclass_fields__ if k in meta.get("decode", {})}
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)


class MinLength:
    """A `transformers` logits processor: the end token is barred until each row has produced
    its own minimum number of tokens."""

    def __init__(self, min_new: torch.Tensor, eos_id: int) -> None:
        self.min_new, self.eos_id = min_new, eos_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        produced = input_ids.shape[1] - 1  # after the decoder's start token
        scores[self.min_new > produced, self.eos_id] = float("-inf")
        return scores


def source_length(ids: list[int]) -> int:
    """Tokens of the sentence itself (the tag and the end token left out)."""
    return max(0, len(ids) - 2)


def split_long(ids: list[int], limit: int = MAX_SOURCE_TOKENS) -> list[list[int]]:
    """A source longer than the model's positions, cut into pieces of at most `limit` tokens
    (the tag is repeated at the head of every piece, the end token closes each)."""
    tag, body, end = ids[0], ids[1:-1], ids[-1]
    step = limit - 2
    return [[tag, *body[i : i + step], end] for i in range(0, max(1, len(body)), step)]


def _penalise_and_block(
    seqs: torch.Tensor,
    scores: torch.Tensor,
    penalty: float,
    ngram: int,
    column: torch.Tensor | None = None,
) -> torch.Tensor:
    """`transformers`' repetition penalty (every token already in the row, the start token
    included: a positive logit divided by `penalty`, a negative one multiplied) and no-repeat
    n-gram rule (a token that would complete an n-gram already in the row is barred). With
    `column` (`Columns.of`), `scores` holds only the allowed subwords' columns: a token outside
    them, whose logit would be -inf, is left as it is."""
    if penalty != 1.0:
        if column is None:
            seen = scores.gather(1, seqs)
            penalised = torch.where(seen < 0, seen * penalty, seen / penalty)
            scores = scores.scatter(1, seqs, penalised)
        else:
            cols = column[seqs]
            inside = cols < scores.shape[1]
            seen = scores.gather(1, cols.clamp(max=scores.shape[1] - 1))
            penalised = torch.where(seen < 0, seen * penalty, seen / penalty)
            rows = torch.arange(len(seqs), device=seqs.device)[:, None].expand_as(cols)
            scores.index_put_((rows[inside], cols[inside]), penalised[inside])
    if ngram > 0 and seqs.shape[1] >= ngram:
        prefix = seqs[:, seqs.shape[1] + 1 - ngram :]
        windows = seqs.unfold(1, ngram, 1)
        hit = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        width = scores.shape[1]
        last = windows[..., -1] if column is None else column[windows[..., -1]]
        banned = torch.zeros((scores.shape[0], width + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(hit, last.clamp(max=width), width), True)
        scores = scores.masked_fill(banned[:, :width], float("-inf"))
    return scores


class Columns:
    """The columns of a greedy batch's scores when it may write only `allowed` (sorted ids):
    `ids[c]` is column c's subword and `of[y]` subword y's column (len(allowed) outside them).
    The decoding rules then work on these columns instead of the whole vocabulary, and give
    the same choices: every subword outside them scores -inf on the whole vocabulary."""

    def __init__(self, allowed: torch.Tensor, size: int) -> None:
        self.ids = allowed
        self.of = torch.full((size + 1,), len(allowed), dtype=torch.long, device=allowed.device)
        self.of[allowed] = torch.arange(len(allowed), device=allowed.device)


class CopyPlan:
    """One greedy batch's plan for copying its sources' names and numbers (the subwords
    `lexicon.copyable` marks: capitalised words after the first, numbers) whole and in order.

    A model trained for minutes keeps few of them (about 1 in 10 of those its reference keeps,
    on held-out FLORES-200 dev): its copy prior offers them as a bag at every position. Here each
    copyable word of a source is offered in turn, from the step at its place on the diagonal
    (its subword position in the source x the expected target/source length ratio): the logit
    of its first subword gains `bonus` until the model writes it, then each next subword gains
    it while the model follows, and after its last subword a subword that would glue on to it
    (`continues`: no word start, a letter or digit first) is barred. A word the model leaves
    half-written is dropped; a word written before its turn, up to WINDOW words ahead, moves
    the plan on to it. `bias` adds the bonus to one step's scores, `advance` reads the tokens
    chosen, `select` keeps rows, as `incremental.PrenormSteps` does."""

    WINDOW = 2

    def __init__(
        self,
        x: torch.Tensor,
        flags: torch.Tensor,
        continues: torch.Tensor,
        ratio: float,
        bonus: float,
    ) -> None:
        from usecases.translation.lexicon import WORD_START, copyable

        ids = x[:, 1:]
        flags = flags.to(x.device)
        copy = copyable(x, flags)
        start = (flags[ids].long() & WORD_START).bool()
        after = torch.zeros_like(copy)
        after[:, 1:] = copy[:, :-1]
        begins = (copy & (start | ~after)).tolist()  # a word's first copyable subword
        pieces = ids.tolist()
        words: list[list[tuple[int, list[int]]]] = [[] for _ in pieces]  # (position, subwords)
        for row, pos in copy.nonzero().tolist():
            if begins[row][pos]:
                words[row].append((pos, []))
            words[row][-1][1].append(pieces[row][pos])
        rows, device = x.shape[0], x.device
        width = max(1, max(len(w) for w in words))
        longest = max((len(p) for w in words for _, p in w), default=1)
        self.ids = torch.full((rows, width, longest), -1, dtype=torch.long)
        self.size = torch.zeros(rows, width, dtype=torch.long)
        self.at = torch.zeros(rows, width)
        for row, ws in enumerate(words):
            for n, (pos, p) in enumerate(ws):
                self.ids[row, n, : len(p)] = torch.tensor(p)
                self.size[row, n] = len(p)
                self.at[row, n] = pos * ratio
        self.ids, self.size, self.at = self.ids.to(device), self.size.to(device), self.at.to(device)
        self.count = torch.tensor([len(w) for w in words], device=device)
        self.k = torch.zeros(rows, dtype=torch.long, device=device)  # the word whose turn it is
        self.j = torch.zeros(rows, dtype=torch.long, device=device)  # its subwords written
        self.glued = torch.zeros(0, dtype=torch.long, device=device)  # rows: a word just ended
        self.pending = bool((self.count > 0).any())  # a row has a word still to offer
        self.continues = continues.to(device=device, dtype=torch.bool)
        self.bonus = bonus
        self.column: torch.Tensor | None = None  # `restrict`

    def restrict(self, columns: Columns) -> None:
        """Bias scores that hold only `columns`' subwords (`greedy`)."""
        inside = columns.ids < len(self.continues)
        continues = torch.zeros(len(columns.ids), dtype=torch.bool, device=self.continues.device)
        continues[inside] = self.continues[columns.ids[inside]]
        self.continues = continues
        self.column = columns.of

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the next subword of each row's word whose turn it is [R], whether the row has a
        word left [R])."""
        rows = torch.arange(len(self.k), device=self.k.device)
        word = self.ids[rows, self.k.clamp(max=self.ids.shape[1] - 1)]
        nxt = word.gather(1, self.j.clamp(max=word.shape[1] - 1)[:, None])[:, 0]
        return nxt, self.k < self.count

    def bias(self, scores: torch.Tensor, step: int) -> torch.Tensor:
        if self.glued.numel():  # only rows whose word has just ended
            size = min(scores.shape[1], len(self.continues))
            barred = scores[self.glued, :size].masked_fill(self.continues[:size], float("-inf"))
            scores[self.glued, :size] = barred
        if not self.pending:
            return scores
        nxt, left = self._next()
        rows = torch.arange(len(self.k), device=self.k.device)
        due = self.at[rows, self.k.clamp(max=self.at.shape[1] - 1)] <= step
        r = (left & ((self.j > 0) | due)).nonzero()[:, 0]
        cols = nxt[r] if self.column is None else self.column[nxt[r]]
        scores[r, cols] += self.bonus
        return scores

    def advance(self, tokens: torch.Tensor) -> None:
        if not self.pending:
            self.glued = self.glued[:0]  # the glue rule holds for one step
            return
        nxt, left = self._next()
        inside = left & (self.j > 0)
        followed = inside & (tokens == nxt)
        # Not inside a word: did the model write the first subword of this word or of one of
        # the next WINDOW - 1?
        ahead = self.k[:, None] + torch.arange(self.WINDOW, device=self.k.device)[None, :]
        firsts = self.ids[:, :, 0].gather(1, ahead.clamp(max=self.ids.shape[1] - 1))
        hit = (
            (firsts == tokens[:, None]) & (ahead < self.count[:, None]) & (left & ~inside)[:, None]
        )
        started = hit.any(dim=1)
        k = torch.where(started, ahead.gather(1, hit.long().argmax(dim=1)[:, None])[:, 0], self.k)
        j = torch.where(started, torch.ones_like(self.j), self.j)
        j = torch.where(followed, j + 1, j)
        size = self.size.gather(1, k.clamp(max=self.size.shape[1] - 1)[:, None])[:, 0]
        done = (started | followed) & (j >= size)
        left_half = inside & ~followed
        self.k = torch.where(done | left_half, k + 1, k)
        self.j = torch.where(done | left_half, torch.zeros_like(j), j)
        self.glued = done.nonzero()[:, 0]
        self.pending = bool((self.k < self.count).any())

    def select(self, keep: torch.Tensor) -> None:
        ended = torch.zeros(len(self.k), dtype=torch.bool, device=self.k.device)
        ended[self.glued] = True
        for name in ("ids", "size", "at", "count", "k", "j"):
            setattr(self, name, getattr(self, name)[keep])
        self.glued = ended[keep].nonzero()[:, 0]
        self.pending = bool((self.k < self.count).any())


def has_lexicon(model: torch.nn.Module) -> bool:
    """Whether `model` has a lexical prior with its tables set (`LexicalPriorMixin`)."""
    return hasattr(model, "lex_idx") and model.lex_idx.shape[0] > 0


class LexicalDiagonal:
    """One greedy batch's lexical prior on the diagonal. The model's lexical prior adds
    g * log p(y | x) to every position's logits, p(y | x) = (t(y | NULL) + sum_i t(y | x_i)) /
    (n + 1) the same bag at every step (`lexicon.source_bias`). A word-for-word glossary, which
    scores above a model trained for minutes, writes each source word's translation in the
    source's order; here step j's bag weighs the source subwords by their distance to j's place
    on the diagonal (source position j / the direction's expected target/source token ratio):
    p_j(y | x) = (t(y | NULL) + n * sum_i w_ji t(y | x_i)) / (n + 1), w_j a Gaussian of
    `width` subwords over the source's positions, summing to 1. The logits then hold
    g * log((1 - share) * p(y | x) + share * p_j(y | x)) instead of g * log p(y | x). `bias`
    changes one step's logits, `select` keeps rows, as `CopyPlan` does."""

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        ratio: float | torch.Tensor,
        share: float,
        width: float,
    ) -> None:
        from usecases.translation.lexicon import EOS, EPS, NULL, PAD

        rows = model.lex_row[x[:, 0]]  # the target tag's table
        lang = rows.clamp(min=0)
        ids = x[:, 1:]
        self.content = (ids != PAD) & (ids != EOS)
        src = ids.masked_fill(~self.content, NULL)
        cols = model.lex_idx[lang[:, None], src].long().flatten(1)  # [R, S * k]
        self.vals = model.lex_prob[lang[:, None], src].float() * self.content[..., None]  # [R,S,k]
        self.n = self.content.sum(dim=1).float()
        null = torch.zeros(x.shape[0], model.config.vocab_size, device=x.device)
        null.scatter_add_(1, model.lex_idx[lang, NULL].long(), model.lex_prob[lang, NULL].float())
        bag = null.scatter_add(1, cols, self.vals.flatten(1)) / (self.n[:, None] + 1)
        # Only the subwords the table offers for a row's source can change: each row works on
        # its own columns (`self.cols`, padded with column 0 and a zero weight), which `slot`
        # maps the table's entries to.
        own = [torch.unique(c, return_inverse=True) for c in cols]
        width_cols = max(len(u) for u, _ in own)
        self.cols = torch.zeros(len(own), width_cols, dtype=torch.long, device=x.device)
        self.used = torch.zeros(len(own), width_cols, dtype=torch.bool, device=x.device)
        self.slot = torch.stack([inverse for _, inverse in own])
        for r, (u, _) in enumerate(own):
            self.cols[r, : len(u)] = u
            self.used[r, : len(u)] = True
        self.used &= (rows >= 0)[:, None]  # no table for this tag: no change
        self.null = null.gather(1, self.cols)
        self.bag = bag.gather(1, self.cols)
        self.log_bag = torch.log(self.bag + EPS)
        self.position = self.content.long().cumsum(dim=1).float() - 1  # among the content subwords
        self.gate = float(model.lex_gate.detach())
        # each row's expected target/source token ratio, in float64 as a Python float divides
        ratio = torch.as_tensor(ratio, dtype=torch.float64, device=x.device)
        self.ratio = ratio.clamp(min=1e-6).expand(x.shape[0])
        self.share, self.width, self.eps = share, width, EPS

    def change(self, steps: torch.Tensor) -> torch.Tensor:
        """log((1 - share) p(y | x) + share p_j(y | x)) - log p(y | x) at the steps `steps` of
        each row's translation ([R, T], j counted from 0 after the start token), on the row's
        columns `self.cols`: [R, T, columns], the gate not applied. Greedy decoding asks for
        one step at a time (`bias`); training asks for every target position at once
        (`models.LexicalPriorMixin`, `data.diagonal_training`)."""
        place = (steps.double() / self.ratio[:, None]).float()[..., None]  # [R, T, 1]
        content = self.content[:, None, :]
        w = torch.exp(-((self.position[:, None, :] - place) ** 2) / (2 * self.width**2)) * content
        w = w * (self.n[:, None] / w.sum(dim=2).clamp(min=1e-12))[..., None]  # sums to n
        rows, t = w.shape[:2]
        spread = (self.vals[:, None] * w[..., None]).flatten(2)  # [R, T, S * k]
        slot = self.slot[:, None, :].expand(rows, t, -1)
        near = self.null[:, None, :].expand(rows, t, -1).scatter_add(2, slot, spread)
        bag = self.bag[:, None, :]
        p = (1 - self.share) * bag + self.share * near / (self.n[:, None, None] + 1)
        return (torch.log(p + self.eps) - self.log_bag[:, None, :]) * self.used[:, None, :]

    def restrict(self, columns: Columns) -> None:
        """Bias scores that hold only `columns`' subwords (`greedy`): a subword outside them
        (-inf on the whole vocabulary) gets no change, on the last column (adding 0)."""
        cols = columns.of[self.cols]
        self.used &= cols < len(columns.ids)
        self.cols = cols.clamp(max=len(columns.ids) - 1)

    def bias(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        steps = torch.full((len(self.n), 1), step, dtype=torch.long, device=logits.device)
        change = self.gate * self.change(steps)[:, 0]
        return logits.scatter_add_(1, self.cols, change)  # the logits' columns (`restrict`)

    def select(self, keep: torch.Tensor) -> None:
        for name in (
            "content",
            "vals",
            "n",
            "cols",
            "used",
            "slot",
            "null",
            "bag",
            "log_bag",
            "position",
            "ratio",
        ):
            setattr(self, name, getattr(self, name)[keep])


@torch.no_grad()
def greedy(
    model: torch.nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    first: torch.Tensor,
    max_new: int,
    min_new: torch.Tensor,
    opts: DecodeOptions,
    eos_id: int,
    allowed: torch.Tensor | None = None,
    copy: CopyPlan | None = None,
    diagonal: LexicalDiagonal | None = None,
    only_allowed_columns: bool = True,
) -> list[list[int]]:
    """Greedy decoding of one padded batch `x` (its `mask`: 1 on tokens, 0 on padding): the
    choices of `model.generate(num_beams=1)` with the same repetition penalty, no-repeat
    n-grams, end-of-sentence floor `min_new` (per row) and forced end at `max_new` tokens, but a
    row leaves the batch as soon as it has ended, so a batch costs what its rows still need
    rather than what its longest row needs. With `allowed` (sorted subword ids, the end token
    among them) no other subword is written; with `copy`, the sources' names and numbers are
    offered as it plans; with `diagonal`, the lexical prior leans on the diagonal. Rows come back
    as [start, tokens..., end]. With `allowed` and `incremental.PrenormSteps`, the rules work
    on the allowed subwords' columns only (`Columns`; `only_allowed_columns=False`: on the
    whole vocabulary, the others at -inf, the same choices at a higher cost)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    from usecases.translation import incremental
    from usecases.translation.models import encode

    enc = encode(model, x, mask)
    fast = (
        incremental.PrenormSteps(model, enc, mask, max_new, allowed)
        if incremental.supports(model)
        else None
    )
    barred = None  # PrenormSteps computes the allowed logits only; transformers' path masks
    if allowed is not None and fast is None:
        barred = OnlyAllowed(allowed, model.config.vocab_size)
    # PrenormSteps with `allowed`: the scores hold the allowed subwords' columns only.
    columns = None
    if only_allowed_columns and allowed is not None and fast is not None:
        columns = Columns(allowed, model.config.vocab_size)
    column, eos = (None, eos_id) if columns is None else (columns.of, int(columns.of[eos_id]))
    if columns is not None:
        for rule in (copy, diagonal):
            if rule is not None:
                rule.restrict(columns)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache()) if fast is None else None
    seqs = first.view(-1, 1)
    live = torch.arange(x.shape[0])  # batch row of each row of `seqs`
    running = torch.ones(x.shape[0], dtype=torch.bool)  # rows of `seqs` not ended yet
    done: dict[int, list[int]] = {}
    for step in range(max_new):
        if fast is not None:
            logits = fast.step(seqs[:, -1], spread=columns is None)
        else:
            logits = (
                model(
                    encoder_outputs=enc,
                    attention_mask=mask,
                    decoder_input_ids=seqs[:, -1:],
                    past_key_values=cache,
                    use_cache=True,
                )
                .logits[:, -1, :]
                .float()
            )
            if barred is not None:
                logits = barred(seqs, logits)
        if diagonal is not None:
            logits = diagonal.bias(logits, step)
        scores = _penalise_and_block(
            seqs, logits, opts.repetition_penalty, opts.no_repeat_ngram, column
        )
        if copy is not None:
            scores = copy.bias(scores, step)
        if step == max_new - 1:  # the last step may only end the sentence
            scores = torch.full_like(scores, float("-inf"))
            scores[:, eos] = 0
        scores[min_new > step, eos] = float("-inf")
        best = scores.argmax(dim=-1, keepdim=True)
        seqs = torch.cat([seqs, best if columns is None else columns.ids[best]], dim=1)
        if copy is not None:
            copy.advance(seqs[:, -1])
        ended = running & (seqs[:, -1] == eos_id)
        if not bool(ended.any()):
            continue
        for r in ended.nonzero().flatten().tolist():
            done[int(live[r])] = seqs[r].tolist()
        running &= ~ended
        left = int(running.sum())
        if left == 0:
            break
        # Rows that ended ride along (their tokens are ignored) until they are a share
        # COMPACT_AT of the rows: dropping them costs a copy of every row's state.
        if len(running) - left < COMPACT_AT * len(running):
            continue
        keep = running.nonzero().flatten()
        seqs, live, min_new, running = seqs[keep], live[keep], min_new[keep], running[keep]
        if copy is not None:
            copy.select(keep)
        if diagonal is not None:
            diagonal.select(keep)
        if fast is not None:
            fast.select(keep)
            continue
        for key, value in enc.items():
            enc[key] = value[keep]
        mask = mask[keep]
        cache.batch_select_indices(keep)
    for r in running.nonzero().flatten().tolist():
        done.setdefault(int(live[r]), seqs[r].tolist())
    return [done[b] for b in range(x.shape[0])]


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    sources: list[list[int]],
    opts: DecodeOptions,
    codec: Codec,
    min_ratio: float = 0.0,
    starts: list[int] | None = None,
    vocabulary: torch.Tensor | None = None,
    length_ratio: float = 1.0,
) -> list[list[int]]:
    """Token ids out for token ids in, in input order; batches are sorted by length. With
    `min_ratio`, no output ends before min_ratio x its source's tokens; `starts` gives each
    sentence's first decoder input (default: the codec's `start_id`); with `vocabulary` (a
    boolean mask over the subword ids: the target language's) each batch writes only those
    subwords, its sources' own and the end token. `length_ratio` (the direction's expected
    target/source token ratio) places the sources' names and numbers on the diagonal when
    `opts.copy_bonus` copies them (`CopyPlan`). A model that trains on the
    math attention kernel decodes on the fused one (`models.decoding_attention`) where it decodes
    through `transformers` (greedy decoding of the pre-norm models goes through
    `incremental.PrenormSteps` and its own attention)."""
    model.eval()
    with decoding_attention(model):
        return _generate(model, sources, opts, codec, min_ratio, starts, vocabulary, length_ratio)


class OnlyAllowed:
    """A `transformers` logits processor: subwords outside `allowed` (ids) are barred."""

    def __init__(self, allowed: torch.Tensor, size: int) -> None:
        self.outside = torch.ones(size, dtype=torch.bool, device=allowed.device)
        self.outside[allowed] = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(self.outside.to(scores.device), float("-inf"))


def allowed_ids(
    vocabulary: torch.Tensor, words: torch.Tensor, size: int, eos_id: int
) -> torch.Tensor:
    """The sorted subword ids a batch may write: `vocabulary`'s (a mask, shorter than the
    model's `size` ids when SentencePiece made fewer pieces), the sources' own (names and
    numbers the target language's training text never held) and the end token."""
    mask = torch.zeros(size, dtype=torch.bool, device=words.device)
    mask[: len(vocabulary)] = vocabulary[:size].to(words.device)
    mask[words[words < size]] = True
    mask[eos_id] = True
    return mask.nonzero()[:, 0]


def _generate(
    model: torch.nn.Module,
    sources: list[list[int]],
    opts: DecodeOptions,
    codec: Codec,
    min_ratio: float,
    starts: list[int] | None,
    vocabulary: torch.Tensor | None,
    length_ratio: float,
) -> list[list[int]]:
    from transformers import LogitsProcessorList

    flags = getattr(model, "copy_flags", None)
    copying = opts.copy_bonus > 0
    if copying and flags is None:
        raise ValueError(
            f"copy_bonus={opts.copy_bonus}: this model has no copy flags (the copy prior's or "
            "the copy pointer's) to mark the names and numbers to copy; decode with copy_bonus=0"
        )
    if copying and opts.beams > 1:
        log.warning("copy_bonus: names and numbers are copied by greedy decoding only (beams=1)")
    leaning = opts.lexical_diagonal > 0
    if leaning and not has_lexicon(model):
        raise ValueError(
            f"lexical_diagonal={opts.lexical_diagonal}: this model has no lexical prior's "
            "tables to place on the diagonal; decode with lexical_diagonal=0"
        )
    if leaning and opts.beams > 1:
        log.warning("lexical_diagonal: greedy decoding only (beams=1); beam search uses the bag")

    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), opts.batch_size):
        idx = order[start : start + opts.batch_size]
        x = pad([sources[i] for i in idx], codec.pad_id)
        mask = pad([[1] * len(sources[i]) for i in idx], 0)
        first = torch.tensor([codec.start_id if starts is None else starts[i] for i in idx])
        max_new = int(opts.length_a * x.shape[1] + opts.length_b)
        floor = torch.tensor([int(min_ratio * source_length(sources[i])) for i in idx])
        floor = floor.clamp(max=max_new - 1)
        allowed = None
        if vocabulary is not None:
            size = model.config.vocab_size
            words = x[:, 1:][mask[:, 1:].bool()]  # the sources' subwords: no tag, no padding
            allowed = allowed_ids(vocabulary, words, size, codec.eos_id)
        if opts.beams == 1:
            copy = None
            if copying:
                copy = CopyPlan(x, flags, codec.continues, length_ratio, opts.copy_bonus)
            diagonal = None
            if leaning:
                diagonal = LexicalDiagonal(
                    model, x, length_ratio, opts.lexical_diagonal, opts.diagonal_width
                )
            rows = greedy(
                model, x, mask, first, max_new, floor, opts, codec.eos_id, allowed, copy, diagonal
            )
        else:
            extra = {}
            processors: list = []
            if min_ratio > 0:
                processors.append(MinLength(floor.repeat_interleave(opts.beams), codec.eos_id))
            if allowed is not None:
                processors.append(OnlyAllowed(allowed, model.config.vocab_size))
            if processors:
                extra["logits_processor"] = LogitsProcessorList(processors)
            rows = model.generate(
                input_ids=x,
                attention_mask=mask,
                num_beams=opts.beams,
                do_sample=False,
                max_new_tokens=max_new,
                no_repeat_ngram_size=opts.no_repeat_ngram,
                repetition_penalty=opts.repetition_penalty,
                decoder_start_token_id=first,
                pad_token_id=codec.pad_id,
                eos_token_id=codec.eos_id,
                early_stopping=True,
                **extra,
            ).tolist()
        for row, i in zip(rows, idx, strict=True):
            out[i] = row
    return out


@dataclass
class Translator:
    """A trained model with its tokenizer and the expected target/source length ratio of each
    trained direction (for the length floor; 1.0 for a direction never trained)."""

    model: torch.nn.Module
    vocab: Codec
    length_ratios: dict[str, float] = field(default_factory=dict)
    # Each trained target language's output vocabulary (a boolean mask over the subword ids,
    # `task.direction_statistics`); a language without one may write any subword.
    target_vocab: dict[str, torch.Tensor] = field(default_factory=dict)

    def __call__(
        self, texts: list[str], src_lang: str, tgt_lang: str, opts: DecodeOptions
    ) -> list[str]:
        """Sentences in, sentences out (same order); over-long sentences are translated in
        pieces and joined; an empty or blank sentence gives an empty translation."""
        keep = [k for k, t in enumerate(texts) if t.strip()]
        pieces: list[list[int]] = []
        owner: list[int] = []
        encoded = self.vocab.encode_source([" ".join(texts[k].split()) for k in keep], tgt_lang)
        for k, ids in zip(keep, encoded, strict=True):
            parts = split_long(ids)
            pieces += parts
            owner += [k] * len(parts)
        expected = self.length_ratios.get(f"{src_lang}-{tgt_lang}", 1.0)
        ratio = opts.min_length * expected
        start = [self.vocab.start_for(tgt_lang)] * len(pieces)
        vocabulary = self.target_vocab.get(tgt_lang)
        ids = (
            generate(self.model, pieces, opts, self.vocab, ratio, start, vocabulary, expected)
            if pieces
            else []
        )
        out = [""] * len(texts)
        for k, text in zip(owner, self.vocab.decode(ids), strict=True):
            out[k] = f"{out[k]} {text}".strip()
        return out


# -- many test sets at once -------------------------------------------------------------------
# Decoding a model this small runs on matrices too small to keep two threads busy: on 2 cores,
# one process decoded 512 FLORES dev sentences in 13.1 s on one thread and 9.7 s on two, so two
# processes of one thread each translate about 1.5x faster than one process with two.
PARALLEL_FROM = 2000  # sentences; below this, starting worker processes costs more than it saves


def worker_count(workers: int, sentences: int) -> int:
    """How many worker processes: `workers`, or for 0 one per thread torch uses when there are
    at least PARALLEL_FROM sentences (else 1)."""
    if workers < 0:
        raise ValueError(f"workers={workers}: expected 0 (automatic) or more")
    if workers:
        return workers
    return torch.get_num_threads() if sentences >= PARALLEL_FROM else 1


_worker: Translator | None = None


def _start_worker(payload: bytes) -> None:
    import io

    global _worker
    torch.set_num_threads(1)
    _worker = torch.load(io.BytesIO(payload), weights_only=False)


def _translate_job(job: tuple[list[str], str, str, DecodeOptions]) -> list[str]:
    assert _worker is not None, "worker not started"
    return _worker(*job)


def translate_all(
    translate: Translator,
    jobs: list[tuple[list[str], str, str]],
    opts: DecodeOptions,
    workers: int = 0,
) -> list[list[str]]:
    """Every job's (sentences, source language, target language) translations, in job order.
    `workers` processes of one thread each share the jobs (0 = one per thread torch uses, when
    there are at least PARALLEL_FROM sentences). Each job is decoded whole by one process, with
    the same batches as in this one: the translations depend on `workers` only through
    floating-point rounding (one thread against several), which can break a near-tie."""
    import io
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    workers = worker_count(workers, sum(len(t) for t, _, _ in jobs))
    if any(t.device.type != "cpu" for t in translate.model.parameters()):
        workers = 1  # an accelerator decodes in this process
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [translate(texts, src, tgt, opts) for texts, src, tgt in jobs]
    buf = io.BytesIO()
    torch.save(translate, buf)
    # Longest jobs first, so that no process is left with a long one at the end.
    order = sorted(range(len(jobs)), key=lambda i: -sum(len(t) for t in jobs[i][0]))
    out: list[list[str]] = [[] for _ in jobs]
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),  # fork is unsafe once torch's thread pool has started
        initializer=_start_worker,
        initargs=(buf.getvalue(),),
    ) as pool:
        futures = {i: pool.submit(_translate_job, (*jobs[i], opts)) for i in order}
        for i, fut in futures.items():
            out[i] = fut.result()
    return out
