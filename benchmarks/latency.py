"""CPU latency of each crop model: eager PyTorch, the optimised PyTorch model that `zoo predict`
runs (BatchNorm folded, channels_last), and ONNX Runtime (`zoo export`).
Goals: the default model <= 8 ms at batch 1 on one thread; ONNX Runtime >= 1.5x eager at batch 1.

    .venv/bin/python benchmarks/latency.py [--models models] [--batches 1 32] [--threads 1 0]

Uses the released weights under models/crop_disease/ when present (else a fresh model of the
configured size). --threads 0 means all cores. Prints the median of --runs calls, in ms.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from usecases.core.config import compose
from usecases.core.export import export_onnx, session
from usecases.core.inference import optimize_for_cpu
from usecases.core.registry import create_model, get_usecase, list_models
from usecases.core.stages import load_model
from usecases.core.zoo import median_ms


def load(name: str, models_root: Path) -> tuple[torch.nn.Module, int, str]:
    release = models_root / "crop_disease" / name
    if (release / "weights.safetensors").is_file():
        model, meta, _ = load_model(release)
        return model, meta["image_size"], "release"
    uc = get_usecase("crop_disease")
    size = uc.config(compose([f"model={name}"], usecase="crop_disease")).model.image_size
    return create_model(name, num_classes=3, image_size=size).eval(), size, "untrained"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="models")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 0])
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    cores = os.cpu_count() or 1
    print(
        "| model | input | weights | batch | threads | eager | optimised | onnxruntime | ORT / eager |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in list_models(usecase="crop_disease"):
            model, size, source = load(name, Path(a.models))
            onnx_path = export_onnx(
                model, torch.randn(1, 3, size, size), Path(tmp) / f"{name}.onnx", {}
            )
            fast = optimize_for_cpu(model, torch.randn(1, 3, size, size))
            for threads in a.threads:
                n = threads or cores
                sess = session(onnx_path, threads=n)
                torch.set_num_threads(n)
                for batch in a.batches:
                    x = torch.randn(batch, 3, size, size)
                    x_cl, x_np = x.contiguous(memory_format=torch.channels_last), x.numpy()
                    runs = max(5, a.runs // max(1, batch // 8))
                    with torch.inference_mode():
                        eager = median_ms(lambda: model(x), runs)  # noqa: B023
                        opt = median_ms(lambda: fast(x_cl), runs)  # noqa: B023
                    ort = median_ms(lambda: sess.run(None, {"image": x_np}), runs)  # noqa: B023
                    print(
                        f"| {name} | {size} | {source} | {batch} | {n} | {eager:.2f} | {opt:.2f} "
                        f"| {ort:.2f} | {eager / ort:.2f}x |"
                    )


if __name__ == "__main__":
    main()
