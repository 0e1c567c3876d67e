"""Scan simulation: a slight rotation, paper tint and texture, optical blur, sensor noise, JPEG.

The rotation is about the page centre and keeps the page size (corners filled with paper), so
image and page share one frame up to `page_to_image`, a 2x3 affine matrix. Ground-truth boxes
are the axis-aligned boxes of the rotated page boxes; at |angle| <= 1 degree a 500 px wide value
box grows by at most ~9 px in height, a margin that still isolates one text line.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from usecases.doc_fraud.synth.render import Box


@dataclass(frozen=True)
class ScanParams:
    angle: float  # degrees, counter-clockwise (Pillow's convention)
    blur: float  # Gaussian sigma, px
    noise: float  # grey-level standard deviation
    paper: tuple[int, int, int]
    texture: float  # relative amplitude of the low-frequency paper texture
    quality: int  # final JPEG quality

    def to_json(self) -> dict:
        d = asdict(self)
        d["angle"] = round(self.angle, 6)
        d["blur"] = round(self.blur, 6)
        d["noise"] = round(self.noise, 6)
        d["texture"] = round(self.texture, 6)
        d["paper"] = list(self.paper)
        return d


def sample_scan(rng: np.random.Generator) -> ScanParams:
    return ScanParams(
        angle=float(rng.uniform(-1.0, 1.0)),
        blur=float(rng.uniform(0.3, 0.75)),
        noise=float(rng.uniform(1.5, 4.0)),
        paper=(
            int(rng.integers(242, 256)),
            int(rng.integers(236, 251)),
            int(rng.integers(220, 242)),
        ),
        texture=float(rng.uniform(0.01, 0.04)),
        quality=int(rng.integers(85, 96)),
    )


def page_to_image(angle: float, size: tuple[int, int]) -> np.ndarray:
    """Forward 2x3 affine map of Pillow's `rotate(angle)` (same centre, no expansion).

    Pillow stores the inverse (output -> input); this inverts the same matrix it builds.
    """
    w, h = size
    a = -math.radians(angle)
    cx, cy = w / 2.0, h / 2.0
    inv = np.array(
        [
            [math.cos(a), math.sin(a), 0.0],
            [-math.sin(a), math.cos(a), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    inv[0, 2] = inv[0, 0] * -cx + inv[0, 1] * -cy + cx
    inv[1, 2] = inv[1, 0] * -cx + inv[1, 1] * -cy + cy
    return np.linalg.inv(inv)[:2]


def transform_box(box: Box, matrix: np.ndarray, size: tuple[int, int]) -> Box:
    """Axis-aligned box of the transformed corners, rounded outwards, clipped to the image."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=np.float64)
    pts = corners @ matrix.T
    w, h = size
    return (
        max(0, int(math.floor(pts[:, 0].min()))),
        max(0, int(math.floor(pts[:, 1].min()))),
        min(w, int(math.ceil(pts[:, 0].max()))),
        min(h, int(math.ceil(pts[:, 1].max()))),
    )


def _blur_kernel(sigma: float) -> ImageFilter.Kernel:
    # A 3x3 Gaussian: at sigma <= 0.75 px the weights beyond one pixel are < 1 %, and one
    # kernel pass costs a third of Pillow's three-pass GaussianBlur.
    w = np.exp(-(np.array([1.0, 0.0, 1.0]) ** 2) / (2 * sigma**2))
    k = np.outer(w, w)
    return ImageFilter.Kernel((3, 3), (k / k.sum()).ravel().tolist(), scale=1.0)


def simulate(page: np.ndarray, params: ScanParams, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3] page -> uint8 [H, W, 3] scanned image (before JPEG)."""
    h, w = page.shape[:2]
    # Bilinear: the blur that follows hides the difference from bicubic, at half the cost.
    img = Image.fromarray(page).rotate(
        params.angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255)
    )
    img = img.filter(_blur_kernel(params.blur))
    x = np.asarray(img, dtype=np.float32)
    # Paper: a tint times a smooth texture (drawn at 1/40 resolution, enlarged bicubically).
    low = rng.standard_normal((h // 40 + 2, w // 40 + 2)).astype(np.float32)
    tex = np.asarray(Image.fromarray(low, mode="F").resize((w, h), Image.BICUBIC))
    shade = 1.0 + params.texture * tex
    x *= shade[..., None]
    x *= np.asarray(params.paper, dtype=np.float32) / 255.0
    # Sensor noise, the same on the three channels (as after a scanner's colour processing);
    # +0.5 rounds on the cast below.
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise *= params.noise
    noise += 0.5
    x += noise[..., None]
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def rotate_mask(mask: Image.Image, params: ScanParams) -> Image.Image:
    return mask.rotate(params.angle, resample=Image.NEAREST, fillcolor=0)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # Fixed settings: 4:2:0 chroma subsampling, no optimisation pass -> stable bytes.
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
