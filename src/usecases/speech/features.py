"""Acoustic features and their augmentation for the character CTC recogniser.

- `LogMel`: 25 ms Hann windows every 10 ms, an 80-band HTK mel filterbank up to 7.6 kHz,
  natural log; then per-utterance mean and variance normalisation over the true frames (a
  crude speaker/channel normalisation that matters when the test voice is not a training voice).
- `speed`: speed perturbation by resampling (tempo and pitch change together, as in Kaldi's
  3-way 0.9/1.0/1.1 recipe), done once per factor when the training set is loaded.
- `warp_frequency`: a vocal-tract-length-style warp of the mel axis by a random factor per
  utterance; it moves formants and pitch harmonics together, the cheap stand-in for a
  pitch/formant shift that lets a recogniser trained on one voice hear another.
- `spec_augment`: frequency and time masks (Park et al. 2019), adaptive to the utterance length.

Augmentations take an explicit `torch.Generator`, so a training run is a function of its seed.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch
from torch import nn

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
N_FFT = 400  # 25 ms
N_MELS = 80


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 20.0, fmax: float = 7600.0
) -> torch.Tensor:
    """[n_fft // 2 + 1, n_mels] triangular filters, equally spaced on the HTK mel scale."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    return torch.from_numpy(fb.T.astype(np.float32))


def frames_for(samples: int) -> int:
    """Feature frames for a wave of `samples` samples (centred STFT)."""
    return samples // HOP + 1


class LogMel(nn.Module):
    """Waves [B, S] (or [S]) at 16 kHz -> normalised log-mel features [B, T, 80]."""

    def __init__(self, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("fb", mel_filterbank(SAMPLE_RATE, N_FFT, n_mels), persistent=False)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave[None]
        spec = torch.stft(
            wave.float(),
            N_FFT,
            HOP,
            window=self.window,
            center=True,
            pad_mode="reflect" if wave.shape[-1] > N_FFT // 2 else "constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, F, T]
        feats = torch.log(power.transpose(1, 2) @ self.fb + 1e-6)  # [B, T, M]
        if lengths is None:
            lengths = torch.full((feats.shape[0],), wave.shape[-1], dtype=torch.long)
        feats = normalise(feats, torch.clamp(lengths // HOP + 1, max=feats.shape[1]))
        return feats[0] if squeeze else feats


def normalise(feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per mel band over each utterance's true frames; padding -> 0."""
    t = torch.arange(feats.shape[1], device=feats.device)
    mask = (t[None, :] < frames[:, None].to(feats.device)).unsqueeze(-1).float()
    count = mask.sum(1, keepdim=True).clamp(min=1.0)
    mean = (feats * mask).sum(1, keepdim=True) / count
    var = ((feats - mean).square() * mask).sum(1, keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + 1e-5) * mask


def speed(wave: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The wave played `factor` times faster (pitch moves with it), at the same sample rate."""
    if factor == 1.0:
        return wave
    return soxr.resample(wave, sample_rate, sample_rate / factor, quality="HQ").astype(np.float32)


def warp_frequency(
    feats: torch.Tensor, low: float, high: float, generator: torch.Generator
) -> torch.Tensor:
    """Stretch each utterance's mel axis by a factor drawn from [low, high] ([B, T, M])."""
    b, _, m = feats.shape
    alpha = low + (high - low) * torch.rand(b, generator=generator)
    src = torch.arange(m, dtype=torch.float32)[None, :] / alpha[:, None]  # [B, M]
    src = src.clamp(max=m - 1).to(feats.device)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    w = (src - lo.float())[:, None, :]
    idx_lo = lo[:, None, :].expand(-1, feats.shape[1], -1)
    idx_hi = hi[:, None, :].expand(-1, feats.shape[1], -1)
    return feats.gather(2, idx_lo) * (1 - w) + feats.gather(2, idx_hi) * w


def spec_augment(
    feats: torch.Tensor,
    frames: torch.Tensor,
    generator: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 15,
    time_masks: int = 4,
    time_ratio: float = 0.05,
) -> torch.Tensor:
    """Zero `freq_masks` bands of up to `freq_width` mel bins and `time_masks` spans of up to
    `time_ratio` of each utterance's length ([B, T, M], a new tensor)."""
    out = feats.clone()
    b, _, m = feats.shape
    for i in range(b):
        n = int(frames[i])
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, m - w), (1,), generator=generator))
            out[i, :, f0 : f0 + w] = 0.0
        width = max(1, int(time_ratio * n))
        for _ in range(time_masks):
            w = int(torch.randint(0, width + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, n - w), (1,), generator=generator))
            out[i, t0 : t0 + w, :] = 0.0
    return out


def subsampled(frames: torch.Tensor, times: int = 2) -> torch.Tensor:
    """Frames left after `times` convolutions of kernel 3, stride 2, padding 1."""
    for _ in range(times):
        frames = torch.div(frames - 1, 2, rounding_mode="floor") + 1
    return frames


def seconds_per_frame(subsampling: int) -> float:
    return HOP * subsampling / SAMPLE_RATE
