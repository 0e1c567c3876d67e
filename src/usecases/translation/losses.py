"""The training loss of the translation models: the output layer and the label-smoothed cross
entropy in one pass over row chunks.

Written as separate operations (`F.linear`, the cast to float32, the priors' bias, then
`F.cross_entropy`), the loss reads and writes the [positions, vocabulary] logits about ten times
forward and backward: with a 2,000-token batch that is ~900 x 8,000 float32 values, 29 MB, too
big for the caches of a small CPU, and those passes, not the products, took most of the output
layer's time. `output_cross_entropy` computes the same loss a few hundred rows at a time and the
gradients in the same pass, so each chunk's logits are made and used while they are in cache."""

from __future__ import annotations

import torch

CHUNK_ROWS = 256  # rows of logits per chunk: 256 x 8,000 float32 is 8 MB


def _compute_dtype(like: torch.Tensor) -> torch.dtype:
    """The dtype the output layer's products run in: autocast's where it is on, as
    `F.linear` would, else the hidden states'."""
    kind = like.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return like.dtype


class _OutputCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        rows: torch.Tensor,
        labels: torch.Tensor,
        smoothing: float,
        dtype: torch.dtype,
        chunk: int,
        extra_cols: torch.Tensor | None,
        extra_vals: torch.Tensor | None,
    ) -> torch.Tensor:
        n, vocab = hidden.shape[0], weight.shape[0]
        need = ctx.needs_input_grad
        grad_extra = (
            torch.empty_like(extra_vals, dtype=torch.float32)
            if extra_vals is not None and need[9]
            else None
        )
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if need[1]
            else None
        )
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need[2] else None
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk].to(dtype)
            r, y = rows[start : start + chunk], labels[start : start + chunk]
            z = torch.add(h @ w.t(), bias.index_select(0, r))  # float32, as bias
            if extra_vals is not None:  # each row's own change to some columns
                cols = extra_cols[start : start + chunk]
                z.scatter_add_(1, cols, extra_vals[start : start + chunk].float())
            # log-sum-exp from the softmax itself (one pass of exp, not two): at the row's
            # largest logit m, p = exp(m - lse) >= 1 / V, so lse = m - log p loses nothing.
            picked, mean = z.gather(1, y[:, None])[:, 0], z.mean(dim=1)
            m = z.amax(dim=1)
            p = torch.softmax(z, dim=1)
            lse = m - p.amax(dim=1).log()
            # -(1 - s) log p(y) - s * mean_v log p(v), as F.cross_entropy(label_smoothing=s)
            total += ((1 - smoothing) * (lse - picked) + smoothing * (lse - mean)).sum()
            if not any(need[:3]) and grad_extra is None:
                continue
            # n x d loss / d z = softmax(z) - (1 - s) onehot(y) - s / V (the 1 / n at the end)
            g = p.sub_(smoothing / vocab)
            g.scatter_add_(1, y[:, None], torch.full_like(picked[:, None], smoothing - 1))
            if grad_bias is not None:
                grad_bias.index_add_(0, r, g)
            if grad_extra is not None:
                grad_extra[start : start + chunk] = g.gather(1, cols)
            gl = g.to(dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = gl @ w
            if grad_weight is not None and dtype == torch.float32:
                grad_weight.addmm_(gl.t(), h)
            elif grad_weight is not None:  # the chunk's product in `dtype`, as autocast's
                grad_weight.add_(gl.t() @ h)  # backward computes it
        scale = 1 / max(1, n)
        for grad in (grad_hidden, grad_weight, grad_bias, grad_extra):
            if grad is not None:
                grad.mul_(scale)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_extra is not None:
            grad_extra = grad_extra.to(extra_vals.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias, grad_extra)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        gh, gw, gb, ge = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (
            gh * grad_out if need[0] else None,
            gw * grad_out if need[1] else None,
            gb * grad_out if need[2] else None,
            None,
            None,
            None,
            None,
            None,
            None,
            ge * grad_out if need[9] else None,
        )


def output_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    rows: torch.Tensor,
    labels: torch.Tensor,
    smoothing: float = 0.0,
    chunk: int = CHUNK_ROWS,
    extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean label-smoothed cross entropy of `labels` [N] under the logits
    `hidden @ weight.T + bias[rows]` (hidden [N, d], weight [V, d], bias [B, V] float32: one row
    per sentence, `rows` [N] the sentence of each position), what
    `F.cross_entropy(F.linear(hidden, weight).float() + bias[rows], labels,
    label_smoothing=smoothing)` gives (the products in autocast's dtype where it is on), without
    ever holding the [N, V] logits: `CHUNK_ROWS` rows at a time, the gradients computed in the
    same pass. Every label must be a class (no ignored positions). `extra` (columns [N, C],
    values [N, C], C columns per position, each at most once in a row) adds each position's own
    values to some of its logits, as `logits.scatter_add(1, columns, values)` would; the values
    get their gradient, the columns are indices."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing {smoothing}: expected a value in [0, 1)")
    if hidden.shape[0] != labels.shape[0] or rows.shape[0] != labels.shape[0]:
        raise ValueError(
            f"output_cross_entropy: {hidden.shape[0]} hidden rows, {rows.shape[0]} sentence "
            f"indices and {labels.shape[0]} labels: expected one of each per position"
        )
    cols, vals = extra if extra is not None else (None, None)
    if cols is not None and (cols.shape != vals.shape or cols.shape[0] != labels.shape[0]):
        raise ValueError(
            f"output_cross_entropy: extra columns {tuple(cols.shape)} and values "
            f"{tuple(vals.shape)} for {labels.shape[0]} positions: expected [N, C] each"
        )
    dtype = _compute_dtype(hidden)
    if not torch.is_grad_enabled():  # a loss to read only: no gradients to compute on the way
        hidden, weight, bias = hidden.detach(), weight.detach(), bias.detach()
        vals = None if vals is None else vals.detach()
    with torch.autocast(hidden.device.type, enabled=False):
        return _OutputCrossEntropy.apply(
            hidden, weight, bias, rows, labels, float(smoothing), dtype, chunk, cols, vals
        )
