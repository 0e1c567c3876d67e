"""Leaf-image datasets and transforms. Eval preprocessing derives from the model's metadata."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from usecases.core.data import Item
from usecases.core.images import load_rgb


def resize_size(image_size: int, crop_pct: float) -> int:
    """Shorter side before the centre crop (224 at 0.875 -> 256)."""
    return int(math.floor(image_size / crop_pct))


def to_square_uint8(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to `size`, centre-crop a square: uint8 [3, size, size]."""
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float, ImageNet-normalised."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (x.float() / 255.0 - m) / s


def eval_tensor(path: Path, image_size: int, mean, std, crop_pct: float) -> torch.Tensor:
    """The exact preprocessing of evaluation and prediction, for one file: float [3, S, S]."""
    square = to_square_uint8(load_rgb(path), resize_size(image_size, crop_pct))
    return normalise(v2.functional.center_crop(square, [image_size, image_size]), mean, std)


class LeafDataset(Dataset):
    """Images decoded once into memory (uint8), augmented on the fly when `train`.

    Decoding once keeps two CPU cores on the model instead of on JPEG decoding; 1,200 images
    at 182 px take about 120 MB.
    """

    def __init__(
        self,
        root: Path,
        items: list[Item],
        labels: list[str],
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_pct: float = 0.875,
        train: bool = False,
    ) -> None:
        self.items = items
        self.index = {name: i for i, name in enumerate(labels)}
        self.image_size, self.mean, self.std, self.train = image_size, mean, std, train
        size = resize_size(image_size, crop_pct)
        self.images = (
            torch.stack([to_square_uint8(load_rgb(root / it.path), size) for it in items])
            if items
            else torch.empty(0)
        )
        self.raw = False  # True: __getitem__ gives the uint8 square, for batch augmentation
        self.targets = torch.tensor([self.index[it.label] for it in items], dtype=torch.long)
        if train:
            self.augment = v2.Compose(
                [
                    v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), antialias=True),
                    v2.RandomHorizontalFlip(),
                    v2.RandomVerticalFlip(),
                    v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
                ]
            )
        else:
            self.augment = v2.CenterCrop(image_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.raw:
            return self.images[i], self.targets[i]
        return normalise(self.augment(self.images[i]), self.mean, self.std), self.targets[i]
