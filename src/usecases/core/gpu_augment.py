"""Batched image augmentation on the training device (pure torch: runs on GPU or CPU).

A GPU trains ResNet-50 faster than 16 CPU cores can decode and augment JPEGs, so on a GPU the
loader should only hand over uint8 images (decoded once, or decoded on the GPU with
`torchvision.io.decode_jpeg(..., device="cuda")`) and the random crop, flip and normalisation run
here, on the whole batch at once: one `affine_grid` + `grid_sample` does the crop, resize and
flip of every image, whatever its crop box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or [0, 255] float [B, 3, H, W] -> float normalised with the model's mean/std."""
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() / 255.0 - m) / s


def random_resized_crop_flip(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    vflip: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-image random crop (area fraction in `scale`, aspect in `ratio`), resized to
    `size`×`size`, randomly flipped: [B, 3, H, W] (any dtype) -> float [B, 3, size, size] in
    the input's value range.

    Randomness comes from `generator` (on the images' device) or the global RNG.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W]; got shape {tuple(images.shape)}")
    b, device = images.shape[0], images.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, device=device, generator=generator) * (hi - lo) + lo

    area = uniform(*scale)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    # Crop width/height as fractions of the image side (square crops of non-square images are
    # rescaled by the grid, as torchvision's RandomResizedCrop does).
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    # Crop centre in [-1, 1] normalised coordinates, keeping the box inside the image.
    cx = (uniform(0.0, 1.0) * (1 - w) + w / 2) * 2 - 1
    cy = (uniform(0.0, 1.0) * (1 - h) + h / 2) * 2 - 1
    sx = torch.where(uniform(0.0, 1.0) < hflip, -w, w)
    sy = torch.where(uniform(0.0, 1.0) < vflip, -h, h)
    zero = torch.zeros_like(w)
    theta = torch.stack(
        [torch.stack([sx, zero, cx], dim=1), torch.stack([zero, sy, cy], dim=1)], dim=1
    )  # [B, 2, 3]
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


class DeviceAugment:
    """Training-batch transform: (uint8 images, targets) -> (augmented normalised, targets)."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: tuple[float, float] = (0.35, 1.0),
        hflip: float = 0.5,
        vflip: float = 0.5,
    ) -> None:
        self.size, self.mean, self.std = size, mean, std
        self.scale, self.hflip, self.vflip = scale, hflip, vflip

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        x, y = batch
        x = random_resized_crop_flip(
            x, self.size, scale=self.scale, hflip=self.hflip, vflip=self.vflip
        )
        x = normalise(x, self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last), y
