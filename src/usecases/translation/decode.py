"""Translate with a trained model: length-sorted batches, greedy or beam search, with the
output length capped relative to the source and repeated n-grams blocked (small models trained
on little data otherwise fall into loops such as "nu nu nu ...")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from usecases.translation.batching import pad
from usecases.translation.vocab import Codec

MAX_SOURCE_TOKENS = 256  # longer inputs are translated in pieces (see `split_long`)


@dataclass
class DecodeOptions:
    beams: int = 1
    no_repeat_ngram: int = 3
    repetition_penalty: float = 1.2
    length_a: float = 1.5  # at most a * source tokens + b new tokens
    length_b: int = 10
    batch_size: int = 64

    @classmethod
    def from_meta(cls, meta: dict[str, Any], **overrides: Any) -> DecodeOptions:
        d = {k: meta["decode"][k] for k in cls.__dataclass_fields__ if k in meta.get("decode", {})}
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)


def split_long(ids: list[int], limit: int = MAX_SOURCE_TOKENS) -> list[list[int]]:
    """A source longer than the model's positions, cut into pieces of at most `limit` tokens
    (the tag is repeated at the head of every piece, the end token closes each)."""
    tag, body, end = ids[0], ids[1:-1], ids[-1]
    step = limit - 2
    return [[tag, *body[i : i + step], end] for i in range(0, max(1, len(body)), step)]


@torch.no_grad()
def generate(
    model: torch.nn.Module, sources: list[list[int]], opts: DecodeOptions, codec: Codec
) -> list[list[int]]:
    """Token ids out for token ids in, in input order; batches are sorted by length."""
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), opts.batch_size):
        idx = order[start : start + opts.batch_size]
        x = pad([sources[i] for i in idx], codec.pad_id)
        max_new = int(opts.length_a * x.shape[1] + opts.length_b)
        y = model.generate(
            input_ids=x,
            attention_mask=pad([[1] * len(sources[i]) for i in idx], 0),
            num_beams=opts.beams,
            do_sample=False,
            max_new_tokens=max_new,
            no_repeat_ngram_size=opts.no_repeat_ngram,
            repetition_penalty=opts.repetition_penalty,
            decoder_start_token_id=codec.start_id,
            pad_token_id=codec.pad_id,
            eos_token_id=codec.eos_id,
            early_stopping=opts.beams > 1,
        )
        for row, i in zip(y.tolist(), idx, strict=True):
            out[i] = row
    return out


def translate(
    model: torch.nn.Module, vocab: Codec, texts: list[str], tgt_lang: str, opts: DecodeOptions
) -> list[str]:
    """Sentences in, sentences out (same order); over-long sentences are translated in pieces
    and joined; an empty or blank sentence gives an empty translation."""
    pieces: list[list[int]] = []
    owner: list[int] = []
    keep = [k for k, t in enumerate(texts) if t.strip()]
    encoded = vocab.encode_source([" ".join(texts[k].split()) for k in keep], tgt_lang)
    for k, ids in zip(keep, encoded, strict=True):
        for p in split_long(ids):
            pieces.append(p)
            owner.append(k)
    decoded = vocab.decode(generate(model, pieces, opts, vocab)) if pieces else []
    out = [""] * len(texts)
    for k, text in zip(owner, decoded, strict=True):
        out[k] = f"{out[k]} {text}".strip()
    return out


def stream(
    model: torch.nn.Module,
    vocab: Codec,
    lines: Iterator[str],
    tgt_lang: str,
    opts: DecodeOptions,
    chunk: int = 64,
) -> Iterator[str]:
    """Translations of `lines` as they come (one chunk at a time): a file of any length."""
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) == chunk:
            yield from translate(model, vocab, buf, tgt_lang, opts)
            buf = []
    if buf:
        yield from translate(model, vocab, buf, tgt_lang, opts)
