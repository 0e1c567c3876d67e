"""The zoo as a table: released models with their test metric, size and CPU latency."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# The headline metric of each kind of task, as stored in metrics.json.
HEADLINE = ("accuracy", "auroc", "chrf", "cer")


def median_ms(fn: Callable[[], Any], runs: int = 20, warmup: int = 3) -> float:
    """Median wall time of `fn()` in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def measure_latency(
    model: torch.nn.Module, example: torch.Tensor, runs: int = 20, threads: int = 1
) -> float:
    """Median latency of `model(example)` in ms on `threads` CPU threads (restores the count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return median_ms(lambda: model(example), runs)
    finally:
        torch.set_num_threads(before)


def measure_speed(model: torch.nn.Module, batch: torch.Tensor) -> dict[str, Any]:
    """CPU speed of a released model on real inputs `batch` [N, ...]: latency at batch 1 on one
    thread (eager and as `zoo predict` runs it) and throughput at batch N on all threads."""
    import platform

    from usecases.core.inference import optimize_for_cpu

    one = batch[:1].contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch[:1]
    fast = optimize_for_cpu(model, one)
    threads = torch.get_num_threads()
    batch_ms = measure_latency(fast, batch, runs=5, threads=threads)
    return {
        "latency_ms_batch1_1thread": {
            "eager": round(measure_latency(model, one), 2),
            "optimised": round(measure_latency(fast, one), 2),
        },
        "throughput_items_per_s": round(len(batch) / batch_ms * 1000, 1),
        "throughput_batch": len(batch),
        "threads": threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }


def list_released(models_root: Path, latency: bool = True) -> list[dict[str, Any]]:
    """Every release folder with weights or test metrics (weights may be absent until pulled)."""
    from usecases.core.inference import optimize_for_cpu
    from usecases.core.stages import METRICS, WEIGHTS, load_model

    folders = {
        p.parent
        for pattern in (f"*/*/{WEIGHTS}", f"*/*/{METRICS}")
        for p in models_root.glob(pattern)
    }
    rows = []
    for folder in sorted(folders):
        weights, metrics_file = folder / WEIGHTS, folder / METRICS
        m = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
        metric = next(((k, m[k]) for k in HEADLINE if k in m), ("-", None))
        row: dict[str, Any] = {
            "model": folder.name,
            "usecase": folder.parent.name,
            "metric": metric[0],
            "value": metric[1],
            "size_mb": round(weights.stat().st_size / 1e6, 2) if weights.is_file() else None,
            "latency_ms": None,
            "throughput": None,
        }
        speed_file = folder / "speed.json"
        if speed_file.is_file():
            row["throughput"] = json.loads(speed_file.read_text(encoding="utf-8")).get(
                "throughput_items_per_s"
            )
        if speed_file.is_file() and "optimised" not in json.loads(
            speed_file.read_text(encoding="utf-8")
        ).get("latency_ms_batch1_1thread", {"optimised": 0}):
            # Not an image model (e.g. translation): the latency measured at evaluation.
            lat = json.loads(speed_file.read_text(encoding="utf-8"))["latency_ms_batch1_1thread"]
            row["latency_ms"] = lat["eager"]
        elif latency and weights.is_file():
            model, meta, _ = load_model(folder)
            from usecases.core.registry import model_entry

            size = meta.get("image_size", 224)
            channels = model_entry(meta["arch"]).meta.get("in_channels", 3)
            x = torch.randn(1, channels, size, size).contiguous(memory_format=torch.channels_last)
            row["latency_ms"] = round(measure_latency(optimize_for_cpu(model, x), x), 2)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "The zoo is empty: run `make repro` (or `zoo train ...`) first."
    head = [
        "model",
        "use case",
        "test metric",
        "size (MB)",
        "CPU latency (ms, batch 1, 1 thread)",
        "CPU items/s (batched, at evaluation)",
    ]
    body = [
        [
            r["model"],
            r["usecase"],
            f"{r['metric']} {r['value']:.4f}" if isinstance(r["value"], float) else "not evaluated",
            f"{r['size_mb']:.2f}" if r["size_mb"] is not None else "weights absent",
            f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-",
            f"{r['throughput']:.1f}" if r.get("throughput") is not None else "-",
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def registered_table() -> str:
    from usecases.core.registry import list_models, model_entry

    lines = []
    for name in list_models():
        e = model_entry(name)
        doc = (e.fn.__doc__ or "").strip().splitlines()[0] if e.fn.__doc__ else ""
        lines.append(f"{name:24s} {e.usecase:14s} {doc}")
    return "\n".join(lines)
