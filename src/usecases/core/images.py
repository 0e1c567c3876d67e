"""Image decoding and integrity checks shared by the image use cases."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Modes that convert to RGB without losing meaning; alpha is dropped, CMYK is converted.
CONVERTIBLE_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1"}


class ImageError(ValueError):
    """An image file cannot be used; the message names the file and the reason."""


def check_image(path: Path, min_side: int = 32, max_pixels: int = 50_000_000) -> str | None:
    """Return why `path` is unusable, or None. Decodes the whole file, so truncation shows."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below decides; PIL's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > max_pixels:
                return f"too many pixels ({w}x{h} > {max_pixels}; possible decompression bomb)"
            if im.mode not in CONVERTIBLE_MODES:
                return f"unsupported colour mode {im.mode!r}"
            if min(w, h) < min_side:
                return f"too small ({w}x{h}; shorter side must be >= {min_side})"
            im.load()
    except UnidentifiedImageError:
        return "not an image (cannot identify the file format)"
    except Image.DecompressionBombError as e:
        return f"decompression bomb ({e})"
    except (OSError, SyntaxError, ValueError) as e:
        return f"corrupt image ({e})"
    return None


def load_rgb(path: Path, min_side: int = 1, max_pixels: int = 50_000_000) -> Image.Image:
    """Decode `path` to an RGB image or raise ImageError naming the file and the problem."""
    reason = check_image(Path(path), min_side=min_side, max_pixels=max_pixels)
    if reason:
        raise ImageError(f"{path}: {reason}")
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "PA", "P"):
            # Composite transparency on white rather than the undefined colour under alpha.
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(bg, im).convert("RGB")
        return im.convert("RGB")
