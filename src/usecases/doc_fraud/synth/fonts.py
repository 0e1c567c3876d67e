"""Font files used on the synthetic pages, found by file name under the system font folders.

Every font is named here with the Debian/Ubuntu package that ships it, so a missing file gives an
error that says what to install. Pillow's BASIC layout engine is forced: the Raqm engine (when
present) shapes text through HarfBuzz/FriBiDi, whose versions differ between machines and would
break byte-identical regeneration; Latin text with accents needs no complex shaping.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from PIL import ImageFont

FONT_DIRS_ENV = (
    "DOC_FRAUD_FONT_DIRS"  # os.pathsep-separated folders searched instead of the defaults
)
DEFAULT_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts")

# name -> (file name, apt package)
FONT_FILES: dict[str, tuple[str, str]] = {
    "dejavu_sans": ("DejaVuSans.ttf", "fonts-dejavu-core"),
    "dejavu_sans_bold": ("DejaVuSans-Bold.ttf", "fonts-dejavu-core"),
    "dejavu_serif": ("DejaVuSerif.ttf", "fonts-dejavu-core"),
    "dejavu_serif_bold": ("DejaVuSerif-Bold.ttf", "fonts-dejavu-core"),
    "liberation_sans": ("LiberationSans-Regular.ttf", "fonts-liberation2"),
    "liberation_sans_bold": ("LiberationSans-Bold.ttf", "fonts-liberation2"),
    "liberation_serif": ("LiberationSerif-Regular.ttf", "fonts-liberation2"),
    "liberation_serif_bold": ("LiberationSerif-Bold.ttf", "fonts-liberation2"),
    "liberation_serif_italic": ("LiberationSerif-Italic.ttf", "fonts-liberation2"),
    "andika": ("Andika-Regular.ttf", "fonts-sil-andika"),
    "andika_bold": ("Andika-Bold.ttf", "fonts-sil-andika"),
    "dancing_script": ("DancingScript-Regular.otf", "fonts-dancingscript"),
    "dancing_script_bold": ("DancingScript-Bold.otf", "fonts-dancingscript"),
}

# Text families a document may be printed in: (regular, bold).
FAMILIES: dict[str, tuple[str, str]] = {
    "dejavu_sans": ("dejavu_sans", "dejavu_sans_bold"),
    "dejavu_serif": ("dejavu_serif", "dejavu_serif_bold"),
    "liberation_sans": ("liberation_sans", "liberation_sans_bold"),
    "liberation_serif": ("liberation_serif", "liberation_serif_bold"),
    "andika": ("andika", "andika_bold"),
}
SCRIPT_FONTS = ("dancing_script", "dancing_script_bold")


class FontNotFoundError(FileNotFoundError):
    """A font file the generator draws with is not installed."""


def font_dirs() -> list[Path]:
    env = os.environ.get(FONT_DIRS_ENV)
    dirs = env.split(os.pathsep) if env else DEFAULT_FONT_DIRS
    return [Path(d).expanduser() for d in dirs if d]


@functools.cache
def _index(dirs: tuple[Path, ...]) -> dict[str, Path]:
    """file name -> first path found; folders in priority order, files sorted for stability."""
    found: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.suffix.lower() in (".ttf", ".otf") and p.name not in found:
                    found[p.name] = p
    return found


def font_path(name: str) -> Path:
    if name not in FONT_FILES:
        raise ValueError(f"Unknown font {name!r}; expected one of {sorted(FONT_FILES)}")
    file, package = FONT_FILES[name]
    dirs = tuple(font_dirs())
    path = _index(dirs).get(file)
    if path is None:
        searched = ", ".join(str(d) for d in dirs)
        raise FontNotFoundError(
            f"Font {name!r} ({file}) not found under {searched}. It is shipped by the apt "
            f"package '{package}': apt-get install {package}"
        )
    return path


@functools.lru_cache(maxsize=512)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType font; loading a face costs ~1 ms, and a page uses ~10 of them."""
    return ImageFont.truetype(str(font_path(name)), int(size), layout_engine=ImageFont.Layout.BASIC)


def check_fonts() -> None:
    """Fail early, before any page is drawn, if a font file is missing."""
    for name in FONT_FILES:
        font_path(name)


def font_provenance() -> dict[str, dict[str, str]]:
    """Per font: file, apt package and a content hash (the file identifies the version)."""
    out = {}
    for name, (file, package) in sorted(FONT_FILES.items()):
        data = font_path(name).read_bytes()
        out[name] = {
            "file": file,
            "apt_package": package,
            "sha256": hashlib.sha256(data).hexdigest()[:16],
        }
    return out


def clear_cache() -> None:
    """Forget found files (after changing $DOC_FRAUD_FONT_DIRS)."""
    _index.cache_clear()
    font.cache_clear()
