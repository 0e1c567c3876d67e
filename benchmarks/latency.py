"""CPU batch-1 latency of each crop model (goal: <= 8 ms for the default on one thread).

    .venv/bin/python benchmarks/latency.py [--models models] [--threads 1]

Uses the released weights under models/crop_disease/ when present (else a fresh model of the
configured size). Two rows of figures per model: eager PyTorch in inference mode, and the
optimised model that `zoo predict` uses (BatchNorm folded, channels_last). Median of --runs calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from usecases.core.config import compose
from usecases.core.inference import optimize_for_cpu
from usecases.core.registry import create_model, get_usecase, list_models
from usecases.core.stages import load_model
from usecases.core.zoo import measure_latency


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="models")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=50)
    a = p.parse_args()
    uc = get_usecase("crop_disease")
    print("| model | input | source | params (M) | eager (ms) | optimised (ms) | threads |")
    print("|---|---|---|---|---|---|---|")
    for name in list_models(usecase="crop_disease"):
        release = Path(a.models) / "crop_disease" / name
        if (release / "weights.safetensors").is_file():
            model, meta, _ = load_model(release)
            size, source = meta["image_size"], "release"
        else:
            size = uc.config(compose([f"model={name}"], usecase="crop_disease")).model.image_size
            model, source = create_model(name, num_classes=3, image_size=size).eval(), "untrained"
        n = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.randn(1, 3, size, size)
        eager = measure_latency(model, x, runs=a.runs, threads=a.threads)
        fast = optimize_for_cpu(model, x)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        opt = measure_latency(fast, x_cl, runs=a.runs, threads=a.threads)
        print(f"| {name} | {size} | {source} | {n:.2f} | {eager:.2f} | {opt:.2f} | {a.threads} |")


if __name__ == "__main__":
    main()
