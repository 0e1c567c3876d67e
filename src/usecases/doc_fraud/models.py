"""The forensic tile CNN for forged-document detection, registered in the zoo.

Input layout, [B, 5, T, T] (T = the tile side, `image_size`):
    channels 0-2  RGB, (x / 255 - mean) / std with the entry's `mean`/`std`
    channel 3     tile centre y on the page, 2 * cy / height - 1, in [-1, 1], constant over the tile
    channel 4     tile centre x on the page, 2 * cx / width - 1, in [-1, 1], constant over the tile
`usecases.doc_fraud.tiles.TileDataset` and `score_page` build exactly this (see `tile_tensor`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from usecases.core.checkpoint import load_weights
from usecases.core.registry import register_model

log = logging.getLogger(__name__)

IN_CHANNELS = 5  # 3 RGB + 2 coordinates
# Pages are mostly paper near white: no ImageNet statistics; this maps [0, 1] to [-1, 1].
DOC_MEAN = (0.5, 0.5, 0.5)
DOC_STD = (0.5, 0.5, 0.5)


def _load_state(weights: str) -> dict[str, torch.Tensor]:
    """Tensors from a local .safetensors or .pth file; never unpickles arbitrary objects."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights: {path} not found")
    if path.suffix == ".safetensors":
        return load_weights(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        # GroupNorm: no batch statistics, so balanced training batches and single-page scoring
        # batches (nearly all clean tiles) see the same normalisation.
        nn.GroupNorm(8, c_out),
        nn.SiLU(inplace=True),
    ]


class _TileCNN(nn.Module):
    """A full-resolution stem, three stride-2 stages, avg+max pooling, and a small MLP head that
    also sees the tile position.

    The first two convolutions keep full resolution: JPEG re-compression removes sensor noise
    and leaves 8x8 block edges, and a re-drawn digit differs by a pixel or a shade; a stride-2
    stem would alias these away. Max pooling keeps a small anomaly that averaging over a mostly
    clean tile would dilute. The head receives the tile centre (channels 3-4, averaged) beside
    the pooled features so that it can combine content and position ("stamp ink here").
    """

    def __init__(self, num_classes: int, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(IN_CHANNELS, w // 2, 1),  # [B, w/2, T, T]
            *_block(w // 2, w, 1),  # [B, w, T, T]
            *_block(w, 2 * w, 2),  # [B, 2w, T/2, T/2]
            *_block(2 * w, 3 * w, 2),  # [B, 3w, T/4, T/4]
            *_block(3 * w, 6 * w, 2),  # [B, 6w, T/8, T/8]
        )
        c = 6 * w
        self.head = nn.Sequential(
            nn.Linear(2 * c + 2, 64),
            nn.SiLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 5, T, T] -> [B, classes]
        if x.ndim != 4 or x.shape[1] != IN_CHANNELS:
            raise ValueError(f"x: expected [B, {IN_CHANNELS}, T, T] tiles, got {tuple(x.shape)}")
        f = self.features(x)  # [B, C, T/8, T/8]
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3)), x[:, 3:].mean((2, 3))], 1)
        return self.head(pooled)  # pooled: [B, 2C + 2]


@register_model(
    "doc_fraud",
    mean=DOC_MEAN,
    std=DOC_STD,
    crop_pct=1.0,
    licence="Apache-2.0",
    source="usecase-zoo",
    task="image-classification",
    in_channels=IN_CHANNELS,
)
def doc_tilecnn(
    pretrained: bool = False,
    num_classes: int = 2,
    image_size: int = 96,
    dropout: float = 0.0,
    weights: str | None = None,
) -> nn.Module:
    """A 0.2 M-parameter forensic CNN over 5-channel page tiles (RGB + tile position)."""
    if pretrained and not weights:
        raise ValueError("doc_tilecnn has no pretrained weights; set model.pretrained=false")
    if image_size < 16 or image_size % 8:
        raise ValueError(
            f"image_size: the tile side must be a multiple of 8 >= 16, got {image_size}"
        )
    model = _TileCNN(num_classes, dropout=dropout)
    if weights:
        model.load_state_dict(_load_state(weights))
    return model
