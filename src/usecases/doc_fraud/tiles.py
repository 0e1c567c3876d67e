"""Page tiles for the forensic CNN: tiling, the training dataset, page scoring, heat maps, and
page-level ink statistics.

A page is cut into T x T tiles at a stride (the last row and column sit on the page edge, so
every pixel is covered). A tile's input is [5, T, T]: RGB normalised with the model's mean/std,
then the tile centre's y and x on the page in [-1, 1], broadcast over the tile (`tile_tensor`).
The CNN scores each tile; the heat map is the forged probability per tile [rows, cols] and the
page score its maximum (see `score_page` for why).

Stamp anomalies are partly absences (a missing stamp leaves blank paper, which no tile can call
forged), so `ink_features` summarises the page's coloured ink for a page-level model.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, half-open

# Translations for training tiles are whole JPEG blocks: the 8 x 8 grid of the final
# compression stays at the same phase in every tile, so double-compression traces keep their
# shape; a sub-block shift would make the model learn eight phases from the same data.
JPEG_BLOCK = 8
# Forgeries whose pixels are clean (the values contradict each other, drawn normally): their
# masks mark the conflicting values, not edited pixels, so their tiles train as clean ones.
PIXEL_CLEAN_TYPES = ("inconsistent",)

INK_FEATURE_NAMES = (
    "ink_fraction",  # coloured-ink pixels / page pixels
    "ink_cx",  # their centroid, x / width
    "ink_cy",  # their centroid, y / height
    "ink_spread",  # rms distance to the centroid / page diagonal
    "ink_chroma",  # mean distance from the paper colour in the chroma plane (0..1)
    "ink_hue_cos",  # direction of their mean chroma (a circular hue)
    "ink_hue_sin",
    "light_fraction",  # light coloured ink (stamps) / page pixels
    "light_cx",
    "light_cy",
    "light_dark_dx",  # light-ink centroid x minus dark-ink (signature) centroid x, / width
    "light_dark_dy",
    # The stamp: the largest patch of light coloured ink away from dark ink (a signature's
    # anti-aliased edges are light too), found after closing small gaps between its strokes.
    "stamp_area",  # its ink pixels / page pixels (about 0 when the stamp is missing)
    "stamp_cx",  # its centroid / width (0.5 when there is none)
    "stamp_cy",
    "stamp_radius",  # farthest ink pixel from the centroid / page diagonal
    "stamp_fill",  # ink pixels / the disk of that radius
    "stamp_tone",  # mean grey of its ink (0..1): a lifted, softer copy is paler
    "stamp_edge",  # 95th percentile grey gradient at its ink / its contrast: copies are blurred
    "stray_light",  # light coloured ink outside it / page pixels (a second, moved stamp)
    # The stamp's outer ring, found as the strongest thin circle of coloured ink (`stamp_ring`):
    # a round stamp keeps its ring where a signature crosses it, where the blob above breaks.
    "ring_score",  # ring chroma minus the chroma just inside and outside it (about 0: no stamp)
    "ring_cx",  # its centre / width
    "ring_cy",  # / height
    "ring_radius",  # / width
    "ring_width",  # spread of its radial chroma profile, in pixels at 874 pixels per page width
    "ring_grey",  # mean grey of the ring's pixels (0..1): a lifted copy is paler
    "ring_chroma",  # their mean distance from the paper colour in the chroma plane (0..1)
)
_RING_NAMES = tuple(n for n in INK_FEATURE_NAMES if n.startswith("ring_"))
# The ring search: radii as fractions of the page width (a 78-92 px stamp on an A5 page at
# 150 dpi is about 0.1), on a coloured-ink map brought to about _RING_MAP_WIDTH pixels across.
_RING_RADII = (0.075, 0.12)
_RING_MAP_WIDTH = 437
_RING_PROFILE_WIDTH = 2 * _RING_MAP_WIDTH  # the radial profile's resolution, pixels across
_RING_CHROMA_CAP = 60.0  # chroma saturates here, so that the ring's length outweighs its ink
_STAMP_CLOSING = 4  # closing iterations (half-resolution pixels) joining a stamp's ring and text
_SIGNATURE_MARGIN = 2  # light ink this close to dark coloured ink belongs to the signature
# A pixel is coloured ink when its chroma (RGB minus its grey) is this far from the paper's,
# in grey levels: black text and tinted paper stay below it, faint stamp ink rises above.
_INK_CHROMA = 15.0
_LIGHT_INK = 110.0  # grey level splitting stamp ink (light) from signature ink (dark)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _starts(n: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, n - tile + 1, stride))
    if starts[-1] != n - tile:
        starts.append(n - tile)  # the last row/column sits on the edge
    return starts


def grid_shape(height: int, width: int, tile: int, stride: int) -> tuple[int, int]:
    """(rows, cols) of `tile_boxes` for a page of this size."""
    return len(_starts(height, tile, stride)), len(_starts(width, tile, stride))


def tile_boxes(height: int, width: int, tile: int, stride: int) -> list[Box]:
    """Row-major tiles covering a height x width page; the last row and column are aligned to
    the bottom and right edges (they overlap their neighbours when the stride does not fit)."""
    height = _positive_int("height", height)
    width = _positive_int("width", width)
    tile = _positive_int("tile", tile)
    stride = _positive_int("stride", stride)
    if tile > min(height, width):
        raise ValueError(f"tile {tile} is larger than the page ({height} x {width})")
    if stride > tile:
        raise ValueError(f"stride {stride} > tile {tile} would leave pixels uncovered")
    return [
        (x, y, x + tile, y + tile)
        for y in _starts(height, tile, stride)
        for x in _starts(width, tile, stride)
    ]


def tile_targets(
    mask: np.ndarray | None, boxes: Sequence[Box], min_fraction: float = 0.02
) -> np.ndarray:
    """int64 [len(boxes)]: 1 where the tile holds at least `min_fraction` of
    min(tile area, all mask pixels of the page), else 0.

    The second term lets a tile that holds most of a tiny edit (a re-drawn digit covers ~400
    pixels, 4 % of a 96-pixel tile) count as forged. `mask` is [H, W], non-zero = forged; None
    (an authentic page) gives all zeros.
    """
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
    if mask is None:
        return np.zeros(len(boxes), dtype=np.int64)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a 2-D [H, W] array, got shape {mask.shape}")
    forged = mask > 0
    total = int(forged.sum())
    if total == 0:
        return np.zeros(len(boxes), dtype=np.int64)
    # Summed-area table: the count inside any box in O(1).
    sat = np.pad(forged.cumsum(0, dtype=np.int64).cumsum(1), ((1, 0), (1, 0)))
    out = np.zeros(len(boxes), dtype=np.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if x0 < 0 or y0 < 0 or x1 > forged.shape[1] or y1 > forged.shape[0]:
            raise ValueError(f"boxes: {(x0, y0, x1, y1)} lies outside the mask {forged.shape}")
        inside = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
        area = (x1 - x0) * (y1 - y0)
        out[i] = inside >= min_fraction * min(area, total)
    return out


def _as_array(image: Image.Image | np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 [H, W, 3] from a PIL image or an RGB uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"{name}: expected a uint8 [H, W, 3] RGB array, got {image.dtype} {image.shape}"
            )
        return image
    raise ValueError(f"{name}: expected a PIL image or a numpy array, got {type(image).__name__}")


def _norm(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    if m.shape != (3,) or s.shape != (3,):
        raise ValueError(f"mean/std: expected three values each, got {list(mean)}, {list(std)}")
    if (s <= 0).any():
        raise ValueError(f"std must be positive, got {list(std)}")
    return m, s


def tile_tensor(
    pixels: np.ndarray,
    box: Box,
    page_size: tuple[int, int],
    mean: np.ndarray,
    std: np.ndarray,
) -> torch.Tensor:
    """float32 [5, T, T] from uint8 pixels [T, T, 3] cut at `box` of a (height, width) page:
    (RGB / 255 - mean) / std, then the box centre's y and x, each mapped to [-1, 1]."""
    h, w = page_size
    t = pixels.shape[0]
    rgb = (pixels.astype(np.float32) / 255.0 - mean) / std  # [T, T, 3]
    cy = 2.0 * (box[1] + box[3]) / 2.0 / h - 1.0
    cx = 2.0 * (box[0] + box[2]) / 2.0 / w - 1.0
    coords = np.broadcast_to(np.array([cy, cx], dtype=np.float32), (t, t, 2))
    return torch.from_numpy(
        np.ascontiguousarray(np.concatenate([rgb, coords], 2).transpose(2, 0, 1))
    )


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        mask = np.asarray(im.convert("L"))
    if mask.shape != size:
        raise ValueError(f"{path}: mask is {mask.shape[::-1]} but its page is {size[::-1]}")
    return mask


def _pixel_clean(mask_path: Path) -> bool:
    """Whether the generated corpus records this mask's forgery as pixel-clean
    (fields/<id>.json beside masks/); False for collections without such records."""
    record = mask_path.parent.parent / "fields" / f"{mask_path.stem}.json"
    if not record.is_file():
        return False
    kind = json.loads(record.read_text(encoding="utf-8")).get("forgery_type")
    return kind in PIXEL_CLEAN_TYPES


def _inked(pixels: np.ndarray) -> bool:
    """A tile holds ink (text, stamp, signature) when 1 % of it is darker than paper by far."""
    return float((pixels.min(axis=2) < 170).mean()) > 0.01


class TileDataset(Dataset):
    """(tile [5, T, T] float32, target int64) pairs from page images and their forgery masks.

    `pages`: (image path, mask path or None); a mask is 8-bit, non-zero = forged pixels. Each
    page is decoded once; the dataset keeps uint8 crops of the tiles it uses (with a margin
    for translation when training), not whole pages.

    - `train=False`: every tile of every page, in page then row-major order, unaugmented.
    - `train=True`: every forged tile `positive_repeats` times, plus `negatives_per_page` clean
      tiles of every page (forged and authentic alike), half drawn among tiles holding ink
      (text, stamp, signature: the hard negatives) and half uniformly, seeded by (seed, page).
      With the defaults (8 negatives, 2 repeats) and the generated corpus, about one forged
      tile to two clean ones. Tiles are translated by whole 8-pixel JPEG blocks, up to
      `max_shift` pixels, drawn from torch's global generator (seeded by the trainer; loader
      workers get their seeds from the loader's generator), and their targets follow the
      translated window. No resizing, blurring or colour change: those destroy the
      high-frequency traces the model looks for.

    Masks of pixel-clean forgeries (`PIXEL_CLEAN_TYPES`, read from the corpus's
    fields/<id>.json when present) are dropped: their pages' tiles are clean pixels.
    """

    def __init__(
        self,
        pages: Sequence[tuple[Path, Path | None]],
        tile: int,
        stride: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        train: bool,
        seed: int,
        negatives_per_page: int = 8,
        positive_repeats: int = 2,
        min_fraction: float = 0.02,
        max_shift: int = 8,
    ) -> None:
        self.tile = _positive_int("tile", tile)
        self.stride = _positive_int("stride", stride)
        self.mean, self.std = _norm(mean, std)
        if negatives_per_page < 0:
            raise ValueError(f"negatives_per_page must be >= 0, got {negatives_per_page}")
        self.positive_repeats = _positive_int("positive_repeats", positive_repeats)
        if max_shift < 0 or max_shift % JPEG_BLOCK:
            raise ValueError(f"max_shift must be a multiple of {JPEG_BLOCK} >= 0, got {max_shift}")
        self.train = train
        self.shift = max_shift if train else 0
        self.min_fraction = min_fraction
        # Per item: index into the crop lists, and the tile's box on its page.
        self.items: list[tuple[int, Box]] = []
        self._crops: list[np.ndarray] = []  # uint8 [t + margins, t + margins, 3]
        self._mask_crops: list[np.ndarray | None] = []  # uint8 [same], None: clean page
        self._origins: list[tuple[int, int]] = []  # crop (x0, y0) on its page
        self._page_size: list[tuple[int, int]] = []  # (height, width)
        self._totals: list[int] = []  # forged pixels on the crop's page
        self.targets: list[int] = []
        for p, (image_path, mask_path) in enumerate(pages):
            self._add_page(p, Path(image_path), mask_path, seed, negatives_per_page)
        if not self.items:
            raise ValueError("pages: no tiles (empty page list?)")
        n_pos = int(sum(self.targets))
        log.info(
            "%d %s tiles from %d pages: %d forged, %d clean",
            len(self.items),
            "training" if train else "evaluation",
            len(pages),
            n_pos,
            len(self.items) - n_pos,
        )

    def _add_page(
        self, p: int, image_path: Path, mask_path: Path | None, seed: int, negatives: int
    ) -> None:
        with Image.open(image_path) as im:
            page = np.asarray(im.convert("RGB"))  # uint8 [H, W, 3], decoded once
        h, w = page.shape[:2]
        mask = None
        if mask_path is not None and not _pixel_clean(Path(mask_path)):
            mask = _read_mask(Path(mask_path), (h, w))
        boxes = tile_boxes(h, w, self.tile, self.stride)
        targets = tile_targets(mask, boxes, self.min_fraction)
        if not self.train:
            chosen = list(range(len(boxes)))
        else:
            positives = np.flatnonzero(targets).tolist()
            clean = np.flatnonzero(targets == 0)
            rng = np.random.default_rng(np.random.SeedSequence([seed, p]))
            inked = np.array(
                [_inked(page[b[1] : b[3], b[0] : b[2]]) for b in np.array(boxes)[clean]]
            )
            k_ink = min(negatives // 2, int(inked.sum()))
            hard = rng.choice(clean[inked], size=k_ink, replace=False) if k_ink else []
            rest = np.setdiff1d(clean, hard)
            k_any = min(negatives - k_ink, len(rest))
            easy = rng.choice(rest, size=k_any, replace=False) if k_any else []
            chosen = positives * self.positive_repeats + sorted([*hard, *easy])
        total = int((mask > 0).sum()) if mask is not None else 0
        m = self.shift
        for i in chosen:
            x0, y0, x1, y1 = boxes[i]
            cx0, cy0 = max(0, x0 - m), max(0, y0 - m)
            cx1, cy1 = min(w, x1 + m), min(h, y1 + m)
            self._crops.append(page[cy0:cy1, cx0:cx1].copy())
            self._mask_crops.append(None if mask is None else mask[cy0:cy1, cx0:cx1].copy())
            self._origins.append((cx0, cy0))
            self._page_size.append((h, w))
            self._totals.append(total)
            self.items.append((len(self._crops) - 1, boxes[i]))
            self.targets.append(int(targets[i]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, (x0, y0, x1, y1) = self.items[index]
        crop, (ox, oy) = self._crops[k], self._origins[k]
        h, w = self._page_size[k]
        target = self.targets[index]
        if self.shift:
            blocks = self.shift // JPEG_BLOCK
            dx, dy = (torch.randint(-blocks, blocks + 1, (2,)) * JPEG_BLOCK).tolist()
            # Stay inside the page: clamp to what the stored crop holds.
            dx = min(max(dx, ox - x0), ox + crop.shape[1] - x1)
            dy = min(max(dy, oy - y0), oy + crop.shape[0] - y1)
            x0, x1, y0, y1 = x0 + dx, x1 + dx, y0 + dy, y1 + dy
            mask = self._mask_crops[k]
            if mask is not None:
                window = mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
                target = int(
                    (window > 0).sum() >= self.min_fraction * min(window.size, self._totals[k])
                )
        pixels = crop[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        x = tile_tensor(pixels, (x0, y0, x1, y1), (h, w), self.mean, self.std)
        return x, torch.tensor(target, dtype=torch.long)


@torch.no_grad()
def score_page(
    model: nn.Module,
    image: Image.Image | np.ndarray,
    tile: int,
    stride: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
) -> tuple[float, np.ndarray]:
    """(page score, heat map float32 [rows, cols]): the forged probability of every tile, and
    its maximum as the page's probability of holding a forged region.

    The maximum, not a mean: a forgery touches one to a dozen tiles of ~130, so a mean is
    dominated by clean paper (on the generated corpus, top-3 mean and max rank pages alike;
    the mean of all tiles loses most of the signal). The model runs in eval mode and is put
    back in its previous mode afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pixels = _as_array(image)
    h, w = pixels.shape[:2]
    boxes = tile_boxes(h, w, tile, stride)
    m, s = _norm(mean, std)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = []
    try:
        for i in range(0, len(boxes), batch_size):
            batch = torch.stack(
                [
                    tile_tensor(pixels[y0:y1, x0:x1], (x0, y0, x1, y1), (h, w), m, s)
                    for x0, y0, x1, y1 in boxes[i : i + batch_size]
                ]
            ).to(device)  # [b, 5, T, T]
            probs.append(torch.softmax(model(batch).float(), 1)[:, 1].cpu())
    finally:
        model.train(was_training)
    heat = torch.cat(probs).numpy().reshape(grid_shape(h, w, tile, stride))
    return float(heat.max()), heat.astype(np.float32)


def heatmap_overlay(
    image: Image.Image | np.ndarray,
    heat: np.ndarray,
    boxes: Sequence[Box] | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """The page with the heat map in translucent red (opacity `alpha` x probability).

    With `boxes` (from `tile_boxes`, one per heat cell in row-major order) each tile is painted
    at its place, overlaps taking the larger value; without, the heat map is stretched over the
    page, which is exact when the tiles do not overlap.
    """
    pixels = _as_array(image)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat: expected a [rows, cols] array, got shape {heat.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    h, w = pixels.shape[:2]
    if boxes is None:
        full = np.asarray(Image.fromarray(heat, mode="F").resize((w, h), Image.NEAREST))
    else:
        if len(boxes) != heat.size:
            raise ValueError(f"boxes: {len(boxes)} boxes for a heat map of {heat.size} cells")
        full = np.zeros((h, w), dtype=np.float32)
        for (x0, y0, x1, y1), v in zip(boxes, heat.ravel(), strict=True):
            np.maximum(full[y0:y1, x0:x1], v, out=full[y0:y1, x0:x1])
    a = alpha * np.clip(full, 0.0, 1.0)[..., None]  # [H, W, 1]
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    out = pixels.astype(np.float32) * (1.0 - a) + red * a
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def ink_features(image: Image.Image | np.ndarray) -> dict[str, float]:
    """Coloured-ink statistics of a page (`INK_FEATURE_NAMES`), for a page-level model.

    Coloured ink = pixels whose chroma is far from the paper's (the page's median chroma), at
    half resolution (global statistics need no more). Light coloured ink is mostly the stamp,
    dark mostly the signature; their relative position shows a stamp moved away from the
    signature block, their amount a missing one, the hue and chroma a stamp in other ink.
    Pages without coloured ink get zeros (centroids at the page centre).
    """
    pixels = _as_array(image)
    half = pixels[::2, ::2]
    h, w = half.shape[:2]
    grey = half.astype(np.float32).mean(2, keepdims=True)
    dev, norm = _chroma(half, paper_step=1)
    ink = norm > _INK_CHROMA  # [h, w]
    light = ink & (grey[..., 0] >= _LIGHT_INK)
    dark = ink & (grey[..., 0] < _LIGHT_INK)
    ys, xs = np.mgrid[0:h, 0:w]

    def centroid(sel: np.ndarray) -> tuple[float, float]:
        if not sel.any():
            return 0.5, 0.5
        return float(xs[sel].mean() / w), float(ys[sel].mean() / h)

    cx, cy = centroid(ink)
    lx, ly = centroid(light)
    dx, dy = centroid(dark)
    n = int(ink.sum())
    if n:
        r2 = (xs[ink] - cx * w) ** 2 + (ys[ink] - cy * h) ** 2
        spread = math.sqrt(float(r2.mean())) / math.hypot(w, h)
        d = dev[ink]  # [n, 3]
        # Hue as the angle of the mean chroma in the plane orthogonal to grey.
        u = (d[:, 0] - d[:, 1]).mean() / math.sqrt(2.0)
        v = (d[:, 0] + d[:, 1] - 2.0 * d[:, 2]).mean() / math.sqrt(6.0)
        angle = math.atan2(v, u)
        hue_cos, hue_sin = math.cos(angle), math.sin(angle)
        strength = float(np.linalg.norm(d, axis=1).mean() / 255.0)
    else:
        spread = hue_cos = hue_sin = strength = 0.0
    both = light.any() and dark.any()
    stamp = _stamp(pixels, grey[..., 0], light, dark)
    ring = stamp_ring(pixels)
    return {
        "ink_fraction": n / ink.size,
        "ink_cx": cx,
        "ink_cy": cy,
        "ink_spread": spread,
        "ink_chroma": strength,
        "ink_hue_cos": hue_cos,
        "ink_hue_sin": hue_sin,
        "light_fraction": float(light.sum()) / ink.size,
        "light_cx": lx,
        "light_cy": ly,
        "light_dark_dx": lx - dx if both else 0.0,
        "light_dark_dy": ly - dy if both else 0.0,
        **stamp,
        **ring,
    }


def _stamp(
    pixels: np.ndarray, grey: np.ndarray, light: np.ndarray, dark: np.ndarray
) -> dict[str, float]:
    """The stamp features of `INK_FEATURE_NAMES` from half-resolution grey and ink masks."""
    from scipy import ndimage

    out = {
        "stamp_area": 0.0,
        "stamp_cx": 0.5,
        "stamp_cy": 0.5,
        "stamp_radius": 0.0,
        "stamp_fill": 0.0,
        "stamp_tone": 0.0,
        "stamp_edge": 0.0,
        "stray_light": 0.0,
    }
    if dark.any():
        light = light & ~ndimage.binary_dilation(dark, iterations=_SIGNATURE_MARGIN)
    if not light.any():
        return out
    h, w = light.shape
    closed = ndimage.binary_closing(
        light, structure=np.ones((3, 3), bool), iterations=_STAMP_CLOSING
    )
    labels, n = ndimage.label(closed | light)
    sizes = ndimage.sum(light, labels, index=np.arange(1, n + 1))
    blob = (labels == int(np.argmax(sizes)) + 1) & light
    ys, xs = np.nonzero(blob)
    cx, cy = float(xs.mean()), float(ys.mean())
    radius = float(np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2).max())
    area = int(blob.sum())
    # Sharpness at full resolution: the stamp's strongest grey gradients against its contrast
    # with the paper, so that a paler stamp is not mistaken for a softer one.
    full = pixels.astype(np.float32).mean(axis=2)
    gy, gx = np.gradient(full)
    on = np.zeros(full.shape, dtype=bool)
    on[::2, ::2][: blob.shape[0], : blob.shape[1]] = blob
    on = ndimage.binary_dilation(on, iterations=1)
    contrast = max(float(np.median(full)) - float(np.percentile(full[on], 5)), 1.0)
    out.update(
        stamp_area=area / (h * w),
        stamp_cx=cx / w,
        stamp_cy=cy / h,
        stamp_radius=radius / math.hypot(w, h),
        stamp_fill=area / max(math.pi * radius * radius, 1.0),
        stamp_tone=float(grey[blob].mean()) / 255.0,
        stamp_edge=float(np.percentile(np.hypot(gx, gy)[on], 95)) / contrast,
        stray_light=float(light.sum() - area) / (h * w),
    )
    return out


def _annulus(radius: float, width: float, half: int) -> np.ndarray:
    """A ring of `width` pixels at `radius`, on a (2 * half + 1)^2 grid, summing to 1."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    d = np.hypot(xx, yy)
    ring = ((d >= radius - width / 2) & (d < radius + width / 2)).astype(np.float32)
    return ring / max(float(ring.sum()), 1.0)


def _chroma(pixels: np.ndarray, paper_step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's chroma (its colour minus its grey, summing to 0 over the channels) minus
    the paper's, [h, w, 3], and its norm [h, w]; the paper's chroma is the median over every
    `paper_step`-th pixel in each direction."""
    x = pixels.astype(np.float32)
    dev = x - x.mean(2, keepdims=True)
    dev -= np.median(dev[::paper_step, ::paper_step].reshape(-1, 3), axis=0)
    return dev, np.linalg.norm(dev, axis=2)


def stamp_ring(image: Image.Image | np.ndarray) -> dict[str, float]:
    """The ring features of `INK_FEATURE_NAMES`: the page's strongest thin circle of coloured ink.

    A matched filter over centres and radii: the mean (capped) chroma on a ring 2 map pixels
    wide, minus the mean of the rings 3.5 pixels inside and outside it, so that a filled patch
    or a straight stroke scores low and only a circle scores high. At the best circle, the
    page-resolution radial chroma profile gives the ring's width (its spread about the peak: a
    stamp lifted from another scan is blurred, hence wider) and its pixels' grey and chroma.
    """
    from scipy.signal import fftconvolve

    pixels = _as_array(image)
    h, w = pixels.shape[:2]
    step = max(1, round(w / _RING_MAP_WIDTH))
    small = pixels[::step, ::step]
    _, chroma = _chroma(small)
    heat = np.minimum(chroma, _RING_CHROMA_CAP) / _RING_CHROMA_CAP
    mw = heat.shape[1]
    r_lo, r_hi = (f * mw for f in _RING_RADII)
    half = int(math.ceil(r_hi + 6))
    best = (-np.inf, 0.0, 0, 0)
    for r in np.arange(r_lo, r_hi + 0.5, 1.0):
        kernel = _annulus(r, 2.0, half) - 0.5 * (
            _annulus(r - 3.5, 2.0, half) + _annulus(r + 3.5, 2.0, half)
        )
        resp = fftconvolve(heat, kernel[::-1, ::-1], mode="same")
        i = int(np.argmax(resp))
        if resp.flat[i] > best[0]:
            best = (float(resp.flat[i]), float(r), i // mw, i % mw)
    score, r, cy, cx = best
    if not score > 0:  # no coloured ink at all: no ring
        return {**dict.fromkeys(_RING_NAMES, 0.0), "ring_cx": 0.5, "ring_cy": 0.5, "ring_grey": 1.0}
    # The radial profile at about _RING_PROFILE_WIDTH pixels across (step2 image pixels each).
    step2 = max(1, round(w / _RING_PROFILE_WIDTH))
    scale = step / step2  # map pixels -> profile pixels
    CX, CY, R = cx * scale, cy * scale, r * scale
    n = int(R + 14)
    full = pixels[::step2, ::step2]
    y0, x0 = max(0, int(CY) - n), max(0, int(CX) - n)
    y1, x1 = min(full.shape[0], int(CY) + n + 1), min(full.shape[1], int(CX) + n + 1)
    dev, chroma = _chroma(full)
    sub = np.minimum(chroma[y0:y1, x0:x1], 2 * _RING_CHROMA_CAP)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx - CX, yy - CY)
    edges = np.arange(R - 10, R + 10.01, 0.5)
    idx = np.digitize(d.ravel(), edges)
    sums = np.bincount(idx, weights=sub.ravel(), minlength=len(edges) + 1)[1 : len(edges)]
    counts = np.bincount(idx, minlength=len(edges) + 1)[1 : len(edges)]
    profile = sums / np.maximum(counts, 1)
    radii = (edges[:-1] + edges[1:]) / 2
    peak = int(np.argmax(profile))
    base = float(np.median(np.r_[profile[:6], profile[-6:]]))
    weight = np.clip(profile - base, 0.0, None) * (np.abs(radii - radii[peak]) <= 5)
    total = max(float(weight.sum()), 1e-6)
    mu = float((weight * radii).sum()) / total
    spread = math.sqrt(float((weight * (radii - mu) ** 2).sum()) / total)
    on = np.abs(d - mu) <= 2.0
    grey = full[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
    ring_chroma = float(np.linalg.norm(dev[y0:y1, x0:x1][on].mean(axis=0))) if on.any() else 0.0
    return {
        "ring_score": score,
        "ring_cx": CX * step2 / w,
        "ring_cy": CY * step2 / h,
        "ring_radius": mu * step2 / w,
        "ring_width": spread * step2 * _RING_PROFILE_WIDTH / w,
        "ring_grey": float(grey[on].mean()) / 255.0 if on.any() else 1.0,
        "ring_chroma": ring_chroma / 255.0,
    }


_LINE_SECTORS = 90  # radial profiles taken around a ring
_LINE_STEP = 0.25  # px between samples of a radial profile
_LINE_HALF = 3.0  # px either side of a line's peak that hold its ink
_LINE_MIN_DARK = 8.0  # grey levels: a sector whose line is paler than this is not measured


def ring_line_sharpness(
    image: Image.Image | np.ndarray, cx: float, cy: float, radius: float
) -> float | None:
    """How sharp the thin circle drawn inside a stamp's outer ring is: peak darkness over
    integrated darkness (1/px) of its radial profile, the median over sectors.

    The circle is the radius, between 0.55 and 0.95 of the outer ring's (`cx`, `cy`, `radius`
    in pixels), whose sector-median darkness stands highest above the darkness 3 px inside and
    outside it: a line drawn all round, where ring text or a crossing signature is dark in
    some sectors only. Each sector's peak is sought within 1.5 px of it (the centre is known to
    about a pixel). The ratio does not depend on the ink's tone, only on the line's width and
    blur: a stamp lifted from another scan and pasted is blurred twice. None when no circle
    is dark enough to measure."""
    from scipy import ndimage

    pixels = _as_array(image)
    grey = pixels.astype(np.float32).mean(axis=2)
    paper = float(np.median(grey[::4, ::4]))
    dark = paper - grey
    rho = np.arange(0.55 * radius, 0.95 * radius, _LINE_STEP)
    phi = np.arange(_LINE_SECTORS) * (2 * math.pi / _LINE_SECTORS)
    ys = cy - np.outer(np.cos(phi), rho)
    xs = cx + np.outer(np.sin(phi), rho)
    prof = ndimage.map_coordinates(dark, [ys, xs], order=1, mode="nearest")  # [sectors, radii]
    typical = np.median(prof, axis=0)
    k = int(round(_LINE_HALF / _LINE_STEP))
    if len(rho) <= 2 * k + 1:
        return None
    thin = typical[k:-k] - 0.5 * (typical[: -2 * k] + typical[2 * k :])
    centre = k + int(np.argmax(thin))
    search = int(round(1.5 / _LINE_STEP))
    values = []
    for p in prof:
        lo, hi = max(0, centre - search), min(len(rho), centre + search + 1)
        peak = lo + int(np.argmax(p[lo:hi]))
        a, b = peak - k, peak + k + 1
        if a - 4 < 0 or b + 4 > len(rho):
            continue
        base = float(np.median(np.r_[p[a - 4 : a], p[b : b + 4]]))
        line = p[a:b] - base
        if line[k] < _LINE_MIN_DARK:
            continue
        values.append(float(line[k]) / (float(np.clip(line, 0, None).sum()) * _LINE_STEP))
    return float(np.median(values)) if len(values) >= _LINE_SECTORS // 6 else None
