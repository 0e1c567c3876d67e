"""Training throughput on one GPU: synthetic tensors vs the real data path (goal: real >= 0.9x).

    python benchmarks/gpu_train.py                         # ResNet-50, 224 px, batch 256, bf16
    python benchmarks/gpu_train.py --compile               # + torch.compile
    python benchmarks/gpu_train.py --images data/raw/crop_disease/ibean/train
    python benchmarks/gpu_train.py --device cpu --model resnet18 --batch 8 --size 64 --steps 2

Needs only torch and torchvision (the GPU augmentation is imported from src/ directly), so it runs
on a GPU machine without the rest of the stack. Rows:
  synthetic       random tensors already on the device: the model's ceiling.
  jpeg            JPEG bytes through a DataLoader (workers, pinned memory, prefetching), decoded
                  on the device (`torchvision.io.decode_jpeg(device=...)`), randomly cropped,
                  flipped and normalised on the device (usecases.core.gpu_augment).
  uint8           images decoded once into (pinned) memory, as the crop-disease loader keeps them;
                  batches copied to the device and augmented there.
Each row: channels_last, bf16 autocast on CUDA (fp32 on CPU), SGD with momentum.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from usecases.core.gpu_augment import DeviceAugment  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def synthetic_jpegs(n: int, side: int, seed: int = 0) -> list[bytes]:
    """Smooth colour fields with a few shapes, JPEG-encoded: decode cost like a photo's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        img = np.stack(
            [
                255 * (a * xx + (1 - a) * yy),
                255 * (b * (1 - xx) + (1 - b) * yy),
                255 * np.full_like(xx, c),
            ],
            axis=-1,
        )
        for _ in range(6):
            y, x, r = rng.integers(0, side, 3)
            img[max(0, y - r // 4) : y + r // 4, max(0, x - r // 4) : x + r // 4] = rng.uniform(
                0, 255, 3
            )
        img += rng.normal(0, 6, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def read_jpegs(folder: Path, side: int) -> list[bytes]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"--images {folder}: no .jpg files found")
    return [p.read_bytes() for p in files]


class EncodedImages(Dataset):
    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.blobs[i], i % 1000


def collate_encoded(items):
    return [b for b, _ in items], torch.tensor([y for _, y in items])


def decode(blobs: list[torch.Tensor], device: torch.device, side: int) -> torch.Tensor:
    """Decode a batch of JPEGs on `device` -> uint8 [B, 3, side, side]."""
    dev = "cuda" if device.type == "cuda" else "cpu"
    images = torchvision.io.decode_jpeg(blobs, device=dev, mode=torchvision.io.ImageReadMode.RGB)
    if any(im.shape[-2:] != (side, side) for im in images):
        images = [
            F.interpolate(im[None].float(), size=(side, side), mode="bilinear")[0]
            if im.shape[-2:] != (side, side)
            else im.float()
            for im in images
        ]
    return torch.stack(list(images)).to(device)


def make_step(model, optimizer, device: torch.device, precision: str):
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else torch.autocast(device.type, enabled=False)
    )

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(batches, step, steps: int, warmup: int, batch: int, device: torch.device) -> float:
    """Images/s over `steps` steps after `warmup` steps; `batches` yields (x, y) on device."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def forever(loader):
    while True:
        yield from loader


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="resnet50", help="a torchvision classification model")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224, help="training crop side")
    p.add_argument("--source-side", type=int, default=256, help="side of the stored images")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--precision", choices=("bf16", "32"), default=None)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--images", type=Path, help="folder of JPEGs (default: generated ones)")
    p.add_argument("--n-images", type=int, default=2048, help="generated JPEGs")
    args = p.parse_args()

    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "32")
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = torchvision.models.get_model(args.model, weights=None, num_classes=1000)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    net = torch.compile(model) if args.compile else model
    step = make_step(net, optimizer, device, precision)
    augment = DeviceAugment(args.size, MEAN, STD)
    b, s = args.batch, args.size

    def synthetic():
        x = torch.randn(b, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (b,), device=device)
        while True:
            yield x, y

    blobs = (
        read_jpegs(args.images, args.source_side)
        if args.images
        else synthetic_jpegs(min(args.n_images, max(2 * b, 16)), args.source_side)
    )
    loader = DataLoader(
        EncodedImages(blobs),
        batch_size=b,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_encoded,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    if len(loader) == 0:
        raise SystemExit(f"--batch {b} exceeds the {len(blobs)} images")

    def jpeg():
        for enc, y in forever(loader):
            x = decode(enc, device, args.source_side)
            yield augment((x, y.to(device, non_blocking=True)))

    decoded = decode(
        [torch.frombuffer(bytearray(x), dtype=torch.uint8) for x in blobs],
        torch.device("cpu"),
        args.source_side,
    ).to(torch.uint8)
    if device.type == "cuda":
        decoded = decoded.pin_memory()
    labels = torch.arange(len(decoded)) % 1000

    def uint8():
        g = torch.Generator().manual_seed(0)
        while True:
            idx = torch.randint(0, len(decoded), (b,), generator=g)
            x = decoded[idx].to(device, non_blocking=True)
            yield augment((x, labels[idx].to(device, non_blocking=True)))

    rows = [
        ("synthetic", timed(synthetic(), step, args.steps, args.warmup, b, device)),
        ("jpeg", timed(jpeg(), step, args.steps, args.warmup, b, device)),
        ("uint8", timed(uint8(), step, args.steps, args.warmup, b, device)),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\n{args.model}, {s}px, batch {b}, {precision}, channels_last, "
        f"compile={args.compile}, {name}, torch {torch.__version__}, "
        f"{len(blobs)} source JPEGs at {args.source_side}px, {args.workers} workers\n"
    )
    print(f"| {'data path':<10} | {'img/s':>9} | {'vs synthetic':>12} |")
    print(f"|{'-' * 12}|{'-' * 11}|{'-' * 14}|")
    for label, ips in rows:
        print(f"| {label:<10} | {ips:>9.1f} | {ips / rows[0][1]:>11.2f}x |")


if __name__ == "__main__":
    main()
