"""Sequence-to-sequence models of the translation use case.

`marian_tiny` / `marian_small` are Marian-style Transformer encoder-decoders built from a
`transformers.MarianConfig` and trained from scratch with the project's shared SentencePiece
vocabulary. `hf_seq2seq` wraps any local (or, online, hub) `transformers` seq2seq checkpoint
(M2M-100, NLLB, mT5, Marian...) for fine-tuning with its own tokenizer.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

from usecases.core.registry import register_model
from usecases.translation.vocab import EOS, PAD

SIZES = {
    # d_model, encoder layers, decoder layers, heads, feed-forward
    "marian_nano": (128, 3, 3, 4, 512),
    "marian_tiny": (256, 3, 3, 4, 1024),
    "marian_small": (512, 6, 6, 8, 2048),
    # Deep encoder, shallow decoder (Kasai et al. 2021): the training cost of 3+3, cheaper steps
    # when decoding.
    "marian_deep_shallow": (256, 6, 1, 4, 1024),
    "marian_nano_ds": (128, 6, 1, 4, 512),
}


# The attention kernels a model trained from scratch can use. "sdpa": torch's fused
# scaled-dot-product attention, which on a CPU picks its flash kernel; "math": the same function
# on torch's reference kernel (two matrix products and a softmax), whose backward pass on the
# default's short sentences (4 heads of 32, under 100 tokens) is far cheaper: a default training
# step took 0.165 s against 0.215 s (benchmarks/mt_attention.py); "eager": transformers' own
# matmul-softmax code (as fast as math there).
# Decoding through transformers (beam search, the copy pointer) runs on the fused kernel
# (`decoding_attention`); the pre-norm models' greedy decoding runs through
# `incremental.PrenormSteps`, which has its own attention.
ATTENTION = {"math": "sdpa_math", "sdpa": "sdpa", "eager": "eager"}

# The lexical prior on the diagonal in training (`LexicalPriorMixin.diagonal_change`): each
# sentence's expected target/source token ratio [B], the share of the bag, the width.
Diagonal = tuple[torch.Tensor, float, float]
# A change to some columns of each row of the logits: (columns [N, C], values [N, C]).
Sparse = tuple[torch.Tensor, torch.Tensor]


@functools.cache
def register_math_attention() -> str:
    """Registers "sdpa_math" with transformers (attention and mask): `sdpa` run on torch's math
    kernel. Called when a model that uses it is built; a scoring worker that unpickles one only
    decodes, on the fused kernel (`decoding_attention`), which needs no registration."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def math_attention(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel(SDPBackend.MATH):
            return sdpa_attention_forward(*args, **kwargs)

    AttentionInterface.register(ATTENTION["math"], math_attention)
    AttentionMaskInterface.register(ATTENTION["math"], sdpa_mask)
    return ATTENTION["math"]


@contextlib.contextmanager
def decoding_attention(model: torch.nn.Module) -> Iterator[None]:
    """`model` on torch's fused attention kernel while it decodes, if it trains on the math
    kernel: a decoding step has one new position per sentence and no backward pass, and there
    the fused kernel is the faster (benchmarks/mt_attention.py: 512 FLORES dev sentences on one
    thread in 10.8 s against 11.7 s, the same translations)."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != ATTENTION["math"]:
        yield
        return
    config._attn_implementation = ATTENTION["sdpa"]  # type: ignore[union-attr]
    try:
        yield
    finally:
        config._attn_implementation = ATTENTION["math"]  # type: ignore[union-attr]


def _attn_implementation(attention: str) -> str:
    if attention not in ATTENTION:
        raise ValueError(f"attention={attention!r}: expected one of {', '.join(ATTENTION)}")
    return register_math_attention() if attention == "math" else ATTENTION[attention]


def _shape(
    name: str, vocab_size: int, dropout: float, max_positions: int, attention: str = "sdpa"
) -> dict[str, Any]:
    """Config keywords shared by the Marian and pre-norm layouts (BART-family names)."""
    d, enc, dec, heads, ff = SIZES[name]
    return {
        "attn_implementation": _attn_implementation(attention),
        "vocab_size": vocab_size,
        "d_model": d,
        "encoder_layers": enc,
        "decoder_layers": dec,
        "encoder_attention_heads": heads,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": ff,
        "decoder_ffn_dim": ff,
        "dropout": dropout,
        "attention_dropout": 0.0,
        "activation_function": "gelu",
        "max_position_embeddings": max_positions,
        "scale_embedding": True,
        "tie_word_embeddings": True,
        "pad_token_id": PAD,
        "eos_token_id": EOS,
        "decoder_start_token_id": PAD,
        "forced_eos_token_id": EOS,
    }


def marian(
    name: str,
    vocab_size: int = 8000,
    dropout: float = 0.1,
    max_positions: int = 512,
    attention: str = "sdpa",
    **_: Any,
) -> Any:
    """Marian's post-layer-norm blocks, encoder and decoder sharing one embedding (keywords
    that only the pre-norm models take, the priors', are ignored)."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        decoder_vocab_size=vocab_size,
        share_encoder_decoder_embeddings=True,
        **_shape(name, vocab_size, dropout, max_positions, attention),
    )
    return MarianMTModel(config)


def prenorm(
    name: str,
    vocab_size: int,
    dropout: float = 0.1,
    max_positions: int = 512,
    lexical_prior: bool = False,
    copy_prior: bool = False,
    copy_pointer: bool = False,
    attention: str = "sdpa",
) -> Any:
    """The same shapes as `marian`, with pre-layer-norm blocks (mBART's layout): stable at the
    higher learning rates that a short CPU budget needs. With `lexical_prior`, the model adds
    a lexical translation prior to its logits (`LexicalPriorMixin`; its tables are learnt from
    the training pairs before the first update), and with `copy_prior` too, a prior that the
    translation writes the source's names and numbers as they are; with `copy_pointer`, a
    pointer that offers them position by position."""
    from transformers import MBartConfig, MBartForConditionalGeneration

    if (copy_prior or copy_pointer) and not lexical_prior:
        raise ValueError("copy_prior and copy_pointer need lexical_prior")
    shape = _shape(name.replace("pre_", "marian_"), vocab_size, dropout, max_positions, attention)
    config = MBartConfig(
        bos_token_id=EOS, copy_prior=copy_prior, copy_pointer=copy_pointer, **shape
    )
    return (_lexical_mbart_class() if lexical_prior else MBartForConditionalGeneration)(config)


class LexicalPriorMixin:
    """Adds `gate * log(p(y | x) + eps)` (see `usecases.translation.lexicon`) to the logits of
    an encoder-decoder. The tables are buffers saved with the weights; until `set_lexicon` is
    called they are empty and the model is its base class. The prior is computed from
    `input_ids` when the model encodes, or read from `encoder_outputs["lexical_bias"]` when
    the caller encoded once (`encode`) and decodes step by step.

    With `config.copy_prior`, a second term with its own learnt weight, `log(c(y | x) + eps)`
    (c: the share of the source's name and number subwords that are y; `lexicon.copy_bias`,
    with the vocabulary's `copy_flags` in a buffer), offers the source's names and numbers as
    they are: a table learnt from a few thousand pairs rarely holds them, and a small model
    otherwise rewrites them. With `config.copy_pointer`, a pointer offers them position by
    position instead of as one bag (`pointer_bias`)."""

    def _init_lexicon(self, config: Any) -> None:
        vocab_size = config.vocab_size
        self.register_buffer("lex_row", torch.full((vocab_size,), -1, dtype=torch.long))
        self.register_buffer("lex_idx", torch.zeros(0, vocab_size, 1, dtype=torch.int32))
        self.register_buffer("lex_prob", torch.zeros(0, vocab_size, 1))
        self.lex_gate = torch.nn.Parameter(torch.ones(()))
        self.copy_prior = bool(getattr(config, "copy_prior", False))
        self.copy_pointer = bool(getattr(config, "copy_pointer", False))
        if self.copy_prior:
            self.copy_gate = torch.nn.Parameter(torch.ones(()))
        if self.copy_prior or self.copy_pointer:
            # lexicon.copy_flags of the vocabulary (zeros until set: nothing to copy)
            self.register_buffer("copy_flags", torch.zeros(vocab_size, dtype=torch.int8))
        if self.copy_pointer:
            d = config.d_model
            self.pointer_query = torch.nn.Linear(d, d, bias=False)
            self.pointer_key = torch.nn.Linear(d, d, bias=False)
            self.pointer_null = torch.nn.Parameter(torch.zeros(d))  # the key of "copy nothing"
            self.pointer_gate = torch.nn.Parameter(torch.ones(()))
            self._decoder_state: torch.Tensor | None = None
            # The decoder's last hidden state (after its final layer norm), for the pointer's
            # query: MBart's forward returns only the logits computed from it.
            self.model.decoder.layer_norm.register_forward_hook(self._keep_decoder_state)

    def _keep_decoder_state(self, module, args, output) -> None:  # type: ignore[no-untyped-def]
        self._decoder_state = output

    def set_lexicon(self, tags: torch.Tensor, idx: torch.Tensor, prob: torch.Tensor) -> None:
        row = torch.full_like(self.lex_row, -1)
        row[tags.to(row.device)] = torch.arange(len(tags), device=row.device)
        self.lex_row = row
        self.lex_idx = idx.to(self.lex_row.device)
        self.lex_prob = prob.to(self.lex_row.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # A release's tables have their own shape: take it before the values are copied.
        for name in ("lex_idx", "lex_prob"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=self.lex_row.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]

    def lexical_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The priors of these sources, [B, V] each (none until the tables are set):
        `"lexical_bias"`, `"copy_bias"` with the copy prior, and with the copy pointer the
        `lexicon.pointer_inputs`."""
        from usecases.translation.lexicon import copy_bias, pointer_inputs, source_bias

        if self.lex_idx.shape[0] == 0:
            return {}
        out = {"lexical_bias": source_bias(input_ids, self.lex_row, self.lex_idx, self.lex_prob)}
        if self.copy_prior:
            out["copy_bias"] = copy_bias(input_ids, self.copy_flags)
        if self.copy_pointer:
            out.update(pointer_inputs(input_ids, self.copy_flags))
        return out

    def pointer_bias(
        self, logits: torch.Tensor, encoder_state: torch.Tensor, prior: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """`logits` [B, T, V] plus the copy pointer's bias: one attention head, its query the
        decoder's last state and its keys the encoder's output at the source's copyable
        positions, beside a learnt key that copies nothing, gives each target position a
        distribution a over those positions; subword y gains
        pointer_gate * log(1 + a(y) / EPS), a(y) the attention on the positions that hold y.
        That is pointer_gate * log(a(y) + EPS) up to a constant per position, which the softmax
        ignores, so only the source's copyable columns are touched, not all V."""
        from usecases.translation.lexicon import EPS

        state, self._decoder_state = self._decoder_state, None
        if state is None:
            raise RuntimeError("the copy pointer found no decoder state from this forward")
        query = self.pointer_query(state)  # [B, T, d]
        key = self.pointer_key(encoder_state[:, 1:])  # [B, S-1, d] (the tag left out)
        null = self.pointer_null.to(key.dtype).expand(key.shape[0], 1, -1)  # "copy nothing"
        keys = torch.cat([null, key], dim=1)
        allowed = torch.nn.functional.pad(prior["pointer_mask"], (1, 0), value=True)
        scores = (query @ keys.transpose(1, 2)).float() / query.shape[-1] ** 0.5
        scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
        attention = scores.softmax(dim=-1)[..., 1:]  # [B, T, S-1]
        mass = attention @ prior["pointer_same"]  # on each position's subword, all positions
        gain = self.pointer_gate * torch.log1p(mass / EPS) * prior["pointer_first"][:, None, :]
        ids = prior["pointer_ids"][:, None, :].expand_as(gain)
        return logits.scatter_add(2, ids, gain.to(logits.dtype))

    def _labelled(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        labels: torch.Tensor,
        caller: str,
        diagonal: Diagonal | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Sparse | None]:
        """The decoder's last states at the N labelled positions [N, d], the logits' bias of
        each sentence [B or 1, V] (float32: the output layer's bias plus the priors), each
        position's row of it [N], the N labels, and with `diagonal` each position's own change
        to its logits (`diagonal_change`), else None."""
        from usecases.translation.batching import IGNORE

        if self.copy_pointer:
            raise ValueError(f"{caller}: the copy pointer needs forward's full logits")
        keep = labels != IGNORE
        hidden = self.model(  # type: ignore[attr-defined]
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        ).last_hidden_state[keep]
        bias = self.final_logits_bias.float()  # type: ignore[attr-defined]
        rows = torch.zeros(hidden.shape[0], dtype=torch.long, device=hidden.device)
        prior = self.lexical_inputs(input_ids)
        extra = None
        if prior:
            bias = bias + self.lex_gate * prior["lexical_bias"]
            if self.copy_prior:
                bias = bias + self.copy_gate * prior["copy_bias"]
            rows = keep.nonzero()[:, 0]  # each position's sentence
            if diagonal is not None:
                extra = self.diagonal_change(input_ids, keep, rows, diagonal)
        return hidden, bias, rows, labels[keep], extra

    def diagonal_change(
        self, input_ids: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor, diagonal: Diagonal
    ) -> Sparse:
        """The lexical prior on the diagonal in training, as greedy decoding applies it
        (`decode.LexicalDiagonal`, `data.diagonal_training`): at the k-th labelled position of
        a target, the prior's bag is mixed with the source subwords near k's place on the
        diagonal (k / the direction's expected target/source token ratio). That changes only
        the columns the table offers for the sentence's source, so the change comes back
        sparse: (columns [N, C], values [N, C]) for the N labelled positions (`keep` [B, T],
        `rows` [N] the sentence of each),
        the values times the learnt weight of the prior, which their gradient reaches.
        `diagonal` is (each sentence's expected ratio [B], the share of the bag, the width)."""
        from usecases.translation.decode import LexicalDiagonal

        ratios, share, width = diagonal
        lean = LexicalDiagonal(self, input_ids, ratios, share, width)
        steps = torch.arange(keep.shape[1], device=keep.device).expand(keep.shape[0], -1)
        change = lean.change(steps)[keep]  # [N, C]
        return lean.cols[rows], self.lex_gate * change

    def labelled_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        labels: torch.Tensor,
        diagonal: Diagonal | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits ([N, V], float32) of the N target positions that have a label (not
        `batching.IGNORE`), and those labels: what `forward` computes there, without the output
        layer and the priors' work on the padding, which is about 30 % of the target positions
        of the default's training batches (a training step took about a quarter less time).
        With `diagonal`, the lexical prior leans on the diagonal (`diagonal_change`).
        Not with the copy pointer, whose bias needs every position (`forward`)."""
        hidden, bias, rows, labels, extra = self._labelled(
            input_ids, attention_mask, decoder_input_ids, labels, "labelled_logits", diagonal
        )
        logits = self.lm_head(hidden).float()  # type: ignore[attr-defined]
        logits = logits + bias.index_select(0, rows)
        if extra is not None:
            logits = logits.scatter_add(1, extra[0], extra[1])
        return logits, labels

    def labelled_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        labels: torch.Tensor,
        label_smoothing: float = 0.0,
        diagonal: Diagonal | None = None,
    ) -> torch.Tensor:
        """The mean label-smoothed cross entropy of the labelled positions under
        `labelled_logits`, computed by `losses.output_cross_entropy` a chunk of positions at a
        time, the [N, V] logits never held whole (a default training step about a fifth faster:
        `benchmarks/mt_step.py`).
        Not with the copy pointer."""
        from usecases.translation.losses import output_cross_entropy

        hidden, bias, rows, labels, extra = self._labelled(
            input_ids, attention_mask, decoder_input_ids, labels, "labelled_loss", diagonal
        )
        head = self.lm_head  # type: ignore[attr-defined]
        if head.bias is not None:  # MBart's has none: its bias is final_logits_bias
            bias = bias + head.bias.float()
        return output_cross_entropy(
            hidden, head.weight, bias, rows, labels, label_smoothing, extra=extra
        )

    def forward(self, input_ids=None, encoder_outputs=None, **kwargs):  # type: ignore[no-untyped-def]
        out = super().forward(  # type: ignore[misc]
            input_ids=input_ids, encoder_outputs=encoder_outputs, **kwargs
        )
        if input_ids is not None:
            prior = self.lexical_inputs(input_ids)
        else:
            prior = {} if encoder_outputs is None else encoder_outputs
            if "lexical_bias" not in prior and self.lex_idx.shape[0]:
                raise ValueError(
                    "this model's lexical prior needs the source: pass input_ids, or encoder "
                    "outputs from usecases.translation.models.encode"
                )
        if "lexical_bias" in prior:
            bias = self.lex_gate * prior["lexical_bias"]
            if self.copy_prior:
                bias = bias + self.copy_gate * prior["copy_bias"]
            out.logits = out.logits + bias[:, None, :]
            if self.copy_pointer:
                out.logits = self.pointer_bias(out.logits, out.encoder_last_hidden_state, prior)
        if self.copy_pointer:
            self._decoder_state = None
        return out

    def _prepare_text_encoder_decoder_kwargs_for_generation(  # type: ignore[no-untyped-def]
        self, inputs_tensor, model_kwargs, *args, **kwargs
    ):
        # `generate(input_ids=...)` encodes through here: the prior travels with the encoder's
        # output, as in `encode`. (Without this hook, `forward` refuses to decode without it.)
        out = super()._prepare_text_encoder_decoder_kwargs_for_generation(  # type: ignore[misc]
            inputs_tensor, model_kwargs, *args, **kwargs
        )
        for key, value in self.lexical_inputs(inputs_tensor).items():
            out["encoder_outputs"][key] = value
        return out


def encode(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
    """The encoder's output for a decoding loop, with the priors of each source row
    (`"lexical_bias"`, `"copy_bias"`) for a model that has them."""
    out = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    if isinstance(model, LexicalPriorMixin):
        for key, value in model.lexical_inputs(input_ids).items():
            out[key] = value
    return out


@register_model(usecase="translation", licence="CC-BY-NC-4.0 (trained on MAFAND-MT)")
def pre_nano(
    pretrained: bool = False,
    vocab_size: int = 8000,
    dropout: float = 0.0,
    lexical_prior: bool = False,
    copy_prior: bool = False,
    copy_pointer: bool = False,
    attention: str = "sdpa",
    **_: Any,
):
    """Pre-layer-norm Transformer 3+3 layers, d=128 (about 2.5 M parameters): on a CPU budget of
    minutes it makes about 1.6x the updates of `pre_tiny` and learns more from them."""
    return prenorm(
        "pre_nano",
        vocab_size,
        dropout,
        lexical_prior=lexical_prior,
        copy_prior=copy_prior,
        copy_pointer=copy_pointer,
        attention=attention,
    )


@register_model(usecase="translation", licence="CC-BY-NC-4.0 (trained on MAFAND-MT)")
def pre_tiny(
    pretrained: bool = False,
    vocab_size: int = 8000,
    dropout: float = 0.1,
    lexical_prior: bool = False,
    copy_prior: bool = False,
    copy_pointer: bool = False,
    attention: str = "sdpa",
    **_: Any,
):
    """Pre-layer-norm Transformer 3+3 layers, d=256 (mBART block layout, about 7.8 M parameters)."""
    return prenorm(
        "pre_tiny",
        vocab_size,
        dropout,
        lexical_prior=lexical_prior,
        copy_prior=copy_prior,
        copy_pointer=copy_pointer,
        attention=attention,
    )


@register_model(usecase="translation", licence="CC-BY-NC-4.0 (trained on MAFAND-MT)")
def pre_deep_shallow(
    pretrained: bool = False,
    vocab_size: int = 8000,
    dropout: float = 0.1,
    lexical_prior: bool = False,
    copy_prior: bool = False,
    copy_pointer: bool = False,
    attention: str = "sdpa",
    **_: Any,
):
    """Pre-layer-norm Transformer, 6 encoder layers and 1 decoder layer, d=256 (8.1 M
    parameters): each decoding step runs one layer instead of three."""
    return prenorm(
        "pre_deep_shallow",
        vocab_size,
        dropout,
        lexical_prior=lexical_prior,
        copy_prior=copy_prior,
        copy_pointer=copy_pointer,
        attention=attention,
    )


@register_model(usecase="translation", licence="CC-BY-NC-4.0 (trained on MAFAND-MT)")
def pre_nano_ds(
    pretrained: bool = False,
    vocab_size: int = 8000,
    dropout: float = 0.0,
    lexical_prior: bool = False,
    copy_prior: bool = False,
    copy_pointer: bool = False,
    attention: str = "sdpa",
    **_: Any,
):
    """`pre_nano`'s width (d=128) with 6 encoder layers and 1 decoder layer (about 2.6 M
    parameters): a weaker language model in the decoder, and one decoder layer per decoding step
    instead of three."""
    return prenorm(
        "pre_nano_ds",
        vocab_size,
        dropout,
        lexical_prior=lexical_prior,
        copy_prior=copy_prior,
        copy_pointer=copy_pointer,
        attention=attention,
    )


@register_model(usecase="translation", licence="CC-BY-NC-4.0 (trained on MAFAND-MT)")
def marian_tiny(pretrained: bool = False, **shape: Any):
    """Transformer 3+3 layers, d=256 (about 7.8 M parameters with an 8k vocabulary)."""
    return marian("marian_tiny", **shape)


@register_model(usecase="translation", licence="CC-BY-NC-4.0 (trained on MAFAND-MT)")
def marian_small(pretrained: bool = False, **shape: Any):
    """Transformer-base shape, 6+6 layers, d=512 (about 48 M parameters with an 8k vocabulary)."""
    return marian("marian_small", **shape)


@register_model(usecase="translation", licence="that of the checkpoint and of MAFAND-MT")
def hf_seq2seq(
    pretrained: bool = False, weights: str | None = None, vocab_size: int | None = None, **_: Any
):
    """Any `transformers` seq2seq checkpoint (M2M-100, NLLB, mT5, Marian...) from a folder or,
    online, a hub id (`model.weights`); fine-tuned with its own tokenizer plus language tags."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    if not weights:
        raise ValueError("model hf_seq2seq needs model.weights: a checkpoint folder or hub id")
    if pretrained:
        model = AutoModelForSeq2SeqLM.from_pretrained(weights)
    else:  # architecture only: a release's own weights are loaded next
        model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(weights))
    if vocab_size is not None and vocab_size != model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
    return model


# -- embeddings from the training pairs ---------------------------------------------------------
def cooccurrence_embeddings(
    docs: list[list[int]], vocab_size: int, dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-language latent semantic analysis (Dumais et al. 1997) over the training pairs:
    each pair (both sides' subwords) is one document; the subword x document matrix of
    (1 + log count) x idf is reduced to `dim` dimensions by a seeded randomised SVD. Subwords
    that occur in the same pairs, a word and its translation above all, get nearby vectors.
    Identical documents count once (a pair is trained in both directions). Returns the
    vectors, shape [vocab_size, dim] (zero rows for subwords in no document), and the mask of
    the rows that occur."""
    from collections import Counter

    unique = list(dict.fromkeys(tuple(sorted(d)) for d in docs if d))
    rows, cols, counts = [], [], []
    for j, doc in enumerate(unique):
        for tok, n in Counter(doc).items():
            rows.append(tok)
            cols.append(j)
            counts.append(n)
    if not rows:
        raise ValueError("no subwords to embed: the training pairs are empty")
    r, c = torch.tensor(rows), torch.tensor(cols)
    n = torch.tensor(counts, dtype=torch.float64)
    df = torch.bincount(r, minlength=vocab_size).double()
    idf = torch.log(len(unique) / df.clamp(min=1))
    vals = ((1 + torch.log(n)) * idf[r]).float()
    shape = (vocab_size, len(unique))
    a = torch.sparse_coo_tensor(torch.stack([r, c]), vals, shape, check_invariants=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # svd_lowrank works on the tall document x subword matrix: handed `a` it made that
        # transpose itself and multiplied by it uncoalesced, 2x slower. Coalesced here, the
        # same vectors bit for bit (benchmarks/mt_setup.py prints their SHA-256).
        _, s, u = torch.svd_lowrank(a.t().coalesce(), q=min(dim, *shape), niter=4)
    vectors = torch.zeros(vocab_size, dim)
    vectors[:, : s.numel()] = u * s.sqrt()
    seen = df > 0
    vectors[~seen] = 0
    return vectors, seen


def init_embeddings_from_pairs(model: torch.nn.Module, docs: list[list[int]], seed: int) -> int:
    """Replace the (shared) input/output embedding rows of every subword that occurs in `docs`
    by its co-occurrence vector (`cooccurrence_embeddings`), scaled to the standard deviation
    of the rows it replaces; returns how many rows were set."""
    emb = model.get_input_embeddings().weight
    vectors, seen = cooccurrence_embeddings(docs, emb.shape[0], emb.shape[1], seed)
    with torch.no_grad():
        scale = emb[seen].std() / vectors[seen].std().clamp(min=1e-12)
        emb[seen] = (vectors[seen] * scale).to(emb.dtype)
    return int(seen.sum())


@functools.cache
def _lexical_mbart_class() -> type:
    """`MBartForConditionalGeneration` with the lexical prior, built on first use (importing
    `transformers` is slow) and published as this module's `LexicalMBart`, so that a model
    pickles for the worker processes that decode test sets."""
    from transformers import MBartForConditionalGeneration

    class LexicalMBart(LexicalPriorMixin, MBartForConditionalGeneration):
        """mBART with a lexical translation prior on its logits."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self._init_lexicon(config)

    LexicalMBart.__module__ = __name__
    LexicalMBart.__qualname__ = "LexicalMBart"
    return LexicalMBart


def __getattr__(name: str) -> Any:
    if name == "LexicalMBart":  # unpickling a model looks the class up here
        return _lexical_mbart_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
