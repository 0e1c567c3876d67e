"""Greedy decoding steps of the pre-norm (mBART-layout) models without `transformers`' forward.

A decoding step of `pre_nano` feeds one new token per sentence through a 3-layer decoder of
width 128: the matrices are tiny and most of a step through `transformers` goes to its
bookkeeping around them (attention-mask building, the dynamic cache's concatenations, the
attention dispatch, the output dataclasses). `PrenormSteps` runs the same computation, with the
same weights, on buffers it allocates once per batch:

- the self-attention keys and values of every layer in one preallocated buffer per layer,
  written in place, instead of a cache that grows by concatenation;
- the cross-attention keys and values computed once per batch from the encoder's output;
- the query, key and value projections of self-attention in one matrix product;
- the logits' per-sentence bias (the model's `final_logits_bias` plus its lexical and copy
  priors, which do not change from step to step) added by the output layer's matrix product
  itself (`addmm`);
- with `allowed` (the subwords the batch may write: `decode.allowed_ids`), the output layer
  computes only those logits, the others are -inf. The output layer is most of a step's
  products (8,000 x 128 against 3 layers of 128-wide matrices), and a language's training text
  holds 1,400-4,000 of the 8,000 subwords.

`tests/test_translation.py` checks its logits against the model's own forward at every step
and its greedy translations against `model.generate`. Models it does not cover (the copy
pointer, the Marian layout, `hf_seq2seq` checkpoints of other families than mBART) decode
through `transformers` (`supports`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def supports(model: torch.nn.Module) -> bool:
    """Whether `PrenormSteps` computes what `model`'s forward computes."""
    from transformers import MBartForConditionalGeneration

    config = getattr(model, "config", None)
    return (
        isinstance(model, MBartForConditionalGeneration)
        and not getattr(model, "copy_pointer", False)
        and getattr(config, "activation_function", None) == "gelu"
        and not model.training
    )


class PrenormSteps:
    """One batch's decoder state. `step(tokens)` feeds each live row its next input token and
    returns the logits of the token after it ([rows, V], float32; with `allowed`, -inf outside
    it, or only its columns); `select(keep)` keeps only the rows `keep` (a 1-d index tensor),
    in that order."""

    def __init__(
        self,
        model: torch.nn.Module,
        encoded: Any,
        mask: torch.Tensor,
        max_steps: int,
        allowed: torch.Tensor | None = None,
    ) -> None:
        decoder = model.model.decoder
        config = model.config
        self.heads = config.decoder_attention_heads
        self.dim = config.d_model
        self.head_dim = self.dim // self.heads
        self.scaling = self.head_dim**-0.5
        self.embed = decoder.embed_tokens
        self.positions = decoder.embed_positions.weight[decoder.embed_positions.offset :]
        self.embed_norm = decoder.layernorm_embedding
        self.final_norm = decoder.layer_norm
        self.out_weight = model.lm_head.weight
        self.vocab_size = self.out_weight.shape[0]
        self.allowed = allowed
        if allowed is not None:
            self.out_weight = self.out_weight.index_select(0, allowed)
        self.layers = decoder.layers
        hidden = encoded.last_hidden_state
        rows, length, _ = hidden.shape
        # The self-attention's three projections as one.
        self.qkv = [
            (
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
            )
            for a in (layer.self_attn for layer in self.layers)
        ]
        self.cross = [
            (
                self._heads(layer.encoder_attn.k_proj(hidden)),
                self._heads(layer.encoder_attn.v_proj(hidden)),
            )
            for layer in self.layers
        ]
        blocked = torch.zeros(
            rows, 1, 1, length, dtype=self.cross[0][0].dtype, device=hidden.device
        )
        self.cross_bias = blocked.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        bias = model.final_logits_bias.expand(rows, -1).float()
        if "lexical_bias" in encoded:
            bias = bias + model.lex_gate * encoded["lexical_bias"]
            if getattr(model, "copy_prior", False):
                bias = bias + model.copy_gate * encoded["copy_bias"]
        if allowed is not None:
            bias = bias.index_select(1, allowed)
        self.logit_bias = bias.contiguous()
        self.max_steps = max_steps
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.t = 0  # positions already fed

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, T, dim] -> [rows, heads, T, head_dim], contiguous: the attention's matrix
        products then read it as it is, without a copy at every step."""
        shape = (x.shape[0], x.shape[1], self.heads, self.head_dim)
        return x.view(shape).transpose(1, 2).contiguous()

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias=None) -> torch.Tensor:
        """q [rows, heads, 1, head_dim] over k, v [rows, heads, T, head_dim] -> [rows, dim]"""
        scores = (q @ k.transpose(2, 3)) * self.scaling
        if bias is not None:
            scores = scores + bias
        out = scores.softmax(dim=-1).to(v.dtype) @ v
        return out.reshape(q.shape[0], self.dim)

    def step(self, tokens: torch.Tensor, spread: bool = True) -> torch.Tensor:
        """With `allowed` and `spread=False`, only the allowed subwords' logits, in
        `allowed`'s order ([rows, len(allowed)])."""
        if self.t >= self.max_steps:
            raise RuntimeError(f"decoding step {self.t + 1} exceeds the {self.max_steps} allocated")
        rows, t = tokens.shape[0], self.t
        h = self.embed(tokens) + self.positions[t]
        h = self.embed_norm(h)
        for n, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = layer.self_attn_layer_norm(h)
            q, k, v = F.linear(x, *self.qkv[n]).split(self.dim, dim=-1)
            if len(self.keys) <= n:
                shape = (rows, self.heads, self.max_steps, self.head_dim)
                self.keys.append(torch.empty(shape, dtype=k.dtype, device=k.device))
                self.values.append(torch.empty(shape, dtype=v.dtype, device=v.device))
            self.keys[n][:, :, t] = k.view(rows, self.heads, self.head_dim)
            self.values[n][:, :, t] = v.view(rows, self.heads, self.head_dim)
            q = q.view(rows, self.heads, 1, self.head_dim)
            a = self._attend(q, self.keys[n][:, :, : t + 1], self.values[n][:, :, : t + 1])
            h = h + attn.out_proj(a)
            cross = layer.encoder_attn
            x = layer.encoder_attn_layer_norm(h)
            q = cross.q_proj(x).view(rows, self.heads, 1, self.head_dim)
            a = self._attend(q, *self.cross[n], self.cross_bias)
            h = h + cross.out_proj(a)
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(F.gelu(layer.fc1(x)))
        h = self.final_norm(h)
        self.t += 1
        w = self.out_weight
        if torch.is_autocast_enabled(h.device.type) or w.dtype != h.dtype:
            logits = (h.to(w.dtype) @ w.t()).float() + self.logit_bias  # the bias in float32
        else:
            logits = torch.addmm(self.logit_bias, h, w.t())
        if self.allowed is None or not spread:
            return logits
        out = logits.new_full((rows, self.vocab_size), float("-inf"))
        return out.index_copy_(1, self.allowed, logits)

    def select(self, keep: torch.Tensor) -> None:
        self.keys = [self._keep(k, keep) for k in self.keys]
        self.values = [self._keep(v, keep) for v in self.values]
        self.cross = [(k[keep], v[keep]) for k, v in self.cross]
        self.cross_bias = self.cross_bias[keep]
        self.logit_bias = self.logit_bias[keep]

    def _keep(self, buffer: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The rows `keep` of a self-attention buffer: its filled positions copied."""
        out = buffer.new_empty((keep.shape[0], *buffer.shape[1:]))
        out[:, :, : self.t] = buffer[keep, :, : self.t]
        return out
