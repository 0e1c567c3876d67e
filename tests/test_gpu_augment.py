"""Batched device augmentation, the `data.augment_on=device` path, and the GPU benchmark's CPU run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from usecases.core.gpu_augment import DeviceAugment, normalise, random_resized_crop_flip

from .conftest import REPO


def _ramp(b: int = 2, side: int = 32) -> torch.Tensor:
    x = torch.arange(side, dtype=torch.float32).repeat(side, 1)  # value = column index
    return torch.stack([x, x.T, x * 0 + 7]).expand(b, 3, side, side).clone()


def test_full_crop_without_flip_is_the_image():
    x = _ramp()
    out = random_resized_crop_flip(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out, x, atol=1e-4)


def test_flip_mirrors_and_crops_stay_inside_the_value_range():
    x = _ramp()
    flipped = random_resized_crop_flip(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-4)
    g = torch.Generator().manual_seed(0)
    crops = random_resized_crop_flip(_ramp(64), 16, generator=g)
    assert crops.shape == (64, 3, 16, 16)
    assert crops.min() >= 0 and crops.max() <= 31
    # Different images get different boxes: per-image randomness, not one box per batch.
    assert len({round(float(c[0].mean()), 3) for c in crops}) > 32
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_resized_crop_flip(x[0], 16)


def test_device_augment_normalises_to_channels_last():
    x = torch.full((4, 3, 40, 40), 255, dtype=torch.uint8)
    out, y = DeviceAugment(24, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))((x, torch.arange(4)))
    assert out.shape == (4, 3, 24, 24) and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, torch.ones_like(out)) and y.tolist() == [0, 1, 2, 3]
    assert torch.allclose(normalise(x[:1], (0.0,) * 3, (1.0,) * 3), torch.ones(1, 3, 40, 40))


def test_training_with_device_augmentation(smoke_cfg):
    from usecases.core import stages

    cfg = smoke_cfg("data.augment_on=device")
    stages.prepare(cfg)
    assert stages.train(cfg)["steps"] == 2
    with pytest.raises(ValueError, match="data.augment_on 'gpu'"):
        stages.train(smoke_cfg("data.augment_on=gpu"))


def test_gpu_benchmark_runs_on_cpu():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/gpu_train.py"),
            "--device=cpu",
            "--model=resnet18",
            "--batch=4",
            "--size=32",
            "--source-side=48",
            "--steps=1",
            "--warmup=1",
            "--workers=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["synthetic", "jpeg", "uint8"]
    assert all(float(r.split("|")[2]) > 0 for r in rows[1:])
