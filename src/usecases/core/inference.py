"""CPU inference preparation: fold BatchNorm into the preceding convolution, channels_last.

Folding relies on the common convention that a BatchNorm registered right after a Conv2d in
the same parent is applied to that convolution's output. Every fold is verified: if the folded
model's output differs from the original on a probe input, the original is returned.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias.detach())


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, each BatchNorm2d that directly follows a Conv2d among siblings."""
    folded = 0
    for parent in model.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = parent._modules[a], parent._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.affine
                and conv.out_channels == bn.num_features
            ):
                _fold(conv, bn)
                parent._modules[b] = nn.Identity()
                folded += 1
    return folded


@torch.no_grad()
def optimize_for_cpu(model: nn.Module, example: torch.Tensor, atol: float = 1e-4) -> nn.Module:
    """A copy of `model` for fast CPU inference with outputs equal to `model`'s (within atol).

    `example` only gives the input shape: the check runs on seeded random values, since a
    constant input (zeros, a blank page) can hide a wrongly folded layer.
    """
    model = model.eval()
    fast = copy.deepcopy(model)
    n = fold_batchnorm(fast)
    fast = fast.to(memory_format=torch.channels_last)
    probe = torch.randn(example.shape, generator=torch.Generator().manual_seed(0))
    ref = model(probe)
    out = fast(probe.contiguous(memory_format=torch.channels_last))
    if not torch.allclose(ref, out, atol=atol, rtol=1e-4):
        log.warning("BatchNorm folding changed the outputs; using the unfolded model")
        return model
    log.debug("folded %d BatchNorm layers", n)
    return fast
