"""Shared fixtures: a tiny leaf-like image data set written by the tests, and its configs."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Hermetic: never touch the network or the user's caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="zoo-test-cache-")
os.environ.pop("ZOO_MIRROR", None)

REPO = Path(__file__).resolve().parents[1]
LABELS = ("angular_leaf_spot", "bean_rust", "healthy")
_TINTS = {"angular_leaf_spot": (150, 120, 40), "bean_rust": (160, 70, 30), "healthy": (40, 150, 50)}


def leaf_image(label: str, seed: int, size: int = 72) -> Image.Image:
    """A leaf-coloured square with class-specific spots: learnable, different per seed."""
    rng = np.random.default_rng(seed)
    base = np.array(_TINTS[label], dtype=np.float32)
    img = np.clip(base + rng.normal(0, 18, (size, size, 3)), 0, 255)
    for _ in range(4 + LABELS.index(label) * 3):
        y, x = rng.integers(4, size - 4, 2)
        img[y - 3 : y + 3, x - 3 : x + 3] = (200, 60 + 60 * LABELS.index(label), 20)
    return Image.fromarray(img.astype(np.uint8))


def write_tiny_dataset(root: Path, train: int = 8, test: int = 3) -> Path:
    """<root>/ibean/{train,test}/<label>/<label>_NNNN.jpg, like the iBean archive."""
    seed = 0
    for split, n in (("train", train), ("test", test)):
        for label in LABELS:
            d = root / "ibean" / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                leaf_image(label, seed).save(d / f"{label}_{i:04d}.jpg", quality=90)
    return root


def run_zoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `zoo` CLI in a subprocess (as a user runs it), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "usecases.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def smoke_overrides(tmp: Path) -> list[str]:
    return [
        "profile=smoke",
        f"paths.raw={tmp / 'data/raw'}",
        f"paths.processed={tmp / 'data/processed'}",
        f"paths.models={tmp / 'models'}",
        f"paths.reports={tmp / 'reports'}",
        f"paths.runs={tmp / 'runs'}",
    ]


@pytest.fixture
def tiny_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp working folder with data/raw/crop_disease holding the tiny data set."""
    write_tiny_dataset(tmp_path / "data/raw/crop_disease")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(REPO / "configs"))
    return tmp_path


@pytest.fixture
def smoke_cfg(tiny_project: Path):
    from usecases.core.config import compose
    from usecases.core.registry import get_usecase

    def make(*extra: str):
        data = compose(smoke_overrides(tiny_project) + list(extra), usecase="crop_disease")
        return get_usecase("crop_disease").config(data)

    return make
