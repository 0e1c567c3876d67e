"""CPU batch-1 latency of each crop model (goal: <= 8 ms for the default on one thread).

    .venv/bin/python benchmarks/latency.py [--models models] [--threads 1]

Uses the released weights under models/crop_disease/ when present (else a fresh model of the
configured size), eager PyTorch in inference mode. Prints the median of --runs calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from usecases.core.config import compose
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
    print("| model | input | source | params (M) | latency (ms, batch 1) | threads |")
    print("|---|---|---|---|---|---|")
    for name in list_models(usecase="crop_disease"):
        release = Path(a.models) / "crop_disease" / name
        if (release / "weights.safetensors").is_file():
            model, meta, _ = load_model(release)
            size, source = meta["image_size"], "release"
        else:
            size = uc.config(compose([f"model={name}"], usecase="crop_disease")).model.image_size
            model, source = create_model(name, num_classes=3, image_size=size).eval(), "untrained"
        n = sum(p.numel() for p in model.parameters()) / 1e6
        ms = measure_latency(model, torch.randn(1, 3, size, size), runs=a.runs, threads=a.threads)
        print(f"| {name} | {size} | {source} | {n:.2f} | {ms:.2f} | {a.threads} |")


if __name__ == "__main__":
    main()
