"""One shared SentencePiece vocabulary for every language, with a target-language tag per
language (`<2fon>`): the source is `<2tgt> source </s>`, the target `target </s>`. The decoder's
first input is either the pad token (`decoder_start="pad"`) or the target's tag again
(`"tag"`), which tells the decoder from its first step which language to write.

Training is deterministic: the sentences go in a fixed order, one thread, no sampling.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from usecases.core.data import DataError

if TYPE_CHECKING:
    import torch

PAD, UNK, EOS = 0, 1, 2
DECODER_STARTS = ("pad", "tag")


def tag(lang: str) -> str:
    return f"<2{lang}>"


def _is_tag(piece: str) -> bool:
    return piece.startswith("<2") and piece.endswith(">") and piece[2:-1].isalpha()


def pack_ids(ids: list[int], size: int) -> str:
    """A set of ids below `size` as text for a release's metadata: the base64 of a bitmask
    (1,000 bytes for 8,000 ids, against ~30 kB as a JSON list)."""
    import base64

    import numpy as np

    mask = np.zeros(size, dtype=bool)
    mask[np.asarray(ids, dtype=np.int64)] = True
    return f"{size}:" + base64.b64encode(np.packbits(mask).tobytes()).decode("ascii")


def unpack_ids(text: str) -> torch.Tensor:
    """`pack_ids`' set as a boolean mask over the ids."""
    import base64

    import numpy as np
    import torch

    size, _, data = text.partition(":")
    bits = np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))
    return torch.from_numpy(bits[: int(size)].astype(bool))


def train_spm(sentences: list[str], languages: list[str], vocab_size: int, out: Path) -> Path:
    """Train a unigram SentencePiece model on `sentences` and write it atomically to `out`."""
    import sentencepiece as spm

    from usecases.core.io import atomic_path

    if not sentences:
        raise DataError("no training sentences for the SentencePiece model")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=PAD,
        unk_id=UNK,
        eos_id=EOS,
        bos_id=-1,
        user_defined_symbols=[tag(x) for x in languages],
        input_sentence_size=0,  # every sentence: no random sampling
        shuffle_input_sentence=False,
        num_threads=1,
        hard_vocab_limit=False,  # a tiny corpus gets the vocabulary it can support
        normalization_rule_name="identity",  # text is already NFC; keep it as it is
        minloglevel=2,
    )
    with atomic_path(out) as tmp:
        tmp.write_bytes(model.getvalue())
    return out


class Codec(Protocol):
    """What training and decoding need from a tokenizer."""

    pad_id: int
    eos_id: int
    start_id: int  # the decoder's first input, unless `start_for` names the target's tag

    def __len__(self) -> int: ...
    def tag_id(self, lang: str) -> int: ...
    def start_for(self, lang: str) -> int: ...
    def encode_source(
        self, texts: list[str], tgt_lang: str, max_tokens: int | None = None
    ) -> list[list[int]]: ...
    def encode_target(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]: ...
    def decode(self, ids: list[list[int]]) -> list[str]: ...


class Vocab:
    """Encode and decode with a trained SentencePiece model."""

    pad_id, eos_id, start_id = PAD, EOS, PAD

    def __init__(self, model: bytes | Path, decoder_start: str = "pad") -> None:
        import sentencepiece as spm

        if decoder_start not in DECODER_STARTS:
            raise ValueError(
                f"decoder_start {decoder_start!r}: expected one of {', '.join(DECODER_STARTS)}"
            )
        self.decoder_start = decoder_start

        data = Path(model).read_bytes() if isinstance(model, Path) else model
        self.sp = spm.SentencePieceProcessor(model_proto=data)
        self.proto = data
        # Language tags and control pieces never appear in a decoded sentence.
        self.hidden = {i for i in range(len(self)) if _is_tag(self.sp.id_to_piece(i))}
        self.hidden |= {i for i in range(len(self)) if self.sp.is_control(i)}

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def tag_id(self, lang: str) -> int:
        i = self.sp.piece_to_id(tag(lang))
        if i == UNK:
            raise DataError(f"language {lang!r} has no tag {tag(lang)} in this vocabulary")
        return i

    def start_for(self, lang: str) -> int:
        """The decoder's first input when writing `lang`."""
        return self.tag_id(lang) if self.decoder_start == "tag" else self.start_id

    def encode_source(
        self, texts: list[str], tgt_lang: str, max_tokens: int | None = None
    ) -> list[list[int]]:
        t = self.tag_id(tgt_lang)
        out = []
        for ids in self.sp.encode(texts):
            if max_tokens is not None:
                ids = ids[: max_tokens - 2]
            out.append([t, *ids, EOS])
        return out

    def encode_target(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
        out = []
        for ids in self.sp.encode(texts):
            if max_tokens is not None:
                ids = ids[: max_tokens - 1]
            out.append([*ids, EOS])
        return out

    @functools.cached_property
    def continues(self) -> torch.Tensor:
        """Per piece, whether it continues a word with a letter or digit (no word-start
        mark): what may not follow a copied name or number (`decode.CopyPlan`)."""
        from usecases.translation.lexicon import continuation_flags

        return continuation_flags([self.sp.id_to_piece(i) for i in range(len(self))])

    def decode(self, ids: list[list[int]]) -> list[str]:
        # SentencePiece may learn fewer pieces than `data.vocab_size` on a small corpus, and the
        # model's output layer keeps that size: ids past the vocabulary are not text.
        size = self.sp.get_piece_size()
        keep = [[i for i in seq if EOS < i < size and i not in self.hidden] for seq in ids]
        return self.sp.decode(keep)


class HFCodec:
    """A pretrained checkpoint's own tokenizer (any `transformers` seq2seq model), with the
    language tags added as special tokens: the same `<2fon> source` convention as Vocab."""

    def __init__(self, checkpoint: str, languages: list[str]) -> None:
        from transformers import AutoConfig, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(checkpoint)
        start_id = AutoConfig.from_pretrained(checkpoint).decoder_start_token_id
        self.tok.add_tokens([tag(x) for x in languages], special_tokens=True)
        if self.tok.pad_token_id is None or self.tok.eos_token_id is None:
            raise DataError(f"{checkpoint}: the tokenizer needs a pad and an end-of-sequence token")
        self.pad_id, self.eos_id = self.tok.pad_token_id, self.tok.eos_token_id
        self.start_id = self.pad_id if start_id is None else start_id

    def __len__(self) -> int:
        return len(self.tok)

    def tag_id(self, lang: str) -> int:
        i = self.tok.convert_tokens_to_ids(tag(lang))
        if i is None or i == self.tok.unk_token_id:
            raise DataError(f"language {lang!r} has no tag {tag(lang)} in this tokenizer")
        return i

    def start_for(self, lang: str) -> int:
        return self.start_id  # a pretrained checkpoint keeps its own decoder start

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []

    def encode_source(
        self, texts: list[str], tgt_lang: str, max_tokens: int | None = None
    ) -> list[list[int]]:
        t = self.tag_id(tgt_lang)
        cut = None if max_tokens is None else max_tokens - 2
        return [[t, *ids[:cut], self.eos_id] for ids in self._ids(texts)]

    def encode_target(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
        cut = None if max_tokens is None else max_tokens - 1
        return [[*ids[:cut], self.eos_id] for ids in self._ids(texts)]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [t.strip() for t in self.tok.batch_decode(ids, skip_special_tokens=True)]
