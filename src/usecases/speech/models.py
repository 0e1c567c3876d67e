"""Character CTC recognisers trained from scratch on log-mel features.

Every speech model takes `(x, lengths)` and returns `(logits [B, T', V], out_lengths)`, V = the
character vocabulary with the CTC blank at index 0. Here `x` is log-mel features [B, T, 80] and
lengths count frames; `wav2vec2_ctc` (`usecases.speech.hf`) takes raw waves instead.

`crnn`: two stride-2 convolutions (40 ms per output frame, enough for read speech at ~15
characters per second), a projection, a bidirectional GRU stack over packed sequences (padding
never reaches the recurrence, so a batch gives each utterance the same output as alone) and a
linear layer to the characters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from usecases.core.registry import register_model
from usecases.speech.features import N_MELS, subsampled

SIZES = {
    "crnn_tiny": {"channels": 32, "hidden": 128, "layers": 2},
    "crnn": {"channels": 32, "hidden": 192, "layers": 3},
    "crnn_large": {"channels": 64, "hidden": 320, "layers": 4},
}


class CRNN(nn.Module):
    subsampling = 4

    def __init__(
        self,
        vocab_size: int,
        channels: int = 32,
        hidden: int = 192,
        layers: int = 3,
        dropout: float = 0.1,
        n_mels: int = N_MELS,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(
                f"vocab_size must count the blank and at least one character, got {vocab_size}"
            )
        self.conv1 = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.GELU())
        freq = subsampled(torch.tensor(n_mels)).item()
        self.proj = nn.Sequential(
            nn.Linear(channels * int(freq), hidden * 2),
            nn.LayerNorm(hidden * 2),
            nn.Dropout(dropout),
        )
        self.rnn = nn.GRU(
            hidden * 2,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * 2, vocab_size))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv1(x.unsqueeze(1))  # [B, C, T/2, M/2]
        # Zero the frames past each utterance's end, so that the second convolution sees the
        # same zeros as its own padding: a batch then gives each utterance its output alone.
        valid = torch.arange(h.shape[2], device=h.device)[None, :] < subsampled(lengths, 1)[:, None]
        h = self.conv2(h * valid[:, None, :, None].to(h.dtype))  # [B, C, T/4, M/4]
        b, c, t, m = h.shape
        h = self.proj(h.permute(0, 2, 1, 3).reshape(b, t, c * m))
        out_lengths = subsampled(lengths).clamp(min=1, max=t)
        packed = pack_padded_sequence(h, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        return self.head(out), out_lengths


def _build(name: str, vocab_size: int, dropout: float) -> CRNN:
    return CRNN(vocab_size, dropout=dropout, **SIZES[name])


@register_model(usecase="speech", input="logmel", licence="that of the training recordings")
def crnn_tiny(pretrained: bool = False, vocab_size: int = 0, dropout: float = 0.1, **_: Any):
    """CNN + 2-layer BiGRU (128 units), about 0.9 M parameters: tests and quick trials."""
    return _build("crnn_tiny", vocab_size, dropout)


@register_model(usecase="speech", input="logmel", licence="that of the training recordings")
def crnn(pretrained: bool = False, vocab_size: int = 0, dropout: float = 0.1, **_: Any):
    """CNN + 3-layer BiGRU (192 units), about 3.5 M parameters: the CPU default."""
    return _build("crnn", vocab_size, dropout)


@register_model(usecase="speech", input="logmel", licence="that of the training recordings")
def crnn_large(pretrained: bool = False, vocab_size: int = 0, dropout: float = 0.1, **_: Any):
    """CNN + 4-layer BiGRU (320 units), about 10 M parameters: the `full` preset."""
    return _build("crnn_large", vocab_size, dropout)
